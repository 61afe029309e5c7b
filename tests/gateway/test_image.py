"""The Docker image, built step by step from the Dockerfile without Docker.

The Dockerfile's build stage copies sources into /src and builds a wheel; the final stage installs
that wheel, copies the config and price book into /app and runs `meterway serve` there. This test
reads the Dockerfile and does the same under a temporary root: it copies exactly what the
Dockerfile copies, builds the wheel from that copy, installs it into a fresh virtual environment
that sees this checkout's dependencies but not its sources, and serves the demo model from the
copied /app. A package left out of the image, or a file the installed gateway needs and the wheel
lacks, fails here as it would in the container.
"""

from __future__ import annotations

import json
import shlex
import shutil
import site
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx

from tests.support.process import GatewayProcess, free_port

REPO = Path(__file__).resolve().parents[2]


def read_stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, (KEYWORD, arguments), one list per stage."""
    text = dockerfile.read_text().replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), rest.strip()))
    return stages


def run_copies(stage: list[tuple[str, str]], root: Path) -> Path:
    """Carry out the stage's WORKDIR, context COPY and `mkdir` steps under `root`; the last workdir."""
    workdir = root
    for keyword, args in stage:
        if keyword == "WORKDIR":
            workdir = root / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY" and not args.startswith("--from"):
            *sources, dest = shlex.split(args)
            target = root / dest.lstrip("/") if dest.startswith("/") else workdir / dest
            for source in sources:
                src = REPO / source
                assert src.exists(), f"the Dockerfile copies {source}, which the checkout does not have"
                into = target / src.name if len(sources) > 1 or dest.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, into, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(src, into)
        elif keyword == "RUN" and args.startswith("mkdir -p"):
            for path in shlex.split(args.split("&&")[0])[2:]:
                (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return workdir


def test_image_built_from_the_dockerfile_serves_and_meters_the_demo_model(tmp_path: Path) -> None:
    build, final = read_stages(REPO / "Dockerfile")
    root = tmp_path / "root"

    # Build stage: the copied sources, and `pip wheel .` in them.
    src = run_copies(build, root)
    assert any(k == "RUN" and "pip wheel" in a for k, a in build), "the build stage no longer builds a wheel"
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels),
         str(src)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("meterway-*.whl")

    # Final stage: install the wheel into a Python of its own, whose dependencies are this
    # checkout's but which cannot import this checkout's sources.
    assert any(k == "RUN" and "pip install" in a and "/wheels/" in a for k, a in final)
    python_home = tmp_path / "image-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(python_home)], check=True, timeout=120)
    python = python_home / "bin" / "python"
    image_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout.strip()
    )  # fmt: skip
    (image_site / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    where = subprocess.run(
        [str(python), "-c", "import gateway.app, governance, reconcile; print(gateway.app.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert where.returncode == 0, f"the installed wheel cannot import the gateway:\n{where.stderr}"
    assert Path(where.stdout.strip()).is_relative_to(image_site), where.stdout

    app = run_copies(final, root)
    env = dict(a.split("=", 1) for k, a in final if k == "ENV")
    cmd = json.loads(next(a for k, a in final if k == "CMD"))
    health = next(a for k, a in final if k == "HEALTHCHECK")
    health_path = health.split("127.0.0.1:8080", 1)[1].split("'", 1)[0]
    assert cmd[:2] == ["meterway", "serve"]
    args = [root / a.lstrip("/") if a.startswith("/app/") else a for a in cmd[1:]]

    port = free_port()
    env["MW_HOST"] = "127.0.0.1"  # the image listens on every interface; the test stays on loopback
    proc = GatewayProcess(
        [*map(str, args), "--port", str(port)], cwd=app, env=env,
        command=[str(python), str(python_home / "bin" / "meterway")], log=tmp_path / "gateway.log",
    )  # fmt: skip
    proc.env.pop("PYTHONPATH", None)
    base = f"http://127.0.0.1:{port}"
    proc.start(base + health_path)
    try:
        reply = httpx.post(
            base + "/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": "Hello from the image"}]},
            headers={"X-Tenant-Id": "image"},
            timeout=30,
        )
        metrics = httpx.get(base + "/metrics", timeout=30).text
    finally:
        assert proc.terminate() == 0, (tmp_path / "gateway.log").read_text()
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"]
    assert float(reply.headers["x-meterway-cost"]) > 0
    assert "meterway_requests_total{" in metrics and 'tenant="image"' in metrics
    with duckdb.connect(str(app / "data" / "meterway.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT tenant_id, provider, pricing_status FROM llm_usage_events").fetchall()
    assert rows == [("image", "demo", "priced")]
