"""The ``canna`` console command. Each subcommand lives beside the code it drives and exposes
``register(subparsers)``; this module only collects them."""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# Modules that add subcommands, in the order `canna --help` lists them.
SUBCOMMAND_MODULES = [
    "canna.sim.mul_cli",
    "canna.sim.workload",
    "canna.nn.cli",
    "canna.repro.cli",
]


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``canna mul: error: ...``), exit status 2;
    ``--help`` still shows the full usage. Subcommand parsers inherit the class."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def path_arg(text: str) -> str:
    """argparse type of every file or directory option: an empty path is an error (it would
    silently mean "not given", or the current directory)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="canna", description="Configurable approximate binary32 arithmetic for neural networks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


#: Exit status when the reader of standard output went away: 128 + SIGPIPE, what a shell
#: reports for a Unix tool that SIGPIPE ended (``seq 1e9 | head -1``), so ``set -o pipefail``
#: sees the cut output the same way.
EXIT_BROKEN_PIPE = 141

# Errors of writing an output that the user can act on: reported in one line, exit status 2.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _discard_stdout() -> None:
    """Point standard output at /dev/null: what is still buffered then goes nowhere at exit,
    instead of failing a second time ("Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):   # no real file descriptor (captured output)
        pass


def run_command(prog: str, call) -> int:
    """``call()``'s exit status, with the endings every ``canna`` command shares:

    * :class:`CliError`: one line ``<prog>: error: <message>``, exit status 2;
    * Ctrl-C: ``<prog>: interrupted``, exit status 130;
    * standard output closed by its reader (``canna mul big.txt | head -1``): quiet, nothing on
      stderr, exit status :data:`EXIT_BROKEN_PIPE` (141), like a Unix tool ended by SIGPIPE;
    * an output that cannot be written (a full disk, ``> /dev/full``): one line
      ``<prog>: error: cannot write <file>: No space left on device``, exit status 2.

    Standard output is flushed before returning, so that its write errors surface here and
    not in the interpreter's final flush.
    """
    try:
        rc = int(call() or 0)
        sys.stdout.flush()
        return rc
    except CliError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as e:
        if e.errno not in _WRITE_ERRNOS:
            raise
        if e.filename is None:      # standard output: do not fail again at exit
            _discard_stdout()
        print(f"{prog}: error: cannot write {e.filename or '<stdout>'}: {e.strerror}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    """The ``canna`` command; how it ends on errors, Ctrl-C and closed or full outputs:
    :func:`run_command`."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:   # Ctrl-C while the subcommands' modules are still being imported
        print("canna: interrupted", file=sys.stderr)
        return 130
    return run_command(f"canna {args.command}", lambda: args.run(args))


if __name__ == "__main__":
    # `python -m canna.cli` runs this file as __main__, a second copy of the module: take main()
    # from canna.cli, so that it catches the CliError the subcommands raise
    from canna.cli import main as _main
    sys.exit(_main())
