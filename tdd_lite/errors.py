"""User-facing errors: one exception family and the argparse value checkers every subcommand shares.

Library code raises :class:`DataError` (bad file or folder: exit 1) or :class:`UsageError` (bad argument,
option or combination: exit 2) with a message that names the file, line or option and what was expected.
``tdd_lite.cli`` turns them into one line, ``tdd-lite CMD: error: MESSAGE``, and a traceback only with
``--debug`` or ``TDD_DEBUG=1``.

Both subclass ``ValueError`` so code that already catches ``ValueError`` keeps working.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
from types import ModuleType

# Largest frame we agree to allocate from a command-line size or a file header (8K UHD is 7680x4320).
MAX_FRAME_SIDE = 8192
MAX_FRAME_PIXELS = 7680 * 4320


class TddError(ValueError):
    """Base of the user-facing errors; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class DataError(TddError):
    """A file or folder is missing, unreadable or malformed (exit 1)."""

    exit_code = 1


class UsageError(TddError):
    """An argument, option or combination of them is wrong (exit 2)."""

    exit_code = 2


class OutputExistsError(UsageError, FileExistsError):
    """An output path exists and is not this command's to replace (a file, a link, a folder holding files the
    command did not write, a folder another command made): exit 2; also a ``FileExistsError``."""

    __str__ = UsageError.__str__


class CheckpointError(DataError):
    """A checkpoint is unreadable, corrupted (checksum mismatch) or does not fit the run (exit 1)."""


class MissingDataError(DataError, FileNotFoundError):
    """A data root, video folder or file that does not exist (a :class:`DataError`, also a FileNotFoundError)."""

    __str__ = DataError.__str__


def require_module(name: str, package: str, extra: str, purpose: str) -> ModuleType:
    """Import the optional module ``name``, or raise a one-line :class:`UsageError` saying which install gives it
    (``pip install ".[EXTRA]"`` from the repository, or ``pip install PACKAGE``). The runtime install
    (``pip install .``) does not carry the notebook and course toolchain; see the extras in ``pyproject.toml``."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is None or not (name == err.name or name.startswith(err.name + ".")):
            raise  # the module is there but something it imports is not: its own error says what
        raise UsageError(f"{purpose} needs {package}, which is not installed: pip install \".[{extra}]\" "
                         f"from the repository (or pip install {package})") from err


def debug_enabled() -> bool:
    """``TDD_DEBUG`` set to a true-ish value: show tracebacks."""
    return os.environ.get("TDD_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


# ----------------------------------------------------------------------------- argparse value types
def _int(text: str) -> int:
    t = text.strip()
    if not t.isascii() or not t.lstrip("+-").isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    return int(t)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return v


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 0")
    return v


def bounded_int(low: int, high: int):
    """argparse type factory: an integer in [low, high]."""

    def check(text: str) -> int:
        v = _int(text)
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from {low} to {high}")
        return v

    check.__name__ = f"int[{low},{high}]"
    return check


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return v


def crop_size(text: str) -> int:
    """argparse type: a square crop side in pixels, 32 (ResNet-18 downsamples by 32) to 1024."""
    v = _int(text)
    if not 32 <= v <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a crop size from 32 to 1024 pixels")
    return v


def frame_size(text: str) -> tuple[int, int]:
    """argparse type: ``WxH`` (or one number for a square), each side 16..MAX_FRAME_SIDE, bounded area."""
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WxH, e.g. 256x256")
    try:
        w, h = (_int(p) for p in parts)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WxH with whole numbers, e.g. 256x256") from None
    if not (16 <= w <= MAX_FRAME_SIDE and 16 <= h <= MAX_FRAME_SIDE) or w * h > MAX_FRAME_PIXELS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: each side must be 16..{MAX_FRAME_SIDE} pixels and the area at most "
            f"{MAX_FRAME_PIXELS} pixels (8K UHD)")
    return w, h
