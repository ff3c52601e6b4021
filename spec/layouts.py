"""Bit-level layouts of every word that crosses the RTL's ports, each derived from one
:class:`~canna.spec.formats.FloatFormat`, and the one way to pack and unpack them.

Every width, bias and special encoding comes from the format table in :mod:`canna.spec.formats`,
so another ``(exp_bits, frac_bits)`` row needs no new code. Testbenches and drivers build port
words with :func:`pack` and read them with :func:`unpack`, from the field offsets of these
layouts; no bit offset is written by hand anywhere else.
"""
from __future__ import annotations

import numpy as np
from amaranth.lib import data

from .config import config_layout
from .formats import BINARY32, FloatFormat

__all__ = [
    "FLAGS_LAYOUT", "float_layout", "input_layout", "output_layout", "op_layout",
    "config_write_layout", "lanes_layout", "pack", "unpack", "unpack_lanes", "pack_inputs", "unpack_outputs", "check_format",
]

#: The five IEEE flags in TestFloat's bit order (bit 0 inexact ... bit 4 invalid).
FLAGS_LAYOUT = data.StructLayout({
    "inexact": 1, "underflow": 1, "overflow": 1, "infinite": 1, "invalid": 1,
})


def check_format(fmt) -> FloatFormat:
    if not isinstance(fmt, FloatFormat):
        raise TypeError(f"fmt must be a FloatFormat, got {fmt!r}")
    return fmt


def float_layout(fmt: FloatFormat = BINARY32) -> data.StructLayout:
    """An IEEE-style number, LSB first: ``frac``, ``exp``, ``sign``."""
    return data.StructLayout({"frac": fmt.frac_bits, "exp": fmt.exp_bits, "sign": 1})


def input_layout(fmt: FloatFormat = BINARY32) -> data.StructLayout:
    """Stream payload into the CFPU: ``a`` (bits 0..W-1), ``b``, then the configuration."""
    return data.StructLayout({
        "a": float_layout(fmt), "b": float_layout(fmt), "config": config_layout(fmt),
    })


def output_layout(fmt: FloatFormat = BINARY32) -> data.StructLayout:
    """Stream payload out of the CFPU: result ``bits``, the five ``flags``, ``hit``."""
    return data.StructLayout({"bits": fmt.width, "flags": FLAGS_LAYOUT, "hit": 1})


def op_layout(fmt: FloatFormat = BINARY32) -> data.StructLayout:
    """One lane operation: operands ``a``, ``b``; ``last`` ends the dot product; ``nop`` is a
    padding operation (no product, no counters)."""
    return data.StructLayout({"a": float_layout(fmt), "b": float_layout(fmt), "last": 1, "nop": 1})


def config_write_layout(fmt: FloatFormat = BINARY32, lanes: int = 16) -> data.StructLayout:
    """A configuration write to the lane array: ``config`` to lane ``lane``, or to every lane
    when ``broadcast``."""
    return data.StructLayout({"config": config_layout(fmt), "lane": range(max(lanes, 2)),
                              "broadcast": 1})


def lanes_layout(width: int, lanes: int) -> data.ArrayLayout:
    """One ``width``-bit word per lane, lane ``l`` in element ``l``: the array's tile results,
    accumulators and per-lane counters."""
    return data.ArrayLayout(width, lanes)


def _field_width(layout: data.Layout, name: str) -> tuple[int, int]:
    try:
        f = layout[name]
    except KeyError:
        raise KeyError(f"no field {name!r} in {layout!r}") from None
    return f.offset, f.width


def pack(layout: data.Layout, **fields) -> list[int]:
    """The integer values of ``layout`` for arrays of field values (broadcast together; a field
    not given is 0), as Python ints (a word may be wider than 64 bits). A value that does not
    fit its field raises ``ValueError``."""
    arrays = np.broadcast_arrays(*(np.asarray(v, dtype=np.uint64) for v in fields.values()))
    columns = []
    for (name, _), arr in zip(fields.items(), arrays):
        offset, width = _field_width(layout, name)
        if width < 64 and (arr >> np.uint64(width)).any():
            raise ValueError(f"a value of field {name!r} does not fit its {width} bits")
        columns.append((offset, arr.reshape(-1).tolist()))
    if len(columns) == 1:
        offset, col = columns[0]
        return [v << offset for v in col]
    offsets = [o for o, _ in columns]
    return [sum(v << o for v, o in zip(row, offsets)) for row in zip(*(c for _, c in columns))]


def unpack(layout: data.Layout, words, *names: str) -> dict[str, np.ndarray]:
    """The fields ``names`` (default: every top-level field) of integer ``layout`` values, as
    uint64 arrays."""
    words = [int(w) for w in words]
    out = {}
    for name in names or [n for n, _ in layout]:
        offset, width = _field_width(layout, name)
        mask = (1 << width) - 1
        out[name] = np.array([(w >> offset) & mask for w in words], dtype=np.uint64)
    return out


def unpack_lanes(words, width: int, lanes: int) -> np.ndarray:
    """:func:`lanes_layout` words as a (len(words), lanes) uint64 array."""
    if width in (8, 16, 32, 64):   # whole bytes per lane: one conversion per word (per-cycle probes)
        raw = b"".join(int(w).to_bytes(width // 8 * lanes, "little") for w in words)
        return np.frombuffer(raw, dtype=f"<u{width // 8}").astype(np.uint64).reshape(-1, lanes)
    f = unpack(lanes_layout(width, lanes), words)
    return np.stack([f[l] for l in range(lanes)], axis=-1).reshape(-1, lanes)


def pack_inputs(a, b, config_code, fmt: FloatFormat = BINARY32) -> list[int]:
    """CFPU input words (:func:`input_layout`) for arrays of operands and encoded configurations."""
    return pack(input_layout(fmt), a=a, b=b, config=config_code)


def unpack_outputs(words, fmt: FloatFormat = BINARY32):
    """Split CFPU output words (:func:`output_layout`) into (bits, flags, hit) numpy arrays."""
    f = unpack(output_layout(fmt), words, "bits", "flags", "hit")
    return f["bits"].astype(fmt.storage_dtype), f["flags"].astype(np.uint8), f["hit"].astype(bool)
