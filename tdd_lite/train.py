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

Configs (:mod:`tdd_lite.train_config`): ``paper`` (256 px, batch 20, 500 epochs, GPU), ``fast`` (CPU, 64 px,
1500 steps, JPEG frame cache), ``smoke`` (seconds, tests). ``--steps N`` overrides the number of steps (the lr
schedule then spans N steps).
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

Checkpoints (``OUT/checkpoint.pt``, :mod:`tdd_lite.checkpoint`: format, checksum, atomic saving) hold G, the three
Ds, both optimizers and schedulers, the AMP scaler, the step and every RNG state (torch, numpy, python; the data
position is a function of the step). ``--resume`` continues exactly (tested: N steps == N/2 + resume + N/2, bit for
bit, on the CPU in one process). ``--resume`` refuses a checkpoint whose config differs in anything that changes
the model or the data (:data:`tdd_lite.train_config.RESUME_FREE_FIELDS` lists the few that may change) and names
each field with both values. On resume ``metrics.jsonl`` is cut back (atomically) to the resumed step, so no step
is logged twice. SIGTERM during ``tdd-lite train`` raises ``KeyboardInterrupt``
(:func:`tdd_lite.files.sigterm_raises`), so a checkpoint being written leaves no temp file behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from tdd_lite import displacement as disp
from tdd_lite import losses
from tdd_lite.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    load_checkpoint,
    one_line,
    payload_checksum,
    save_checkpoint,
    seal_checkpoint,
)
from tdd_lite.commands import module_main
from tdd_lite.config import default_threads, describe_run, device_name, fast_mode, pick_device, work_dir
from tdd_lite.data import synth
from tdd_lite.data.pairs import FrameDataset, FramePairDataset
from tdd_lite.data.vw300 import require_valid, select_videos
from tdd_lite.discriminators import DISCRIMINATOR_NAMES, DisplacementDiscriminator
from tdd_lite.errors import CheckpointError, DataError, TddError, UsageError, bounded_int
from tdd_lite.files import atomic_write, remove_stale_temp_files, sigterm_raises
from tdd_lite.metrics import nme
from tdd_lite.morphable import MorphableModel, load_teaching_model
from tdd_lite.network import AlignmentNet, predict_landmarks
from tdd_lite.reference import is_reference_file, load_reference
from tdd_lite.train_config import CONFIG_NAMES, TrainConfig, config_differences, get_config, lr_factor

# the Synth300VW set `--synth-if-missing` writes: many identities (70 training videos), short videos
FAST_SYNTH = {"videos": 160, "frames": 25}
METRICS_NAME = "metrics.jsonl"
# which displacement pair each discriminator reads
_DISP_KEYS = {"id": ("real_id_disp", "fake_id_disp"), "exp": ("real_exp_disp", "fake_exp_disp"),
              "temporal": ("real_temporal_disp", "fake_temporal_disp")}


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
        return save_checkpoint(self.state_dict(), path if path is not None else self.checkpoint_path)

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
                raise CheckpointError(f"{path}: {key} does not fit this run ({one_line(e)})") from e
        self.step = int(step)
        clock = state.get("clock")
        if isinstance(clock, dict) and all(isinstance(clock.get(k), float) for k in self._resumed_clock):
            self._resumed_clock = {k: float(clock[k]) for k in self._resumed_clock}
        if state.get("world_size", 1) == self.world:
            try:
                _set_rng_state(state["rng"])
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
                raise CheckpointError(f"{path}: rng state is malformed ({one_line(e)})") from e
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


# ====================================================================================== metrics log
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
        atomic_write(path, "".join(keep))
    return dropped


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
    cache = _frame_cache_dir(Path(root))
    return {cat: FrameDataset(root, ids, cfg.image_size, cache_dir=cache, skip_bad=skip_bad)
            for cat, ids in videos.items()}


def _frame_cache_dir(root: Path) -> Path:
    """The JPEG frame cache of ``root``, keyed by the folder AND its videos' sizes and modification times: a
    regenerated data set gets a fresh cache instead of silently pairing old frames with new landmarks."""
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
    root = Path(root)
    if train_videos is None and cfg.train_split == "all":  # every video of the folder (the reference recipe)
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
    if is_reference_file(path):
        net, _ = load_reference(path)
        state = net.state_dict()
    else:
        state = load_checkpoint(path)["G"]
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, payload_checksum(state)  # the checksum of a checkpoint payload: sha256 over every tensor


def _load_g(g: nn.Module, state: dict, source: str) -> None:
    try:
        g.load_state_dict(state)
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"--init-from {source}: G's weights do not fit this network ({one_line(e)})") from e


def _check_folder_arg(option: str, path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise DataError(f"{option} {path}: is a file, expected a folder")


def _config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, dict | None]:
    """The run's config (the preset with the switches of the command line) and G's starting weights (None
    unless ``--init-from``)."""
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
    return get_config(args.config, **overrides), init_state


def _prepare_paths(args: argparse.Namespace, cfg: TrainConfig) -> tuple[Path, Path]:
    """``(data, out)`` after checking them (and ``--resume``, ``--backbone-weights``, ``--device``); generates
    the data first with ``--synth-if-missing``."""
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
        print(f"generating Synth300VW into {data} ...")
        synth.generate(data, seed=0, **FAST_SYNTH)
    return data, out


def _select_run_videos(args: argparse.Namespace, cfg: TrainConfig, data: Path
                       ) -> tuple[TrainConfig, list[str], list[str], dict[str, list[str]], Path | None]:
    """``(cfg, train_ids, val_ids, val_groups, val_data)``, every video checked (``require_valid``); without a
    validation set the config's evaluation is switched off (``eval_every=0``)."""
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
    return cfg, train_ids, val_ids, val_groups, val_data


def run(args: argparse.Namespace) -> int:
    """``tdd-lite train``: every user error is a :class:`TddError` (one line from ``tdd_lite.commands``)."""
    fast_mode()  # a TDD_FAST typo is an error before anything starts
    cfg, init_state = _config_from_args(args)
    data, out = _prepare_paths(args, cfg)
    cfg, train_ids, val_ids, val_groups, val_data = _select_run_videos(args, cfg, data)
    torch.set_num_threads(args.threads or default_threads())
    device = _init_distributed(args.device)
    try:
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
        with sigterm_raises(KeyboardInterrupt):  # the message and status of Ctrl-C
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
    return module_main("python -m tdd_lite.train", add_arguments, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
