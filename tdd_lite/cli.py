"""The ``tdd-lite`` command: ``synth | check-data | train | evaluate``.

Each subcommand lives in the module that does the work; that module defines ``add_arguments(parser)`` and
``run(args) -> int``. This file only dispatches (modules are imported lazily so ``--help`` is instant).
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("tdd_lite.data.synth", "generate Synth300VW (synthetic videos in the 300VW layout)"),
    "check-data": ("tdd_lite.data.vw300", "validate a 300VW-layout folder and print a report"),
    "train": ("tdd_lite.train", "train G with the three displacement discriminators"),
    "evaluate": ("tdd_lite.evaluate", "NME of a checkpoint on 300VW-layout test videos (tracking protocol)"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tdd-lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            try:
                importlib.import_module(module).add_arguments(p)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
