"""Token estimation works offline: the encoding ships with the installed packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.estimate import count_prompt, count_tokens

REPO = Path(__file__).resolve().parents[2]

NO_NETWORK = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from gateway.estimate import count_tokens
print(count_tokens("Hello world, how are you?"))
"""


def test_estimation_needs_no_network_and_no_cache(tmp_path: Path) -> None:
    env = {"TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", NO_NETWORK], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7"


def test_counts_are_cl100k() -> None:
    assert count_tokens("") == 0
    assert count_tokens("Hello world, how are you?") == 7
    assert count_tokens("成本透明") >= 2
    body = {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi"}]}
    assert count_prompt("Hello\nHi", body) == count_tokens("Hello\nHi") + 6
