"""A serving process gives back the DuckDB library pages it only needed to open its store, and the free
pages of its malloc heap when it opens the store again, and keeps one malloc arena. Each check runs in
a fresh interpreter, as a gateway starts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.gateway import REPO

# Put before a script that reads how much of a mapping is resident.
RESIDENT = """
def resident_kib(mapping):
    \"\"\"KiB resident in this process's mappings of `mapping` (a file's path, or "[heap]").\"\"\"
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
            inside = line.rstrip().endswith(mapping)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total
"""

LIBRARY_PAGES = """
import json, os, sys
from pathlib import Path
from storage.duckdb_sink import DuckDBSink
from storage.residency import release_libraries
from tests.storage.helpers import event

def mapped_bytes():
    spans = [line.split()[0].split("-") for line in open("/proc/self/maps") if line.rstrip().endswith(library)]
    return sum(int(end, 16) - int(start, 16) for start, end in spans)

sink = DuckDBSink(Path(sys.argv[1]), threads=1, memory_limit="128MB", idle_checkpoint=0.0)
library = os.path.realpath(sys.modules["_duckdb"].__file__)
opened = resident_kib(library)
advised = release_libraries()
released = resident_kib(library)
sink.load_events([event() for _ in range(500)])
sink.maintain()
stored = sink.query("SELECT count(*) FROM llm_usage_events")[0][0]
loaded = resident_kib(library)
sink.renew_rows, first = 500, sink._con
sink.load_events([event() for _ in range(10)])
sink.maintain()  # this checkpoint opens the file again, which runs the opening code once more
renewed = resident_kib(library)
print(json.dumps({"library": sys.modules["_duckdb"].__file__, "opened": opened, "advised": advised,
                  "mapped": mapped_bytes(), "released": released, "loaded": loaded, "stored": stored,
                  "renewed": renewed, "reopened": sink._con is not first,
                  "after": sink.query("SELECT count(*) FROM llm_usage_events")[0][0]}))
"""


def test_the_duckdb_library_pages_a_store_only_needed_to_open_are_given_back(tmp_path: Path) -> None:
    """At start (with every other library's), and each time the store opens its file again (see
    DuckDBSink._renew). The kernel reclaims only pages no other process maps, and this test process has
    DuckDB's library mapped too: the gateway's interpreter gets a copy of its own, as a gateway alone on a
    host has."""
    import _duckdb
    import duckdb

    lib = tmp_path / "lib"
    shutil.copytree(Path(duckdb.__file__).parent, lib / "duckdb")
    shutil.copy(_duckdb.__file__, lib)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lib), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", RESIDENT + LIBRARY_PAGES, str(tmp_path / "e.duckdb")], cwd=REPO,
                         env=env, capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    kib = json.loads(out.stdout)
    assert kib["library"].startswith(str(lib))
    assert kib["opened"] > 20_000  # most of the library is resident once a file is open
    assert kib["advised"] > kib["mapped"] > kib["opened"] * 1024  # DuckDB's and the other libraries'
    assert kib["released"] < kib["opened"] // 4
    assert kib["stored"] == 500  # a load and a checkpoint still work: the pages they need come back
    assert kib["released"] < kib["loaded"] < kib["opened"]
    assert kib["reopened"] and kib["after"] == 510
    assert kib["renewed"] < kib["loaded"]  # the pages opening it again touched are given back too


HEAP = """
import json, sys
from pathlib import Path
from storage.duckdb_sink import DuckDBSink
from tests.storage.helpers import event

sink = DuckDBSink(Path(sys.argv[1]), threads=1, memory_limit="128MB", idle_checkpoint=0.0)
sink.load_events([event() for _ in range(10)])
sink.maintain()
freed = [bytes(2048) for _ in range(10_000)]  # 20 MiB on malloc's heap (past Python's small-object limit)
kept = bytes(2048)  # above them: the heap's top cannot shrink below it
del freed
before, first = resident_kib("[heap]"), sink._con
sink.renew_rows = 1
sink.load_events([event()])
sink.maintain()  # this checkpoint opens the file again
print(json.dumps({"before": before, "after": resident_kib("[heap]"), "reopened": sink._con is not first,
                  "stored": sink.query("SELECT count(*) FROM llm_usage_events")[0][0]}))
"""


def test_a_store_that_opens_its_file_again_gives_back_the_free_pages_of_its_heap(tmp_path: Path) -> None:
    """Closing the file frees DuckDB's metadata of the row groups written since it was opened, spread
    through malloc's heap under memory still in use; glibc keeps such free chunks resident. Here the
    free memory is Python's (20 MiB freed under a live object), which only a trim gives back."""
    out = subprocess.run([sys.executable, "-c", RESIDENT + HEAP, str(tmp_path / "e.duckdb")], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    kib = json.loads(out.stdout)
    assert kib["reopened"] and kib["stored"] == 11
    assert kib["before"] - kib["after"] > 16 * 1024, kib


ARENAS = """
import json, os
from storage.residency import one_malloc_arena
print(json.dumps([one_malloc_arena(), os.environ.get("MALLOC_ARENA_MAX")]))
"""


def test_a_gateway_keeps_one_malloc_arena_unless_the_environment_says_otherwise() -> None:
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    for env, expected in (({}, [True, "1"]), ({"MALLOC_ARENA_MAX": "4"}, [False, "4"])):
        out = subprocess.run([sys.executable, "-c", ARENAS], cwd=REPO, env={**base, **env}, capture_output=True,
                             text=True, check=True, timeout=60)  # fmt: skip
        assert json.loads(out.stdout) == expected


def test_a_workers_clients_on_the_store_socket_load_no_ca_bundle(tmp_path: Path) -> None:
    from governance.store_client import StoreClient
    from storage.remote import RemoteSink, RemoteStorage
    from storage.writer import EventWriter

    socket = tmp_path / "store.sock"
    sink = RemoteSink(socket)
    storage = RemoteStorage(EventWriter(sink, tmp_path / "spool"), socket)
    pools = [StoreClient(socket).client._transport, storage.client._transport, sink.http._transport]
    for pool in pools:
        context = pool._pool._ssl_context  # type: ignore[attr-defined]
        assert context.cert_store_stats()["x509"] == 0
