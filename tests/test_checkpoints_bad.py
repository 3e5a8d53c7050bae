"""Broken and mismatched checkpoints through the CLI: one line, the right exit status, never a traceback.

One tiny ``smoke`` run is trained once per module (``tdd-lite train``, 2 steps); every case mutates a copy
(re-sealed with the checksum where the point is a structural check rather than corruption) and runs
``tdd-lite evaluate`` or ``tdd-lite train --resume`` on it. The rows in :data:`SUBPROCESS` run in a real
subprocess (``tests/_cli.py``); the others call the same entry point, ``tdd_lite.cli.main(argv)``, in this
process (a subprocess costs ~4 s of imports each; the output and exit status are the same).
"""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tdd_lite import checkpoint as C
from tdd_lite import train as T
from tdd_lite.data.synth import generate
from tests._cli import Result, assert_one_line_error, run_cli


def build_run(base: Path) -> SimpleNamespace:
    """A Synth300VW set (4 videos x 8 frames) and a 2-step smoke checkpoint trained by the CLI on it."""
    root = generate(base / "synth", videos=4, frames=8, size=(96, 96), seed=0, progress=False)
    out = base / "run"
    r = run_cli("train", "--config", "smoke", "--data", root, "--out", out, "--steps", "2", cwd=base)
    assert r.code == 0, r.text
    return SimpleNamespace(base=base, root=root, out=out, ckpt=out / "checkpoint.pt")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    r = build_run(tmp_path_factory.mktemp("ckbad"))
    r.state = torch.load(r.ckpt, map_location="cpu", weights_only=True)
    return r


def in_process(capsys, monkeypatch, cwd: Path, *args) -> Result:
    """``tdd-lite ARGS`` through ``tdd_lite.cli.main`` in this process: exit status, stdout, stderr."""
    from tdd_lite import cli

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("TDD_DEBUG", raising=False)
    monkeypatch.setenv("TDD_FAST", "1")
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse
        code = e.code
    got = capsys.readouterr()
    return Result(int(code or 0), got.out, got.err)


@pytest.fixture
def work(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)  # 150 MB per mutated copy: do not keep them around


def _state(run) -> dict:
    """A copy of the good checkpoint's payload: nested dicts copied, tensors shared (makers must not edit them)."""
    s = dict(run.state)
    for k, v in s.items():
        if isinstance(v, dict):
            s[k] = copy.copy(v)
    return s


def resealed(fn):
    """A maker: load the good checkpoint, apply ``fn(state)``, save it with a valid checksum."""

    def make(run, dst: Path) -> None:
        state = _state(run)
        fn(state)
        torch.save(C.seal_checkpoint(state), dst)

    return make


def unsealed(fn):
    """A maker: like :func:`resealed` but the checksum is left as it was (or as ``fn`` leaves it)."""

    def make(run, dst: Path) -> None:
        state = _state(run)
        fn(state)
        torch.save(state, dst)

    return make


def flip_weight_byte(run, dst: Path) -> None:
    """Flip the exponent byte of one float inside G's ``fc.weight`` storage in the zip (a bit-rot)."""
    raw = bytearray(run.ckpt.read_bytes())
    w = _state(run)["G"]["fc.weight"].contiguous().numpy().tobytes()
    off = raw.find(w)
    assert off > 0 and raw.find(w, off + 1) == -1, "fc.weight's bytes must occur once in the file"
    raw[off + 4 * 100 + 3] ^= 0x40  # element 100, most significant byte (little-endian float32)
    dst.write_bytes(bytes(raw))
    check = torch.load(dst, weights_only=True)["G"]["fc.weight"].view(-1)  # torch itself does not notice
    assert not torch.equal(check, _state(run)["G"]["fc.weight"].view(-1))


def truncated(run, dst: Path) -> None:
    raw = run.ckpt.read_bytes()
    dst.write_bytes(raw[: len(raw) // 2])


def truncated_tail(run, dst: Path) -> None:
    raw = run.ckpt.read_bytes()
    dst.write_bytes(raw[:-100])  # only the zip's central directory is cut


def empty(run, dst: Path) -> None:
    dst.write_bytes(b"")


def a_folder(run, dst: Path) -> None:
    dst.mkdir()


def random_bytes(run, dst: Path) -> None:
    dst.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def other_zip(run, dst: Path) -> None:
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("hello.txt", "not a checkpoint")


def a_list(run, dst: Path) -> None:
    torch.save([1, 2, 3], dst)


def plain_weights(run, dst: Path) -> None:
    torch.save(_state(run)["G"], dst)  # a bare state dict, not a training checkpoint


MARKER = "PWNED_BY_CHECKPOINT"


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def code_in_torch_zip(run, dst: Path) -> None:
    torch.save({"format": C.CHECKPOINT_FORMAT, "G": _RunsCode()}, dst)


def code_in_plain_pickle(run, dst: Path) -> None:
    dst.write_bytes(pickle.dumps({"format": C.CHECKPOINT_FORMAT, "x": _RunsCode()}))


def _set(path: str, value):
    def fn(state):
        *parents, leaf = path.split(".")
        d = state
        for p in parents:
            d = d[p]
        d[leaf] = value
    return fn


def _drop(key: str):
    return lambda state: state.pop(key)


def _nan_weight(state):
    w = state["G"]["fc.weight"].clone()
    w[0, 0] = float("nan")
    state["G"]["fc.weight"] = w


def _small_fc(state):
    state["G"]["fc.weight"] = state["G"]["fc.weight"][:, :10].clone()


def _bad_rng(state):
    state["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)


def _other_videos(state):
    state["data"]["train_videos"] = ["007"]


EVAL, RESUME = "evaluate", "resume"
# (id, command, maker, extra args, exit status, phrase)
CASES = [
    ("byte-flip-in-weight", EVAL, flip_weight_byte, (), 1, "checksum mismatch"),
    ("byte-flip-resume", RESUME, flip_weight_byte, (), 1, "checksum mismatch"),
    ("truncated-half", EVAL, truncated, (), 1, "truncated or corrupted"),
    ("truncated-tail", RESUME, truncated_tail, (), 1, "truncated or corrupted"),
    ("empty-file", EVAL, empty, (), 1, "empty file"),
    ("a-folder", EVAL, a_folder, (), 1, "is a folder"),
    ("random-bytes", EVAL, random_bytes, (), 1, "cannot read checkpoint"),
    ("zip-not-torch", EVAL, other_zip, (), 1, "cannot read checkpoint"),
    ("a-list", EVAL, a_list, (), 1, "not a tdd_lite training checkpoint"),
    ("bare-state-dict", EVAL, plain_weights, (), 1, "not a tdd_lite training checkpoint"),
    ("code-in-torch-zip", EVAL, code_in_torch_zip, (), 1, "refused"),
    ("code-in-plain-pickle", EVAL, code_in_plain_pickle, (), 1, "checkpoint"),
    ("wrong-format-tag", EVAL, resealed(_set("format", "tdd_lite.train/99")), (), 1, "format tag"),
    ("checksum-removed", EVAL, unsealed(_drop("checksum")), (), 1, "no checksum field"),
    ("value-edited-no-reseal", EVAL, unsealed(_set("step", 1)), (), 1, "checksum mismatch"),
    ("missing-G", EVAL, resealed(_drop("G")), (), 1, "missing field(s) G"),
    ("missing-config", RESUME, resealed(_drop("config")), (), 1, "missing field(s) config"),
    ("step-is-a-string", EVAL, resealed(_set("step", "2")), (), 1, "field 'step' is a str"),
    ("wrong-3dmm-n_id", EVAL, resealed(_set("n_id", 7)), (), 1, "3DMM"),
    ("wrong-3dmm-resume", RESUME, resealed(_set("n_exp", 3)), (), 1, "3DMM"),
    ("G-wrong-shape", EVAL, resealed(_small_fc), (), 1, "do not fit"),
    ("G-nan-weight", EVAL, resealed(_nan_weight), (), 1, "NaN"),
    ("config-bad-value", EVAL, resealed(_set("config.image_size", 16)), (), 1, "image_size=16"),
    ("config-unknown-field", EVAL, resealed(_set("config.colour", "red")), (), 1, "unknown ['colour']"),
    ("step-huge", RESUME, resealed(_set("step", 10**6)), (), 1, "step 1000000 is outside 0..2"),
    ("step-negative", RESUME, resealed(_set("step", -1)), (), 1, "step -1 is outside"),
    ("rng-malformed", RESUME, resealed(_bad_rng), (), 1, "rng state is malformed"),
    # a well-formed checkpoint of another run
    ("resume-other-steps", RESUME, None, ("--steps", "4"), 1, "steps (checkpoint 2, this run 4)"),
    ("resume-no-td", RESUME, None, ("--no-td",), 1, "use_td (checkpoint True, this run False)"),
    ("resume-no-id-no-ed", RESUME, None, ("--no-id", "--no-ed"), 1, "use_ed (checkpoint True, this run False)"),
    ("resume-image-size", RESUME, resealed(_set("config.image_size", 64)), (), 1,
     "image_size (checkpoint 64, this run 32)"),
    ("resume-batch", RESUME, resealed(_set("config.batch_size", 2)), (), 1, "batch_size (checkpoint 2, this run 4)"),
    ("resume-lambda", RESUME, resealed(_set("config.lambda_td", 0.5)), (), 1, "lambda_td (checkpoint 0.5"),
    ("resume-schedule", RESUME, resealed(_set("config.schedule", "exponential")), (), 1,
     "schedule (checkpoint 'exponential', this run 'cosine')"),
    ("resume-landmark-norm", RESUME, resealed(_set("config.landmark_norm", "per_landmark")), (), 1,
     "landmark_norm (checkpoint 'per_landmark', this run 'frobenius')"),
    ("resume-max-interval", RESUME, resealed(_set("config.max_interval", 3)), (), 1, "max_interval (checkpoint 3"),
    ("resume-seed", RESUME, resealed(_set("config.seed", 5)), (), 1, "seed (checkpoint 5, this run 0)"),
    ("resume-other-videos", RESUME, resealed(_other_videos), (), 1, "train_videos"),
    ("evaluate-other-size", EVAL, None, ("--size", "64"), 1, "--size 64 contradicts"),
    ("missing-file", EVAL, "missing", (), 1, "does not exist"),
]


# one of each kind of failure in a real subprocess
SUBPROCESS = {"byte-flip-in-weight", "byte-flip-resume", "truncated-half", "empty-file", "random-bytes",
              "code-in-torch-zip", "missing-G", "wrong-3dmm-n_id", "step-huge", "resume-no-td", "resume-image-size",
              "evaluate-other-size"}


def test_the_table_is_big_enough():
    assert len(CASES) >= 15 and len({c[0] for c in CASES}) == len(CASES)
    assert SUBPROCESS <= {c[0] for c in CASES}


@pytest.mark.parametrize("case_id, command, maker, extra, code, phrase", CASES, ids=[c[0] for c in CASES])
def test_bad_checkpoint_is_one_line_error(run, work, capsys, monkeypatch, case_id, command, maker, extra, code,
                                          phrase):
    def cli(*args):
        if case_id in SUBPROCESS:
            return run_cli(*args, cwd=work)
        return in_process(capsys, monkeypatch, work, *args)

    if command == EVAL:
        path = work / "model.pt"
        if maker is None:
            path = run.ckpt
        elif maker != "missing":
            maker(run, path)
        r = cli("evaluate", path, "--data", run.root, "--mode", "gt", "--max-frames", "1", "--videos", "002", *extra)
    else:
        out = work / "out"
        out.mkdir()
        if maker is None:
            os.link(run.ckpt, out / C.CHECKPOINT_NAME)  # unchanged: a hard link saves 150 MB
        else:
            maker(run, out / C.CHECKPOINT_NAME)
        shutil.copyfile(run.out / T.METRICS_NAME, out / T.METRICS_NAME)
        r = cli("train", "--config", "smoke", "--data", run.root, "--out", out, "--steps", "2", "--resume", *extra)
        if maker is not None and not (out / C.CHECKPOINT_NAME).is_dir():
            # the refused checkpoint is left as it was (nothing overwritten, no temp file)
            assert sorted(p.name for p in out.iterdir()) == [C.CHECKPOINT_NAME, T.METRICS_NAME]
    assert_one_line_error(r, code, phrase, prog="tdd-lite " + ("evaluate" if command == EVAL else "train"))
    assert str(path if command == EVAL else out / C.CHECKPOINT_NAME) in r.err or case_id == "evaluate-other-size"
    assert not (work / MARKER).exists(), "loading a checkpoint ran code"


def test_the_good_checkpoint_evaluates_and_resumes(run, work):
    """The control: the unmutated checkpoint passes the same commands."""
    r = run_cli("evaluate", run.ckpt, "--data", run.root, "--mode", "gt", "--max-frames", "1", "--videos", "002",
                cwd=work)
    assert r.code == 0 and "videos: tracking: NME" in r.out, r.text
    out = work / "out"
    out.mkdir()
    os.link(run.ckpt, out / C.CHECKPOINT_NAME)
    r = run_cli("train", "--config", "smoke", "--data", run.root, "--out", out, "--steps", "2", "--resume",
                "--device", "cpu", cwd=work)
    assert r.code == 0 and "at step 2 of 2" in r.out, r.text


def test_old_format_checkpoint_is_accepted_with_one_warning(run, work):
    state = _state(run)
    del state["checksum"]
    state["format"] = "tdd_lite.train/1"
    path = work / "old.pt"
    torch.save(state, path)
    r = run_cli("evaluate", path, "--data", run.root, "--mode", "gt", "--max-frames", "1", "--videos", "002",
                cwd=work)
    assert r.code == 0 and not r.has_traceback, r.text
    assert "no checksum" in r.err and "UnverifiedCheckpointWarning" in r.err
