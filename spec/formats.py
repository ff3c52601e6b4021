"""Floating-point formats as (exponent bits, fraction bits): the one table every layer reads.

Adding a format means adding one row here; the golden model and the RTL generator derive every
field width, bias and special encoding from it (the convention of Berkeley HardFloat and CVFPU).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FloatFormat", "FORMATS", "BINARY32", "BFLOAT16", "BINARY16", "get_format"]


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-754-style binary format.

    Parameters
    ----------
    name : str
        Name used on the command line and in reports.
    exp_bits : int
        Width of the biased exponent field.
    frac_bits : int
        Width of the stored fraction (the significand has ``frac_bits + 1`` bits).
    """

    name: str
    exp_bits: int
    frac_bits: int

    def __post_init__(self):
        if not 2 <= self.exp_bits <= 11 or not 2 <= self.frac_bits <= 30:
            raise ValueError(f"unsupported format ({self.exp_bits}, {self.frac_bits})")

    @property
    def width(self) -> int:
        return 1 + self.exp_bits + self.frac_bits

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def exp_max(self) -> int:
        """The all-ones exponent field (infinities and NaNs)."""
        return (1 << self.exp_bits) - 1

    @property
    def frac_mask(self) -> int:
        return (1 << self.frac_bits) - 1

    @property
    def sign_bit(self) -> int:
        return 1 << (self.exp_bits + self.frac_bits)

    @property
    def canonical_nan(self) -> int:
        """The one NaN every operation returns (RISC-V convention: positive, quiet, zero payload)."""
        return (self.exp_max << self.frac_bits) | (1 << (self.frac_bits - 1))

    @property
    def max_tuning_bits(self) -> int:
        """Fraction bits left after the first one (m1), which decides the exponent bump."""
        return self.frac_bits - 1

    @property
    def storage_dtype(self):
        return np.uint32 if self.width > 16 else np.uint16


BINARY32 = FloatFormat("binary32", 8, 23)
BFLOAT16 = FloatFormat("bfloat16", 8, 7)
BINARY16 = FloatFormat("binary16", 5, 10)

FORMATS = {f.name: f for f in (BINARY32, BFLOAT16, BINARY16)}


def get_format(name: str) -> FloatFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}") from None
