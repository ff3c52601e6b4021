"""Bit-level layouts of the CFPU, all derived from one :class:`~canna.sim.formats.FloatFormat`.

Every width, bias and special encoding comes from the format table in :mod:`canna.sim.formats`,
so another ``(exp_bits, frac_bits)`` row needs no new hardware code.

The per-operation configuration is encoded here and only here (:func:`config_layout`,
:func:`encode_config`): ``enabled`` (1 bit), ``tuning_bits`` (enough bits for
``fmt.max_tuning_bits``: 5 for binary32) and ``policy`` (1 bit, 0 = ``b``, 1 = ``dual``).
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data
from amaranth.utils import bits_for

from canna.sim.config import CFPUConfig, Policy
from canna.sim.formats import BINARY32, FloatFormat

__all__ = [
    "FLAGS_LAYOUT", "KIND_FINITE", "KIND_ZERO", "KIND_INF", "KIND_NAN",
    "float_layout", "config_layout", "input_layout", "output_layout", "exp_shape",
    "encode_config", "encode_configs", "pack_inputs", "unpack_outputs", "check_format",
]

#: The five IEEE flags in TestFloat's bit order (bit 0 inexact ... bit 4 invalid).
FLAGS_LAYOUT = data.StructLayout({
    "inexact": 1, "underflow": 1, "overflow": 1, "infinite": 1, "invalid": 1,
})

# Result class of the exact path (2 bits), decided by :class:`canna.hw.stages.Unpack`.
KIND_FINITE, KIND_ZERO, KIND_INF, KIND_NAN = range(4)


def check_format(fmt) -> FloatFormat:
    if not isinstance(fmt, FloatFormat):
        raise TypeError(f"fmt must be a FloatFormat, got {fmt!r}")
    return fmt


def float_layout(fmt: FloatFormat) -> data.StructLayout:
    """An IEEE-style number, LSB first: ``frac``, ``exp``, ``sign``."""
    return data.StructLayout({"frac": fmt.frac_bits, "exp": fmt.exp_bits, "sign": 1})


def config_layout(fmt: FloatFormat) -> data.StructLayout:
    """The per-operation configuration carried with the operands."""
    return data.StructLayout({
        "enabled": 1,
        "tuning_bits": bits_for(fmt.max_tuning_bits),
        "policy": 1,
    })


def input_layout(fmt: FloatFormat) -> data.StructLayout:
    """Stream payload into the CFPU: ``a`` (bits 0..W-1), ``b``, then the configuration."""
    return data.StructLayout({
        "a": float_layout(fmt), "b": float_layout(fmt), "config": config_layout(fmt),
    })


def output_layout(fmt: FloatFormat) -> data.StructLayout:
    """Stream payload out of the CFPU: result ``bits``, the five ``flags``, ``hit``."""
    return data.StructLayout({"bits": fmt.width, "flags": FLAGS_LAYOUT, "hit": 1})


def exp_shape(fmt: FloatFormat) -> Shape:
    """Signed shape wide enough for every intermediate product exponent.

    The smallest is a subnormal times a subnormal after normalisation,
    ``1 + 1 - bias + 1 - (2F + 2)``; the largest ``2 (emax - 1) - bias + 2``.
    """
    lo = 3 - fmt.bias - (2 * fmt.frac_bits + 2)
    hi = 2 * (fmt.exp_max - 1) - fmt.bias + 2
    return Shape.cast(range(lo, hi + 1))


def encode_config(config: CFPUConfig, fmt: FloatFormat = BINARY32) -> int:
    """The integer value of :func:`config_layout` for one :class:`CFPUConfig`."""
    if not isinstance(config, CFPUConfig):
        raise TypeError(f"config must be a CFPUConfig, got {type(config).__name__}")
    if config.enabled and config.tuning_bits > fmt.max_tuning_bits:
        raise ValueError(f"tuning_bits must be in 0..{fmt.max_tuning_bits} for {fmt.name}")
    tb = bits_for(fmt.max_tuning_bits)
    enabled = int(config.enabled)
    tuning = config.tuning_bits if config.enabled else 0
    policy = int(config.policy is Policy.DUAL) if config.enabled else 0
    return enabled | (tuning << 1) | (policy << (1 + tb))


def encode_configs(enabled, tuning_bits, dual, fmt: FloatFormat = BINARY32) -> np.ndarray:
    """Vectorised :func:`encode_config` on arrays (``dual`` True for :attr:`Policy.DUAL`)."""
    tb = bits_for(fmt.max_tuning_bits)
    enabled = np.asarray(enabled, dtype=np.uint64)
    tuning = np.asarray(tuning_bits, dtype=np.uint64) * enabled
    dual = np.asarray(dual, dtype=np.uint64) * enabled
    return enabled | (tuning << np.uint64(1)) | (dual << np.uint64(1 + tb))


def pack_inputs(a, b, config_code, fmt: FloatFormat = BINARY32) -> list[int]:
    """Python ints of :func:`input_layout` for arrays of operands and encoded configurations."""
    w = fmt.width
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    c = np.broadcast_to(np.asarray(config_code, dtype=np.uint64), a.shape)
    return [int(x) | (int(y) << w) | (int(z) << (2 * w)) for x, y, z in zip(a.tolist(), b.tolist(), c.tolist())]


def unpack_outputs(words, fmt: FloatFormat = BINARY32):
    """Split :func:`output_layout` integers into (bits, flags, hit) numpy arrays."""
    w = fmt.width
    words = np.asarray([int(x) for x in words], dtype=np.uint64)
    bits = (words & np.uint64((1 << w) - 1)).astype(fmt.storage_dtype)
    flags = ((words >> np.uint64(w)) & np.uint64(0x1F)).astype(np.uint8)
    hit = ((words >> np.uint64(w + 5)) & np.uint64(1)).astype(bool)
    return bits, flags, hit
