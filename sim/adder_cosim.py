"""The lanes' accumulator (:class:`canna.hw.adder.FAdd`) Verilated and driven from C++
(``sim/adder_driver.cpp``), checked against :func:`canna.sim.golden.add_bits` (bits and flags).

``build_adder()`` Verilates ``FAdd`` and compiles it with the driver into one shared library,
cached by content hash (Verilog, driver, flags, Verilator version) under ``build/adder/``
(``CANNA_BUILD_DIR``). ``run_adder(a, b)`` returns the RTL's ``(bits, flags)``;
``check_adder(a, b, seed=...)`` raises :class:`AdderMismatch` naming the seed, the operands and
the expected and actual results of the first mismatches.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from . import golden
from .mismatch import Mismatch, differences, report
from .paths import build_root
from .rtl_build import adder_verilog, verilated_library

__all__ = ["AdderMismatch", "build_adder", "run_adder", "check_adder"]

VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style")
CXX_FLAGS = ("-fno-strict-aliasing", "-w", "-O1")
_loaded: dict = {}


class AdderMismatch(Mismatch):
    """The Verilated adder disagrees with golden.add_bits; the message is a reproducer."""


def build_adder(*, quiet: bool = True) -> Path:
    """Verilate FAdd and build it with the driver (cached); returns the library path."""
    return verilated_library("fadd", adder_verilog(), top="fadd",
                             driver=Path(__file__).with_name("adder_driver.cpp"),
                             root=build_root() / "adder", verilator_flags=VERILATOR_FLAGS,
                             cxx_fast=CXX_FLAGS, quiet=quiet)


def _handle():
    if "h" not in _loaded:
        lib = ctypes.CDLL(str(build_adder()))
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.canna_adder_new.restype = p
        lib.canna_adder_run.argtypes = [p, i64, p, p, p, p]
        lib.canna_adder_run.restype = None
        _loaded["lib"], _loaded["h"] = lib, lib.canna_adder_new()
    return _loaded["lib"], _loaded["h"]


def run_adder(a, b) -> tuple[np.ndarray, np.ndarray]:
    """The Verilated FAdd on uint32 bit patterns: ``(bits uint32, flags uint8)``."""
    a = np.ascontiguousarray(a, dtype=np.uint32)
    b = np.ascontiguousarray(b, dtype=np.uint32)
    if a.shape != b.shape:
        raise ValueError(f"operand shapes differ: {a.shape} and {b.shape}")
    lib, h = _handle()
    bits = np.empty(a.shape, np.uint32)
    flags = np.empty(a.shape, np.uint8)
    lib.canna_adder_run(h, a.size, a.ctypes.data, b.ctypes.data, bits.ctypes.data,
                        flags.ctypes.data)
    return bits, flags


def check_adder(a, b, *, seed=None, max_lines: int = 10) -> int:
    """Run the vectors through the Verilated adder and compare bits and flags with
    golden.add_bits; returns the vector count or raises :class:`AdderMismatch`."""
    a = np.ascontiguousarray(a, dtype=np.uint32).reshape(-1)
    b = np.ascontiguousarray(b, dtype=np.uint32).reshape(-1)
    bits, flags = run_adder(a, b)
    ref = golden.add_bits(a, b)
    bad = (bits != ref.bits) | (flags != ref.flags)
    if bad.any():
        idx = np.flatnonzero(bad)
        problems = differences(
            [f"#{i} a={int(a[i]):08X} b={int(b[i]):08X}" for i in idx],
            [f"{int(ref.bits[i]):08X} flags {int(ref.flags[i]):05b}" for i in idx],
            [f"{int(bits[i]):08X} flags {int(flags[i]):05b}" for i in idx],
            total=a.size, max_lines=max_lines)
        raise AdderMismatch(report("FAdd (Verilator) vs golden.add_bits", seed=seed,
                                   problems=problems))
    return int(a.size)
