"""Event storage: the journal, the DuckDB and DuckLake stores, their queries and admin paths.

DuckDB allocates through its own jemalloc, which by default keeps freed pages for a while to reuse
them. A gateway loads a batch of events every second, and each load touches tens of MiB for a
moment, so those pages would stay resident for good. Giving them back at once costs page
faults on the next load (measured with 2,000-event loads: about 44 instead of 25 µs of loader CPU
per event) but keeps the process at the memory it uses (a one-second decay lifted a soak to
160-255 MiB). This must be set before DuckDB is first imported (every path to it imports this
package first); a `DUCKDB_JE_MALLOC_CONF` in the environment wins.
"""

import os

os.environ.setdefault("DUCKDB_JE_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
