"""DuckDB extensions loaded from Python packages, never downloaded at run time.

The `duckdb-extension-<name>` wheels (pinned to the same version as `duckdb`) carry the compiled
extension as `duckdb_extension_<name>/extensions/v<duckdb version>/<name>.duckdb_extension`. DuckDB
derives an extension's entry point from its file name, and some names differ from the package's
(`postgres` is `postgres_scanner` inside), so each file is linked under its real name in a private
folder and LOADed from that path. Connections are opened with autoinstall and autoload off, so a
missing extension is an error that names the package to install, not a download attempt.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import duckdb

# extension -> (Python package, file name inside it, the name DuckDB expects)
PACKAGED = {
    "ducklake": ("duckdb_extension_ducklake", "ducklake", "ducklake"),
    "postgres": ("duckdb_extension_postgres", "postgres", "postgres_scanner"),
    "httpfs": ("duckdb_extension_httpfs", "httpfs", "httpfs"),
}
OFFLINE = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class ExtensionError(Exception):
    """An extension is not installed as a Python package; the message says which one to install."""


def packaged_file(name: str) -> Path:
    """The extension file shipped by its Python package, for the running DuckDB version."""
    package, stem, _ = PACKAGED[name]
    dist = package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    wanted = f"pip install {dist}=={duckdb.__version__}"
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(f"the DuckDB extension {name!r} is not installed: {wanted}")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "extensions" / f"v{duckdb.__version__}" / f"{stem}.duckdb_extension"
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in (root / "extensions").glob("v*"))) or "none"
        raise ExtensionError(f"{dist} does not match duckdb {duckdb.__version__} (it has {found}): {wanted}")
    return path


class ExtensionLoader:
    """Loads packaged extensions into connections; owns the private folder of links to them."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="meterway-duckdb-ext-"))

    def load(self, con: duckdb.DuckDBPyConnection, *names: str) -> None:
        for name in names:
            target = self._dir / f"{PACKAGED[name][2]}.duckdb_extension"
            if not target.exists():
                source = packaged_file(name)
                try:
                    os.symlink(source, target)
                except OSError:  # a filesystem without symlinks
                    shutil.copyfile(source, target)
            con.execute(f"LOAD '{target}'")

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
