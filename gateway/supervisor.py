"""`meterway serve --workers N`: a supervisor, one store process, and N gateway workers.

    supervisor ── store process (owns the store; storage/store_process.py)
               └─ worker × N (uvicorn, one shared listening socket; proxy traffic, /metrics)

The supervisor starts the store process and waits until it has loaded any journal left behind and
listens on its private Unix socket. It then binds the gateway's port once and starts N workers
(spawned, each a fresh interpreter) that share the socket: each journals its events into the
spool and forwards the storage routes to the store, so the request path never touches the
database. Metrics: every worker runs in prometheus-client multiprocess mode over one directory
(PROMETHEUS_MULTIPROC_DIR, emptied once here before the workers start), so `/metrics` served by any
worker sums all of them, and a worker that restarts keeps its counters' totals.

A worker that dies is replaced; so is a store process that dies (nothing is lost meanwhile: the
workers keep journaling). SIGTERM or SIGINT: the workers stop accepting, drain in-flight requests
and close their last segment; then the supervisor closes the store's pipe, the store loads
everything and exits, and the supervisor exits 0. SIGHUP is passed on (price book reload).
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from types import FrameType

from gateway.config import Config
from metrics.multiprocess import ENV, reset_dir

log = logging.getLogger("meterway")
STORE_STOP_TIMEOUT = 600.0  # seconds the store may take to load what is left at shutdown
STORE_RETRY_FIRST, STORE_RETRY_MAX = 1.0, 30.0  # seconds between attempts to start a store that failed again


class SupervisorError(Exception):
    """The gateway cannot start; the message is for the operator."""


def run_worker(config: Config, listener: socket.socket) -> None:
    """A worker's entry point: the gateway app under uvicorn on the shared socket."""
    from gateway.cli import configure_logging
    from gateway.server import WorkerServer, uvicorn_config

    configure_logging()
    server = WorkerServer(uvicorn_config(config))
    parent = os.getppid()

    def watch_parent() -> None:  # an orphaned worker stops instead of serving without a store
        while not server.should_exit:
            if os.getppid() != parent:
                log.warning("the supervisor is gone; worker %d stops", os.getpid())
                server.should_exit = True
            time.sleep(1)

    threading.Thread(target=watch_parent, name="meterway-parent-watch", daemon=True).start()
    server.run(sockets=[listener])


def run_store(config: Config, socket_path: str, conn: Connection) -> None:
    """The store process's entry point; DuckDB is imported there only, never in the supervisor."""
    from storage import store_process

    store_process.run_store(config, socket_path, conn)


class Supervisor:
    def __init__(self, config: Config, workers: int) -> None:
        self.config = config
        self.workers = workers
        self.ctx: SpawnContext = multiprocessing.get_context("spawn")
        self.stopping = False
        self.store: SpawnProcess | None = None
        self._store_conn: Connection | None = None
        self._workers: list[SpawnProcess] = []

    def run(self) -> int:
        runtime = Path(tempfile.mkdtemp(prefix="meterway-"))
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            return self._run(runtime)
        except SupervisorError as exc:
            log.error("%s", exc)
            self._stop_workers()
            self._stop_store()
            return 2
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(runtime, ignore_errors=True)

    def _run(self, runtime: Path) -> int:
        store_socket = runtime / "store.sock"
        metrics_dir = Path(os.environ.get(ENV) or runtime / "metrics")
        reset_dir(metrics_dir)
        os.environ[ENV] = str(metrics_dir)  # inherited by the store and workers, which import prometheus_client after
        self._start_store(store_socket)
        if self.stopping:
            return self._shutdown()
        worker_config = copy.deepcopy(self.config)
        worker_config.storage.store_socket = store_socket
        server = self.config.server
        listener = _listen(server.host, server.port)
        try:
            self._workers = [self._start_worker(worker_config, listener) for _ in range(self.workers)]
            log.info(
                "meterway listening on http://%s:%d with %d workers and a store process",
                server.host, listener.getsockname()[1], self.workers,
            )  # fmt: skip
            self._watch(worker_config, listener, store_socket)
        finally:
            listener.close()
        return self._shutdown()

    def _watch(self, worker_config: Config, listener: socket.socket, store_socket: Path) -> None:
        restart_at, backoff = float("inf"), STORE_RETRY_FIRST  # when to start the store again, if it is down
        while not self.stopping:
            store = self.store
            sentinels = [p.sentinel for p in self._workers] + ([store.sentinel] if store is not None else [])
            wait(sentinels, timeout=0.5)
            if self.stopping:
                return
            for i, worker in enumerate(self._workers):
                if not worker.is_alive():
                    log.error("worker %s exited with %s; starting another", worker.pid, worker.exitcode)
                    self._workers[i] = self._start_worker(worker_config, listener)
            if store is not None and not store.is_alive():
                log.error("the store process exited with %s; starting it again", store.exitcode)
                self.store, restart_at, backoff = None, time.monotonic(), STORE_RETRY_FIRST
            if self.store is None and time.monotonic() >= restart_at:
                try:
                    self._start_store(store_socket)
                except SupervisorError as exc:  # the file held by another process, say: the workers go on journaling
                    self.store = None
                    log.error("%s; the workers go on journaling, trying again in %.0f s", exc, backoff)
                    restart_at, backoff = time.monotonic() + backoff, min(backoff * 2, STORE_RETRY_MAX)

    def _start_store(self, store_socket: Path) -> None:
        mine, theirs = self.ctx.Pipe()
        process = self.ctx.Process(
            target=run_store, args=(self.config, str(store_socket), theirs), name="meterway-store", daemon=False
        )
        process.start()
        theirs.close()
        self.store, self._store_conn = process, mine
        while not self.stopping:
            if mine.poll(0.2):
                try:
                    kind, detail = mine.recv()
                except EOFError:
                    kind, detail = "error", f"the store process exited with {process.exitcode}"
                if kind == "ready":
                    return
                process.join(10)
                raise SupervisorError(f"storage error: {detail}")
            if not process.is_alive():
                raise SupervisorError(f"the store process exited with {process.exitcode} before it was ready")

    def _start_worker(self, config: Config, listener: socket.socket) -> SpawnProcess:
        process = self.ctx.Process(target=run_worker, args=(config, listener), name="meterway-worker", daemon=False)
        process.start()
        return process

    def _shutdown(self) -> int:
        self._stop_workers()
        return self._stop_store()

    def _stop_workers(self) -> None:
        for worker in self._workers:
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.server.grace_seconds + 15
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.error("worker %s did not stop in time; killing it (its journal is loaded all the same)", worker.pid)
                worker.kill()
                worker.join(10)

    def _stop_store(self) -> int:
        if self._store_conn is not None:
            self._store_conn.close()  # the store's cue: load everything and exit
            self._store_conn = None
        store = self.store
        if store is None:
            return 0
        store.join(STORE_STOP_TIMEOUT)
        if store.is_alive():
            log.error("the store process did not finish loading in %.0f s; stopping it", STORE_STOP_TIMEOUT)
            store.kill()
            store.join(10)
            return 1
        return 0 if store.exitcode == 0 else 1

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGHUP:
            for process in [*self._workers, *([self.store] if self.store else [])]:
                if process.is_alive() and process.pid is not None:
                    os.kill(process.pid, signal.SIGHUP)
            return
        if not self.stopping:
            log.info("stopping: draining the workers, then loading every event")
        self.stopping = True


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SupervisorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(4096)
    return sock
