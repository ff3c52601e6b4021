"""Shapes used only inside the hardware; every port layout is in :mod:`canna.spec.layouts`."""
from __future__ import annotations

from amaranth.hdl import Shape

from canna.spec.formats import FloatFormat

__all__ = ["KIND_FINITE", "KIND_ZERO", "KIND_INF", "KIND_NAN", "exp_shape"]

# Result class of the exact path (2 bits), decided by :class:`canna.hw.stages.Unpack`.
KIND_FINITE, KIND_ZERO, KIND_INF, KIND_NAN = range(4)


def exp_shape(fmt: FloatFormat) -> Shape:
    """Signed shape wide enough for every intermediate product exponent.

    The smallest is a subnormal times a subnormal after normalisation,
    ``1 + 1 - bias + 1 - (2F + 2)``; the largest ``2 (emax - 1) - bias + 2``.
    """
    lo = 3 - fmt.bias - (2 * fmt.frac_bits + 2)
    hi = 2 * (fmt.exp_max - 1) - fmt.bias + 2
    return Shape.cast(range(lo, hi + 1))
