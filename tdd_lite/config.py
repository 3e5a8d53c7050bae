"""Run mode and device: the one place every notebook, script and test reads its speed knob from.

``TDD_FAST=1`` (CI, a laptop CPU): small images, few steps, minutes in total.
``TDD_FAST`` unset or ``0``: the full run as in the paper (256 px, batch 20, 500 epochs; a GPU).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def fast_mode() -> bool:
    """True when ``TDD_FAST`` asks for the quick CPU mode.

    Raises ``ValueError`` for a value that is neither true-ish nor false-ish, so a typo such as
    ``TDD_FAST=ture`` does not silently start a 500-epoch run.
    """
    raw = os.environ.get("TDD_FAST", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"TDD_FAST={raw!r}: expected 1/true/yes/on or 0/false/no/off (or unset)")


def pick_device(requested: str | None = None) -> torch.device:
    """Device to run on: ``requested`` (e.g. ``"cuda:1"``), else ``TDD_DEVICE``, else CUDA if present, else CPU."""
    name = requested or os.environ.get("TDD_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return dev


def describe_run() -> str:
    """One line saying which mode and device this process runs in (every notebook prints it)."""
    mode = "FAST (TDD_FAST=1: CPU-sized, minutes)" if fast_mode() else "FULL (paper-sized run)"
    dev = pick_device()
    extra = f" [{torch.cuda.get_device_name(dev)}]" if dev.type == "cuda" else ""
    return f"tdd_lite mode: {mode}; device: {dev}{extra}; torch {torch.__version__}"


def work_dir(*parts: str) -> Path:
    """Where notebooks and commands put generated data, checkpoints and figures (created on demand).

    ``TDD_WORK_DIR`` if set; else ``_build/`` of the source checkout this package runs from (so notebooks,
    whatever their working directory, share one Synth300VW and one checkpoint); else ``~/.cache/tdd_lite``.
    """

    env = os.environ.get("TDD_WORK_DIR")
    if env:
        base = Path(env)
    else:
        checkout = Path(__file__).resolve().parents[1]
        base = checkout / "_build" if (checkout / "pyproject.toml").exists() else Path.home() / ".cache" / "tdd_lite"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
