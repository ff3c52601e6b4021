"""The one report every RTL-vs-golden check prints when the two disagree (the CFPU, the adder
and the lane array): a head line naming what was compared and the seed, one line per differing
element (``label: expected ..., got ...``), how many more there are, and how to get more
(where the operands were saved, how to get a waveform)."""
from __future__ import annotations

from typing import Iterable, Sequence

__all__ = ["Mismatch", "report", "differences"]


class Mismatch(AssertionError):
    """The RTL disagrees with the golden model; the message is a reproducer (:func:`report`)."""


def differences(labels: Sequence[str], expected: Sequence[str], actual: Sequence[str], *,
                total: int, max_lines: int = 10, unit: str = "vectors") -> list[str]:
    """``N of total <unit> differ:`` and one ``label: expected E, got A`` line per difference
    (at most ``max_lines``, then ``... K more``)."""
    n = len(labels)
    lines = [f"{n} of {total} {unit} differ:"]
    lines += [f"  {lab}: expected {e}, got {a}"
              for lab, e, a in list(zip(labels, expected, actual))[:max_lines]]
    if n > max_lines:
        lines.append(f"  ... {n - max_lines} more")
    return lines


def report(what: str, *, seed, problems: Iterable[str], notes: Iterable[str] = ()) -> str:
    """``what, seed S`` then every problem line and note, indented."""
    return "\n".join([f"{what}, seed {seed}", *(f"  {p}" for p in problems),
                      *(f"  {n}" for n in notes)])
