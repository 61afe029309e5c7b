"""Creating the folders storage writes into, with one clear line when a path cannot be one.

A `storage.path` or `storage.journal_dir` that runs through a regular file, or a folder the gateway
may not create, would otherwise surface as a Python traceback from deep in the store's start.
`make_folder` raises `StorageError` naming the setting, the path and what is in the way, which
`meterway serve` and the store commands print as their one error line.
"""

from __future__ import annotations

from pathlib import Path

from storage.errors import StorageError


def file_in_the_way(path: Path) -> Path | None:
    """The first of `path` and its parents, from the root down, that exists but is not a folder."""
    for part in (*reversed(path.parents), path):
        if part.exists() and not part.is_dir():
            return part
    return None


def make_folder(folder: Path, what: str) -> None:
    """Create `folder` and its parents unless they exist; `what` names the setting it is for."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = file_in_the_way(folder)
        if blocker == folder:
            raise StorageError(f"{what}: {folder} is a file, not a folder") from None
        why = f"{blocker} is a file, not a folder" if blocker is not None else exc.strerror or str(exc)
        raise StorageError(f"{what}: cannot create the folder {folder}: {why}") from None
