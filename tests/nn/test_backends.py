"""Backends: registry, operand routing, and golden-fast vs golden-exact agreement on NN matrices."""
import numpy as np
import pytest

from canna.spec.config import CFPUConfig, EXACT
from canna.sim.matmul import summation_bound
from canna.nn.backends import (Backend, MatmulResult, backend_names, checked_matmul, get_backend,
                               nonzero_products, register_backend)
from canna.nn.datasets import load_digits
from canna.nn.mlp import MLP, ArithPlan, Counters


def test_registry():
    names = backend_names()
    print(f"backends: {names}")
    assert {"native", "golden-fast", "golden-exact", "rtl"} <= set(names)
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        get_backend("gpu")
    with pytest.raises(ValueError, match="exact float32 only"):
        get_backend("native").matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32),
                                     CFPUConfig.approx(3))
    with pytest.raises(ValueError, match="already registered"):
        register_backend(Backend("native", lambda a, b, c: None))
    calls = []

    def fake(a, b, config):
        calls.append(config)
        return MatmulResult(a @ b, a.shape[0] * a.shape[1] * b.shape[1], 0)

    register_backend(Backend("test-fake", fake, "test"), replace=True)
    r = checked_matmul(get_backend("test-fake"), np.ones((2, 3), np.float32), np.ones((3, 4), np.float32), EXACT)
    assert r.value.shape == (2, 4) and r.products == 24 and len(calls) == 1


def test_checked_operand_swap():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 7)).astype(np.float32)
    b = rng.standard_normal((7, 3)).astype(np.float32)
    cfg = CFPUConfig.approx(1)
    fast = get_backend("golden-fast")
    right = checked_matmul(fast, a, b, cfg, True)
    left = checked_matmul(fast, a, b, cfg, False)
    # Checking the left operand is the same as checking it as b of the transposed product.
    direct = fast.matmul(np.ascontiguousarray(b.T), np.ascontiguousarray(a.T), cfg)
    print(f"hits: right checked {right.hits}, left checked {left.hits} of {right.products}")
    assert np.array_equal(left.value, direct.value.T) and left.hits == direct.hits
    assert right.products == left.products == 105
    assert nonzero_products(a, b) == 105


@pytest.mark.parametrize("policy", ["b", "dual"])
def test_fast_and_exact_agree_on_training_matmuls(policy):
    """One training step of a small MLP on digits: every forward, backward and gradient matmul
    (operands as the golden-fast run produced them) recomputed by golden-exact: identical hit
    counts, values within the summation bound."""
    data = load_digits()
    model = MLP([64, 16, 12, 10], seed=1)
    x, y = data.x_train[:12], data.y_train[:12]
    plan = ArithPlan.uniform(model.n_layers, 1, policy)
    fast, exact = get_backend("golden-fast"), get_backend("golden-exact")
    log = []

    def logged(a, b, config):
        r = fast.matmul(a, b, config)
        log.append((a, b, config, r))
        return r

    c = Counters(model.n_layers)
    logits, cache = model.forward(x, plan, Backend("spy", logged), c, dropout=0.5,
                                  rng=np.random.default_rng(0))
    model.backward(logits, cache, y, plan, Backend("spy", logged), c)
    assert len(log) == 8  # 3 forward, 3 gradient, 2 backward (none for the first layer)
    hits_f = hits_e = 0
    for a, b, config, rf in log:
        re = exact.matmul(a, b, config)
        assert rf.hits == re.hits and rf.products == re.products
        # Bound from the magnitudes of the products (approximate ones are within 1/3 of exact).
        absum = (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) * 1.5
        assert np.all(np.abs(rf.value.astype(np.float64) - re.value) <= summation_bound(absum, a.shape[1]))
        hits_f += rf.hits
        hits_e += re.hits
    assert hits_f == c.total_hits == hits_e
    print(f"policy {policy}: 8 matmuls, {c.total_products} products, {hits_e} hits identical in both "
          f"backends; values within the summation bound")
