"""Shared pytest fixtures and paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BIN = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" if os.environ.get("VIRTUAL_ENV") else None


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def venv_bin(name: str) -> str:
    """Path of a console script next to the running interpreter (the project's .venv under `make`)."""
    import sys

    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
