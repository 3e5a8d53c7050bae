"""The adversarial trainer (paper section 3.2.4 and 4.1): G against D_ID, D_ED and D_TD, alternating.

One iteration on a batch of frame pairs ``(I, I', U, U')`` (both frames cropped with ONE box, erratum 7):

1. **G forward, once, on I and I' together** (Fig. 2: the previous frame goes through the same G, shared
   weights): ``(alpha_id, alpha_exp, camera)`` for both, then ``v, v', v_exp, v_id`` and the six
   displacements (:mod:`tdd_lite.displacement`).
2. **D step, G frozen**: the displacements are *detached* (no gradient reaches G); each enabled D gets
   ``BCE(D(real), 1) + BCE(D(fake), 0)`` (eq. 6/11/14, erratum 1), summed with the lambdas (eq. 15); only
   the D optimizer steps.
3. **G step, D frozen**: the (freshly updated) Ds are evaluated on the *non-detached* fakes with their
   parameters detached (``torch.func.functional_call``), so no gradient and no DDP hook ever touches a D in
   this step; ``L_G = L_land + sum lambda * (-log D(fake))`` (eq. 1, 16-19, erratum 2); only G's optimizer
   steps.

Reusing one G forward for both steps is what makes the full step cost little more than the bare backbone's
forward+backward (see ``benchmarks/bench_train_step.py``).

Choices (the paper leaves them open):

* **Learning rate**: Adam, 1e-3 decaying to 1e-5 at the last step ("gradually decreased to 0.00001 over
  time"), by default along a **cosine** (``schedule="cosine"``: stays near 1e-3 for longer, which matters for
  short runs); ``schedule="exponential"`` is the other natural reading. The Ds use the same optimizer and
  schedule.
* **Eq. 1's norm**: one Euclidean norm of the whole (68, 2) difference per image (the literal reading; see
  :func:`tdd_lite.losses.landmark_loss`). Measured on Synth300VW at 64 px: with the per-landmark-mean reading
  the gradient of ``0.1 * L_G_ID`` / ``0.1 * L_G_ED`` on G's heads was 0.6x / 1.3x that of ``L_land`` after
  60 D steps (the Ds see ``x_ID = (U - v) + x_z,ID``: the residual of an imperfect G makes the real input
  easy to spot), and every run diverged (landmark error up 3-4x within 150 steps). With the literal norm the
  landmark gradient is sqrt(68) ~ 8x larger, lambda = 0.1 is a small weight again, and training is stable.
* **Batch**: ``batch_size`` is the global batch (20, as in the paper), split evenly over DDP processes.
* **Mixed precision**: ``torch.autocast`` (float16) + ``GradScaler`` for G's forward on CUDA only; the 3DMM,
  the projection, the Ds and all losses run in float32. Channels-last memory format for G.
* Two switches beyond the paper, off in ``paper``: ``adv_warmup`` (ramp G's adversarial weights from 0 over a
  fraction of the run) and ``adv_camera_grad=False`` (D_ID/D_ED's gradient reaches only alpha_id/alpha_exp).

Configs: ``paper`` (256 px, batch 20, 500 epochs, GPU), ``fast`` (CPU, 64 px, 1500 steps, JPEG frame cache),
``smoke`` (seconds, tests). ``--steps N`` overrides the number of steps (the lr schedule then spans N steps).
Measured on this project's 2-core CPU (quiet machine): ``--config fast --synth-if-missing`` (160 videos x 25
frames, seed 0) lowered the validation NME (held-out test videos A+B+C, GT crops, bbox normalisation) from
14.65% to 6.58% at the last step (0.45x; best 6.35% at step 1200): 332 s of training, 7 min 24 s in all with
the generation and the one-time frame cache. An earlier set of 100 videos x 40 frames (same number of frames,
fewer identities) only reached 14.35% -> 7.21% (0.50x): identities matter more than frames per video.
Held-out NME is noisy at this scale (+-0.3 between evaluations). ``--config paper --steps 2`` ran in
32 s (3.7 s/step at 256 px, batch 20).

Commands::

    tdd-lite train --config fast  --data _build/data/synth-fast --synth-if-missing   # CPU, ~6 minutes
    tdd-lite train --config paper --data /data/300VW               # one GPU
    tdd-lite train --config paper --data /data/300VW --resume      # continue exactly where it stopped
    tdd-lite train --config paper --data /data/300VW --no-td       # an ablation row of Table 3

    # several GPUs on one machine (DistributedDataParallel, one process per GPU):
    torchrun --standalone --nproc_per_node=4 -m tdd_lite.train --config paper --data /data/300VW
    # several machines (run on each; node 0's address as the rendezvous endpoint):
    torchrun --nnodes=2 --nproc_per_node=4 --node_rank=R --rdzv_backend=c10d \\
        --rdzv_endpoint=HOST0:29500 --rdzv_id=tdd -m tdd_lite.train --config paper --data /data/300VW

Under ``torchrun`` each process trains on its share of every batch (``DistributedSampler``); G and each D
are wrapped separately in ``DistributedDataParallel``; rank 0 alone evaluates, logs and writes checkpoints.
Backend: NCCL on CUDA, gloo on CPU. BatchNorm statistics are per process (rank 0's are saved); consider
``nn.SyncBatchNorm`` if each GPU gets only a few samples. A DDP ``--resume`` restores weights, optimizers,
schedules and the data position exactly, but the checkpoint holds rank 0's RNG state only, so dropout masks
after a multi-process resume differ from the uninterrupted run (the single-process resume is bit-exact).

Checkpoints (``OUT/checkpoint.pt``) hold G, the three Ds, both optimizers and schedulers, the AMP scaler,
the step and every RNG state (torch, numpy, python; the data position is a function of the step), stored as
tensors and plain types so ``torch.load(..., weights_only=True)`` reads them. ``--resume`` continues exactly
(tested: N steps == N/2 + resume + N/2, bit for bit, on the CPU in one process).

Trust (format ``tdd_lite.train/2``): every checkpoint carries a sha256 of its payload (:func:`payload_checksum`:
each tensor's dtype, shape and bytes and the JSON of every other value, walked in sorted-key order), checked at
load (``checksum mismatch`` names the file). Checkpoints of the older format ``tdd_lite.train/1`` have no
checksum: they are accepted with an :class:`UnverifiedCheckpointWarning` (and every structural check).
``--resume`` refuses a checkpoint whose config differs in anything that changes the model or the data
(:data:`RESUME_FREE_FIELDS` lists the few that may change) and names each field with both values. A save that
fails (an exception, SIGTERM or Ctrl-C during ``torch.save``) removes its temp file; the next save, and the
trainer's start, remove ``checkpoint.pt.tmp<pid>`` files left by processes that no longer run (SIGKILL).
On resume ``metrics.jsonl`` is cut back (atomically) to the resumed step, so no step is logged twice.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import random
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from tdd_lite import displacement as disp
from tdd_lite import losses
from tdd_lite.config import default_threads, describe_run, device_name, fast_mode, pick_device
from tdd_lite.discriminators import DISCRIMINATOR_NAMES, DisplacementDiscriminator
from tdd_lite.errors import CheckpointError, DataError, TddError, UsageError, bounded_int
from tdd_lite.files import remove_stale_temp_files
from tdd_lite.morphable import MorphableModel
from tdd_lite.network import AlignmentNet, predict_landmarks

CONFIG_NAMES = ("paper", "reference", "fast", "ablation", "finetune", "smoke")
# the Synth300VW set `--synth-if-missing` writes: many identities (70 training videos), short videos
FAST_SYNTH = {"videos": 160, "frames": 25}
SCHEDULES = ("cosine", "exponential")
CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "tdd_lite.train/2"  # /2: with a payload checksum
OLD_CHECKPOINT_FORMATS = ("tdd_lite.train/1",)  # no checksum: accepted with a warning
METRICS_NAME = "metrics.jsonl"
# config fields that change neither the model nor the data a step sees: --resume may change these
RESUME_FREE_FIELDS = ("name", "eval_every", "log_every", "checkpoint_every", "num_workers", "frame_cache",
                      "val_samples", "val_split", "debug_nan_step")
# config fields added after checkpoints existed, with the value every run before them used (the checksum covers the
# stored config, so the default is filled in after verification)
ADDED_CONFIG_FIELDS = {"jitter_shift": 0.05, "jitter_scale": 0.05, "land_prev": False, "init_from": None,
                       "real_disp": "paper"}
REAL_DISPS = ("paper", "truth")
# which displacement pair each discriminator reads
_DISP_KEYS = {"id": ("real_id_disp", "fake_id_disp"), "exp": ("real_exp_disp", "fake_exp_disp"),
              "temporal": ("real_temporal_disp", "fake_temporal_disp")}


# ==================================================================================== configuration
@dataclass
class TrainConfig:
    """Everything a run depends on. Build with :func:`get_config`; :meth:`validate` names any bad value."""

    name: str = "paper"
    image_size: int = 256
    batch_size: int = 20  # global batch (split over DDP processes)
    epochs: float = 500.0  # used when ``steps`` is None
    steps: int | None = None
    lr: float = 1e-3
    lr_final: float = 1e-5
    schedule: str = "cosine"  # "cosine" or "exponential" decay from lr to lr_final over the run
    max_interval: int = 6  # frame interval drawn from 1..max_interval
    # Crop-box augmentation, as fractions of the box side: the centre moves by up to jitter_shift per axis and the
    # side scales by a factor in [1 - jitter_scale, 1 + jitter_scale]. Sized like the error of a previous
    # frame's estimate under tracking (measured on the fast checkpoint trained with 0.05/0.05: box-centre error
    # p90 6-7% of the side in A/B, box-scale error p90 16-52%), so G learns to correct an off crop instead of
    # copying its error into the next one (the paper crops training frames from the previous estimate).
    jitter_shift: float = 0.15
    jitter_scale: float = 0.25
    use_id: bool = True
    use_ed: bool = True
    use_td: bool = True
    lambda_id: float = losses.LAMBDA_ID
    lambda_ed: float = losses.LAMBDA_ED
    lambda_td: float = losses.LAMBDA_TD
    landmark_norm: str = "frobenius"  # reading of eq. 1's ||.||_2 (see tdd_lite.losses.landmark_loss)
    adv_warmup: float = 0.0  # fraction of the run over which G's adversarial weights ramp linearly from 0 to lambda
    adv_camera_grad: bool = True  # let D_ID/D_ED's adversarial gradient reach the camera (False: shape params only)
    # Eq. 1 on the previous frame I' too: G already runs on I' (Fig. 2, for D_TD), so its landmark loss is free
    # supervision (twice the labelled crops per step for the same forward pass). Off in the paper's preset.
    land_prev: bool = False
    train_split: str = "train"
    val_split: str = "test"
    val_samples: int = 500  # frames of the held-out split used for validation NME (evenly spaced)
    eval_every: int = 2000  # steps; 0 = never (the first evaluation is at step 0)
    log_every: int = 50
    checkpoint_every: int = 1000
    num_workers: int = 4
    frame_cache: bool = False  # decode the videos once into a JPEG cache under the work folder (fast random access)
    seed: int = 0
    amp: bool = True  # used on CUDA only
    channels_last: bool = True
    debug_nan_step: int | None = None  # test hook: corrupt U at this step to exercise the NaN stop
    # G's starting weights: None = from scratch; else "sha256:..." of the G weights loaded by ``--init-from``
    # (a trainer checkpoint or the reference file), so that a fine-tune records what it started from
    init_from: str | None = None
    # D_ID / D_ED's real inputs: "paper" = eq. 4/9 (U - v_exp, U - v_id, with G's estimate inside); "truth" = our
    # extension, the true identity/expression displacements from Synth300VW's parameters
    # (displacement.true_id_exp_disp; needs params.npz beside every training video)
    real_disp: str = "paper"

    def validate(self) -> TrainConfig:
        def bad(field: str, want: str) -> UsageError:
            return UsageError(f"config {self.name!r}: {field}={getattr(self, field)!r}, expected {want}")

        for f in ("image_size", "batch_size", "max_interval", "val_samples", "log_every", "checkpoint_every"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(f, "a positive integer")
        for f in ("eval_every", "num_workers", "seed"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad(f, "an integer >= 0")
        if self.image_size < 32:
            raise bad("image_size", ">= 32 (ResNet-18 downsamples by 32)")
        for f in ("name", "train_split", "val_split", "schedule", "landmark_norm", "real_disp"):
            if not isinstance(getattr(self, f), str):
                raise bad(f, "a string")
        for f in ("use_id", "use_ed", "use_td", "adv_camera_grad", "frame_cache", "amp", "channels_last", "land_prev"):
            if not isinstance(getattr(self, f), bool):
                raise bad(f, "true or false")
        if self.debug_nan_step is not None and (not isinstance(self.debug_nan_step, int)
                                                or isinstance(self.debug_nan_step, bool)):
            raise bad("debug_nan_step", "an integer or None")
        if self.init_from is not None and not (isinstance(self.init_from, str)
                                               and self.init_from.startswith("sha256:")):
            raise bad("init_from", "None or 'sha256:HEX' (set by --init-from)")
        if self.steps is not None and (not isinstance(self.steps, int) or isinstance(self.steps, bool)
                                       or self.steps < 1):
            raise bad("steps", "a positive integer or None")
        if self.steps is None and not (isinstance(self.epochs, int | float) and not isinstance(self.epochs, bool)
                                       and math.isfinite(self.epochs) and self.epochs > 0):
            raise bad("epochs", "a positive number (or set steps)")
        if self.max_interval > 1000:
            raise bad("max_interval", "at most 1000 frames")
        if not (isinstance(self.lr, float | int) and 0 < self.lr < 1):
            raise bad("lr", "a number in (0, 1)")
        if not (isinstance(self.lr_final, float | int) and 0 < self.lr_final <= self.lr):
            raise bad("lr_final", f"a number in (0, lr={self.lr}]")
        if not (isinstance(self.adv_warmup, float | int) and 0 <= self.adv_warmup <= 1):
            raise bad("adv_warmup", "a fraction in [0, 1]")
        if not (isinstance(self.jitter_shift, float | int) and 0 <= self.jitter_shift <= 0.5):
            raise bad("jitter_shift", "a fraction of the box side in [0, 0.5]")
        if not (isinstance(self.jitter_scale, float | int) and 0 <= self.jitter_scale <= 0.9):
            raise bad("jitter_scale", "a fraction in [0, 0.9]")
        if self.real_disp not in REAL_DISPS:
            raise bad("real_disp", f"one of {REAL_DISPS}")
        if self.landmark_norm not in losses.LANDMARK_NORMS:
            raise bad("landmark_norm", f"one of {losses.LANDMARK_NORMS}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"one of {SCHEDULES}")
        for f in ("lambda_id", "lambda_ed", "lambda_td"):
            v = getattr(self, f)
            if not (isinstance(v, float | int) and v >= 0 and math.isfinite(v)):
                raise bad(f, "a finite number >= 0")
        return self

    @property
    def lambdas(self) -> losses.Lambdas:
        return losses.Lambdas(id=self.lambda_id, exp=self.lambda_ed, temporal=self.lambda_td)

    @property
    def enabled(self) -> tuple[str, ...]:
        """The discriminators in use, by name (``id``, ``exp``, ``temporal``)."""
        on = {"id": self.use_id, "exp": self.use_ed, "temporal": self.use_td}
        return tuple(n for n in DISCRIMINATOR_NAMES if on[n])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_PRESETS: dict[str, dict] = {
    # Section 4.1: 256x256 crops, batch 20, 500 epochs, Adam 1e-3 -> 1e-5, interval 1..6.
    "paper": {},
    # CPU, a few minutes: 64 px crops, 1500 steps (~5-6 min on 2 cores), validation every 100 steps.
    "fast": dict(image_size=64, steps=1500, val_samples=120, eval_every=100, log_every=10, checkpoint_every=200,
                 num_workers=2, frame_cache=True),
    # The Table 3 grid (tdd_lite.experiments): 8 configurations x 3 seeds in at most 90 minutes on 2 CPU cores,
    # two runs side by side with one thread each (measured: 1.87 steps/s per run at 64 px, batch 20).
    "ablation": dict(image_size=64, steps=400, val_samples=60, eval_every=200, log_every=10, checkpoint_every=100,
                     num_workers=1, frame_cache=True),
    # The recipe of the shipped reference model (tdd_lite.reference; benchmarks/time_to_accuracy.py measured it
    # against `fast`): eq. 1 on both frames of each pair, so 10 pairs give the 20 labelled crops per update of
    # the paper's batch for half the compute; every video of a large Synth300VW set (many identities:
    # `tdd-lite synth --videos 999 --frames 25`); validation per category on another set (--val-data); no
    # DataLoader workers (on 2 busy cores they only compete with the training thread).
    "reference": dict(image_size=64, batch_size=10, steps=3200, land_prev=True, train_split="all",
                      val_samples=240, eval_every=250, log_every=50, checkpoint_every=250, num_workers=0,
                      frame_cache=True),
    # Table 3 at convergence (tdd_lite.experiments --preset finetune --init-from FILE): every configuration
    # continues one pre-trained G (the shipped reference) for the same 400 steps of the reference recipe at a
    # fine-tuning rate; the Ds start fresh; no validation pass (the grid evaluates every run by tracking).
    "finetune": dict(image_size=64, batch_size=10, steps=400, lr=3e-4, land_prev=True, train_split="all",
                     eval_every=0, log_every=20, checkpoint_every=100, num_workers=0, frame_cache=True),
    # Seconds, for tests: tiny crops, a handful of steps, a small batch.
    "smoke": dict(image_size=32, batch_size=4, steps=6, val_samples=8, eval_every=3, log_every=1,
                  checkpoint_every=3, num_workers=0),
}


def get_config(name: str, **overrides) -> TrainConfig:
    """The named preset (``paper``, ``fast``, ``smoke``) with ``overrides`` applied, validated."""
    if name not in _PRESETS:
        raise UsageError(f"unknown config {name!r}: choose one of {', '.join(CONFIG_NAMES)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise UsageError(f"unknown config field(s) {sorted(unknown)}")
    return TrainConfig(name=name, **{**_PRESETS[name], **overrides}).validate()


def ablation_configs(base: str = "paper", **overrides) -> dict[str, TrainConfig]:
    """The 8 rows of Table 3: every on/off combination of D_ID, D_ED and D_TD, labelled as in the paper."""
    rows = {
        "Without all": (False, False, False), "With D_ID": (True, False, False), "With D_ED": (False, True, False),
        "With D_TD": (False, False, True), "With D_ID, D_ED": (True, True, False),
        "With D_ID, D_TD": (True, False, True), "With D_ED, D_TD": (False, True, True),
        "With D_ID, D_ED, D_TD": (True, True, True),
    }
    return {label: get_config(base, use_id=i, use_ed=e, use_td=t, **overrides) for label, (i, e, t) in rows.items()}


def lr_factor(step: int, total: int, lr: float, lr_final: float, schedule: str = "cosine") -> float:
    """Multiplier of ``lr`` at ``step`` so that it decays from ``lr`` to ``lr_final`` at ``total``.

    ``cosine``: ``lr_final + (lr - lr_final) (1 + cos(pi s / total)) / 2`` (stays high for longer: better for
    short runs); ``exponential``: ``lr (lr_final / lr) ** (s / total)``.
    """
    frac = min(step, total) / max(total, 1)
    if schedule == "exponential":
        return (lr_final / lr) ** frac
    if schedule == "cosine":
        return (lr_final + (lr - lr_final) * 0.5 * (1.0 + math.cos(math.pi * frac))) / lr
    raise ValueError(f"unknown schedule {schedule!r}: expected one of {SCHEDULES}")


# ===================================================================================== data feeding
class _SeededItems(Dataset):
    """Makes item randomness a function of (seed, epoch, index): what exact ``--resume`` needs.

    The sampler yields ``(index, item_seed, epoch)``. Before fetching, a dataset with ``set_epoch`` (like
    :class:`tdd_lite.data.pairs.FramePairDataset`, whose jitter and interval draw are keyed by its seed, the
    epoch and the index) is told the epoch, and the python/numpy/torch global generators are seeded with
    ``item_seed`` for datasets that draw from those, in whatever worker process the item lands. In the main
    process the trainer's own RNG state is saved and restored around the fetch.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]):
        index, item_seed, epoch = key
        in_main = torch.utils.data.get_worker_info() is None
        saved = _rng_state() if in_main else None
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        random.seed(item_seed)
        np.random.seed(item_seed % 2**32)  # noqa: NPY002 - the legacy global generator datasets may use
        torch.manual_seed(item_seed)
        try:
            return self.dataset[index]
        finally:
            if saved is not None:
                _set_rng_state(saved)


class ResumableSampler(Sampler):
    """An endless stream of ``(index, item_seed, epoch)``, epoch after epoch, starting at batch ``start_batch``.

    Each epoch's order (and this process's share under DDP) comes from ``DistributedSampler`` with the
    run's seed and ``set_epoch(epoch)``; incomplete batches are dropped. The position is a pure function of
    the step, so a resumed run sees exactly the batches the uninterrupted run would have seen.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 start_batch: int = 0):
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.rank, self.world, self.start_batch = rank, world, start_batch
        self.per_rank = n_items // world
        self.batches_per_epoch = self.per_rank // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(f"{n_items} training pairs are fewer than one batch of {batch_size} x {world} processes")

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch, skip = divmod(self.start_batch, self.batches_per_epoch)
        dummy = range(self.n_items)
        while True:
            s = DistributedSampler(dummy, num_replicas=self.world, rank=self.rank, shuffle=True, seed=self.seed,
                                   drop_last=True)
            s.set_epoch(epoch)
            order = list(s)[: self.batches_per_epoch * self.batch_size][skip * self.batch_size:]
            for idx in order:
                yield idx, (self.seed * 1_000_003 + epoch * 10_007 + idx) % 2**31, epoch
            epoch, skip = epoch + 1, 0


def _stack_batch(items: list[dict]) -> dict:
    out = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        if isinstance(vals[0], Tensor):
            out[k] = torch.stack(vals)
        elif isinstance(vals[0], np.ndarray):
            out[k] = torch.as_tensor(np.stack(vals))
        elif isinstance(vals[0], int | float):
            out[k] = torch.tensor(vals)
        else:
            out[k] = vals
    return out


# ====================================================================================== RNG states
def _rng_state() -> dict:
    """Python, numpy and torch generator states as tensors/plain types (``weights_only``-loadable)."""
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {
        "python": {"version": py[0], "state": torch.tensor(py[1], dtype=torch.int64), "gauss": py[2]},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ====================================================================================== the trainer
class NonFiniteLossError(TddError, RuntimeError):
    """Training stopped: a loss term became NaN or infinite (the last good checkpoint is kept). Exit status 3."""

    exit_code = 3


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if isinstance(m, nn.parallel.DistributedDataParallel) else m


class Trainer:
    """G and the enabled Ds with their optimizers; :meth:`fit` runs the alternating loop.

    ``train_set`` yields frame pairs (``image``, ``prev_image``, ``gt_lmk``, ``prev_gt_lmk``);
    ``val_set`` (optional) yields single frames (``image``, ``gt_lmk``) for the validation NME.
    """

    def __init__(self, cfg: TrainConfig, model3dmm: MorphableModel, train_set: Dataset,
                 val_set: Dataset | None = None, out_dir: str | Path = "_build/runs/run",
                 device: str | torch.device | None = None, backbone_weights: str | Path | None = None,
                 quiet: bool = False):
        self.cfg = cfg.validate()
        self.out = Path(out_dir)
        self.rank = dist.get_rank() if _is_dist() else 0
        self.world = dist.get_world_size() if _is_dist() else 1
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {self.world} processes")
        self.local_batch = cfg.batch_size // self.world
        self.device = torch.device(device) if device is not None else pick_device()
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.quiet = quiet or self.rank != 0
        self.train_set, self.val_set = train_set, val_set

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts them)
        self.model3dmm = model3dmm.to(self.device)
        g = AlignmentNet.for_model(model3dmm, backbone_weights=backbone_weights).to(self.device)
        if cfg.channels_last:
            g = g.to(memory_format=torch.channels_last)
        ds = nn.ModuleDict({n: DisplacementDiscriminator() for n in DISCRIMINATOR_NAMES}).to(self.device)
        self.g_module, self.d_modules = g, ds
        if _is_dist():
            ids = [self.device.index] if self.device.type == "cuda" else None
            # BatchNorm statistics stay per process during training (no buffer broadcast before every forward);
            # rank 0's are the ones saved. (Newer torch spells this forward_sync_buffers=False.)
            import inspect

            params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
            key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
            no_sync = {key: False}
            self.g = nn.parallel.DistributedDataParallel(g, device_ids=ids, **no_sync)
            self.ds = {n: nn.parallel.DistributedDataParallel(ds[n], device_ids=ids) for n in cfg.enabled}
        else:
            self.g, self.ds = g, {n: ds[n] for n in cfg.enabled}

        sampler = ResumableSampler(len(train_set), self.local_batch, cfg.seed, self.rank, self.world)
        n_batches = sampler.batches_per_epoch
        self.steps_per_epoch = n_batches
        self.total_steps = cfg.steps if cfg.steps is not None else max(1, round(cfg.epochs * n_batches))
        # fused Adam: one kernel over all parameters (measurably cheaper per step at small image sizes)
        fused = self.device.type in ("cpu", "cuda")
        self.opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, fused=fused)
        self.opt_d = torch.optim.Adam(ds.parameters(), lr=cfg.lr, fused=fused)
        decay = lambda s: lr_factor(s, self.total_steps, cfg.lr, cfg.lr_final, cfg.schedule)  # noqa: E731
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step = 0
        # training time (wall and CPU seconds, evaluation and checkpoint saving excluded) carried across --resume
        self._resumed_clock = {"train_wall_s": 0.0, "train_cpu_s": 0.0}
        seqs = getattr(train_set, "sequences", None)
        # what the data position depends on: which videos, how many items (compared on --resume)
        self.data_info = {"train_items": len(train_set)}
        if seqs is not None:
            self.data_info["train_videos"] = [str(getattr(q, "name", q)) for q in seqs]
        if self.rank == 0:
            remove_stale_temp_files(self.out, CHECKPOINT_NAME)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    def state_dict(self) -> dict:
        """The checkpoint payload, sealed with its checksum (:func:`seal_checkpoint`)."""
        return seal_checkpoint({
            "format": CHECKPOINT_FORMAT, "config": self.cfg.to_dict(), "step": self.step,
            "total_steps": self.total_steps, "world_size": self.world,
            "n_id": self.model3dmm.n_id, "n_exp": self.model3dmm.n_exp, "data": dict(self.data_info),
            "G": self.g_module.state_dict(), "D": self.d_modules.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": _rng_state(), "clock": dict(self._resumed_clock),
        })

    def save_checkpoint(self, path: Path | None = None) -> Path | None:
        """Atomic write (temp file + ``os.replace``) by rank 0; other ranks return None.

        A failed write (an exception, or SIGTERM/Ctrl-C turned into ``KeyboardInterrupt``) removes its temp
        file; temp files of processes that no longer run (killed with SIGKILL) are removed first.
        """
        if self.rank != 0:
            return None
        path = Path(path) if path is not None else self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(path.parent, path.name)
        _atomic_write(path, lambda tmp: torch.save(self.state_dict(), tmp))
        return path

    def load_checkpoint(self, path: Path | None = None) -> None:
        """Restore everything from a checkpoint of THIS run (same config and data, see ``RESUME_FREE_FIELDS``).

        Raises :class:`CheckpointError` naming every differing field with both values, a step outside
        ``0..total_steps``, or weights that do not fit; on rank 0 ``metrics.jsonl`` is cut back to the step.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        state = load_checkpoint(path)
        if (state["n_id"], state["n_exp"]) != (self.model3dmm.n_id, self.model3dmm.n_exp):
            raise CheckpointError(f"{path}: trained for a 3DMM with {state['n_id']}+{state['n_exp']} modes, "
                                  f"this one has {self.model3dmm.n_id}+{self.model3dmm.n_exp}")
        diffs = config_differences(state["config"], self.cfg)
        if state["total_steps"] != self.total_steps:
            diffs.append(f"total_steps (checkpoint {state['total_steps']}, this run {self.total_steps})")
        saved_data = state.get("data") or {}
        for key, now in self.data_info.items():
            if key in saved_data and saved_data[key] != now:
                was = saved_data[key]
                if isinstance(now, list):
                    gone, new = sorted(set(was) - set(now)), sorted(set(now) - set(was))
                    detail = f"checkpoint {len(was)} videos, this run {len(now)}; missing {gone[:5]}, new {new[:5]}"
                    diffs.append(f"{key} ({detail})")
                else:
                    diffs.append(f"{key} (checkpoint {was}, this run {now})")
        if diffs:
            raise CheckpointError(
                f"{path}: --resume with a different run: {'; '.join(diffs)}. Resume with the options the run "
                f"was started with, or train into a new --out")
        step = state["step"]
        if not 0 <= step <= self.total_steps:
            raise CheckpointError(f"{path}: step {step} is outside 0..{self.total_steps} (total steps of this run)")
        parts = (("G", self.g_module), ("D", self.d_modules), ("opt_g", self.opt_g), ("opt_d", self.opt_d),
                 ("sched_g", self.sched_g), ("sched_d", self.sched_d), ("scaler", self.scaler))
        for key, obj in parts:
            try:
                obj.load_state_dict(state[key])
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
                raise CheckpointError(f"{path}: {key} does not fit this run ({_one_line(e)})") from e
        self.step = int(step)
        clock = state.get("clock")
        if isinstance(clock, dict) and all(isinstance(clock.get(k), float) for k in self._resumed_clock):
            self._resumed_clock = {k: float(clock[k]) for k in self._resumed_clock}
        if state.get("world_size", 1) == self.world:
            try:
                _set_rng_state(state["rng"])
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
                raise CheckpointError(f"{path}: rng state is malformed ({_one_line(e)})") from e
        if self.rank == 0:
            truncate_metrics(self.out / METRICS_NAME, self.step)

    # ------------------------------------------------------------------ one iteration
    def _check(self, name: str, value: Tensor) -> None:
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(
                f"step {self.step}: loss term '{name}' is {value.item() if value.numel() == 1 else value} "
                f"(not finite); training stopped. The last good checkpoint is kept at {self.checkpoint_path}")

    def forward_g(self, batch: dict) -> tuple[dict[str, Tensor], Tensor, dict[str, float]]:
        """G on I and I' at once (shared weights, Fig. 2) -> displacements, ``L_land`` (eq. 1), logs."""
        cfg, dev = self.cfg, self.device
        image = batch["image"].to(dev, non_blocking=True)
        prev_image = batch["prev_image"].to(dev, non_blocking=True)
        gt = batch["gt_lmk"].to(dev, torch.float32)
        prev_gt = batch["prev_gt_lmk"].to(dev, torch.float32)
        if cfg.debug_nan_step is not None and self.step == cfg.debug_nan_step:
            gt = gt.clone()
            gt[0, 0, 0] = float("nan")
        b = image.shape[0]
        self.g.train()
        for d in self.ds.values():
            d.train()
        both = torch.cat([image, prev_image])
        if cfg.channels_last:
            both = both.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=self.use_amp):
            a_id, a_exp, cam = self.g(both)
        a_id, a_exp, cam = a_id.float(), a_exp.float(), cam.float()
        for name, t in (("alpha_id", a_id), ("alpha_exp", a_exp), ("camera", cam)):
            if not torch.isfinite(t).all():
                raise NonFiniteLossError(f"step {self.step}: G output {name} is not finite; training stopped. "
                                         f"The last good checkpoint is kept at {self.checkpoint_path}")
        cur = (a_id[:b], a_exp[:b], cam[:b])
        prev = (a_id[b:], a_exp[b:], cam[b:])
        need_prev = "temporal" in self.ds
        x = disp.all_displacements(self.model3dmm, cur, prev if need_prev else None, gt, prev_gt)
        if cfg.real_disp == "truth":  # our extension: D_ID / D_ED told what is real by the true parameters
            true = [batch[k].to(dev, torch.float32) for k in ("alpha_id", "alpha_exp", "camera")]
            x["real_id_disp"], x["real_exp_disp"] = disp.true_id_exp_disp(self.model3dmm, *true)
        if not cfg.adv_camera_grad:  # the identity/expression fakes move only alpha_id / alpha_exp in the G step
            cam_d = (cur[0], cur[1], cur[2].detach())
            v_d = disp.pred_lmk(self.model3dmm, *cam_d)
            x["fake_id_disp"] = disp.fake_id_disp(v_d, disp.pred_lmk_exp_only(self.model3dmm, cur[1], cam_d[2]))
            x["fake_exp_disp"] = disp.fake_exp_disp(v_d, disp.pred_lmk_id_only(self.model3dmm, cur[0], cam_d[2]))
        if cfg.land_prev:  # eq. 1 on I and I' (one mean over the 2B crops: the same scale as eq. 1 on I alone)
            v_prev = x["prev_pred_lmk"] if "prev_pred_lmk" in x else disp.pred_lmk(self.model3dmm, *prev)
            land = losses.landmark_loss(torch.cat([x["pred_lmk"], v_prev]), torch.cat([gt, prev_gt]),
                                        norm=cfg.landmark_norm)
        else:
            land = losses.landmark_loss(x["pred_lmk"], gt, norm=cfg.landmark_norm)
        self._check("landmark", land)
        return x, land, {"landmark": land.item()}

    def d_step(self, x: dict[str, Tensor]) -> dict[str, float]:
        """Eq. 15 on *detached* displacements (G frozen); only the D optimizer steps."""
        if not self.ds:
            return {}
        logs, d_terms = {}, {}
        for n, d in self.ds.items():
            real_k, fake_k = _DISP_KEYS[n]
            real, fake = x[real_k].detach(), x[fake_k].detach()
            logits = d(torch.cat([real, fake]))  # one forward per D (DDP-friendly)
            b = real.shape[0]
            d_terms[n] = losses.discriminator_loss(logits[:b], logits[b:])
            self._check(f"D_{n}", d_terms[n])
            logs[f"D_{n}"] = d_terms[n].item()
        loss_d = losses.total_discriminator_loss(d_terms, self.cfg.lambdas)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        logs["L_D"] = loss_d.item()
        return logs

    def adv_ramp(self) -> float:
        """Weight multiplier of G's adversarial terms at this step (1 unless ``adv_warmup`` > 0)."""
        warm = self.cfg.adv_warmup * self.total_steps
        return 1.0 if warm <= 0 else min(1.0, self.step / warm)

    def g_step(self, x: dict[str, Tensor], land: Tensor) -> dict[str, float]:
        """Eq. 19 with the Ds frozen (their parameters detached); only G's optimizer steps."""
        logs, g_terms = {}, {}
        for n in self.ds:
            dm = self.d_modules[n]
            params = {k: v.detach() for k, v in dm.named_parameters()}
            logits = torch.func.functional_call(dm, params, (x[_DISP_KEYS[n][1]],))
            g_terms[n] = losses.generator_adv_loss(logits)
            self._check(f"G_{n}", g_terms[n])
            logs[f"G_{n}"] = g_terms[n].item()
        lam = self.cfg.lambdas
        ramp = self.adv_ramp()
        if ramp < 1.0:
            lam = losses.Lambdas(lam.id * ramp, lam.exp * ramp, lam.temporal * ramp)
        loss_g = losses.total_generator_loss(land, g_terms, lam)
        self._check("L_G", loss_g)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        logs["L_G"] = loss_g.item()
        return logs

    def train_step(self, batch: dict) -> dict[str, float]:
        """One iteration: G forward, D step (G frozen), G step (D frozen). Returns the loss terms as floats."""
        x, land, logs = self.forward_g(batch)
        logs.update(self.d_step(x))
        logs.update(self.g_step(x, land))
        logs["lr"] = self.opt_g.param_groups[0]["lr"]
        self.sched_g.step()
        if self.ds:  # without discriminators the D optimizer never steps (and its schedule does not matter)
            self.sched_d.step()
        self.step += 1
        return logs

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def evaluate(self, max_samples: int | None = None) -> float:
        """Validation NME (bbox normalisation, the paper's metric) on GT crops of the held-out videos, in %.

        With per-category validation sets (``val_set`` a dict such as ``{"A": ..., "B": ..., "C": ...}``) it is
        the mean of the categories' NMEs (each from :meth:`evaluate_categories`).
        """
        return float(np.mean(list(self.evaluate_categories(max_samples).values())))

    @torch.no_grad()
    def evaluate_categories(self, max_samples: int | None = None) -> dict[str, float]:
        """Validation NME in % per validation set (``{"all": nme}`` for a single set), on ``val_samples``
        evenly spaced frames of each (GT crops, no augmentation)."""
        from tdd_lite.metrics import nme

        if self.val_set is None:
            raise ValueError("no validation set")
        sets = self.val_set if isinstance(self.val_set, dict) else {"all": self.val_set}
        g = self.g_module
        was_training = g.training
        saved_rng = _rng_state()  # evaluation must not change the training's random stream
        g.eval()
        out = {}
        for name, val_set in sets.items():
            n = len(val_set)
            k = min(n, max_samples or self.cfg.val_samples)
            idx = np.linspace(0, n - 1, k).round().astype(int)
            errs = []
            for start in range(0, k, 32):
                items = [val_set[int(i)] for i in idx[start:start + 32]]
                batch = _stack_batch(items)
                img = batch["image"].to(self.device)
                if self.cfg.channels_last:
                    img = img.contiguous(memory_format=torch.channels_last)
                with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                    res = g(img)
                pred = predict_landmarks(self.model3dmm, tuple(o.float() for o in res))
                errs.append(nme(pred, batch["gt_lmk"].to(self.device, torch.float32), norm="bbox").cpu())
            out[name] = float(torch.cat(errs).mean()) * 100.0
        g.train(was_training)
        _set_rng_state(saved_rng)
        return out

    # ------------------------------------------------------------------ the loop
    def _log(self, record: dict) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / METRICS_NAME, "a") as f:
            f.write(json.dumps(record) + "\n")

    def fit(self, steps: int | None = None) -> dict:
        """Train until ``steps`` total steps (default: the config's total). Returns a summary dict."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        end = min(self.total_steps, steps) if steps is not None else self.total_steps
        sampler = ResumableSampler(len(self.train_set), self.local_batch, cfg.seed, self.rank, self.world,
                                   start_batch=self.step)
        loader = DataLoader(_SeededItems(self.train_set), batch_size=self.local_batch, sampler=sampler,
                            num_workers=cfg.num_workers, collate_fn=_stack_batch, drop_last=True,
                            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed),
                            persistent_workers=False)
        t0 = time.time()
        clock = _TrainClock(self._resumed_clock)
        first_nme = last_nme = None
        if self.rank == 0 and self.step == 0 and not (self.out / METRICS_NAME).exists():
            self._log({"event": "start", "config": cfg.to_dict(), "total_steps": self.total_steps,
                       "world_size": self.world, "device": str(self.device), "threads": torch.get_num_threads()})

        def validate() -> float:
            with clock.paused():  # evaluation time is not training time
                per_cat = self.evaluate_categories()
            mean = float(np.mean(list(per_cat.values())))
            rec = {"step": self.step, "val_nme": mean, "time": round(time.time() - t0, 3), **clock.record()}
            if set(per_cat) != {"all"}:
                rec.update({f"val_nme_{k}": v for k, v in per_cat.items()})
            self._log(rec)
            return mean

        do_eval = self.val_set is not None and cfg.eval_every > 0 and self.rank == 0
        if do_eval and self.step == 0:
            first_nme = last_nme = validate()
        bar = tqdm(total=end, initial=self.step, desc=f"train[{cfg.name}]", disable=self.quiet, dynamic_ncols=True)
        it = iter(loader)
        logs: dict = {}
        while self.step < end:
            batch = next(it)
            logs = self.train_step(batch)
            bar.update(1)
            bar.set_postfix(land=f"{logs['landmark']:.4f}", refresh=False)
            if self.step % cfg.log_every == 0 or self.step == end:
                self._log({"step": self.step, **logs, "time": round(time.time() - t0, 3), **clock.record()})
            if do_eval and (self.step % cfg.eval_every == 0 or self.step == end):
                last_nme = validate()
                if first_nme is None:
                    first_nme = last_nme
                bar.set_postfix(land=f"{logs['landmark']:.4f}", nme=f"{last_nme:.2f}%")
            if self.step % cfg.checkpoint_every == 0 or self.step == end:
                with clock.paused():
                    self._resumed_clock = clock.record()
                    self.save_checkpoint()
        bar.close()
        del it
        return {"step": self.step, "first_val_nme": first_nme, "last_val_nme": last_nme,
                "wall_time": time.time() - t0, "last_losses": logs, **self._resumed_clock}


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its live and finished child processes (DataLoader
    workers), so that "CPU minutes" counts the data loading too."""
    import resource

    total = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                t = child.cpu_times()
                total += t.user + t.system
    except ImportError:  # without psutil, live workers' time is counted when they exit
        pass
    return total


class _TrainClock:
    """Wall and CPU seconds spent training (evaluation and checkpoint writes excluded, :meth:`paused`),
    continuing from a resumed run's totals: the x axis of a time-to-accuracy curve."""

    def __init__(self, start: dict[str, float]):
        self.base_wall, self.base_cpu = start["train_wall_s"], start["train_cpu_s"]
        self.wall0, self.cpu0 = time.time(), _cpu_seconds()
        self.excl_wall = self.excl_cpu = 0.0

    @contextlib.contextmanager
    def paused(self):
        w, c = time.time(), _cpu_seconds()
        try:
            yield
        finally:
            self.excl_wall += time.time() - w
            self.excl_cpu += _cpu_seconds() - c

    def record(self) -> dict[str, float]:
        return {"train_wall_s": round(self.base_wall + time.time() - self.wall0 - self.excl_wall, 3),
                "train_cpu_s": round(self.base_cpu + _cpu_seconds() - self.cpu0 - self.excl_cpu, 3)}


def _atomic_write(path: Path, write) -> None:
    """``write(tmp)`` to ``path.tmp<pid>``, then rename over ``path``; the temp file never outlives a failure."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# ================================================================================== checkpoint I/O
class UnverifiedCheckpointWarning(UserWarning):
    """A checkpoint of the old format (no checksum) was loaded: its bytes could not be verified."""


def _one_line(e: BaseException, limit: int = 300) -> str:
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
        text = _one_line(e, 10_000)
        glob = re.search(r"(?:unsupported GLOBAL|Unsupported global:?)\s+(?:GLOBAL\s+)?([\w.]+)", text)
        if glob:
            raise CheckpointError(f"{path}: refused: the file references the Python object {glob.group(1)} "
                                  f"(loading it could run code); a checkpoint holds only tensors and plain "
                                  f"values") from e
        why = re.search(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)", text)
        raise CheckpointError(f"{path}: cannot read checkpoint: not a PyTorch file, truncated or corrupted? "
                              f"({why.group(1) if why else _one_line(e, 160)})") from e
    except Exception as e:  # noqa: BLE001 - torch raises many types for a damaged file
        raise CheckpointError(f"{path}: cannot read checkpoint: not a complete PyTorch file, truncated or "
                              f"corrupted? ({type(e).__name__}: {_one_line(e, 160)})") from e
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
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown, absent = sorted(set(cfg) - known), sorted(known - set(cfg))
    if unknown or absent:
        raise CheckpointError(f"{path}: config fields do not match this version (unknown {unknown}, missing "
                              f"{absent})")
    try:
        TrainConfig(**cfg).validate()
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad config in the checkpoint: {_one_line(e)}") from e
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
        raise CheckpointError(f"{path}: G's weights do not fit the network ({_one_line(e)})") from e
    for name, t in state["G"].items():
        if isinstance(t, Tensor) and t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: G weight {name} holds NaN/inf values")
    return net.to(device).eval()


def config_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """``field (checkpoint X, this run Y)`` for every config field that differs and matters for a resume."""
    now = cfg.to_dict()
    return [f"{k} (checkpoint {saved.get(k)!r}, this run {now[k]!r})" for k in now
            if k not in RESUME_FREE_FIELDS and saved.get(k) != now[k]]


def truncate_metrics(path: str | Path, step: int) -> int:
    """Drop ``metrics.jsonl`` records after ``step`` (atomically); returns how many were dropped.

    A last line cut short by a kill is dropped too; a malformed line elsewhere is a :class:`DataError`.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines(keepends=True)
    keep, dropped = [], 0
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):  # a record cut short by a kill during the write
                dropped += 1
                continue
            raise DataError(f"{path}:{i}: not a JSON line ({e})") from e
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] > step:
            dropped += 1
            continue
        keep.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        _atomic_write(path, lambda tmp: tmp.write_text("".join(keep)))
    return dropped


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises ``KeyboardInterrupt`` (so ``finally`` clauses, e.g. temp-file cleanup, run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# ======================================================================================== curves
def read_metrics(log_path: str | Path) -> list[dict]:
    path = Path(log_path)
    if path.is_dir():
        path = path / METRICS_NAME
    records = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not a JSON line ({e})") from e
    return records


def plot_curves(log_path: str | Path):
    """Loss terms and validation NME against the step, from ``metrics.jsonl``. Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    recs = read_metrics(log_path)
    train = [r for r in recs if "landmark" in r]
    val = [r for r in recs if "val_nme" in r]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
    steps = [r["step"] for r in train]
    ax1.plot(steps, [r["landmark"] for r in train], label="L_land (eq. 1)")
    ax1.set_yscale("log")
    ax1.set_title("landmark loss ([0,1] crop units)")
    for key in ("D_id", "D_exp", "D_temporal", "G_id", "G_exp", "G_temporal"):
        if any(key in r for r in train):
            ax2.plot(steps, [r.get(key, np.nan) for r in train], label=key, ls="-" if key[0] == "D" else "--")
    ax2.axhline(2 * math.log(2), color="grey", lw=0.8, ls=":", label="D at chance (2 ln 2)")
    ax2.set_title("adversarial terms (D: eq. 6/11/14, G: eq. 16-18)")
    ax3.plot([r["step"] for r in val], [r["val_nme"] for r in val], "o-")
    ax3.set_title("validation NME (%, bbox)")
    for ax in (ax1, ax2, ax3):
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# =========================================================================================== CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="fast", choices=CONFIG_NAMES, help="preset (default: fast)")
    parser.add_argument("--data", required=True, help="300VW-layout folder (real 300VW or Synth300VW)")
    parser.add_argument("--out", default=None, help="run folder (default: _build/runs/CONFIG)")
    parser.add_argument("--no-id", action="store_true", help="without the identity discriminator D_ID")
    parser.add_argument("--no-ed", action="store_true", help="without the expression discriminator D_ED")
    parser.add_argument("--no-td", action="store_true", help="without the temporal discriminator D_TD")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.pt (the same options as the run it continues)")
    parser.add_argument("--steps", type=bounded_int(1, 10**9), default=None,
                        help="number of steps, >= 1 (overrides epochs)")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:1 ... (default: TDD_DEVICE, else CUDA if present)")
    parser.add_argument("--workers", type=bounded_int(0, 64), default=None, help="DataLoader workers (0..64)")
    parser.add_argument("--backbone-weights", default=None, help="local ResNet-18 state dict (never downloaded)")
    parser.add_argument("--skip-bad-frames", action="store_true",
                        help="skip frames with a bad .pts (as `check-data --skip-bad-frames`) instead of failing")
    parser.add_argument("--synth-if-missing", action="store_true",
                        help="if --data does not exist, generate a small Synth300VW there first")
    parser.add_argument("--val-data", default=None,
                        help="validate on the A/B/C test videos of this other 300VW-layout folder, per category "
                             "(default: the held-out split of --data)")
    parser.add_argument("--init-from", default=None, metavar="FILE",
                        help="start G from these weights (a trainer checkpoint or a reference file such as "
                             "tdd_lite/assets/reference_g.pt) instead of from scratch: a fine-tune; the Ds and the "
                             "optimizers start fresh")
    parser.add_argument("--threads", type=bounded_int(1, 256), default=None,
                        help="torch CPU threads (default: the idle cores, see tdd_lite.config.default_threads)")


def build_val_sets(root: str | Path, cfg: TrainConfig, videos: dict[str, list[str]],
                   skip_bad: bool = False) -> dict:
    """Per-category validation sets (GT crops, no augmentation) from another 300VW-layout folder
    (``{"A": [ids], ...}``), decoded once into the frame cache: the trainer logs ``val_nme_A`` etc."""
    from tdd_lite.data.pairs import FrameDataset

    cache = _frame_cache_dir(Path(root))
    return {cat: FrameDataset(root, ids, cfg.image_size, cache_dir=cache, skip_bad=skip_bad)
            for cat, ids in videos.items()}


def _frame_cache_dir(root: Path) -> Path:
    """The JPEG frame cache of ``root``, keyed by the folder AND its videos' sizes and modification times: a
    regenerated data set gets a fresh cache instead of silently pairing old frames with new landmarks."""
    import hashlib

    from tdd_lite.config import work_dir

    h = hashlib.sha256(str(root.resolve()).encode())
    for video in sorted(root.glob("*/vid.avi")):
        st = video.stat()
        h.update(f"{video.parent.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return work_dir("frame_cache", f"{root.name}-{h.hexdigest()[:12]}")


def build_datasets(root: str | Path, cfg: TrainConfig, skip_bad: bool = False,
                   train_videos: list[str] | None = None, val_videos: list[str] | None = None):
    """The pair dataset for training and the single-frame dataset for validation, from a 300VW-layout root.

    ``train_videos`` / ``val_videos``: explicit video ids (default: ``cfg.train_split`` / ``cfg.val_split``;
    ``train_split="all"``: every video of ``root``);
    ``skip_bad``: frames with an unreadable ``.pts`` are skipped (``check-data --skip-bad-frames``).
    With ``cfg.frame_cache`` the videos are decoded once into JPEGs under ``work_dir("frame_cache", ...)``
    (random access into a video otherwise costs a seek and a decode per frame).
    """
    from tdd_lite.data.pairs import FrameDataset, FramePairDataset

    root = Path(root)
    if train_videos is None and cfg.train_split == "all":  # every video of the folder (the reference recipe)
        from tdd_lite.data.vw300 import select_videos

        train_videos = select_videos(root, all_videos=True)["all"]
    cache = _frame_cache_dir(root) if cfg.frame_cache else None
    with_params = cfg.real_disp == "truth"
    try:
        train = FramePairDataset(root, cfg.train_split if train_videos is None else train_videos, cfg.image_size,
                                 augment=True, max_interval=cfg.max_interval, seed=cfg.seed, cache_dir=cache,
                                 skip_bad=skip_bad, jitter={"shift": cfg.jitter_shift, "scale": cfg.jitter_scale},
                                 with_params=with_params)
    except FileNotFoundError as e:
        if not with_params:
            raise
        raise DataError(f"config {cfg.name!r}: real_disp='truth' needs the true parameters of every training "
                        f"video (Synth300VW's params.npz): {e}") from e
    val = None
    if cfg.eval_every > 0:
        val = FrameDataset(root, cfg.val_split if val_videos is None else val_videos, cfg.image_size, cache_dir=cache,
                           skip_bad=skip_bad)
    return train, val


def _init_distributed(device_arg: str | None) -> torch.device:
    dev = pick_device(device_arg)  # a device this machine lacks is a UsageError (also under torchrun)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return dev
    local = int(os.environ.get("LOCAL_RANK", "0"))
    want_cuda = dev.type == "cuda"
    if want_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return torch.device(f"cuda:{local}") if want_cuda else torch.device("cpu")


def _init_weights(path: Path) -> tuple[dict, str]:
    """G's float32 state dict from a trainer checkpoint or a reference file (each verified by its own loader),
    and ``sha256:`` of those weights (what the config records)."""
    from tdd_lite.reference import is_reference_file, load_reference

    if is_reference_file(path):
        net, _ = load_reference(path)
        state = net.state_dict()
    else:
        state = load_checkpoint(path)["G"]
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    h = hashlib.sha256()
    _feed(h, state)
    return state, "sha256:" + h.hexdigest()


def _load_g(g: nn.Module, state: dict, source: str) -> None:
    try:
        g.load_state_dict(state)
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"--init-from {source}: G's weights do not fit this network ({_one_line(e)})") from e


def _check_folder_arg(option: str, path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise DataError(f"{option} {path}: is a file, expected a folder")


def run(args: argparse.Namespace) -> int:
    """``tdd-lite train``: every user error is a :class:`TddError` (one line from ``tdd_lite.cli``)."""
    from tdd_lite.data.vw300 import require_valid, select_videos

    fast_mode()  # a TDD_FAST typo is an error before anything starts
    overrides = {}
    if args.no_id:
        overrides["use_id"] = False
    if args.no_ed:
        overrides["use_ed"] = False
    if args.no_td:
        overrides["use_td"] = False
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.workers is not None:
        overrides["num_workers"] = args.workers
    init_state = None
    if args.init_from is not None:
        init_state, overrides["init_from"] = _init_weights(Path(args.init_from))
    cfg = get_config(args.config, **overrides)
    data = Path(args.data)
    _check_folder_arg("--data", data)
    out = Path(args.out) if args.out else Path("_build/runs") / cfg.name
    _check_folder_arg("--out", out)
    ckpt = out / CHECKPOINT_NAME
    if ckpt.exists() and not args.resume:
        raise UsageError(f"{ckpt} exists: pass --resume to continue it or choose another --out")
    if args.resume and not ckpt.exists():
        raise DataError(f"--resume: no checkpoint at {ckpt} (start the run without --resume)")
    if args.backbone_weights is not None and not Path(args.backbone_weights).is_file():
        raise DataError(f"--backbone-weights {args.backbone_weights}: no such file")
    pick_device(args.device)  # before generating or reading any data
    if not data.exists():
        if not args.synth_if_missing:
            raise DataError(f"--data {data} does not exist (generate one with `tdd-lite synth {data}` "
                            f"or pass --synth-if-missing)")
        from tdd_lite.data import synth

        print(f"generating Synth300VW into {data} ...")
        synth.generate(data, seed=0, **FAST_SYNTH)
    if cfg.train_split == "all":
        train_ids = select_videos(data, all_videos=True)["all"]
    else:
        train_ids = select_videos(data, splits=[cfg.train_split])[cfg.train_split]
    val_data = Path(args.val_data) if args.val_data else None
    val_ids: list[str] = []
    val_groups: dict[str, list[str]] = {}
    if val_data is not None:
        _check_folder_arg("--val-data", val_data)
        if not val_data.exists():
            raise DataError(f"--val-data {val_data} does not exist")
        if val_data.resolve() == data.resolve() and cfg.train_split == "all":
            raise UsageError(f"--val-data {val_data} is the training folder, whose every video config "
                             f"{cfg.name!r} trains on: validate on another set")
        val_groups = select_videos(val_data) if cfg.eval_every > 0 else {}
    elif cfg.eval_every > 0 and cfg.train_split == "all":
        print(f"note: config {cfg.name!r} trains on every video of --data; without --val-data there is no "
              f"validation")
        cfg = dataclasses.replace(cfg, eval_every=0)
    elif cfg.eval_every > 0:
        val_ids = select_videos(data, splits=[cfg.val_split])[cfg.val_split]
    require_valid(data, train_ids + val_ids, skip_bad=args.skip_bad_frames, command="train")
    if val_groups:
        require_valid(val_data, [v for ids in val_groups.values() for v in ids], skip_bad=args.skip_bad_frames,
                      command="train")
    torch.set_num_threads(args.threads or default_threads())
    device = _init_distributed(args.device)
    try:
        from tdd_lite.morphable import load_teaching_model

        train_set, val_set = build_datasets(data, cfg, skip_bad=args.skip_bad_frames, train_videos=train_ids,
                                            val_videos=val_ids or None)
        if val_groups:
            val_set = build_val_sets(val_data, cfg, val_groups, skip_bad=args.skip_bad_frames)
        trainer = Trainer(cfg, load_teaching_model(), train_set, val_set, out_dir=out, device=device,
                          backbone_weights=args.backbone_weights)
        if trainer.rank == 0:
            print(describe_run())
            print(f"config {cfg.name}: {cfg.image_size}px, batch {cfg.batch_size} (x{trainer.world} processes: "
                  f"{trainer.local_batch} each), {trainer.total_steps} steps ({trainer.steps_per_epoch} per epoch), "
                  f"discriminators {list(cfg.enabled) or 'none'}, device {trainer.device}, amp {trainer.use_amp}, "
                  f"{torch.get_num_threads()} CPU thread(s)")
        if init_state is not None and not args.resume:
            _load_g(trainer.g_module, init_state, args.init_from)
        if args.resume:
            trainer.load_checkpoint()
            if trainer.rank == 0:
                print(f"resumed from {trainer.checkpoint_path} at step {trainer.step} of {trainer.total_steps}")
        with sigterm_as_interrupt():
            summary = trainer.fit()
        if trainer.rank == 0:
            f, last = summary["first_val_nme"], summary["last_val_nme"]
            nme_txt = f"; validation NME {f:.2f}% -> {last:.2f}%" if f is not None and last is not None else ""
            print(f"done: step {summary['step']} in {summary['wall_time']:.1f} s{nme_txt}; "
                  f"checkpoint {trainer.checkpoint_path}")
        return 0
    finally:
        if _is_dist():
            dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """``python -m tdd_lite.train`` (also under ``torchrun``): the same one-line errors as ``tdd-lite train``."""
    from tdd_lite.cli import module_main

    return module_main("python -m tdd_lite.train", add_arguments, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
