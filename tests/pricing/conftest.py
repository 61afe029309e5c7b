"""Fixtures for the pricing tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_book(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML text to a file under a temporary folder and return its path."""

    def write(text: str, name: str = "book.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
