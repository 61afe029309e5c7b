"""The benchmark refuses a port something already listens on, rather than measure that server."""

from __future__ import annotations

import socket

import pytest

from bench.upstream import claim


def test_a_benchmark_stops_on_a_port_another_server_listens_on() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(SystemExit, match=f"port {port} is taken"):
            claim(port)
    claim(port)  # free again once that server is gone
