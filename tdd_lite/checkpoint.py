"""The trainer's checkpoint file (``OUT/checkpoint.pt``): its format, checksum, upgrades, saving and loading.

A checkpoint holds G, the three Ds, both optimizers and schedulers, the AMP scaler, the step and every RNG state
(torch, numpy, python; the data position is a function of the step), stored as tensors and plain types so
``torch.load(..., weights_only=True)`` reads them (nothing in the file can run code). What goes in is
:meth:`tdd_lite.train.Trainer.state_dict`; evaluation, tracking and the reference export read G back with
:func:`load_alignment_net` (this module never imports the trainer).

Trust (format ``tdd_lite.train/2``): every checkpoint carries a sha256 of its payload (:func:`payload_checksum`:
each tensor's dtype, shape and bytes and the JSON of every other value, walked in sorted-key order), checked at
load (``checksum mismatch`` names the file). Checkpoints of the older format ``tdd_lite.train/1`` have no
checksum: they are accepted with an :class:`UnverifiedCheckpointWarning` (and every structural check).

Upgrades: config fields added after checkpoints existed get the value every earlier run used
(:data:`ADDED_CONFIG_FIELDS`), removed ones are dropped (:data:`REMOVED_CONFIG_FIELDS`), both after the checksum
is verified (it covers the stored config). The stored config is then checked as
:meth:`tdd_lite.train_config.TrainConfig.validate` checks a new one: this is why this module imports
:mod:`tdd_lite.train_config` (the config dataclass and its rules, nothing of the trainer).

Saving (:func:`save_checkpoint`) is atomic (:func:`tdd_lite.files.atomic_write`): a save that fails (an
exception, SIGTERM or Ctrl-C during ``torch.save``) removes its temp file; the next save, and the trainer's
start, remove temp files left by processes that no longer run (SIGKILL), including the ``checkpoint.pt.tmp<pid>``
names of older versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
import warnings
from pathlib import Path

import torch
from torch import Tensor

from tdd_lite.errors import CheckpointError
from tdd_lite.files import atomic_write, remove_stale_temp_files
from tdd_lite.morphable import MorphableModel
from tdd_lite.network import AlignmentNet
from tdd_lite.train_config import TrainConfig

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "tdd_lite.train/2"  # /2: with a payload checksum
OLD_CHECKPOINT_FORMATS = ("tdd_lite.train/1",)  # no checksum: accepted with a warning
# config fields added after checkpoints existed, with the value every run before them used (the checksum covers the
# stored config, so the default is filled in after verification)
ADDED_CONFIG_FIELDS = {"jitter_shift": 0.05, "jitter_scale": 0.05, "land_prev": False, "init_from": None,
                       "real_disp": "paper"}
# config fields that existed once and are dropped on load: ``debug_nan_step`` was a test hook (NaN injection)
REMOVED_CONFIG_FIELDS = ("debug_nan_step",)


class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint of the old format (no checksum) was loaded: its bytes could not be verified."""


def one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _feed(h, obj) -> None:
    """Hash ``obj`` structurally: tensors by dtype, shape and bytes; everything else as typed JSON."""
    if isinstance(obj, Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(f"{{{len(obj)}|".encode())
        for k in sorted(obj, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(f"[{len(obj)}|".encode())
        for x in obj:
            _feed(h, x)
        h.update(b"]")
    else:
        plain = obj if isinstance(obj, str | int | float | bool) or obj is None else repr(obj)
        h.update(f"{type(obj).__name__}:".encode() + json.dumps(plain).encode() + b"|")


def payload_checksum(state: dict) -> str:
    """``sha256:HEX`` over every field of a checkpoint except ``checksum`` itself (deterministic order)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "checksum"})
    return "sha256:" + h.hexdigest()


def seal_checkpoint(state: dict) -> dict:
    """``state`` with its ``checksum`` field (re)computed."""
    out = {k: v for k, v in state.items() if k != "checksum"}
    out["checksum"] = payload_checksum(out)
    return out


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` (a payload sealed by :func:`seal_checkpoint`) to ``path`` atomically
    (:func:`tdd_lite.files.atomic_write`: a temp file beside it, then a rename). A failed write (an exception, or
    SIGTERM/Ctrl-C turned into one) removes its temp file; temp files of processes that no longer run (killed with
    SIGKILL) are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path.parent, path.name)
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


# field -> expected type of a checkpoint's top level
_CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "config": dict, "step": int, "total_steps": int, "world_size": int, "n_id": int, "n_exp": int,
    "G": dict, "D": dict, "opt_g": dict, "opt_d": dict, "sched_g": dict, "sched_d": dict, "scaler": dict,
    "rng": dict}


def load_checkpoint(path: str | Path) -> dict:
    """Read and verify a trainer checkpoint; :class:`CheckpointError` (naming the file) if it is unusable.

    ``weights_only=True`` (nothing in the file can run code); the format tag; the payload checksum
    (``checksum mismatch``); the fields, their types, the config (as :meth:`TrainConfig.validate` checks it),
    ``0 <= step <= total_steps``.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a checkpoint file (e.g. {path / CHECKPOINT_NAME})")
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file (a FIFO or device?), expected a checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint (an interrupted copy?)")
    try:
        with warnings.catch_warnings():  # torch's own chatter about pickle protocols of a foreign file
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = one_line(e, 10_000)
        glob = re.search(r"(?:unsupported GLOBAL|Unsupported global:?)\s+(?:GLOBAL\s+)?([\w.]+)", text)
        if glob:
            raise CheckpointError(f"{path}: refused: the file references the Python object {glob.group(1)} "
                                  f"(loading it could run code); a checkpoint holds only tensors and plain "
                                  f"values") from e
        why = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        raise CheckpointError(f"{path}: cannot read checkpoint: not a PyTorch file, truncated or corrupted? "
                              f"({why.group(1) if why else one_line(e, 160)})") from e
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"{path}: cannot read checkpoint: not a complete PyTorch file, truncated or "
                              f"corrupted? ({type(e).__name__}: {one_line(e, 160)})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a tdd_lite training checkpoint (it holds a {type(state).__name__})")
    fmt = state.get("format")
    if fmt in OLD_CHECKPOINT_FORMATS:
        warnings.warn(f"{path}: checkpoint format {fmt} has no checksum, its contents cannot be verified "
                      f"(save it again with this version to add one)", UnverifiedCheckpointWarning, stacklevel=2)
    elif fmt != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a tdd_lite training checkpoint (format tag {fmt!r}, "
                              f"expected {CHECKPOINT_FORMAT!r})")
    else:
        stored = state.get("checksum")
        if not isinstance(stored, str):
            raise CheckpointError(f"{path}: format {fmt} but no checksum field: the file was altered")
        actual = payload_checksum(state)
        if stored != actual:
            raise CheckpointError(f"{path}: checksum mismatch (stored {stored[:19]}..., contents {actual[:19]}...): "
                                  f"the file is corrupted or was modified; do not use it")
    missing = [k for k in _CHECKPOINT_FIELDS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {', '.join(missing)}")
    for k, want in _CHECKPOINT_FIELDS.items():
        if not isinstance(state[k], want) or (want is int and isinstance(state[k], bool)):
            raise CheckpointError(f"{path}: field {k!r} is a {type(state[k]).__name__}, expected {want.__name__}")
    cfg = state["config"]
    for k, v in ADDED_CONFIG_FIELDS.items():  # checkpoints written before a field existed ran with its old value
        cfg.setdefault(k, v)
    for k in REMOVED_CONFIG_FIELDS:  # fields that no longer exist (they changed nothing a checkpoint holds)
        cfg.pop(k, None)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown, absent = sorted(set(cfg) - known), sorted(known - set(cfg))
    if unknown or absent:
        raise CheckpointError(f"{path}: config fields do not match this version (unknown {unknown}, missing "
                              f"{absent})")
    try:
        TrainConfig(**cfg).validate()
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad config in the checkpoint: {one_line(e)}") from e
    for k in ("total_steps", "world_size", "n_id", "n_exp"):
        if state[k] < 1:
            raise CheckpointError(f"{path}: {k}={state[k]}, expected a positive integer")
    if not 0 <= state["step"] <= state["total_steps"]:
        raise CheckpointError(f"{path}: step {state['step']} is outside 0..{state['total_steps']} (its total steps)")
    return state


def load_alignment_net(path: str | Path, model3dmm: MorphableModel, device: str | torch.device = "cpu",
                       state: dict | None = None) -> AlignmentNet:
    """G from a trainer checkpoint, in eval mode (what evaluation, tracking and later notebooks use).

    ``state``: what :func:`load_checkpoint` already returned for ``path`` (saves reading the file twice).
    """
    path = Path(path)
    state = load_checkpoint(path) if state is None else state
    if (state["n_id"], state["n_exp"]) != (model3dmm.n_id, model3dmm.n_exp):
        raise CheckpointError(f"{path}: G was trained for a 3DMM with {state['n_id']} identity + {state['n_exp']} "
                              f"expression modes, this 3DMM has {model3dmm.n_id} + {model3dmm.n_exp}")
    net = AlignmentNet(n_id=state["n_id"], n_exp=state["n_exp"])
    try:
        net.load_state_dict(state["G"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: G's weights do not fit the network ({one_line(e)})") from e
    for name, t in state["G"].items():
        if isinstance(t, Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: G weight {name} holds NaN/inf values")
    return net.to(device).eval()
