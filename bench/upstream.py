"""A fast fake LLM upstream for the benchmark: nginx returning fixed OpenAI-style bodies.

`POST /json/v1/chat/completions` answers a chat.completion JSON (usage 20/10/30);
`POST /stream/v1/chat/completions` answers an SSE stream of 20 chunks (role, 18 content deltas,
finish), a usage-only chunk and `data: [DONE]`. nginx answers far faster than any Python gateway,
so it is never the bottleneck.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}


def json_body() -> str:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                     "finish_reason": "stop"}],
        "usage": USAGE,
    }, separators=(",", ":"))  # fmt: skip


def sse_body() -> str:
    def chunk(delta: dict[str, object], finish: str | None = None) -> str:
        obj = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
        return "data: " + json.dumps(obj, separators=(",", ":")) + "\n\n"

    words = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?", " I", " am", " a", " fake",
             " model", " for", " the", " bench", "."]  # fmt: skip
    parts = [chunk({"role": "assistant", "content": ""})] + [chunk({"content": w}) for w in words]
    parts.append(chunk({}, "stop"))
    usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": MODEL,
             "choices": [], "usage": USAGE}  # fmt: skip
    parts.append("data: " + json.dumps(usage, separators=(",", ":")) + "\n\n")
    parts.append("data: [DONE]\n\n")
    return "".join(parts)


def _return(body: str, ctype: str) -> str:
    pieces = [body[i : i + 3000] for i in range(0, len(body), 3000)]
    sets = "".join(f"      set $p{i} '{p}';\n" for i, p in enumerate(pieces))
    joined = "".join(f"$p{i}" for i in range(len(pieces)))
    return f'{sets}      default_type {ctype};\n      return 200 "{joined}";\n'


def claim(port: int) -> None:
    """Stop unless nothing listens on 127.0.0.1:`port`: a server left there (another benchmark, a soak)
    would answer the load in place of the one about to start, and its figures be taken for this run's."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections closed a moment ago do not count
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise SystemExit(f"port {port} is taken ({exc.strerror}): is another benchmark or soak running?") from exc


def nginx_conf(prefix: Path, port: int) -> str:
    return f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  client_body_buffer_size 64k;
  server {{
    listen 127.0.0.1:{port};
    location /json/ {{
{_return(json_body(), "application/json")}    }}
    location /stream/ {{
{_return(sse_body(), "text/event-stream")}    }}
  }}
}}
"""


class NginxUpstream:
    def __init__(self, prefix: Path, port: int) -> None:
        self.prefix, self.port = prefix, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(nginx).exists():
            raise SystemExit("the benchmark needs nginx and wrk: apt-get install nginx wrk")
        claim(self.port)
        self.prefix.mkdir(parents=True, exist_ok=True)
        (self.prefix / "logs").mkdir(exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(nginx_conf(self.prefix, self.port))
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.prefix), "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
