"""The tensor engine: the shared rules on torch bits equal the NumPy twins and the C kernels, the
tensor path equals the NumPy path, and the hit rule on tensors is golden.qualifies."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from canna.sim import checked_rules as rules
from canna.sim import golden
from canna.sim import matmul as mm
from canna.sim.vectors import hit_pattern_fractions
from canna.spec.config import EXACT, MAX_TUNING_BITS, CFPUConfig, Policy
from canna.torch import LayerPlan, cfpu_matmul, engine


def test_qualifies_on_tensors_is_golden():
    """Every 61st fraction, the hit patterns and, per t, the edges of the checked field (all
    zeros or all ones, and one off either way)."""
    rng = np.random.default_rng(22)
    every = np.arange(0, 1 << 23, 61, dtype=np.uint32)
    pairs = 0
    for t in range(MAX_TUNING_BITS + 1):
        low = 1 << (22 - t)                       # the first bit below the checked field
        ones = ((1 << (t + 1)) - 1) * low
        edges = np.array([0, low - 1, low, ones, ones - 1, ones + low - 1, (1 << 23) - 1], np.uint32)
        f = np.concatenate([every, hit_pattern_fractions(rng, 4096).astype(np.uint32), edges])
        got = rules.qualifies(torch.from_numpy(f.view(np.int32)), t).numpy()
        assert np.array_equal(got, golden.qualifies(f, t)), t
        pairs += f.size
    print(f"hit rule on tensors: {pairs} (fraction, t) pairs as golden.qualifies")


def _as_np(x):
    if x is None:
        return None
    return x.numpy().view(np.uint32) if x.dtype == torch.int32 else x.numpy()


@pytest.mark.parametrize("data", ["nn", "special"])
@pytest.mark.parametrize("config", [c for c in [CFPUConfig.approx(t, p) for p in ("b", "dual")
                                                for t in (0, 1, 4, 22)]], ids=lambda c: c.describe())
def test_rules_on_tensors_equal_numpy_twins_and_c_kernels(cfpu, config, data):
    rng = np.random.default_rng(20)
    a = cfpu.draw(rng, (37, 53), data)
    b = cfpu.draw(rng, (53, 29), data, 0.05)
    t, dual = config.tuning_bits, config.policy is Policy.DUAL
    on_tensor = rules.transform_checked_numpy(torch.from_numpy(b.view(np.int32)), t, dual)
    on_numpy = rules.transform_checked_numpy(b.view(np.uint32), t, dual)
    c = mm.prepare(b, config, native=True)
    c_fields = (c.checked.view(np.uint32), None if c.rest is None else c.rest.view(np.uint32),
                c.qualifying, c.nonqualifying, c.row_flags, c.stats)
    for name, x, y, z in zip(("mq", "wn", "qualifying", "nonqualifying", "row_flags", "stats"),
                             on_tensor, on_numpy, c_fields):
        x = x if isinstance(x, np.ndarray) else _as_np(x)
        assert (x is None) == (y is None) == (z is None), name
        if x is not None:
            assert np.array_equal(x, y) and np.array_equal(y, z), name
    scan_t = rules.scan_first_numpy(torch.from_numpy(a.view(np.int32)), t, dual,
                                    on_tensor[4], on_tensor[5])
    scan_n = rules.scan_first_numpy(a.view(np.uint32), t, dual, on_numpy[4], on_numpy[5])
    scan_c = mm._scan_first(a.view(np.uint32), c, True)
    for name, x, y, z in zip(("risky", "ma", "cnt_normal", "cnt_q"), scan_t, scan_n, scan_c):
        assert (x is None) == (y is None) == (z is None), name
        if x is not None:
            assert np.array_equal(_as_np(x), y) and np.array_equal(y, z), name
    print(f"{config.describe()} {data}: transform of {b.size} and scan of {a.size} elements "
          f"({scan_n[0].size} risky) equal on tensors, NumPy and C")


@pytest.mark.parametrize("data", ["nn", "special"])
@pytest.mark.parametrize("config", [EXACT] + [CFPUConfig.approx(t, p) for p in ("b", "dual")
                                              for t in (0, 2, 9)], ids=lambda c: c.describe())
def test_tensor_path_equals_numpy_path(cfpu, config, data):
    rng = np.random.default_rng(21)
    a, b = cfpu.draw(rng, (19, 31), data), cfpu.draw(rng, (31, 17), data, 0.05)
    r = {p: engine.matmul(torch.from_numpy(a), torch.from_numpy(b), config, path=p)
         for p in ("numpy", "cpu", "tensor")}
    assert r["numpy"].hits == r["cpu"].hits == r["tensor"].hits
    assert r["numpy"].products == r["cpu"].products == r["tensor"].products
    compared = sum(cfpu.check_call(a, b, config, r[p].value.numpy(), r[p].hits, p) for p in r)
    print(f"{config.describe()} {data}: all three paths {r['numpy'].hits} hits of {a.size * 17}, "
          f"{compared} GEMM products equal to golden, outputs within the summation bound")


def test_overflowing_products_are_inf_on_both_paths():
    """A product that overflows is inf even where a fused GEMM would hide it (matmul_fast's
    reproducer: 1 * -3e38 + 1e38 * 4 is +inf), exact and approximate."""
    a = torch.tensor([[1.0, 1e38]] * 4)
    b = torch.tensor([[-3e38], [4.0]])
    for config in (EXACT, CFPUConfig.approx(0), CFPUConfig.approx(3, "dual")):
        for path in ("numpy", "cpu", "tensor"):
            v = engine.matmul(a, b, config, path=path).value
            ref = mm.matmul_reference(a.numpy(), b.numpy(), config).value
            assert torch.equal(v, torch.from_numpy(ref)), (config, path, v)
    print("overflowing products: reference's +inf on all three paths, 3 configurations")


def test_cfpu_matmul_phases_and_plan():
    """cfpu_matmul: forward a @ b, backward g @ b.T, gradient a.T @ g, each under its own phase."""
    torch.manual_seed(3)
    a = torch.randn(6, 5, requires_grad=True)
    b = torch.randn(5, 4, requires_grad=True)
    plan = {"forward": CFPUConfig.approx(0), "gradient": CFPUConfig.approx(1, "dual")}
    seen = []
    y = cfpu_matmul(a, b, plan, hook=lambda phase, x, w, config, r: seen.append((phase, config, r.hits)))
    g = torch.randn(6, 4)
    y.backward(g)
    want = LayerPlan.of(plan)
    assert [(p, c) for p, c, _ in seen] == [("forward", want.forward), ("gradient", want.gradient),
                                            ("backward", EXACT)]
    assert torch.equal(y, engine.matmul(a.detach(), b.detach(), want.forward).value)
    # The exact phase on the CPU's default (NumPy) path is one NumPy GEMM of the same operands.
    assert np.array_equal(a.grad.numpy(), g.numpy() @ b.detach().numpy().T)
    print(f"cfpu_matmul: 3 phases with their own configurations, hits {[h for *_, h in seen]}")


@pytest.mark.parametrize("a, b, path, exc, message", [
    (torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 2), "auto", TypeError,
     r"^a: expected a float32 tensor, got dtype torch.float64$"),
    (torch.ones(2, 3), torch.ones(2, 2), "auto", ValueError, r"^shape mismatch: a is \(2, 3\), b is \(2, 2\)"),
    (torch.ones(2, 3), np.ones((3, 2), np.float32), "auto", TypeError, r"^b: expected a torch.Tensor"),
    (torch.ones(3), torch.ones(3, 2), "auto", ValueError, r"^a: expected a 2-D tensor, got shape \(3,\)$"),
    (torch.ones(2, 3), torch.ones(3, 2), "gpu", ValueError, r"^unknown path 'gpu'; known: auto, cpu, numpy, tensor$"),
])
def test_bad_input(a, b, path, exc, message):
    with pytest.raises(exc, match=message):
        engine.matmul(a, b, EXACT, path=path)


def test_reduced_precision_gemm_is_refused():
    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with pytest.raises(RuntimeError, match="full float32 GEMMs"):
            engine.matmul(torch.ones(2, 2), torch.ones(2, 2), CFPUConfig.approx(0), path="tensor")
    finally:
        torch.set_float32_matmul_precision(old)
