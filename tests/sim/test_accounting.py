"""The accounting engine (sim/accounting.c, canna.sim.accounting) against the golden lane model:
every count :func:`canna.sim.lanes.run_lane_array` reports -- products, hits, bypassed, tiles,
the seven cycle counts (CFPU, zero_skip baseline and no-skip array in both disciplines, plain)
and the per-lane products, hits, bypasses and lockstep busy cycles --
equal, field by field, on NN-like and random operands, awkward shapes and geometries (tiles that
wrap across rows, N < lanes, one partial tile, padding lanes, K = 1, K across 64-bit words), zeros,
infinities, NaNs, subnormals, hit-pattern fractions, exponents whose hits leave the range (the
product-by-product words), exact mode and both policies. Both builds of the engine are checked:
the SIMD one (AVX-512 where the CPU has it) and the portable one (-DCANNA_ACC_SCALAR); so is the
NumPy fallback."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canna.sim import accounting, golden, lanes_native
from canna.sim.energy import EnergyModel, EnergyReport
from canna.sim.lanes import LaneArrayTotals, multiplier_bypassed, run_lane_array
from canna.sim.vectors import hit_pattern_fractions, pattern_cross, weighted_random
from canna.spec.array import ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig
from helpers import nn_like, seed

SEED = seed(11)
TOTALS = ("products", "hits", "bypassed", "tiles", "cycles_lockstep", "cycles_decoupled",
          "cycles_baseline", "cycles_baseline_decoupled", "cycles_plain",
          "cycles_no_skip_lockstep", "cycles_no_skip_decoupled")
PER_LANE = ("lane_products", "lane_hits", "lane_bypassed", "lane_busy_lockstep")
CONFIGS = [EXACT] + [CFPUConfig.approx(t, p) for t in (0, 1, 3, 22) for p in ("b", "dual")]


def test_engine_builds():
    """gcc is a requirement: the engine must build (a silent fallback would hide the checks)."""
    assert accounting.available()
    simd = accounting.library().canna_acc_simd()
    assert accounting.library(scalar=True).canna_acc_simd() == 0
    print(f"accounting engine built: SIMD path {'on' if simd else 'off (no AVX-512 here)'}, "
          "portable path built too")


@pytest.fixture(scope="module", params=["simd", "scalar"])
def lib(request):
    return accounting.library(scalar=request.param == "scalar")


def _mismatch(got, ref, per_lane=True):
    """The first field in which ``got`` differs from the golden result, or None."""
    for f in TOTALS:
        if int(getattr(got, f)) != int(getattr(ref, f)):
            return f, getattr(got, f), getattr(ref, f)
    if per_lane:
        for f in PER_LANE:
            if not np.array_equal(getattr(got, f), getattr(ref, f)):
                return f, getattr(got, f), getattr(ref, f)
    return None


def _has_bypass(x) -> bool:
    """Some element is zero, infinite or NaN (then some product of x's matmul is bypassed)."""
    bits = x.view(np.uint32)
    return bool(multiplier_bypassed(bits, bits).any())


def _no_skip_differs(r) -> bool:
    """The no-skip cycles differ from the CFPU's (a case that tells them apart)."""
    return (r.cycles_no_skip_lockstep, r.cycles_no_skip_decoupled) != \
        (r.cycles_lockstep, r.cycles_decoupled)


def _invariants(r, a, b, config, geometry) -> None:
    """The orders between the cycle counts of a golden result ``r`` of ``a @ b``."""
    ls, dc = r.cycles_lockstep, r.cycles_decoupled
    ns_ls, ns_dc = r.cycles_no_skip_lockstep, r.cycles_no_skip_decoupled
    base_ls, base_dc, plain = r.cycles_baseline, r.cycles_baseline_decoupled, r.cycles_plain
    k = a.shape[1]
    assert plain == r.tiles * k * geometry.exact_cycles
    assert r.tiles * k <= dc <= ls and dc <= base_dc <= base_ls and ns_dc <= ns_ls
    assert ls <= ns_ls and dc <= ns_dc and ls <= base_ls
    assert max(ls, dc, base_ls, base_dc, ns_ls, ns_dc) <= plain
    if not config.enabled:     # no hits: without zero skipping every product is exact
        assert ns_ls == ns_dc == plain and (ls, dc) == (base_ls, base_dc)
    if not (_has_bypass(a) or _has_bypass(b)):
        assert (ns_ls, ns_dc) == (ls, dc) and base_ls == base_dc == plain


def _check(a, b, config, geometry, lib, ref=None):
    """Account a @ b with ``lib`` (prepared operand, also from the layout of a transposed view;
    with the default build also plain operands, which the engine packs in the accounting call;
    with and without per-lane counters) and compare with the golden model (or ``ref``), whose
    cycle counts must keep their orders (:func:`_invariants`). Returns the result."""
    ref = run_lane_array(a, b, config, geometry) if ref is None else ref
    _invariants(ref, a, b, config, geometry)
    prep = accounting.prepare_accounting(b, config, lib=lib)
    got = accounting.account_result(a, prep, None, geometry)
    bad = _mismatch(got, ref)
    assert bad is None, (f"{config.describe()} {geometry} a{a.shape} b{b.shape}: {bad[0]} "
                         f"is {bad[1]}, golden {bad[2]}")
    totals = accounting.account_matmul(a, prep, geometry=geometry)
    assert isinstance(totals, LaneArrayTotals)
    bad = _mismatch(totals, ref, per_lane=False)
    assert bad is None, (config.describe(), geometry, bad)
    bt = np.asfortranarray(b)     # the layout of W.T, the backward phase's operand: read in place
    others = [accounting.account_result(a, accounting.prepare_accounting(bt, config, lib=lib),
                                        None, geometry)]
    if lib is accounting.library():     # plain operands: canna_acc_once
        others += [accounting.account_result(a, bt, config, geometry)]
        others += [accounting.account_matmul(a, x, config, geometry) for x in (b, bt)]
    for r in others:
        bad = _mismatch(r, ref, per_lane=isinstance(r, type(got)))
        assert bad is None, (f"{config.describe()} {geometry} a{a.shape} b{b.shape} "
                             f"(transposed layout or plain): {bad}")
    return got


# Shapes (M, K, N) and geometries: N not a multiple of the lanes, N < lanes (tiles over several
# rows), M*N < lanes (one partial tile), K = 1, K > 64 and not a multiple of 64, K > 512 (more
# than one vector of words), one lane, one-cycle exact multiplies.
SHAPES = [(3, 11, 7), (4, 37, 21), (2, 1, 5), (1, 1, 1), (5, 130, 9), (7, 64, 16), (3, 200, 33),
          (2, 600, 13), (9, 65, 3), (1, 5, 40)]
GEOMETRIES = [ArrayGeometry(16, 4), ArrayGeometry(5, 3), ArrayGeometry(1, 2), ArrayGeometry(7, 1),
              ArrayGeometry(20, 4), ArrayGeometry(3, 7), ArrayGeometry(17, 2)]


def _layer_operands(rng, m, k, n, kind, specials):
    """NN-like operands of three kinds: ``x@w`` ReLU activations (zeros in A) times weights,
    ``w@x`` weights times activations (zeros in B only, as a weight gradient's), ``w@w`` no
    zero operand at all (no-skip = CFPU cycles)."""
    if kind == "x@w":
        return nn_like(rng, m, k, n, specials=specials)
    x, w = nn_like(rng, n, k, m, specials=specials)        # x: n x k, w: k x m
    if kind == "w@x":
        return np.ascontiguousarray(w.T), np.ascontiguousarray(x.T)
    return np.ascontiguousarray(w.T), (rng.standard_normal((k, n)) * 0.05).astype(np.float32)


_NN_GOLDEN = {}   # golden results of test_nn_like_shapes, shared by both builds' runs


def test_nn_like_shapes(lib):
    rng = np.random.default_rng(SEED)
    cases = differs = 0
    kinds = ("x@w", "w@x", "w@w")
    for (m, k, n) in SHAPES:
        for geometry in GEOMETRIES:
            for kind in kinds:
                a, b = _layer_operands(rng, m, k, n, kind, specials=(m + k + n) % 2 == 0)
                for c, config in enumerate(CONFIGS):
                    key = (m, k, n, geometry, kind, c)
                    if key not in _NN_GOLDEN:
                        _NN_GOLDEN[key] = run_lane_array(a, b, config, geometry)
                    ref = _NN_GOLDEN[key]
                    _check(a, b, config, geometry, lib, ref=ref)
                    differs += _no_skip_differs(ref)
                    cases += 1
    print(f"accounting = golden lane model on {cases} NN-like cases "
          f"({len(SHAPES)} shapes x {len(GEOMETRIES)} geometries x {len(kinds)} operand kinds x "
          f"{len(CONFIGS)} configurations; {differs} with no-skip cycles other than the CFPU's)")
    assert cases == len(SHAPES) * len(GEOMETRIES) * len(kinds) * len(CONFIGS)
    assert 0 < differs < cases


def _hit_pattern_matrix(rng, shape, exponents=(110, 140)):
    """Normal numbers whose fractions qualify or just miss for random tuning-bit counts."""
    count = int(np.prod(shape))
    e = rng.integers(*exponents, count).astype(np.uint32)
    s = rng.integers(0, 2, count).astype(np.uint32)
    bits = (s << 31) | (e << 23) | hit_pattern_fractions(rng, count)
    return bits.reshape(shape).view(np.float32)


def _hard_matrix(rng, shape, special_rate=0.15):
    """Hit-pattern numbers, zeros, and weighted random bit patterns (specials, subnormals, NaN,
    exponents at both edges of the range) mixed in."""
    x = _hit_pattern_matrix(rng, shape)
    x[rng.random(shape) < 0.25] = 0
    mask = rng.random(shape) < special_rate
    x.view(np.uint32)[mask] = weighted_random(rng, int(mask.sum()))[0]
    return x


#: Zeros of both signs, infinities, quiet and signalling NaNs, subnormals (smallest, largest,
#: with m1 = 1): every class but the exponent extremes.
MILD_SPECIALS = np.array([0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
                          0x00000001, 0x807FFFFF, 0x00400000, 0x00012345], np.uint32)


def _mild_matrix(rng, shape, special_rate=0.2):
    """Hit-pattern numbers with zeros, infinities, NaNs and subnormals mixed in, all exponents
    moderate: the class formula holds everywhere (no product-by-product word)."""
    x = _hit_pattern_matrix(rng, shape)
    mask = rng.random(shape) < special_rate
    x.view(np.uint32)[mask] = rng.choice(MILD_SPECIALS, int(mask.sum()))
    return x


def test_special_values(lib):
    """Zeros, infinities, NaNs, subnormals and hit-pattern fractions in both operands: with
    moderate exponents (class formula everywhere) and with weighted random bit patterns (also
    exponents at the edges: some words product by product)."""
    rng = np.random.default_rng(SEED + 1)
    cases = hard = differs = 0
    for trial in range(48):
        m, k, n = int(rng.integers(1, 7)), int(rng.integers(1, 150)), int(rng.integers(1, 30))
        make = _mild_matrix if trial % 2 else _hard_matrix
        a, b = make(rng, (m, k)), make(rng, (k, n))
        geometry = GEOMETRIES[trial % len(GEOMETRIES)]
        for config in CONFIGS:
            ref = run_lane_array(a, b, config, geometry)
            got = _check(a, b, config, geometry, lib, ref=ref)
            words = got.extra["product_by_product_words"]
            assert words == 0 or make is _hard_matrix
            hard += words > 0
            differs += words > 0 and _no_skip_differs(ref)
            cases += 1
    print(f"accounting = golden on {cases} cases with specials, subnormals and hit patterns "
          f"({hard} of them with product-by-product words, {differs} of those with no-skip "
          "cycles other than the CFPU's)")
    assert 0 < hard < cases and differs > 0


def test_out_of_range_exponents(lib):
    """Hits whose exponent would leave 1..254 (huge and tiny normals against qualifying
    operands): the words holding them are evaluated product by product, and still agree."""
    rng = np.random.default_rng(SEED + 2)
    cases = differs = 0
    for trial in range(16):
        m, k, n = int(rng.integers(1, 6)), int(rng.integers(1, 300)), int(rng.integers(1, 25))
        a = _hit_pattern_matrix(rng, (m, k))
        b = _hit_pattern_matrix(rng, (k, n))
        a[rng.random(a.shape) < 0.3] = 0
        extreme = np.array([1e38, 3e37, -2e36, 1e-37, 3e-38, -1e-36], np.float32)
        for x in (a, b) if trial % 2 else (a,):
            pick = rng.random(x.shape) < 0.05
            x[pick] = rng.choice(extreme, int(pick.sum()))
        a[0, 0] = np.float32(1e38)        # at least one k with a huge normal in A ...
        b[0, :] = np.float32(16.0)        # ... against qualifying (m1 = 0, fraction 0) B
        if trial % 4 == 3:
            b[rng.random(b.shape) < 0.2] = 0     # bypasses in B too
        for config in [c for c in CONFIGS if c.enabled]:
            geometry = GEOMETRIES[trial % len(GEOMETRIES)]
            ref = run_lane_array(a, b, config, geometry)
            got = _check(a, b, config, geometry, lib, ref=ref)
            assert got.extra["product_by_product_words"] >= 1, config.describe()
            differs += _no_skip_differs(ref)
            cases += 1
    print(f"accounting = golden on {cases} cases whose hits could leave the exponent range "
          f"(product-by-product words in every one; {differs} with no-skip cycles other than "
          "the CFPU's)")
    assert differs > 0


def test_transposed_view_packs_as_copy(lib):
    """``prepare_accounting(W.T)`` packs the view from W's rows (no copy): its class words,
    per-column counts and exponent facts equal those of ``W.T`` copied, on hit patterns and
    weights with specials, subnormals and extreme exponents; the accounting with it equals the
    golden model's (every field), with the product-by-product words read through the view."""
    rng = np.random.default_rng(SEED + 7)
    cases = hard = 0
    stride = lib.canna_acc_bstride

    def same_packing(got, ref):
        k, n = got.shape
        step, used = stride((k + 63) // 64, got.npad), (k + 63) // 64 * got.npad
        assert got.classes == ref.classes and got.npad == ref.npad
        for c in range(got.classes):
            assert np.array_equal(got.bcls[c * step:c * step + used], ref.bcls[c * step:c * step + used])
        assert np.array_equal(got.pc_nz, ref.pc_nz) and np.array_equal(got.info, ref.info)

    for trial in range(24):
        m, k, n = int(rng.integers(1, 6)), int(rng.integers(1, 200)), int(rng.integers(2, 140))
        w = (_hit_pattern_matrix, _mild_matrix, _hard_matrix)[trial % 3](rng, (n, k))
        b = w.T                       # K x N, F-contiguous
        a = _mild_matrix(rng, (m, k))
        geometry = GEOMETRIES[trial % len(GEOMETRIES)]
        for config in CONFIGS:
            got, ref = (accounting.prepare_accounting(x, config, lib=lib) for x in (b, b.copy()))
            assert got.original is b
            same_packing(got, ref)
            r = accounting.account_result(a, got, None, geometry)
            bad = _mismatch(r, run_lane_array(a, b.copy(), config, geometry))
            assert bad is None, (config.describe(), geometry, bad)
            hard += r.extra["product_by_product_words"] > 0
            cases += 1
    print(f"transposed views pack as their copies and account = golden on {cases} cases "
          f"({hard} with product-by-product words)")
    assert hard > 0


def test_many_chunks(lib):
    """Outputs beyond one chunk of the engine (about 64K), rows wider than a chunk, chunks
    that start inside a row: against the C twin of the lane model (itself tested against the
    golden model), which is fast enough at these sizes."""
    rng = np.random.default_rng(SEED + 3)
    cases = 0
    shapes = [(300, 3, 300, 16), (2, 2, 70000, 16), (3, 70, 40000, 7), (70000, 2, 2, 16),
              (1, 5, 140000, 33), (400, 70, 170, 5), (40, 600, 90, 17), (30, 1100, 20, 3)]
    for s, (m, k, n, lanes) in enumerate(shapes):
        zeros = ("ab", "a", "b")[s % 3]          # which operands have zeros
        a = rng.standard_normal((m, k)).astype(np.float32)
        if "a" in zeros:
            a[rng.random(a.shape) < 0.3] = 0
        b = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
        if "b" in zeros:
            b[rng.random(b.shape) < 0.1] = 0
        for config in (EXACT, CFPUConfig.approx(2), CFPUConfig.approx(1, "dual")):
            geometry = ArrayGeometry(lanes, 4)
            ref = lanes_native.run_lane_array(a, b, config, geometry)
            _check(a, b, config, geometry, lib, ref=ref)
            cases += 1
    print(f"accounting = C twin of the lane model on {cases} multi-chunk or many-word cases")


def test_exact_mask_matches_golden(lib):
    """The product-by-product rule: exact = neither a hit (golden.mul_bits) nor a bypass."""
    rng = np.random.default_rng(SEED + 4)
    pa, pb = pattern_cross()
    total = 0
    for config in [EXACT] + [CFPUConfig.approx(t, p) for t in range(23) for p in ("b", "dual")]:
        ra, rb = weighted_random(rng, 5000)
        a, b = np.concatenate([pa, ra]), np.concatenate([pb, rb])
        ref = ~(golden.mul_bits(a, b, config).hit | multiplier_bypassed(a, b))
        got = accounting.exact_mask(a, b, config, lib=lib)
        assert np.array_equal(got, ref), config.describe()
        total += a.size
    print(f"exact_mask = not (golden hit or bypass) on {total} pairs, 47 configurations")


def test_numpy_fallback():
    """native=False (the path without gcc) reports the golden counts too."""
    rng = np.random.default_rng(SEED + 5)
    cases = 0
    for (m, k, n), geometry in zip(SHAPES[:8], GEOMETRIES * 2):
        a, b = _hard_matrix(rng, (m, k)), _hard_matrix(rng, (k, n))
        for config in (EXACT, CFPUConfig.approx(1), CFPUConfig.approx(3, "dual")):
            ref = run_lane_array(a, b, config, geometry)
            got = accounting.account_result(a, b, config, geometry, native=False)
            assert got.extra["accounting"] == "numpy"
            assert _mismatch(got, ref) is None, (config.describe(), _mismatch(got, ref))
            tot = accounting.account_matmul(a, b, config, geometry, native=False)
            assert _mismatch(tot, ref, per_lane=False) is None
            cases += 1
    print(f"NumPy fallback = golden on {cases} cases")


def test_without_compiler(monkeypatch):
    """CANNA_GOLDEN_FAST=0 (as when gcc is missing) selects the NumPy fallback by itself."""
    monkeypatch.setenv("CANNA_GOLDEN_FAST", "0")
    assert not accounting.available()
    rng = np.random.default_rng(SEED + 7)
    a, b = nn_like(rng, 3, 20, 9, specials=True)
    config, geometry = CFPUConfig.approx(1), ArrayGeometry(4, 3)
    got = accounting.account_result(a, b, config, geometry)
    assert got.extra["accounting"] == "numpy"
    assert _mismatch(got, run_lane_array(a, b, config, geometry)) is None
    print("without the engine: NumPy fallback chosen, 1 case = golden")


def test_api_paths_agree():
    """Plain and prepared operands, account_result and account_matmul, a list of equal
    configurations: the same totals; bad input is refused."""
    rng = np.random.default_rng(SEED + 6)
    a, b = nn_like(rng, 6, 70, 19, specials=True)
    geometry = ArrayGeometry(8, 3)
    config = CFPUConfig.approx(2)
    ref = run_lane_array(a, b, config, geometry)
    prep = accounting.prepare_accounting(b, config)
    results = [accounting.account_matmul(a, b, config, geometry),
               accounting.account_matmul(a, prep, geometry=geometry),
               accounting.account_matmul(a, prep, config, geometry),
               accounting.account_matmul(a, b, [config] * 8, geometry),
               accounting.account_matmul(np.asfortranarray(a), prep, geometry=geometry),
               accounting.account_result(a, b, config, geometry)]
    for r in results:
        assert _mismatch(r, ref, per_lane=False) is None
    assert accounting.account_result(a, b, config, geometry).value is None
    # exact mode is the default for a plain operand
    assert _mismatch(accounting.account_matmul(a, b, geometry=geometry),
                     run_lane_array(a, b, EXACT, geometry), per_lane=False) is None
    with pytest.raises(ValueError):
        accounting.account_matmul(a, prep, CFPUConfig.approx(3), geometry)
    with pytest.raises(ValueError):
        accounting.account_matmul(a, b, [config] * 7 + [EXACT], geometry)
    with pytest.raises(TypeError):
        accounting.account_matmul(a.astype(np.float64), b, config, geometry)
    with pytest.raises(ValueError):
        accounting.account_matmul(a[:, :5], b, config, geometry)
    with pytest.raises(ValueError):
        accounting.account_matmul(a[:0], prep, geometry=geometry)
    # the energy model takes the accounting as it takes the golden result
    model = EnergyModel(mul_exact=100.0, mul_hit=10.0, mul_bypass=5.0, add=30.0, lane_flops=200,
                        lane_transistors=20000)
    for r in (results[0], results[-1]):
        mine, gold = EnergyReport.from_result(model, r, 8), EnergyReport.from_result(model, ref, 8)
        assert mine.ratios() == gold.ratios() and mine.approx_lockstep == gold.approx_lockstep
    # a LaneArrayTotals adds up like the golden model's
    total = LaneArrayTotals()
    total.add(results[0])
    total.add(ref)
    assert all(getattr(total, f) == 2 * getattr(ref, f) for f in TOTALS)
    print(f"{len(results)} API paths agree with the golden totals (and the energy report); "
          "5 bad inputs refused")


def test_property_random():
    """Random shapes, geometries, configurations and operands: both builds equal the golden lane
    model; counts its examples."""
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(m=st.integers(1, 9), k=st.integers(1, 140), n=st.integers(1, 40),
           lanes=st.integers(1, 24), exact_cycles=st.integers(1, 7), config=st.sampled_from(CONFIGS),
           kind=st.sampled_from(["nn", "hard"]), data_seed=st.integers(0, 2**32 - 1))
    def prop(m, k, n, lanes, exact_cycles, config, kind, data_seed):
        rng = np.random.default_rng(data_seed)
        if kind == "nn":
            a, b = nn_like(rng, m, k, n, specials=True)
        else:
            a, b = _hard_matrix(rng, (m, k)), _hard_matrix(rng, (k, n))
        geometry = ArrayGeometry(lanes, exact_cycles)
        ref = run_lane_array(a, b, config, geometry)
        for lib in (accounting.library(), accounting.library(scalar=True)):
            _check(a, b, config, geometry, lib, ref=ref)
        nat = lanes_native.run_lane_array(a, b, config, geometry)
        assert _mismatch(nat, ref) is None, _mismatch(nat, ref)
        fallback = accounting.account_result(a, b, config, geometry, native=False)
        assert _mismatch(fallback, ref) is None, _mismatch(fallback, ref)
        examples[0] += 1
        differs[0] += _no_skip_differs(ref)
    examples, differs = [0], [0]
    prop()
    assert examples[0] > 0
    print(f"hypothesis property: {examples[0]} examples (shape, lanes, exact cycles, "
          "configuration, operand kind, seed), each on both builds, the C twin and the NumPy "
          f"fallback = golden ({differs[0]} with no-skip cycles other than the CFPU's)")
