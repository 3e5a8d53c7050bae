"""Torch datasets of face crops (paper section 4.1).

* :class:`FrameDataset`: single frames, cropped from the (jittered) enlarged box of their own ground truth.
* :class:`FramePairDataset`: the pairs the temporal discriminator needs, ``(I, I', U, U')`` with the frame
  interval drawn uniformly from ``1..max_interval`` (paper: 1..6; clipped at the sequence start). **Both frames
  are cropped with one box** - the (jittered, enlarged) ground-truth box of the *previous* frame - exactly as
  tracking crops frame t from the estimate at t-1 (the book's errata page, erratum 7). So ``U``, ``U'`` and the
  network's ``v``, ``v'`` all live in the same [0, 1] crop frame and ``U - U'`` is the true motion inside that crop.
* The test protocol (frame 0 from a face detector, every later frame from the previous frame's estimate) lives
  in :mod:`tdd_lite.track` (``Tracker``, ``TrackingCropper``).

Items are dicts of tensors (``image`` (3, S, S) float32 in [0, 1]; landmarks (68, 2) float32 in crop
coordinates; ``box`` (4,) float32 image pixels) plus ``video`` (str) and ``frame`` (int). Frames are decoded
lazily inside each DataLoader worker (no ``VideoCapture`` crosses a fork) or read from a JPEG frame cache.
Random augmentation (box jitter) is on for ``split="train"`` and off otherwise unless ``augment`` says so;
it is deterministic given ``seed``, the item index and the epoch (:meth:`set_epoch`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from tdd_lite.data.crops import (
    DEFAULT_ENLARGE,
    box_from_landmarks,
    camera_to_crop,
    crop_tensor,
    jitter_box,
    to_crop,
)
from tdd_lite.data.synth import PARAMS_FILE
from tdd_lite.data.vw300 import VideoSequence, load_split

DEFAULT_JITTER = {"shift": 0.05, "scale": 0.05}


def _f32(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


class _Base(Dataset):
    def __init__(self, root: str | os.PathLike | None, split: str | Iterable[str], size: int,
                 enlarge: float, augment: bool | None, jitter: dict | None, seed: int,
                 cache_dir: str | os.PathLike | None, skip_bad: bool, with_params: bool, border: str):
        if size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {size}")
        self.size, self.enlarge, self.seed, self.border = int(size), float(enlarge), int(seed), border
        self.augment = (split == "train") if augment is None else bool(augment)
        self.jitter = dict(DEFAULT_JITTER if jitter is None else jitter)
        self.epoch = 0
        self.sequences: list[VideoSequence] = load_split(root, split, cache_dir=cache_dir, skip_bad=skip_bad)
        if not self.sequences:
            raise ValueError(f"split {split!r} of {root} has no videos")
        if cache_dir is not None:
            for s in self.sequences:
                s.build_cache()
        self.with_params = with_params
        self._params: dict[int, dict[str, np.ndarray]] = {}
        if with_params:
            for i, s in enumerate(self.sequences):
                f = s.path / PARAMS_FILE
                if not f.exists():
                    raise FileNotFoundError(f"{f}: with_params=True needs Synth300VW's params.npz")
                with np.load(f, allow_pickle=False) as z:
                    self._params[i] = {k: z[k] for k in ("alpha_id", "alpha_exp", "camera")}

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draw (call before each epoch; workers pick it up when they start)."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])

    def _box(self, lmk_px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        box = box_from_landmarks(lmk_px, self.enlarge)
        if self.augment:
            box = jitter_box(box, rng, **self.jitter)
        return np.asarray(box, dtype=np.float64)

    def _crop(self, seq: VideoSequence, k: int, box: np.ndarray) -> torch.Tensor:
        return crop_tensor(seq.frame(k), box, self.size, self.border)

    def _params_item(self, vi: int, k: int, box: np.ndarray, prefix: str = "") -> dict:
        p = self._params[vi]
        return {prefix + "alpha_id": _f32(p["alpha_id"]), prefix + "alpha_exp": _f32(p["alpha_exp"][k]),
                prefix + "camera": _f32(camera_to_crop(p["camera"][k], box))}


class FrameDataset(_Base):
    """Single frames of a split: ``image``, ``gt_lmk`` (U, crop coords), ``box``, ``video``, ``frame``.

    With ``with_params=True`` (Synth300VW) also the true ``alpha_id``, ``alpha_exp`` and ``camera``, the
    camera already mapped into this crop's [0, 1] coordinates. ``frame_step`` subsamples long videos.
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str | Iterable[str] = "train", size: int = 256,
                 enlarge: float = DEFAULT_ENLARGE, augment: bool | None = None, jitter: dict | None = None,
                 seed: int = 0, cache_dir: str | os.PathLike | None = None, skip_bad: bool = False,
                 frame_step: int = 1, with_params: bool = False, border: str = "replicate"):
        super().__init__(root, split, size, enlarge, augment, jitter, seed, cache_dir, skip_bad, with_params, border)
        self.index = [(vi, int(k)) for vi, s in enumerate(self.sequences) for k in s.valid_frames[::frame_step]]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        vi, k = self.index[i]
        seq = self.sequences[vi]
        lmk = seq.landmarks[k]
        box = self._box(lmk, self._rng(i))
        item = {"image": self._crop(seq, k, box),
                "gt_lmk": _f32(to_crop(lmk, box)),
                "box": _f32(box), "video": seq.name, "frame": k}
        if self.with_params:
            item.update(self._params_item(vi, k, box))
        return item


class FramePairDataset(_Base):
    """Frame pairs for the temporal discriminator (eq. 12-13), one item per current frame ``t >= 1``.

    ``image`` (I, frame t), ``prev_image`` (I', frame t - interval), ``gt_lmk`` (U), ``prev_gt_lmk`` (U'),
    ``box`` (the one crop box of both: the enlarged, jittered GT box of the previous frame), ``interval``,
    ``video``, ``frame``, ``prev_frame``. The interval is uniform in ``1..max_interval`` and clipped at the start.

    Each item decodes two frames at random positions: on real 300VW videos (inter-frame codecs, thousands of
    frames) pass ``cache_dir`` so they are decoded once into JPEGs (``VideoSequence.build_cache``) instead of seeking.
    """

    def __init__(self, root: str | os.PathLike | None = None, split: str | Iterable[str] = "train", size: int = 256,
                 max_interval: int = 6, enlarge: float = DEFAULT_ENLARGE, augment: bool | None = None,
                 jitter: dict | None = None, seed: int = 0, cache_dir: str | os.PathLike | None = None,
                 skip_bad: bool = False, frame_step: int = 1, with_params: bool = False, border: str = "replicate"):
        super().__init__(root, split, size, enlarge, augment, jitter, seed, cache_dir, skip_bad, with_params, border)
        if max_interval < 1:
            raise ValueError(f"max_interval must be >= 1, got {max_interval}")
        self.max_interval = int(max_interval)
        self.index = []
        self._valid = []
        for vi, s in enumerate(self.sequences):
            valid = s.valid_frames
            self._valid.append(set(valid.tolist()))
            first = valid[0] if len(valid) else 0
            self.index += [(vi, int(k)) for k in valid[::frame_step] if k > first]
        if not self.index:
            raise ValueError("no frame pairs: every video has fewer than two usable frames")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        vi, t = self.index[i]
        seq = self.sequences[vi]
        rng = self._rng(i)
        d = int(rng.integers(1, self.max_interval + 1))
        prev = max(t - d, 0)
        valid = self._valid[vi]
        while prev not in valid and prev < t - 1:  # a skipped bad frame: move towards t
            prev += 1
        if prev not in valid:
            prev = max(v for v in valid if v < t)
        lmk, prev_lmk = seq.landmarks[t], seq.landmarks[prev]
        box = self._box(prev_lmk, rng)
        item = {"image": self._crop(seq, t, box), "prev_image": self._crop(seq, prev, box),
                "gt_lmk": _f32(to_crop(lmk, box)),
                "prev_gt_lmk": _f32(to_crop(prev_lmk, box)),
                "box": _f32(box), "interval": t - prev,
                "video": seq.name, "frame": t, "prev_frame": prev}
        if self.with_params:
            item.update(self._params_item(vi, t, box))
            item.update(self._params_item(vi, prev, box, prefix="prev_"))
        return item


__all__ = ["FrameDataset", "FramePairDataset"]
