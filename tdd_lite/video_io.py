"""Frames in and out for ``tdd-lite track``: any video OpenCV reads or a folder of images; overlay videos.

Frames are RGB uint8 ``(H, W, 3)``. Inputs are checked before anything is decoded: a missing path, a special file
(FIFO, device: refused without opening, so nothing blocks), an empty folder, a video OpenCV cannot open, frames
larger than :data:`tdd_lite.errors.MAX_FRAME_PIXELS` or of changing size are :class:`~tdd_lite.errors.DataError`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from tdd_lite.errors import MAX_FRAME_PIXELS, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _regular_file(path: Path) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file (a FIFO, device or socket is not a video or image)")
    if st.st_size == 0:
        raise DataError(f"{path}: empty file")


def image_files(folder: Path) -> list[Path]:
    """The images of a folder, sorted by name (``000001.png``, ...)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


class FrameSource:
    """Iterate the RGB frames of a video file or an image folder; ``fps`` (30 for folders) and ``len`` if known."""

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
            _regular_file(self.path)
            cap = cv2.VideoCapture(str(self.path))
            try:
                if not cap.isOpened():
                    raise DataError(f"{self.path}: OpenCV cannot open this as a video")
                self.fps = float(fps or cap.get(cv2.CAP_PROP_FPS) or 30.0)
                n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
                self.count = n if n > 0 else None
            finally:
                cap.release()
        if not (0 < self.fps < 1000):
            self.fps = 30.0

    def __len__(self) -> int:
        return self.count or 0

    def _check(self, frame: np.ndarray | None, where: str, first_shape: tuple | None) -> np.ndarray:
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

    def __iter__(self) -> Iterator[np.ndarray]:
        shape = None
        if self.is_folder:
            for f in self.files:
                _regular_file(f)
                rgb = self._check(cv2.imread(str(f), cv2.IMREAD_COLOR), str(f), shape)
                shape = rgb.shape
                yield rgb
            return
        cap = cv2.VideoCapture(str(self.path))
        try:
            k = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                rgb = self._check(frame, f"{self.path} frame {k}", shape)
                shape = rgb.shape
                k += 1
                yield rgb
            if k == 0:
                raise DataError(f"{self.path}: no frame could be decoded")
        finally:
            cap.release()


class OverlayWriter:
    """Write an overlay video (``.mp4``, codec mp4v; ``.avi``, MJPG) frame by frame to a temp name, then rename."""

    def __init__(self, path: str | os.PathLike, fps: float):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps, self.writer, self.frames = fps, None, 0

    def write(self, rgb: np.ndarray) -> None:
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (rgb.shape[1], rgb.shape[0]))
            if not self.writer.isOpened():
                raise DataError(f"{self.path}: OpenCV cannot write this video format")
        self.writer.write(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if keep and self.tmp.exists():
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()
