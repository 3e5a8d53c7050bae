"""Read and write 300VW / iBUG ``.pts`` landmark files.

The format::

    version: 1
    n_points:  68
    {
    x y          (one line per point)
    ...
    }

Headers vary in the wild (``version: 1`` or ``1.0``, extra spaces, tabs, CRLF line ends, integer or decimal
coordinates, a missing ``n_points``), so the reader is tolerant about everything *outside* the braces and
parses the points *between* them. It is strict about the content: a wrong number of points, a non-numeric
or non-finite value, a line that is not exactly two numbers, a missing ``{`` or ``}`` (a truncated file), or a
header ``n_points`` that disagrees with the body each raise :class:`PtsError` naming the file and line.
``n_points`` must be a positive whole number in ASCII digits, and each coordinate a plain ASCII decimal number
(``12``, ``-3.5``, ``1.25e-05``): Python's ``float``/``int`` would also take ``inf``, ``nan``, ``3_1.5`` or
Arabic-Indic digits, which no annotation tool writes. Only regular files are opened (a FIFO or a device is
refused without blocking) and at most :data:`MAX_PTS_BYTES` are read.

Coordinate convention: values are returned **exactly as stored**, in image pixels (x right, y down). We do
not shift them by 0.5 or 1: whether 300VW's annotators meant 0- or 1-based pixel centres is not documented
(the iBUG tools are MATLAB, i.e. 1-based, but the offset is below annotation noise). tdd_lite treats a stored
value ``x`` as the image coordinate where pixel ``i``'s centre is at ``i`` (OpenCV's convention, see
:mod:`tdd_lite.data.crops`); Synth300VW writes its landmarks in exactly that convention.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from tdd_lite.errors import DataError
from tdd_lite.files import atomic_write, read_regular_file

N_POINTS = 68
MAX_PTS_BYTES = 1 << 20  # a 68-point file is ~1.5 KB; anything near 1 MiB is not a landmark file
MAX_N_POINTS = 100_000
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_COUNT = re.compile(r"\+?[0-9]+", re.ASCII)


class PtsError(DataError):
    """A malformed ``.pts`` file; the message names the file and (1-based) line (a DataError, so a ValueError)."""


def parse_pts(text: str, source: str = "<string>", n_points: int | None = N_POINTS) -> np.ndarray:
    """Parse the text of a ``.pts`` file -> ``(N, 2)`` float64. ``n_points=None`` accepts any count."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if text.startswith("\ufeff"):
        lines[0] = lines[0][1:]
    header_n: int | None = None
    open_line = None
    for i, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith("{"):
            if line != "{":
                raise PtsError(f"{source}:{i + 1}: expected '{{' alone on its line, got {raw!r}")
            open_line = i
            break
        if ":" in line:
            key, _, val = line.partition(":")
            if key.strip().lower() == "n_points":
                v = val.strip()
                if not _COUNT.fullmatch(v):
                    raise PtsError(f"{source}:{i + 1}: n_points is not a number: {v!r} (expected a positive whole "
                                   f"number in ASCII digits, e.g. 68)")
                if len(v) > 7 or not 1 <= int(v) <= MAX_N_POINTS:
                    raise PtsError(f"{source}:{i + 1}: n_points {v} is out of range (expected 1 to {MAX_N_POINTS})")
                header_n = int(v)
        elif line and any(c.isdigit() for c in line) and len(line.split()) == 2:
            raise PtsError(f"{source}:{i + 1}: point data before the opening '{{' (missing brace?)")
    if open_line is None:
        raise PtsError(f"{source}: no opening '{{' found (empty, truncated or not a .pts file)")
    points: list[tuple[float, float]] = []
    close_line = None
    for i in range(open_line + 1, len(lines)):
        line = lines[i].strip()
        if not line:
            continue
        if line == "}":
            close_line = i
            break
        parts = line.split()
        if len(parts) != 2:
            raise PtsError(f"{source}:{i + 1}: expected two numbers 'x y', got {lines[i]!r}")
        if not (_NUMBER.fullmatch(parts[0]) and _NUMBER.fullmatch(parts[1])):
            try:
                nonfinite = not all(math.isfinite(float(v)) for v in parts)
            except ValueError:
                nonfinite = False
            if nonfinite:
                raise PtsError(f"{source}:{i + 1}: non-finite coordinate (NaN or inf) in {lines[i]!r}")
            raise PtsError(f"{source}:{i + 1}: non-numeric coordinate in {lines[i]!r} (expected plain ASCII "
                           f"decimal numbers like 123.456)")
        x, y = float(parts[0]), float(parts[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise PtsError(f"{source}:{i + 1}: non-finite coordinate (NaN or inf) in {lines[i]!r}")
        points.append((x, y))
    if close_line is None:
        raise PtsError(f"{source}:{len(lines)}: no closing '}}' after {len(points)} points (truncated file?)")
    for j in range(close_line + 1, len(lines)):
        if lines[j].strip():
            raise PtsError(f"{source}:{j + 1}: unexpected content after the closing '}}': {lines[j]!r}")
    if header_n is not None and header_n != len(points):
        raise PtsError(f"{source}:{close_line + 1}: header says n_points: {header_n} but the file has "
                       f"{len(points)} points")
    if n_points is not None and len(points) != n_points:
        raise PtsError(f"{source}:{close_line + 1}: expected {n_points} points, found {len(points)}")
    return np.array(points, dtype=np.float64).reshape(-1, 2)


def read_pts(path: str | Path, n_points: int | None = N_POINTS) -> np.ndarray:
    """Read a ``.pts`` file -> ``(N, 2)`` float64 image-pixel coordinates, as stored (see module docstring)."""
    path = Path(path)
    try:
        raw = read_regular_file(path, MAX_PTS_BYTES, "landmark file")
    except DataError as e:
        raise PtsError(str(e)) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PtsError(f"{path}: not a text file (byte {e.start} is not UTF-8)") from e
    return parse_pts(text, str(path), n_points)


def format_pts(points: np.ndarray, decimals: int | None = None) -> str:
    """Text of a ``.pts`` file. ``decimals=None`` writes the shortest exact repr (read back bit-identical);
    an integer writes fixed decimals like the 300VW release (``%.3f``)."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points must be (N, 2), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("points contain NaN or infinite values; refusing to write them")
    fmt = (lambda v: repr(float(v))) if decimals is None else (lambda v: f"{v:.{decimals}f}")
    body = "\n".join(f"{fmt(x)} {fmt(y)}" for x, y in p)
    return f"version: 1\nn_points:  {len(p)}\n{{\n{body}\n}}\n"


def write_pts(path: str | Path, points: np.ndarray, decimals: int | None = None) -> None:
    """Write a ``.pts`` file atomically (:func:`tdd_lite.files.atomic_write`: a temporary file in the same folder,
    then a rename), with LF line ends and the umask's permissions."""
    atomic_write(path, format_pts(points, decimals))
