"""Video in and out, the one home: every video tdd_lite reads or writes goes through this module.

Reading. :func:`open_video` is the one place a ``cv2.VideoCapture`` is made: it refuses a missing path
(:class:`~tdd_lite.errors.MissingDataError`), a special file (FIFO, device, socket: refused without opening, so
nothing blocks), an empty file and a file OpenCV cannot open, each with one line naming the file. On top of it:
:func:`video_header` (frame count, size and fps from the container), :func:`read_frames` (every frame in order,
the fast path), :func:`read_frame` (the next frame of an open capture), :func:`count_frames` (what ``check-data``
checks) and :class:`FrameSource` (the frames of ``tdd-lite track``: any video OpenCV reads or a folder of images).
Frames are RGB uint8 ``(H, W, 3)``; a frame larger than :data:`tdd_lite.errors.MAX_FRAME_PIXELS` or of another
size than the first is a :class:`~tdd_lite.errors.DataError`.

Writing. :class:`VideoWriter` writes frames one by one (``.mp4``: codec mp4v; anything else, e.g. the 300VW
layout's ``vid.avi``: Motion-JPEG, :data:`VIDEO_FOURCC`) to a temporary file beside the destination, named like
:func:`tdd_lite.files.atomic_write`'s (``.STEM.tmp-PID-XXXX.SUFFIX``, so one left by a SIGKILL is removed by
:func:`tdd_lite.files.remove_stale_temp_files`), renamed over the destination only when closed without error:
a reader never sees half a video. :func:`write_video` writes a whole iterable of frames with it.

Layering: this module imports only :mod:`tdd_lite.errors` and :mod:`tdd_lite.files` (the data layer builds on it).
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tdd_lite.errors import MAX_FRAME_PIXELS, DataError, MissingDataError
from tdd_lite.files import current_umask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_FOURCC = "MJPG"  # Motion-JPEG in AVI: every OpenCV build with FFmpeg writes and reads it; exact seeking
MP4_FOURCC = "mp4v"


# ====================================================================== reading
def special_kind(path: str | os.PathLike) -> str | None:
    """``"a FIFO"``, ``"a folder"`` ... if ``path`` exists and is not a regular file (opening it could block or
    mean nothing as a video), else None (a regular file, or nothing there)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return None
    return ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
            else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")


def _check_file(path: Path, what: str) -> None:
    """A regular, non-empty file, else one line naming it (missing: :class:`MissingDataError`)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MissingDataError(f"{path}: {what} missing") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: is {special_kind(path) or 'special'}, not a regular file (a FIFO, device or "
                        f"socket is not a {what}); refused")
    if st.st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a {what}")


def open_video(path: str | os.PathLike) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` of a regular, non-empty video file (a FIFO or device is refused, never
    opened); the caller releases it."""
    path = Path(path)
    _check_file(path, "video")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise DataError(f"{path}: OpenCV cannot open this as a video (corrupt file or unsupported codec)")
    return cap


@dataclass(frozen=True)
class VideoHeader:
    """What the container says: ``frames`` (0 when it does not say), ``width``, ``height``, ``fps`` (0 when
    unknown). The frame count of a damaged file may be wrong: :func:`count_frames` checks it."""

    frames: int
    width: int
    height: int
    fps: float


def video_header(path: str | os.PathLike) -> VideoHeader:
    """The :class:`VideoHeader` of a video file (opened with :func:`open_video`, nothing decoded)."""
    cap = open_video(path)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        return VideoHeader(frames=max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0),
                           width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                           height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), fps=fps if np.isfinite(fps) else 0.0)
    finally:
        cap.release()


def to_rgb(frame: np.ndarray | None, where: str, first_shape: tuple | None = None) -> np.ndarray:
    """An OpenCV image (BGR, grey or BGRA) as RGB uint8 ``(H, W, 3)``; refuses an undecodable image, one larger
    than :data:`MAX_FRAME_PIXELS`, and one whose shape differs from ``first_shape`` (``where`` names it)."""
    if frame is None:
        raise DataError(f"{where}: cannot be decoded as an image")
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.shape[0] * frame.shape[1] > MAX_FRAME_PIXELS:
        raise DataError(f"{where}: {frame.shape[1]}x{frame.shape[0]} frame is larger than {MAX_FRAME_PIXELS} px")
    if first_shape is not None and frame.shape != first_shape:
        raise DataError(f"{where}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the first frame's "
                        f"{first_shape[1]}x{first_shape[0]}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def read_frame(cap: cv2.VideoCapture, where: str) -> np.ndarray | None:
    """The next frame of an open capture as RGB (see :func:`to_rgb`), or None at the end (or a frame that
    cannot be decoded: OpenCV does not tell the two apart)."""
    ok, img = cap.read()
    if not ok or img is None:
        return None
    return to_rgb(img, where)


def read_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Every frame of a video file in order, RGB uint8 (sequential decoding, the fast path); all of one size."""
    path = Path(path)
    cap = open_video(path)
    try:
        shape, k = None, 0
        while True:
            ok, img = cap.read()
            if not ok or img is None:
                return
            rgb = to_rgb(img, f"{path} frame {k}", shape)
            shape, k = rgb.shape, k + 1
            yield rgb
    finally:
        cap.release()


def count_frames(path: str | os.PathLike, quick: bool = False) -> tuple[int, int, int]:
    """(frames, width, height) of a video, checked: without ``quick`` every frame is grabbed (counted); with
    ``quick`` the container header's count is trusted once its last frame decodes (a truncated file fails that).
    The first and the last frame must decode. Raises :class:`DataError` naming the file and what is wrong."""
    path = Path(path)
    cap = open_video(path)
    try:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        header = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        if quick and header > 0:
            n = header
        else:
            n = 0
            while cap.grab():
                n += 1
        if n > 0 and (w <= 0 or h <= 0):
            raise DataError(f"{path}: frame size {w}x{h} is invalid")
        if n > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, img = cap.read()
            if not ok or img is None:
                raise DataError(f"{path}: the first frame cannot be decoded")
        if n > 1:
            cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1)
            ok, img = cap.read()
            if not ok or img is None:
                raise DataError(f"{path}: the last frame ({n - 1}, 0-based) cannot be decoded"
                                + (f" although the container header declares {header} frames (truncated file?)"
                                   if quick else " (corrupt or truncated file?)"))
        return n, w, h
    finally:
        cap.release()


def image_files(folder: Path) -> list[Path]:
    """The images of a folder, sorted by name (``000001.png``, ...)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


class FrameSource:
    """Iterate the RGB frames of a video file or an image folder; ``fps`` (30 for folders) and ``len`` if known.

    Inputs are checked before anything is decoded (see :func:`open_video`); an empty folder, a video of which no
    frame decodes, and frames of changing size are :class:`DataError`.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such video file or image folder")
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self.files = image_files(self.path)
            self.fps = float(fps or 30.0)
            self.count: int | None = len(self.files)
        else:
            header = video_header(self.path)
            self.fps = float(fps or header.fps or 30.0)
            self.count = header.frames or None
        if not (0 < self.fps < 1000):
            self.fps = 30.0

    def __len__(self) -> int:
        return self.count or 0

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.is_folder:
            shape = None
            for f in self.files:
                _check_file(f, "image")
                rgb = to_rgb(cv2.imread(str(f), cv2.IMREAD_COLOR), str(f), shape)
                shape = rgb.shape
                yield rgb
            return
        k = 0
        for rgb in read_frames(self.path):
            k += 1
            yield rgb
        if k == 0:
            raise DataError(f"{self.path}: no frame could be decoded")


# ====================================================================== writing
class VideoWriter:
    """Write RGB uint8 frames to a video file atomically, one :meth:`write` at a time.

    The codec follows the suffix (``.mp4``: mp4v; else :data:`VIDEO_FOURCC`, Motion-JPEG); ``quality`` (0-100)
    is the JPEG quality of MJPG (None: OpenCV's default). Frames go to ``.STEM.tmp-PID-XXXX.SUFFIX`` beside
    ``path`` (made at the first frame, when the size is known); :meth:`close` renames it over ``path``, or, with
    ``keep=False``, removes it. As a context manager the video is kept only when the block ends without an
    exception: an error, Ctrl-C or SIGTERM (inside :func:`tdd_lite.files.sigterm_raises`) leaves neither the
    temporary file nor a half-written video, and an existing ``path`` untouched. Every frame must be
    ``(H, W, 3)`` uint8 of the first frame's size (``ValueError`` otherwise: OpenCV would drop it silently).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 30.0, quality: int | None = None):
        self.path = Path(path)
        self.fps = float(fps)
        self.quality = quality
        self.fourcc = MP4_FOURCC if self.path.suffix.lower() == ".mp4" else VIDEO_FOURCC
        self.tmp: Path | None = None
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._shape: tuple[int, ...] | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(keep=exc_type is None)

    def _open(self, width: int, height: int) -> None:
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.tmp-{os.getpid()}-", suffix=self.path.suffix,
                                    dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(name)
        try:
            os.chmod(self.tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; honour the umask
            writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (width, height))
            if not writer.isOpened():
                writer.release()
                raise DataError(f"{self.path}: OpenCV cannot write {self.fourcc} video here")
            if self.quality is not None:
                writer.set(cv2.VIDEOWRITER_PROP_QUALITY, self.quality)
        except BaseException:
            self.close(keep=False)
            raise
        self._writer = writer

    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB uint8 ``(H, W, 3)`` frame."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"{self.path}: frame {self.frames} must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        if self._shape is None:
            self._open(rgb.shape[1], rgb.shape[0])
            self._shape = rgb.shape
        elif rgb.shape != self._shape:
            raise ValueError(f"{self.path}: frame {self.frames} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame "
                             f"was {self._shape[1]}x{self._shape[0]}")
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self, keep: bool = True) -> int:
        """Finish: rename the temporary file over ``path`` (``keep``) or remove it; returns the frames written.
        Without any frame nothing is written. Safe to call again."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.tmp is not None:
            try:
                if keep and self.frames:
                    os.replace(self.tmp, self.path)
            finally:
                self.tmp.unlink(missing_ok=True)
                self.tmp = None
        return self.frames


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 30.0, quality: int = 90) -> int:
    """Write RGB uint8 frames to ``path`` atomically with :class:`VideoWriter` (MJPG ``.avi`` at JPEG
    ``quality``); returns the frame count. No frames is a ``ValueError``; an exception raised by ``frames``
    leaves nothing behind."""
    with VideoWriter(path, fps, quality) as writer:
        for img in frames:
            writer.write(img)
        if writer.frames == 0:
            raise ValueError(f"{path}: no frames to write")
    return writer.frames
