"""MLP: gradients against finite differences, plans, counters, input checks."""
import numpy as np
import pytest

from canna.spec.config import CFPUConfig
from canna.nn.mlp import MLP, ArithPlan, Counters, relu6


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    model = MLP([5, 7, 3], seed=3)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = np.array([0, 2, 1, 2])
    plan = ArithPlan.exact(2)
    logits, cache = model.forward(x, plan, "native")
    gw, gb, loss = model.backward(logits, cache, y, plan, "native")
    eps, checked = 1e-2, 0
    for i in range(2):
        for idx in [(0, 0), (2, 1), (4, 2)] if i == 0 else [(0, 0), (6, 2), (3, 1)]:
            w = model.weights[i]
            old = w[idx]
            losses = []
            for d in (eps, -eps):
                w[idx] = old + d
                z, c = model.forward(x, plan, "native")
                losses.append(model.backward(z, c, y, plan, "native")[2])
            w[idx] = old
            num = (losses[0] - losses[1]) / (2 * eps)
            assert gw[i][idx] == pytest.approx(num, rel=2e-2, abs=2e-4)
            checked += 1
    print(f"{checked} weight gradients match central differences (loss {loss:.4f})")


def test_plans_counters_and_errors():
    plan = ArithPlan.per_layer([3, None, 0], "dual")
    assert plan.bits("forward") == [3, None, 0] and plan.bits("gradient") == [None] * 3
    assert plan.config(0, "forward") == CFPUConfig.approx(3, "dual")
    up = ArithPlan.uniform(2, 4, checked={"gradient": "delta"})
    assert up.checked_right("gradient") and not ArithPlan.exact(2).checked_right("gradient")
    with pytest.raises(ValueError, match="checked operand"):
        ArithPlan.exact(2, {"forward": "delta"})
    with pytest.raises(ValueError, match="tuning_bits"):
        ArithPlan.uniform(2, 23)
    model = MLP([6, 4, 2])
    with pytest.raises(ValueError, match="input shape mismatch"):
        model.forward(np.zeros((3, 5), np.float32), ArithPlan.exact(2), "native")
    c = Counters(2)
    z, _ = model.forward(np.ones((3, 6), np.float32), ArithPlan.uniform(2, 0), "golden-fast", c)
    assert c.total_products == 3 * (6 * 4 + 4 * 2) and 0 < c.total_hits <= c.total_products
    assert np.all(relu6(np.array([-1, 3, 9.0])) == [0, 3, 6])
    print(f"forward at t=0: {c.total_products} products, {c.total_hits} hits; plan checks OK")
