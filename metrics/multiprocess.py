"""prometheus-client's multiprocess mode, for `uvicorn --workers N`.

When PROMETHEUS_MULTIPROC_DIR is set before a worker starts, prometheus-client keeps every metric
value in per-process files in that directory, and a scrape served by any worker reads them all
through a `MultiProcessCollector`, so `/metrics` reports the sum over the workers. A worker that
exits leaves its counter and histogram files behind, so no series loses its total when a worker is
replaced; its `live*` gauge files are removed (`forget_dead_workers`) so they stop counting. The
label values the workers admit under `top_n` are kept there too (`metrics.labels.SharedAdmissions`).

The directory must be emptied once before the workers start (`reset_dir`), by whatever starts
them, and never while they run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess, values

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")


def multiproc_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """The multiprocess directory when multiprocess mode is on, else None."""
    value = (os.environ if env is None else env).get(ENV)
    if not value:
        return None
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(
            f"{ENV} is set, but prometheus_client was imported before it was: set {ENV} in the environment "
            "of the process before it starts"
        )
    path = Path(value)
    if not path.is_dir():
        raise RuntimeError(f"{ENV}={value}: not a directory (create it before starting the gateway)")
    return path


def exposition_registry(path: Path) -> CollectorRegistry:
    """A registry whose only collector reads every worker's files: what /metrics exposes."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return registry


def forget_dead_workers(path: Path) -> list[int]:
    """Remove the live-gauge files of processes that no longer exist; returns their pids."""
    dead = sorted({int(m.group(1)) for f in path.iterdir() if (m := _LIVE_FILE.fullmatch(f.name))} - {os.getpid()})
    dead = [pid for pid in dead if not _alive(pid)]
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return dead


def reset_dir(path: Path) -> None:
    """Empty the directory of metric files (and admitted label values) from an earlier run. Call before
    starting the workers."""
    path.mkdir(parents=True, exist_ok=True)
    for f in [*path.glob("*.db"), *path.glob("labels_*.txt")]:
        f.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
