"""Every cached build is sealed with its SHA-256 and rebuilt when damaged (truncated, or one
flipped byte): the C helpers (canna.sim.native), the Verilated libraries and the cocotb builds
(canna.sim.rtl_build)."""
from __future__ import annotations

import ctypes
import os

import numpy as np

from canna.sim import native


def _damage(path, how: str) -> None:
    """Replace ``path`` by a damaged copy (a new file renamed over it: this process may have the
    old one mapped, and changing a mapped library in place would crash it)."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[:len(data) // 3]
    else:
        data[len(data) // 2] ^= 0xFF
    tmp = path.with_name(path.name + ".damaged")
    tmp.write_bytes(bytes(data))
    tmp.chmod(path.stat().st_mode)
    os.replace(tmp, path)


def test_seal_and_intact(tmp_path):
    f = tmp_path / "artefact.so"
    f.write_bytes(b"complete")
    assert not native.intact(f)                      # never sealed: not trusted
    native.seal(f)
    assert native.intact(f)
    f.write_bytes(b"complete but changed")
    assert not native.intact(f)
    assert not native.intact(tmp_path / "missing.so")
    print("seal/intact: unsealed, sealed, changed and missing artefacts told apart (4 cases)")


def test_damaged_c_helper_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("CANNA_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "twice.c"
    src.write_text("int twice(int x) { return 2 * x; }\n")
    lib = native.build_shared("twice", [src])
    assert lib.twice(21) == 42
    [so] = (tmp_path / "cache").glob("twice-*.so")
    for how in ("truncate", "flip"):
        _damage(so, how)
        assert not native.intact(so)
        # a fresh process would dlopen the damaged file; the cache must notice first
        lib = native.build_shared("twice", [src])
        assert native.intact(so) and ctypes.CDLL(str(so)).twice(5) == 10 and lib.twice(4) == 8
    print("C helper cache: truncated and bit-flipped .so rebuilt (2 cases)")


def test_damaged_verilated_library_is_rebuilt():
    from canna.sim import adder_cosim
    lib = adder_cosim.build_adder()
    for how in ("truncate", "flip"):
        _damage(lib, how)
        assert not native.intact(lib)
        assert adder_cosim.build_adder() == lib and native.intact(lib)
    a = np.array([0x3F800000, 0x40000000], np.uint32)
    bits, _ = adder_cosim.run_adder(a, a)            # the rebuilt library loads and adds
    assert bits.tolist() == [0x40000000, 0x40800000]
    print("Verilated adder cache: truncated and bit-flipped library rebuilt (2 cases)")


def test_damaged_cocotb_build_is_rebuilt():
    from canna.sim import cfpu_cosim
    bdir = cfpu_cosim.cfpu_build()
    exe = bdir / "cfpu"
    _damage(exe, "flip")
    assert not native.intact(exe)
    assert cfpu_cosim.cfpu_build() == bdir and native.intact(exe)
    print("cocotb CFPU build: a bit-flipped simulator executable rebuilt (1 case)")
