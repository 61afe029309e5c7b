"""Keeping a long-running process that holds DuckDB at the memory it uses (Linux; elsewhere these do nothing).

- `one_malloc_arena()`: glibc gives each thread that allocates an arena of its own, and the loader
  and fsync threads of a gateway each kept a few MiB of free memory in theirs. One arena holds the
  same objects in less memory; the threads that allocate take the GIL anyway, and DuckDB allocates
  through its own jemalloc.
- `release_library_pages(path)`: opening a DuckDB file touches most of DuckDB's 35 MiB library
  (registering its functions, the catalog, the schema upgrade), code a gateway never runs again.
  Those pages are clean copies of the file on disk; advising the kernel to reclaim them
  (`MADV_PAGEOUT`) brings the library to the 20-odd MiB its loads use, which come back on first use.
  The kernel reclaims only pages no other process maps: a second process holding DuckDB keeps them.
- `release_libraries()`: the same for every shared library, once a process has started: imports, the
  TLS trust stores and the first loads touch about 4 MiB of library code that serving never runs again.
- `trim_malloc_heap()`: memory freed below memory still in use stays in malloc's heap, resident, as
  free chunks; glibc gives back only the top of its heap by itself. When a store opens its file again,
  DuckDB frees the metadata of every row group written since it opened it, 10-20 MiB spread through
  the heap under the loads' own allocations: trimming gives those pages back (`malloc_trim`).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger("meterway.storage")

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
MADV_PAGEOUT = 21  # madvise advice (Linux 5.4 and later; older kernels answer EINVAL)
ARENAS_ENV = "MALLOC_ARENA_MAX"


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def one_malloc_arena() -> bool:
    """Before any thread starts: one malloc arena for this process and the processes it spawns, unless
    `MALLOC_ARENA_MAX` is already set (glibc read it at start). Returns whether glibc took it."""
    if ARENAS_ENV in os.environ:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # not glibc (musl has no arenas to limit)
        return False
    os.environ[ARENAS_ENV] = "1"  # spawned workers and the store process read it as they start
    return bool(mallopt(M_ARENA_MAX, 1))


def release_library_pages(library: str) -> int:
    """Advise the kernel to reclaim the pages of `library` (a path) this process has mapped; returns the
    bytes advised, 0 where it cannot be done. Pages in use come back on their next touch."""
    return _release(lambda path: path == library)


def release_libraries() -> int:
    """`release_library_pages` for every shared library this process has mapped."""
    return _release(lambda path: ".so" in os.path.basename(path))


def _release(wanted: Callable[[str], bool]) -> int:
    libc = _libc()
    if libc is None:
        return 0
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not wanted(path := fields[5].rstrip("\n")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if madvise(start, end - start, MADV_PAGEOUT) == 0:
                advised += end - start
            else:
                log.debug("madvise(MADV_PAGEOUT) on %s: errno %d", path, ctypes.get_errno())
                return advised
    return advised


def trim_malloc_heap() -> bool:
    """Give back the free pages inside malloc's heaps, not only at their top; returns whether any were."""
    trim = getattr(_libc(), "malloc_trim", None)
    return bool(trim(0)) if trim is not None else False  # not glibc: nothing to call


def release_duckdb_pages() -> int:
    """`release_library_pages` for DuckDB's library, once a process has opened its store."""
    module = sys.modules.get("_duckdb")
    path = getattr(module, "__file__", None)
    return release_library_pages(os.path.realpath(path)) if path else 0
