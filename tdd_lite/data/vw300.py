"""300VW: the folder layout, the official splits, a lazy sequence reader and the ``check-data`` validator.

Layout (the 300VW release; Synth300VW writes the same)::

    ROOT/NNN/vid.avi              the video (any codec this OpenCV can decode)
    ROOT/NNN/annot/000001.pts     68 landmarks of frame 0 (frame k, 0-based, pairs with annot/%06d.pts % (k+1))
    ROOT/splits.json              optional: {"train": [...], "A": [...], "B": [...], "C": [...]}
    ROOT/NNN/params.npz           optional (Synth300VW only): the true 3DMM and camera parameters

The data root is an argument or the ``TDD_300VW_ROOT`` environment variable. Landmarks are returned as stored
(see :mod:`tdd_lite.data.pts` for the coordinate convention).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tdd_lite.data.pts import N_POINTS, PtsError, read_pts
from tdd_lite.errors import DataError, UsageError

ENV_ROOT = "TDD_300VW_ROOT"
SPLIT_NAMES = ("train", "A", "B", "C")

# The official protocol (DESIGN.md; Shen et al. 2015 / Chrysos et al. 2018): 50 training videos and three
# test categories: A (well lit), B (mild unconstrained), C (challenging).
OFFICIAL_SPLITS: dict[str, tuple[str, ...]] = {
    "train": tuple("001 002 003 004 007 009 010 011 013 015 016 017 018 019 020 022 025 027 028 029 031 033 034 035 "
                   "037 039 041 043 044 046 047 048 049 053 057 059 112 113 115 119 120 123 138 143 144 160 204 205 "
                   "223 225".split()),
    "A": tuple("114 124 125 126 150 158 401 402 505 506 507 508 509 510 511 514 515 518 519 520 521 522 524 525 537 "
               "538 540 541 546 547 548".split()),
    "B": tuple("203 208 211 212 213 214 218 224 403 404 405 406 407 408 409 412 550 551 553".split()),
    "C": tuple("410 411 516 517 526 528 529 530 531 533 557 558 559 562".split()),
}

VIDEO_FILE = "vid.avi"
ANNOT_DIR = "annot"
SPLITS_FILE = "splits.json"
PTS_NAME = re.compile(r"^(\d{6})\.pts$")
VIDEO_NAME = re.compile(r"^\d{3}$")
# A landmark may sit slightly outside the frame (a jaw point at the image border); beyond this fraction of the
# frame size it is an annotation error.
OUTSIDE_MARGIN = 0.1


class MissingDataError(DataError, FileNotFoundError):
    """A data root, video folder or file that does not exist (a :class:`DataError`, also a FileNotFoundError)."""

    __str__ = DataError.__str__


class UnknownSplitError(DataError, KeyError):
    """A split name the data root does not define (a :class:`DataError`, also a KeyError)."""

    __str__ = DataError.__str__


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The 300VW root: ``root`` if given, else ``$TDD_300VW_ROOT``; raises if neither is set or it is missing."""
    raw = root if root is not None else os.environ.get(ENV_ROOT)
    if raw is None or str(raw) == "":
        raise MissingDataError(f"no 300VW root given: pass a path or set {ENV_ROOT}=/path/to/300VW")
    path = Path(raw).expanduser()
    if not path.is_dir():
        raise MissingDataError(f"300VW root {path} is not a directory")
    return path


def _parse_splits(obj: object, source: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a JSON object mapping split names to lists of video ids")
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for name, ids in obj.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{source}: split {name!r} must be a list of video id strings like \"001\"")
        for i in ids:
            if i in seen:
                raise ValueError(f"{source}: video {i} is in both split {seen[i]!r} and split {name!r}")
            seen[i] = name
        out[str(name)] = tuple(ids)
    return out


def load_splits(root: str | os.PathLike | None = None) -> dict[str, tuple[str, ...]]:
    """``root/splits.json`` if present (Synth300VW writes one), else :data:`OFFICIAL_SPLITS`."""
    if root is not None:
        f = Path(root) / SPLITS_FILE
        if f.exists():
            try:
                obj = json.loads(f.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{f}: not valid JSON ({e})") from e
            return _parse_splits(obj, str(f))
    return dict(OFFICIAL_SPLITS)


def split_videos(root: str | os.PathLike, split: str | Iterable[str]) -> list[str]:
    """Video ids of a split name (``"train"``, ``"A"`` ..., ``"test"`` = A+B+C) or an explicit list of ids."""
    if not isinstance(split, str):
        return [str(s) for s in split]
    splits = load_splits(root)
    if split == "test":
        return [v for k in ("A", "B", "C") for v in splits.get(k, ())]
    if split not in splits:
        raise UnknownSplitError(f"unknown split {split!r}; {root} has splits {sorted(splits)} (and 'test' = A+B+C)")
    return list(splits[split])


def annotation_files(annot_dir: Path) -> list[Path]:
    """The ``%06d.pts`` files of a sequence, in frame order (other files are ignored here, reported by validate)."""
    files = [p for p in annot_dir.iterdir() if PTS_NAME.match(p.name)]
    return sorted(files, key=lambda p: int(p.stem))


_INHERITED_CAPTURES: list = []
_OPEN_SEQUENCES: weakref.WeakSet = weakref.WeakSet()


def _release_before_fork() -> None:
    """Close this process's captures before a fork (DataLoader workers): children then start clean."""
    for seq in list(_OPEN_SEQUENCES):
        seq.close()


os.register_at_fork(before=_release_before_fork)


class Sequence:
    """One video folder ``ROOT/NNN``: lazy frames and its (T, 68, 2) landmarks.

    Frames are decoded on demand with OpenCV (a ``VideoCapture`` opened lazily in the calling process, so the
    object can be sent to DataLoader workers), or read from a one-time JPEG cache (:meth:`build_cache`).
    ``skip_bad=True`` turns unreadable ``.pts`` files into NaN landmarks listed in :attr:`bad_frames`
    instead of raising.
    """

    def __init__(self, path: str | os.PathLike, cache_dir: str | os.PathLike | None = None, skip_bad: bool = False):
        self.path = Path(path)
        self.name = self.path.name
        self.video_path = self.path / VIDEO_FILE
        self.annot_dir = self.path / ANNOT_DIR
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / self.name
        self.skip_bad = skip_bad
        self._bad_frames: list[int] = []
        self._landmarks: np.ndarray | None = None
        self._cap: cv2.VideoCapture | None = None
        self._cap_pid: int | None = None
        self._next = 0
        self._size: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"Sequence({str(self.path)!r})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cap"], state["_cap_pid"], state["_next"] = None, None, 0
        return state

    # ------------------------------------------------------------ landmarks
    @property
    def landmarks(self) -> np.ndarray:
        """(T, 68, 2) float64 image-pixel landmarks; row k is ``annot/%06d.pts % (k + 1)``."""
        if self._landmarks is None:
            if not self.annot_dir.is_dir():
                raise FileNotFoundError(f"{self.annot_dir}: annotation folder missing")
            files = annotation_files(self.annot_dir)
            if not files:
                raise FileNotFoundError(f"{self.annot_dir}: no %06d.pts annotation files")
            lmk = np.full((len(files), N_POINTS, 2), np.nan)
            for k, f in enumerate(files):
                if int(f.stem) != k + 1:
                    raise ValueError(f"{self.annot_dir}: annotation {k + 1:06d}.pts is missing (next is {f.name})")
                try:
                    lmk[k] = read_pts(f)
                except PtsError:
                    if not self.skip_bad:
                        raise
                    self._bad_frames.append(k)
            self._landmarks = lmk
        return self._landmarks

    def __len__(self) -> int:
        return len(self.landmarks)

    @property
    def bad_frames(self) -> list[int]:
        """Frames whose ``.pts`` could not be read (only with ``skip_bad=True``; else reading raises)."""
        _ = self.landmarks
        return list(self._bad_frames)

    @property
    def valid_frames(self) -> np.ndarray:
        """Indices of frames with usable (finite) landmarks."""
        return np.nonzero(np.isfinite(self.landmarks).all(axis=(1, 2)))[0]

    # --------------------------------------------------------------- frames
    def _capture(self) -> cv2.VideoCapture:
        if self._cap is not None and self._cap_pid != os.getpid():
            # inherited through fork: its FFmpeg threads live only in the parent, so releasing it here would
            # wait forever. Keep it referenced (never destroyed) and open our own.
            _INHERITED_CAPTURES.append(self._cap)
            self._cap = None
        if self._cap is None:
            if not self.video_path.exists():
                raise FileNotFoundError(f"{self.video_path}: video missing")
            cap = cv2.VideoCapture(str(self.video_path))
            if not cap.isOpened():
                raise OSError(f"{self.video_path}: OpenCV cannot open this video")
            self._cap, self._cap_pid, self._next = cap, os.getpid(), 0
            _OPEN_SEQUENCES.add(self)
        return self._cap

    def close(self) -> None:
        """Release the video (only a capture this process opened; see :meth:`_capture`)."""
        if self._cap is not None and self._cap_pid == os.getpid():
            self._cap.release()
        elif self._cap is not None:
            _INHERITED_CAPTURES.append(self._cap)
        self._cap, self._next = None, 0
        _OPEN_SEQUENCES.discard(self)

    def _cached(self, k: int) -> Path | None:
        if self.cache_dir is not None and (self.cache_dir / "complete").exists():
            return self.cache_dir / f"{k + 1:06d}.jpg"
        return None

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` (0-based) as an RGB uint8 ``(H, W, 3)`` array."""
        if k < 0:
            raise IndexError(f"{self.video_path}: frame index {k} < 0")
        cached = self._cached(k)
        if cached is not None:
            img = cv2.imread(str(cached), cv2.IMREAD_COLOR)
            if img is None:
                raise IndexError(f"{cached}: frame {k} not in the frame cache")
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        cap = self._capture()
        if k != self._next:
            cap.set(cv2.CAP_PROP_POS_FRAMES, k)
        ok, img = cap.read()
        if not ok or img is None:
            self._next = -1
            raise IndexError(f"{self.video_path}: cannot decode frame {k}")
        self._next = k + 1
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)

    def frames(self) -> Iterable[np.ndarray]:
        """All frames in order (sequential decoding, the fast path)."""
        cap = cv2.VideoCapture(str(self.video_path))
        if not cap.isOpened():
            raise OSError(f"{self.video_path}: OpenCV cannot open this video")
        try:
            while True:
                ok, img = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the video."""
        if self._size is None:
            cap = cv2.VideoCapture(str(self.video_path))
            try:
                if not cap.isOpened():
                    raise OSError(f"{self.video_path}: OpenCV cannot open this video")
                self._size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            finally:
                cap.release()
        return self._size

    def build_cache(self, quality: int = 95) -> Path:
        """Decode the video once into ``cache_dir/NNN/%06d.jpg`` (atomic: a temp folder renamed when complete)."""
        if self.cache_dir is None:
            raise ValueError("Sequence was created without cache_dir")
        if (self.cache_dir / "complete").exists():
            return self.cache_dir
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=self.name + ".partial-", dir=self.cache_dir.parent))
        try:
            n = 0
            for n, img in enumerate(self.frames(), start=1):
                cv2.imwrite(str(tmp / f"{n:06d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])
            (tmp / "complete").write_text(f"{n}\n")
            try:
                os.replace(tmp, self.cache_dir)
            except OSError:  # another process finished first
                if not (self.cache_dir / "complete").exists():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.cache_dir


VIDEO_FOURCC = "MJPG"  # Motion-JPEG in AVI: every OpenCV build with FFmpeg writes and reads it; exact seeking


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 30.0, quality: int = 90) -> int:
    """Write RGB uint8 frames to an MJPG ``.avi`` atomically (temp file, then rename); returns the frame count."""
    path = Path(path)
    tmp = path.with_name(path.stem + ".partial" + path.suffix)
    writer = None
    n = 0
    try:
        for img in frames:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"{path}: frame {n} must be (H, W, 3) uint8, got {img.shape} {img.dtype}")
            if writer is None:
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps,
                                         (img.shape[1], img.shape[0]))
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV cannot write {VIDEO_FOURCC} video here")
                writer.set(cv2.VIDEOWRITER_PROP_QUALITY, quality)
            writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            n += 1
        if writer is None:
            raise ValueError(f"{path}: no frames to write")
        writer.release()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.release()
        if tmp.exists():
            tmp.unlink()
    return n


def write_sequence(folder: str | os.PathLike, frames: Iterable[np.ndarray], landmarks: np.ndarray,
                   fps: float = 30.0, decimals: int | None = None) -> Path:
    """Write one sequence in the 300VW layout: ``folder/vid.avi`` and ``folder/annot/%06d.pts`` (1-based)."""
    from tdd_lite.data.pts import write_pts

    folder = Path(folder)
    (folder / ANNOT_DIR).mkdir(parents=True, exist_ok=True)
    n = write_video(folder / VIDEO_FILE, frames, fps)
    if len(landmarks) != n:
        raise ValueError(f"{folder}: {n} frames but {len(landmarks)} landmark sets")
    for k, p in enumerate(landmarks):
        write_pts(folder / ANNOT_DIR / f"{k + 1:06d}.pts", p, decimals=decimals)
    return folder


def load_split(root: str | os.PathLike | None, split: str | Iterable[str], cache_dir: str | os.PathLike | None = None,
               skip_bad: bool = False) -> list[Sequence]:
    """The :class:`Sequence` objects of a split (``root`` None -> ``$TDD_300VW_ROOT``)."""
    r = data_root(root)
    return [Sequence(r / v, cache_dir=cache_dir, skip_bad=skip_bad) for v in split_videos(r, split)]


# ====================================================================== selection and the pre-run check
def present_videos(root: str | os.PathLike) -> list[str]:
    """Every ``NNN/`` folder of ``root`` that has an ``annot/`` folder, sorted."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir()
                  if VIDEO_NAME.match(p.name) and p.is_dir() and (p / ANNOT_DIR).is_dir())


def select_videos(root: str | os.PathLike | None, splits: list[str] | None = None, videos: list[str] | None = None,
                  all_videos: bool = False) -> dict[str, list[str]]:
    """Category -> video ids to run on.

    ``splits`` (default A B C) uses ``splits.json`` if present, else the official 300VW lists restricted to the
    videos present (an official split none of whose videos is present is a DataError naming the split);
    ``videos=[...]`` -> ``{"videos": ids}`` (each must exist: DataError naming the missing folder);
    ``all_videos`` -> ``{"all": every NNN/ folder with annot/ present}``. An empty selection is a DataError;
    combining more than one of splits/videos/all is a UsageError.
    """
    given = [name for name, on in (("--splits", splits is not None), ("--videos", videos is not None),
                                   ("--all", bool(all_videos))) if on]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} cannot be combined: choose the videos one way")
    r = data_root(root)
    if videos is not None:
        ids = [str(v) for v in videos]
        if not ids:
            raise UsageError("--videos needs at least one video id")
        for v in ids:
            if not (r / v).is_dir():
                raise MissingDataError(f"{r / v}: video folder does not exist (from --videos)")
        return {"videos": list(dict.fromkeys(ids))}
    if all_videos:
        ids = present_videos(r)
        if not ids:
            raise DataError(f"{r}: no NNN/ video folders with an annot/ folder (is this a 300VW-layout root?)")
        return {"all": ids}
    names = list(splits) if splits is not None else ["A", "B", "C"]
    if not names:
        raise UsageError("--splits needs at least one split name")
    custom = (r / SPLITS_FILE).exists()
    table = load_splits(r)
    out: dict[str, list[str]] = {}
    for name in names:
        if name == "test":
            parts = [k for k in ("A", "B", "C") if k in table]
        elif name in table:
            parts = [name]
        else:
            src = str(r / SPLITS_FILE) if custom else "the official 300VW splits"
            raise UnknownSplitError(f"unknown split {name!r}: {src} lists splits {', '.join(sorted(table))} "
                                    f"(and 'test' = A+B+C)")
        ids = [v for k in parts for v in table[k]]
        if custom:
            missing = [v for v in ids if not (r / v).is_dir()]
            if missing:
                raise MissingDataError(f"{r / SPLITS_FILE}: split {name!r} lists video {missing[0]} but "
                                       f"{r / missing[0]} does not exist"
                                       + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""))
        else:
            ids = [v for v in ids if (r / v).is_dir()]
            if not ids:
                raise DataError(f"{r}: none of the {sum(len(table[k]) for k in parts)} official 300VW videos of "
                                f"split {name!r} is present (pass --videos ID ... or --all to use what is there)")
        if ids:
            out[name] = ids
    if not out:
        raise DataError(f"{r / SPLITS_FILE}: splits {', '.join(names)} are empty: no videos to run on")
    return out


def require_valid(root: str | os.PathLike | None, videos: Iterable[str], skip_bad: bool = False,
                  command: str = "train") -> None:
    """The quick check ``check-data --quick`` does (same code path), on just these videos, before a run.

    Raises :class:`DataError` with the first few errors (file, line, what was expected) and a hint to run
    ``tdd-lite check-data ROOT --videos ...`` for the full report. ``skip_bad`` has the meaning of
    ``check-data --skip-bad-frames`` (bad frames are warnings and are skipped).
    """
    r = data_root(root)
    ids = list(dict.fromkeys(str(v) for v in videos))
    if not ids:
        raise DataError(f"{r}: no videos selected for {command}")
    report = validate(r, skip_bad=skip_bad, quick=True, videos=ids)
    errors = report.errors
    if not errors:
        return
    shown = "; ".join(f"{e.where}: {e.message}" for e in errors[:3])
    more = f" (and {len(errors) - 3} more errors)" if len(errors) > 3 else ""
    vids = " ".join(ids) if len(ids) <= 8 else " ".join(ids[:8]) + " ..."
    flag = " --skip-bad-frames" if skip_bad else ""
    raise DataError(f"the videos {command} would use are not valid data: {shown}{more}; "
                    f"run `tdd-lite check-data {r} --videos {vids}{flag}` for the full report")


# ====================================================================== validation
@dataclass
class Issue:
    level: str  # "error" | "warning"
    where: str  # a path
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper():7s} {self.where}: {self.message}"


@dataclass
class Report:
    """What :func:`validate` found. ``ok`` is False when there is any error."""

    root: Path
    issues: list[Issue] = field(default_factory=list)
    videos: int = 0
    frames: int = 0
    skipped: dict[str, list[int]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, where: Path | str, message: str) -> None:
        self.issues.append(Issue("error", str(where), message))

    def warn(self, where: Path | str, message: str) -> None:
        self.issues.append(Issue("warning", str(where), message))

    def format(self, limit: int = 50) -> str:
        lines = [f"check-data {self.root}: {self.videos} videos, {self.frames} annotated frames checked"]
        for i in self.issues[:limit]:
            lines.append("  " + str(i))
        if len(self.issues) > limit:
            lines.append(f"  ... and {len(self.issues) - limit} more")
        n_skip = sum(len(v) for v in self.skipped.values())
        if n_skip:
            lines.append(f"  skipped {n_skip} bad frames in {len(self.skipped)} videos (--skip-bad-frames)")
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {len(self.errors)} errors, {len(self.warnings)} warnings")
        return "\n".join(lines)


def _count_frames(video: Path, quick: bool) -> tuple[int, int, int]:
    """(frames, width, height); frames by grabbing every frame unless ``quick`` (trust the container)."""
    cap = cv2.VideoCapture(str(video))
    try:
        if not cap.isOpened():
            raise OSError("OpenCV cannot open it (corrupt file or unsupported codec)")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if quick:
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        else:
            n = 0
            while cap.grab():
                n += 1
        if n > 0 and (w <= 0 or h <= 0):
            raise OSError(f"frame size {w}x{h} is invalid")
        if n > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = cap.read()
            if not ok or img is None:
                raise OSError("the first frame cannot be decoded")
        return n, w, h
    finally:
        cap.release()


def _check_video(report: Report, folder: Path, skip_bad: bool, quick: bool) -> None:
    name = folder.name
    video = folder / VIDEO_FILE
    annot = folder / ANNOT_DIR
    bad: list[int] = []

    def bad_frame(where: Path, k: int, message: str) -> None:
        if skip_bad:
            report.warn(where, message + f" (frame {k} skipped)")
            bad.append(k)
        else:
            report.error(where, message)

    for extra in sorted(p.name for p in folder.iterdir() if p.name not in (VIDEO_FILE, ANNOT_DIR, "params.npz")):
        report.warn(folder / extra, "stray file or folder (not part of the 300VW layout; ignored)")
    n_frames = w = h = None
    if not video.exists():
        report.error(video, "missing video file")
    elif video.stat().st_size == 0:
        report.error(video, "video file is empty (0 bytes)")
    else:
        try:
            n_frames, w, h = _count_frames(video, quick)
        except OSError as e:
            report.error(video, f"unreadable video: {e}")
        else:
            if n_frames == 0:
                report.error(video, "video has no decodable frames")
    if not annot.is_dir():
        report.error(annot, "missing annotation folder (expected annot/000001.pts ...)")
        return
    files = annotation_files(annot)
    for p in sorted(annot.iterdir()):
        if not PTS_NAME.match(p.name):
            report.warn(p, "stray file in annot/ (expected only %06d.pts; ignored)")
    if not files:
        report.error(annot, "no annotation files (expected 000001.pts ...)")
        return
    numbers = [int(f.stem) for f in files]
    expected = list(range(1, len(files) + 1))
    if numbers != expected:
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        if numbers[0] == 0:
            report.error(annot, "annotations start at 000000.pts; 300VW numbers frames from 000001.pts")
        elif missing:
            names = ", ".join(f"{m:06d}.pts" for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            report.error(annot, f"annotation numbering has gaps: missing {names}{more}")
    n_annot = numbers[-1] if numbers else 0
    if n_frames is not None and n_frames > 0 and n_frames != n_annot:
        msg = f"frame/annotation count mismatch: video has {n_frames} frames, annot/ has {n_annot} .pts files"
        if skip_bad and abs(n_frames - n_annot) <= max(5, n_annot // 100):
            report.warn(folder, msg + f" (using the first {min(n_frames, n_annot)})")
            bad.extend(range(min(n_frames, n_annot), n_annot))
        else:
            report.error(folder, msg)
    for f in files:
        k = int(f.stem) - 1
        try:
            p = read_pts(f)
        except PtsError as e:
            bad_frame(f, k, f"bad .pts: {str(e).removeprefix(str(f)).lstrip(': ')}")
            continue
        report.frames += 1
        if w:
            mx, my = OUTSIDE_MARGIN * w, OUTSIDE_MARGIN * h
            out = (p[:, 0] < -mx) | (p[:, 0] > w - 1 + mx) | (p[:, 1] < -my) | (p[:, 1] > h - 1 + my)
            if out.any():
                i = int(np.argmax(out))
                bad_frame(f, k, f"{int(out.sum())} landmarks outside the {w}x{h} frame "
                          f"(e.g. point {i + 1} at ({p[i, 0]:.1f}, {p[i, 1]:.1f}))")
                continue
        ext = p.max(0) - p.min(0)
        if (ext < 1e-6).any():
            bad_frame(f, k, "degenerate landmarks (all points on one line or one spot)")
    if bad:
        report.skipped[name] = sorted(set(bad))


def validate(root: str | os.PathLike, skip_bad: bool = False, quick: bool = False,
             videos: Iterable[str] | None = None) -> Report:
    """Check a 300VW-layout folder; every problem becomes an :class:`Issue` (nothing raises).

    ``skip_bad`` downgrades per-frame problems (bad ``.pts``, landmarks outside the frame, a few trailing
    frames without a partner) to warnings and lists those frames in ``report.skipped``. ``quick`` trusts the
    container's frame count instead of decoding every frame header.
    """
    root = Path(root)
    report = Report(root=root)
    if not root.is_dir():
        report.error(root, "data root does not exist or is not a directory")
        return report
    try:
        splits = load_splits(root)
        custom = (root / SPLITS_FILE).exists()
    except ValueError as e:
        report.error(root / SPLITS_FILE, str(e).removeprefix(str(root / SPLITS_FILE) + ": "))
        splits, custom = {}, True
    in_split = {v: s for s, ids in splits.items() for v in ids}
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and VIDEO_NAME.match(p.name))
    for p in sorted(root.iterdir()):
        if p.name in (SPLITS_FILE, "synth.json") or (p.is_dir() and VIDEO_NAME.match(p.name)):
            continue
        report.warn(p, "stray entry in the data root (expected NNN video folders and splits.json; ignored)")
    wanted = list(videos) if videos is not None else sorted(set(present) | set(in_split))
    if not present:
        report.error(root, "no NNN video folders found (is this the 300VW root?)")
    for v in wanted:
        folder = root / v
        if not folder.is_dir():
            src = SPLITS_FILE if custom else "the official 300VW splits"
            report.error(folder, f"missing video folder (listed in split {in_split.get(v, '?')!r} of {src})")
            continue
        if v not in in_split and splits:
            report.warn(folder, "video is not in any split (it will not be used)")
        report.videos += 1
        _check_video(report, folder, skip_bad, quick)
    return report


# ====================================================================== CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", nargs="?", default=None, help=f"the 300VW root (default: ${ENV_ROOT})")
    parser.add_argument("--skip-bad-frames", action="store_true",
                        help="report bad frames as warnings and skip them instead of failing")
    parser.add_argument("--quick", action="store_true",
                        help="trust the container's frame count instead of reading every frame")
    parser.add_argument("--videos", nargs="+", default=None, metavar="NNN", help="check only these videos")


def run(args: argparse.Namespace) -> int:
    try:
        root = data_root(args.root)
    except FileNotFoundError as e:
        print(f"check-data: {e}")
        return 2
    report = validate(root, skip_bad=args.skip_bad_frames, quick=args.quick, videos=args.videos)
    print(report.format())
    return 0 if report.ok else 1
