"""Time to accuracy: ground-truth-crop NME per category (A / B / C) against training minutes, for the
``reference`` recipe and for today's ``fast`` preset, on one fixed Synth300VW test set nothing was tuned on.

Speed that matters for a trainer is not steps/s but how soon G is accurate. Each training run logs, at every
validation, the NME of each test category on ground-truth crops (``val_nme_A`` ...) beside its training time
(``train_cpu_s``: CPU seconds of the process and its DataLoader workers; ``train_wall_s``: wall seconds;
evaluation and checkpoint writes excluded), so one run gives its whole curve.

Usage::

    python benchmarks/time_to_accuracy.py              # print the committed curves
    python benchmarks/time_to_accuracy.py --measure WORK [--threads 1]
        # re-measure from scratch in WORK (outside the checkout; resumable: run it again to continue):
        # generate the sets, train `fast` and `reference` one after the other, then print and plot
    python benchmarks/time_to_accuracy.py --runs fast=RUN_DIR reference=RUN_DIR ...
        # print the curves of existing run folders (their metrics.jsonl)

``--save`` writes what was printed to ``results/time_to_accuracy/`` (curves.json, curve.png). The committed
curves were measured with the two runs side by side on a 2-core machine, one thread each (see that folder's
README.md for the commands, the machine and the wall times).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tdd_lite.files import atomic_write  # noqa: E402

RESULTS = REPO / "results" / "time_to_accuracy"
CATEGORIES = ("A", "B", "C")
# the goal of the converged-model issue: GT-crop NME (%) within 60 minutes on 2 cores
GOAL = {"A": 2.0, "B": 3.0, "C": 6.0}
TEST_SET = {"videos": 30, "frames": 300, "seed": 7171}  # 480x360; test videos A 8, B 5, C 4
RECIPES = {
    "fast": {"data": {"videos": 160, "frames": 25, "seed": 0}, "args": ["--config", "fast", "--workers", "0"]},
    "reference": {"data": {"videos": 999, "frames": 25, "seed": 1000}, "args": ["--config", "reference"]},
    # the same recipe without the discriminators: what the recipe alone buys, and what the Ds cost or add
    "reference, no discriminators": {"data": {"videos": 999, "frames": 25, "seed": 1000},
                                     "args": ["--config", "reference", "--no-id", "--no-ed", "--no-td"]},
}


def read_curve(run_dir: Path) -> list[dict]:
    """The validation records of a run: step, train_cpu_s, train_wall_s and the NME of each category (%)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"time_to_accuracy: error: {path}: no metrics.jsonl (not a tdd-lite train run folder)")
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"time_to_accuracy: error: {path}:{i}: not a JSON line ({e})") from None
        if all(f"val_nme_{c}" in rec for c in CATEGORIES) and "train_cpu_s" in rec:
            out.append({"step": rec["step"], "train_cpu_s": rec["train_cpu_s"], "train_wall_s": rec["train_wall_s"],
                        **{c: rec[f"val_nme_{c}"] for c in CATEGORIES}})
    if not out:
        raise SystemExit(f"time_to_accuracy: error: {path}: no per-category validation records (train with "
                         f"--val-data TEST_SET)")
    return out


def first_reaching(curve: list[dict], goal: dict[str, float]) -> dict | None:
    """The first record at which every category is at or below its goal (None if never)."""
    return next((r for r in curve if all(r[c] <= goal[c] for c in CATEGORIES)), None)


def format_curves(curves: dict[str, list[dict]]) -> str:
    lines = []
    for name, curve in curves.items():
        lines.append(f"== {name}: ground-truth-crop NME % per category vs training time")
        lines.append(f"{'step':>6} {'CPU min':>8} {'wall min':>9} {'A':>7} {'B':>7} {'C':>7}")
        for r in curve:
            lines.append(f"{r['step']:>6} {r['train_cpu_s'] / 60:>8.1f} {r['train_wall_s'] / 60:>9.1f} "
                         + " ".join(f"{r[c]:>7.2f}" for c in CATEGORIES))
        best = {c: min(r[c] for r in curve) for c in CATEGORIES}
        hit = first_reaching(curve, GOAL)
        goal_txt = "/".join(f"{GOAL[c]:g}" for c in CATEGORIES)
        lines.append(f"   best A {best['A']:.2f} / B {best['B']:.2f} / C {best['C']:.2f}; goal {goal_txt}: "
                     + (f"reached at step {hit['step']} ({hit['train_cpu_s'] / 60:.1f} CPU min)" if hit
                        else "not reached"))
    names = list(curves)
    first = curves[names[0]]
    final = first[-1]
    for name in names[1:]:  # how soon each other run reaches the first run's final accuracy
        hit = next((r for r in curves[name] if all(r[c] <= final[c] for c in CATEGORIES)), None)
        lines.append(f"{name} reaches {names[0]}'s final accuracy (A {final['A']:.2f} / B {final['B']:.2f} / "
                     f"C {final['C']:.2f}, after {final['train_cpu_s'] / 60:.1f} CPU min) "
                     + (f"after {hit['train_cpu_s'] / 60:.1f} CPU min: "
                        f"{final['train_cpu_s'] / hit['train_cpu_s']:.1f}x sooner" if hit else "never in its run"))
    return "\n".join(lines)


def plot(curves: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colours = {"A": "#0072B2", "B": "#E69F00", "C": "#CC79A7"}  # Okabe-Ito: colour-blind safe
    styles = {0: (":", "^"), 1: ("-", "o"), 2: ("--", "s")}
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for i, (name, curve) in enumerate(curves.items()):
        ls, mk = styles[i % 3]
        x = [r["train_cpu_s"] / 60 for r in curve]
        for c in CATEGORIES:
            ax.plot(x, [r[c] for r in curve], ls=ls, marker=mk, ms=3.5, color=colours[c], label=f"{name}, {c}")
    for c in CATEGORIES:
        ax.axhline(GOAL[c], color=colours[c], lw=0.8, alpha=0.6)
    ax.set_yscale("log")
    ticks = [1, 1.5, 2, 3, 4, 6, 8, 10, 15, 20, 30]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("training time (CPU minutes: process + data workers, evaluation excluded)")
    ax.set_ylabel("NME % on ground-truth crops (log)")
    ax.set_title("Time to accuracy on Synth300VW (seed 7171, 300-frame test videos)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)


def _tdd(*args: str) -> None:
    cmd = [sys.executable, "-m", "tdd_lite.cli", *args]
    print("$", "tdd-lite", *args, flush=True)
    subprocess.run(cmd, check=True)


def measure(work: Path, threads: int) -> dict[str, Path]:
    """Generate the sets and train both recipes in ``work`` (each step resumable); returns the run folders."""
    work.mkdir(parents=True, exist_ok=True)
    test = work / "test-s7171"
    env_fast = {**os.environ, "TDD_FAST": "0"}  # 480x360 test frames, as the committed curves
    if not test.exists():
        subprocess.run([sys.executable, "-m", "tdd_lite.cli", "synth", str(test), "--videos",
                        str(TEST_SET["videos"]), "--frames", str(TEST_SET["frames"]), "--seed", str(TEST_SET["seed"])],
                       check=True, env=env_fast)
    runs = {}
    for name, recipe in RECIPES.items():
        d = recipe["data"]
        data = work / f"train-{d['videos']}x{d['frames']}-s{d['seed']}"
        if not data.exists():
            subprocess.run([sys.executable, "-m", "tdd_lite.cli", "synth", str(data), "--videos", str(d["videos"]),
                            "--frames", str(d["frames"]), "--seed", str(d["seed"])], check=True,
                           env={**os.environ, "TDD_FAST": "1"})  # 256x256 training frames
        out = work / ("run-" + name.replace(", ", "-").replace(" ", "-"))
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        _tdd("train", *recipe["args"], "--data", str(data), "--val-data", str(test), "--out", str(out),
             "--threads", str(threads), *resume)
        runs[name] = out
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measure", metavar="WORK", default=None, help="re-measure from scratch in this folder")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training (with --measure)")
    p.add_argument("--runs", nargs="+", default=None, metavar="NAME=DIR", help="curves of existing run folders")
    p.add_argument("--save", action="store_true", help="write curves.json and curve.png to results/time_to_accuracy")
    args = p.parse_args(argv)
    if args.measure and args.runs:
        p.error("--measure and --runs cannot be combined")
    if args.measure:
        run_dirs = measure(Path(args.measure), args.threads)
    elif args.runs:
        run_dirs = {}
        for item in args.runs:
            name, sep, folder = item.partition("=")
            if not sep or not name or not folder:
                p.error(f"--runs {item!r}: expected NAME=DIR")
            run_dirs[name] = Path(folder)
    else:
        run_dirs = None
    if run_dirs is None:
        path = RESULTS / "curves.json"
        if not path.is_file():
            p.error(f"{path.relative_to(REPO)} is missing: pass --measure WORK or --runs NAME=DIR")
        curves = json.loads(path.read_text())["curves"]
    else:
        curves = {name: read_curve(d) for name, d in run_dirs.items()}
    print(format_curves(curves))
    if args.save:
        plot(curves, RESULTS / "curve.png")
        atomic_write(RESULTS / "curves.json",
                     json.dumps({"goal": GOAL, "test_set": TEST_SET, "curves": curves}, indent=1) + "\n")
        print(f"wrote {(RESULTS / 'curves.json').relative_to(REPO)} and curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
