"""Cases a review found on the fast routes: exact mode with inf/NaN and padding zeros, autocast,
convert on tied weights and reused modules, the fused SGD update given NumPy scalars."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from canna.sim import matmul as mm
from canna.sim.matmul import matmul_reference
from canna.spec.config import EXACT, CFPUConfig
from canna.torch import CFPUConv2d, cfpu_layers, convert


def _conv(native, w, x, gy, config=EXACT):
    m = CFPUConv2d(2, 3, 3, padding=1, bias=False, config=config)
    m.native_conv = native
    with torch.no_grad():
        m.weight.copy_(w)
    y = m(x.clone().requires_grad_(True))
    y.backward(gy)
    return m.routes, y.detach(), m.weight.grad


def test_exact_specials_meet_the_padding_zeros():
    """0 * inf is NaN in the CFPU: with an inf weight (forward) or an inf error (weight
    gradient) the im2col products, which include the padding zeros, decide the result."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 6, 6, generator=g)
    w = torch.randn(3, 2, 3, 3, generator=g) * 0.3
    gy = torch.randn(2, 3, 6, 6, generator=g) * 0.1
    cols = F.unfold(x, 3, 1, 1, 1).permute(0, 2, 1).reshape(-1, 18).contiguous().numpy()
    w_inf = w.clone()
    w_inf[0, 0, 0, 1] = float("inf")
    routes, y, _ = _conv(True, w_inf, x, gy)
    ref = matmul_reference(cols, w_inf.reshape(3, -1).t().contiguous().numpy(), EXACT).value
    y2 = y.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    assert routes["forward"] == "im2col"
    assert np.array_equal(np.isnan(y2), np.isnan(ref)) and np.isnan(ref).any()
    g_inf = gy.clone()
    g_inf[0, 1, 0, 0] = float("inf")
    routes, _, gw = _conv(True, w, x, g_inf)
    d = g_inf.permute(0, 2, 3, 1).reshape(-1, 3).t().contiguous().numpy()
    refg = matmul_reference(d, cols, EXACT).value
    assert routes["gradient"] == "im2col"
    assert np.array_equal(np.isnan(gw.reshape(3, -1).numpy()), np.isnan(refg)) and np.isnan(refg).any()
    print(f"exact mode, inf weight / inf error: im2col route, NaNs {int(np.isnan(ref).sum())} / "
          f"{int(np.isnan(refg).sum())} as matmul_reference")


def test_autocast_keeps_float32():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 6, 6, generator=g)
    m = CFPUConv2d(2, 3, 3, padding=1, config=CFPUConfig.approx(3))
    m.native_conv = False
    im2col = m(x)
    m.native_conv = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert m.routes["forward"] == "im2col"
    assert y.dtype == torch.float32 and torch.equal(y, im2col)
    print(f"autocast(bfloat16): the im2col route, float32 output equal to it, routes {m.routes}")


def test_convert_keeps_tied_weights_and_reused_modules():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.weight = a.weight
    tied = convert(nn.Sequential(a, nn.ReLU(), b), CFPUConfig.approx(3))
    assert tied[0].weight is tied[2].weight is a.weight
    layer = nn.Linear(4, 4)
    reused = convert(nn.Sequential(layer, nn.ReLU(), layer), CFPUConfig.approx(3))
    assert reused[0] is reused[2] and len(cfpu_layers(reused)) == 1
    assert reused[0].weight is layer.weight
    print("convert: tied weights stay one Parameter; a module used twice is one CFPU layer")


def test_fused_update_takes_numpy_scalars_as_floats():
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((40, 30)) * 0.05).astype(np.float32)
    v = (rng.standard_normal((40, 30)) * 0.01).astype(np.float32)
    g = (rng.standard_normal((40, 30)) * 0.01).astype(np.float32)
    config = CFPUConfig.approx(3)
    w1, v1, w2, v2 = w.copy(), v.copy(), w.copy(), v.copy()
    p1 = mm.sgd_update_prepare(w1, v1, g, np.float64(0.9), np.float64(0.0123), config)
    p2 = mm.sgd_update_prepare(w2, v2, g, np.float64(0.9), np.float64(0.0123), config, native=False)
    assert np.array_equal(w1.view(np.uint32), w2.view(np.uint32))
    assert np.array_equal(v1.view(np.uint32), v2.view(np.uint32))
    assert np.array_equal(p1.checked.view(np.uint32), p2.checked.view(np.uint32))
    print("fused vs NumPy update with np.float64 lr/momentum: w, v and the transform bit-identical")


def test_weight_changed_in_place_before_backward_is_refused():
    """As in nn.Conv2d: a weight changed in place between forward and backward is an error, also
    for a channels_last weight (whose contiguous copy once hid the change)."""
    cases = 0
    for channels_last in (False, True):
        m = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3))
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        y = m(torch.randn(2, 2, 6, 6).requires_grad_(True))
        with torch.no_grad():
            m.weight.mul_(2)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()
        cases += 1
    print(f"in-place weight change before backward: refused in {cases} layouts")
