"""The exact multiply's cycles (``exact_cycles``): an assumed integer, or the value that ``make fpga``
measured (``build/fpga/fpga.json``: the exact product path's delay over the approximate path's,
rounded up; docs/fpga.md), with a line saying which of the two a report used."""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import NamedTuple

from .paths import build_root

__all__ = ["ExactCycles", "ASSUMED", "fpga_report_path", "rtl_sources_digest", "measured_exact_cycles",
           "resolve_exact_cycles", "exact_cycles_arg"]

#: The source of a value given as an integer.
ASSUMED = "assumed"


class ExactCycles(NamedTuple):
    """An ``exact_cycles`` value and where it came from (``"assumed"`` or the measurement)."""
    value: int
    source: str


def fpga_report_path() -> Path:
    """Where ``make fpga`` writes its report."""
    return build_root() / "fpga" / "fpga.json"


def rtl_sources_digest() -> str:
    """SHA-256 of the RTL's sources (``canna.hw`` and ``canna.spec``): a measurement made on other
    sources is stale (conservative: any edit there asks for ``make fpga`` again)."""
    import canna.hw
    import canna.spec
    h = hashlib.sha256()
    for package in (canna.hw, canna.spec):
        root = Path(package.__file__).parent
        for f in sorted(root.glob("*.py")):
            h.update(f"{package.__name__}/{f.name}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def measured_exact_cycles(path=None, option: str = "--exact-cycles") -> ExactCycles:
    """The ``exact_cycles`` measured by ``make fpga``; ``ValueError`` (one line, naming
    ``option``) when the report is missing or holds no measurement."""
    path = Path(path) if path is not None else fpga_report_path()
    if not path.is_file():
        raise ValueError(f"{option} measured: {path} not found (run `make fpga` first)")
    try:
        latency = json.loads(path.read_text())["latency"]
        value, source = latency["exact_cycles"], latency["source"]
        measured_on = latency.get("rtl_sources")
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{option} measured: {path} holds no exact_cycles measurement "
                         f"(run `make fpga` again)") from None
    if measured_on != rtl_sources_digest():
        raise ValueError(f"{option} measured: {path} was measured on other RTL sources (hw/ or spec/ "
                         f"changed since; run `make fpga` again)")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option} measured: {path} has exact_cycles {value!r}, not an integer >= 1 "
                         f"(run `make fpga` again)")
    return ExactCycles(value, str(source))


def resolve_exact_cycles(value, option: str = "--exact-cycles", path=None) -> ExactCycles:
    """``value`` (an integer >= 1, or its text) as assumed, or ``"measured"``: the value in the
    ``make fpga`` report (``path``, default :func:`fpga_report_path`). ``ValueError`` in one
    line naming ``option`` otherwise."""
    if isinstance(value, str):
        text = value.strip()
        if text == "measured":
            return measured_exact_cycles(path, option)
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{option} must be an integer >= 1 or 'measured', got {text!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option} must be an integer >= 1 or 'measured', got {value!r}")
    return ExactCycles(value, ASSUMED)


def exact_cycles_arg(text: str) -> ExactCycles:
    """argparse type of ``--exact-cycles``: an integer >= 1 or ``measured`` (a bad value or a
    missing report is the parser's one-line error, exit 2)."""
    try:
        return resolve_exact_cycles(text)
    except ValueError as e:
        # argparse prefixes "argument --exact-cycles: "; drop the option name from the message
        raise argparse.ArgumentTypeError(str(e).removeprefix("--exact-cycles ")) from None
