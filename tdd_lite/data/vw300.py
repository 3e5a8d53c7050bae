"""300VW: the folder layout, the official splits, a lazy sequence reader and the ``check-data`` validator.

Layout (the 300VW release; Synth300VW writes the same)::

    ROOT/NNN/vid.avi              the video (any codec this OpenCV can decode)
    ROOT/NNN/annot/000001.pts     68 landmarks of frame 0 (frame k, 0-based, pairs with annot/%06d.pts % (k+1))
    ROOT/splits.json              optional: {"train": [...], "A": [...], "B": [...], "C": [...]}
    ROOT/NNN/params.npz           optional (Synth300VW only): the true 3DMM and camera parameters

The data root is an argument or the ``TDD_300VW_ROOT`` environment variable. Landmarks are returned as stored
(see :mod:`tdd_lite.data.pts` for the coordinate convention). Videos are opened, decoded, counted and written
by :mod:`tdd_lite.video_io` (the one home of video I/O); this module knows the layout around them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tdd_lite.data.pts import N_POINTS, PtsError, read_pts, write_pts
from tdd_lite.errors import DataError, MissingDataError, UsageError
from tdd_lite.files import (
    PARTIAL_MARKER,
    is_partial,
    make_partial_dir,
    read_regular_file,
    remove_partial,
    remove_stale_partials,
)
from tdd_lite.video_io import (
    count_frames,
    open_video,
    read_frame,
    read_frames,
    special_kind,
    video_header,
    write_video,
)

ENV_ROOT = "TDD_300VW_ROOT"
CATEGORIES = ("A", "B", "C")  # the test categories of 300VW (below)
SPLIT_NAMES = ("train", *CATEGORIES)

# The official protocol (Shen et al. 2015 / Chrysos et al. 2018): 50 training videos and three
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
# A face whose landmark box is narrower or shorter than this (pixels), or whose landmarks lie on one line (the
# spread across the best-fit line under this fraction of the spread along it), is a degenerate annotation: its
# crop box and normalisation distance are meaningless. Real faces are tens of pixels and nowhere near a line.
MIN_FACE_PX = 2.0
COLLINEAR_RATIO = 0.01
MAX_SPLITS_BYTES = 1 << 20


def _count_slack(n_annot: int) -> int:
    """How many trailing annotations past the video's end ``skip_bad`` accepts as bad frames."""
    return max(5, n_annot // 100)


def landmark_problem(points: np.ndarray, size: tuple[int, int] | None = None) -> str | None:
    """Why one frame's (68, 2) landmarks are unusable, or None. The one definition check-data and
    :class:`VideoSequence` share: outside the ``(w, h)`` frame (beyond :data:`OUTSIDE_MARGIN`), a landmark box under
    :data:`MIN_FACE_PX`, or all points on one line."""
    p = np.asarray(points, dtype=np.float64)
    if size is not None and size[0] > 0 and size[1] > 0:
        w, h = size
        mx, my = OUTSIDE_MARGIN * w, OUTSIDE_MARGIN * h
        out = (p[:, 0] < -mx) | (p[:, 0] > w - 1 + mx) | (p[:, 1] < -my) | (p[:, 1] > h - 1 + my)
        if out.any():
            i = int(np.argmax(out))
            return (f"{int(out.sum())} landmarks outside the {w}x{h} frame "
                    f"(e.g. point {i + 1} at ({p[i, 0]:.1f}, {p[i, 1]:.1f}))")
    ext = p.max(0) - p.min(0)
    if (ext < MIN_FACE_PX).any():
        return (f"degenerate landmarks: the face box is {ext[0]:.3g} x {ext[1]:.3g} px "
                f"(expected at least {MIN_FACE_PX:g} px each way)")
    sv = np.linalg.svd(p - p.mean(0), compute_uv=False)
    if sv[1] < COLLINEAR_RATIO * sv[0]:
        return (f"degenerate landmarks: all points on one line (spread across it {sv[1] / sv[0]:.2g} of the "
                f"spread along it, expected at least {COLLINEAR_RATIO:g})")
    return None


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
    if is_partial(path):
        raise DataError(f"{path}: an unfinished output of an interrupted run (it has {PARTIAL_MARKER}), not data; "
                        f"the next run of the command that made it removes it")
    return path


def _parse_splits(obj: object, source: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(obj, dict):
        raise DataError(f"{source}: expected a JSON object mapping split names to lists of video ids")
    if not obj:
        raise DataError(f"{source}: no splits (an empty object); expected e.g. "
                        f"{{\"train\": [\"001\", ...], \"A\": [...], \"B\": [...], \"C\": [...]}}")
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for name, ids in obj.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataError(f"{source}: split {name!r} must be a list of video id strings like \"001\"")
        for i in ids:
            if not VIDEO_NAME.fullmatch(i):
                raise DataError(f"{source}: split {name!r} lists {i!r}, not a video folder name "
                                f"(expected three digits like \"001\")")
            if i in seen:
                raise DataError(f"{source}: video {i} is in both split {seen[i]!r} and split {name!r}")
            seen[i] = name
        out[str(name)] = tuple(ids)
    if not seen:
        raise DataError(f"{source}: every split is empty; expected at least one video id")
    return out


def load_splits(root: str | os.PathLike | None = None) -> dict[str, tuple[str, ...]]:
    """``root/splits.json`` if present (Synth300VW writes one), else :data:`OFFICIAL_SPLITS`."""
    if root is not None:
        f = Path(root) / SPLITS_FILE
        if f.exists() or f.is_symlink():
            try:
                obj = json.loads(read_regular_file(f, MAX_SPLITS_BYTES, "splits file").decode("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise DataError(f"{f}: not valid JSON ({e})") from e
            return _parse_splits(obj, str(f))
    return dict(OFFICIAL_SPLITS)


def split_videos(root: str | os.PathLike, split: str | Iterable[str]) -> list[str]:
    """Video ids of a split name (``"train"``, ``"A"`` ..., ``"test"`` = A+B+C) or an explicit list of ids."""
    if not isinstance(split, str):
        return [str(s) for s in split]
    splits = load_splits(root)
    if split == "test":
        return [v for k in CATEGORIES for v in splits.get(k, ())]
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


class VideoSequence:
    """One video folder ``ROOT/NNN``: lazy frames and its (T, 68, 2) landmarks.

    Frames are decoded on demand with OpenCV (a ``VideoCapture`` opened lazily in the calling process, so the
    object can be sent to DataLoader workers), or read from a one-time JPEG cache (:meth:`build_cache`).
    Landmarks are checked with the rules of ``check-data`` (:func:`landmark_problem`, and the video's frame
    count against the annotations); ``skip_bad=True`` turns a bad frame (unreadable ``.pts``, degenerate or
    outside the frame, a few trailing annotations past the video's end) into NaN landmarks listed in
    :attr:`bad_frames` instead of raising :class:`DataError`.
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
        return f"VideoSequence({str(self.path)!r})"

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
                raise MissingDataError(f"{self.annot_dir}: annotation folder missing")
            files = annotation_files(self.annot_dir)
            if not files:
                raise MissingDataError(f"{self.annot_dir}: no %06d.pts annotation files")
            header = self._header()
            size = header[1:] if header else None
            n_video = header[0] if header else 0
            lmk = np.full((len(files), N_POINTS, 2), np.nan)
            bad: list[int] = []
            if n_video > 0 and n_video != len(files):
                msg = (f"{self.path}: frame/annotation count mismatch: video has {n_video} frames, annot/ has "
                       f"{len(files)} .pts files")
                if not (self.skip_bad and 0 < len(files) - n_video <= _count_slack(len(files))):
                    raise DataError(msg + ("" if self.skip_bad else " (check-data --skip-bad-frames may accept "
                                           "a few trailing annotations)"))
                bad.extend(range(n_video, len(files)))
            for k, f in enumerate(files):
                if int(f.stem) != k + 1:
                    raise DataError(f"{self.annot_dir}: annotation {k + 1:06d}.pts is missing (next is {f.name})")
                if k in bad:
                    continue
                try:
                    p = read_pts(f)
                    problem = landmark_problem(p, size)
                    if problem:
                        raise PtsError(f"{f}: {problem}")
                except PtsError:
                    if not self.skip_bad:
                        raise
                    bad.append(k)
                    continue
                lmk[k] = p
            self._bad_frames = sorted(bad)
            self._landmarks = lmk
        return self._landmarks

    def _header(self) -> tuple[int, int, int] | None:
        """(frame count, width, height) from the container header, or None when the video cannot be opened
        (reading a frame then raises the reason)."""
        try:
            header = video_header(self.video_path)
        except DataError:
            return None
        n, w, h = header.frames, header.width, header.height
        if self._size is None and w > 0 and h > 0:
            self._size = (w, h)
        return n, w, h

    def __len__(self) -> int:
        return len(self.landmarks)

    @property
    def bad_frames(self) -> list[int]:
        """Frames skipped as bad (only with ``skip_bad=True``; else loading the landmarks raises)."""
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
            cap = open_video(self.video_path)
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
        rgb = read_frame(cap, f"{self.video_path} frame {k}")
        if rgb is None:
            self._next = -1
            raise IndexError(f"{self.video_path}: cannot decode frame {k}")
        self._next = k + 1
        return rgb

    def frames(self) -> Iterable[np.ndarray]:
        """All frames in order (sequential decoding, the fast path: :func:`tdd_lite.video_io.read_frames`)."""
        return read_frames(self.video_path)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the video."""
        if self._size is None:
            header = video_header(self.video_path)
            self._size = (header.width, header.height)
        return self._size

    def build_cache(self, quality: int = 95) -> Path:
        """Decode the video once into ``cache_dir/NNN/%06d.jpg``.

        Interrupt-safe: frames go into ``NNN.partial-<pid>-*`` (with a marker naming the process), renamed to
        ``NNN`` only when complete; a killed build leaves only that temp folder, which the next build removes
        once its process is gone. Nothing else is ever deleted.
        """
        if self.cache_dir is None:
            raise ValueError("VideoSequence was created without cache_dir")
        if (self.cache_dir / "complete").exists():
            return self.cache_dir
        self.cache_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.cache_dir)
        tmp = make_partial_dir(self.cache_dir, "tdd_lite frame cache")
        try:
            n = 0
            for n, img in enumerate(self.frames(), start=1):
                if not cv2.imwrite(str(tmp / f"{n:06d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality]):
                    raise OSError(f"{tmp / f'{n:06d}.jpg'}: cannot write the frame cache (disk full?)")
            (tmp / "complete").write_text(f"{n}\n")
            try:
                os.replace(tmp, self.cache_dir)
            except OSError:  # another process finished first
                if not (self.cache_dir / "complete").exists():
                    raise
            else:
                (self.cache_dir / PARTIAL_MARKER).unlink(missing_ok=True)
        finally:
            if tmp.exists():
                remove_partial(tmp)
        return self.cache_dir


def write_sequence(folder: str | os.PathLike, frames: Iterable[np.ndarray], landmarks: np.ndarray,
                   fps: float = 30.0, decimals: int | None = None) -> Path:
    """Write one sequence in the 300VW layout: ``folder/vid.avi`` and ``folder/annot/%06d.pts`` (1-based)."""
    folder = Path(folder)
    (folder / ANNOT_DIR).mkdir(parents=True, exist_ok=True)
    n = write_video(folder / VIDEO_FILE, frames, fps)
    if len(landmarks) != n:
        raise ValueError(f"{folder}: {n} frames but {len(landmarks)} landmark sets")
    for k, p in enumerate(landmarks):
        write_pts(folder / ANNOT_DIR / f"{k + 1:06d}.pts", p, decimals=decimals)
    return folder


def load_split(root: str | os.PathLike | None, split: str | Iterable[str], cache_dir: str | os.PathLike | None = None,
               skip_bad: bool = False) -> list[VideoSequence]:
    """The :class:`VideoSequence` objects of a split (``root`` None -> ``$TDD_300VW_ROOT``)."""
    r = data_root(root)
    return [VideoSequence(r / v, cache_dir=cache_dir, skip_bad=skip_bad) for v in split_videos(r, split)]


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
    names = list(splits) if splits is not None else list(CATEGORIES)
    if not names:
        raise UsageError("--splits needs at least one split name")
    custom = (r / SPLITS_FILE).exists()
    table = load_splits(r)
    out: dict[str, list[str]] = {}
    for name in names:
        if name == "test":
            parts = [k for k in CATEGORIES if k in table]
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
    notes: list[str] = field(default_factory=list)  # what was not checked (--quick)

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
        lines += ["  NOTE    " + n for n in self.notes]
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


QUICK_NOTE = ("--quick: frames between the first and the last are not decoded (the frame count is the container "
              "header's, checked against annot/ and by decoding the last frame); run without --quick to read every "
              "frame header")


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
    kind = special_kind(video)
    if not video.exists():
        report.error(video, "missing video file")
    elif kind:
        report.error(video, f"is {kind}, expected a regular video file; refused")
    elif video.stat().st_size == 0:
        report.error(video, "video file is empty (0 bytes)")
    else:
        try:
            n_frames, w, h = count_frames(video, quick)
        except DataError as e:
            report.error(video, f"unreadable video: {str(e).removeprefix(f'{video}: ')}")
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
        if skip_bad and 0 < n_annot - n_frames <= _count_slack(n_annot):
            report.warn(folder, msg + f" (using the first {n_frames})")
            bad.extend(range(n_frames, n_annot))
        else:
            report.error(folder, msg)
    size = (w, h) if w and h else None
    for f in files:
        k = int(f.stem) - 1
        if k in bad:
            continue
        try:
            p = read_pts(f)
        except PtsError as e:
            bad_frame(f, k, f"bad .pts: {str(e).removeprefix(str(f)).lstrip(': ')}")
            continue
        report.frames += 1
        problem = landmark_problem(p, size)
        if problem:
            bad_frame(f, k, problem)
    if bad:
        report.skipped[name] = sorted(set(bad))


def official_summary(present: Iterable[str]) -> tuple[str, int]:
    """("train 0/50, A 1/31, B 0/19, C 0/14", number of official videos missing) for the folders present."""
    have = set(present)
    parts, missing = [], 0
    for name, ids in OFFICIAL_SPLITS.items():
        n = sum(v in have for v in ids)
        missing += len(ids) - n
        parts.append(f"{name} {n}/{len(ids)}")
    return ", ".join(parts), missing


def validate(root: str | os.PathLike, skip_bad: bool = False, quick: bool = False,
             videos: Iterable[str] | None = None, complete: bool = False) -> Report:
    """Check a 300VW-layout folder; every problem becomes an :class:`Issue` (nothing raises).

    ``skip_bad`` downgrades per-frame problems (bad ``.pts``, degenerate or outside the frame, a few trailing
    annotations past the video's end) to warnings and lists those frames in ``report.skipped``. ``quick``
    trusts the container's frame count (checked by decoding the last frame) instead of grabbing every frame.
    Without ``splits.json``, the videos present are checked and a folder that is not the full 300VW gets one
    summary warning (an error with ``complete``). ``videos`` checks only those.
    """
    root = Path(root)
    report = Report(root=root)
    if quick:
        report.notes.append(QUICK_NOTE)
    if not root.is_dir():
        report.error(root, "data root does not exist or is not a directory")
        return report
    if is_partial(root):
        report.error(root, f"an unfinished output of an interrupted run (it has {PARTIAL_MARKER}), not data")
        return report
    splits_file = root / SPLITS_FILE
    custom = splits_file.exists() or splits_file.is_symlink()
    try:
        splits = load_splits(root)
    except DataError as e:
        report.error(splits_file, str(e).removeprefix(str(splits_file) + ": "))
        splits = {}
    if not custom:
        splits = {}
    in_split = {v: s for s, ids in splits.items() for v in ids}
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and VIDEO_NAME.match(p.name))
    for p in sorted(root.iterdir()):
        known = (SPLITS_FILE, "synth.json", "synth300vw.json", PARTIAL_MARKER)
        if p.name in known or (p.is_dir() and VIDEO_NAME.match(p.name)):
            continue
        report.warn(p, "stray entry in the data root (expected NNN video folders and splits.json; ignored)")
    if videos is not None:
        wanted = list(dict.fromkeys(str(v) for v in videos))
    elif custom:
        wanted = sorted(set(present) | set(in_split))
    else:
        wanted = present
    if not present:
        report.error(root, "no NNN video folders found (is this the 300VW root?)")
    elif videos is None and not custom:
        summary, missing = official_summary(present)
        official = {v for ids in OFFICIAL_SPLITS.values() for v in ids}
        own = [v for v in present if v not in official]
        extra = (f"; {len(own)} videos ({', '.join(own[:5])}{' ...' if len(own) > 5 else ''}) are in no official "
                 f"split (use them with --videos or --all)") if own else ""
        if complete and (missing or own):
            report.error(root, f"not the full 300VW: {summary} official videos present{extra} (--complete)")
        elif missing:
            report.warn(root, f"not the full 300VW: {summary} official videos present; pass --complete to "
                              f"require all{extra}")
        elif own:
            report.warn(root, extra.removeprefix("; "))
    for v in wanted:
        folder = root / v
        if not folder.is_dir():
            if custom and v in in_split:
                report.error(folder, f"missing video folder (listed in split {in_split[v]!r} of {SPLITS_FILE})")
            else:
                report.error(folder, "missing video folder")
            continue
        if custom and v not in in_split and splits:
            report.warn(folder, "video is not in any split (it will not be used)")
        report.videos += 1
        _check_video(report, folder, skip_bad, quick)
    return report


# ====================================================================== CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", nargs="?", default=None, help=f"the 300VW root (default: ${ENV_ROOT})")
    parser.add_argument("--skip-bad-frames", action="store_true",
                        help="report bad frames as warnings and skip them instead of failing (train and "
                             "evaluate accept the same option)")
    parser.add_argument("--quick", action="store_true",
                        help="trust the container's frame count (checked against annot/ and by decoding the last "
                             "frame) instead of reading every frame")
    parser.add_argument("--videos", nargs="+", default=None, metavar="NNN", help="check only these videos")
    parser.add_argument("--complete", action="store_true",
                        help="without splits.json: require every official 300VW video (default: one warning)")


def run(args: argparse.Namespace) -> int:
    if args.root is None and not os.environ.get(ENV_ROOT):
        raise UsageError(f"no 300VW root given: pass a path or set {ENV_ROOT}=/path/to/300VW")
    root = data_root(args.root)
    report = validate(root, skip_bad=args.skip_bad_frames, quick=args.quick, videos=args.videos,
                      complete=args.complete)
    print(report.format())
    if not report.ok:
        first = report.errors[0]
        n = len(report.errors)
        print(f"tdd-lite check-data: error: {n} error{'s' if n != 1 else ''} in {root}, the first: {first.where}: "
              f"{first.message}", file=sys.stderr)
    return 0 if report.ok else 1
