"""The ``tdd-lite`` command: ``synth | check-data | train | evaluate | track | ablation | peers``.

Each subcommand lives in the module that does the work; that module defines ``add_arguments(parser)`` and
``run(args) -> int``. This file only dispatches (:func:`command_module` imports a command's module only when
it is used, so ``--help`` is instant); :mod:`tdd_lite.commands` turns user errors into one line,
``tdd-lite CMD: error: MESSAGE``: exit 2 for a usage error, 1 for bad data; the traceback is shown only with
``--debug`` (anywhere on the command line) or ``TDD_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from tdd_lite.commands import ArgumentParser, guarded, module_main, pop_debug, threads_then

__all__ = ["SUBCOMMANDS", "ArgumentParser", "build_parser", "command_module", "guarded", "main", "module_main",
           "pop_debug"]

SUBCOMMANDS: dict[str, str] = {
    "synth": "generate Synth300VW (synthetic videos in the 300VW layout)",
    "check-data": "validate a 300VW-layout folder and print a report",
    "train": "train G with the three displacement discriminators",
    "evaluate": "NME of G (the shipped reference, or a checkpoint) on 300VW-layout test videos (tracking protocol)",
    "track": "landmarks of a video or image folder (tracking protocol; the shipped reference G unless --checkpoint)",
    "ablation": "Table 3's discriminator grid x seeds, trained and evaluated, with tables",
    "peers": "off-the-shelf landmarkers (dlib, MediaPipe) on the same frames, same metrics (the 'peers' extra)",
}


def command_module(name: str) -> ModuleType:
    """The module that implements subcommand ``name`` (it defines ``add_arguments`` and ``run``).

    The imports are function-local on purpose: each command module pulls torch, OpenCV and more, and
    ``import tdd_lite`` / ``tdd-lite --help`` / ``tdd-lite CMD --help`` must import only what they use.
    """
    if name == "synth":
        from tdd_lite.data import synth as module
    elif name == "check-data":
        from tdd_lite.data import vw300 as module
    elif name == "train":
        from tdd_lite import train as module
    elif name == "evaluate":
        from tdd_lite import evaluate as module
    elif name == "track":
        from tdd_lite import track as module
    elif name == "ablation":
        from tdd_lite import experiments as module
    elif name == "peers":
        from tdd_lite import peers as module
    else:
        raise KeyError(name)
    return module


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="tdd-lite", description=__doc__.splitlines()[0],
                            epilog="--debug (anywhere) or TDD_DEBUG=1: show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            command_module(name).add_arguments(p)
    return parser


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
    module = command_module(args.command)
    return guarded(f"tdd-lite {args.command}", lambda: threads_then(module.run, args), debug)


if __name__ == "__main__":
    sys.exit(main())
