"""`make bench`: Meterway against a bare pass-through on the same stack, in one run, on this machine.

Starts an nginx fake upstream, the bare pass-throughs (bench/floor.py: `floor`, the Starlette +
aiohttp proxy the targets are set against, `floor-raw`, a framework-free one, and on request
`floor-httpx`, the floor with httpx as the client API on httpx-aiohttp's transport) and Meterway
(full metering, pricing and event writing to DuckDB), then drives each with wrk for JSON and SSE
at several concurrency levels, targets interleaved. Prints req/s, p50/p99 latency, CPU
microseconds per request and RSS for each (the median and the highest of readings taken ten times a
second during the run), and each target's ratio to both floors. Then, with SSE
among the modes, times `--ttfb` streaming requests one after another on one connection per target:
from sending the request to the first byte of the first `data:` event, and what each target adds to
`direct`. Needs `nginx` and `wrk` (Debian packages). Everything listens on 127.0.0.1; every load run
is bounded by wrk's -d.

    python -m bench.run [--conc 1,16,64] [--duration 10] [--warmup 2] [--modes json,stream] [--rounds 1]
                        [--targets direct,floor,floor-raw,meterway] [--ttfb 300]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from bench.upstream import NginxUpstream, claim

REPO = Path(__file__).resolve().parent.parent
UPSTREAM_PORT, FLOOR_PORT, METERWAY_PORT, STORE_PORT, WORKERS_PORT, RAW_PORT = 18100, 18101, 18102, 18103, 18104, 18105
HTTPX_PORT = 18106
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]
BODY = {"model": "gpt-4o-mini", "max_tokens": 32, "temperature": 0, "messages": MESSAGES}
LUA = """wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tenant-Id"] = "bench"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%%d,"errors":%%d,"non2xx":%%d,"p50":%%d,"p99":%%d,"us":%%d}\\n',
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), summary.duration))
end
"""


@dataclass
class Target:
    name: str
    port: int
    paths: dict[str, str]  # mode -> request path
    cmd: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.paths[mode]}"


def body_for(mode: str) -> dict[str, object]:
    if mode == "stream":
        return {**BODY, "model": "gpt-4o-mini-stream", "stream": True, "stream_options": {"include_usage": True}}
    return BODY


def meterway_config(tmp: Path, name: str = "bench", port: int = METERWAY_PORT, loader: str | None = None) -> Path:
    storage: dict[str, object] = {"path": str(tmp / name / "events.duckdb")}
    if loader:
        storage["loader"] = loader
    doc = {
        "server": {"host": "127.0.0.1", "port": port},
        "storage": storage,
        "providers": {
            "json": {"kind": "openai", "base_url": f"http://127.0.0.1:{UPSTREAM_PORT}/json/v1", "price_as": "openai"},
            "stream": {
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{UPSTREAM_PORT}/stream/v1",
                "price_as": "openai",
            },
        },
        "models": [
            {"name": "gpt-4o-mini", "provider": "json"},
            {"name": "gpt-4o-mini-stream", "provider": "stream", "model": "gpt-4o-mini"},
        ],
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def start(target: Target, log: Path) -> None:
    if target.cmd is None:
        return
    claim(target.port)
    with log.open("wb") as out:
        target.proc = subprocess.Popen(target.cmd, cwd=REPO, env={**os.environ, **target.env}, stdout=out,
                                       stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and target.proc.poll() is None:
        try:
            if httpx.post(target.url("json"), json=BODY, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{target.name} did not become ready; see {log}")


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (a supervisor's workers and store process count too)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [pid], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mib(pid: int, field: str = "VmRSS:") -> float:
    """Resident memory of the process tree; with field "VmHWM:", the sum of each process's peak."""
    total = 0.0
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(field):
                total += int(line.split()[1]) / 1024
    return total


class RssSampler:
    """Reads the RSS of a process tree every `every` seconds, in a thread, while a load runs: a single
    reading lands on whatever the process is doing at that moment (a store's load and checkpoint of
    the last second's events raises it for a fraction of each second), the median and the highest of
    many readings say what it holds and what it needs."""

    def __init__(self, pid: int | None, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self.readings: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        if self.pid:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        assert self.pid is not None
        while not self._stop.wait(self.every):
            self.readings.append(rss_mib(self.pid))

    @property
    def median(self) -> float:
        return statistics.median(self.readings) if self.readings else 0.0

    @property
    def highest(self) -> float:
        return max(self.readings, default=0.0)


def wrk(url: str, script: Path, conc: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("{"))
    result: dict[str, float] = json.loads(line)
    return result


def measure(
    target: Target, mode: str, conc: int, args: argparse.Namespace, scripts: dict[str, Path]
) -> dict[str, float]:
    wrk(target.url(mode), scripts[mode], conc, args.warmup)
    pid = target.proc.pid if target.proc else None
    before = cpu_seconds(pid) if pid else 0.0
    with RssSampler(pid) as rss:
        res = wrk(target.url(mode), scripts[mode], conc, args.duration)
    used = (cpu_seconds(pid) - before) if pid else 0.0
    seconds = res["us"] / 1e6
    return {
        "rps": res["requests"] / seconds,
        "p50_ms": res["p50"] / 1000,
        "p99_ms": res["p99"] / 1000,
        "errors": res["errors"] + res["non2xx"],
        "cpu_us": used * 1e6 / res["requests"] if res["requests"] and pid else 0.0,
        "rss_mib": rss.median,
        "rss_max": rss.highest,
    }


def first_data_times(target: Target, body: bytes, count: int) -> list[float]:
    """Milliseconds from sending each of `count` streaming requests (one at a time, on one keep-alive
    connection) to the first byte of its first `data:` event; each answer is read to its end."""
    head = (
        f"POST {target.paths['stream']} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-Tenant-Id: bench\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    times = []
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            began = time.perf_counter()
            sock.sendall(head + body)
            buf, first = b"", None
            while not answer_complete(buf):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"{target.name} closed the connection mid-answer")
                buf += chunk
                if first is None and b"data:" in buf.partition(b"\r\n\r\n")[2]:
                    first = time.perf_counter() - began
            if not buf.startswith(b"HTTP/1.1 200") or first is None:
                raise ConnectionError(f"{target.name} answered {buf[:200]!r}")
            times.append(first * 1000)
    return times


def answer_complete(buf: bytes) -> bool:
    """Whether `buf` holds a whole HTTP/1.1 answer (chunked, or with a Content-Length)."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    fields = head.lower()
    if b"transfer-encoding: chunked" in fields:
        return rest.endswith(b"0\r\n\r\n")
    length = fields.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0] if b"content-length:" in fields else b"0"
    return len(rest) >= int(length)


def first_data_report(times: dict[str, list[float]]) -> str:
    """A table of the first-data times, with each target's added median over `direct`."""
    direct = statistics.median(times["direct"]) if "direct" in times else None
    count = len(next(iter(times.values())))
    lines = [f"stream, request sent to first data byte ({count} requests one at a time):",
             f"{'target':10} {'p50 ms':>7} {'p99 ms':>7} {'added p50':>9}"]  # fmt: skip
    for name, values in times.items():
        p50, p99 = statistics.median(values), statistics.quantiles(values, n=100)[98]
        added = f"{p50 - direct:+.2f}" if direct is not None and name != "direct" else ""
        lines.append(f"{name:10} {p50:>7.2f} {p99:>7.2f} {added:>9}")
    return "\n".join(lines)


WRITER = ("meterway_writer_events_submitted", "meterway_writer_events_stored", "meterway_writer_events_dropped",
          "meterway_writer_pending_events")  # fmt: skip


def writer_totals(target: Target) -> dict[str, int]:
    """The event writer's counters (WRITER) once its backlog is stored, or after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        text = httpx.get(f"http://127.0.0.1:{target.port}/metrics", timeout=10).text
        values = dict.fromkeys(WRITER, 0.0)
        for line in text.splitlines():
            for name in WRITER:
                if line.startswith(name) and not line.startswith(name + "_created"):
                    values[name] += float(line.rsplit(" ", 1)[1])
        if values["meterway_writer_pending_events"] == 0 or time.monotonic() > deadline:
            return {name: int(value) for name, value in values.items()}
        time.sleep(0.5)


def writer_line(target: Target) -> str:
    """The event writer's totals after the load, once the backlog is stored (or after 30 s)."""
    submitted, stored, dropped, pending = writer_totals(target).values()
    line = f"{target.name}: events journaled {submitted}, stored {stored}, dropped {dropped}, pending {pending}"
    if target.proc is None:
        return line
    return f"{line}; RSS once they are stored {settled_rss(target.proc.pid):.1f} MiB"


def settled_rss(pid: int, timeout: float = 10.0) -> float:
    """The tree's RSS after a load, once the store has finished with it: the readings, half a second
    apart, stop changing (the last load's checkpoint gives its memory back at its end)."""
    deadline = time.monotonic() + timeout
    last = rss_mib(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_mib(pid)
        if abs(now - last) < 0.5:
            return now
        last = now
    return last


def report(results: dict[str, dict[str, float]], names: list[str], modes: list[str], concs: list[int]) -> str:
    lines = [f"{'mode':6} {'c':>3} {'target':10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'cpu us/req':>10} "
             f"{'RSS med':>7} {'max':>5} {'vs floor':>8} {'vs raw':>7} {'err':>4}"]  # fmt: skip
    for mode in modes:
        for conc in concs:
            floor = results.get(f"floor/{mode}/{conc}")
            raw = results.get(f"floor-raw/{mode}/{conc}")
            for name in names:
                r = results.get(f"{name}/{mode}/{conc}")
                if r is None:
                    continue
                ratio = f"{r['rps'] / floor['rps']:.2f}x" if floor and name not in ("floor", "floor-raw") else ""
                to_raw = f"{r['rps'] / raw['rps']:.2f}x" if raw and name != "floor-raw" else ""
                lines.append(
                    f"{mode:6} {conc:>3} {name:10} {r['rps']:>8.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
                    f"{r['cpu_us']:>10.0f} {r['rss_mib']:>7.1f} {r['rss_max']:>5.0f} {ratio:>8} {to_raw:>7} "
                    f"{r['errors']:>4.0f}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.run", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--conc", default="1,16,64")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--modes", default="json,stream")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--targets", default="direct,floor,floor-raw,meterway")
    parser.add_argument("--ttfb", type=int, default=300, help="streaming requests timed to their first event (0: none)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("the benchmark needs nginx and wrk: apt-get install nginx wrk")
    concs, modes = [int(c) for c in args.conc.split(",")], args.modes.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="meterway-bench-"))
    bin_dir = Path(sys.executable).parent
    uvicorn_args = ["--host", "127.0.0.1", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                    "--log-level", "warning"]  # fmt: skip
    raw_paths = {"json": "/json/v1/chat/completions", "stream": "/stream/v1/chat/completions"}
    routed = {"json": "/v1/chat/completions", "stream": "/v1/chat/completions"}
    floor_cmd = [str(bin_dir / "uvicorn"), "bench.floor:app", "--port", str(FLOOR_PORT), *uvicorn_args]
    raw_cmd = [str(bin_dir / "uvicorn"), "bench.floor:raw_app", "--port", str(RAW_PORT), *uvicorn_args]
    httpx_cmd = [str(bin_dir / "uvicorn"), "bench.floor:httpx_app", "--port", str(HTTPX_PORT), *uvicorn_args]
    floor_env = {"FLOOR_UPSTREAM": f"http://127.0.0.1:{UPSTREAM_PORT}"}
    meterway_cmd = [str(bin_dir / "meterway"), "serve", "--config", str(meterway_config(tmp))]
    store_cmd = [
        str(bin_dir / "meterway"),
        "serve",
        "--config",
        str(meterway_config(tmp, "store", STORE_PORT, "process")),
    ]
    workers_cmd = [str(bin_dir / "meterway"), "serve", "--workers", "2",
                   "--config", str(meterway_config(tmp, "workers", WORKERS_PORT))]  # fmt: skip
    all_targets = {
        "direct": Target("direct", UPSTREAM_PORT, raw_paths),
        "floor": Target("floor", FLOOR_PORT, raw_paths, floor_cmd, floor_env),
        "floor-raw": Target("floor-raw", RAW_PORT, raw_paths, raw_cmd, floor_env),
        "floor-httpx": Target("floor-httpx", HTTPX_PORT, raw_paths, httpx_cmd, floor_env),
        "meterway": Target("meterway", METERWAY_PORT, routed, meterway_cmd),
        "mw-store": Target("mw-store", STORE_PORT, routed, store_cmd),  # loads DuckDB in a store process
        "mw-2w": Target("mw-2w", WORKERS_PORT, routed, workers_cmd),  # --workers 2 (and a store process)
    }
    names = [n for n in args.targets.split(",") if n in all_targets]
    targets = [all_targets[n] for n in names]
    scripts = {}
    for mode in modes:
        scripts[mode] = tmp / f"{mode}.lua"
        scripts[mode].write_text(LUA % json.dumps(body_for(mode)))
    upstream = NginxUpstream(tmp / "nginx", UPSTREAM_PORT)
    upstream.start()
    results: dict[str, dict[str, float]] = {}
    try:
        for t in targets:
            start(t, tmp / f"{t.name}.log")
        cell = 0
        for _ in range(args.rounds):
            for mode in modes:
                for conc in concs:
                    order = targets[cell % len(targets) :] + targets[: cell % len(targets)]
                    cell += 1
                    for t in order:
                        r = measure(t, mode, conc, args, scripts)
                        key = f"{t.name}/{mode}/{conc}"
                        results[key] = r if key not in results or r["rps"] > 0 else results[key]
                        print(f"  {key}: {r['rps']:.0f} req/s", file=sys.stderr, flush=True)
        firsts: dict[str, list[float]] = {}
        if "stream" in modes and args.ttfb > 0:
            body = json.dumps(body_for("stream")).encode()
            for t in targets:
                first_data_times(t, body, 50)  # warm-up
                firsts[t.name] = first_data_times(t, body, args.ttfb)
        writers = [writer_line(t) for t in targets if t.name.startswith(("meterway", "mw-"))]
    finally:
        for t in targets:
            if t.proc is not None:
                t.proc.terminate()
                t.proc.wait(60)
        upstream.stop()
    text = "\n".join([report(results, names, modes, concs), *([first_data_report(firsts)] if firsts else []), *writers])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stamp}.json").write_text(json.dumps({**results, "first_data_ms": firsts}, indent=2))
    print(f"Meterway benchmark {stamp} on {os.cpu_count()} cores (duration {args.duration}s, warm-up {args.warmup}s)")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
