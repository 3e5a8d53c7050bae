"""What a training run depends on (section 4.1): :class:`TrainConfig`, its presets, Table 3's rows, the lr schedule.

Presets (:func:`get_config`): ``paper`` (256 px, batch 20, 500 epochs, GPU), ``fast`` (CPU, 64 px, 1500 steps, JPEG
frame cache), ``ablation`` (Table 3's grid on 2 CPU cores), ``reference`` (the recipe of the shipped reference
model), ``finetune`` (Table 3 at convergence, from a pre-trained G) and ``smoke`` (seconds, tests).
:func:`ablation_configs` gives the 8 on/off combinations of D_ID, D_ED and D_TD (Table 3).

Learning rate (the paper: Adam, 1e-3 "gradually decreased to 0.00001 over time"): :func:`lr_factor`, by default
along a **cosine** (``schedule="cosine"``: stays near 1e-3 for longer, which matters for short runs);
``schedule="exponential"`` is the other natural reading.

``--resume`` compares the stored config with this run's (:func:`config_differences`); only the fields in
:data:`RESUME_FREE_FIELDS` (they change neither the model nor the data a step sees) may differ.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from tdd_lite import losses
from tdd_lite.discriminators import DISCRIMINATOR_NAMES
from tdd_lite.errors import UsageError

CONFIG_NAMES = ("paper", "reference", "fast", "ablation", "finetune", "smoke")
SCHEDULES = ("cosine", "exponential")
REAL_DISPS = ("paper", "truth")
# config fields that change neither the model nor the data a step sees: --resume may change these
RESUME_FREE_FIELDS = ("name", "eval_every", "log_every", "checkpoint_every", "num_workers", "frame_cache",
                      "val_samples", "val_split")


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


def config_differences(saved: dict, cfg: TrainConfig) -> list[str]:
    """``field (checkpoint X, this run Y)`` for every config field that differs and matters for a resume."""
    now = cfg.to_dict()
    return [f"{k} (checkpoint {saved.get(k)!r}, this run {now[k]!r})" for k in now
            if k not in RESUME_FREE_FIELDS and saved.get(k) != now[k]]

