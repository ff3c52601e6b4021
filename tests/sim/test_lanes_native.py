"""The C twin of the golden lane model (sim/lanes_native.c, canna.sim.lanes_native) against the
NumPy golden model, the specification: products (golden.mul_bits: bits and hit) for every
tuning bit count 0..22 under both policies and in exact mode, on the directed pattern cross and
weighted random operands; sums (golden.add_bits); and whole lane-array runs
(lanes.run_lane_array: outputs, per-lane counts, cycles of both disciplines and of every
baseline: zero_skip, no_skip, plain)."""

import numpy as np
import pytest

from canna.sim import golden, lanes_native
from canna.spec.config import EXACT, CFPUConfig
from canna.sim.lanes import run_lane_array
from canna.spec.array import ArrayGeometry
from canna.sim.vectors import pattern_cross, weighted_random, weighted_random_add
from helpers import seed

SEED = seed(4)

def test_c_twin_builds():
    """gcc is a requirement: the C twin must build (a silent skip would hide the checks below)."""
    assert lanes_native.available()

CONFIGS = [EXACT] + [CFPUConfig.approx(t, p) for t in range(23) for p in ("b", "dual")]


def _first_diff(what, a, b, exp, got, seed):
    i = int(np.flatnonzero(exp != got)[0])
    return (f"{what}, seed {seed}: a={int(a[i]):08X} b={int(b[i]):08X} expected "
            f"{int(exp[i]):08X}, got {int(got[i]):08X} ({int((exp != got).sum())} differ)")


def test_mul_all_configs():
    rng = np.random.default_rng(SEED)
    pa, pb = pattern_cross()
    total = 0
    for config in CONFIGS:
        ra, rb = weighted_random(rng, 20_000)
        a, b = np.concatenate([pa, ra]), np.concatenate([pb, rb])
        ref = golden.mul_bits(a, b, config)
        bits, hit = lanes_native.mul_bits(a, b, config)
        assert np.array_equal(bits, ref.bits), _first_diff(f"mul {config.describe()}", a, b,
                                                           ref.bits, bits, SEED)
        assert np.array_equal(hit, ref.hit), f"hit mask differs for {config.describe()}"
        total += a.size
    print(f"C twin mul: {total} vectors over {len(CONFIGS)} configurations bit-exact with golden")
    assert total >= 1_000_000


def test_add():
    rng = np.random.default_rng(SEED + 1)
    pa, pb = pattern_cross()
    ra, rb = weighted_random_add(rng, 1_000_000)
    a, b = np.concatenate([pa, ra]), np.concatenate([pb, rb])
    ref = golden.add_bits(a, b).bits
    got = lanes_native.add_bits(a, b)
    assert np.array_equal(got, ref), _first_diff("add", a, b, ref, got, SEED + 1)
    print(f"C twin add: {a.size} vectors bit-exact with golden.add_bits")


def _hard_matrix(rng, shape):
    """Mostly NN-like values, with random bit patterns (specials, subnormals, NaN) mixed in."""
    x = (rng.standard_normal(shape) * 0.5).astype(np.float32)
    x[rng.random(shape) < 0.3] = 0
    mask = rng.random(shape) < 0.15
    bits = weighted_random(rng, int(mask.sum()))[0]
    x.view(np.uint32)[mask] = bits
    return x


def _assert_same_result(got, ref, context):
    """The C twin's lane-array result equals the NumPy model's, field by field."""
    assert np.array_equal(got.value.view(np.uint32), ref.value.view(np.uint32)), context
    for f in ("products", "hits", "tiles", "cycles_lockstep", "cycles_decoupled",
              "cycles_baseline", "cycles_baseline_decoupled", "cycles_plain",
              "cycles_no_skip_lockstep", "cycles_no_skip_decoupled"):
        assert getattr(got, f) == getattr(ref, f), (f, context)
    for f in ("lane_products", "lane_hits", "lane_bypassed", "lane_busy_lockstep"):
        assert np.array_equal(getattr(got, f), getattr(ref, f)), (f, context)


@pytest.mark.parametrize("geometry", [ArrayGeometry(16, 4), ArrayGeometry(5, 3), ArrayGeometry(1, 1),
                                      ArrayGeometry(17, 7), ArrayGeometry(3, 2)])
def test_lane_array(geometry):
    rng = np.random.default_rng(SEED + 2)
    checked = runs = no_skip_differs = 0
    for shape in [(7, 33, 9), (1, 1, 1), (16, 64, 16), (3, 5, 11), (4, 70, 5)]:
        m, k, n = shape
        a, b = _hard_matrix(rng, (m, k)), _hard_matrix(rng, (k, n))
        for config in (EXACT, CFPUConfig.approx(0), CFPUConfig.approx(2),
                       CFPUConfig.approx(5, "dual"), CFPUConfig.approx(22)):
            ref = run_lane_array(a, b, config, geometry)
            got = lanes_native.run_lane_array(a, b, config, geometry)
            _assert_same_result(got, ref, (config, shape))
            checked += ref.products
            runs += 1
            no_skip_differs += ref.cycles_no_skip_lockstep != ref.cycles_lockstep
    print(f"C twin lane model, {geometry}: {runs} runs, {checked} products, all fields equal "
          f"({no_skip_differs} runs with no-skip cycles other than the CFPU's)")
    assert no_skip_differs > 0 or geometry.exact_cycles == 1   # E = 1: every count is K per tile


def test_per_lane_configs():
    rng = np.random.default_rng(SEED + 3)
    lanes = 4
    a, b = _hard_matrix(rng, (5, 17)), _hard_matrix(rng, (17, 7))
    configs = [EXACT, CFPUConfig.approx(0), CFPUConfig.approx(4, "dual"), CFPUConfig.approx(1)]
    geometry = ArrayGeometry(lanes, 3)
    result = lanes_native.run_lane_array(a, b, configs, geometry)
    got = result.value
    # NumPy reference: lane l of every tile with configs[l], sequential from +0.0
    m, n = a.shape[0], b.shape[1]
    ref = np.zeros(m * n, np.uint32)
    for flat in range(m * n):
        i, j = divmod(flat, n)
        p = golden.mul_bits(a[i].view(np.uint32), b[:, j].view(np.uint32), configs[flat % lanes]).bits
        acc = np.float32(0)
        for v in p.view(np.float32):
            acc = golden.add(np.array([acc]), np.array([v]))[0]
        ref[flat] = np.float32(acc).view(np.uint32)
    assert np.array_equal(got.view(np.uint32).reshape(-1), ref)
    # and every field (counters, both disciplines' cycles) equals the NumPy lane model's
    _assert_same_result(result, run_lane_array(a, b, configs, geometry), configs)
    print(f"C twin with per-lane configurations: {result.products} products, outputs equal the "
          f"per-output reference, all fields equal the NumPy lane model")
