"""The output rule (tdd_lite.files): a command writes only into an output it made and replaces only what it wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tdd_lite.errors import OutputExistsError, UsageError
from tdd_lite.files import (
    MARKER,
    claim_folder,
    interrupt_cleanup,
    read_marker,
    record_files,
    replace_own,
    sha256_file,
    write_file,
    writing,
)

from ._cli import ROOT


def test_new_folder_is_created_and_marked(tmp_path):
    out = claim_folder(tmp_path / "a" / "b", "evaluate")
    assert out.created and out.path.is_dir()
    info = read_marker(out.path)
    assert info["command"] == "evaluate" and info["files"] == {} and "created" in info
    write_file(out, "report.md", "hello\n")
    write_file(out, "sub/x.txt", b"bytes")
    info = read_marker(out.path)
    assert info["files"] == {"report.md": sha256_file(out.path / "report.md"),
                             "sub/x.txt": sha256_file(out.path / "sub/x.txt")}
    assert (out.path / "report.md").read_text() == "hello\n"


def test_dry_run_creates_nothing(tmp_path):
    out = claim_folder(tmp_path / "new", "track", dry_run=True)
    assert out.created and not (tmp_path / "new").exists()


def test_an_empty_folder_is_adopted_not_created(tmp_path):
    (tmp_path / "empty").mkdir()
    out = claim_folder(tmp_path / "empty", "track")
    assert not out.created and read_marker(out.path)["command"] == "track"


def test_refusals_name_the_path_and_change_nothing(tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(user)
    for path, phrase in [(f, "is a file"), (user, "did not write"), (link, "symbolic link")]:
        with pytest.raises(OutputExistsError, match=str(path.name)) as e:
            claim_folder(path, "evaluate", overwrite=True, option="--out")
        assert isinstance(e.value, UsageError) and e.value.exit_code == 2
        assert phrase in str(e.value) and "\n" not in str(e.value) and "--out" in str(e.value)
    assert f.read_text() == "mine" and (user / "notes.txt").read_text() == "mine"
    assert not (user / MARKER).exists()


def test_another_commands_folder_is_refused_even_with_overwrite(tmp_path):
    out = claim_folder(tmp_path / "o", "train")
    write_file(out, "ckpt.pt", b"x")
    with pytest.raises(OutputExistsError, match="made by tdd-lite train"):
        claim_folder(out.path, "evaluate", overwrite=True)
    assert (out.path / "ckpt.pt").read_bytes() == b"x"


def test_own_folder_needs_overwrite_and_then_replaces_only_listed_files(tmp_path):
    out = claim_folder(tmp_path / "o", "evaluate")
    write_file(out, "report.md", "old")
    write_file(out, "streams.npz", b"old")
    (out.path / "my_notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        claim_folder(out.path, "evaluate")
    again = claim_folder(out.path, "evaluate", overwrite=True)
    assert again.existed and not again.created
    write_file(again, "report.md", "new")
    assert replace_own(again, keep=again.written) == ["streams.npz"]
    assert sorted(p.name for p in out.path.iterdir()) == sorted([MARKER, "report.md", "my_notes.txt"])
    assert (out.path / "report.md").read_text() == "new"
    assert (out.path / "my_notes.txt").read_text() == "mine"
    assert set(read_marker(out.path)["files"]) == {"report.md"}


def test_a_marked_folder_with_nothing_written_is_reused_without_overwrite(tmp_path):
    out = claim_folder(tmp_path / "o", "track")  # e.g. a run killed before it wrote anything
    assert claim_folder(out.path, "track").existed


def test_an_edited_output_file_is_never_replaced(tmp_path):
    out = claim_folder(tmp_path / "o", "evaluate")
    write_file(out, "report.md", "ours")
    (out.path / "report.md").write_text("the user edited it")
    with pytest.raises(OutputExistsError, match="report.md was changed"):
        claim_folder(out.path, "evaluate", overwrite=True)
    with pytest.raises(OutputExistsError, match="changed"):
        write_file(out, "report.md", "again")
    assert replace_own(out) == []
    assert (out.path / "report.md").read_text() == "the user edited it"


def test_write_refuses_unlisted_files_folders_and_links(tmp_path):
    (tmp_path / "o").mkdir()
    out = claim_folder(tmp_path / "o", "evaluate")
    (out.path / "report.md").write_text("user")  # put there after the claim
    (out.path / "streams.npz").mkdir()
    (out.path / "l.txt").symlink_to(tmp_path / "elsewhere.txt")
    for rel, phrase in [("report.md", "not written by tdd-lite"), ("streams.npz", "is a folder"),
                        ("l.txt", "symbolic link")]:
        with pytest.raises(OutputExistsError, match=phrase) as e:
            write_file(out, rel, "x")
        assert str(out.path / rel) in str(e.value)
    assert (out.path / "report.md").read_text() == "user" and not (tmp_path / "elsewhere.txt").exists()
    assert [p.name for p in out.path.iterdir() if ".tmp-" in p.name] == []
    with pytest.raises(ValueError):
        write_file(out, "../escape.txt", "x")


def test_writing_yields_a_temp_with_the_same_suffix_and_cleans_up_on_error(tmp_path):
    out = claim_folder(tmp_path / "o", "evaluate")
    with writing(out, "s.npz") as tmp:
        assert tmp.suffix == ".npz" and tmp.parent == out.path
        tmp.write_bytes(b"data")
    assert (out.path / "s.npz").read_bytes() == b"data"
    with pytest.raises(RuntimeError):
        with writing(out, "t.npz") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError
    assert sorted(p.name for p in out.path.iterdir()) == [MARKER, "s.npz"]


def test_record_files_hashes_what_the_command_wrote(tmp_path):
    out = claim_folder(tmp_path / "o", "track")
    (out.path / "annot").mkdir()
    (out.path / "annot" / "000001.pts").write_text("pts")
    record_files(out, [out.path / "annot" / "000001.pts"])
    assert read_marker(out.path)["files"] == {"annot/000001.pts": sha256_file(out.path / "annot" / "000001.pts")}


def test_damaged_marker_is_refused(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / MARKER).write_text("{not json")
    with pytest.raises(OutputExistsError, match="damaged"):
        claim_folder(tmp_path / "o", "track", overwrite=True)
    (tmp_path / "o" / MARKER).write_text(json.dumps([1, 2]))
    with pytest.raises(OutputExistsError, match="damaged"):
        claim_folder(tmp_path / "o", "track", overwrite=True)


def test_an_error_inside_removes_a_folder_this_run_created_but_not_an_adopted_one(tmp_path):
    out = claim_folder(tmp_path / "o", "evaluate")
    with pytest.raises(KeyboardInterrupt):
        with interrupt_cleanup(out):
            write_file(out, "report.md", "x")
            raise KeyboardInterrupt
    assert not out.path.exists()
    (tmp_path / "mine").mkdir()
    out = claim_folder(tmp_path / "mine", "evaluate")
    with pytest.raises(KeyboardInterrupt):
        with interrupt_cleanup(out):
            raise KeyboardInterrupt
    assert (tmp_path / "mine").is_dir()


def test_an_earlier_output_survives_an_interrupted_overwrite_except_what_was_rewritten(tmp_path):
    out = claim_folder(tmp_path / "o", "evaluate")
    write_file(out, "report.md", "old")
    (out.path / "notes.txt").write_text("mine")
    again = claim_folder(out.path, "evaluate", overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        with interrupt_cleanup(again):
            raise KeyboardInterrupt
    assert (out.path / "report.md").read_text() == "old" and (out.path / "notes.txt").read_text() == "mine"


def test_sigterm_removes_the_folder_the_run_created(tmp_path):
    target = tmp_path / "o"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tdd_lite.files import claim_folder, interrupt_cleanup, write_file
        out = claim_folder({str(target)!r}, "track")
        with interrupt_cleanup(out):
            write_file(out, "a.txt", "x")
            print("ready", flush=True)
            time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    assert (target / "a.txt").exists()
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 143
    assert not target.exists()


def test_temp_files_of_a_killed_run_are_removed_by_the_next_claim(tmp_path):
    out = claim_folder(tmp_path / "o", "evaluate")
    write_file(out, "report.md", "x")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out.path / f".streams.tmp-{dead.pid}-abc123.npz"
    stale.write_bytes(b"half")
    user = out.path / ".streams.tmp-keep.npz"  # does not match the pattern: not ours
    user.write_bytes(b"u")
    time.sleep(0.01)
    claim_folder(out.path, "evaluate", overwrite=True)
    assert not stale.exists() and user.exists()


def test_read_only_folder_fails_with_an_oserror_not_a_traceback_worthy_bug(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OSError):
            claim_folder(ro / "out", "evaluate")
    finally:
        ro.chmod(0o700)
