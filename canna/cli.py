"""The ``canna`` console command. Each subcommand lives beside the code it drives and exposes
``register(subparsers)``; this module only collects them."""
from __future__ import annotations

import argparse
import importlib
import sys

# Modules that add subcommands, in the order `canna --help` lists them.
SUBCOMMAND_MODULES = [
    "canna.sim.mul_cli",
    "canna.sim.workload",
    "canna.nn.cli",
]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``canna mul: error: ...``), exit status 2;
    ``--help`` still shows the full usage. Subcommand parsers inherit the class."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="canna", description="Configurable approximate binary32 arithmetic for neural networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CliError as e:
        print(f"canna {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"canna {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
