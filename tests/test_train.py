"""The trainer: config validation, exact resume, the NaN stop, D/G freezing, the lr schedule, the CLI."""

import json
import math

import pytest
import torch
from torch.utils.data import Dataset

from tdd_lite import checkpoint as C
from tdd_lite import train as T
from tdd_lite import train_config as TC
from tests._figures import smallest_text_px
from tests._tiny3dmm import random_model


class PairSet(Dataset):
    """In-memory frame pairs (random images; landmarks of random faces): enough to exercise the mechanics."""

    def __init__(self, n=24, size=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.img = torch.rand(n, 3, size, size, generator=g)
        self.prev = torch.rand(n, 3, size, size, generator=g)
        self.lmk = 0.2 + 0.6 * torch.rand(n, 68, 2, generator=g)
        self.prev_lmk = (self.lmk + 0.02 * torch.randn(n, 68, 2, generator=g)).clamp(0, 1)

    def __len__(self):
        return len(self.img)

    def __getitem__(self, i):
        # some item randomness (like jitter) to check that it is replayed exactly on resume
        jitter = 0.01 * torch.rand(1).item()
        return {"image": self.img[i], "prev_image": self.prev[i], "gt_lmk": self.lmk[i] + jitter,
                "prev_gt_lmk": self.prev_lmk[i] + jitter, "interval": 1}


class FrameSet(PairSet):
    def __getitem__(self, i):
        return {"image": self.img[i], "gt_lmk": self.lmk[i]}


@pytest.fixture(scope="module")
def model():
    return random_model()


def make(model, out, **kw):
    cfg = TC.get_config("smoke", **kw)
    return T.Trainer(cfg, model, PairSet(), FrameSet(n=8), out_dir=out, device="cpu", quiet=True)


# ----------------------------------------------------------------------------------------- configs
def test_presets_match_the_paper():
    p = TC.get_config("paper")
    assert (p.image_size, p.batch_size, p.epochs, p.lr, p.lr_final, p.max_interval) == (256, 20, 500, 1e-3, 1e-5, 6)
    assert p.lambdas == T.losses.Lambdas(0.1, 0.1, 0.1) and p.enabled == ("id", "exp", "temporal")
    assert TC.get_config("fast").batch_size == 20


@pytest.mark.parametrize("name, kw, match", [
    ("papr", {}, "unknown config 'papr'"),
    ("smoke", {"batch_size": 0}, "batch_size=0"),
    ("smoke", {"lr_final": 0.1}, "lr_final"),
    ("smoke", {"image_size": 16}, "image_size"),
    ("smoke", {"lambda_td": -1.0}, "lambda_td"),
    ("smoke", {"steps": -3}, "steps"),
    ("smoke", {"bogus": 1}, "bogus"),
])
def test_bad_configs_raise_clear_errors(name, kw, match):
    with pytest.raises(ValueError, match=match):
        TC.get_config(name, **kw)


def test_ablation_configs_are_the_8_rows_of_table_3():
    rows = TC.ablation_configs("smoke")
    assert len(rows) == 8
    assert rows["Without all"].enabled == ()
    assert rows["With D_ED, D_TD"].enabled == ("exp", "temporal")
    assert {c.enabled for c in rows.values()} == {
        (), ("id",), ("exp",), ("temporal",), ("id", "exp"), ("id", "temporal"), ("exp", "temporal"),
        ("id", "exp", "temporal")}


def test_lr_schedules_decay_from_1e3_to_1e5():
    for sched in ("exponential", "cosine"):
        assert math.isclose(TC.lr_factor(0, 100, 1e-3, 1e-5, sched), 1.0)
        assert math.isclose(1e-3 * TC.lr_factor(100, 100, 1e-3, 1e-5, sched), 1e-5)
        assert math.isclose(1e-3 * TC.lr_factor(500, 100, 1e-3, 1e-5, sched), 1e-5)  # flat after the end
    assert math.isclose(TC.lr_factor(50, 100, 1e-3, 1e-5, "exponential"), 0.1)  # geometric midpoint
    assert math.isclose(1e-3 * TC.lr_factor(50, 100, 1e-3, 1e-5, "cosine"), (1e-3 + 1e-5) / 2)
    with pytest.raises(ValueError, match="schedule"):
        TC.get_config("smoke", schedule="linear")


def test_trainer_follows_the_schedule(model, tmp_path):
    tr = make(model, tmp_path, steps=4, schedule="exponential")
    lrs = []
    for _ in range(4):
        lrs.append(tr.train_step(T._stack_batch([tr.train_set[i] for i in range(4)]))["lr"])
    expect = [1e-3 * TC.lr_factor(s, 4, 1e-3, 1e-5, "exponential") for s in range(4)]
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(lrs, expect))
    assert math.isclose(tr.opt_d.param_groups[0]["lr"], 1e-5, rel_tol=1e-9)


# ------------------------------------------------------------------------------------ the iteration
def _snap(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_d_step_leaves_g_alone_and_g_step_leaves_d_alone(model, tmp_path):
    tr = make(model, tmp_path)
    batch = T._stack_batch([tr.train_set[i] for i in range(4)])
    x, land, _ = tr.forward_g(batch)
    g0, d0 = _snap(tr.g_module), _snap(tr.d_modules)
    tr.d_step(x)
    g1, d1 = _snap(tr.g_module), _snap(tr.d_modules)
    assert _same(g0, g1) and all(p.grad is None for p in tr.g_module.parameters())  # G frozen in the D step
    assert not _same(d0, d1)  # D learned
    for p in tr.d_modules.parameters():
        p.grad = None
    tr.g_step(x, land)
    g2, d2 = _snap(tr.g_module), _snap(tr.d_modules)
    assert _same(d1, d2) and all(p.grad is None for p in tr.d_modules.parameters())  # D frozen in the G step
    assert not _same(g1, g2)  # G learned


def test_g_adversarial_gradient_reaches_g(model, tmp_path):
    """The G step's adversarial term must move G (the fakes are not detached there)."""
    tr = make(model, tmp_path)
    batch = T._stack_batch([tr.train_set[i] for i in range(4)])
    x, land, _ = tr.forward_g(batch)
    tr.g_step(x, land * 0.0)  # adversarial terms only
    grads = [p.grad for p in tr.g_module.head_3dmm.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_disabled_discriminators_are_not_trained(model, tmp_path):
    tr = make(model, tmp_path, use_id=False, use_td=False)
    assert list(tr.ds) == ["exp"]
    d0 = _snap(tr.d_modules)
    logs = tr.train_step(T._stack_batch([tr.train_set[i] for i in range(4)]))
    d1 = _snap(tr.d_modules)
    assert "D_exp" in logs and "D_id" not in logs and "G_temporal" not in logs
    assert all(torch.equal(d0[k], d1[k]) for k in d0 if not k.startswith("exp."))
    assert not all(torch.equal(d0[k], d1[k]) for k in d0 if k.startswith("exp."))


# ----------------------------------------------------------------------------- resume, NaN, logging
def test_resume_continues_exactly(model, tmp_path):
    """N steps == N/2 + checkpoint + fresh trainer + resume + N/2 (bit-identical weights and optimizers)."""
    n = 6
    full = make(model, tmp_path / "full", steps=n)
    full.fit()
    half = make(model, tmp_path / "half", steps=n)
    half.fit(steps=n // 2)
    assert half.step == n // 2 and half.checkpoint_path.exists()
    torch.manual_seed(12345)  # disturb the global RNG: resume must restore it
    resumed = make(model, tmp_path / "half", steps=n)
    resumed.load_checkpoint()
    assert resumed.step == n // 2
    resumed.fit()
    a, b = full.state_dict(), resumed.state_dict()
    for part in ("G", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    sa, sb = a["opt_g"]["state"], b["opt_g"]["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    assert a["sched_g"]["last_epoch"] == b["sched_g"]["last_epoch"] == n


def test_checkpoint_loads_with_weights_only(model, tmp_path):
    tr = make(model, tmp_path, steps=3)
    tr.fit()
    state = torch.load(tr.checkpoint_path, weights_only=True)
    assert state["step"] == 3 and set(state["D"]) and "rng" in state
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write left no temp file
    net = C.load_alignment_net(tr.checkpoint_path, model)
    assert torch.equal(net.fc.weight, tr.g_module.fc.weight)
    bad = tmp_path / "bad.pt"
    torch.save({"hello": 1}, bad)
    with pytest.raises(ValueError, match="not a tdd_lite training checkpoint"):
        C.load_checkpoint(bad)


def test_nan_loss_stops_naming_step_and_term_and_keeps_the_last_good_checkpoint(model, tmp_path):
    tr = make(model, tmp_path, steps=6, checkpoint_every=2)
    forward_g = tr.forward_g

    def nan_label_at_step_3(batch):  # a corrupt label U at step 3 (the NaN it causes is what must stop the run)
        if tr.step == 3:
            batch = {**batch, "gt_lmk": batch["gt_lmk"].clone()}
            batch["gt_lmk"][0, 0, 0] = float("nan")
        return forward_g(batch)

    tr.forward_g = nan_label_at_step_3
    with pytest.raises(T.NonFiniteLossError, match=r"step 3: loss term 'landmark'"):
        tr.fit()
    state = C.load_checkpoint(tr.checkpoint_path)
    assert state["step"] == 2  # the last good checkpoint survived
    assert all(torch.isfinite(v).all() for v in state["G"].values())


def test_metrics_log_and_curves(model, tmp_path):
    tr = make(model, tmp_path, steps=4, eval_every=2)
    summary = tr.fit()
    recs = T.read_metrics(tmp_path)
    steps = [r["step"] for r in recs if "landmark" in r]
    assert steps == [1, 2, 3, 4]
    assert [r["step"] for r in recs if "val_nme" in r] == [0, 2, 4]
    first = next(r for r in recs if "landmark" in r)
    assert all(k in first for k in ("D_id", "D_exp", "D_temporal", "G_id", "L_G", "L_D", "lr"))
    assert summary["first_val_nme"] > 0 and json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tdd_lite.viz import plot_training_curves

    before = dict(plt.rcParams)
    fig = plot_training_curves(T.read_metrics(tmp_path / "metrics.jsonl"))
    assert len(fig.axes) == 4 and fig.axes[3].lines[0].get_xdata().tolist() == [0, 2, 4]
    assert dict(plt.rcParams) == before, "plot_training_curves changed the notebook's matplotlib settings"
    for ax in fig.axes[1:3]:  # the D and G panels: the paper's names, each curve its own colour AND dash
        curves = [ln for ln in ax.lines if ln.get_label().startswith(("D_", "G_"))]
        assert sorted(ln.get_label().split(" ")[0][2:] for ln in curves) == ["ED", "ID", "TD"]
        assert len({ln.get_color() for ln in curves}) == 3 and len({ln.get_linestyle() for ln in curves}) == 3
    px, text = smallest_text_px(fig)
    assert px >= 10, f"{text!r} drawn at {px:.1f} px in the book's column"
    plt.close(fig)


def test_curve_legends_leave_the_curves_uncovered():
    """Curves shaped like notebook 06's (the Ds dip, spike at every height, then wobble around chance): no corner
    of the D and G panels is free, so the legend needs headroom above the curves or it covers their peaks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tdd_lite.viz import plot_training_curves

    recs = []
    for s in range(5, 205, 5):
        wave = math.sin(s / 9)  # the curves cross the panel's whole height, left to right
        recs.append({"step": s, "landmark": 1 / s, "D_id": 1.4 + wave, "D_exp": 1.4 - wave, "D_temporal": 1.38,
                     "G_id": 0.7 + wave, "G_exp": 0.7 - wave, "G_temporal": 0.7})
    fig = plot_training_curves(recs)
    fig.canvas.draw()
    for ax in fig.axes[1:3]:
        box = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
        for ln in ax.lines:
            if ln.get_label().startswith(("D_", "G_")):
                xy = ax.transData.transform(ln.get_xydata())
                assert not any(box.contains(x, y) for x, y in xy), f"the legend covers {ln.get_label()}"
    plt.close(fig)


def test_validation_nme_matches_metrics_nme(model, tmp_path):
    from tdd_lite.metrics import nme
    from tdd_lite.network import predict_landmarks

    tr = make(model, tmp_path)
    vs = tr.val_set
    with torch.no_grad():
        pred = predict_landmarks(model, tr.g_module.eval()(vs.img))
    expect = float(nme(pred, vs.lmk, norm="bbox").mean()) * 100
    assert math.isclose(tr.evaluate(), expect, rel_tol=1e-4)


# -------------------------------------------------------------------------------------------- CLI
def test_cli_reports_missing_data(tmp_path, capsys):
    rc = T.main(["--config", "smoke", "--data", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 1 and "does not exist" in err and err.startswith("python -m tdd_lite.train: error:")


def test_cli_rejects_unknown_config(tmp_path):
    with pytest.raises(SystemExit):
        T.main(["--config", "huge", "--data", str(tmp_path)])


def test_adversarial_warmup_ramps_g_weights(model, tmp_path):
    tr = make(model, tmp_path, steps=10, adv_warmup=0.5)
    ramps = []
    for s in range(10):
        tr.step = s
        ramps.append(tr.adv_ramp())
    assert ramps == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0]
    tr.step = 0  # ramp 0: the G step is the landmark loss alone
    batch = T._stack_batch([tr.train_set[i] for i in range(4)])
    x, land, _ = tr.forward_g(batch)
    logs = tr.g_step(x, land)
    assert math.isclose(logs["L_G"], land.item(), rel_tol=1e-6)
    assert make(model, tmp_path / "b", steps=10).adv_ramp() == 1.0


def test_adv_camera_grad_false_keeps_id_exp_gradients_off_the_camera(model, tmp_path):
    for flag, expect_cam_grad in ((True, True), (False, False)):
        tr = make(model, tmp_path / str(flag), use_td=False, adv_camera_grad=flag)
        x, land, _ = tr.forward_g(T._stack_batch([tr.train_set[i] for i in range(4)]))
        tr.g_step(x, land * 0.0)
        cam_grad = tr.g_module.head_camera[-1].weight.grad
        assert (cam_grad is not None and cam_grad.abs().sum() > 0) == expect_cam_grad
        assert tr.g_module.head_3dmm[-1].weight.grad.abs().sum() > 0


def test_cli_smoke_run_on_synth300vw_then_refuses_to_overwrite_and_resumes(tmp_path, capsys):
    from tdd_lite.data.synth import generate
    from tdd_lite.morphable import load_teaching_model

    root = generate(tmp_path / "synth", videos=4, frames=8, size=(96, 96), seed=0, progress=False)
    out = tmp_path / "run"
    assert T.main(["--config", "smoke", "--data", str(root), "--out", str(out), "--steps", "2"]) == 0
    state = C.load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 2 and state["config"]["image_size"] == 32
    assert any("val_nme" in r for r in T.read_metrics(out))
    assert T.main(["--config", "smoke", "--data", str(root), "--out", str(out), "--steps", "2"]) == 2
    assert "--resume" in capsys.readouterr().err
    # --resume with another number of steps (another lr schedule) is refused, naming the field
    assert T.main(["--config", "smoke", "--data", str(root), "--out", str(out), "--steps", "4", "--resume"]) == 1
    assert "steps (checkpoint 2, this run 4)" in capsys.readouterr().err
    # a run of 4 steps interrupted at step 2 (the same datasets the CLI builds), then resumed from the CLI
    out4 = tmp_path / "run4"
    cfg = TC.get_config("smoke", steps=4)
    tr = T.Trainer(cfg, load_teaching_model(), *T.build_datasets(root, cfg), out_dir=out4, device="cpu", quiet=True)
    tr.fit(steps=2)
    assert T.main(["--config", "smoke", "--data", str(root), "--out", str(out4), "--steps", "4", "--resume"]) == 0
    assert C.load_checkpoint(out4 / "checkpoint.pt")["step"] == 4
    assert [r["step"] for r in T.read_metrics(out4) if "landmark" in r] == [1, 2, 3, 4]


def test_frame_cache_is_fresh_for_a_regenerated_data_set(tmp_path, monkeypatch):
    from tdd_lite.data.synth import generate

    monkeypatch.setenv("TDD_WORK_DIR", str(tmp_path / "work"))
    root = tmp_path / "synth"
    cfg = TC.get_config("smoke", frame_cache=True, train_split="train", val_split="test")
    generate(root, videos=4, frames=4, size=(64, 64), seed=0, progress=False)
    a, _ = T.build_datasets(root, cfg)
    first = a.sequences[0].cache_dir
    item_a = a[0]["image"]
    generate(root, videos=4, frames=4, size=(64, 64), seed=1, progress=False, overwrite=True)
    b, _ = T.build_datasets(root, cfg)
    assert b.sequences[0].cache_dir != first  # new videos, new cache
    assert (first / "complete").exists() and not torch.equal(item_a, b[0]["image"])


# ------------------------------------------------------------------------ checkpoints you can trust
def test_checksum_covers_every_tensor_byte_and_plain_value(model, tmp_path):
    tr = make(model, tmp_path, steps=1)
    state = tr.state_dict()
    assert state["format"] == C.CHECKPOINT_FORMAT and state["checksum"] == C.payload_checksum(state)
    # independent of dict insertion order, sensitive to one bit of one weight and to a plain value
    reordered = dict(reversed(list(state.items())))
    assert C.payload_checksum(reordered) == state["checksum"]
    flipped = {**state, "G": dict(state["G"])}
    w = flipped["G"]["fc.weight"].clone()
    w.view(-1).view(torch.int32)[7] ^= 1
    flipped["G"]["fc.weight"] = w
    assert C.payload_checksum(flipped) != state["checksum"]
    assert C.payload_checksum({**state, "step": 2}) != state["checksum"]
    assert C.payload_checksum({**state, "config": {**state["config"], "lr": 1.0000001e-3}}) != state["checksum"]


def test_old_format_without_checksum_loads_with_a_warning(model, tmp_path):
    tr = make(model, tmp_path, steps=1)
    tr.fit()
    state = torch.load(tr.checkpoint_path, weights_only=True)
    del state["checksum"]
    state["format"] = "tdd_lite.train/1"
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with pytest.warns(C.UnverifiedCheckpointWarning, match="no checksum"):
        assert C.load_checkpoint(old)["step"] == 1
    state["format"] = C.CHECKPOINT_FORMAT  # the new tag without a checksum: altered, refused
    torch.save(state, old)
    with pytest.raises(T.CheckpointError, match="no checksum field"):
        C.load_checkpoint(old)


def test_checkpoint_with_a_removed_config_field_still_loads_and_resumes(model, tmp_path):
    """Checkpoints written while the config had the ``debug_nan_step`` test hook load (the field is dropped after
    the checksum is verified) and resume; an unknown field is still refused."""
    tr = make(model, tmp_path, steps=2)
    tr.fit(steps=1)
    state = torch.load(tr.checkpoint_path, weights_only=True)
    assert "debug_nan_step" not in state["config"]
    state["config"]["debug_nan_step"] = None  # as every run before the field was removed stored it
    torch.save(C.seal_checkpoint(state), tr.checkpoint_path)
    loaded = C.load_checkpoint(tr.checkpoint_path)
    assert "debug_nan_step" not in loaded["config"] and loaded["step"] == 1
    again = make(model, tmp_path, steps=2)
    again.load_checkpoint()
    assert again.step == 1
    state["config"]["debug_step"] = 3
    torch.save(C.seal_checkpoint(state), tr.checkpoint_path)
    with pytest.raises(T.CheckpointError, match=r"unknown \['debug_step'\]"):
        C.load_checkpoint(tr.checkpoint_path)


def test_resume_refuses_another_config_naming_fields_and_values(model, tmp_path):
    make(model, tmp_path, steps=4).fit(steps=2)
    other = make(model, tmp_path, steps=4, use_td=False, lambda_id=0.2)
    with pytest.raises(T.CheckpointError) as e:
        other.load_checkpoint()
    msg = str(e.value)
    assert "use_td (checkpoint True, this run False)" in msg and "lambda_id (checkpoint 0.1, this run 0.2)" in msg
    assert "checkpoint.pt" in msg
    # fields that change neither model nor data may differ
    same = make(model, tmp_path, steps=4, log_every=2, eval_every=0, num_workers=0)
    same.load_checkpoint()
    assert same.step == 2


def test_failed_save_removes_its_temp_file_and_keeps_the_old_checkpoint(model, tmp_path, monkeypatch):
    tr = make(model, tmp_path, steps=2)
    tr.fit(steps=1)
    before = tr.checkpoint_path.read_bytes()
    real_save = torch.save

    def failing_save(obj, f, *a, **kw):
        real_save(obj, f, *a, **kw)  # the bytes are on disk ...
        raise OSError(28, "No space left on device")  # ... then the write fails

    monkeypatch.setattr(T.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        tr.save_checkpoint()
    assert sorted(p.name for p in tmp_path.iterdir() if ".tmp" in p.name) == []
    assert tr.checkpoint_path.read_bytes() == before


SIGTERM_DURING_SAVE = """
import os, signal, sys, time
import torch
sys.path.insert(0, {root!r})
from tdd_lite import train as T
from tdd_lite import train_config as TC
from tdd_lite.files import sigterm_raises
from tests.test_train import FrameSet, PairSet
from tests._tiny3dmm import random_model
tr = T.Trainer(TC.get_config("smoke", steps=1), random_model(), PairSet(), FrameSet(n=8), out_dir={out!r},
               device="cpu", quiet=True)
real_save = torch.save
def slow_save(obj, f, *a, **kw):
    real_save(obj, f, *a, **kw)
    os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` during the write
    time.sleep(30)
T.torch.save = slow_save
with sigterm_raises(KeyboardInterrupt):  # as `tdd-lite train` runs the trainer
    tr.save_checkpoint()
"""


def test_sigterm_during_save_removes_the_temp_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", SIGTERM_DURING_SAVE.format(root=root, out=str(out))],
                          capture_output=True, text=True, timeout=120, cwd=root)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stderr, proc.stderr[-2000:]
    assert out.is_dir() and list(out.iterdir()) == []  # neither a temp file nor a half checkpoint


def test_stale_temp_files_of_dead_processes_are_removed_at_start_and_save(model, tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tmp_path.mkdir(exist_ok=True)
        stale = tmp_path / f"checkpoint.pt.tmp{dead.pid}"
        live = tmp_path / f"checkpoint.pt.tmp{alive.pid}"
        unrelated = tmp_path / f"notes.txt.tmp{dead.pid}"
        for p in (stale, live, unrelated):
            p.write_bytes(b"x" * 100)
        tr = make(model, tmp_path, steps=1)  # the trainer's start removes the dead process's file
        assert not stale.exists() and live.exists() and unrelated.exists()
        stale.write_bytes(b"x")
        tr.save_checkpoint()  # and so does the next save
        assert not stale.exists() and live.exists() and unrelated.exists()
        assert C.load_checkpoint(tr.checkpoint_path)["step"] == 0
    finally:
        alive.kill()
        alive.wait()


def test_resume_cuts_metrics_back_to_the_checkpoint_step(model, tmp_path):
    """Killed after logging step 3 but before the next checkpoint: the resumed run logs 3 and 4 once."""
    import shutil

    tr = make(model, tmp_path, steps=4, checkpoint_every=2, eval_every=2)
    tr.fit(steps=2)
    shutil.copyfile(tr.checkpoint_path, tmp_path / "at2.pt")
    tr.fit(steps=3)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "landm')  # a record cut short by the kill
    shutil.copyfile(tmp_path / "at2.pt", tr.checkpoint_path)
    resumed = make(model, tmp_path, steps=4, checkpoint_every=2, eval_every=2)
    resumed.load_checkpoint()
    assert [r["step"] for r in T.read_metrics(tmp_path) if "landmark" in r] == [1, 2]
    resumed.fit()
    recs = T.read_metrics(tmp_path)
    assert [r["step"] for r in recs if "landmark" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in recs if "val_nme" in r] == [0, 2, 4]
    assert not list(tmp_path.glob("metrics.jsonl.tmp*"))


# ------------------------------------------------------------------------- the reference recipe's pieces
def test_land_prev_is_eq1_averaged_over_both_frames(model, tmp_path):
    """With ``land_prev`` the landmark loss is eq. 1 on I and on I', averaged (checked against two separate calls
    of :func:`tdd_lite.losses.landmark_loss` on G's own outputs); without it, eq. 1 on I alone."""
    from tdd_lite.network import predict_landmarks

    batch = T._stack_batch([PairSet()[i] for i in range(4)])
    for land_prev in (False, True):
        tr = make(model, tmp_path / str(land_prev), land_prev=land_prev, use_td=False)
        torch.manual_seed(0)
        _, land, _ = tr.forward_g(batch)
        with torch.no_grad():
            tr.g_module.train()
            torch.manual_seed(0)
            out = tr.g_module(torch.cat([batch["image"], batch["prev_image"]]))
            v = predict_landmarks(model, out)
        cur = T.losses.landmark_loss(v[:4], batch["gt_lmk"])
        prev = T.losses.landmark_loss(v[4:], batch["prev_gt_lmk"])
        expect = (cur + prev) / 2 if land_prev else cur
        land, expect = float(land.detach()), float(expect)
        assert math.isclose(land, expect, rel_tol=1e-5), (land_prev, land, expect)
        assert not math.isclose(float(cur), float(prev), rel_tol=1e-3)  # the two readings differ on this batch


def test_per_category_validation_equals_each_set_alone(model, tmp_path):
    sets = {"A": FrameSet(n=8, seed=1), "B": FrameSet(n=6, seed=2)}
    tr = T.Trainer(TC.get_config("smoke", eval_every=2), model, PairSet(), sets, out_dir=tmp_path, device="cpu",
                   quiet=True)
    per = tr.evaluate_categories()
    alone = {k: T.Trainer(TC.get_config("smoke"), model, PairSet(), s, out_dir=tmp_path / k, device="cpu",
                          quiet=True).evaluate() for k, s in sets.items()}
    assert set(per) == {"A", "B"}
    for k in per:
        assert math.isclose(per[k], alone[k], rel_tol=1e-6)
    assert math.isclose(tr.evaluate(), (per["A"] + per["B"]) / 2, rel_tol=1e-9)
    tr.fit(steps=2)
    recs = [r for r in T.read_metrics(tmp_path) if "val_nme" in r]
    assert [r["step"] for r in recs] == [0, 2] and all("val_nme_A" in r and "val_nme_B" in r for r in recs)


def test_training_clock_excludes_evaluation_and_continues_on_resume(model, tmp_path, monkeypatch):
    """train_wall_s grows with the steps, not with validation (an evaluation made slow by 0.3 s adds nothing),
    and a resumed run continues from the checkpoint's clock."""
    import time as _time

    slow = T.Trainer.evaluate_categories

    def slow_eval(self, *a, **k):
        _time.sleep(0.3)
        return slow(self, *a, **k)

    monkeypatch.setattr(T.Trainer, "evaluate_categories", slow_eval)
    tr = make(model, tmp_path, steps=4, eval_every=1, checkpoint_every=2)
    tr.fit(steps=2)
    recs = [r for r in T.read_metrics(tmp_path) if "val_nme" in r]
    wall = [r["train_wall_s"] for r in recs]
    assert wall == sorted(wall) and len(recs) == 3
    assert recs[-1]["time"] - wall[-1] >= 0.9 * 0.99  # the three 0.3 s evaluations are in the wall time only
    assert all(r["train_cpu_s"] >= 0 for r in recs)
    resumed = make(model, tmp_path, steps=4, eval_every=1, checkpoint_every=2)
    resumed.load_checkpoint()
    assert resumed._resumed_clock["train_wall_s"] > 0
    resumed.fit()
    after = [r for r in T.read_metrics(tmp_path) if "val_nme" in r and r["step"] > 2]
    assert after and all(r["train_wall_s"] >= wall[-1] for r in after)


def test_default_threads_leave_busy_cores_alone(monkeypatch, tmp_path):
    from tdd_lite import config

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TDD_THREADS", raising=False)
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for busy, want in ((0, 4), (1, 3), (3, 1), (9, 1)):
        monkeypatch.setattr(config, "busy_cores", lambda busy=busy: busy)
        assert config.default_threads() == want
    monkeypatch.setenv("TDD_THREADS", "2")
    assert config.default_threads() == 2
    monkeypatch.setenv("TDD_THREADS", "many")
    with pytest.raises(config.UsageError, match="TDD_THREADS='many'"):
        config.default_threads()


def test_busy_cores_counts_other_runnable_processes():
    """Two busy-loop processes beside this one: at least one of them is seen as busy (they may share a core
    with others, so not exactly 2), and 0 is never negative."""
    import subprocess
    import sys

    from tdd_lite import config

    spin = [subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<20: pass"])
            for _ in range(2)]
    try:
        import time as _time

        _time.sleep(0.5)
        assert config.busy_cores(samples=9) >= 1
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert config.busy_cores() >= 0


def test_reference_preset_is_the_documented_recipe():
    r = TC.get_config("reference")
    assert (r.image_size, r.batch_size, r.land_prev, r.train_split) == (64, 10, True, "all")
    assert r.enabled == ("id", "exp", "temporal") and r.lambdas == T.losses.Lambdas(0.1, 0.1, 0.1)
    assert not TC.get_config("paper").land_prev and not TC.get_config("fast").land_prev


def test_cli_val_data_must_exist_and_differ_from_the_training_set(tmp_path, capsys):
    from tdd_lite.data.synth import generate

    data = generate(tmp_path / "d", videos=4, frames=4, size=(96, 96), progress=False)
    rc = T.main(["--config", "smoke", "--data", str(data), "--val-data", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 1 and "--val-data" in err and "does not exist" in err and len(err.strip().splitlines()) == 1
    rc = T.main(["--config", "reference", "--data", str(data), "--val-data", str(data), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "is the training folder" in err and not (tmp_path / "r").exists()


def test_init_from_starts_g_from_another_runs_weights(model, tmp_path, capsys):
    """--init-from: G's weights of a checkpoint (verified by its loader), recorded as their sha256 in the config;
    a file that is not a checkpoint is refused in one line before anything is written."""
    src = make(model, tmp_path / "src", steps=2)
    src.fit()
    state, sha = T._init_weights(src.checkpoint_path)
    saved = C.load_checkpoint(src.checkpoint_path)["G"]
    assert sha.startswith("sha256:") and set(state) == set(saved)
    assert all(torch.equal(state[k].to(saved[k].dtype), saved[k]) for k in saved)
    fresh = make(model, tmp_path / "fresh", steps=2, init_from=sha)
    assert not torch.equal(fresh.g_module.fc.weight, saved["fc.weight"])
    T._load_g(fresh.g_module, state, "src")
    assert torch.equal(fresh.g_module.fc.weight, saved["fc.weight"])
    assert T._init_weights(src.checkpoint_path)[1] == sha  # the same weights, the same record
    with pytest.raises(T.UsageError, match="init_from"):
        TC.get_config("smoke", init_from="somewhere/ckpt.pt")
    from tdd_lite.data.synth import generate

    data = generate(tmp_path / "d", videos=6, frames=8, size=(96, 96), progress=False)
    rc = T.main(["--config", "smoke", "--data", str(data), "--out", str(tmp_path / "r"),
                 "--init-from", str(src.checkpoint_path)])
    assert rc == 0 and C.load_checkpoint(tmp_path / "r" / "checkpoint.pt")["config"]["init_from"] == sha
    junk = tmp_path / "junk.pt"
    junk.write_text("not weights")
    capsys.readouterr()
    rc = T.main(["--config", "smoke", "--data", str(data), "--out", str(tmp_path / "r2"), "--init-from", str(junk)])
    err = capsys.readouterr().err
    assert rc == 1 and "junk.pt" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "r2").exists()


def test_describe_run_applies_the_thread_policy(monkeypatch):
    from tdd_lite import config

    before = torch.get_num_threads()
    monkeypatch.setenv("TDD_THREADS", "1")
    try:
        assert config.describe_run().endswith("1 CPU thread(s)") and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_real_from_truth_feeds_d_id_and_d_ed_the_true_displacements(model, tmp_path):
    """real_disp='truth' (our extension): the real inputs of D_ID / D_ED are the projected identity / expression
    offsets of the batch's true parameters (computed here from eq. 1 at zero expression / identity), the fakes
    and D_TD's inputs are those of the paper's definition; a data set without true parameters is refused."""
    from tdd_lite.data.synth import generate
    from tdd_lite.displacement import pred_lmk

    batch = T._stack_batch([PairSet()[i] for i in range(4)])
    g = torch.Generator().manual_seed(3)
    batch["alpha_id"] = torch.randn(4, model.n_id, generator=g)
    batch["alpha_exp"] = torch.randn(4, model.n_exp, generator=g)
    batch["camera"] = torch.tensor([[0.004, 0, 0, 0.5, 0, -0.004, 0, 0.5]]).repeat(4, 1)
    xs = {}
    for real in ("paper", "truth"):
        tr = make(model, tmp_path / real, real_disp=real)
        torch.manual_seed(0)
        xs[real], _, _ = tr.forward_g(batch)
    zid, zexp = torch.zeros_like(batch["alpha_id"]), torch.zeros_like(batch["alpha_exp"])
    mean = pred_lmk(model, zid, zexp, batch["camera"])
    want_id = pred_lmk(model, batch["alpha_id"], zexp, batch["camera"]) - mean
    want_exp = pred_lmk(model, zid, batch["alpha_exp"], batch["camera"]) - mean
    assert torch.allclose(xs["truth"]["real_id_disp"], want_id, atol=1e-6)
    assert torch.allclose(xs["truth"]["real_exp_disp"], want_exp, atol=1e-6)
    assert not torch.allclose(xs["paper"]["real_id_disp"], want_id, atol=1e-3)
    for k in ("fake_id_disp", "fake_exp_disp", "real_temporal_disp", "fake_temporal_disp"):
        assert torch.allclose(xs["truth"][k], xs["paper"][k]), k
    with pytest.raises(T.UsageError, match="real_disp='bogus'"):
        TC.get_config("smoke", real_disp="bogus")
    data = generate(tmp_path / "d", videos=4, frames=8, size=(64, 64), seed=2, progress=False)
    for f in data.glob("*/params.npz"):
        f.unlink()
    with pytest.raises(T.DataError, match="real_disp='truth' needs the true parameters"):
        T.build_datasets(data, TC.get_config("smoke", real_disp="truth"))
    every, _ = T.build_datasets(data, TC.get_config("smoke", train_split="all", eval_every=0))
    assert sorted(s.name for s in every.sequences) == sorted(p.name for p in data.iterdir() if (p / "annot").is_dir())
    assert len(every.sequences) == 4
