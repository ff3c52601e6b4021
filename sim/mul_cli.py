"""``canna mul``: stream TestFloat-format f32_mul vectors through a CFPU backend.

Input lines: ``AAAAAAAA BBBBBBBB [RRRRRRRR [FF]]`` (hex, as ``testfloat_gen f32_mul`` writes).
Output lines: ``AAAAAAAA BBBBBBBB RRRRRRRR FF H`` (H = 1 where the product was an approximate hit).
Where the input carries expected results they are checked; any mismatch exits with status 1.
Fields are separated by ASCII whitespace only (space, tab, VT, FF, CR); any other control
character, or a non-ASCII byte, is an error naming the line. A closed output pipe ends the
command quietly (exit status 141) and a full disk is one line, exit 2
(:func:`canna.cli.run_command`).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import sys
from dataclasses import dataclass

import numpy as np

from canna.cli import CliError, path_arg

from canna.spec.config import CFPUConfig, MAX_TUNING_BITS, Policy
from . import golden

# Backend name -> "module:function". A backend takes (a, b, config, **options) with uint32
# arrays and returns a golden.MulResult. RTL backends are imported only when asked for.
BACKENDS = {
    "golden": "canna.sim.golden:mul_bits",
    "amaranth": "canna.sim.cfpu_cosim:mul_amaranth",
    "verilator": "canna.sim.cfpu_cosim:mul_verilator",
}


def load_backend(name: str):
    try:
        target = BACKENDS[name]
    except KeyError:
        raise CliError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}") from None
    module, func = target.split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise CliError(f"backend {name!r} is not available: {e}") from None


@dataclass
class Vectors:
    a: np.ndarray
    b: np.ndarray
    expected: np.ndarray      # uint32; meaningful where has_result
    expected_flags: np.ndarray
    has_result: np.ndarray    # bool
    has_flags: np.ndarray     # bool
    line: np.ndarray          # the input line of each vector (1-based)


HEX = re.compile(r"[0-9A-Fa-f]+")
# Anything but printable ASCII and ASCII whitespace. str.split() alone would also split on
# \x1c-\x1f, \x85 and the Unicode separators.
NOT_ALLOWED = re.compile(r"[^\x21-\x7e \t\n\r\x0b\x0c]")


def _describe(ch: str) -> str:
    if "\udc80" <= ch <= "\udcff":          # a non-ASCII byte, decoded with surrogateescape
        return f"non-ASCII byte 0x{ord(ch) - 0xDC00:02X}"
    return f"character {ch!r}" + (" (not ASCII)" if ord(ch) > 0x7F else " (a control character)")


def parse_vectors(lines, source: str = "<stdin>") -> Vectors:
    """Parse TestFloat f32_mul lines; raise ValueError naming the first malformed line."""
    a, b, r, f, hr, hf, ln = [], [], [], [], [], [], []
    for lineno, line in enumerate(lines, 1):
        bad = NOT_ALLOWED.search(line)
        if bad:
            raise ValueError(f"{source}:{lineno}: {_describe(bad.group())}; fields are separated "
                             f"by ASCII spaces or tabs")
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 4:
            raise ValueError(f"{source}:{lineno}: expected 2 to 4 hex fields, got {len(fields)}")
        widths = (8, 8, 8, 2)
        values = []
        for field, width in zip(fields, widths):
            if len(field) != width:
                raise ValueError(
                    f"{source}:{lineno}: field {field!r} must have exactly {width} hex digits")
            # int(x, 16) alone would also take signs, "0x" and "_"
            if not HEX.fullmatch(field):
                raise ValueError(f"{source}:{lineno}: field {field!r} is not hexadecimal")
            values.append(int(field, 16))
        if len(values) < 2:
            raise ValueError(f"{source}:{lineno}: expected 2 to 4 hex fields, got {len(values)}")
        if len(values) == 4 and values[3] > 0x1F:
            raise ValueError(f"{source}:{lineno}: flags {fields[3]} use bits above the five IEEE flags")
        a.append(values[0])
        b.append(values[1])
        r.append(values[2] if len(values) > 2 else 0)
        f.append(values[3] if len(values) > 3 else 0)
        hr.append(len(values) > 2)
        hf.append(len(values) > 3)
        ln.append(lineno)
    return Vectors(np.array(a, dtype=np.uint32), np.array(b, dtype=np.uint32),
                   np.array(r, dtype=np.uint32), np.array(f, dtype=np.uint8),
                   np.array(hr, dtype=bool), np.array(hf, dtype=bool), np.array(ln, dtype=np.int64))


def _is_nan(bits: np.ndarray) -> np.ndarray:
    return ((bits >> 23) & 0xFF == 0xFF) & ((bits & 0x7FFFFF) != 0)


def compare(vec: Vectors, result: golden.MulResult, check_nans: bool) -> np.ndarray:
    """Mask of vectors whose expected result or flags differ from ``result``."""
    same = result.bits == vec.expected
    if not check_nans:
        same |= _is_nan(result.bits) & _is_nan(vec.expected)
    bad = vec.has_result & ~same
    bad |= vec.has_flags & (result.flags != vec.expected_flags)
    return bad


def register(sub) -> None:
    p = sub.add_parser("mul", help="multiply TestFloat-format f32_mul vectors through a CFPU backend",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("input", nargs="?", default="-", help="vector file (default: stdin)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--tuning-bits", "-t", type=int, metavar="T",
                      help=f"approximate mode with T tuning bits (0..{MAX_TUNING_BITS})")
    mode.add_argument("--exact", action="store_true",
                      help="approximation off (the default when no tuning bits are given)")
    p.add_argument("--policy", default="b", help="whose mantissa may be discarded: b or dual (default b)")
    p.add_argument("--backend", default="golden", help=f"one of: {', '.join(BACKENDS)} (default golden)")
    p.add_argument("--check-nans", action="store_true",
                   help="require NaN results to match bit for bit (default: any NaN matches any NaN)")
    p.add_argument("--vcd", metavar="FILE", type=path_arg, help="write a waveform of the run (RTL backends only)")
    p.add_argument("--output", "-o", default="-", type=path_arg, help="where to write result lines (default stdout)")
    p.add_argument("--max-mismatches", type=int, default=10, help="mismatches to print (default 10)")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.tuning_bits is None:
        config = CFPUConfig.exact()
    else:
        try:
            config = CFPUConfig.approx(args.tuning_bits, args.policy)
        except (TypeError, ValueError) as e:
            raise CliError(str(e)) from None
    if args.policy not in {p.value for p in Policy}:
        raise CliError(f"unknown policy {args.policy!r}; expected b or dual")
    if args.max_mismatches < 0:
        raise CliError(f"--max-mismatches must be >= 0, got {args.max_mismatches}")
    backend = load_backend(args.backend)

    source = "<stdin>" if args.input == "-" else args.input
    try:
        # Bytes that are not ASCII are kept (surrogateescape) for parse_vectors to name their line.
        if args.input == "-" and hasattr(sys.stdin, "buffer"):
            stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="ascii", errors="surrogateescape")
            try:
                vec = parse_vectors(stdin, source)
            finally:
                stdin.detach()    # leave sys.stdin open
        elif args.input == "-":
            vec = parse_vectors(sys.stdin, source)
        else:
            with open(args.input, encoding="ascii", errors="surrogateescape") as fh:
                vec = parse_vectors(fh, source)
    except OSError as e:
        raise CliError(f"cannot read {source}: {e.strerror}") from None
    except ValueError as e:
        raise CliError(str(e)) from None

    options = {"vcd": args.vcd} if args.vcd else {}
    if options and args.backend == "golden":
        raise CliError("--vcd needs an RTL backend (amaranth or verilator)")
    vcd_made = False
    try:
        # Open the outputs before the (possibly long) run, so that a bad path fails at once; the
        # waveform first (append mode: an existing one is not truncated), so that a bad --vcd
        # leaves no empty (or truncated) result file behind.
        if args.vcd:
            vcd_made = not os.path.lexists(args.vcd)
            open(args.vcd, "a").close()
        out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="ascii")
    except OSError as e:
        if vcd_made:
            with contextlib.suppress(OSError):
                os.unlink(args.vcd)
        raise CliError(f"cannot write {e.filename}: {e.strerror}") from None
    result = backend(vec.a, vec.b, config, **options)

    try:
        try:
            for a, b, r, f, h in zip(vec.a.tolist(), vec.b.tolist(), result.bits.tolist(),
                                     result.flags.tolist(), result.hit.tolist()):
                out.write(f"{a:08X} {b:08X} {r:08X} {f:02X} {int(h)}\n")
            out.flush()   # a write error shows now, before the summary, not at exit
        finally:
            if out is not sys.stdout:
                out.close()
    except OSError as e:
        if out is sys.stdout:
            raise         # canna.cli.run_command: a closed pipe ends quietly, a full disk is one line
        raise CliError(f"cannot write {args.output}: {e.strerror}") from None

    n = len(vec.a)
    hits = int(result.hit.sum())
    checked = int(vec.has_result.sum())
    summary = (f"canna mul: {n} vectors, backend {args.backend}, {config.describe()}, "
               f"{hits} hits ({100.0 * hits / max(n, 1):.2f}%)")
    if checked == 0:
        print(summary + ", no expected results to check", file=sys.stderr)
        return 0
    bad = compare(vec, result, args.check_nans)
    nbad = int(bad.sum())
    print(f"{summary}, {checked} checked, {nbad} mismatches", file=sys.stderr)
    for i in np.flatnonzero(bad)[: args.max_mismatches]:
        exp_flags = f"{vec.expected_flags[i]:02X}" if vec.has_flags[i] else "--"
        print(f"  mismatch line {vec.line[i]}: {vec.a[i]:08X} * {vec.b[i]:08X}: expected "
              f"{vec.expected[i]:08X} {exp_flags}, got {result.bits[i]:08X} {result.flags[i]:02X} "
              f"hit={int(result.hit[i])}", file=sys.stderr)
    return 1 if nbad else 0
