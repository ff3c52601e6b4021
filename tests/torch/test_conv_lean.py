"""The native convolution route's lean pieces: the transform without counts (transform_lean) is
prepare()'s, the one safety scan of an operand against several transformed ones (the union of
their ranges) decides as one scan per operand, the scans' long rows decide as the layer's own
rows, the bias rides in the native convolutions, and NNPACK is off inside them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from canna.sim import matmul as mm
from canna.spec.config import EXACT, CFPUConfig
from canna.torch import CFPUConv2d, conv, engine

CONFIGS = [EXACT, CFPUConfig.approx(0, "b"), CFPUConfig.approx(3, "b"), CFPUConfig.approx(4, "dual")]


def _scaled(rng, shape, log2_scale, cfpu, special=False):
    """NN-like values times 2**log2_scale (the hit exponent range's edges at +-100), or special."""
    if special:
        return cfpu.special(rng, shape)
    return (cfpu.draw(rng, shape, "nn", 0.5) * np.float32(2.0 ** log2_scale)).astype(np.float32)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.describe())
def test_transform_lean_is_prepare(cfpu, config):
    rng = np.random.default_rng(31)
    cases = 0
    for shape in ((4, 3, 5, 5), (7, 33), (2, 1, 28, 28)):
        for data in ("nn", "special", "edge"):
            b = _scaled(rng, shape, 120 if data == "edge" else 0, cfpu, data == "special")
            ref = mm.prepare(b.reshape(shape[0], -1), config)
            for operand in (b, torch.from_numpy(b)):
                got = engine.transform_lean(operand, config)
                assert np.array_equal(got.checked.view(np.uint32), ref.checked.view(np.uint32))
                assert got.quick == ref.quick and got.config == config
                cases += 1
    with pytest.raises(TypeError, match="float32"):
        engine.transform_lean(np.ones((2, 3)), config)
    print(f"transform_lean {config.describe()}: {cases} operands as prepare() (M(b) bits, lean-path ranges)")


def _kernel_verdict(a2: np.ndarray, prep) -> bool:
    """The lean-path scan of one operand against one prep, as matmul_fast runs it."""
    lib = mm._Kernels.get()
    return lib.scan_first_quick(a2, np.zeros(a2.shape[1], np.uint32), *prep.quick) >= 0


def test_one_scan_against_several_is_one_scan_each(cfpu):
    rng = np.random.default_rng(32)
    config = CFPUConfig.approx(3, "b")
    scales = (-110, -95, -60, 0, 60, 95, 110)
    weights = [engine.transform_lean(_scaled(rng, (6, 25), s, cfpu), config) for s in scales]
    weights += [engine.transform_lean(_scaled(rng, (6, 25), 0, cfpu, True), config)]   # quick None
    outcomes = {"all": 0, "none": 0, "mixed": 0, "declined": 0}
    same_as_w_rows = 0
    for s in (*scales, "special"):
        a = _scaled(rng, (3, 6, 10, 10), 0 if s == "special" else s, cfpu, s == "special")
        for i, p in enumerate(weights):
            for q in weights[i:]:
                got = engine.first_is_safe_all(a, [p, q])
                rows = engine._scan_rows(a)
                want = [pr.quick is not None and _kernel_verdict(rows, pr) for pr in (p, q)]
                assert got == want, (s, i)
                assert got[0] == engine.first_is_safe(a, p) and got[1] == engine.first_is_safe(torch.from_numpy(a), q)
                # the layer's own rows (28 or 10 wide) decide alike away from the sum bound
                old = [pr.quick is not None and _kernel_verdict(a.reshape(-1, a.shape[-1]), pr) for pr in (p, q)]
                same_as_w_rows += old == got
                key = "declined" if None in (p.quick, q.quick) else (
                    "all" if all(got) else "none" if not any(got) else "mixed")
                outcomes[key] += 1
    # exact mode mixed in: its own rule (no overflow, nothing non-finite), the others' verdicts kept
    exact = engine.transform_lean(_scaled(rng, (6, 25), 0, cfpu), EXACT)
    a = _scaled(rng, (3, 6, 10, 10), 0, cfpu)
    assert engine.first_is_safe_all(a, [exact, weights[3], weights[0]]) == [
        engine.first_is_safe(a, exact), engine.first_is_safe(a, weights[3]), engine.first_is_safe(a, weights[0])]
    total = sum(outcomes.values())
    assert same_as_w_rows == total
    assert all(outcomes.values()), outcomes      # every kind of verdict was exercised
    print(f"one scan against two transformed operands: {total} pairs as one scan each {outcomes}; "
          f"{same_as_w_rows} as with the layer's own rows")


def test_scan_rows():
    x = np.zeros((100, 6, 28, 28), np.float32)
    assert engine._scan_rows(x).shape == (100 * 6, 784)
    assert engine._scan_rows(np.zeros((32, 16, 10, 10), np.float32)).shape == (32, 1600)
    assert engine._scan_rows(np.zeros((2, 5000), np.float32)).shape == (2, 5000)
    assert engine._scan_rows(np.zeros((7,), np.float32)).shape == (1, 7)
    assert engine._scan_rows(np.zeros((0, 16, 10, 10), np.float32)).shape == (0, 1600)
    layer = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3, "b"))
    x = torch.zeros(0, 2, 5, 5, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.shape == x.shape and layer.routes["forward"] == "native"
    print("scan rows: 5 shapes; an empty batch runs")


@pytest.mark.parametrize("nnpack", [True, False], ids=["nnpack-on", "nnpack-off"])
@pytest.mark.parametrize("config", [EXACT, CFPUConfig.approx(3, "b")], ids=["exact", "b3"])
def test_native_route_bias_and_nnpack(config, nnpack, monkeypatch):
    """The bias is added by the native convolution and its gradient summed by the native
    backward (exact mode: bit for bit nn.Conv2d, the same PyTorch calls); NNPACK is off inside
    every native convolution and as it was after."""
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
    assert seen == [False, False]           # forward; both backward phases and the bias in one call
    assert torch.equal(outs[0][3], outs[1][3])          # the bias gradient: PyTorch's own sum
    if not config.enabled:
        assert all(torch.equal(a, b) for a, b in zip(*outs))
    else:       # the bias is in the output: y - bias is the convolution without it
        without = F.conv2d(x, torch.from_numpy(mm.prepare(ref.weight.detach().numpy().reshape(4, -1),
                                                          config).checked.reshape(4, 3, 5, 5)), None, 1, 2)
        assert torch.allclose(outs[1][0] - layer.bias.detach().reshape(1, -1, 1, 1), without, atol=1e-5)
    print(f"native route {config.describe()}, NNPACK {'on' if nnpack else 'off'} before: bias in the "
          f"native calls, NNPACK off in {len(seen)} calls and restored")


def test_float64_layer_is_refused():
    """The kernels read float32 bits: a float64 layer takes no native route, and the engine
    refuses its operands in one precise error."""
    layer = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3, "b"), dtype=torch.float64)
    with pytest.raises(TypeError, match="float32"):
        layer(torch.randn(1, 2, 5, 5, dtype=torch.float64))
    assert layer.routes == {"forward": "im2col"}
    print("float64 layer: im2col route, TypeError")
