"""How every command runs: one-line errors, ``--debug``, the default torch threads (foundation, no I/O of its own).

``tdd-lite CMD`` (:mod:`tdd_lite.cli`) and the ``python -m tdd_lite.X`` entry points (e.g. under ``torchrun``) run
a command's ``run(args)`` through :func:`guarded`, which turns user errors into one line,
``PROG: error: MESSAGE``: exit 2 for a usage error, 1 for bad data; the traceback is shown only with ``--debug``
(anywhere on the command line) or ``TDD_DEBUG=1``. Command modules import this module, never :mod:`tdd_lite.cli`.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable

from tdd_lite.errors import TddError, debug_enabled


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (``PROG: error: MESSAGE (see PROG --help)``, exit 2) instead of usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def guarded(prog: str, fn: Callable[[], int | None], debug: bool = False) -> int:
    """Run ``fn`` and map what escapes it to an exit status and one line on stderr.

    ``TddError`` -> its ``exit_code`` (1 data, 2 usage); ``OSError`` (missing file, permission, full disk)
    -> 1; ``KeyboardInterrupt`` -> 130; anything else is a bug: one line asking for ``--debug``, exit 1.
    """
    debug = debug or debug_enabled()
    try:
        return int(fn() or 0)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - every escape becomes one line (a traceback only with --debug)
        if debug:
            traceback.print_exc()
        if isinstance(e, KeyboardInterrupt):
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        if isinstance(e, TddError):
            code, text = e.exit_code, str(e)
        elif isinstance(e, OSError):
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            code, text = 1, f"{where}{e.strerror or e}"
        elif isinstance(e, Exception):  # a bug, not a user error
            code, text = 1, f"internal error ({type(e).__name__}: {e}); rerun with --debug and report the traceback"
        else:
            raise
    print(f"{prog}: error: {text}", file=sys.stderr)
    return code


def pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Remove ``--debug`` from ``argv`` wherever it stands; True if it was there."""
    return [a for a in argv if a != "--debug"], "--debug" in argv


def threads_then(run: Callable, args: argparse.Namespace) -> int | None:
    """``run(args)`` after :func:`tdd_lite.config.apply_default_threads`."""
    # function-local: tdd_lite.config imports torch, and `tdd-lite --help` must not pay for it
    from tdd_lite.config import apply_default_threads

    apply_default_threads()  # a busy machine must not make torch's threads spin-wait (see default_threads)
    return run(args)


def module_main(prog: str, add_arguments: Callable, run: Callable, argv: list[str] | None = None,
                description: str = "") -> int:
    """``python -m tdd_lite.X`` entry points (e.g. under ``torchrun``) with the same error handling."""
    argv, debug = pop_debug(sys.argv[1:] if argv is None else list(argv))
    parser = ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return guarded(prog, lambda: threads_then(run, args), debug)
