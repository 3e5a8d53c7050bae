"""Torch datasets of face crops (paper section 4.1) and the test-time tracking cropper.

* :class:`FrameDataset`: single frames, cropped from the (jittered) enlarged box of their own ground truth.
* :class:`FramePairDataset`: the pairs the temporal discriminator needs, ``(I, I', U, U')`` with the frame
  interval drawn uniformly from ``1..max_interval`` (paper: 1..6; clipped at the sequence start). **Both frames
  are cropped with one box** - the (jittered, enlarged) ground-truth box of the *previous* frame - exactly as
  tracking crops frame t from the estimate at t-1 (DESIGN.md erratum 7). So ``U``, ``U'`` and the network's
  ``v``, ``v'`` all live in the same [0, 1] crop frame and ``U - U'`` is the true motion inside that crop.
* :class:`TrackingCropper`: the test protocol: frame 0 from the face detector (or the ground truth), every
  later frame from the previous frame's estimate.

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
    crop_image,
    from_crop,
    jitter_box,
    square_box,
    to_crop,
)
from tdd_lite.data.vw300 import Sequence, load_split

DEFAULT_JITTER = {"shift": 0.05, "scale": 0.05}
PARAMS_FILE = "params.npz"


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 RGB -> (3, S, S) float32 in [0, 1]."""
    # numpy, not torch ops: tiny tensors in DataLoader workers pay torch's intra-op threading overhead
    out = np.empty((3,) + image.shape[:2], np.float32)
    np.multiply(image.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=out, dtype=np.float32)
    return torch.from_numpy(out)


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
        self.sequences: list[Sequence] = load_split(root, split, cache_dir=cache_dir, skip_bad=skip_bad)
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

    def _crop(self, seq: Sequence, k: int, box: np.ndarray) -> torch.Tensor:
        return image_to_tensor(crop_image(seq.frame(k), box, self.size, self.border))

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
    frames) pass ``cache_dir`` so they are decoded once into JPEGs (``Sequence.build_cache``) instead of seeking.
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


class TrackingCropper:
    """The test-time crop protocol (paper section 4.1): first frame from a detector, then from the estimate.

    Usage, per video::

        cropper = TrackingCropper(size=256, mode="haar")       # or mode="gt" for controlled experiments
        for k in range(len(seq)):
            image, box = cropper.next(seq.frame(k), gt_lmk=seq.landmarks[k])   # gt only used by mode="gt"/fallback
            pred01 = G(image[None]) ...                        # (68, 2) in this crop's [0, 1] coordinates
            pred_px = cropper.update(pred01)                   # image pixels; sets the next frame's box

    If the detector finds nothing on the first frame: ``fallback="gt"`` uses the ground-truth box (when given),
    ``fallback="centre"`` a centred square of 60% of the shorter image side. :attr:`first_source` records which.
    """

    def __init__(self, size: int = 256, mode: str = "haar", enlarge: float = DEFAULT_ENLARGE,
                 fallback: str = "gt", border: str = "replicate"):
        if mode not in ("haar", "gt"):
            raise ValueError(f"mode must be 'haar' or 'gt', got {mode!r}")
        if fallback not in ("gt", "centre"):
            raise ValueError(f"fallback must be 'gt' or 'centre', got {fallback!r}")
        self.size, self.mode, self.enlarge, self.fallback, self.border = size, mode, enlarge, fallback, border
        self.reset()

    def reset(self) -> None:
        """Start a new video."""
        self.box: np.ndarray | None = None
        self.next_box: np.ndarray | None = None
        self.first_source: str | None = None
        self.frame_index = -1

    def first_box(self, image: np.ndarray, gt_lmk: np.ndarray | None = None) -> np.ndarray:
        from tdd_lite.data.detect import detect_box

        if self.mode == "gt":
            self.first_source = "gt"
            return detect_box(image, "gt", gt_lmk, self.enlarge)
        box = detect_box(image, "haar", enlarge=self.enlarge)
        if box is not None:
            self.first_source = "haar"
            return box
        if self.fallback == "gt" and gt_lmk is not None:
            self.first_source = "fallback-gt"
            return detect_box(image, "gt", gt_lmk, self.enlarge)
        h, w = image.shape[:2]
        self.first_source = "fallback-centre"
        return square_box(np.float64(w / 2), np.float64(h / 2), np.float64(0.6 * min(h, w)))

    def next(self, image: np.ndarray, gt_lmk: np.ndarray | None = None) -> tuple[torch.Tensor, np.ndarray]:
        """Crop the next frame: ``((3, S, S) float32 tensor, box)``. Call :meth:`update` before the next one."""
        if self.frame_index < 0:
            box = self.first_box(image, gt_lmk)
        elif self.next_box is None:
            raise RuntimeError("TrackingCropper.update(pred) must be called after each next()")
        else:
            box = self.next_box
        self.frame_index += 1
        self.box, self.next_box = np.asarray(box, dtype=np.float64), None
        return image_to_tensor(crop_image(image, self.box, self.size, self.border)), self.box.copy()

    def update(self, pred_lmk01: np.ndarray | torch.Tensor) -> np.ndarray:
        """Record this frame's estimate (68, 2) in crop coordinates; returns it in image pixels."""
        if self.box is None:
            raise RuntimeError("call next() first")
        p = pred_lmk01.detach().cpu().double().numpy() if isinstance(pred_lmk01, torch.Tensor) else \
            np.asarray(pred_lmk01, dtype=np.float64)
        px = from_crop(p.reshape(-1, 2), self.box)
        if not np.isfinite(px).all():
            raise ValueError(f"frame {self.frame_index}: the estimate contains NaN/inf; cannot place the next crop")
        self.next_box = np.asarray(box_from_landmarks(px, self.enlarge))
        return px


def tracking_crops(frames: Iterable[np.ndarray], predict, size: int = 256, mode: str = "haar",
                   gt_landmarks: np.ndarray | None = None, **kwargs) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Run the tracking protocol over ``frames`` with ``predict(image (3,S,S)) -> (68, 2) crop coords``;
    yields ``(pred_px (68, 2), box)`` per frame."""
    cropper = TrackingCropper(size, mode, **kwargs)
    for k, img in enumerate(frames):
        gt = None if gt_landmarks is None else gt_landmarks[k]
        x, box = cropper.next(img, gt)
        yield cropper.update(predict(x)), box


__all__ = ["FrameDataset", "FramePairDataset", "TrackingCropper", "tracking_crops", "image_to_tensor"]
