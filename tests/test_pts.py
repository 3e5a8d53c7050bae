""".pts reading/writing: exact round trip, header variants seen in 300VW, strict content errors."""

import numpy as np
import pytest

from tdd_lite.data.pts import PtsError, format_pts, parse_pts, read_pts, write_pts


def _points(seed=0):
    return np.random.default_rng(seed).uniform(0, 640, size=(68, 2))


def test_roundtrip_exact(tmp_path):
    p = _points()
    write_pts(tmp_path / "a.pts", p)
    q = read_pts(tmp_path / "a.pts")
    assert q.dtype == np.float64 and q.shape == (68, 2)
    np.testing.assert_array_equal(q, p)  # bit-identical
    assert not list(tmp_path.glob("*.tmp"))


def test_roundtrip_fixed_decimals(tmp_path):
    p = _points(1)
    write_pts(tmp_path / "a.pts", p, decimals=3)
    np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), p, atol=5e-4 + 1e-9)
    assert "n_points:  68" in (tmp_path / "a.pts").read_text()


@pytest.mark.parametrize("header", [
    "version: 1\nn_points:  68\n",
    "version: 1.0\nn_points: 68\n",
    "version:1\nn_points:68\n",
    "  version:   1 \n\tn_points:\t68  \n",
    "version: 1\n",  # no n_points
    "",  # no header at all
])
@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("style", ["decimal", "integer", "spaces"])
def test_header_variants(tmp_path, header, eol, style):
    p = np.round(_points(2), 3)
    if style == "integer":
        p = np.round(p)
        body = "\n".join(f"{int(x)} {int(y)}" for x, y in p)
    elif style == "spaces":
        body = "\n".join(f"  {x:.3f}\t  {y:.3f}  " for x, y in p)
    else:
        body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in p)
    text = (header + "{\n" + body + "\n}\n").replace("\n", eol)
    f = tmp_path / "v.pts"
    f.write_bytes(text.encode())
    np.testing.assert_allclose(read_pts(f), p, atol=1e-9)


def test_no_trailing_newline_and_blank_lines_ok():
    p = np.arange(136, dtype=float).reshape(68, 2)
    text = "version: 1\nn_points: 68\n{\n\n" + "\n".join(f"{x} {y}" for x, y in p) + "\n\n}"
    np.testing.assert_array_equal(parse_pts(text), p)


def _good():
    return format_pts(np.arange(136, dtype=float).reshape(68, 2), decimals=3).split("\n")


@pytest.mark.parametrize("mutate, pattern", [
    (lambda L: L[:3] + L[4:], r"bad.pts:71: header says n_points: 68 but the file has 67"),
    (lambda L: L[2:3] + L[4:], r"bad.pts:69: expected 68 points, found 67"),
    (lambda L: L[:3] + [L[3], L[3]] + L[4:], r"header says n_points: 68 but the file has 69"),
    (lambda L: L[:5] + ["12.0 abc"] + L[6:], r"bad.pts:6: non-numeric"),
    (lambda L: L[:5] + ["nan 3.0"] + L[6:], r"bad.pts:6: non-finite"),
    (lambda L: L[:5] + ["1.0 inf"] + L[6:], r"bad.pts:6: non-finite"),
    (lambda L: L[:5] + ["1.0 2.0 3.0"] + L[6:], r"bad.pts:6: expected two numbers"),
    (lambda L: L[:2] + L[3:], r"bad.pts:3: point data before the opening"),
    (lambda L: L[:40], r"bad.pts:40: no closing '}' after 37 points"),
    (lambda L: L[:71], r"no closing '}' after 68 points"),
    (lambda L: [], r"no opening '\{'"),
    (lambda L: L[:1] + ["n_points: sixty"] + L[2:], r"bad.pts:2: n_points is not a number"),
    (lambda L: L + ["1 2"], r"unexpected content after the closing"),
])
def test_strict_content_errors(tmp_path, mutate, pattern):
    f = tmp_path / "bad.pts"
    f.write_text("\n".join(mutate(_good())))
    with pytest.raises(PtsError, match=pattern):
        read_pts(f)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(PtsError, match="nope.pts: cannot read"):
        read_pts(tmp_path / "nope.pts")
    (tmp_path / "b.pts").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PtsError, match="b.pts: not a text file"):
        read_pts(tmp_path / "b.pts")


def test_write_refuses_nan(tmp_path):
    p = _points()
    p[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_pts(tmp_path / "x.pts", p)
    assert not list(tmp_path.iterdir())


def test_other_point_counts():
    text = "version: 1\nn_points: 3\n{\n1 2\n3 4\n5 6\n}\n"
    assert read_pts.__defaults__[0] == 68
    assert parse_pts(text, n_points=None).shape == (3, 2)
    with pytest.raises(PtsError, match="expected 68 points, found 3"):
        parse_pts(text)
