"""Running the gateway under uvicorn (uvloop + httptools), with graceful shutdown.

On SIGTERM or SIGINT uvicorn stops accepting, lets in-flight requests finish within the grace
period, then the app's shutdown flushes every buffered event before the process exits 0.

`serve(config, workers)`: with one worker and `storage.loader: inline` (the default for one
worker) the gateway is this one process, store included. Otherwise the supervisor
(gateway/supervisor.py) runs a store process and the workers.
"""

from __future__ import annotations

import logging
import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from gateway.config import Config

if TYPE_CHECKING:
    from gateway.costing import EventPricer

log = logging.getLogger("meterway")


class GatewayServer(uvicorn.Server):
    """uvicorn's server, except that a stop signal ends in a clean exit 0.

    uvicorn re-raises SIGTERM/SIGINT once it has shut down, which makes the process die of the
    signal; for the gateway a signal is a request to stop gracefully, and a graceful stop after
    every event is flushed is a success.
    """

    announce = True  # log the address once it is bound (a supervisor announces its workers itself)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.announce and self.servers and self.servers[0].sockets:
            host, port = self.servers[0].sockets[0].getsockname()[:2]  # `server.port: 0` is a port the OS chose
            log.info("meterway listening on http://%s:%d", host, port)


def uvicorn_config(config: Config, pricer: EventPricer | None = None) -> uvicorn.Config:
    from gateway.app import create_app  # here, so that a supervisor never loads the app (nor DuckDB)
    from gateway.http_protocol import GatheringHttpToolsProtocol

    return uvicorn.Config(
        create_app(config, pricer),
        host=config.server.host,
        port=config.server.port,
        loop="uvloop",
        http=GatheringHttpToolsProtocol,
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # nothing reads the client address, so no X-Forwarded-* rewriting per request
        server_header=False,
        log_level="warning",
        timeout_graceful_shutdown=int(config.server.grace_seconds),
        timeout_keep_alive=75,
        backlog=4096,
    )


class WorkerServer(GatewayServer):
    """A worker under the supervisor: a Ctrl-C reaches the whole process group, but only the supervisor's
    SIGTERM stops a worker, so a second signal never cuts its graceful shutdown short."""

    announce = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGINT:
            super().handle_exit(sig, frame)


def loader_for(config: Config, workers: int) -> str:
    """`storage.loader`, defaulting to the store process when there are several workers."""
    return config.storage.loader or ("process" if workers > 1 else "inline")


def serve(config: Config, workers: int = 1, pricer: EventPricer | None = None) -> int:
    """Run until stopped; `pricer`, the config's book already loaded, spares the one process loading it again."""
    if workers < 1:
        log.error("--workers %d: expected at least 1", workers)
        return 2
    if loader_for(config, workers) == "process":
        from gateway.supervisor import Supervisor

        return Supervisor(config, workers).run()
    if workers > 1:
        log.error(
            "--workers %d with storage.loader: inline: only one process may write the store; "
            "drop storage.loader (several workers use a store process) or set it to process", workers
        )  # fmt: skip
        return 2
    server = GatewayServer(uvicorn_config(config, pricer))
    server.run()
    return 0
