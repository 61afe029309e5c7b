"""A private Postgres server for the DuckLake tests: `initdb` + `pg_ctl` on a free 127.0.0.1 port.

The binaries come from Debian's `postgresql` package (/usr/lib/postgresql/<version>/bin). Postgres
refuses to run as root, so as root the cluster belongs to the `postgres` system user the package
creates, and every command runs through `runuser`. A missing binary or user fails the test: the
DuckLake tests need a real server. The server is stopped by `pg_ctl stop` (which signals the pid in
`postmaster.pid`) and its folder removed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.process import free_port

USER = "meterway"  # the cluster's superuser


@dataclass(frozen=True, slots=True)
class Postgres:
    port: int
    bindir: Path

    def catalog(self, dbname: str = "postgres") -> str:
        return f"postgres:dbname={dbname} host=127.0.0.1 port={self.port} user={USER}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its catalog string."""
        args = [str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode:
            raise RuntimeError(f"createdb {name} failed: {done.stdout}{done.stderr}")
        return self.catalog(name)


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("Postgres is not installed (no /usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    return Path(found[-1]).parent


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    bindir = _bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="meterway-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root needs the 'postgres' system user (created by the postgresql package)")
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode:
            log = (folder / "server.log").read_text() if (folder / "server.log").exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}{log}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8", "--no-sync")
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off -c max_connections=200"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"), "-w",
            "-t", "60", "start")  # fmt: skip
        yield Postgres(port, bindir)
    finally:
        if (data / "postmaster.pid").exists():
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(folder, ignore_errors=True)
