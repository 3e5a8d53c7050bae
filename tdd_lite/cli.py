"""The ``tdd-lite`` command: ``synth | check-data | train | evaluate | track | ablation | peers``.

Each subcommand lives in the module that does the work; that module defines ``add_arguments(parser)`` and
``run(args) -> int``. This file only dispatches (modules are imported lazily so ``--help`` is instant) and
turns user errors into one line, ``tdd-lite CMD: error: MESSAGE``: exit 2 for a usage error, 1 for bad data;
the traceback is shown only with ``--debug`` (anywhere on the command line) or ``TDD_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable

from tdd_lite.errors import TddError, debug_enabled

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("tdd_lite.data.synth", "generate Synth300VW (synthetic videos in the 300VW layout)"),
    "check-data": ("tdd_lite.data.vw300", "validate a 300VW-layout folder and print a report"),
    "train": ("tdd_lite.train", "train G with the three displacement discriminators"),
    "evaluate": ("tdd_lite.evaluate", "NME of G (the shipped reference, or a checkpoint) on 300VW-layout test "
                 "videos (tracking protocol)"),
    "track": ("tdd_lite.track", "landmarks of a video or image folder (tracking protocol; the shipped reference G "
              "unless --checkpoint)"),
    "ablation": ("tdd_lite.experiments", "Table 3's discriminator grid x seeds, trained and evaluated, with tables"),
    "peers": ("tdd_lite.peers", "off-the-shelf landmarkers (dlib, MediaPipe) on the same frames, same metrics "
              "(the 'peers' extra)"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (``PROG: error: MESSAGE (see PROG --help)``, exit 2) instead of usage."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="tdd-lite", description=__doc__.splitlines()[0],
                            epilog="--debug (anywhere) or TDD_DEBUG=1: show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            try:
                importlib.import_module(module).add_arguments(p)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
    return parser


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


def main(argv: list[str] | None = None) -> int:
    argv, debug = pop_debug(sys.argv[1:] if argv is None else list(argv))
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(only=command)
    args, extra = parser.parse_known_args(argv)
    if extra:  # report an unknown option under the subcommand's name (argparse would use the top level's)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        (sub.choices.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return guarded(f"tdd-lite {args.command}", lambda: _threads_then(module.run, args), debug)


def _threads_then(run: Callable, args: argparse.Namespace) -> int | None:
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
    return guarded(prog, lambda: _threads_then(run, args), debug)


if __name__ == "__main__":
    sys.exit(main())
