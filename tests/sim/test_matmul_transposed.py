"""The training step's fast paths in the fast matmul: one transform serving ``W`` and ``W.T``
(:attr:`Prepared.T`, per-column qualifying counts from the C transform), the gradient's
transposed result, and the nonzero-finite counts. Each against the path it replaces and the
golden reference: same products (hit counts), values within the summation bound."""
import numpy as np
import pytest

from canna.sim import golden
from canna.sim import matmul as mm
from canna.spec.config import EXACT, CFPUConfig
from helpers import nn_like

CONFIGS = [EXACT] + [CFPUConfig.approx(t, p) for p in ("b", "dual") for t in (0, 1, 4, 22)]


def with_specials(rng, k, n):
    """NN-like weights with the rows the lean transform loop hands to the full one."""
    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    w[3, 5], w[9, 0] = np.inf, np.nan
    w[17, 6] = np.float32(2.0 ** 127 * 1.75)   # qualifies for t = 0, its power of two overflows
    w[25, 2] = np.float32(1e-41)               # subnormal
    w[30, :] = 0.0
    return w


def independent_column_counts(w, t):
    """Qualifying elements per column, from the golden rule: a hit of 1.0 * w is w's power of two."""
    ones = np.full(w.shape, 0x3F800000, np.uint32)
    r = golden.mul_bits(ones, w.view(np.uint32), CFPUConfig.approx(t, "b"))
    return np.count_nonzero(r.hit, axis=0)


@pytest.mark.parametrize("t", [0, 1, 4, 22])
@pytest.mark.parametrize("kind", ["nn", "specials"])
def test_column_counts_c_numpy_and_golden(t, kind):
    rng = np.random.default_rng(t)
    w = nn_like(rng, 2, 41, 37)[1] if kind == "nn" else with_specials(rng, 41, 37)
    c = CFPUConfig.approx(t, "b")
    p_c = mm.prepare(w, c, native=True, columns=True)
    p_n = mm.prepare(w, c, native=False, columns=True)
    want = independent_column_counts(w, t)
    assert np.array_equal(p_c.qualifying_cols, want) and np.array_equal(p_n.qualifying_cols, want)
    assert p_c.qualifying_cols.sum() == p_c.qualifying.sum()
    assert mm.prepare(w, c).qualifying_cols is None          # only on request
    assert mm.prepare(w, CFPUConfig.approx(t, "dual"), columns=True).qualifying_cols is None
    # the other outputs do not change when the columns are counted
    plain = mm.prepare(w, c, native=True)
    assert np.array_equal(plain.checked.view(np.uint32), p_c.checked.view(np.uint32))
    assert np.array_equal(plain.qualifying, p_c.qualifying) and plain.quick == p_c.quick
    print(f"t={t} {kind}: {want.size} column counts ({int(want.sum())} qualifying) equal in C, "
          f"NumPy and the golden rule")


def test_kernel_rejects_column_counts_for_dual():
    lib = mm._Kernels.get()
    w = np.ones((4, 5), np.float32)
    out = [np.empty(20, np.uint32), np.empty(20, np.uint32), np.empty(4, np.int64),
           np.empty(4, np.int64), np.empty(4, np.uint32), np.empty(5, np.int32)]
    with pytest.raises(ValueError, match="qual_cols: policy b only"):
        lib.transform_checked(w, 4, 5, 3, True, *out, np.empty(5, np.uint32))
    with pytest.raises(ValueError, match="qual_cols: 4 bytes, need 20"):
        lib.transform_checked(w, 4, 5, 3, False, out[0], None, *out[2:], np.empty(1, np.uint32))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
@pytest.mark.parametrize("kind", ["nn", "specials"])
def test_transposed_prepared_equals_preparing_the_transpose(config, kind):
    """``prepare(W, columns=True).T`` (and ``prepare(W.T)`` on the view) serve the backward
    phase's ``delta @ W.T`` exactly as preparing a copy of ``W.T``: the same transformed
    operand, counts and lean-path arguments, the same hit counts as the golden reference."""
    rng = np.random.default_rng(3)
    w = nn_like(rng, 2, 45, 30)[1] if kind == "nn" else with_specials(rng, 45, 30)
    delta = (rng.standard_normal((9, 30)) * 0.1).astype(np.float32)
    delta[delta < -0.1] = 0.0
    copy = mm.prepare(np.ascontiguousarray(w.T), config)
    shared = mm.prepare(w, config, columns=True).T
    view = mm.prepare(w.T, config)
    representable = not config.enabled or (config.policy.value == "b" and kind == "nn")
    assert (shared is not None) == representable
    if shared is not None:
        for name in ("qualifying", "nonqualifying", "row_flags", "stats"):
            assert np.array_equal(getattr(shared, name), getattr(copy, name)), name
        assert np.array_equal(shared.checked.view(np.uint32), copy.checked.view(np.uint32))
        assert shared.quick == copy.quick and shared.rest is None
        assert np.shares_memory(view.original, w) and not view.checked.flags.c_contiguous
    ref = mm.matmul_reference(delta, np.ascontiguousarray(w.T), config)
    with np.errstate(invalid="ignore"):   # inf * 0 in the specials' bound: those are not compared
        bound = mm.summation_bound(np.abs(delta).astype(np.float64) @ np.abs(w.T).astype(np.float64) * 2,
                                   delta.shape[1])
    for prep in filter(None, (copy, shared, view)):
        r = mm.matmul_fast(delta, prep)
        assert r.hits == ref.hits and r.products == ref.products
        finite = np.isfinite(ref.value)
        assert np.array_equal(np.isnan(r.value), np.isnan(ref.value))
        assert np.all(np.abs(r.value[finite].astype(np.float64) - ref.value[finite]) <= bound[finite])
    print(f"{config.describe()} {kind}: W.T {'shared' if shared is not None else 'prepared as a copy'}, "
          f"{ref.hits} hits of {ref.products} products as the reference")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
@pytest.mark.parametrize("kind", ["nn", "specials"])
def test_transposed_result(config, kind):
    """``matmul_fast(a, b, transposed=True)`` is ``(a @ b).T`` with the same products: the
    weight gradient without a transposing copy (lean, general and exact paths)."""
    rng = np.random.default_rng(5)
    a, b = nn_like(rng, 23, 17, 31, specials=kind == "specials")
    r = mm.matmul_fast(a, b, config)
    t = mm.matmul_fast(a, b, config, transposed=True)
    assert t.value.shape == (31, 23) and t.value.flags.c_contiguous
    assert t.hits == r.hits and t.products == r.products
    ref = mm.matmul_reference(a, b, config)
    assert t.hits == ref.hits
    with np.errstate(invalid="ignore"):
        bound = mm.summation_bound(np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64) * 2, 17)
    finite = np.isfinite(ref.value)
    assert np.array_equal(np.isnan(t.value.T), np.isnan(ref.value))
    assert np.all(np.abs(t.value.T[finite].astype(np.float64) - ref.value[finite]) <= bound[finite])
    print(f"{config.describe()} {kind}: transposed result, {t.hits} hits as the reference, "
          f"values within the summation bound")


def test_count_nonzero_finite():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((13, 29)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = 0.0
    x[0, 0], x[1, 1], x[2, 2], x[3, 3], x[4, 4] = np.inf, -np.inf, np.nan, -0.0, np.float32(1e-42)
    x[5, 5] = np.float32(3.4e38)
    for m in (x, x.T, np.ascontiguousarray(x.T), x[::2]):
        nz = (m != 0) & np.isfinite(m)
        for axis in (0, 1):
            want = np.count_nonzero(nz, axis=axis)
            for native in (True, False):
                got = mm.count_nonzero_finite(m, axis, native=native)
                assert got.dtype == np.int64 and np.array_equal(got, want), (m.shape, axis, native)
    with pytest.raises(ValueError, match="axis must be 0 or 1"):
        mm.count_nonzero_finite(x, 2)
    print("nonzero finite counts per row and column equal NumPy's on 4 layouts, C and NumPy")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
@pytest.mark.parametrize("kind", ["nn", "specials"])
def test_transform_counts_nonzero_operands(config, kind):
    """``prepare(..., nonzero=True)`` counts the nonzero finite elements per row (and column) in
    the transform's pass; the lean path then returns the products of two nonzero finite
    operands, which must equal the count from the operands themselves."""
    rng = np.random.default_rng(11)
    w = nn_like(rng, 2, 45, 30)[1] if kind == "nn" else with_specials(rng, 45, 30)
    w[rng.random(w.shape) < 0.2] = 0.0
    w[7, 3] = -0.0
    nz = (w != 0) & np.isfinite(w)
    for native in (True, False):
        p = mm.prepare(w, config, native=native, columns=True, nonzero=True)
        assert np.array_equal(p.nonzero_rows, np.count_nonzero(nz, axis=1))
        if config.enabled and config.policy.value == "dual":
            assert p.nonzero_cols is None
        else:
            assert np.array_equal(p.nonzero_cols, np.count_nonzero(nz, axis=0))
        plain = mm.prepare(w, config, native=native)
        assert plain.nonzero_rows is None and np.array_equal(plain.checked.view(np.uint32),
                                                             p.checked.view(np.uint32))
    x = np.maximum(rng.standard_normal((8, 45)), 0).astype(np.float32)
    r = mm.matmul_fast(x, p)
    want = int(np.count_nonzero(x, axis=0) @ np.count_nonzero(nz, axis=1))
    assert r.nonzero in (None, want)
    if p.quick is not None:
        assert r.nonzero == want and r.hits == mm.matmul_reference(x, w, config).hits
    t = p.T
    if t is not None:
        d = (rng.standard_normal((6, 30))).astype(np.float32)
        d[d < 0] = 0.0
        rt = mm.matmul_fast(d, t)
        want_t = int(np.count_nonzero(d, axis=0) @ np.count_nonzero(nz, axis=0))
        assert rt.nonzero in (None, want_t) and (t.quick is None or rt.nonzero == want_t)
    print(f"{config.describe()} {kind}: nonzero counts from the transform equal NumPy's; lean path "
          f"{'counted ' + str(r.nonzero) if r.nonzero is not None else 'not taken'} nonzero products")


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_nonzero_counts_with_zeros_in_some_rows(config):
    """The kernel counts a row's nonzero elements only where the row has a zero exponent field
    (a zero or subnormal) and books the other rows in one count per column at the end: rows of
    every kind mixed (none, one or all zeros, a subnormal, rows the full loop takes), through
    prepare and the fused update, equal to NumPy's counts."""
    rng = np.random.default_rng(19)
    cases = 0
    for k, n in [(1, 1), (7, 9), (40, 33), (64, 130)]:
        w = with_specials(rng, k, n) if k >= 31 else (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
        rows = rng.random(k) < 0.4
        w[rows, rng.integers(0, n, k)[rows]] = 0.0                 # one zero in some rows
        w[k // 2, rng.integers(0, n)] = np.float32(3e-41)          # a subnormal
        nz = (w != 0) & np.isfinite(w)
        v = (rng.standard_normal(w.shape) * 0.01).astype(np.float32)
        for fused in (False, True) if config.enabled else (False,):
            target = w.copy()
            if fused:   # the update moves the weights; zeros stay zeros (v and g zero there)
                vv = np.where(nz, v, 0).astype(np.float32)
                with np.errstate(over="ignore", invalid="ignore"):
                    p = mm.sgd_update_prepare(target, vv, vv.copy(), 0.9, 0.01, config, columns=True,
                                              nonzero=True)
                nz_now = (target != 0) & np.isfinite(target)
            else:
                p = mm.prepare(target, config, columns=True, nonzero=True)
                nz_now = nz
            assert np.array_equal(p.nonzero_rows, np.count_nonzero(nz_now, axis=1))
            if p.nonzero_cols is not None:
                assert np.array_equal(p.nonzero_cols, np.count_nonzero(nz_now, axis=0))
            twin = mm.prepare(target, config, columns=True, nonzero=True, native=False)
            for name in ("checked", "qualifying", "qualifying_cols", "nonzero_rows", "nonzero_cols", "stats"):
                x, y = getattr(p, name), getattr(twin, name)
                assert (x is None and y is None) or np.array_equal(np.asarray(x).view(np.uint8),
                                                                   np.asarray(y).view(np.uint8)), name
            cases += 1
    print(f"{config.describe()}: {cases} operands with zeros in some rows, counts equal NumPy's")


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.enabled], ids=lambda c: c.describe())
@pytest.mark.parametrize("kind", ["nn", "specials"])
@pytest.mark.parametrize("native", [True, False])
def test_sgd_update_prepare_is_the_update_then_prepare(config, kind, native):
    """The fused SGD update + transform: the same w and v bit for bit as NumPy's in-place float32
    update, and the same prepared operand as preparing the new w."""
    rng = np.random.default_rng(13)
    w = nn_like(rng, 2, 60, 70)[1] if kind == "nn" else with_specials(rng, 60, 70)
    v = (rng.standard_normal(w.shape) * 0.01).astype(np.float32)
    g = (rng.standard_normal(w.shape) * 0.5).astype(np.float32)
    g[0, :5] = [0.0, -0.0, 1e-42, 3e38, -3e38]
    w2, v2 = w.copy(), v.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        p = mm.sgd_update_prepare(w, v, g, 0.9, 0.013, config, columns=True, nonzero=True, native=native)
        v2 *= 0.9
        v2 -= 0.013 * g
        w2 += v2
    assert np.array_equal(w.view(np.uint32), w2.view(np.uint32))
    assert np.array_equal(v.view(np.uint32), v2.view(np.uint32))
    q = mm.prepare(w2, config, columns=True, nonzero=True)
    assert p.original is w and p.quick == q.quick
    for name in ("checked", "rest", "qualifying", "nonqualifying", "row_flags", "stats", "qualifying_cols",
                 "nonzero_rows", "nonzero_cols"):
        x, y = getattr(p, name), getattr(q, name)
        assert (x is None and y is None) or np.array_equal(np.asarray(x).view(np.uint8),
                                                           np.asarray(y).view(np.uint8)), name
    print(f"{config.describe()} {kind} {'C' if native else 'NumPy'}: fused update of {w.size} weights "
          f"bit-identical, transform equal to prepare()")


@pytest.mark.parametrize("t", [0, 4, 22])
@pytest.mark.parametrize("kind", ["relu", "zeros", "subnormal", "inf", "huge"])
def test_lean_scan_of_a_transposed_view(t, kind):
    """The weight gradient's ``delta.T`` (an F-contiguous view) is scanned as its transpose
    (``scan_first_quick_t``): the same verdict, hits and nonzero products as scanning a copy,
    and matmul_fast on the view gives the copy's value bit for bit and its counts."""
    rng = np.random.default_rng(t + 7)
    x = np.clip(rng.standard_normal((23, 19)), 0, 6).astype(np.float32)   # the checked input
    x[4] = 0.0
    delta = (rng.standard_normal((23, 11)) * 1e-3).astype(np.float32)
    delta[:, 3] = 0.0
    delta[7, :] = 0.0
    if kind == "zeros":
        delta[...] = 0.0
    elif kind == "subnormal":
        delta[2, 5] = np.float32(1e-41)
    elif kind == "inf":
        delta[9, 1] = np.inf
    elif kind == "huge":
        delta[1, 1] = np.float32(3e38)
    lib = mm._Kernels.get()
    prep = mm.prepare(x, CFPUConfig.approx(t, "b"), nonzero=True)
    view, copy = delta.T, np.ascontiguousarray(delta.T)
    assert view.flags.f_contiguous and not view.flags.c_contiguous
    for nz in ((), (prep.nonzero_u32,)):
        got = lib.scan_first_quick_t(delta, prep.qualifying_u32, *prep.quick, *nz)
        assert got == lib.scan_first_quick(copy, prep.qualifying_u32, *prep.quick, *nz)
    declined = lib.scan_first_quick(copy, prep.qualifying_u32, *prep.quick) < 0
    assert declined == (kind in ("subnormal", "inf", "huge"))
    r_view = mm.matmul_fast(view, prep, transposed=True)
    r_copy = mm.matmul_fast(copy, prep, transposed=True)
    ref = mm.matmul_reference(copy, x, prep.config)
    assert np.array_equal(r_view.value.view(np.uint32), r_copy.value.view(np.uint32))
    assert r_view.value.flags.c_contiguous
    assert (r_view.hits, r_view.products) == (r_copy.hits, r_copy.products) == (ref.hits, ref.products)
    if not declined:
        assert r_view.nonzero == r_copy.nonzero == int(mm.count_nonzero_finite(copy, 0) @ prep.nonzero_rows)
    print(f"t={t} {kind}: transposed-view scan {'declined' if declined else 'lean'}, {r_view.hits} hits "
          f"of {r_view.products} as the copy's and the reference's")


def test_transposed_prepared_takes_the_kernels_uint32_counts():
    """Prepared.T's lean-path counts are the kernel's uint32 column counts, equal to the int64
    ones it reports (no conversion on the way)."""
    rng = np.random.default_rng(3)
    w = with_specials(rng, 41, 37)
    w[[3, 9, 17]] = 0.5                 # no inf, NaN or overflow: T exists
    for fused in (False, True):
        if fused:
            v, g = np.zeros_like(w), (rng.standard_normal(w.shape) * 1e-3).astype(np.float32)
            p = mm.sgd_update_prepare(w, v, g, 0.9, 0.01, CFPUConfig.approx(4, "b"), columns=True, nonzero=True)
        else:
            p = mm.prepare(w, CFPUConfig.approx(4, "b"), columns=True, nonzero=True)
        t = p.T
        assert t.qualifying_u32.dtype == t.nonzero_u32.dtype == np.uint32
        assert np.array_equal(t.qualifying_u32, p.qualifying_cols) and np.array_equal(t.nonzero_u32, p.nonzero_cols)
        assert np.array_equal(t.qualifying, p.qualifying_cols) and t.qualifying.dtype == np.int64
        assert np.array_equal(p.nonzero_u32, p.nonzero_rows)
    print("Prepared.T: uint32 column counts of the kernel, equal to the int64 ones (2 paths)")
