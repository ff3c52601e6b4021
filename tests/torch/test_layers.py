"""CFPULinear and CFPUConv2d: every product of the three phases equal to the golden model, hit
counts and counters equal, outputs within the summation bound; convert() and the GTA helper."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from canna.nn.gta import GTAConfig, GTAController
from canna.nn.mlp import LANE_FIELDS, PHASES, ArithPlan
from canna.sim.accounting import account_matmul
from canna.spec.array import ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig
from canna.torch import (CFPUConv2d, CFPULinear, LayerPlan, attach_counters, cfpu_layers, convert,
                         follow_gta, set_level)

GEOMETRY = ArrayGeometry(4, 3)
PATHS = ("cpu", "numpy", "tensor")


def every_case(test):
    """Both paths, the five configurations of conftest.CONFIGS, checked operands on either side,
    NN-like and special operands."""
    for mark in (pytest.mark.parametrize("data", ["nn", "special"]),
                 pytest.mark.parametrize("checked", ["default", "flipped"]),
                 pytest.mark.parametrize("config", range(5),
                                         ids=lambda i: ["exact", "b0", "b3", "dual0", "dual4"][i]),
                 pytest.mark.parametrize("path", PATHS)):
        test = mark(test)
    return test


def _record(layer):
    calls = []
    layer.hook = lambda m, phase, a, b, config, r: calls.append(
        (phase, a.detach().contiguous().numpy().copy(), b.detach().contiguous().numpy().copy(),
         config, r.value.detach().contiguous().numpy().copy(), r.hits))
    return calls


def _check_calls(cfpu, calls, counters, path) -> int:
    """Every recorded matmul against the golden model; the counters equal the golden hit counts
    and the lane array's accounting of the same operands."""
    checked = 0
    hits = np.zeros(len(PHASES), np.int64)
    lane = np.zeros((len(PHASES), len(LANE_FIELDS)), np.int64)
    for phase, a, b, config, value, h in calls:
        checked += cfpu.check_call(a, b, config, value, h, path)
        j = PHASES.index(phase)
        hits[j] += h
        t = account_matmul(a, b, config, GEOMETRY)
        lane[j] += [int(getattr(t, f)) for f in LANE_FIELDS]
    assert np.array_equal(counters.hits[0], hits)
    assert np.array_equal(counters.lane[0], lane)
    return checked


@every_case
def test_linear_products_all_phases(cfpu, path, config, checked, data):
    config = cfpu.CONFIGS[config]
    rng = np.random.default_rng(10)
    m, k, n = 8, 24, 10
    x_np, w_np, g_np = cfpu.draw(rng, (m, k), data), cfpu.draw(rng, (k, n), data, 0.05), cfpu.draw(rng, (m, n), data, 0.1)
    plan = LayerPlan.of(config, cfpu.CHECKED[checked])
    layer = CFPULinear(k, n, bias=False, config=plan, path=path)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w_np.T))
    counters = attach_counters(layer, GEOMETRY)
    calls = _record(layer)
    x = torch.from_numpy(x_np).requires_grad_()
    y = layer(x)
    y.backward(torch.from_numpy(g_np))
    # Each phase got its natural operands, oriented by its checked operand.
    natural = {"forward": (x_np, w_np), "backward": (g_np, w_np.T), "gradient": (x_np.T, g_np)}
    outputs = {"forward": y.detach().numpy(), "backward": x.grad.numpy(),
               "gradient": layer.weight.grad.numpy().T}
    assert [c[0] for c in calls] == ["forward", "gradient", "backward"]
    for phase, a, b, cfg, value, _ in calls:
        left, right = natural[phase]
        want = (left, right) if plan.checked_right(phase) else (right.T, left.T)
        assert np.array_equal(a.view(np.uint32), want[0].view(np.uint32)), phase
        assert np.array_equal(b.view(np.uint32), want[1].view(np.uint32)), phase
        assert cfg == config
        out = outputs[phase] if plan.checked_right(phase) else outputs[phase].T
        assert np.array_equal(out.view(np.uint32), value.view(np.uint32)), phase
    products = _check_calls(cfpu, calls, counters, path)
    assert np.array_equal(counters.products[0], [m * k * n] * 3)
    print(f"linear {path} {config.describe()} checked {checked} {data}: {products} products equal "
          f"to golden, {int(counters.hits.sum())} hits, 3 phases")


CONV = dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2)


@every_case
def test_conv_products_all_phases(cfpu, path, config, checked, data):
    config = cfpu.CONFIGS[config]
    rng = np.random.default_rng(11)
    layer = CFPUConv2d(**CONV, bias=False, config=LayerPlan.of(config, cfpu.CHECKED[checked]), path=path)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(cfpu.draw(rng, tuple(layer.weight.shape), data, 0.1)))
    x = torch.from_numpy(cfpu.draw(rng, (2, 4, 7, 7), data)).requires_grad_()
    counters = attach_counters(layer, GEOMETRY)
    calls = _record(layer)
    y = layer(x)
    y.backward(torch.from_numpy(cfpu.draw(rng, tuple(y.shape), data, 0.1)))
    # The forward products are the im2col matmul's: patches (per group) times the weight.
    cols = F.unfold(x.detach(), 3, 1, 1, 2)                       # (2, 36, 16)
    weight = layer.weight.detach().numpy().reshape(2, 3, 18)
    plan = layer.plan
    forward = [c for c in calls if c[0] == "forward"]
    assert len(forward) == 2 and len(calls) == 6
    for g, (_, a, b, *_rest) in enumerate(forward):
        patches = cols[:, 18 * g:18 * (g + 1)].permute(0, 2, 1).reshape(32, 18).numpy()
        want = (patches, weight[g].T) if plan.checked_right("forward") else (weight[g], patches.T)
        assert np.array_equal(a.view(np.uint32), want[0].view(np.uint32))
        assert np.array_equal(b.view(np.uint32), want[1].view(np.uint32))
    products = _check_calls(cfpu, calls, counters, path)
    assert np.array_equal(counters.products[0], [2 * 32 * 18 * 3] * 3)
    print(f"conv {path} {config.describe()} checked {checked} {data}: {products} products equal "
          f"to golden, {int(counters.hits.sum())} hits, 3 phases x 2 groups")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kw", [dict(CONV), dict(CONV, dilation=2, padding=2, stride=1),
                                dict(CONV, groups=1, padding="same", stride=1, padding_mode="reflect"),
                                dict(CONV, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))],
                         ids=["groups", "dilation", "same-reflect", "rectangular"])
def test_exact_conv_is_torch_conv(path, kw):
    """Exact arithmetic: outputs and gradients equal nn.Conv2d's up to float32 summation (the
    im2col wiring, for every argument); unbatched input too."""
    torch.manual_seed(0)
    ref = nn.Conv2d(**kw)
    layer = convert(nn.Sequential(ref), EXACT, path=path)[0]
    assert isinstance(layer, CFPUConv2d)
    x = torch.randn(3, 4, 9, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y2 = layer(x), nn.Conv2d.forward(layer, x2)
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    assert y.shape == y2.shape
    tol = dict(atol=1e-5, rtol=1e-5)
    assert torch.allclose(y, y2, **tol) and torch.allclose(x.grad, x2.grad, **tol)
    assert torch.allclose(layer(x[0]), y[0], **tol)
    print(f"exact conv {kw}: {y.numel()} outputs and {x.numel()} input gradients as nn.Conv2d's")


def test_convert_copies_weights_and_sets_plans():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 5),
                          nn.ReLU(), nn.Linear(5, 2))
    x = torch.randn(4, 1, 8, 8)
    y_before = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    convert(model, EXACT)
    assert [type(m) for m in cfpu_layers(model)] == [CFPUConv2d, CFPULinear, CFPULinear]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.allclose(model(x), y_before, atol=1e-6)
    plan = ArithPlan.per_layer([1, None, 4], "dual", PHASES, {"gradient": "delta"})
    convert(model, plan)
    got = [m.plan for m in cfpu_layers(model)]
    assert got[0].forward == CFPUConfig.approx(1, "dual") and got[1].backward == EXACT
    assert got[2].gradient == CFPUConfig.approx(4, "dual") and got[2].checked["gradient"] == "delta"
    convert(model, [CFPUConfig.approx(2), None, {"forward": CFPUConfig.approx(5)}])
    assert [m.plan.forward for m in cfpu_layers(model)] == [CFPUConfig.approx(2), EXACT, CFPUConfig.approx(5)]
    counters = attach_counters(model)
    model(x).sum().backward()
    assert counters.products.shape == (3, 3) and counters.hits[0, 0] > 0
    assert counters.hits[1].sum() == 0
    lin = convert(nn.Linear(3, 2), CFPUConfig.approx(0))
    assert isinstance(lin, CFPULinear)
    with pytest.raises(ValueError, match="^2 per-layer plans for 3 Linear/Conv2d layers$"):
        convert(model, [None, None])
    with pytest.raises(TypeError, match="^config: expected a CFPUConfig"):
        CFPULinear(2, 2, config=3)
    print("convert: 3 layers swapped with weights, per-layer plans from ArithPlan and a list")


def test_gta_drives_the_levels():
    """The controller of the NumPy driver, unchanged, sets every layer's level each step."""
    torch.manual_seed(2)
    model = convert(nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)))
    controller = GTAController(GTAConfig(apx_min=2, window=2, thr=1.0, reserve=0.0), iter_max=10)
    seen = []
    for it in range(8):
        level = follow_gta(model, controller, "dual", ("forward", "gradient"))
        seen.append(level)
        assert all(m.plan.forward == CFPUConfig.approx(level, "dual") and m.plan.backward == EXACT
                   for m in cfpu_layers(model))
        model(torch.randn(5, 6)).sum().backward()
        controller.observe(it, 0.5)      # flat error: converged at every full window
    assert seen == [0, 0, 1, 1, 2, 2, 2, 2], seen
    set_level(model, None)
    assert all(m.plan.forward == EXACT for m in cfpu_layers(model))
    print(f"GTA levels over 8 steps: {seen}")
