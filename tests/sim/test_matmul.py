"""The two matmul paths: the bit-exact sequential reference and the fast BLAS path."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from canna.sim import golden
from canna.spec.config import CFPUConfig, EXACT
from canna.sim import matmul as mm
from canna.sim.vectors import hit_pattern_fractions
from helpers import nn_like

CONFIGS = [EXACT] + [CFPUConfig.approx(t, p) for p in ("b", "dual") for t in (0, 1, 3, 6, 22)]


def hard_finite(rng, m, k, n):
    """Finite operands, mostly moderate, with a sprinkle of zeros, subnormals, tiny and huge
    exponents and hit-pattern fractions: exercises every risky-element path of the fast matmul."""
    def draw(size):
        kind = rng.random(size)
        exp = np.select([kind < 0.05, kind < 0.10, kind < 0.15, kind < 0.20],
                        [0, rng.integers(1, 30, size), rng.integers(200, 231, size), 0],
                        rng.integers(110, 146, size)).astype(np.uint32)
        frac = np.where(rng.random(size) < 0.5, rng.integers(0, 1 << 23, size),
                        hit_pattern_fractions(rng, size)).astype(np.uint32)
        frac = np.where(kind >= 0.15, frac, np.where(kind < 0.05, frac | 1, frac))
        frac = np.where((kind >= 0.15) & (kind < 0.20), 0, frac)     # zeros
        sign = rng.integers(0, 2, size, dtype=np.uint32) << 31
        return (sign | (exp << 23) | frac).astype(np.uint32)
    return (draw(m * k).view(np.float32).reshape(m, k), draw(k * n).view(np.float32).reshape(k, n))


def golden_products(a, b, config):
    return golden.mul(a[:, :, None], b[None, :, :], config)


def reference_sequential_sum(products):
    """Independent restatement: fold products over k with float32 adds, starting at +0.0."""
    acc = np.zeros((products.shape[0], products.shape[2]), np.float32)
    for k in range(products.shape[1]):
        acc = golden.add(acc, products[:, k, :])
    return acc


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_reference_is_sequential_golden_sum(config):
    rng = np.random.default_rng(1)
    a, b = nn_like(rng, 9, 37, 11)
    p = golden_products(a, b, config)
    r = mm.matmul_reference(a, b, config)
    assert np.array_equal(r.value.view(np.uint32), reference_sequential_sum(p.bits).view(np.uint32))
    assert r.hits == int(p.hit.sum()) and r.products == a.shape[0] * a.shape[1] * b.shape[1]
    print(f"{config.describe()}: {r.products} products, {r.hits} hits, bit-exact")


@pytest.mark.parametrize("native", [True, False], ids=["C", "numpy"])
@pytest.mark.parametrize("data", ["nn", "hard"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_fast_matches_reference(config, data, native):
    rng = np.random.default_rng(2)
    a, b = (nn_like if data == "nn" else hard_finite)(rng, 23, 41, 13)
    ref = mm.matmul_reference(a, b, config)
    fast = mm.matmul_fast(a, b, config, native=native)
    p = golden_products(a, b, config)
    abs_sum = np.abs(p.bits.astype(np.float64)).sum(axis=1)
    bound = mm.summation_bound(abs_sum, a.shape[1])
    # Near the top of the range a partial sum may overflow in one order and not in another;
    # the bound is about rounding, so compare where no order can overflow (all but a few).
    comparable = abs_sum < 2.0 ** 126
    assert comparable.mean() > 0.5
    with np.errstate(invalid="ignore"):
        err = np.abs(ref.value.astype(np.float64) - fast.value)[comparable]
    assert fast.hits == ref.hits, (fast.hits, ref.hits)
    assert (err <= bound[comparable]).all(), float((err - bound[comparable]).max())
    print(f"{config.describe()} {data}: {ref.products} products, {ref.hits} hits, "
          f"{int(comparable.sum())} outputs within the summation bound (max |fast-ref| {err.max():.3g})")


def same_outcome(ref, fast, abs_finite_sum, k):
    """The contract of the two paths on one output each: NaN in both, or the same infinity, or
    finite in both and within the summation bound. Checked where the finite products' absolute
    sum stays below the largest float (no partial sum of them can overflow in any order)."""
    ref, fast = ref.astype(np.float64), fast.astype(np.float64)
    both_nan = np.isnan(ref) & np.isnan(fast)
    same_inf = np.isinf(ref) & (ref == fast)
    finite = np.isfinite(ref) & np.isfinite(fast)
    with np.errstate(invalid="ignore"):
        close = finite & (np.abs(ref - fast) <= mm.summation_bound(abs_finite_sum, k))
    return both_nan | same_inf | close


@pytest.mark.parametrize("native", [True, False], ids=["C", "numpy"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_overflowing_products_agree_with_reference(config, native):
    """A product that overflows is inf in both paths, even where a GEMM would fuse it into the
    add (the issue's reproducer: 1 * -3e38 + 1e38 * 4 is +inf, not 1e38), and mixes of such
    products give the reference's NaN or infinity."""
    a = np.tile(np.array([[1, 1e38]], np.float32), (4, 1))
    for col in ([-3e38, 4], [-3.3e38, 6.5]):   # 6.5 does not qualify at t >= 1
        b = np.tile(np.array(col, np.float32)[:, None], (1, 4))
        fast = mm.matmul_fast(a, b, config, native=native).value
        ref = mm.matmul_reference(a, b, config).value
        assert np.isposinf(ref).all() and np.isposinf(fast).all(), (col, ref[0, 0], fast[0, 0])
    rng = np.random.default_rng(12)
    checked = 0
    for _ in range(20):
        m, k, n = 7, 19, 6
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        a[np.arange(m), rng.integers(0, k, m)] = rng.choice([1e38, -1e38, 3e38, -3e38], m)
        b[rng.integers(0, k, n), np.arange(n)] = rng.choice([1e38, -1e38, 6.5, -6.5, 3e38], n)
        p = golden_products(a, b, config).bits.astype(np.float64)
        abs_finite = np.where(np.isfinite(p), np.abs(p), 0).sum(axis=1)
        fast = mm.matmul_fast(a, b, config, native=native)
        ref = mm.matmul_reference(a, b, config)
        ok = same_outcome(ref.value, fast.value, abs_finite, k)
        comparable = abs_finite < np.finfo(np.float32).max
        assert ok[comparable].all(), (ref.value[~ok], fast.value[~ok])
        assert fast.hits == ref.hits
        checked += int(comparable.sum())
    assert checked > 600
    print(f"{config.describe()}: {checked} outputs with overflowing products agree "
          f"(NaN / infinity / within the bound), reproducer +inf in both paths")


def test_exact_prepare_native_matches_numpy():
    """The exact mode's largest finite exponent of b (which products may overflow), C vs NumPy."""
    rng = np.random.default_rng(13)
    for b in (rng.standard_normal((5, 7)).astype(np.float32), np.full((2, 3), np.inf, np.float32),
              np.array([[np.nan, 3e38], [1.0, -np.inf]], np.float32), np.zeros((3, 1), np.float32)):
        c, n = mm.prepare(b, EXACT, native=True), mm.prepare(b, EXACT, native=False)
        assert np.array_equal(c.stats, n.stats) and c.quick is None and n.quick is None
        finite = b[np.isfinite(b)]
        want = int(((finite.view(np.uint32) >> 23) & 0xFF).max()) if finite.size else 0
        assert c.stats[4] == want
    print("exact prepare: C max_finite_exponent == NumPy twin == direct on 4 operands")


@pytest.mark.parametrize("native", [True, False], ids=["C", "numpy"])
def test_non_finite_checked_operand(native):
    """An inf or NaN in b: exact mode keeps IEEE semantics (2 * inf + 1 * 1 = inf, not NaN), and
    in every mode only the column of a that meets it is taken out of the GEMMs (the largest
    exponent the GEMMs see is that of the finite elements)."""
    a = np.array([[2, 1]], np.float32)
    b = np.array([[np.inf], [1]], np.float32)
    for config in CONFIGS:
        fast = mm.matmul_fast(a, b, config, native=native).value
        ref = mm.matmul_reference(a, b, config).value
        assert np.isposinf(fast).all() and np.isposinf(ref).all(), (config.describe(), fast)
    rng = np.random.default_rng(14)
    x, w = nn_like(rng, 32, 50, 40)
    w[7, 3] = np.inf
    for config in CONFIGS[1:]:
        risky = mm._scan_first(x.view(np.uint32), mm.prepare(w, config, native=native), native)[0]
        assert set((risky % 50).tolist()) <= {7}, config.describe()   # column 7 of x only
    print(f"inf in the checked operand: +inf in both paths for {len(CONFIGS)} configurations; "
          f"only the matching column is risky in {len(CONFIGS) - 1}")


def fast_path_products(a, prep):
    """The products the fast path's GEMMs form, elementwise (a safe-only view of the decomposition)."""
    a_bits = a.view(np.uint32)
    if prep.rest is None:
        return a[:, :, None] * prep.checked[None, :, :]
    ma = mm.scan_first_numpy(a_bits, prep.config.tuning_bits, True, prep.row_flags, prep.stats)[1]
    q = golden.qualifies(prep.original.view(np.uint32) & 0x7FFFFF, prep.config.tuning_bits)
    q &= prep.checked.view(np.uint32) != 0
    return np.where(q[None], a[:, :, None] * prep.checked[None], ma.view(np.float32)[:, :, None] * prep.rest[None])


def check_fast_products(a, b, config) -> int:
    """Each product the GEMMs see (safe elements) equals the golden product bit for bit;
    returns how many were compared."""
    prep = mm.prepare(b, config)
    risky = mm.scan_first_numpy(a.view(np.uint32), config.tuning_bits,
                                config.policy.value == "dual", prep.row_flags, prep.stats)[0]
    safe = np.ones(a.size, bool)
    safe[risky] = False
    safe = safe.reshape(a.shape)
    with np.errstate(all="ignore"):
        fast = fast_path_products(a, prep)
    gold = golden_products(a, b, config).bits
    sel = np.broadcast_to(safe[:, :, None], gold.shape)
    assert np.array_equal(fast[sel].view(np.uint32), gold[sel].view(np.uint32))
    return int(sel.sum())


@pytest.mark.parametrize("config", CONFIGS[1:], ids=lambda c: c.describe())
def test_fast_products_equal_golden_products(config):
    rng = np.random.default_rng(3)
    checked = sum(check_fast_products(*make(rng, 19, 29, 17), config) for make in (nn_like, hard_finite))
    print(f"{config.describe()}: {checked} fast-path products equal to golden bit for bit")


def test_fast_products_property():
    checked = []

    @settings(max_examples=80, deadline=None)
    @given(m=st.integers(1, 7), k=st.integers(1, 9), n=st.integers(1, 7), t=st.integers(0, 22),
           policy=st.sampled_from(["b", "dual"]), seed=st.integers(0, 2**32 - 1))
    def prop(m, k, n, t, policy, seed):
        rng = np.random.default_rng(seed)
        checked.append(check_fast_products(*hard_finite(rng, m, k, n), CFPUConfig.approx(t, policy)))
    prop()
    assert sum(checked) > 0
    print(f"fast-path products: {sum(checked)} in {len(checked)} hypothesis matmuls, equal to golden")


@pytest.mark.parametrize("data", ["hard", "nn", "nn-subnormal", "nn-large"])
@pytest.mark.parametrize("config", CONFIGS[1:], ids=lambda c: c.describe())
def test_native_kernels_match_numpy_twins(config, data):
    """C kernels vs NumPy twins; "nn" data takes policy b's quick scan, the others the full one;
    "nn-large" operands are large (135,000 elements each)."""
    rng = np.random.default_rng(4)
    if data == "nn-large":
        a, b = nn_like(rng, 450, 300, 450)
        a[449, 299] = 0.5 ** 140                # the last element is subnormal
        if config.tuning_bits == 3:
            a[449, 299] = 0.25                  # ... or nothing special: the quick path
    elif data == "hard":
        a, b = hard_finite(rng, 31, 53, 29)
        b[3, 5] = np.inf
        b[7, 1] = np.float32(2.0 ** 127 * 1.75)  # qualifies at t=0 but 2^128 is not representable
    else:
        a, b = nn_like(rng, 31, 53, 29)
        if data == "nn-subnormal":
            a[5, 7] = np.float32(1e-41)
    p_c = mm.prepare(b, config, native=True)
    p_n = mm.prepare(b, config, native=False)
    for name in ("checked", "rest", "qualifying", "nonqualifying", "row_flags", "stats"):
        x, y = getattr(p_c, name), getattr(p_n, name)
        if x is None:
            assert y is None
            continue
        assert np.array_equal(np.asarray(x).view(np.uint8), np.asarray(y).view(np.uint8)), name
    scan_c = mm._scan_first(a.view(np.uint32), p_c, True)
    scan_n = mm._scan_first(a.view(np.uint32), p_n, False)
    for x, y in zip(scan_c, scan_n):
        assert (x is None and y is None) or np.array_equal(x, y)
    # Policy b's quick scan answers (the hit count) exactly when nothing in a is risky
    expect_quick = data == "nn" or (data == "nn-large" and config.tuning_bits == 3)
    assert (p_c.quick is not None) == (config.policy.value == "b" and data != "hard")
    if p_c.quick is not None:
        quick = mm._Kernels.get().scan_first_quick(a, p_c.qualifying_u32, *p_c.quick)
        assert (quick >= 0) == expect_quick
        if expect_quick:
            assert scan_n[0].size == 0 and quick == int(np.dot(scan_n[2], p_n.qualifying))
    print(f"{config.describe()}: C kernels == NumPy twins on {a.size + b.size} elements, "
          f"{scan_c[0].size} risky")


@pytest.mark.parametrize("config", CONFIGS[1:], ids=lambda c: c.describe())
def test_transform_mixes_common_and_special_rows(config):
    """The C transform runs each row through a lean loop for rows without inf, NaN, subnormals
    (dual) or unrepresentable powers of two, and redoes the others with the full loop: rows of
    both kinds in one operand must match the NumPy twin."""
    rng = np.random.default_rng(7)
    b = (rng.standard_normal((40, 37)) * 0.05).astype(np.float32)
    b[3, 5], b[9, 0] = np.inf, np.nan
    b[17, 36] = np.float32(2.0 ** 127 * 1.75)   # qualifies for t = 0, but 2^128 is out of range
    b[20, 1] = np.float32(2.0 ** 127 * 1.0)     # qualifies, 2^127 is fine
    b[25, 2] = np.float32(1e-41)                # subnormal
    b[30, :] = 0.0
    p_c = mm.prepare(b, config, native=True)
    p_n = mm.prepare(b, config, native=False)
    for name in ("checked", "rest", "qualifying", "nonqualifying", "row_flags", "stats"):
        x, y = getattr(p_c, name), getattr(p_n, name)
        assert (x is None and y is None) or np.array_equal(np.asarray(x).view(np.uint8),
                                                           np.asarray(y).view(np.uint8)), name
    special = int(np.count_nonzero(p_n.row_flags))
    assert special >= 2
    print(f"{config.describe()}: transform of {b.size} elements == NumPy twin "
          f"({special} special rows, {b.shape[0] - special} common)")


def test_quick_scan_falls_back_when_a_hit_may_leave_the_range():
    """Policy b's quick scan answers only when no product can leave the exponent range; a
    huge activation against a qualifying large weight sends it to the full scan, and the
    result still matches the reference."""
    rng = np.random.default_rng(8)
    a, b = nn_like(rng, 6, 12, 5)
    cfg = CFPUConfig.approx(2, "b")
    b[4, 3] = np.float32(2.0 ** 100)            # qualifies: its power of two is 2^100
    prep = mm.prepare(b, cfg)
    lib = mm._Kernels.get()
    assert lib.scan_first_quick(a, prep.qualifying_u32, *prep.quick) >= 0
    a[2, 4] = np.float32(2.0 ** 60)             # 2^60 * 2^100 overflows
    assert lib.scan_first_quick(a, prep.qualifying_u32, *prep.quick) == -1
    ref, fast = mm.matmul_reference(a, b, cfg), mm.matmul_fast(a, b, cfg)
    assert fast.hits == ref.hits and np.isinf(ref.value[2, 3]) and np.isinf(fast.value[2, 3])
    print(f"quick scan: declined an overflowing hit; full scan matched the reference ({ref.hits} hits)")


def test_quick_path_only_where_no_sum_can_overflow():
    """The lean path runs its GEMM without masking floating-point warnings, so it must decline
    whenever a sum could overflow (by the exponent bound of canna_scan_first_quick); either way
    matmul_fast is silent on overflow and invalid operations (as the golden model is) and its
    hits match the reference."""
    rng = np.random.default_rng(11)
    a, b = nn_like(rng, 5, 16, 4)
    cfg = CFPUConfig.approx(2, "b")
    lib = mm._Kernels.get()
    declined = overflowed = 0
    for scale in (1.0, 2.0 ** 60, 2.0 ** 64, 2.0 ** 70):
        a_s, b_s = (a * np.float32(scale)).astype(np.float32), (b * np.float32(scale)).astype(np.float32)
        prep = mm.prepare(b_s, cfg)
        quick = lib.scan_first_quick(a_s, prep.qualifying_u32, *prep.quick)
        e_a = int((a_s.view(np.uint32) >> 23 & 0xFF).max())
        assert (quick < 0) == (e_a + prep.quick.e_max + 4 > 377), scale   # ceil(log2 16) = 4
        ref = mm.matmul_reference(a_s, b_s, cfg)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            fast = mm.matmul_fast(a_s, prep)
        assert fast.hits == ref.hits
        assert np.array_equal(np.isinf(fast.value), np.isinf(ref.value))
        if np.isinf(ref.value).any():
            overflowed += 1
            assert quick < 0, scale
        declined += quick < 0
    assert overflowed >= 1
    print(f"lean path declined {declined} of 4 scalings ({overflowed} overflow); all silent, hits match")


def test_quick_scan_hit_count_in_short_chunks():
    """The quick scan sums hit counts on 32-bit lanes, over column chunks of at most
    2^32 / N; a huge declared N forces one-column chunks, which must give the same count."""
    rng = np.random.default_rng(9)
    a, b = nn_like(rng, 13, 300, 7)
    prep = mm.prepare(b, CFPUConfig.approx(3, "b"))
    lib = mm._Kernels.get()
    expect = int(np.dot((a != 0).sum(axis=0), prep.qualifying))
    for n in (7, 2 ** 30, 2 ** 31):
        assert lib.scan_first_quick(a, prep.qualifying_u32, n, *prep.quick[1:]) == expect
    print(f"quick scan: hit count {expect} with chunks of 300, 3 and 1 columns")


def test_quick_path_and_general_path_agree():
    """matmul_fast takes policy b's lean path for a C- or F-contiguous float32 ``a``; any other
    layout takes the general path (full scan). Same hit count, same values up to summation order."""
    rng = np.random.default_rng(10)
    a, b = nn_like(rng, 20, 64, 9)
    prep = mm.prepare(b, CFPUConfig.approx(3, "b"))
    spaced = np.zeros((40, 64), np.float32)
    spaced[::2] = a
    strided = spaced[::2]                   # neither C- nor F-contiguous
    assert mm._matmul_quick(a, prep) is not None and mm._matmul_quick(np.asfortranarray(a), prep) is not None
    assert mm._matmul_quick(strided, prep) is None
    quick, general = mm.matmul_fast(a, prep), mm.matmul_fast(strided, prep)
    assert quick.hits == general.hits == mm.matmul_reference(a, b, prep.config).hits
    assert quick.hits == mm.matmul_fast(np.asfortranarray(a), prep).hits
    assert np.allclose(quick.value, general.value, rtol=1e-5, atol=1e-6)
    print(f"quick and general paths: {quick.products} products, {quick.hits} hits each")


def test_kernel_module_rejects_bad_buffers():
    """The CPython binding checks every array against the shape it is told; the lean path's
    scan declines (-1) any first operand it cannot take, for the general path to report."""
    lib = mm._Kernels.get()
    a = np.zeros((4, 5), np.uint32)
    nq32 = np.zeros(5, np.uint32)
    quick = (1, 1000, -1000, 0)
    assert lib.scan_first_quick(np.zeros((4, 5), np.float32), nq32, *quick) == 0
    declined = [np.zeros((4, 6), np.float32), np.zeros((5, 4), np.float32).T, np.zeros((4, 5), np.uint32),
                np.zeros((4, 5), np.float64), np.zeros(5, np.float32), np.zeros((4, 5), ">f4"), [[0.0] * 5]]
    for bad in declined:
        assert lib.scan_first_quick(bad, nq32, *quick) == -1
    assert lib.scan_first_quick(np.ones((4, 5), np.float32), nq32, 2 ** 32, *quick[1:]) == -1  # N too big
    with pytest.raises(TypeError, match="nq32: expected a C-contiguous array"):
        lib.scan_first_quick(np.zeros((4, 5), np.float32), nq32[::2], *quick)
    with pytest.raises(TypeError, match="nq: expected 8-byte elements, got 4-byte ones"):
        lib.transform_checked(a, 4, 5, 3, False, a.copy(), None, np.zeros(4, np.int32),
                              np.zeros(4, np.int64), np.zeros(4, np.uint32), np.zeros(5, np.int32))
    with pytest.raises(ValueError, match="mq overlaps w"):
        lib.transform_checked(a, 4, 5, 3, False, a, None, np.zeros(4, np.int64),
                              np.zeros(4, np.int64), np.zeros(4, np.uint32), np.zeros(5, np.int32))
    with pytest.raises(ValueError, match="a: 80 bytes, need 96"):
        lib.scan_first(a, 4, 6, 3, False, np.zeros(6, np.uint32), np.zeros(5, np.int32), None,
                       np.zeros(6, np.uint32), np.zeros(6, np.uint32), np.zeros(8, np.int64))
    with pytest.raises(ValueError, match="stats: 16 bytes, need 20"):
        lib.scan_first(a, 4, 5, 3, False, np.zeros(5, np.uint32), np.zeros(4, np.int32), None,
                       np.zeros(5, np.uint32), np.zeros(5, np.uint32), np.zeros(8, np.int64))
    with pytest.raises(TypeError, match="mq: expected a C-contiguous writable array"):
        mq = np.zeros((4, 5), np.uint32)
        mq.flags.writeable = False
        lib.transform_checked(a, 4, 5, 3, False, mq, None, np.zeros(4, np.int64), np.zeros(4, np.int64),
                              np.zeros(4, np.uint32), np.zeros(5, np.int32))
    with pytest.raises(ValueError, match="tuning bits 23 outside 0..22"):
        lib.transform_checked(a, 4, 5, 23, False, a.copy(), None, np.zeros(4, np.int64),
                              np.zeros(4, np.int64), np.zeros(4, np.uint32), np.zeros(5, np.int32))
    with pytest.raises(TypeError, match="wn: expected"):
        lib.transform_checked(a, 4, 5, 3, True, a.copy(), None, np.zeros(4, np.int64),
                              np.zeros(4, np.int64), np.zeros(4, np.uint32), np.zeros(5, np.int32))
    print(f"kernel module: {len(declined) + 1} unsuitable first operands declined, 8 bad calls rejected "
          "with a named argument")


@pytest.mark.parametrize("config", CONFIGS[1:], ids=lambda c: c.describe())
def test_non_finite_and_unrepresentable_operands(config):
    rng = np.random.default_rng(5)
    a, b = nn_like(rng, 7, 13, 5)
    a[0, 0], a[1, 1], a[2, 2] = np.inf, np.nan, np.float32(1e-40)
    b[4, 2], b[5, 3] = -np.inf, np.float32(2.0 ** 127 * 1.75)
    a[3, :] = 0.0
    ref = mm.matmul_reference(a, b, config)
    fast = mm.matmul_fast(a, b, config)
    assert fast.hits == ref.hits
    assert np.array_equal(np.isnan(fast.value), np.isnan(ref.value))
    assert np.array_equal(np.isinf(fast.value), np.isinf(ref.value))
    print(f"{config.describe()}: specials handled, {ref.hits} hits")


def test_prepared_operand_is_reused():
    rng = np.random.default_rng(6)
    a, b = nn_like(rng, 8, 20, 6)
    cfg = CFPUConfig.approx(2, "dual")
    prep = mm.prepare(b, cfg)
    r1, r2 = mm.matmul_fast(a, prep), mm.matmul_fast(a, b, cfg)
    assert np.array_equal(r1.value, r2.value) and r1.hits == r2.hits
    with pytest.raises(ValueError, match="prepared for"):
        mm.matmul_fast(a, prep, CFPUConfig.approx(3, "dual"))

    class Tagged(mm.Prepared):   # a subclass is a Prepared too, with or without the config
        pass
    tagged = Tagged(*(getattr(prep, f.name) for f in dataclasses.fields(prep) if f.init))
    for r3 in (mm.matmul_fast(a, tagged), mm.matmul_fast(a, tagged, cfg)):
        assert np.array_equal(r3.value, r1.value) and r3.hits == r1.hits
    print(f"prepared operand reused: {r1.products} products")


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 6), k=st.integers(1, 9), n=st.integers(1, 6), t=st.integers(0, 22),
       policy=st.sampled_from(["b", "dual"]), seed=st.integers(0, 2**32 - 1))
def test_fast_hit_counts_property(m, k, n, t, policy, seed):
    rng = np.random.default_rng(seed)
    a, b = hard_finite(rng, m, k, n)
    cfg = CFPUConfig.approx(t, policy)
    assert mm.matmul_fast(a, b, cfg).hits == int(golden_products(a, b, cfg).hit.sum())


@pytest.mark.parametrize("a, b, exc, message", [
    (np.zeros((2, 3), np.float32), np.zeros((4, 2), np.float32), ValueError, "shape mismatch"),
    (np.zeros((2, 3), np.float64), np.zeros((3, 2), np.float32), TypeError, "float32"),
    (np.zeros(3, np.float32), np.zeros((3, 2), np.float32), ValueError, "2-D"),
])
@pytest.mark.parametrize("fn", [mm.matmul_fast, mm.matmul_reference])
def test_bad_matmul_input(fn, a, b, exc, message):
    with pytest.raises(exc, match=message):
        fn(a, b, CFPUConfig.approx(1))
