"""The shipped reference model (tdd_lite.reference): float16 export, SHA-256 before unpickling, the commands
that use it when no checkpoint is given, and the real shipped file.

One real trainer checkpoint (``smoke`` config, the teaching 3DMM, one training step) is written per module and
exported to a temporary reference file; the commands see it through a monkeypatched ``REFERENCE_PATH`` (the
shipped file is checked on its own in :func:`test_shipped_reference`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from tdd_lite import checkpoint as C
from tdd_lite import reference as R
from tdd_lite import train as T
from tdd_lite import train_config as TC
from tdd_lite.errors import CheckpointError, DataError, UsageError
from tdd_lite.morphable import load_teaching_model
from tdd_lite.network import predict_landmarks
from tests._tiny3dmm import tiny_model
from tests.test_checkpoints_bad import in_process
from tests.test_train import FrameSet, PairSet


@pytest.fixture(scope="module")
def model():
    return load_teaching_model()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, model) -> Path:
    """A trainer checkpoint written by ``Trainer.save_checkpoint`` after one step. Both last layers get gain 1
    (x100) before the save, so G's outputs depend on its trunk's features and not only on the head biases
    (at the usual 0.01 gain the fp16 comparison below would barely see the trunk)."""
    out = tmp_path_factory.mktemp("refrun")
    tr = T.Trainer(TC.get_config("smoke", steps=2), model, PairSet(), FrameSet(n=8), out_dir=out, device="cpu",
                   quiet=True)
    tr.train_step(T._stack_batch([tr.train_set[i] for i in range(4)]))
    with torch.no_grad():
        tr.g_module.head_3dmm[-1].weight.mul_(100)
        tr.g_module.head_camera[-1].weight.mul_(100)
    return tr.save_checkpoint()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, ckpt) -> Path:
    out = tmp_path_factory.mktemp("ref") / "reference_g.pt"
    R.export_reference(ckpt, out, card={"note": "test export", "nme": {"A": 1.5}})
    return out


@pytest.fixture
def copy_of(tmp_path, exported):
    def make(name: str = "reference_g.pt") -> Path:
        dst = tmp_path / name
        shutil.copyfile(exported, dst)
        shutil.copyfile(R.sidecar_path(exported), R.sidecar_path(dst))
        return dst

    return make


def _no_torch_load(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("torch.load called on a file that should have been refused first")

    monkeypatch.setattr(torch, "load", boom)


def _one_line_error(excinfo, *phrases: str) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, text
    for p in phrases:
        assert p in text, text
    return text


# ================================================================================================ export
def test_export_writes_a_weights_only_float16_file_and_its_sidecar(ckpt, exported):
    state = torch.load(exported, map_location="cpu", weights_only=True)  # plain tensors and values only
    assert state["format"] == R.REFERENCE_FORMAT
    assert (state["n_id"], state["n_exp"], state["image_size"]) == (199, 29, 32)
    assert state["config"] == C.load_checkpoint(ckpt)["config"]
    g = state["G"]
    for name, t in g.items():
        if name.endswith("num_batches_tracked"):
            assert t.dtype == torch.int64 and int(t) >= 1, name  # BatchNorm's counter: an integer, as trained
        elif name in R.FLOAT32_BUFFERS:
            assert t.dtype == torch.float32, name
        else:
            assert t.dtype == torch.float16, name
    assert set(R.FLOAT32_BUFFERS) <= set(g)
    data = exported.read_bytes()
    assert len(data) <= R.MAX_EXPORT_BYTES == 25_000_000  # ResNet-18 G in float16: ~24.0 MB
    meta = json.loads(R.sidecar_path(exported).read_text())
    assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["bytes"] == len(data)
    assert meta["image_size"] == 32 and meta["card"] == {"note": "test export", "nme": {"A": 1.5}}
    assert meta["source"]["step"] == 1 and meta["source"]["checksum"].startswith("sha256:")
    assert not list(exported.parent.glob("*.tmp*"))


def test_float16_weights_predict_what_the_float32_g_predicts(ckpt, exported, model):
    """Tolerance: rounding a weight to float16 changes it by at most 2^-11 = 4.9e-4 (relative). G is ~20
    layers deep (ResNet-18 + fc + heads, BatchNorm folded in eval mode); if every layer added its worst relative
    error linearly, the outputs would move by at most ~20 x 4.9e-4 ~ 1e-2 of their size. The landmarks are
    O(1) in [0, 1] crop coordinates, so 1e-2 (a third of a pixel of the 32 px crop) bounds the worst case; the
    errors of independent roundings mostly cancel and the measured difference is ~3e-4. The feature vector is
    held to the same 1e-2 relative bound."""
    g32 = C.load_alignment_net(ckpt, model)
    g16, info = R.load_reference(exported, model)
    assert not g16.training and all(p.dtype == torch.float32 for p in g16.parameters())
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f32, f16 = g32.features(x), g16.features(x)
        out32, out16 = g32(x), g16(x)
        l32, l16 = predict_landmarks(model, out32), predict_landmarks(model, out16)
    assert float((f16 - f32).abs().max()) <= 1e-2 * float(f32.abs().max())
    for a, b in zip(out32, out16):
        assert float((a - b).abs().max()) <= 1e-2 * float(a.abs().max())
    assert float(l32.std()) > 0.05  # the landmarks really are spread over the crop (a meaningful comparison)
    torch.testing.assert_close(l16, l32, atol=1e-2, rtol=0)
    assert float((l16 - l32).abs().max()) > 0  # float16 really was used
    assert info["image_size"] == 32 and info["description"].startswith("reference (")


def test_export_refuses_a_file_over_the_bound_and_writes_nothing(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(R, "MAX_EXPORT_BYTES", 1_000_000)
    with pytest.raises(DataError, match="over the 1 MB") as e:
        R.export_reference(ckpt, tmp_path / "big.pt")
    _one_line_error(e, "big.pt", "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_export_arguments(ckpt, tmp_path):
    with pytest.raises(UsageError, match=r"must end in \.pt"):
        R.export_reference(ckpt, tmp_path / "g.json")
    with pytest.raises(UsageError, match="card"):
        R.export_reference(ckpt, tmp_path / "g.pt", card=["not", "a", "dict"])
    with pytest.raises(CheckpointError, match="does not exist"):
        R.export_reference(tmp_path / "nope.pt", tmp_path / "g.pt")
    assert list(tmp_path.iterdir()) == []


# ================================================================================================== load
def test_a_flipped_byte_is_refused_before_unpickling(copy_of, monkeypatch):
    bad = copy_of()
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    _no_torch_load(monkeypatch)
    with pytest.raises(CheckpointError) as e:
        R.load_reference(bad)
    _one_line_error(e, f"{bad}: SHA-256 mismatch (expected ", "the file is damaged", "export it again")


def test_a_missing_sidecar_is_refused(copy_of, monkeypatch):
    bad = copy_of()
    R.sidecar_path(bad).unlink()
    _no_torch_load(monkeypatch)
    with pytest.raises(CheckpointError) as e:
        R.load_reference(bad)
    _one_line_error(e, str(bad), "no sidecar reference_g.json", "unverified")


@pytest.mark.parametrize("content, phrase", [
    ("{not json", "not valid JSON"),
    ('{"format": "something/else", "sha256": "00"}', "not a reference sidecar"),
    ('{"format": "tdd_lite.reference/1", "sha256": "abc"}', "not a SHA-256"),
])
def test_a_bad_sidecar_is_refused(copy_of, monkeypatch, content, phrase):
    bad = copy_of()
    R.sidecar_path(bad).write_text(content)
    _no_torch_load(monkeypatch)
    with pytest.raises(CheckpointError) as e:
        R.load_reference(bad)
    _one_line_error(e, str(bad), phrase)


def test_a_file_over_the_size_bound_is_refused_without_being_read(tmp_path, exported, monkeypatch):
    big = tmp_path / "reference_g.pt"
    with open(big, "wb") as f:  # sparse: 65 MiB on paper, nothing on disk
        f.truncate(R.MAX_LOAD_BYTES + 2**20)
    shutil.copyfile(R.sidecar_path(exported), R.sidecar_path(big))
    _no_torch_load(monkeypatch)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self}"))
    with pytest.raises(CheckpointError) as e:
        R.load_reference(big)
    _one_line_error(e, str(big), "65.0 MiB", "over the 64 MiB")


def test_missing_empty_and_folder_paths(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="reference model does not exist"):
        R.load_reference(tmp_path / "nope.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        R.load_reference(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        R.load_reference(tmp_path)
    monkeypatch.setattr(R, "REFERENCE_PATH", tmp_path / "gone.pt")  # the default follows the module constant
    with pytest.raises(CheckpointError, match="gone.pt: reference model does not exist"):
        R.load_reference()


def _payload(exported) -> dict:
    return torch.load(exported, map_location="cpu", weights_only=True)


def _nan(p):
    p["G"]["fc.weight"][0, 0] = float("nan")


def _drop(p):
    del p["G"]["fc.bias"]


def _reshape(p):
    p["G"]["fc.weight"] = p["G"]["fc.weight"][:10]


def _tag(p):
    p["format"] = "tdd_lite.train/2"


def _size(p):
    p["image_size"] = 8


@pytest.mark.parametrize("mutate, phrase", [
    (_tag, "not a tdd_lite reference model (format tag 'tdd_lite.train/2'"),
    (_nan, "G weight fc.weight holds NaN/inf values"),
    (_drop, "weights do not fit the network"),
    (_reshape, "weights do not fit the network"),
    (_size, "image_size 8 is outside 32..1024"),
])
def test_a_verified_file_with_unusable_contents_is_refused(exported, tmp_path, mutate, phrase):
    """Files sealed with a correct SHA-256 (so the check is the structural one, not the checksum)."""
    p = _payload(exported)
    mutate(p)
    bad = tmp_path / "reference_g.pt"
    R._save_reference(p, bad)
    with pytest.raises(CheckpointError) as e:
        R.load_reference(bad)
    _one_line_error(e, str(bad), phrase)


def test_a_3dmm_of_other_sizes_is_refused(exported):
    with pytest.raises(CheckpointError, match="199 identity \\+ 29 expression modes, this 3DMM has 2 \\+ 1"):
        R.load_reference(exported, tiny_model())


def test_resolve_net_picks_the_loader(ckpt, exported, copy_of, model, monkeypatch):
    monkeypatch.setattr(R, "REFERENCE_PATH", exported)
    net, size, what = R.resolve_net(None, model)
    assert size == 32 and what.startswith(f"reference ({exported}, sha256 ") and not net.training
    sha = hashlib.sha256(exported.read_bytes()).hexdigest()
    assert what.endswith(f"{sha})")
    assert R.resolve_net(str(exported), model)[2] == what  # a reference file by path
    net, size, what = R.resolve_net(ckpt, model)  # a trainer checkpoint, as before
    assert (size, what) == (32, str(ckpt))
    assert R.is_reference_file(exported) and not R.is_reference_file(ckpt)
    # a reference file that lost its sidecar is still recognised (from the format tag in its pickle) and refused
    lonely = copy_of("lonely.pt")
    R.sidecar_path(lonely).unlink()
    assert R.is_reference_file(lonely)
    with pytest.raises(CheckpointError, match="no sidecar lonely.json"):
        R.resolve_net(lonely, model)


# ============================================================================================= commands
@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from tdd_lite.data.synth import generate

    return generate(tmp_path_factory.mktemp("refsynth") / "s", videos=4, frames=4, size=(96, 96), seed=3,
                    progress=False)


def test_track_runs_without_checkpoint_on_the_reference(synth, exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(R, "REFERENCE_PATH", exported)
    out = tmp_path / "track"
    r = in_process(capsys, monkeypatch, tmp_path, "track", synth / "002" / "vid.avi", "--out", out,
                   "--detector", "haar", "--no-progress", "--no-overlay")
    assert r.code == 0, r.text
    info = json.loads((out / "track.json").read_text())
    sha = hashlib.sha256(exported.read_bytes()).hexdigest()
    assert info["checkpoint"] == f"reference ({exported}, sha256 {sha})"
    assert info["image_size"] == 32 and info["frames"] == 4 == len(list((out / "annot").glob("*.pts")))


def test_track_without_checkpoint_and_no_reference_is_one_line(synth, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(R, "REFERENCE_PATH", tmp_path / "gone" / "reference_g.pt")
    r = in_process(capsys, monkeypatch, tmp_path, "track", synth / "002" / "vid.avi", "--out", tmp_path / "o",
                   "--detector", "haar", "--no-progress")
    assert r.code == 1 and not r.has_traceback, r.text
    assert r.err.strip().count("\n") == 0 and "reference_g.pt: reference model does not exist" in r.err, r.err
    assert not (tmp_path / "o").exists()


def test_evaluate_runs_without_checkpoint_on_the_reference(synth, exported, tmp_path, capsys, monkeypatch):
    from tdd_lite.cli import build_parser

    args = build_parser(only="evaluate").parse_args(["evaluate", "--data", str(synth)])
    assert args.checkpoint is None
    monkeypatch.setattr(R, "REFERENCE_PATH", exported)
    r = in_process(capsys, monkeypatch, tmp_path, "evaluate", "--data", synth, "--videos", "002", "--mode", "gt",
                   "--max-frames", "2", "--no-gt-crops", "--no-progress", "--out", tmp_path / "eval")
    assert r.code == 0, r.text
    meta = json.loads((tmp_path / "eval" / "report.json").read_text())["meta"]
    assert meta["checkpoint"].startswith(f"reference ({exported}, sha256 ") and meta["image_size"] == 32
    r = in_process(capsys, monkeypatch, tmp_path, "evaluate", "--data", synth, "--size", "64")
    assert r.code == 1 and "--size 64 contradicts reference (" in r.err and "32 px crops" in r.err, r.text


def test_module_commands(ckpt, exported, copy_of, tmp_path, capsys):
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"nme": {"A": 4.2}}))
    out = tmp_path / "cli" / "reference_g.pt"
    assert R.main(["export", str(ckpt), str(out), "--card", str(card)]) == 0
    assert json.loads(R.sidecar_path(out).read_text())["card"] == {"nme": {"A": 4.2}}
    assert "MB, sha256 " in capsys.readouterr().out
    assert R.main(["check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ok (matches reference_g.json), image_size 32" in text and "forward pass finite" in text
    bad = copy_of("damaged.pt")
    with open(bad, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert R.main(["check", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("python -m tdd_lite.reference: error: ") and "SHA-256" in err
    card.write_text("[1, 2]")
    assert R.main(["export", str(ckpt), str(tmp_path / "x.pt"), "--card", str(card)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        R.main([])
    assert e.value.code == 2


# ======================================================================================= the shipped file
@pytest.mark.skipif(not R.SHIPPED_PATH.exists(), reason="tdd_lite/assets/reference_g.pt is not in this checkout yet")
def test_shipped_reference(model):
    path = R.SHIPPED_PATH
    data = path.read_bytes()
    assert len(data) <= R.MAX_EXPORT_BYTES
    meta = json.loads(R.sidecar_path(path).read_text())
    assert meta["format"] == R.REFERENCE_FORMAT and meta["bytes"] == len(data)
    assert hashlib.sha256(data).hexdigest() == meta["sha256"]
    net, info = R.load_reference(path, model)
    assert info["image_size"] == meta["image_size"] == info["config"]["image_size"]
    s = info["image_size"]
    with torch.no_grad():
        lmk = predict_landmarks(model, net(torch.full((1, 3, s, s), 0.5)))
    assert torch.isfinite(lmk).all()
    card = path.with_suffix(".md")
    assert card.is_file(), "the model card tdd_lite/assets/reference_g.md ships with the weights"
    assert "TBD" not in card.read_text(), "fill in the model card's numbers (reference_g.md still says TBD)"
