"""The reference model that ships with the package: G's weights in float16, verified before they are read.

``tdd_lite/assets/reference_g.pt`` holds only what inference needs (format ``tdd_lite.reference/1``)::

    {"format": "tdd_lite.reference/1", "n_id": 199, "n_exp": 29, "image_size": 64,
     "config": <the trainer config dict of the run>, "G": <G's state dict, floating tensors in float16>}

and its sidecar ``reference_g.json`` holds the file's SHA-256 and size, the crop size and the model card's
numbers (``card``); ``reference_g.md`` is the model card for people. :func:`load_reference` reads the file's
bytes once (at most :data:`MAX_LOAD_BYTES`, checked before reading), compares their SHA-256 with the
sidecar's, and only then unpickles *those same bytes* with ``torch.load(..., weights_only=True)``: a damaged
or swapped copy is refused with one line (:class:`~tdd_lite.errors.CheckpointError`) and never loaded.

float16: every floating tensor of G except the three fixed buffers that define units (``pixel_mean``,
``pixel_std``, ``camera_scale``: 14 numbers, kept in float32) is rounded to float16 (relative error at most
2^-11 = 4.9e-4 per weight) and loaded back into a float32 G; ResNet-18 G is ~24 MB instead of ~48 MB.
BatchNorm's ``num_batches_tracked`` stays an integer.

``tdd-lite track VIDEO --out DIR`` and ``tdd-lite evaluate --data ROOT`` use this model when no checkpoint
is given (:func:`resolve_net`). Maintainer commands::

    python -m tdd_lite.reference export runs/reference/checkpoint.pt tdd_lite/assets/reference_g.pt \\
        --card card.json                      # card.json: the metrics etc. stored in the sidecar
    python -m tdd_lite.reference check [PATH]  # size, SHA-256, image_size, a forward pass
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from tdd_lite.checkpoint import load_alignment_net, load_checkpoint
from tdd_lite.commands import module_main
from tdd_lite.errors import CheckpointError, DataError, UsageError
from tdd_lite.files import atomic_write, remove_stale_temp_files
from tdd_lite.network import AlignmentNet

REFERENCE_FORMAT = "tdd_lite.reference/1"
PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_PATH = PACKAGE_DIR / "assets" / "reference_g.pt"  # where the package keeps it (never monkeypatched)
REFERENCE_PATH = SHIPPED_PATH  # the default of load_reference / resolve_net (tests point it elsewhere)
MAX_EXPORT_BYTES = 25_000_000  # 25 MB: what a weights file may be to ship in the repository
MAX_LOAD_BYTES = 64 * 2**20  # refused before reading: what a reference file may make us allocate
MAX_SIDECAR_BYTES = 2**20
FLOAT32_BUFFERS = ("pixel_mean", "pixel_std", "camera_scale")  # fixed, define units: kept exact
FLOAT16_MAX = 65504.0


# ============================================================================================== helpers
def sidecar_path(path: str | Path) -> Path:
    """``X.pt`` -> ``X.json`` (the file with its SHA-256, size, crop size and model card)."""
    return Path(path).with_suffix(".json")


def _shown(path: Path) -> str:
    """How a message names ``path``: the shipped file by its place in the package, any other as given."""
    if _is_shipped(path):
        return "tdd_lite/assets/" + path.name
    return str(path)


def _is_shipped(path: Path) -> bool:
    try:
        return path.resolve() == SHIPPED_PATH
    except OSError:
        return False


def _restore_hint(path: Path) -> str:
    if _is_shipped(path):
        return "restore it (git checkout tdd_lite/assets/reference_g.pt, or reinstall tdd_lite)"
    return "export it again (python -m tdd_lite.reference export CHECKPOINT OUT.pt) or use another copy"


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def _read_sidecar(path: Path, shown: str) -> dict:
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"{shown}: no sidecar {side.name} beside it (it holds the file's SHA-256); refusing "
                              f"to load unverified weights ({_restore_hint(path)})")
    if side.stat().st_size > MAX_SIDECAR_BYTES:
        raise CheckpointError(f"{shown}: sidecar {side.name} is over {MAX_SIDECAR_BYTES // 2**20} MiB, not a "
                              f"reference sidecar")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{shown}: sidecar {side.name} is not valid JSON ({_one_line(e)})") from e
    if not isinstance(meta, dict) or meta.get("format") != REFERENCE_FORMAT:
        tag = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{shown}: sidecar {side.name} is not a reference sidecar (format tag {tag!r}, "
                              f"expected {REFERENCE_FORMAT!r})")
    sha = meta.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise CheckpointError(f"{shown}: sidecar {side.name}: field 'sha256' is not a SHA-256 (64 hex digits)")
    return meta


def is_reference_file(path: str | Path) -> bool:
    """Does ``path`` look like a reference-format file (without unpickling anything)?

    True when its sidecar says so, or when the pickle inside the zip archive holds the format tag. A trainer
    checkpoint (or anything unreadable) gives False: its own loader reports what is wrong with it.
    """
    path = Path(path)
    with contextlib.suppress(OSError, json.JSONDecodeError, UnicodeDecodeError):
        side = sidecar_path(path)
        if side.is_file() and side.stat().st_size <= MAX_SIDECAR_BYTES:
            meta = json.loads(side.read_text(encoding="utf-8"))
            if isinstance(meta, dict) and meta.get("format") == REFERENCE_FORMAT:
                return True
    try:
        if not path.is_file() or path.stat().st_size > MAX_LOAD_BYTES:
            return False
        with zipfile.ZipFile(path) as z:
            pkl = [i for i in z.infolist() if i.filename.endswith("/data.pkl")]
            if len(pkl) != 1 or pkl[0].file_size > 4 * 2**20:
                return False
            return REFERENCE_FORMAT.encode() in z.read(pkl[0])
    except Exception:  # noqa: BLE001 - a probe: anything unreadable is left to the trainer loader's messages
        return False


# =============================================================================================== export
def _to_float16(state: dict, source: str) -> dict:
    out = {}
    for name, t in state.items():
        if not isinstance(t, Tensor):
            raise CheckpointError(f"{source}: G entry {name!r} is a {type(t).__name__}, expected a tensor")
        t = t.detach().cpu().contiguous()
        if t.is_floating_point():
            if not torch.isfinite(t).all():
                raise CheckpointError(f"{source}: G weight {name} holds NaN/inf values; refusing to export it")
            if name in FLOAT32_BUFFERS:
                t = t.float()
            else:
                if t.numel() and float(t.abs().max()) > FLOAT16_MAX:
                    raise CheckpointError(f"{source}: G weight {name} has values beyond float16's range "
                                          f"(max |w| {float(t.abs().max()):.3g} > {FLOAT16_MAX:g})")
                t = t.half()
        out[name] = t.clone()
    return out


def _save_reference(payload: dict, out: Path, card: dict | None = None, source: dict | None = None) -> dict:
    """Write ``payload`` to ``out`` and its sidecar (each atomically; ``out`` bounded by MAX_EXPORT_BYTES)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out.parent, out.name)
    side = sidecar_path(out)
    remove_stale_temp_files(side.parent, side.name)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    if len(data) > MAX_EXPORT_BYTES:
        raise DataError(f"{out}: the weights file would be {len(data) / 1e6:.1f} MB, over the "
                        f"{MAX_EXPORT_BYTES / 1e6:.0f} MB a shipped reference may be; nothing was written")
    meta = {"format": REFERENCE_FORMAT, "file": out.name, "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data), "dtype": "float16",
            "image_size": payload.get("image_size"), "n_id": payload.get("n_id"), "n_exp": payload.get("n_exp"),
            "card": card or {}}
    if source:
        meta["source"] = source
    atomic_write(out, data)
    atomic_write(side, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def export_reference(checkpoint_path: str | Path, out_path: str | Path, card: dict | None = None) -> dict:
    """A trainer checkpoint -> a weights-only reference file ``out_path`` (``.pt``) and its ``.json`` sidecar.

    The checkpoint is read with :func:`tdd_lite.checkpoint.load_checkpoint` (which verifies its checksum); G's
    floating tensors are stored in float16 (see the module docstring). ``card``: JSON-able numbers and notes for
    the sidecar (metrics, data, ...). The written file is read back with :func:`load_reference` before this
    returns. Returns the sidecar's contents.
    """
    out = Path(out_path)
    if out.suffix != ".pt":
        raise UsageError(f"{out}: the reference file must end in .pt (its sidecar is the same name with .json)")
    if card is not None:
        if not isinstance(card, dict):
            raise UsageError(f"card: expected a JSON object (dict), got a {type(card).__name__}")
        try:
            card = json.loads(json.dumps(card, allow_nan=False))
        except (TypeError, ValueError) as e:
            raise UsageError(f"card: not plain JSON ({_one_line(e)})") from e
    ckpt = Path(checkpoint_path)
    state = load_checkpoint(ckpt)
    cfg = dict(state["config"])
    payload = {"format": REFERENCE_FORMAT, "n_id": int(state["n_id"]), "n_exp": int(state["n_exp"]),
               "image_size": int(cfg["image_size"]), "config": cfg, "G": _to_float16(state["G"], str(ckpt))}
    source = {"checkpoint": ckpt.name, "checksum": state.get("checksum"), "step": int(state["step"]),
              "total_steps": int(state["total_steps"])}
    meta = _save_reference(payload, out, card, source)
    load_reference(out)  # the file we ship must load: fail here, not on a user's machine
    return meta


# ================================================================================================= load
def load_reference(path: str | Path | None = None, model3dmm=None, device: str | torch.device = "cpu"):
    """The reference G (float32, eval mode) and its info: ``(AlignmentNet, info)``.

    ``path``: a reference-format ``.pt`` with its ``.json`` sidecar; None = the shipped file
    (:data:`REFERENCE_PATH`). ``model3dmm``: when given, G must fit its identity/expression mode counts.
    Every problem is one :class:`CheckpointError` line naming the file: missing file or sidecar, over
    :data:`MAX_LOAD_BYTES`, a SHA-256 that differs from the sidecar's (checked *before* unpickling), a wrong
    format tag, weights that do not fit the network, NaN/inf weights. ``info``: ``path``, ``shown``,
    ``sha256``, ``bytes``, ``image_size``, ``n_id``, ``n_exp``, ``config``, ``card``, ``description``.
    """
    path = Path(REFERENCE_PATH if path is None else path)
    shown = _shown(path)
    if path.is_dir():
        raise CheckpointError(f"{shown}: is a folder, expected a reference model file (.pt)")
    if not path.exists():
        if _is_shipped(path):
            raise CheckpointError(f"{shown}: the shipped reference model is missing from this copy of tdd_lite; "
                                  f"{_restore_hint(path)}, or pass a checkpoint")
        raise CheckpointError(f"{shown}: reference model does not exist")
    if not path.is_file():
        raise CheckpointError(f"{shown}: not a regular file (a FIFO or device?), expected a reference model file")
    size = path.stat().st_size
    if size > MAX_LOAD_BYTES:
        raise CheckpointError(f"{shown}: {size / 2**20:.1f} MiB, over the {MAX_LOAD_BYTES // 2**20} MiB a "
                              f"reference model may be; refusing to read it")
    if size == 0:
        raise CheckpointError(f"{shown}: empty file, not a reference model (an interrupted copy?); "
                              f"{_restore_hint(path)}")
    meta = _read_sidecar(path, shown)
    data = path.read_bytes()
    if len(data) > MAX_LOAD_BYTES:  # it grew after the check
        raise CheckpointError(f"{shown}: over {MAX_LOAD_BYTES // 2**20} MiB; refusing to read it")
    actual = hashlib.sha256(data).hexdigest()
    if actual != meta["sha256"]:
        raise CheckpointError(f"{shown}: SHA-256 mismatch (expected {meta['sha256'][:12]}..., file "
                              f"{actual[:12]}...): the file is damaged; {_restore_hint(path)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, OSError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{shown}: cannot read the reference model ({type(e).__name__}: "
                              f"{_one_line(e, 160)})") from e
    fmt = state.get("format") if isinstance(state, dict) else None
    if fmt != REFERENCE_FORMAT:
        raise CheckpointError(f"{shown}: not a tdd_lite reference model (format tag {fmt!r}, expected "
                              f"{REFERENCE_FORMAT!r})")
    for k in ("n_id", "n_exp", "image_size"):
        v = state.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise CheckpointError(f"{shown}: field {k!r} is {v!r}, expected a positive integer")
    if not 32 <= state["image_size"] <= 1024:
        raise CheckpointError(f"{shown}: image_size {state['image_size']} is outside 32..1024")
    for k in ("G", "config"):
        if not isinstance(state.get(k), dict):
            raise CheckpointError(f"{shown}: field {k!r} is a {type(state.get(k)).__name__}, expected a dict")
    if meta.get("image_size") not in (None, state["image_size"]):
        raise CheckpointError(f"{shown}: image_size {state['image_size']} differs from its sidecar's "
                              f"({meta.get('image_size')!r})")
    n_id, n_exp = state["n_id"], state["n_exp"]
    if model3dmm is not None and (n_id, n_exp) != (model3dmm.n_id, model3dmm.n_exp):
        raise CheckpointError(f"{shown}: G was trained for a 3DMM with {n_id} identity + {n_exp} expression "
                              f"modes, this 3DMM has {model3dmm.n_id} + {model3dmm.n_exp}")
    weights = {}
    for name, t in state["G"].items():
        if not isinstance(t, Tensor):
            raise CheckpointError(f"{shown}: G entry {name!r} is a {type(t).__name__}, expected a tensor")
        if t.is_floating_point():
            t = t.float()
            if not torch.isfinite(t).all():
                raise CheckpointError(f"{shown}: G weight {name} holds NaN/inf values")
        weights[name] = t
    net = AlignmentNet(n_id=n_id, n_exp=n_exp)
    try:
        net.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{shown}: G's weights do not fit the network ({_one_line(e)})") from e
    info = {"path": str(path), "shown": shown, "sha256": actual, "bytes": len(data), "format": fmt,
            "image_size": state["image_size"], "n_id": n_id, "n_exp": n_exp, "config": state["config"],
            "card": meta.get("card") or {}, "description": f"reference ({shown}, sha256 {actual})"}
    return net.to(device).eval(), info


def resolve_net(checkpoint: str | Path | None, model3dmm, device: str | torch.device = "cpu"):
    """The G a command runs: ``(net, image_size, description)``.

    ``checkpoint`` None: the shipped reference model (:data:`REFERENCE_PATH`); a reference-format ``.pt``
    (:func:`is_reference_file`): :func:`load_reference`; anything else: a trainer checkpoint
    (:func:`tdd_lite.checkpoint.load_checkpoint` + :func:`~tdd_lite.checkpoint.load_alignment_net`). ``description``
    names what was loaded, e.g. ``reference (tdd_lite/assets/reference_g.pt, sha256 ...)`` or the path.
    """
    if checkpoint is None or is_reference_file(checkpoint):
        net, info = load_reference(checkpoint, model3dmm, device)
        return net, int(info["image_size"]), info["description"]
    state = load_checkpoint(checkpoint)
    net = load_alignment_net(checkpoint, model3dmm, device, state=state)
    return net, int(state["config"]["image_size"]), str(checkpoint)


# ========================================================================================= the commands
def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    e = sub.add_parser("export", help="trainer checkpoint -> float16 reference file + .json sidecar",
                       description="trainer checkpoint -> float16 reference file + .json sidecar")
    e.add_argument("checkpoint", help="a trainer checkpoint (tdd-lite train)")
    e.add_argument("out", help="the reference file to write, ending in .pt (its sidecar: the same name, .json)")
    e.add_argument("--card", default=None, help="a JSON file whose object goes into the sidecar's 'card' field")
    c = sub.add_parser("check", help="verify a reference file (size, SHA-256, format, weights, a forward pass)",
                       description="verify a reference file (size, SHA-256, format, weights, a forward pass)")
    c.add_argument("path", nargs="?", default=None,
                   help="a reference .pt (default: the shipped tdd_lite/assets/reference_g.pt)")


def _read_card(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--card {p}: no such file")
    if p.stat().st_size > MAX_SIDECAR_BYTES:
        raise UsageError(f"--card {p}: over {MAX_SIDECAR_BYTES // 2**20} MiB")
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"--card {p}: not valid JSON ({_one_line(e)})") from e
    if not isinstance(card, dict):
        raise UsageError(f"--card {p}: expected a JSON object, got a {type(card).__name__}")
    return card


def run(args: argparse.Namespace) -> int:
    if args.action == "export":
        card = _read_card(args.card) if args.card else None
        meta = export_reference(args.checkpoint, args.out, card)
        print(f"{args.out}: {meta['bytes'] / 1e6:.2f} MB, sha256 {meta['sha256']}, image_size {meta['image_size']}"
              f" -> sidecar {sidecar_path(args.out)}")
        return 0
    net, info = load_reference(args.path)
    with torch.no_grad():
        s = info["image_size"]
        out = net(torch.full((1, 3, s, s), 0.5))
    if not all(math.isfinite(float(o.abs().max())) for o in out):
        raise CheckpointError(f"{info['shown']}: the forward pass gives NaN/inf")
    print(f"{info['shown']}: {info['bytes']} bytes ({info['bytes'] / 1e6:.2f} MB), sha256 {info['sha256']} ok "
          f"(matches {sidecar_path(info['path']).name}), image_size {s}, {info['n_id']} + {info['n_exp']} modes, "
          f"forward pass finite")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tdd_lite.reference export|check``: the same one-line errors as ``tdd-lite``."""
    return module_main("python -m tdd_lite.reference", add_arguments, run, argv,
                       description=__doc__.splitlines()[0])


if __name__ == "__main__":
    sys.exit(main())
