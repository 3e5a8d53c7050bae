"""Run ``tdd-lite`` in a subprocess the way a user does, for the bad-input tables."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err

    @property
    def has_traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.text


def run_cli(*args: str, cwd: str | Path | None = None, env: dict | None = None, timeout: float = 300,
            stdin: str | None = None) -> Result:
    """``python -m tdd_lite.cli ARGS`` with TDD_DEBUG unset; returns exit code, stdout and stderr."""
    e = {k: v for k, v in os.environ.items() if k != "TDD_DEBUG"}
    e.setdefault("TDD_FAST", "1")
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    e.update(env or {})
    r = subprocess.run([sys.executable, "-m", "tdd_lite.cli", *map(str, args)], cwd=cwd, env=e, timeout=timeout,
                       capture_output=True, text=True, input=stdin)
    return Result(r.returncode, r.stdout, r.stderr)


def assert_one_line_error(r: Result, code: int, phrase: str, prog: str | None = None) -> None:
    """The bad-input contract: exit ``code``, no traceback, ``phrase`` in an ``error:`` line on stderr."""
    assert not r.has_traceback, r.text
    assert r.code == code, f"exit {r.code}, expected {code}:\n{r.text}"
    lines = [ln for ln in r.err.splitlines() if "error:" in ln]
    assert lines, f"no 'error:' line on stderr:\n{r.text}"
    if prog:
        assert lines[0].startswith(f"{prog}: error:"), lines[0]
    assert any(phrase.lower() in ln.lower() for ln in lines), f"{phrase!r} not in the error line:\n{r.err}"
