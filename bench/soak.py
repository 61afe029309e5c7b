"""Soak: Meterway under steady load for a while, its memory read every interval.

Starts the benchmark's nginx upstream and Meterway (the same config as `bench.run`), then drives it
with wrk at one concurrency for `--minutes`, alternating JSON and SSE each interval, and after each
interval prints the requests so far, the RSS of Meterway's process tree during it (the median and
the highest of readings four times a second), what the tree holds once the interval's events are
stored (its RSS, and the anonymous part of it: heaps and buffers, which is what grows if anything
leaks; the rest is pages of the program's files, which the kernel reads back and drops as it likes)
and the sum of its processes' peaks so far. Held memory that stays level after the first intervals
means nothing grows with the number of requests served (events, metrics series, connections,
buffers). With `--loader process` (one worker, the store in its own process) it also prints the RSS
of the serving process alone. Everything listens on 127.0.0.1; each wrk run is bounded by -d.

    python -m bench.soak [--minutes 10] [--interval 60] [--conc 16] [--loader inline|process]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import httpx

from bench import run
from bench.run import LUA, METERWAY_PORT, UPSTREAM_PORT, RssSampler, Target, body_for, meterway_config, rss_mib, wrk
from bench.upstream import NginxUpstream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)  # fmt: skip
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--loader", choices=("inline", "process"), default="inline")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("the soak needs nginx and wrk: apt-get install nginx wrk")
    tmp = Path(tempfile.mkdtemp(prefix="meterway-soak-"))
    scripts = {}
    for mode in ("json", "stream"):
        scripts[mode] = tmp / f"{mode}.lua"
        scripts[mode].write_text(LUA % json.dumps(body_for(mode)))
    config = meterway_config(tmp, loader=args.loader)
    cmd = [str(Path(sys.executable).parent / "meterway"), "serve", "--config", str(config)]
    target = Target("meterway", METERWAY_PORT, {m: "/v1/chat/completions" for m in scripts}, cmd)
    upstream = NginxUpstream(tmp / "nginx", UPSTREAM_PORT)
    upstream.start()
    total, errors, rows = 0, 0, []
    try:
        run.start(target, tmp / "meterway.log")
        assert target.proc is not None
        print(f"{'':>25} {'during':>15} {'held':>14}\n{'minute':>6} {'requests':>10} {'req/s':>7} {'RSS med':>8} "
              f"{'max':>6} {'RSS':>6} {'anon':>7} {'serving':>8} {'peak':>8}", flush=True)  # fmt: skip
        rows.append(sample(target, 0.0, 0, ""))
        began = time.monotonic()
        for index in range(max(1, round(args.minutes * 60 / args.interval))):  # a pause to store each follows
            mode = ("json", "stream")[index % 2]
            with RssSampler(target.proc.pid, every=0.25) as during:
                res = wrk(target.url(mode), scripts[mode], args.conc, args.interval)
            total += int(res["requests"])
            errors += int(res["errors"] + res["non2xx"])
            minute = (time.monotonic() - began) / 60
            rows.append(sample(target, minute, total, f"{res['requests'] / (res['us'] / 1e6):.0f}", during))
        written = run.writer_line(target)  # waits for the last events to be stored, then reads the RSS
    finally:
        if target.proc is not None:
            target.proc.terminate()
            target.proc.wait(60)
        upstream.stop()
    medians, highest = [r.median for r in rows[1:]], max(r.highest for r in rows)
    later = rows[len(rows) // 2 :]
    held, anon = [r.held for r in later], [r.anon for r in later]
    print(f"{total} requests, {errors} errors; RSS {rows[0].held:.1f} MiB idle, median {medians[-1]:.1f} MiB "
          f"during the last interval, highest reading {highest:.1f} MiB")  # fmt: skip
    print(f"held once each interval's events are stored, over the second half: RSS {min(held):.1f}-{max(held):.1f} "
          f"MiB, anonymous {min(anon):.1f}-{max(anon):.1f} MiB ({anon[-1] - anon[0]:+.1f} MiB from the first of "
          f"those intervals to the last)")  # fmt: skip
    print(written)
    serving = [r.serving for r in later]
    print(f"serving process: {rows[0].serving:.1f} MiB idle, {rows[-1].serving:.1f} MiB at the end, "
          f"{max(serving) - min(serving):.1f} MiB range over the second half")  # fmt: skip
    return 0


class Row(NamedTuple):
    minute: float
    total: int
    median: float
    highest: float
    held: float
    anon: float
    serving: float


def sample(target: Target, minute: float, total: int, rate: str, during: RssSampler | None = None) -> Row:
    """Print a row: the tree's RSS during the interval (median and highest reading; at minute 0, one
    reading), what it holds once the interval's events are stored (RSS and its anonymous part), the
    serving process's RSS and the sum of the peaks."""
    assert target.proc is not None
    if during:
        run.writer_totals(target)
    held, anon = run.settled_rss(target.proc.pid), rss_mib(target.proc.pid, "RssAnon:")
    median, highest = (during.median, during.highest) if during and during.readings else (held, held)
    serving, peak = serving_rss(target), rss_mib(target.proc.pid, "VmHWM:")
    print(f"{minute:>6.1f} {total:>10} {rate:>7} {median:>8.1f} {highest:>6.1f} {held:>6.1f} {anon:>7.1f} "
          f"{serving:>8.1f} {peak:>8.1f}", flush=True)  # fmt: skip
    return Row(minute, total, median, highest, held, anon, serving)


def serving_rss(target: Target) -> float:
    """RSS of the process that answers requests: the one that answered the last one (a worker under a
    store process reports its pid in `x-meterway-worker`), else Meterway's own process."""
    assert target.proc is not None
    pid = target.proc.pid
    try:
        answer = httpx.get(f"http://127.0.0.1:{target.port}/admin/events", params={"limit": 1}, timeout=5)
        pid = int(answer.headers.get("x-meterway-worker", pid))
    except httpx.HTTPError:
        pass
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    raise SystemExit(main())
