"""The one rule for every command that writes: write only into an output you made, replace only what you wrote.

A folder a command makes (or an empty folder it is given) carries the marker :data:`MARKER`
(``.tdd_lite-output.json``): the command's name, when it was made, which process made it, and the relative path and
SHA-256 of every file the command wrote there. With that:

* :func:`claim_folder` makes a new output folder and marks it; reuses a folder only if it is empty, or carries the
  same command's marker and ``overwrite`` is set (or nothing would be replaced); and refuses, with one line naming
  the path and what to do (:class:`~tdd_lite.errors.OutputExistsError`, exit 2), a file, a symbolic link, a
  non-empty folder without a marker, a folder another command made, and a file the command wrote that someone has
  changed since.
* :func:`write_file` / :func:`writing` write one file atomically (a temporary file beside it, then a rename) and
  record it; they refuse to replace a file the marker does not list.
* :func:`replace_own` deletes files the marker lists (unchanged since written) and nothing else.
* :func:`interrupt_cleanup`: SIGTERM (and SIGINT, Ctrl-C) during the command removes what this run wrote, and the
  folder itself when this run created it; temporary files left by a SIGKILL are removed by the next claim.

Usage::

    out = claim_folder(args.out, "evaluate", overwrite=args.overwrite, option="--out")
    with interrupt_cleanup(out):
        write_file(out, "report.md", text)
        with writing(out, "streams.npz") as tmp:
            np.savez_compressed(tmp, **arrays)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tdd_lite.errors import DataError, OutputExistsError

MARKER = ".tdd_lite-output.json"
MARKER_FORMAT = "tdd_lite-output"
MAX_MARKER_BYTES = 16 << 20
_TMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[A-Za-z0-9_]+(\.[A-Za-z0-9]+)?$")
_LEGACY_TMP = re.compile(r"^(?P<name>.+)\.tmp(?P<pid>\d+)$")


@dataclass
class Output:
    """A claimed output folder: ``path`` (absolute), the ``command`` that owns it, whether this run ``created`` it
    (only then may an interrupt remove the folder), the files this run wrote (relative POSIX paths)."""

    path: Path
    command: str
    created: bool
    existed: bool = False
    written: set[str] = field(default_factory=set)
    dry_run: bool = False


def _where(path: Path, option: str) -> str:
    return f"{option} {path}" if option else str(path)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker of ``folder`` as a dict, or None when there is none or it is not a readable output marker."""
    marker = Path(folder) / MARKER
    try:
        if marker.is_symlink() or not marker.is_file() or marker.stat().st_size > MAX_MARKER_BYTES:
            return None
        info = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not (isinstance(info, dict) and info.get("format") == MARKER_FORMAT and isinstance(info.get("command"), str)
            and isinstance(info.get("files"), dict)):
        return None
    return info


def _write_marker(folder: Path, info: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"{MARKER}.tmp-{os.getpid()}-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, folder / MARKER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_marker(command: str) -> dict:
    return {"format": MARKER_FORMAT, "command": command, "made_by": f"tdd-lite {command}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid": os.getpid(), "host": socket.gethostname(),
            "files": {}}


def _rel(rel: str | os.PathLike) -> str:
    p = PurePosixPath(Path(rel).as_posix())
    if p.is_absolute() or not p.parts or ".." in p.parts or p.name == MARKER:
        raise ValueError(f"{rel!r}: expected a relative path inside the output folder")
    return str(p)


def _pid_alive(pid: object, host: object) -> bool:
    return isinstance(pid, int) and host == socket.gethostname() and pid != os.getpid() and pid_alive(pid)


def _remove_stale_temps(folder: Path) -> None:
    """:func:`remove_stale_temp_files` in ``folder`` and every folder below it."""
    for cand in [folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink())]:
        remove_stale_temp_files(cand)


def changed_files(folder: str | os.PathLike, info: dict | None = None) -> list[str]:
    """Files the marker lists that are no longer what the command wrote (edited, replaced, a folder now)."""
    folder = Path(folder)
    info = read_marker(folder) if info is None else info
    out = []
    for rel, digest in (info or {}).get("files", {}).items():
        p = folder / rel
        try:
            if p.is_symlink() or (p.exists() and (not p.is_file() or sha256_file(p) != digest)):
                out.append(rel)
        except OSError:
            out.append(rel)
    return out


def claim_folder(path: str | os.PathLike, command: str, overwrite: bool = False, dry_run: bool = False,
                 option: str = "") -> Output:
    """Claim ``path`` as the output folder of ``command`` (see the module docstring), or raise
    :class:`~tdd_lite.errors.OutputExistsError` naming it. ``dry_run``: only check (nothing is created or marked).
    ``option`` (e.g. ``"--out"``) prefixes the path in messages."""
    path = Path(os.path.abspath(path))
    where = _where(path, option)
    if path.is_symlink():
        raise OutputExistsError(f"{where}: is a symbolic link; give the real folder (tdd-lite {command} does not "
                                "write through links)")
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{where}: exists and is a file, not a folder; choose another {option or 'output'}"
                                " (nothing was changed)")
    if not path.exists():
        out = Output(path, command, created=True, dry_run=dry_run)
        if not dry_run:
            path.mkdir(parents=True)
            try:
                _write_marker(path, _new_marker(command))
            except BaseException:
                path.rmdir()
                raise
        return out
    info = read_marker(path)
    if info is None:
        if (path / MARKER).exists() or (path / MARKER).is_symlink():
            raise OutputExistsError(f"{where}: its {MARKER} is damaged or not a tdd-lite marker; choose another "
                                    f"{option or 'output'} (nothing was changed)")
        entries = sorted(p.name for p in path.iterdir())
        if entries:
            shown = ", ".join(repr(e) for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise OutputExistsError(f"{where}: exists and holds files tdd-lite {command} did not write ({shown}); "
                                    f"choose a new or empty {option or 'output'} folder (nothing was changed)")
        if not dry_run:
            _write_marker(path, _new_marker(command))
        return Output(path, command, created=False, dry_run=dry_run)
    if info["command"] != command:
        raise OutputExistsError(f"{where}: was made by tdd-lite {info['command']}, not tdd-lite {command}; choose "
                                f"another {option or 'output'} folder (nothing was changed)")
    if _pid_alive(info.get("pid"), info.get("host")) and info.get("running"):
        raise OutputExistsError(f"{where}: tdd-lite {command} (process {info['pid']}) is writing it now; wait or "
                                f"choose another {option or 'output'} folder")
    if info["files"] and not overwrite:
        raise OutputExistsError(f"{where}: holds an earlier tdd-lite {command} output; pass --overwrite to replace "
                                f"it or choose another {option or 'output'} folder (nothing was changed)")
    changed = changed_files(path, info)
    if changed:
        raise OutputExistsError(f"{where}: {changed[0]} was changed after tdd-lite {command} wrote it; refusing to "
                                f"replace it (move it away first; nothing was changed)")
    if not dry_run:
        _remove_stale_temps(path)
        info.update(pid=os.getpid(), host=socket.gethostname())
        _write_marker(path, info)
    return Output(path, command, created=False, existed=True, dry_run=dry_run)


def _folder_of(out: Output | str | os.PathLike) -> Path:
    return out.path if isinstance(out, Output) else Path(os.path.abspath(out))


def record_files(out: Output | str | os.PathLike, paths: Iterable[str | os.PathLike]) -> None:
    """Add ``paths`` (inside the folder, absolute or relative to it) to the marker with their SHA-256."""
    folder = _folder_of(out)
    info = read_marker(folder)
    if info is None:
        raise OutputExistsError(f"{folder}: has no {MARKER} (not claimed with claim_folder)")
    for p in paths:
        p = Path(p)
        rel = _rel(p.relative_to(folder) if p.is_absolute() else p)
        info["files"][rel] = sha256_file(folder / rel)
        if isinstance(out, Output):
            out.written.add(rel)
    _write_marker(folder, info)


def check_writable(out: Output | str | os.PathLike, rel: str | os.PathLike) -> Path:
    """The destination of ``rel`` inside the claimed folder, if the command may write it: absent, or a file the
    marker lists and nobody changed since. Raises :class:`~tdd_lite.errors.OutputExistsError` otherwise."""
    folder = _folder_of(out)
    rel = _rel(rel)
    dest = folder / rel
    info = read_marker(folder) or {"files": {}}
    if dest.is_symlink():
        raise OutputExistsError(f"{dest}: is a symbolic link; refusing to write through it (nothing was changed)")
    if dest.exists():
        if dest.is_dir():
            raise OutputExistsError(f"{dest}: is a folder, expected a file to write; move it away (nothing was "
                                    "changed)")
        digest = info["files"].get(rel)
        if digest is None:
            raise OutputExistsError(f"{dest}: exists and was not written by tdd-lite; refusing to overwrite it "
                                    "(move it away or choose another output folder)")
        if sha256_file(dest) != digest:
            raise OutputExistsError(f"{dest}: was changed after tdd-lite wrote it; refusing to overwrite it "
                                    "(move it away first)")
    for parent in PurePosixPath(rel).parents:
        p = folder / str(parent)
        if str(parent) != "." and (p.is_symlink() or (p.exists() and not p.is_dir())):
            raise OutputExistsError(f"{p}: expected a folder (or nothing) there; move it away")
    return dest


@contextmanager
def writing(out: Output | str | os.PathLike, rel: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``OUT/rel`` (same suffix, so ``np.savez`` and video writers keep it); when the
    block ends without error it is renamed over ``OUT/rel`` and recorded in the marker; on error it is removed."""
    dest = check_writable(out, rel)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.stem}.tmp-{os.getpid()}-", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        check_writable(out, rel)  # still ours (a user may have put a file there meanwhile)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    record_files(out, [_rel(rel)])


def write_file(out: Output | str | os.PathLike, rel: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``OUT/rel`` atomically and record it (see :func:`writing`)."""
    with writing(out, rel) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return _folder_of(out) / _rel(rel)


def replace_own(out: Output | str | os.PathLike, keep: Iterable[str] = ()) -> list[str]:
    """Delete the files the marker lists (except ``keep``), each only if unchanged since written, and folders left
    empty by that; returns the deleted relative paths. Nothing the marker does not list is touched."""
    folder = _folder_of(out)
    info = read_marker(folder)
    if info is None:
        return []
    keep = {_rel(k) for k in keep}
    changed = set(changed_files(folder, info))
    removed = []
    for rel in sorted(info["files"]):
        if rel in keep or rel in changed:
            continue
        p = folder / rel
        if p.is_file() and not p.is_symlink():
            p.unlink()
        info["files"].pop(rel)
        removed.append(rel)
        for parent in PurePosixPath(rel).parents:
            if str(parent) == ".":
                break
            try:
                (folder / str(parent)).rmdir()
            except OSError:
                break
    _write_marker(folder, info)
    return removed


def _undo(out: Output) -> None:
    """After an interruption: remove this run's temporary files; if this run created the folder, also the files it
    wrote and the marker, and the folder when nothing else is left in it."""
    folder = out.path
    if not folder.is_dir() or folder.is_symlink():
        return
    pid = str(os.getpid())
    for p in sorted(folder.rglob("*"), reverse=True):
        m = _TMP.match(p.name)
        if m and m.group("pid") == pid and p.is_file():
            p.unlink(missing_ok=True)
    if not out.created:
        return
    info = read_marker(folder) or {"files": {}}
    for rel in info["files"]:
        p = folder / rel
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
    for p in sorted(folder.rglob("*"), reverse=True):  # folders this run made, now empty
        if p.is_dir() and not p.is_symlink():
            try:
                p.rmdir()
            except OSError:
                pass
    if [p.name for p in folder.iterdir()] == [MARKER]:
        (folder / MARKER).unlink()
        folder.rmdir()


@contextmanager
def sigterm_raises(exception: type[BaseException] = SystemExit) -> Iterator[None]:
    """While inside: SIGTERM raises ``exception`` so ``finally``/``except`` blocks clean up (Ctrl-C already raises
    KeyboardInterrupt). ``SystemExit`` (the default) carries the status a SIGTERM kill gives, 143;
    ``KeyboardInterrupt`` makes a SIGTERM look like Ctrl-C (``tdd-lite train``: "interrupted", exit 130); any other
    type gets the message ``signal 15``. Installed only in the main thread and only over the default handler."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def handler(signum, frame):
        if exception is SystemExit:
            raise SystemExit(128 + signum)
        raise exception(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def interrupt_cleanup(out: Output) -> Iterator[Output]:
    """Run a command's writing inside: on SIGTERM, Ctrl-C or an error, :func:`_undo` what this run wrote (the
    whole folder only if this run created it) and re-raise. The marker says ``running`` meanwhile."""
    if out.dry_run:
        yield out
        return
    info = read_marker(out.path)
    if info is not None:
        info["running"] = True
        _write_marker(out.path, info)
    with sigterm_raises():
        try:
            yield out
        except BaseException:
            _undo(out)
            raise
        else:
            info = read_marker(out.path)
            if info is not None:
                info.pop("running", None)
                _write_marker(out.path, info)


# ------------------------------------------------------------------- reading, atomic writing, temp files
def current_umask() -> int:
    """The process umask, read without changing it when ``/proc`` tells it (else set-and-restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_regular_file(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, else :class:`DataError`.

    Opened with ``O_NONBLOCK`` and checked with ``fstat`` before reading, so a FIFO, socket or device is
    refused at once instead of blocking (and there is no window between the check and the open).
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device" if
                    stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
            raise DataError(f"{path}: is {kind}, expected a regular {what}; refused")
        if st.st_size > limit:
            raise DataError(f"{path}: {st.st_size} bytes, more than the {limit} a {what} may have; refused")
        chunks, total = [], 0
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
            total += len(b)
            if total > limit:
                raise DataError(f"{path}: more than the {limit} bytes a {what} may have; refused")
        return b"".join(chunks)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    finally:
        os.close(fd)



def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``data`` (text as UTF-8, or bytes), or ``data(tmp)`` for a writer that takes a
    path (``torch.save``, ``np.savez``), goes to a temporary file beside it (``.NAME.tmp-PID-XXXX.SUFFIX``, the
    suffix kept for writers that look at it), which is then renamed over ``path``. The temporary file never
    outlives a failure (an exception, Ctrl-C, or SIGTERM inside :func:`sigterm_raises`); one left by a SIGKILL is
    removed by :func:`remove_stale_temp_files` (its process is gone)."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.tmp-{os.getpid()}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; honour the umask like open() does
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temp_files(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporary files of processes that are gone (a SIGKILL in the middle of a write) in ``folder``.

    Ours are ``.STEM.tmp-PID-XXXX.SUFFIX`` (:func:`atomic_write`, :func:`writing`) and, from older versions,
    ``NAME.tmp<PID>``; with ``name`` only those of that file. A live process's file, a symbolic link and anything
    else are left alone. Returns the removed files."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TMP.match(p.name) or (_LEGACY_TMP.match(p.name) if name is not None else None)
        if not m or not p.is_file() or p.is_symlink() or pid_alive(int(m.group("pid"))) \
                or name is not None and m.group("name") not in (name, Path(name).stem):
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


# ------------------------------------------------------------------- interrupt-safe partial folders
PARTIAL_MARKER = ".tdd_lite-partial.json"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (the marker of a partial folder or temporary file names it)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OSError, OverflowError):  # not a pid this system can have
        return False
    return True


def make_partial_dir(final: str | os.PathLike, maker: str) -> Path:
    """A new empty ``FINAL.partial-<pid>-XXXX`` folder next to ``final``, with the umask's permissions and a
    marker (``PARTIAL_MARKER``: who made it, pid, host) so :func:`remove_stale_partials` can tell it is ours."""
    final = Path(final)
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.partial-{os.getpid()}-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
    info = {"maker": maker, "pid": os.getpid(), "host": os.uname().nodename, "target": final.name}
    (tmp / PARTIAL_MARKER).write_text(json.dumps(info) + "\n")
    return tmp


def remove_stale_partials(final: str | os.PathLike) -> list[Path]:
    """Remove ``FINAL.partial-*`` folders next to ``final`` that carry our marker and whose process is gone.

    A folder without a readable marker, of another host, or of a live process is left alone; returns the
    removed folders.
    """
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    for cand in final.parent.glob(glob_escape(final.name) + ".partial-*"):
        if cand.is_symlink() or not cand.is_dir():
            continue
        marker = cand / PARTIAL_MARKER
        try:
            info = json.loads(read_regular_file(marker, 4096, "partial-folder marker"))
            pid, host = int(info["pid"]), str(info["host"])
        except (DataError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            continue
        if info.get("target") != final.name or host != os.uname().nodename or pid_alive(pid):
            continue
        remove_partial(cand)
        removed.append(cand)
    return removed


def remove_partial(path: str | os.PathLike) -> None:
    """Delete a partial folder made by :func:`make_partial_dir`, its marker LAST (a kill midway leaves a folder
    that is still recognisably ours, so the next run finishes the job)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return
    for child in path.iterdir():
        if child.name == PARTIAL_MARKER:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    (path / PARTIAL_MARKER).unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        pass


def is_partial(path: str | os.PathLike) -> bool:
    """True for an unfinished output folder (``*.partial-*`` with our marker): never data."""
    path = Path(path)
    return ".partial-" in path.name and (path / PARTIAL_MARKER).exists()


def glob_escape(name: str) -> str:
    """``name`` with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


