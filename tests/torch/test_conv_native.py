"""CFPUConv2d's native route (one PyTorch convolution on the transformed checked operand) against
its im2col route: the operands the native convolutions multiply are the im2col matmul's with the
checked one transformed exactly as matmul_fast transforms it, so every product is the golden
one; hit, product and nonzero counts and the lane accounting equal; outputs within the
summation bound of the reference; risky operands (specials) take the im2col route."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from canna.nn.mlp import PHASES
from canna.sim import golden
from canna.sim import matmul as mm
from canna.spec.array import ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig
from canna.torch import CFPUConv2d, attach_counters, conv

CONFIGS = {"exact": EXACT, "b0": CFPUConfig.approx(0, "b"), "b3": CFPUConfig.approx(3, "b")}
SHAPES = {"lenet": dict(in_channels=3, out_channels=4, kernel_size=5, padding=2),
          "strided": dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
          "dilated": dict(in_channels=2, out_channels=3, kernel_size=(3, 2), dilation=(2, 1), padding=(2, 0))}


class Spy:
    """Records the operands of the native convolutions: F.conv2d (forward) and the layer's
    convolution backward (input gradient from the weight, weight gradient from the input)."""

    def __init__(self, monkeypatch):
        self.calls = []
        conv2d, backward = F.conv2d, conv._convolution_backward

        def forward_spy(*args, **kw):
            self.calls.append(("forward", args))
            return conv2d(*args, **kw)

        def backward_spy(ctx, grad, x, weight, want_x, want_w, want_b=False):
            if want_w:
                self.calls.append(("gradient", (x, None, grad)))
            if want_x:
                self.calls.append(("backward", (None, weight, grad)))
            return backward(ctx, grad, x, weight, want_x, want_w, want_b)
        monkeypatch.setattr(F, "conv2d", forward_spy)
        monkeypatch.setattr(conv, "_convolution_backward", backward_spy)


def _twins(kw, config, rng, data, geometry, special=None):
    layers, counters = [], []
    weight = rng.standard_normal((kw["out_channels"], kw["in_channels"], *np.broadcast_to(kw["kernel_size"], 2)))
    weight = (0.2 * weight).astype(np.float32)
    if data == "special":
        weight = special(rng, weight.shape)
    for native in (True, False):
        layer = CFPUConv2d(**kw, bias=False, config=config)
        layer.native_conv = native
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
        counters.append(attach_counters(layer, geometry))
        layers.append(layer)
    return layers, counters


def _run(layer, x, g):
    x = x.clone().requires_grad_()
    y = layer(x)
    y.backward(g)
    return y.detach(), x.grad, layer.weight.grad


def _bound_ok(value, ref, abs_sum, k):
    value, ref = value.astype(np.float64), ref.astype(np.float64)
    return np.all(np.abs(value - ref) <= mm.summation_bound(abs_sum, k))


def _golden_abs(a, b, config):
    g = golden.mul_bits(a.view(np.uint32)[:, :, None], b.view(np.uint32)[None], config)
    return g, np.abs(g.bits.view(np.float32).astype(np.float64)).sum(axis=1)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("accounting", [False, True], ids=["counters", "accounting"])
def test_native_route_equals_im2col(shape, config, accounting, monkeypatch):
    kw, config = SHAPES[shape], CONFIGS[config]
    rng = np.random.default_rng(21)
    (fast, slow), (c_fast, c_slow) = _twins(kw, config, rng, "nn", ArrayGeometry(4, 3) if accounting else None)
    x = torch.from_numpy(np.maximum(rng.standard_normal((3, kw["in_channels"], 9, 8)), 0).astype(np.float32))
    g_shape = tuple(torch.nn.Conv2d.forward(slow, x).shape)   # uncounted
    g = 0.1 * rng.standard_normal(g_shape) * (rng.random(g_shape) < 0.7)     # some zeros
    g = torch.from_numpy(g.astype(np.float32))
    spy = Spy(monkeypatch)
    y, gx, gw = _run(fast, x, g)
    native_calls = list(spy.calls)
    monkeypatch.undo()
    y2, gx2, gw2 = _run(slow, x, g)
    assert fast.routes == dict.fromkeys(PHASES, "native") and slow.routes == dict.fromkeys(PHASES, "im2col")
    # The counts (and the lane array's accounting) of the native route are the im2col route's.
    for name in ("products", "hits", "nonzero", "lane"):
        assert np.array_equal(getattr(c_fast, name), getattr(c_slow, name)), name
    # The native convolutions multiply x by M(W), M(x) by delta, delta by M(W): the checked
    # operand transformed by matmul_fast's own prepare().
    w2 = fast.weight.detach().numpy().reshape(kw["out_channels"], -1)
    mw = mm.prepare(w2, config).checked.view(np.uint32)
    mx = mm.prepare(x.numpy().reshape(x.shape[0], -1), config).checked.view(np.uint32)
    ops = {}
    for phase, args in native_calls:     # the first of each: the counts use F.conv2d too
        ops.setdefault(phase, args)
    assert set(ops) == set(PHASES)
    assert np.array_equal(ops["forward"][0].numpy(), x.numpy())
    assert np.array_equal(ops["forward"][1].numpy().reshape(w2.shape).view(np.uint32), mw)
    assert np.array_equal(ops["gradient"][0].numpy().reshape(mx.shape).view(np.uint32), mx)
    assert np.array_equal(ops["gradient"][2].numpy(), g.numpy())
    assert np.array_equal(ops["backward"][1].numpy().reshape(w2.shape).view(np.uint32), mw)
    assert np.array_equal(ops["backward"][2].numpy(), g.numpy())
    # So every product is the im2col matmul's product with the transformed operand, which is
    # golden: check that, and the outputs against the sequential reference.
    padding, stride, dilation = fast.padding, fast.stride, fast.dilation
    ksize = fast.kernel_size
    patches = F.unfold(x, ksize, dilation, padding, stride).permute(0, 2, 1).reshape(-1, w2.shape[1]).numpy()
    gm = g.permute(0, 2, 3, 1).reshape(-1, w2.shape[0]).numpy()
    checked_products = 0
    for phase, a, b, value in (("forward", patches, np.ascontiguousarray(w2.T), y.permute(0, 2, 3, 1).reshape(-1, w2.shape[0])),
                               ("gradient", np.ascontiguousarray(gm.T), patches, gw.reshape(w2.shape))):
        gold, abs_sum = _golden_abs(a, b, config)
        j = PHASES.index(phase)
        assert int(c_fast.hits[0, j]) == int(gold.hit.sum())
        bq = mm.prepare(b, config).checked
        with np.errstate(all="ignore"):
            formed = a[:, :, None] * bq[None]
        assert np.array_equal(formed.view(np.uint32), gold.bits)
        checked_products += formed.size
        assert _bound_ok(value.numpy(), mm.matmul_reference(a, b, config).value, abs_sum, a.shape[1])
    gold, abs_sum = _golden_abs(gm, w2, config)          # backward: delta @ W, folded
    assert int(c_fast.hits[0, PHASES.index("backward")]) == int(gold.hit.sum())
    with np.errstate(all="ignore"):
        assert np.array_equal((gm[:, :, None] * mw.view(np.float32)[None]).view(np.uint32), gold.bits)
    n, L = x.shape[0], gm.shape[0] // x.shape[0]

    def fold(cols):
        t = torch.from_numpy(np.ascontiguousarray(cols)).reshape(n, L, -1).permute(0, 2, 1)
        return F.fold(t.double(), x.shape[2:], ksize, dilation, padding, stride).numpy()
    ref = fold(mm.matmul_reference(gm, w2, config).value)
    assert _bound_ok(gx.numpy(), ref, fold(abs_sum), w2.shape[0] * int(np.prod(ksize)))
    assert torch.equal(y, y) and y.shape == y2.shape and gx.shape == gx2.shape and gw.shape == gw2.shape
    print(f"native conv {shape} {config.describe()} accounting={accounting}: 3 phases native, "
          f"{checked_products + gold.bits.size} products golden, {int(c_fast.hits.sum())} hits and "
          f"{int(c_fast.nonzero.sum())} nonzero products as im2col's")


@pytest.mark.parametrize("config", ["b0", "b3"])
def test_specials_take_the_im2col_route(cfpu, config):
    """Subnormals, infinities, NaNs and edge exponents in either operand: the phases they make
    risky fall back to im2col, with the im2col route's counts."""
    config = CONFIGS[config]
    rng = np.random.default_rng(22)
    kw = SHAPES["lenet"]
    special = cfpu.special
    fallbacks = 0
    for data_w, data_x in (("special", "nn"), ("nn", "special"), ("special", "special")):
        (fast, slow), (c_fast, c_slow) = _twins(kw, config, rng, data_w, None, special)
        xs = special(rng, (2, 3, 6, 6)) if data_x == "special" else np.maximum(rng.standard_normal((2, 3, 6, 6)), 0)
        x = torch.from_numpy(xs.astype(np.float32))
        g = torch.from_numpy((0.1 * rng.standard_normal((2, 4, 6, 6))).astype(np.float32))
        out_fast, out_slow = _run(fast, x, g), _run(slow, x, g)
        assert "im2col" in fast.routes.values()
        fallbacks += list(fast.routes.values()).count("im2col")
        for name in ("products", "hits", "nonzero"):
            assert np.array_equal(getattr(c_fast, name), getattr(c_slow, name)), name
        for a, b in zip(out_fast, out_slow):
            assert a.shape == b.shape
        if fast.routes["forward"] == "im2col":    # the same route: the same GEMM, bit for bit
            assert np.array_equal(out_fast[0].numpy().view(np.uint32), out_slow[0].numpy().view(np.uint32))
    print(f"specials {config.describe()}: {fallbacks} risky phases of 9 on the im2col route, counts equal")
