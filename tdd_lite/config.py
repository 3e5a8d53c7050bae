"""Run mode and device: the one place every notebook, script and test reads its speed knob from.

``TDD_FAST=1`` (CI, a laptop CPU): small images, few steps, minutes in total.
``TDD_FAST`` unset or ``0``: the full run as in the paper (256 px, batch 20, 500 epochs; a GPU).
"""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

import torch

from tdd_lite.errors import UsageError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def fast_mode() -> bool:
    """True when ``TDD_FAST`` asks for the quick CPU mode.

    Raises :class:`~tdd_lite.errors.UsageError` (a ``ValueError``) for a value that is neither true-ish nor
    false-ish, so a typo such as ``TDD_FAST=ture`` does not silently start a 500-epoch run.
    """
    raw = os.environ.get("TDD_FAST", "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise UsageError(f"TDD_FAST={raw!r}: expected 1/true/yes/on or 0/false/no/off (or unset)")


class DeviceUnavailableError(UsageError, RuntimeError):
    """The requested device does not exist here (a usage error, exit 2; also a RuntimeError as it used to be)."""


_DEVICE_NAME = re.compile(r"^(cpu|cuda|cuda:\d{1,3}|mps)$")


def device_name(text: str) -> str:
    """argparse type for ``--device``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (availability is checked later)."""
    t = text.strip().lower()
    if not _DEVICE_NAME.match(t):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: expected cpu, cuda, cuda:N or mps")
    return t


def available_devices() -> list[str]:
    """The device names this machine can run on (``cpu`` first)."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return names


def pick_device(requested: str | None = None) -> torch.device:
    """Device to run on: ``requested`` (e.g. ``"cuda:1"``), else ``TDD_DEVICE``, else CUDA if present, else CPU.

    A device this machine does not have (or a name that is not a device) is a
    :class:`~tdd_lite.errors.UsageError` naming where the request came from and what is available.
    """
    env = os.environ.get("TDD_DEVICE", "").strip()
    if requested:
        name, source = requested, f"--device {requested}"
    elif env:
        name, source = env, f"TDD_DEVICE={env}"
    else:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    have = ", ".join(available_devices())
    try:
        name = device_name(name)
    except argparse.ArgumentTypeError as e:
        raise UsageError(f"{source}: {e} (this machine has: {have})") from None
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(f"{source}: CUDA is not available on this machine (available: {have}); "
                                         + ("use --device cpu" if requested else "set TDD_DEVICE=cpu or unset it"))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"{source}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                                         f"(available: {have})")
    if dev.type == "mps" and "mps" not in available_devices():
        raise DeviceUnavailableError(f"{source}: MPS is not available on this machine (available: {have})")
    return dev


def default_threads() -> int:
    """CPU threads for torch when the user did not choose (``OMP_NUM_THREADS`` or ``TDD_THREADS``): the cores
    this process may use minus those other work keeps busy now (:func:`busy_cores`), at least 1.

    Why: torch's OpenMP threads spin-wait at every parallel region. When another job holds a core, a thread
    per core makes every op wait for the descheduled one: on a 2-core machine with one competing process,
    tracking and training ran several times slower with 2 threads than with 1 (``benchmarks/bench_threads.py``
    prints the ratios). An idle machine still gets every core.
    """
    env = os.environ.get("TDD_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise UsageError(f"TDD_THREADS={env!r}: expected a positive integer")
        return n
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()  # torch already follows it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, cores - busy_cores()))


def busy_cores(samples: int = 5) -> int:
    """How many cores other work keeps busy now: the runnable tasks of ``/proc/loadavg`` (its 4th field, an
    instantaneous count that includes this process), minus this one, median of a few samples 20 ms apart;
    elsewhere the 1-minute load average (which lags by a minute)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            break
        if i + 1 < samples:
            time.sleep(0.02)
    if counts:
        return max(0, sorted(counts)[len(counts) // 2])
    try:
        return int(os.getloadavg()[0] + 0.5)
    except (AttributeError, OSError):
        return 0


def apply_default_threads() -> int:
    """Set torch's intra-op threads to :func:`default_threads` (what every ``tdd-lite`` command does first)."""
    n = default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def describe_run() -> str:
    """One line saying which mode and device this process runs in (every notebook prints it first; under 100
    characters on a CPU, so that it fits the book's column).

    It also applies :func:`apply_default_threads`, so a notebook on a busy machine does not make torch's threads
    spin-wait (measured in a book build while a training ran: notebook 03 took 187 s instead of 17)."""
    mode = "FAST (TDD_FAST=1: CPU minutes)" if fast_mode() else "FULL (paper-sized run)"
    dev = pick_device()
    extra = f" [{torch.cuda.get_device_name(dev)}]" if dev.type == "cuda" else ""
    threads = apply_default_threads()
    return f"tdd_lite mode: {mode}; device: {dev}{extra}; torch {torch.__version__}, {threads} CPU thread(s)"


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
