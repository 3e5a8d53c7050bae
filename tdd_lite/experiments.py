"""The paper's comparative claims, re-run on Synth300VW with seeds: Table 3's ablation grid, a Table 2 analogue
with stabilisers, section 5's outlier experiment and identity / expression disentanglement.

One *run* is one discriminator configuration of Table 3 (:func:`tdd_lite.train_config.ablation_configs`) trained with
one seed under the ``ablation`` preset and evaluated under the tracking protocol (:func:`tdd_lite.evaluate.
evaluate_videos`: MTCNN first frame, re-detection, every metric, the ground-truth-crop row beside it). The two
configurations of the Table 2 analogue (no discriminator, all three) are also evaluated after every stabiliser
and put through the outlier experiment (:func:`outlier_experiment`). Each run writes ``runs/<slug>/result.json``
(atomic); a finished run is skipped, an interrupted one resumes from its checkpoint. :func:`summarize` turns
the per-run files into the tables (``summary.json`` / ``summary.md``) and :func:`write_figures` the plots
(``table3.png``, ``outliers.png``, ``disentanglement.png``).

Usage::

    tdd-lite ablation OUT --train-data ROOT --eval-data ROOT [--seeds 0 1 2] [--jobs 2] [--threads 1]
                      [--configs none id ... | --only-summary]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import io
import json
import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from tdd_lite import files as outputs
from tdd_lite.checkpoint import CHECKPOINT_NAME
from tdd_lite.commands import module_main
from tdd_lite.data.crops import landmark_bbox
from tdd_lite.data.vw300 import CATEGORIES, load_split, load_splits
from tdd_lite.errors import DataError, UsageError, bounded_int, positive_int
from tdd_lite.evaluate import GT_CROPS, evaluate_videos, method_name
from tdd_lite.files import atomic_write, interrupt_cleanup, remove_stale_temp_files, write_file
from tdd_lite.filters import make_filter
from tdd_lite.metrics import frame_nme
from tdd_lite.morphable import load_teaching_model
from tdd_lite.network import AlignmentNet
from tdd_lite.track import Tracker, net_predictor
from tdd_lite.train import Trainer, _init_weights, _load_g, build_datasets
from tdd_lite.train_config import CONFIG_NAMES, ablation_configs, get_config
from tdd_lite.viz import panel_grid

RESULT_FORMAT = "tdd_lite.ablation/1"
RESULT_NAME = "result.json"
PRESET = "ablation"
# Table 3's row labels (the paper's) -> the run folder's short name
SLUGS = {"Without all": "none", "With D_ID": "id", "With D_ED": "ed", "With D_TD": "td",
         "With D_ID, D_ED": "id-ed", "With D_ID, D_TD": "id-td", "With D_ED, D_TD": "ed-td",
         "With D_ID, D_ED, D_TD": "id-ed-td"}
BASELINE, FULL = "Without all", "With D_ID, D_ED, D_TD"
# Beyond the paper (issue: the claims at convergence): the full method with D_ID / D_ED's real inputs computed
# from Synth300VW's true parameters (TrainConfig.real_disp = "truth"), reported apart from Table 3's rows
TRUTH_LABEL = "All three, real inputs from the truth (ours)"
EXTENSIONS = {TRUTH_LABEL: "truth"}
ROWS = {**SLUGS, **EXTENSIONS}
LABELS = {v: k for k, v in ROWS.items()}
UNTRAINED = "Untrained G"
# the paper's Table 3 and Table 2 (NME %, 300VW-A/B/C): real 300VW, BFM, 256 px, 500 epochs
PAPER_TABLE3 = {"Without all": (3.731, 4.060, 4.677), "With D_ID": (3.315, 3.575, 3.912),
                "With D_ED": (3.133, 3.284, 3.665), "With D_TD": (3.078, 3.192, 3.504),
                "With D_ID, D_ED": (3.099, 3.227, 3.601), "With D_ID, D_TD": (2.912, 3.085, 3.311),
                "With D_ED, D_TD": (2.721, 2.801, 3.057), "With D_ID, D_ED, D_TD": (2.495, 2.549, 2.734)}
PAPER_TABLE2 = {"3DDFA": (2.913, 3.035, 3.387), "RingNet": (2.845, 2.983, 3.343), "DSFNet": (2.799, 2.878, 3.214),
                "SADRNet": (2.745, 2.770, 2.858), "Ours": (2.495, 2.549, 2.734)}
# the Table 2 analogue: (configuration, stabiliser); the stabilisers of tdd_lite.filters
TABLE2_ROWS = [(BASELINE, "none"), (BASELINE, "centred"), (BASELINE, "one-euro"), (BASELINE, "kalman"),
               (FULL, "none"), (FULL, "one-euro")]
TABLE2_FILTERS = {cfg: [f for c, f in TABLE2_ROWS if c == cfg] for cfg in (BASELINE, FULL)}
# evaluation: the first EVAL_FRAMES frames of every test video (sized with the training so the grid fits 90 min)
EVAL_FRAMES = 100
CORRUPTIONS = ("occluder", "blur", "flash", "shift")
OUTLIER_POSITIONS = (40, 100)  # the corrupted frames of each outlier video
OFFSETS = tuple(range(-3, 4))
# seeds: numpy's legacy seeding range (torch takes up to 2**64 - 1); the run folder is named after the seed
MAX_SEED = 2**32 - 1
GRID_NAME = "grid.json"


# ===================================================================================== the grid
def run_slug(label: str, seed: int) -> str:
    return f"{ROWS[label] if label in ROWS else 'untrained'}-s{seed}"


def plan(seeds: Sequence[int], configs: Sequence[str] | None = None, untrained: bool = True) -> list[dict]:
    """The runs of the grid, seed-major (a partial grid is balanced over configurations): ``{"label", "seed"}``.

    ``configs``: short names (``none id ed td id-ed id-td ed-td id-ed-td``, and ``truth`` for our extension
    :data:`TRUTH_LABEL`) or labels; default Table 3's 8. With
    ``untrained`` the untrained G (seed ``seeds[0]``) is evaluated first: the floor the grid must clear.
    """
    chosen = list(SLUGS) if not configs else [LABELS.get(c, c) for c in configs]
    bad = [c for c in chosen if c not in ROWS]
    if bad:
        raise UsageError(f"--configs {' '.join(bad)}: expected short names from {' '.join(LABELS)}")
    twice = sorted({ROWS[c] for c in chosen if chosen.count(c) > 1})
    if twice:  # the same run folder would be trained twice at once
        raise UsageError(f"--configs: {' '.join(twice)} given twice; expected distinct configurations")
    check_seeds(seeds)
    runs = [{"label": UNTRAINED, "seed": int(seeds[0])}] if untrained else []
    return runs + [{"label": label, "seed": int(s)} for s in seeds for label in chosen]


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """Seeds as given to ``--seeds``: whole numbers 0..MAX_SEED, each once (a seed twice would train the same run
    folder twice at once); a :class:`UsageError` naming the option otherwise."""
    seeds = list(seeds)
    if not seeds:
        raise UsageError("--seeds: no seed given; expected one or more whole numbers, e.g. --seeds 0 1 2")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 0 <= s <= MAX_SEED:
            raise UsageError(f"--seeds {s!r}: expected whole numbers from 0 to {MAX_SEED}")
    twice = sorted({int(s) for s in seeds if seeds.count(s) > 1})
    if twice:
        raise UsageError(f"--seeds {' '.join(map(str, seeds))}: seed {' '.join(map(str, twice))} given twice; "
                         "expected distinct seeds (each seed is one run folder)")
    return [int(s) for s in seeds]


def git_revision(cwd: str | Path | None = None) -> str | None:
    """``git describe --always --dirty`` of the checkout this package runs from (None outside git)."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parents[1]
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=cwd, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    """CPU model, core count, Python and torch versions (written beside the results)."""
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available()
            else None}


ABLATION_COMMAND = "ablation"
# what the command writes at the top of a grid folder (recorded in its output marker; runs/ is its work area,
# resumed from checkpoints, and not recorded file by file)
GRID_FILES = (GRID_NAME, "summary.json", "summary.md", "table3.png", "outliers.png", "disentanglement.png")


def claim_grid_folder(out: str | Path):
    """``out`` as this command's output folder (:func:`tdd_lite.files.claim_folder`; a grid folder is resumed,
    so a marked one is reused). A folder from before output markers (like the committed ``results/ablation``)
    that holds a valid ``grid.json`` written by ``tdd-lite ablation`` is adopted: marked, with its grid.json,
    summary and figures as the command's files, and said so. Anything else that is not empty is refused."""
    out = Path(out)
    if out.is_dir() and not out.is_symlink() and not (out / outputs.MARKER).exists() and any(out.iterdir()) \
            and (out / GRID_NAME).is_file():
        grid = read_grid(out / GRID_NAME)
        if str(grid.get("command") or "").startswith("tdd-lite ablation"):
            info = outputs._new_marker(ABLATION_COMMAND)
            info["files"] = {name: outputs.sha256_file(out / name) for name in GRID_FILES
                             if (out / name).is_file() and not (out / name).is_symlink()}
            info["adopted"] = "made by tdd-lite ablation before output markers (its grid.json)"
            outputs._write_marker(out, info)
            print(f"ablation: {out} was made by tdd-lite ablation before output markers: adopted (marked); only "
                  f"its {', '.join(sorted(info['files']))} and runs/ are the command's, nothing else is touched",
                  file=sys.stderr)
    claimed = outputs.claim_folder(out, ABLATION_COMMAND, overwrite=True)
    for name in GRID_FILES:  # a file of the user's where the grid writes: refused now, not after hours of training
        outputs.check_writable(claimed, name)
    return claimed


def _write_output(out: Path, name: str, data: str | bytes) -> None:
    """A top-level grid file, atomically, through the output rule (never over a file the command did not write)."""
    write_file(out, name, data)


def _atomic_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def _slim(evaluation: dict) -> dict:
    """An :func:`evaluate_videos` result without the per-frame errors: per category all metrics, per video NME."""
    methods = {}
    for name, m in evaluation["methods"].items():
        videos = {v: {"category": row["category"], "nme": row["nme"]} for v, row in m["videos"].items()}
        methods[name] = {"categories": m["categories"], "videos": videos}
    return {"meta": evaluation["meta"], "methods": methods}


def run_config(label: str, seed: int, steps: int | None = None, preset: str = PRESET, init_from: str | None = None):
    """The :class:`~tdd_lite.train_config.TrainConfig` of one run: ``preset`` with the row's discriminators, ``seed``,
    and optionally ``steps`` and ``init_from`` (``sha256:`` of the G weights a fine-tune starts from)."""
    overrides: dict = {"seed": seed}
    if steps is not None:
        overrides["steps"] = steps
    if init_from is not None:
        overrides["init_from"] = init_from
    if label == UNTRAINED:
        return get_config(preset, **overrides, use_id=False, use_ed=False, use_td=False)
    if label == TRUTH_LABEL:
        return ablation_configs(preset, **overrides, real_disp="truth")[FULL]
    return ablation_configs(preset, **overrides)[label]


def run_one(spec: dict) -> dict:
    """Train (or resume) and evaluate one run; writes and returns its ``result.json`` (see module docstring).

    ``spec``: ``label``, ``seed``, ``out``, ``train_data``, ``eval_data``, ``groups`` (category -> ids), and
    optionally ``steps``, ``threads``, ``eval_frames``, ``outlier_videos``, ``outlier_positions``.
    """
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))

    label, seed = spec["label"], int(spec["seed"])
    folder = Path(spec["out"]) / "runs" / run_slug(label, seed)
    init_state, init_sha = None, None
    if spec.get("init_from"):
        init_state, init_sha = _init_weights(Path(spec["init_from"]))
    cfg = run_config(label, seed, spec.get("steps"), spec.get("preset", PRESET), init_sha)
    model = load_teaching_model()
    t0 = time.time()
    train_info: dict = {"steps": 0, "wall_seconds": 0.0}
    if label == UNTRAINED:
        torch.manual_seed(seed)

        net = AlignmentNet.for_model(model)  # the trainer's initial weights for this seed
    else:
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(folder, CHECKPOINT_NAME)
        train_set, val_set = build_datasets(spec["train_data"], cfg)
        trainer = Trainer(cfg, model, train_set, val_set, out_dir=folder, device="cpu", quiet=True)
        if (folder / CHECKPOINT_NAME).exists():
            trainer.load_checkpoint()
        elif init_state is not None:
            _load_g(trainer.g_module, init_state, spec["init_from"])
        summary = trainer.fit()
        train_info = {"steps": summary["step"], "wall_seconds": round(time.time() - t0, 1),
                      "first_val_nme": summary["first_val_nme"], "last_val_nme": summary["last_val_nme"],
                      "train_cpu_s": summary.get("train_cpu_s"), "train_wall_s": summary.get("train_wall_s")}
        net = trainer.g_module
    t1 = time.time()
    filters = ["none", *[f for f in TABLE2_FILTERS.get(label, []) if f != "none"]]
    evaluation = evaluate_videos(net, model, spec["eval_data"], spec["groups"], cfg.image_size, detector="mtcnn",
                                 redetect="auto", filters=filters, max_frames=spec.get("eval_frames", EVAL_FRAMES),
                                 progress=False)
    result = {"format": RESULT_FORMAT, "label": label, "slug": run_slug(label, seed), "seed": seed,
              "config": cfg.to_dict(), "train": train_info, "evaluation": _slim(evaluation),
              "eval_seconds": round(time.time() - t1, 1)}
    if label in TABLE2_FILTERS and spec.get("outlier_videos"):
        t2 = time.time()
        result["outliers"] = outlier_experiment(net, model, spec["eval_data"], spec["outlier_videos"],
                                                cfg.image_size, filters=TABLE2_FILTERS[label],
                                                positions=spec.get("outlier_positions", OUTLIER_POSITIONS))
        result["outlier_seconds"] = round(time.time() - t2, 1)
    result["wall_seconds"] = round(time.time() - t0, 1)
    _exit_if_orphaned()  # a worker whose grid was killed writes nothing
    _atomic_json(folder / RESULT_NAME, result)
    return result


def _number(v) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def result_problem(r, folder: str | None = None) -> str | None:
    """What is wrong with a parsed ``result.json`` (None: a finished run of this format, in its own folder
    ``folder`` when given): the fields :func:`summarize` and the progress line read, with their types."""
    if not isinstance(r, dict):
        return f"a JSON {type(r).__name__}; expected an object"
    if r.get("format") != RESULT_FORMAT:
        return f"field 'format': {r.get('format')!r}; expected {RESULT_FORMAT!r}"
    label, seed = r.get("label"), r.get("seed")
    if not isinstance(label, str) or (label not in ROWS and label != UNTRAINED):
        return f"field 'label': {label!r}; expected a configuration of the grid"
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        return f"field 'seed': {seed!r}; expected a whole number from 0 to {MAX_SEED}"
    if folder is not None and folder != run_slug(label, seed):
        return (f"it is the result of run {run_slug(label, seed)!r} (label {label!r}, seed {seed}); expected the run "
                f"of its folder {folder!r}")
    ev = r.get("evaluation")
    methods = ev.get("methods") if isinstance(ev, dict) else None
    if not isinstance(methods, dict) or "tracking" not in methods:
        return "no 'evaluation.methods.tracking'; expected the evaluation of a finished run"
    for name, m in methods.items():
        cats = m.get("categories") if isinstance(m, dict) else None
        if not isinstance(cats, dict):
            return f"field 'evaluation.methods.{name}.categories': missing; expected metrics per category"
        for c, cell in cats.items():
            if not isinstance(cell, dict) or not all(_number(v) for v in cell.values()):
                return f"field 'evaluation.methods.{name}.categories.{c}': expected metric names with numbers"
    if "outliers" in r:
        inc = r["outliers"].get("increase") if isinstance(r["outliers"], dict) else None
        if not isinstance(inc, dict) or not all(
                isinstance(kinds, dict) and all(isinstance(per, dict) and all(_number(per.get(str(o), "x"))
                                                                              for o in OFFSETS)
                                                for per in kinds.values()) for kinds in inc.values()):
            return (f"field 'outliers.increase': expected {{filter: {{corruption: {{offset: number}}}}}} for "
                    f"offsets {OFFSETS[0]}..{OFFSETS[-1]}")
    return None


def read_result(path: Path) -> tuple[dict | None, str | None]:
    """``(result, None)`` for a finished run's ``result.json``, ``(None, None)`` when there is none (not run or
    interrupted: the run is done or resumed), ``(None, problem)`` when the file is unreadable or not a finished
    run of this format (it is never redone over: the user decides)."""
    path = Path(path)
    if not path.exists():
        return None, None
    try:
        raw = path.read_bytes()
    except OSError as e:
        return None, f"cannot read it ({e.strerror or e})"
    try:
        r = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text (a binary file?); expected the JSON result of a run"
    except ValueError as e:
        return None, f"not valid JSON ({e}: truncated or damaged?); expected the JSON result of a run"
    problem = result_problem(r, path.parent.name)
    return (None, problem) if problem else (r, None)


def load_result(path: Path) -> dict | None:
    """A run's ``result.json`` if it is a finished run of this format (see :func:`read_result`), else None."""
    return read_result(path)[0]


def read_grid(path: Path) -> dict:
    """``grid.json`` (the record of the sessions; {} when there is none), checked: a
    :class:`~tdd_lite.errors.DataError` naming it when it is damaged, binary or not the object this command
    writes (the record of earlier sessions is never silently replaced)."""
    path = Path(path)
    if not path.exists():
        return {}
    expected = "expected the JSON object tdd-lite ablation writes (move the file away to start a new record)"
    if not path.is_file():
        raise DataError(f"{path}: not a regular file; {expected}")
    raw = path.read_bytes()
    try:
        g = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (a binary file?); {expected}") from None
    except ValueError as e:
        raise DataError(f"{path}: not valid JSON ({e}); {expected}") from None
    if not isinstance(g, dict):
        raise DataError(f"{path}: a JSON {type(g).__name__}; {expected}")
    sessions = g.get("sessions", [])
    if not isinstance(sessions, list) or not all(isinstance(x, dict) and _number(x.get("wall_seconds", 0))
                                                 and x.get("wall_seconds") is not None for x in sessions):
        raise DataError(f"{path}: field 'sessions': expected a list of objects with 'wall_seconds' numbers; "
                        f"{expected}")
    for key, typ in (("command", str), ("revision", str), ("machine", dict)):
        if g.get(key) is not None and not isinstance(g[key], typ):
            raise DataError(f"{path}: field '{key}': a {type(g[key]).__name__}; {expected}")
    if not _number(g.get("wall_seconds")):
        raise DataError(f"{path}: field 'wall_seconds': {g['wall_seconds']!r}; {expected}")
    return g


def run_grid(out: str | Path, train_data: str | Path, eval_data: str | Path, seeds: Sequence[int] = (0, 1, 2),
             configs: Sequence[str] | None = None, jobs: int = 2, threads: int = 1, steps: int | None = None,
             eval_frames: int = EVAL_FRAMES, outlier_per_category: int = 2, command: str | None = None,
             progress: bool = True, preset: str = PRESET, init_from: str | Path | None = None) -> dict:
    """Every run of :func:`plan` not finished yet, ``jobs`` processes side by side with ``threads`` threads each;
    then ``grid.json`` (command, revision, machine, wall time) and the summary. Returns :func:`summarize`.

    ``preset``: the training recipe of every run (``ablation``: from scratch, 400 steps; ``finetune`` with
    ``init_from``: every configuration continues the same pre-trained G, and no untrained row is evaluated)."""
    out = Path(out)
    seeds = check_seeds(seeds)
    if preset not in CONFIG_NAMES:
        raise UsageError(f"--preset {preset}: expected one of {', '.join(CONFIG_NAMES)}")
    plan(seeds, configs)  # --configs checked

    claimed = claim_grid_folder(out)  # before anything is written; a folder this call made goes again on an error
    with interrupt_cleanup(claimed):
        return _checked_grid(out, claimed, train_data, eval_data, seeds, configs, jobs, threads, steps, eval_frames,
                             outlier_per_category, command, progress, preset, init_from)


def _checked_grid(out, claimed, train_data, eval_data, seeds, configs, jobs, threads, steps, eval_frames,
                  outlier_per_category, command, progress, preset, init_from) -> dict:
    for opt, root in (("--train-data", train_data), ("--eval-data", eval_data)):
        if not (Path(root) / "splits.json").is_file():
            raise DataError(f"{opt} {root}: no splits.json (expected a 300VW-layout folder, e.g. from tdd-lite synth)")
    splits = load_splits(eval_data)
    groups = {c: list(splits[c]) for c in CATEGORIES if splits.get(c)}
    if not groups:
        raise DataError(f"--eval-data {eval_data}: no test videos in categories A/B/C")
    outlier_videos = [v for c in groups for v in groups[c][:outlier_per_category]]
    todo, done = [], []
    init_sha = None
    if init_from is not None:
        init_sha = _init_weights(Path(init_from))[1]  # checked before any worker starts
    for r in plan(seeds, configs, untrained=init_from is None):
        path = out / "runs" / run_slug(r["label"], r["seed"]) / RESULT_NAME
        res, problem = read_result(path)
        if problem:
            raise DataError(f"{path}: {problem}; move it away to redo this run (or rebuild the summary without it: "
                            "--only-summary)")
        (done if res is not None else todo).append(r)
    manifest_path = out / GRID_NAME
    manifest = read_grid(manifest_path)  # checked before hours of training, not after
    data_info = {"train_data": _data_info(train_data, "--train-data"),
                 "eval_data": _data_info(eval_data, "--eval-data")}
    preset_cfg = run_config(BASELINE, 0, steps, preset, init_sha)  # an unknown --preset: refused here
    if any(r["label"] != UNTRAINED for r in todo):
        _check_training_set(train_data, preset_cfg)
    if outlier_videos and any(r["label"] in TABLE2_FILTERS for r in todo):
        _check_outlier_videos(eval_data, outlier_videos)
    return _run_grid(out, claimed, todo, done, manifest, data_info, preset_cfg, train_data, eval_data, seeds,
                     groups, outlier_videos, jobs, threads, steps, eval_frames, command, progress, preset,
                     init_from, init_sha)


def _run_grid(out, claimed, todo, done, manifest, data_info, preset_cfg, train_data, eval_data, seeds, groups,
              outlier_videos, jobs, threads, steps, eval_frames, command, progress, preset, init_from, init_sha):
    base = {"out": str(out), "train_data": str(train_data), "eval_data": str(eval_data), "groups": groups,
            "steps": steps, "threads": threads, "eval_frames": eval_frames, "outlier_videos": outlier_videos,
            "preset": preset, "init_from": str(init_from) if init_from is not None else None}
    sessions = manifest.get("sessions", [])
    t0 = time.time()
    revision = git_revision()  # the code that trains and evaluates these runs
    if todo:
        print(f"ablation: {len(todo)} run(s) to do, {len(done)} already finished; {jobs} at a time x {threads} "
              f"thread(s)", flush=True)
        # every worker dies with this process (kill -9 included) and never writes a result after it
        pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                      initializer=_worker_init, initargs=(os.getpid(),))
        try:
            futures = {pool.submit(run_one, {**base, **r}): r for r in todo}
            with tqdm(total=len(todo), desc="ablation", unit="run", disable=not progress) as bar:
                for fut in cf.as_completed(futures):
                    res = fut.result()
                    cats = res["evaluation"]["methods"]["tracking"]["categories"]
                    tqdm.write(f"  {res['label']} seed {res['seed']}: NME " + " / ".join(
                        f"{100 * cats[c]['nme']:.2f}" for c in cats) + f" % ({res['wall_seconds']:.0f} s)")
                    bar.update(1)
        except BaseException:
            # an error, Ctrl-C or SIGTERM: no run starts after it and the running ones stop now (their
            # checkpoints are written atomically: the next call resumes them)
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    wall = time.time() - t0
    if todo:
        sessions.append({"runs": len(todo), "revision": revision, "wall_seconds": round(wall, 1), "jobs": jobs,
                         "threads": threads,
                         "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    manifest = {"command": command or manifest.get("command"), "revision": revision,
                "machine": machine(), "preset": preset_cfg.to_dict(),
                "init_from": {"file": Path(init_from).name, "weights": init_sha} if init_from is not None else None,
                "seeds": list(seeds), "eval_frames": eval_frames, "groups": groups,
                "outlier_videos": outlier_videos, **data_info, "sessions": sessions,
                "wall_seconds": round(sum(s["wall_seconds"] for s in sessions), 1)}
    _write_output(out, GRID_NAME, json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    summary = summarize(out)
    write_summary(out, summary)
    write_figures(out, summary)
    return summary


def _data_info(root: str | Path, opt: str = "data") -> dict:
    """What identifies a Synth300VW set (its generator's seed, size), not the machine's path."""
    meta = Path(root) / "synth.json"
    info: dict = {"name": Path(root).name}
    if meta.is_file():
        try:
            m = json.loads(meta.read_bytes().decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError included
            raise DataError(f"{opt} {meta}: not valid JSON ({e}); expected the synth.json tdd-lite synth writes") \
                from None
        if not isinstance(m, dict):
            raise DataError(f"{opt} {meta}: a JSON {type(m).__name__}; expected the synth.json tdd-lite synth writes")
        info.update({k: m.get(k) for k in ("seed", "videos", "frames", "format_version")})
    return info


def _check_training_set(root: str | Path, cfg) -> None:
    """Before any worker starts: the training pairs of ``root`` fill at least one batch of ``cfg``."""
    train_set, _ = build_datasets(root, dataclasses.replace(cfg, frame_cache=False, eval_every=0))
    if len(train_set) < cfg.batch_size:
        raise DataError(f"--train-data {root}: {len(train_set)} training pairs, fewer than one batch of "
                        f"{cfg.batch_size} (preset {cfg.name!r}); expected a larger training set (more or longer "
                        "training videos, e.g. tdd-lite synth --videos 160 --frames 25)")


def _check_outlier_videos(root: str | Path, videos: Sequence[str], half: int = 12) -> None:
    """Before any worker starts: some outlier video is long enough for a window around OUTLIER_POSITIONS."""
    need = max(OUTLIER_POSITIONS) + half + 1
    lengths = [len(seq.landmarks) for seq in load_split(root, list(videos))]
    if not any(n >= min(OUTLIER_POSITIONS) + half + 1 for n in lengths):
        raise DataError(f"--eval-data {root}: its test videos have {max(lengths, default=0)} frames at most; the "
                        f"outlier experiment needs windows of {2 * half + 1} annotated frames around frames "
                        f"{list(OUTLIER_POSITIONS)} (videos of {need} frames; e.g. tdd-lite synth --frames {need})")


# ===================================================================================== worker processes
_PARENT_PID: int | None = None


def _worker_init(parent_pid: int) -> None:
    """First thing in every worker of :func:`run_grid`: die with the parent. On Linux the kernel sends SIGKILL
    when the parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere a watchdog thread checks every second that
    the parent is still the one that started us, and :func:`run_one` checks again before writing its result."""
    global _PARENT_PID
    _PARENT_PID = parent_pid
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    _exit_if_orphaned()  # the parent died before prctl took effect

    def watch() -> None:
        while True:
            time.sleep(1.0)
            _exit_if_orphaned()

    threading.Thread(target=watch, name="ablation-parent-watch", daemon=True).start()


def _exit_if_orphaned() -> None:
    if _PARENT_PID is not None and os.getppid() != _PARENT_PID:
        os._exit(1)


# ===================================================================================== the outlier experiment
def corrupt_frame(frame: np.ndarray, kind: str, gt: np.ndarray, seed: int = 0) -> np.ndarray:
    """One frame made an outlier (section 5): ``occluder`` (a grey block over the lower-left 45% of the face
    box), ``blur`` (Gaussian, sigma = 8% of the box side), ``flash`` (brightness x1.8 + 90). ``shift`` is a
    crop error, not an image change (:func:`outlier_experiment` moves the crop box instead)."""
    x0, y0, x1, y1 = landmark_bbox(gt)
    side = max(x1 - x0, y1 - y0)
    img = frame.copy()
    if kind == "occluder":
        h, w = img.shape[:2]
        a, b = int(max(0, x0 - 0.05 * side)), int(min(w, x0 + 0.6 * side))
        c, d = int(max(0, y0 + 0.4 * side)), int(min(h, y1 + 0.1 * side))
        img[c:d, a:b] = np.array([128, 120, 110], np.uint8)
    elif kind == "blur":
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=max(1.0, 0.08 * side))
    elif kind == "flash":
        img = np.clip(img.astype(np.float32) * 1.8 + 90, 0, 255).astype(np.uint8)
    elif kind != "shift":
        raise UsageError(f"corruption {kind!r}: expected one of {', '.join(CORRUPTIONS)}")
    return img


def track_window(predict, frames: list[np.ndarray], gt: np.ndarray, size: int, corrupt_at: int | None = None,
                 kind: str | None = None, shift: float = 0.25) -> np.ndarray:
    """Landmarks of a window of frames under the paper's tracking protocol (first crop from the ground-truth
    box, then the previous estimate, no re-detection), with frame ``corrupt_at`` corrupted by ``kind``."""
    tracker = Tracker(predict, size, detector="gt", redetect="never")
    out = []
    for k, frame in enumerate(frames):
        if k == corrupt_at and kind is not None:
            if kind == "shift" and tracker.next_box is not None:
                b = tracker.next_box.copy()
                b[[0, 2]] += shift * (b[2] - b[0])  # the crop of this frame lands a quarter side to the right
                tracker.next_box = b
            else:
                frame = corrupt_frame(frame, kind, gt[k])
        out.append(tracker.step(frame, gt[k]).landmarks)
    return np.stack(out)


def outlier_experiment(net, model3dmm, root: str | Path, videos: Iterable[str], size: int,
                       filters: Sequence[str] = ("none",), positions: Sequence[int] = OUTLIER_POSITIONS,
                       half: int = 12, corruptions: Sequence[str] = CORRUPTIONS, device: str = "cpu") -> dict:
    """Section 5's claim, measured: corrupt one frame t of a video (each of ``corruptions``) and compare each
    stabilised stream with the same window uncorrupted. Returns ``{filter: {corruption: {offset: mean NME
    increase (fraction of the box size)}}}`` for offsets -3..3 around t, plus ``"samples"``.

    Windows are frames ``t - half .. t + half`` tracked from the ground-truth box of their first frame
    (identical start for both streams), so every difference comes from the one corrupted frame, through the
    network (offset 0), the tracker's next crop (offset +1...) and the stabiliser (both sides for the centred
    average).
    """
    predict = net_predictor(net, model3dmm, device)
    incr: dict = {f: {c: {o: [] for o in OFFSETS} for c in corruptions} for f in filters}
    samples = 0
    for seq in load_split(root, list(videos)):
        gt_all = seq.landmarks
        frames_all = None
        for t in positions:
            lo, hi = t - half, t + half + 1
            if lo < 0 or hi > len(gt_all) or not np.isfinite(gt_all[lo:hi]).all():
                continue
            if frames_all is None:
                frames_all = [f for k, f in enumerate(seq.frames()) if k < max(positions) + half + 1]
            frames, gt = frames_all[lo:hi], gt_all[lo:hi]
            clean = track_window(predict, frames, gt, size)
            samples += 1
            for kind in corruptions:
                bad = track_window(predict, frames, gt, size, corrupt_at=half, kind=kind)
                for f in filters:
                    flt = make_filter(f)
                    e_clean = frame_nme(flt.apply(clean), gt)
                    e_bad = frame_nme(flt.apply(bad), gt)
                    for o in OFFSETS:
                        incr[f][kind][o].append(float(e_bad[half + o] - e_clean[half + o]))
    if samples == 0:
        raise DataError(f"{root}: no window of {2 * half + 1} annotated frames around frames {list(positions)}")
    return {"samples": samples, "positions": list(positions), "half": half,
            "increase": {f: {c: {str(o): float(np.mean(v)) for o, v in d.items()} for c, d in fc.items()}
                         for f, fc in incr.items()}}


# ===================================================================================== summary tables
def _t95(n: int) -> float:
    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else math.inf


def load_results(out: str | Path, skipped: list[str] | None = None) -> list[dict]:
    """Every finished run under ``OUT/runs`` (sorted by configuration then seed). A ``result.json`` that is not
    one (damaged, truncated, another format, in another run's folder) is left out; with ``skipped`` (a list)
    one line per such file, naming it and what is wrong, is appended to it."""
    order = {label: i for i, label in enumerate([UNTRAINED, *ROWS])}
    rs = []
    for p in sorted(Path(out).glob(f"runs/*/{RESULT_NAME}")):
        r, problem = read_result(p)
        if r is not None:
            rs.append(r)
        elif problem and skipped is not None:
            skipped.append(f"{p}: {problem}")
    return sorted(rs, key=lambda r: (order.get(r["label"], 99), r["seed"]))


METRICS = ("nme", "dnme", "jitter_ratio", "lag", "lost_tracks", "static_spread", "identity_spread",
           "expression_error", "landmark3d_error")


def _value(r: dict, method: str, cat: str, key: str) -> float | None:
    v = r["evaluation"]["methods"].get(method, {}).get("categories", {}).get(cat, {}).get(key)
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _stats(values: list[float]) -> dict:
    a = np.asarray(values, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a)),
            "values": [float(v) for v in a]}


# which flag of the configuration each discriminator is, by its label in the table
DISCRIMINATORS = {"D_ID": "use_id", "D_ED": "use_ed", "D_TD": "use_td"}
EFFECT_METRICS = ("nme", "dnme", "jitter_ratio", "identity_spread", "expression_error")


def _has(label: str, d: str) -> bool:
    return d in label.split("With ", 1)[-1].split(", ") if label.startswith("With ") else False


def main_effects(by_label: dict[str, dict[int, dict]], method: str = "tracking") -> dict:
    """Table 3 read as the 2^3 factorial design it is: the main effect of each discriminator on a metric is, per
    seed, the mean over the 4 configurations with it minus the mean over the 4 without; then mean and 95% t
    interval over seeds. Uses all 8 rows for every effect (twice the data of one paired comparison). Only seeds
    with all 8 configurations count."""
    if not all(lb in by_label for lb in SLUGS):
        return {}
    seeds = sorted(set.intersection(*[set(by_label[lb]) for lb in SLUGS]))
    out: dict = {}
    for d in DISCRIMINATORS:
        out[d] = {}
        for key in EFFECT_METRICS:
            out[d][key] = {}
            for cat in CATEGORIES:
                used, per_seed = [], []
                for s in seeds:
                    vals = {lb: _value(by_label[lb][s], method, cat, key) for lb in SLUGS}
                    if any(v is None for v in vals.values()):
                        continue
                    used.append(s)
                    per_seed.append(float(np.mean([v for lb, v in vals.items() if _has(lb, d)])
                                          - np.mean([v for lb, v in vals.items() if not _has(lb, d)])))
                if per_seed:
                    e = np.asarray(per_seed)
                    half = _t95(len(e)) * float(e.std(ddof=1)) / math.sqrt(len(e)) if len(e) > 1 else math.inf
                    out[d][key][cat] = {"seeds": used, "per_seed": per_seed, "mean": float(e.mean()),
                                        "ci95": [float(e.mean() - half), float(e.mean() + half)]}
    return out


def summarize(out: str | Path) -> dict:
    """The tables from the per-run files alone (so a test can recompute the committed ones).

    ``table3``: per configuration, method (``tracking`` / ``GT crops``), category and metric: mean, std over
    seeds; ``paired``: per configuration and category the NME difference from ``Without all`` seed by seed,
    its mean, a 95% t interval and how many seeds improved; ``table2``: the rows of :data:`TABLE2_ROWS`;
    ``outliers``: the mean error increase per row, corruption and offset over seeds.
    """
    skipped: list[str] = []
    results = load_results(out, skipped)
    if not results:
        why = f" ({len(skipped)} unusable: {skipped[0]}{' ...' if len(skipped) > 1 else ''})" if skipped else ""
        raise DataError(f"{out}: no finished run (runs/*/{RESULT_NAME}){why}")
    by_label: dict[str, dict[int, dict]] = {}
    for r in results:
        by_label.setdefault(r["label"], {})[r["seed"]] = r
    table3: dict = {}
    for label, runs in by_label.items():
        table3[label] = {}
        for method in ("tracking", GT_CROPS):
            table3[label][method] = {}
            for cat in CATEGORIES:
                row = {}
                for key in METRICS:
                    vals = [v for r in runs.values() if (v := _value(r, method, cat, key)) is not None]
                    if vals:
                        row[key] = _stats(vals)
                if row:
                    table3[label][method][cat] = row
    paired: dict = {}
    base = by_label.get(BASELINE, {})
    for label, runs in by_label.items():
        if label in (BASELINE, UNTRAINED):
            continue
        paired[label] = {}
        for method in ("tracking", GT_CROPS):
            paired[label][method] = {}
            for cat in CATEGORIES:
                seeds = sorted(s for s in runs if s in base and _value(runs[s], method, cat, "nme") is not None
                               and _value(base[s], method, cat, "nme") is not None)
                if not seeds:
                    continue
                d = np.array([_value(runs[s], method, cat, "nme") - _value(base[s], method, cat, "nme")
                              for s in seeds])
                half = _t95(len(d)) * float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else math.inf
                paired[label][method][cat] = {"seeds": seeds, "diff": [float(x) for x in d], "mean": float(d.mean()),
                                              "ci95": [float(d.mean() - half), float(d.mean() + half)],
                                              "improved": int((d < 0).sum())}
    effects = main_effects(by_label)
    table2 = []
    for label, flt in TABLE2_ROWS:
        runs = by_label.get(label, {})
        method = method_name(flt)
        row: dict = {"config": label, "filter": flt, "categories": {}}
        for cat in CATEGORIES:
            cells = {}
            for key in ("nme", "dnme", "jitter_ratio", "lag", "lost_tracks"):
                vals = [v for r in runs.values() if (v := _value(r, method, cat, key)) is not None]
                if vals:
                    cells[key] = _stats(vals)
            if cells:
                row["categories"][cat] = cells
        table2.append(row)
    outliers: dict = {}
    for label, flt in TABLE2_ROWS:
        runs = [r for r in by_label.get(label, {}).values() if "outliers" in r]
        if not runs:
            continue
        key = f"{label} + {flt}" if flt != "none" else label
        outliers[key] = {}
        for kind in CORRUPTIONS:
            per_offset = {}
            for o in OFFSETS:
                vals = [r["outliers"]["increase"][flt][kind][str(o)] for r in runs
                        if kind in r["outliers"]["increase"].get(flt, {})]
                if vals:
                    per_offset[str(o)] = _stats(vals)
            if per_offset:
                outliers[key][kind] = per_offset
    summary = {"format": "tdd_lite.ablation-summary/1", "runs": len(results),
               "seeds": sorted({r["seed"] for r in results if r["label"] != UNTRAINED}),
               "table3": table3, "paired": paired, "effects": effects, "table2": table2, "outliers": outliers,
               "paper": {"table3": PAPER_TABLE3, "table2": PAPER_TABLE2}}
    if skipped:  # only then (the committed summaries have no such key)
        summary["skipped"] = skipped
    return summary


# ===================================================================================== rendering
def _pm(cell: dict | None, scale: float = 100.0, digits: int = 2) -> str:
    if not cell:
        return "—"
    return f"{scale * cell['mean']:.{digits}f} ± {scale * cell['std']:.{digits}f}"


def markdown(summary: dict, grid: dict | None = None) -> str:
    """``summary.md``: Table 3 analogue (ours beside the paper's), paired differences, the Table 2 analogue,
    the outlier table and the disentanglement table. A pure function of ``summary`` (and ``grid``)."""
    t3, lines = summary["table3"], []
    n = len(summary["seeds"])
    lines += ["# Ablation on Synth300VW: Table 3 and Table 2 analogues", ""]
    if grid:
        m = grid.get("machine", {})
        lines += [f"Command: `{grid.get('command')}`  ", f"Revision: `{grid.get('revision')}`; machine: "
                  f"{m.get('cpu')}, {m.get('cores')} cores, GPU {m.get('gpu') or 'none'}; wall time "
                  f"{grid.get('wall_seconds', 0) / 60:.1f} min for {summary['runs']} runs.", ""]
    lines += [f"Mean ± standard deviation over {n} seeds ({', '.join(map(str, summary['seeds']))}), tracking "
              "protocol (MTCNN first frame, re-detection). The paper's numbers come from real 300VW, the BFM and "
              "256 px crops trained 500 epochs; ours from Synth300VW, the teaching 3DMM and the `ablation` preset: "
              "compare the **ordering and the gaps**, not the values.", "",
              "## Table 3 analogue: NME % (tracking) — paper beside ours", "",
              "| configuration | ours A | ours B | ours C | paper A | paper B | paper C |",
              "|---|---|---|---|---|---|---|"]
    for label in [UNTRAINED, *ROWS]:
        if label not in t3:
            continue
        cells = [_pm(t3[label]["tracking"].get(c, {}).get("nme")) for c in CATEGORIES]
        paper = PAPER_TABLE3.get(label, ("—",) * 3)
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(map(str, paper)) + " |")
    lines += ["", "## The same on ground-truth crops (the convenient protocol), NME %", "",
              "| configuration | A | B | C |", "|---|---|---|---|"]
    for label in [UNTRAINED, *ROWS]:
        if label in t3 and t3[label].get(GT_CROPS):
            lines.append(f"| {label} | " + " | ".join(_pm(t3[label][GT_CROPS].get(c, {}).get("nme"))
                                                       for c in CATEGORIES) + " |")
    lines += ["", "## Paired difference from \"Without all\" (NME percentage points, tracking)", "",
              "Per seed, the configuration's NME minus the no-discriminator run with the same seed; mean and 95% "
              f"t interval over seeds; *improved* counts seeds where it is lower (with {n} seeds a sign test cannot "
              f"reach p < 0.05: the smallest two-sided p is {2 * 0.5 ** n:.2f}).", "",
              "| configuration | A: mean [95% CI] | improved | B: mean [95% CI] | improved "
              "| C: mean [95% CI] | improved |",
              "|---|---|---|---|---|---|---|"]
    for label in ROWS:
        p = summary["paired"].get(label, {}).get("tracking")
        if not p:
            continue
        cells = []
        for c in CATEGORIES:
            d = p.get(c)
            cells += ([f"{100 * d['mean']:+.2f} [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]",
                       f"{d['improved']}/{len(d['seeds'])}"] if d else ["—", "—"])
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if any(summary.get("effects", {}).get(d, {}).get("nme") for d in DISCRIMINATORS):
        lines += ["", "## Main effects of each discriminator (Table 3 as a 2^3 factorial design, tracking)", "",
                  "Per seed: mean over the 4 configurations with the discriminator minus the mean over the 4 without; "
                  "mean and [95% t interval] over seeds. NME and dNME in percentage points, identity spread and "
                  "expression error in mm; negative = the discriminator lowers it.", "",
                  "| discriminator | metric | A | B | C |", "|---|---|---|---|---|"]
        for d, by_key in summary["effects"].items():
            for key, scale, unit in (("nme", 100, "NME"), ("dnme", 100, "dNME"), ("jitter_ratio", 1, "jitter ratio"),
                                     ("identity_spread", 1, "identity spread"),
                                     ("expression_error", 1, "expression error")):
                cells = by_key.get(key, {})
                lines.append(f"| {d} | {unit} | " + " | ".join(
                    f"{scale * cells[c]['mean']:+.2f} [{scale * cells[c]['ci95'][0]:+.2f}, "
                    f"{scale * cells[c]['ci95'][1]:+.2f}]" if c in cells else "—" for c in CATEGORIES) + " |")
    lines += ["", "## Table 2 analogue (tracking protocol): stabilisers", "",
              "NME and dNME in %, jitter ratio (predicted / true frame-to-frame motion), lag in frames, lost tracks "
              "(runs of 10+ frames over 20% NME), per category A / B / C.", "",
              "| row | NME | dNME | jitter ratio | lag | lost tracks |", "|---|---|---|---|---|---|"]
    for row in summary["table2"]:
        name = row["config"] + ("" if row["filter"] == "none" else f" + {row['filter']}")
        cells = []
        for key, scale, dg in (("nme", 100, 2), ("dnme", 100, 2), ("jitter_ratio", 1, 2), ("lag", 1, 1),
                               ("lost_tracks", 1, 1)):
            cells.append(" / ".join(_pm(row["categories"].get(c, {}).get(key), scale, dg).split(" ± ")[0]
                                    for c in CATEGORIES))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Outlier experiment: NME increase (percentage points) at the corrupted frame t and after", "",
              "One frame corrupted; each stream compared with the same window uncorrupted (mean over windows and "
              "seeds).", "", "| row | corruption | " + " | ".join(f"t{o:+d}" if o else "t" for o in OFFSETS) + " |",
              "|---|---|" + "---|" * len(OFFSETS)]
    for key, kinds in summary["outliers"].items():
        for kind, per in kinds.items():
            lines.append(f"| {key} | {kind} | " + " | ".join(f"{100 * per[str(o)]['mean']:+.2f}" if str(o) in per
                                                              else "—" for o in OFFSETS) + " |")
    lines += ["", "## Disentanglement (Synth300VW's true parameters, tracking)", "",
              "Identity spread: how much the fitted identity shape of one person moves during a video (mm, lower is "
              "better); expression error: fitted vs true expression displacement (mm).", "",
              "| configuration | identity spread A / B / C | expression error A / B / C |", "|---|---|---|"]
    for label in [UNTRAINED, *ROWS]:
        if label not in t3:
            continue
        tr = t3[label]["tracking"]
        cells = [" / ".join(_pm(tr.get(c, {}).get(k), 1, 1).split(" ± ")[0] for c in CATEGORIES)
                 for k in ("identity_spread", "expression_error")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


SECTIONS = {"table3": "Table 3 analogue", "gt_crops": "The same on ground-truth crops", "paired": "Paired difference",
            "effects": "Main effects", "table2": "Table 2 analogue", "outliers": "Outlier experiment",
            "disentanglement": "Disentanglement"}


def section(text: str, key: str, caption: bool = False) -> str:
    """One ``## ...`` section of :func:`markdown`'s text by short name (:data:`SECTIONS`), heading included.

    ``caption=True`` turns the heading into a bold caption line, for a page (a notebook's output) whose own
    outline should not gain an unnumbered heading per table."""
    for part in text.split("\n## ")[1:]:
        if part.startswith(SECTIONS[key]):
            title, _, body = part.rstrip().partition("\n")
            return (f"**{title}**\n{body}\n" if caption else "## " + part.rstrip() + "\n")
    raise KeyError(f"no section {SECTIONS[key]!r}")


def write_summary(out: str | Path, summary: dict | None = None) -> dict[str, Path]:
    """``OUT/summary.json`` and ``OUT/summary.md`` (atomic)."""
    out = Path(out)
    summary = summary if summary is not None else summarize(out)
    grid = read_grid(out / GRID_NAME) or None
    claim_grid_folder(out)
    _write_output(out, "summary.json", json.dumps(summary, indent=1, sort_keys=False) + "\n")
    _write_output(out, "summary.md", markdown(summary, grid))
    return {"json": out / "summary.json", "md": out / "summary.md"}


# ===================================================================================== figures
_SHORT = {UNTRAINED: "untrained", **SLUGS, TRUTH_LABEL: "all, true real (ours)"}


LEGEND_PT = 9  # at the sizes below, 9 pt text is drawn at >= 10 px in the book's 750 px column


def table3_figure(summary: dict, method: str = "tracking"):
    """Table 3 analogue as bars (mean over seeds, error bar = std, dots = seeds) beside the paper's values."""
    t3 = summary["table3"]
    labels = [lb for lb in ROWS if lb in t3]
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(9, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(labels))
    for i, cat in enumerate(CATEGORIES):
        cells = [t3[lb][method].get(cat, {}).get("nme") for lb in labels]
        mean = [100 * c["mean"] if c else np.nan for c in cells]
        std = [100 * c["std"] if c else 0 for c in cells]
        ax.bar(x + (i - 1) * 0.27, mean, 0.27, yerr=std, capsize=2, label=f"{cat} analogue")
        for j, c in enumerate(cells):
            if c:
                ax.plot([x[j] + (i - 1) * 0.27] * len(c["values"]), 100 * np.asarray(c["values"]), "k.", ms=3)
        axp.bar(x + (i - 1) * 0.27, [PAPER_TABLE3[lb][i] if lb in PAPER_TABLE3 else np.nan for lb in labels], 0.27,
                label=f"300VW-{cat}")
    for a, title in ((ax, f"ours: Synth300VW, {len(summary['seeds'])} seeds ({method})"),
                     (axp, "paper (real 300VW, one run each)")):
        a.set_xticks(x, [_SHORT[lb] for lb in labels], rotation=35, ha="right")
        a.set_ylabel("NME (%)")
        a.set_title(title, fontsize=10, pad=24)
        a.legend(fontsize=LEGEND_PT, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False,
                 columnspacing=1.0, handlelength=1.2)
    ax.set_ylim(0, None)
    axp.set_ylim(0, 5.0)
    fig.tight_layout()
    return fig


def outlier_figure(summary: dict):
    """NME increase against frame offset from the corrupted frame, one panel per corruption."""
    rows = summary["outliers"]
    kinds = [k for k in CORRUPTIONS if any(k in r for r in rows.values())]
    fig, grid, axes = panel_grid(len(kinds), width=8, row_height=3.0, extra_height=0.7, sharex=True)
    styles = {BASELINE: "-", FULL: "--"}
    n = len(rows)
    for ax, kind in zip(axes, kinds):
        for j, (name, per) in enumerate(rows.items()):
            if kind not in per:
                continue
            mean = [100 * per[kind][str(o)]["mean"] for o in OFFSETS]
            std = [100 * per[kind][str(o)]["std"] for o in OFFSETS]
            base = FULL if name.startswith(FULL) else BASELINE
            label = name.replace(FULL, "all three D").replace(BASELINE, "no D")
            dodge = 0.09 * (j - (n - 1) / 2)  # side by side, so the error bars of one offset do not overlap
            ax.errorbar(np.asarray(OFFSETS, float) + dodge, mean, yerr=std, ls=styles[base], marker="o", ms=3,
                        capsize=2, lw=1.2, elinewidth=0.8, label=label)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.axvline(0, color="0.8", lw=0.8)
        ax.set_title(kind, fontsize=10)
        ax.set_xticks(OFFSETS)
        ax.tick_params(labelbottom=True)
    for ax in grid[-1]:
        ax.set_xlabel("frames from the corrupted one")
    for ax in grid[:, 0]:
        ax.set_ylabel("NME increase (points)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=LEGEND_PT + 1, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.7 / fig.get_figheight(), 1, 1))
    return fig


def disentanglement_figure(summary: dict):
    """Identity spread and expression error per configuration (tracking, mean over seeds and std)."""
    t3 = summary["table3"]
    labels = [lb for lb in [UNTRAINED, *ROWS] if lb in t3]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    x = np.arange(len(labels))
    for ax, key, title in ((axes[0], "identity_spread", "identity spread (mm): lower = steadier identity"),
                           (axes[1], "expression_error", "expression error (mm): lower = truer expression")):
        for i, cat in enumerate(CATEGORIES):
            cells = [t3[lb]["tracking"].get(cat, {}).get(key) for lb in labels]
            ax.bar(x + (i - 1) * 0.27, [c["mean"] if c else np.nan for c in cells], 0.27,
                   yerr=[c["std"] if c else 0 for c in cells], capsize=2, label=cat)
        ax.set_xticks(x, [_SHORT[lb] for lb in labels], rotation=35, ha="right")
        ax.set_title(title, fontsize=10, pad=24)
        ax.legend(fontsize=LEGEND_PT, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def write_figures(out: str | Path, summary: dict | None = None) -> list[Path]:
    """``table3.png``, ``outliers.png``, ``disentanglement.png`` under ``OUT`` (atomic)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out = Path(out)
    summary = summary if summary is not None else summarize(out)
    claim_grid_folder(out)
    paths = []
    for name, make in (("table3", table3_figure), ("outliers", outlier_figure),
                       ("disentanglement", disentanglement_figure)):
        if name == "outliers" and not summary["outliers"]:
            continue
        fig = make(summary)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        _write_output(out, f"{name}.png", buf.getvalue())
        paths.append(out / f"{name}.png")
    return paths


# ===================================================================================== command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="results folder (runs/<config>-s<seed>/result.json, grid.json, summary.*)")
    p.add_argument("--train-data", help="300VW-layout training set (e.g. tdd-lite synth --videos 160 --frames 25)")
    p.add_argument("--eval-data", help="300VW-layout set whose A/B/C test videos are evaluated")
    p.add_argument("--seeds", type=bounded_int(0, MAX_SEED), nargs="+", default=[0, 1, 2],
                   help="training seeds, distinct, 0 to 2**32 - 1 (default 0 1 2)")
    p.add_argument("--configs", nargs="+", metavar="NAME", help=f"subset of {' '.join(LABELS)} (default: all 8)")
    p.add_argument("--jobs", type=bounded_int(1, 256), default=2, help="runs side by side (default 2)")
    p.add_argument("--threads", type=bounded_int(1, 256), default=1, help="torch threads per run (default 1)")
    p.add_argument("--preset", default=PRESET, help=f"training recipe of every run (default {PRESET}: from scratch; "
                   "finetune: continue --init-from)")
    p.add_argument("--init-from", metavar="FILE", help="G's starting weights for every run (a trainer checkpoint or "
                   "a reference file such as tdd_lite/assets/reference_g.pt); no untrained row then")
    p.add_argument("--steps", type=bounded_int(1, 10**9), help="override the preset's training steps")
    p.add_argument("--eval-frames", type=positive_int, default=EVAL_FRAMES,
                   help=f"frames per test video evaluated (default {EVAL_FRAMES})")
    p.add_argument("--only-summary", action="store_true", help="rebuild summary.* from the finished runs")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file, expected a results folder")
    if args.only_summary:
        summary = summarize(out)
        paths = write_summary(out, summary)
        write_figures(out, summary)
        _warn_skipped(summary)
        print(f"wrote {paths['md']}")
        return 0
    if not args.train_data or not args.eval_data:
        raise UsageError("--train-data and --eval-data are required (or pass --only-summary)")
    command = "tdd-lite ablation " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    summary = run_grid(out, args.train_data, args.eval_data, seeds=args.seeds, configs=args.configs,
                       jobs=args.jobs, threads=args.threads, steps=args.steps, eval_frames=args.eval_frames,
                       command=command, preset=args.preset, init_from=args.init_from)
    _warn_skipped(summary)
    print(f"wrote {out / 'summary.md'}")
    return 0


def _warn_skipped(summary: dict) -> None:
    """One line per ``result.json`` the summary had to leave out (never silently)."""
    for line in summary.get("skipped", []):
        print(f"tdd-lite ablation: warning: {line}; left out of the summary", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    return module_main("python -m tdd_lite.experiments", add_arguments, run, argv, description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
