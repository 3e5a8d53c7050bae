"""Shared pytest set-up and paths."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # tests draw figures without a display (notebooks keep their inline backend)
# `make test` runs two pytest workers on two cores: one BLAS/OpenMP thread each avoids oversubscription
# (a float64 gradcheck took 4-35 s under contention and 0.1 s with one thread).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def venv_bin(name: str) -> str:
    """Path of a console script next to the running interpreter (the project's .venv under `make`)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name
