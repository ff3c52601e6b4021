"""The lean routes' pieces: the transform without counts (transform_lean) is prepare()'s, the
verdicts from one pass over an operand (its magnitude range) are the lean scan's at each inner
size, the bias rides in the native convolutions, and NNPACK is off inside them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from canna.sim import matmul as mm
from canna.spec.config import EXACT, CFPUConfig
from canna.torch import CFPUConv2d, attach_counters, conv, engine, native

CONFIGS = [EXACT, CFPUConfig.approx(0, "b"), CFPUConfig.approx(3, "b"), CFPUConfig.approx(4, "dual")]


def _scaled(rng, shape, log2_scale, cfpu, special=False):
    """NN-like values times 2**log2_scale (the hit exponent range's edges at +-100), or special."""
    if special:
        return cfpu.special(rng, shape)
    return (cfpu.draw(rng, shape, "nn", 0.5) * np.float32(2.0 ** log2_scale)).astype(np.float32)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_transform_lean_is_prepare(cfpu, config):
    """Policy b: the kernel's M(b) bits and lean-path ranges are prepare()'s where prepare's
    lean path serves ``b`` and both decline together elsewhere; the kernel's magnitude range is
    ``b``'s. Exact mode and dual: prepare() itself."""
    rng = np.random.default_rng(31)
    cases = declined = 0
    for shape in ((4, 3, 5, 5), (7, 33), (2, 1, 28, 28), (0, 5)):
        for data in ("nn", "special", "edge", "top"):
            b = _scaled(rng, shape, {"edge": 120, "top": 127}.get(data, 0), cfpu, data == "special")
            ref = mm.prepare(b.reshape(shape[0], int(np.prod(shape[1:]))), config)
            for operand in (b, torch.from_numpy(b)):
                got = engine.transform_lean(operand, config)
                assert got.quick == ref.quick and got.config == config
                if got.quick is not None or not isinstance(got, engine.Transformed):
                    assert np.array_equal(got.checked.view(np.uint32), ref.checked.view(np.uint32))
                else:
                    assert got.checked is None
                    declined += 1
                if isinstance(got, engine.Transformed) and got.quick is not None:   # the kernel's
                    kernel = mm._Kernels.get().transform_lean(b, config.tuning_bits, np.empty_like(b))
                    assert kernel[3:] == _mag(b)          # magnitude range, for a first operand
                cases += 1
    assert declined or not config.enabled or config.policy.name == "DUAL"
    with pytest.raises(TypeError, match="float32"):
        engine.transform_lean(np.ones((2, 3)), config)
    print(f"transform_lean {config.describe()}: {cases} operands as prepare() (M(b) bits, lean-path "
          f"ranges), {declined} declined by both")


def _mag(x) -> tuple:
    """The magnitude range in NumPy: min(|x| - 1) (zeros wrap to the top) and max(|x|)."""
    m = np.asarray(x, np.float32).view(np.uint32).reshape(-1) & np.uint32(0x7FFFFFFF)
    return int((m - np.uint32(1)).min(initial=0xFFFFFFFF)), int(m.max(initial=0))


def _kernel_verdict(a2: np.ndarray, prep) -> bool:
    """The lean-path scan of one operand against one prep, as matmul_fast runs it."""
    lib = mm._Kernels.get()
    return lib.scan_first_quick(a2, np.zeros(a2.shape[1], np.uint32), *prep.quick) >= 0


def test_verdicts_from_the_magnitude_range_are_the_scans(cfpu):
    """The lean verdict from one pass (the operand's magnitude range) is the lean scan's, for
    every inner size (the sum bound) and either layout; one pass serves several transformed
    operands with their own inner sizes (first_is_safe_all)."""
    rng = np.random.default_rng(32)
    config = CFPUConfig.approx(3, "b")
    scales = (-110, -95, -60, 0, 60, 95, 110, 126)
    weights = [engine.transform_lean(_scaled(rng, (6, 25), s, cfpu), config) for s in scales]
    weights += [engine.transform_lean(_scaled(rng, (6, 25), 0, cfpu, True), config)]   # quick None
    outcomes = {"all": 0, "none": 0, "mixed": 0, "declined": 0}
    for s in (*scales, "special", "zeros"):
        a = (np.zeros((3, 6, 10, 10), np.float32) if s == "zeros" else
             _scaled(rng, (3, 6, 10, 10), 0 if s == "special" else s, cfpu, s == "special"))
        assert engine.magnitude_range(a) == _mag(a) == engine.magnitude_range(torch.from_numpy(a))
        a2 = a.reshape(-1, 100)
        assert engine.magnitude_range(a2.T) == _mag(a)                   # F-contiguous, in place
        for i, p in enumerate(weights):
            for q in weights[i:]:
                ks = (25, 1800) if i % 2 else (1800, 600)
                got = engine.first_is_safe_all(a, [p, q], ks)
                want = [pr.quick is not None and _kernel_verdict(a.reshape(-1, k), pr) for pr, k in zip((p, q), ks)]
                assert got == want, (s, i)
                assert got[0] == engine.first_is_safe(a, p, ks[0])
                assert got[1] == engine.first_is_safe(torch.from_numpy(a), q, ks[1])
                if p.quick is not None:
                    for layout in (a2, np.asfortranarray(a2)):       # the matrix's own inner size
                        verdict = engine.lean_verdict(engine.magnitude_range(layout), a2.shape[1], p.quick)
                        assert verdict == _kernel_verdict(a2, p)
                key = "declined" if None in (p.quick, q.quick) else (
                    "all" if all(got) else "none" if not any(got) else "mixed")
                outcomes[key] += 1
    # the sum bound alone: the same operands pass at a short inner size and fail at a long one
    big = engine.transform_lean(np.full((2, 3), 2.0 ** 60, np.float32), config)
    a = np.full((4, 16), 2.0 ** 60, np.float32)
    assert engine.first_is_safe_all(a, [big, big], [2, 16]) == [True, False] == [
        _kernel_verdict(a.reshape(-1, k), big) for k in (2, 16)]
    # exact mode mixed in: its own rule (no overflow, nothing non-finite), the others' verdicts kept
    exact = engine.transform_lean(_scaled(rng, (6, 25), 0, cfpu), EXACT)
    a = _scaled(rng, (3, 6, 10, 10), 0, cfpu)
    assert engine.first_is_safe_all(a, [exact, weights[3], weights[0]], [25, 25, 600]) == [
        engine.first_is_safe(a, exact, 25), engine.first_is_safe(a, weights[3], 25),
        engine.first_is_safe(a, weights[0], 600)]
    total = sum(outcomes.values())
    assert all(outcomes.values()), outcomes      # every kind of verdict was exercised
    print(f"lean verdicts from the magnitude range: {total} pairs as one scan each {outcomes}; "
          f"the sum bound at two inner sizes")


SHAPES = {"lenet": dict(in_channels=3, out_channels=4, kernel_size=5, padding=2),
          "strided": dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
          "dilated": dict(in_channels=2, out_channels=3, kernel_size=(3, 2), dilation=(2, 1), padding=(2, 0))}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("config", [CFPUConfig.approx(0, "b"), CFPUConfig.approx(3, "b")], ids=lambda c: c.describe())
def test_lean_route_is_the_counted_native_route_bit_for_bit(cfpu, shape, config, monkeypatch, lean_route):
    """Uncounted, a CFPUConv2d takes the lean route (M(W) and M(x) from one C call in the
    forward, the backward verdicts from one pass over the error; in Python or in C++); counted,
    the native route with prepare()'s counts, which tests/torch/test_conv_native.py checks
    product by product. Both give the same routes, outputs and gradients bit for bit, specials
    included."""
    rng = np.random.default_rng(33)
    kw = SHAPES[shape]
    served, runs = [], 0
    real = engine.lean_forward
    monkeypatch.setattr(engine, "lean_forward", lambda *a: served.append(real(*a) is not None) or real(*a))
    for data_w, data_x, data_g in (("nn", "nn", "nn"), ("nn", "special", "nn"), ("special", "nn", "nn"),
                                   ("nn", "nn", "special"), ("nn", "edge", "nn")):
        torch.manual_seed(int(rng.integers(1 << 30)))
        lean, counted = (CFPUConv2d(**kw, config=config) for _ in range(2))
        w = cfpu.special(rng, lean.weight.shape) if data_w == "special" else lean.weight.detach().numpy()
        for layer in (lean, counted):
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(lean.bias)
        attach_counters(counted)
        x = (cfpu.special(rng, (3, kw["in_channels"], 9, 8)) if data_x == "special" else
             _scaled(rng, (3, kw["in_channels"], 9, 8), 126 if data_x == "edge" else 0, cfpu))
        g_shape = (3, kw["out_channels"], *torch.nn.Conv2d.forward(lean, torch.from_numpy(x)).shape[2:])
        g = cfpu.special(rng, g_shape) if data_g == "special" else _scaled(rng, g_shape, -4, cfpu)
        outs = []
        for layer in (lean, counted):
            xx = torch.from_numpy(x).requires_grad_()
            y = layer(xx)
            y.backward(torch.from_numpy(g))
            outs.append((y.detach(), xx.grad, layer.weight.grad, layer.bias.grad))
        assert lean.routes == counted.routes, (data_w, data_x, data_g)
        for a, b in zip(*outs):
            assert np.array_equal(a.numpy().view(np.uint32), b.numpy().view(np.uint32)), (data_w, data_x, data_g)
        runs += 1
    if lean_route.name == "cpp":     # (Python's lean forward then ran only where C++ declined)
        assert not any(served), served
        served = [s for _, _, s in lean_route.spy.calls]
    assert served[0] and not all(served), served       # served on NN-like operands, not on specials
    print(f"lean conv route ({lean_route.name}) {shape} {config.describe()}: {runs} steps bit-equal "
          f"to the counted native route ({sum(served)} of {len(served)} lean forwards served)")


def test_lean_conv_forward_transforms_the_input_only_for_a_gradient(monkeypatch, lean_route):
    seen = []
    real = engine.lean_forward

    def spy(x, w, k, bits, with_x):
        seen.append((k, with_x))
        return real(x, w, k, bits, with_x)
    monkeypatch.setattr(engine, "lean_forward", spy)
    layer = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3, "b"))
    x = torch.rand(2, 2, 6, 6)
    with torch.no_grad():
        layer(x)
    layer.weight.requires_grad_(False)
    layer(x.requires_grad_()).sum().backward()
    if lean_route.name == "cpp":     # (weight shape: K = C kh kw = 18, with_x, served)
        assert not seen
        seen = [(math.prod(shape[1:]), with_x) for shape, with_x, served in lean_route.spy.calls if served]
    assert seen == [(18, False), (18, False)] and layer.weight.grad is None and x.grad is not None
    print(f"lean conv forward ({lean_route.name}): K = C kh kw = 18; no input transform under no_grad "
          f"or for a frozen weight")


def test_empty_batch_runs():
    layer = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3, "b"))
    x = torch.zeros(0, 2, 5, 5, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.shape == x.shape and layer.routes["forward"] == "native"
    print("an empty batch runs on the native route")


@pytest.mark.parametrize("nnpack", [True, False], ids=["nnpack-on", "nnpack-off"])
@pytest.mark.parametrize("config", [EXACT, CFPUConfig.approx(3, "b")], ids=["exact", "b3"])
def test_native_route_bias_and_nnpack(config, nnpack, monkeypatch, lean_route):
    """The bias is added by the native convolution and its gradient summed by the native
    backward (exact mode: bit for bit nn.Conv2d, the same PyTorch calls); NNPACK is off inside
    every native convolution and as it was after. The C++ lean route makes those calls itself
    (no Python spy sees them): bit for bit the Python route's, NNPACK as it was after."""
    torch.manual_seed(3)
    ref = nn.Conv2d(3, 4, 5, padding=2)
    layer = CFPUConv2d(3, 4, 5, padding=2, config=config)
    layer.load_state_dict(ref.state_dict())
    x = torch.relu(torch.randn(5, 3, 9, 8))
    g = torch.randn(5, 4, 9, 8)
    seen = []
    conv2d, backward = F.conv2d, conv._CONVOLUTION_BACKWARD

    def conv2d_spy(*args, **kw):
        seen.append(torch._C._get_nnpack_enabled())
        return conv2d(*args, **kw)

    def backward_spy(*args):
        seen.append(torch._C._get_nnpack_enabled())
        return backward(*args)
    was = torch._C._get_nnpack_enabled()
    torch._C._set_nnpack_enabled(nnpack)
    try:
        outs = []
        for i, m in enumerate((ref, layer)):
            if i:
                monkeypatch.setattr(F, "conv2d", conv2d_spy)
                monkeypatch.setattr(conv, "_CONVOLUTION_BACKWARD", backward_spy)
            xx = x.clone().requires_grad_()
            y = m(xx)
            y.backward(g)
            outs.append((y.detach(), xx.grad, m.weight.grad, m.bias.grad))
        monkeypatch.undo()
        assert torch._C._get_nnpack_enabled() is nnpack
    finally:
        torch._C._set_nnpack_enabled(was)
    assert layer.routes == dict.fromkeys(("forward", "gradient", "backward"), "native")
    cpp = lean_route.name == "cpp" and config.enabled       # (exact mode has no lean route)
    assert seen == ([] if cpp else [False, False])   # forward; both backward phases and the bias in one call
    if cpp:
        monkeypatch.setattr(native, "lean_module", lambda: None)
        python = CFPUConv2d(3, 4, 5, padding=2, config=config)
        python.load_state_dict(ref.state_dict())
        xx = x.clone().requires_grad_()
        y = python(xx)
        y.backward(g)
        assert all(torch.equal(a, b) for a, b in zip(outs[1], (y.detach(), xx.grad, python.weight.grad,
                                                               python.bias.grad)))
    assert torch.equal(outs[0][3], outs[1][3])          # the bias gradient: PyTorch's own sum
    if not config.enabled:
        assert all(torch.equal(a, b) for a, b in zip(*outs))
    else:       # the bias is in the output: y - bias is the convolution without it
        without = F.conv2d(x, torch.from_numpy(mm.prepare(ref.weight.detach().numpy().reshape(4, -1),
                                                          config).checked.reshape(4, 3, 5, 5)), None, 1, 2)
        assert torch.allclose(outs[1][0] - layer.bias.detach().reshape(1, -1, 1, 1), without, atol=1e-5)
    print(f"native route ({lean_route.name}) {config.describe()}, NNPACK {'on' if nnpack else 'off'} "
          f"before: bias in the native calls, NNPACK off in {len(seen)} Python calls and restored")


def test_float64_layer_is_refused():
    """The kernels read float32 bits: a float64 layer takes no native route, and the engine
    refuses its operands in one precise error."""
    layer = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3, "b"), dtype=torch.float64)
    with pytest.raises(TypeError, match="float32"):
        layer(torch.randn(1, 2, 5, 5, dtype=torch.float64))
    assert layer.routes == {"forward": "im2col"}
    print("float64 layer: im2col route, TypeError")
