"""The PyTorch MLP and the NumPy driver (canna.nn.mlp.MLP) on the same weights and batch: every
matmul's operands, products and hit counts equal, outputs within the summation bound, per phase."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from canna.nn.backends import get_backend
from canna.nn.mlp import MLP, PHASES, ArithPlan, Counters, log_softmax
from canna.spec.array import ArrayGeometry
from canna.torch import attach_counters, cfpu_layers, convert
from canna.torch.train import load_numpy_mlp, mlp

SIZES = [20, 16, 12, 10]
GEOMETRY = ArrayGeometry(8, 4)


def _numpy_step(model, x, y, plan):
    counters = Counters(model.n_layers, GEOMETRY)
    counters.recorder = []
    logits, cache = model.forward(x, plan, "golden-fast", counters)
    gw, _, _ = model.backward(logits, cache, y, plan, "golden-fast", counters)
    return logits, gw, counters


def _delta(logits, y):
    """The NumPy driver's output error (MLP.backward): softmax minus one-hot, over the batch."""
    d = np.exp(log_softmax(np.ascontiguousarray(logits)))   # row sums in the driver's order
    d[np.arange(len(y)), y] -= 1.0
    return (d / len(y)).astype(np.float32)


def _torch_step(model, x, y, plan, path):
    net = convert(load_numpy_mlp(mlp(SIZES), model), plan, path=path)
    counters = attach_counters(net, GEOMETRY)
    counters.recorder = []
    logits = net(torch.from_numpy(x))
    logits.backward(torch.from_numpy(_delta(logits.detach().numpy(), y)))
    return logits.detach().numpy(), [m.weight.grad.numpy().T for m in net if hasattr(m, "weight")], counters


def _same(x, y) -> bool:
    """Equal bit for bit, but for the sign of zeros: the NumPy driver masks the ReLU6 gradient
    by multiplying (``-g * 0 = -0``), PyTorch's ReLU6 backward selects (``+0``). A zero is never
    a hit and its products are zeros, so only the sign of a zero can differ downstream."""
    x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
    return x.shape == y.shape and bool(((x.view(np.uint32) == y.view(np.uint32)) | ((x == 0) & (y == 0))).all())


def _by_call(counters):
    return {(layer, phase): (a, b, config) for layer, phase, a, b, config in counters.recorder}


PLANS = {"b3": ArithPlan.uniform(3, 3), "dual0": ArithPlan.uniform(3, 0, "dual"),
         "b1-flipped": ArithPlan.uniform(3, 1, "b", checked={"forward": "input", "backward": "delta",
                                                             "gradient": "delta"}),
         "per-layer": ArithPlan.per_layer([0, None, 5], "dual", PHASES)}


@pytest.mark.parametrize("name", PLANS)
def test_numpy_path_agrees_bit_for_bit(name):
    """On the ``numpy`` path both drivers hand the same engine the same operands: every
    operand (up to the sign of zeros, see :func:`_same`), product, hit count and lane-array
    counter is equal, and so are the logits and weight gradients."""
    plan = PLANS[name]
    rng = np.random.default_rng(30)
    model = MLP(SIZES, seed=4)
    x = np.maximum(rng.standard_normal((13, SIZES[0])), 0).astype(np.float32)
    y = rng.integers(0, SIZES[-1], 13)
    logits_np, gw_np, c_np = _numpy_step(model, x, y, plan)
    logits_t, gw_t, c_t = _torch_step(model, x, y, plan, "numpy")
    calls_np, calls_t = _by_call(c_np), _by_call(c_t)
    assert set(calls_np) == set(calls_t) and len(calls_np) == 3 * 3 - 1   # no backward error of layer 1
    products = 0
    for key, (a, b, config) in calls_np.items():
        a_t, b_t, config_t = calls_t[key]
        assert config == config_t, key
        assert _same(a, a_t) and _same(b, b_t), key
        products += a.shape[0] * a.shape[1] * b.shape[1]
    for field in ("products", "hits", "nonzero", "lane"):
        assert np.array_equal(getattr(c_np, field), getattr(c_t, field)), field
    assert np.array_equal(logits_np.view(np.uint32), logits_t.view(np.uint32))
    assert all(_same(g_np, g_t) for g_np, g_t in zip(gw_np, gw_t))
    print(f"{name}: {len(calls_np)} matmuls, {products} products, {c_np.total_hits} hits, lane "
          f"counters and outputs equal bit for bit")


@pytest.mark.parametrize("path", ["auto", "tensor"])
@pytest.mark.parametrize("name", PLANS)
def test_torch_sums_agree_per_phase(cfpu, name, path):
    """The default CPU path (PyTorch's GEMM on matmul_fast's transform) and the pure-tensor path
    sum with PyTorch, so later operands differ from the NumPy driver's by rounding; per phase,
    on the operands the torch layer used, the NumPy driver's backend gives the same hit count,
    both equal to the golden one, every product is golden and both outputs are within the
    summation bound of the reference."""
    plan = PLANS[name]
    rng = np.random.default_rng(31)
    model = MLP(SIZES, seed=5)
    x = np.maximum(rng.standard_normal((11, SIZES[0])), 0).astype(np.float32)
    y = rng.integers(0, SIZES[-1], 11)
    net = convert(load_numpy_mlp(mlp(SIZES), model), plan, path=path)
    calls = []
    for i, m in enumerate(cfpu_layers(net)):
        m.hook = lambda m, phase, a, b, config, r, i=i: calls.append(
            (i, phase, a.numpy().copy(), b.contiguous().numpy().copy(), config, r.value.numpy().copy(), r.hits))
    logits = net(torch.from_numpy(x))
    logits.backward(torch.from_numpy(_delta(logits.detach().numpy(), y)))
    assert len(calls) == 8
    backend = get_backend("golden-fast")
    products = 0
    for layer, phase, a, b, config, value, hits in calls:
        assert config == plan.config(layer, phase)
        r = backend.matmul(np.ascontiguousarray(a), b, config)
        assert r.hits == hits, (layer, phase)
        products += cfpu.check_call(np.ascontiguousarray(a), b, config, value, hits, path)
        cfpu.check_call(np.ascontiguousarray(a), b, config, r.value, r.hits, "numpy")
    print(f"{name}: {len(calls)} {path}-path matmuls, {products} products golden, hit counts "
          f"equal to the NumPy backend's, outputs within the summation bound")
