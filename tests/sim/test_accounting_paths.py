"""The accounting engine's narrow path (K of at most 4 words: the weight gradient's, K = batch)
and its cheaper packer of row-major B (exact mode and policy b without subnormals) against the
paths they short-cut and the golden lane model: every field equal with the narrow path on and
off (``canna_acc_set_narrow``), and the packed classes, column counts and exponent facts equal
word for word to the portable build's packing."""
from __future__ import annotations

import numpy as np
import pytest

from canna.sim import accounting
from canna.sim.lanes import run_lane_array
from canna.spec.array import ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig
from helpers import nn_like, seed

SEED = seed(23)
FIELDS = ("products", "hits", "bypassed", "tiles", "cycles_lockstep", "cycles_decoupled",
          "cycles_baseline", "cycles_baseline_decoupled", "cycles_plain",
          "cycles_no_skip_lockstep", "cycles_no_skip_decoupled")
PER_LANE = ("lane_products", "lane_hits", "lane_bypassed", "lane_busy_lockstep")
CONFIGS = [EXACT, CFPUConfig.approx(4, "b"), CFPUConfig.approx(0, "b"), CFPUConfig.approx(3, "dual")]
# (M, K, N): K in 1..4 words; N a multiple of the lanes, not one, below them; one row
SHAPES = [(20, 32, 48), (17, 10, 50), (9, 100, 23), (6, 64, 5), (1, 256, 40), (13, 200, 16),
          (4, 65, 3), (30, 7, 31)]
GEOMETRIES = [ArrayGeometry(16, 4), ArrayGeometry(5, 3), ArrayGeometry(1, 2), ArrayGeometry(20, 2)]


@pytest.fixture
def simd_lib():
    lib = accounting.library()
    if not lib.canna_acc_simd():
        pytest.fail("no AVX-512 here: the narrow path and the cheaper packer are not built")
    yield lib
    lib.canna_acc_set_narrow(1)


def _operands(rng, m, k, n, kind):
    """A weight gradient's operands (zeros in both: ReLU inputs times ReLU-masked errors),
    zeros in A only, or none (then the base counts are row constants)."""
    x, w = nn_like(rng, m, k, n)
    if kind == "both":
        w = np.where(rng.random(w.shape) < 0.5, 0, w).astype(np.float32)
    elif kind == "none":
        x = (rng.standard_normal(x.shape)).astype(np.float32)
    return x, w


def _equal(got, ref) -> str | None:
    for f in FIELDS:
        if int(getattr(got, f)) != int(getattr(ref, f)):
            return f"{f}: {getattr(got, f)} != {getattr(ref, f)}"
    for f in PER_LANE:
        if not np.array_equal(getattr(got, f), getattr(ref, f)):
            return f
    return None


def test_narrow_path_equals_wide_path_and_golden(simd_lib):
    rng = np.random.default_rng(SEED)
    cases = 0
    for i, (m, k, n) in enumerate(SHAPES):
        for kind in ("both", "a", "none"):
            a, b = _operands(rng, m, k, n, kind)
            geometry = GEOMETRIES[(i + cases) % len(GEOMETRIES)]
            for config in CONFIGS:
                ref = run_lane_array(a, b, config, geometry)
                for on in (1, 0):
                    simd_lib.canna_acc_set_narrow(on)
                    for bb in (b, np.asfortranarray(b)):     # packed in the call, row-major or W.T
                        got = accounting.account_result(a, bb, config, geometry)
                        bad = _equal(got, ref)
                        assert bad is None, (m, k, n, kind, config.describe(), geometry, on, bad)
                    prep = accounting.prepare_accounting(b, config)
                    bad = _equal(accounting.account_result(a, prep, None, geometry), ref)
                    assert bad is None, (m, k, n, kind, config.describe(), geometry, on, "prepared", bad)
                cases += 1
    simd_lib.canna_acc_set_narrow(1)
    assert simd_lib.canna_acc_set_narrow(1) == 1      # the switch holds what was set
    print(f"narrow path = wide path = golden lane model on {cases} cases (3 layouts each)")


def _matrix(rng, shape, kind):
    x = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    if kind == "specials":
        bits = x.view(np.uint32)
        pick = rng.random(shape)
        bits[pick < 0.1] = 0
        bits[(pick >= 0.1) & (pick < 0.12)] = 0x7F800000        # inf
        bits[(pick >= 0.12) & (pick < 0.13)] = 0x7FC00001       # NaN
        bits[(pick >= 0.13) & (pick < 0.2)] |= 0x80000000
    elif kind == "subnormal":
        x.view(np.uint32)[0, -1] = 0x00000123
    elif kind == "extremes":     # qualifying and not, huge and tiny normals
        bits = x.view(np.uint32)
        bits[::3] = (bits[::3] & 0x807FFFFF) | (rng.integers(1, 255, bits[::3].shape, dtype=np.uint32) << 23)
        bits[1::4] &= 0xFF800000
    return x


def test_row_major_packing_equals_portable_build(simd_lib):
    scalar = accounting.library(scalar=True)
    stride = simd_lib.canna_acc_bstride
    rng = np.random.default_rng(SEED + 1)
    cases = 0
    configs = CONFIGS + [CFPUConfig.approx(22, "b"), CFPUConfig.approx(1, "b")]
    for k, n in ((1, 1), (5, 17), (64, 16), (130, 40), (200, 33), (784, 50)):
        for kind in ("plain", "specials", "subnormal", "extremes"):
            b = _matrix(rng, (k, n), kind)
            for config in configs:
                got, ref = (accounting.prepare_accounting(b, config, lib=lib) for lib in (simd_lib, scalar))
                step, used = stride((k + 63) // 64, got.npad), (k + 63) // 64 * got.npad
                assert got.classes == ref.classes
                for c in range(got.classes):
                    assert np.array_equal(got.bcls[c * step:c * step + used],
                                          ref.bcls[c * step:c * step + used]), (k, n, kind, config.describe(), c)
                assert np.array_equal(got.pc_nz, ref.pc_nz), (k, n, kind, config.describe())
                assert np.array_equal(got.info, ref.info), (k, n, kind, config.describe(), got.info, ref.info)
                cases += 1
    print(f"row-major packing (SIMD build) = portable build's, word for word, on {cases} cases")
