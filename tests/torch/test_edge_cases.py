"""Cases reviews found on the fast routes: exact mode with inf/NaN and padding zeros, autocast,
convert on tied weights and reused modules, the fused SGD update given NumPy scalars."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from canna.sim import matmul as mm
from canna.sim.matmul import matmul_reference
from canna.spec.config import EXACT, CFPUConfig
from canna.torch import CFPUConv2d, LayerPlan, cfpu_layers, convert, engine


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


@pytest.mark.parametrize("checked, x_grad, w_grad", [
    ({"gradient": "delta"}, False, True),                       # a first layer checking delta
    ({"backward": "delta", "gradient": "delta"}, True, True),
    (None, False, False)])                                      # only the bias trains
def test_conv_backward_without_native_candidates(checked, x_grad, w_grad):
    """A backward whose phases offer the native route no operand (a session review found an
    IndexError there) runs as nn.Conv2d does, with the same bias gradient."""
    torch.manual_seed(0)
    m = CFPUConv2d(3, 4, 3, config=LayerPlan.of(CFPUConfig.approx(4), checked))
    ref = nn.Conv2d(3, 4, 3)
    ref.load_state_dict(m.state_dict())
    for layer in (m, ref):
        layer.weight.requires_grad_(w_grad)
    x = torch.randn(2, 3, 8, 8)
    outs = []
    for layer in (m, ref):
        xi = x.clone().requires_grad_(x_grad)
        layer(xi).sum().backward()
        outs.append(layer.bias.grad)
    assert torch.allclose(outs[0], outs[1], rtol=1e-5)
    assert (m.weight.grad is not None) == w_grad
    print(f"conv backward, checked {checked}, input grad {x_grad}, weight grad {w_grad}: runs, "
          f"routes {m.routes}")


def test_cpu_path_under_the_new_precision_api():
    """With oneDNN's matmul set to bfloat16 through PyTorch's newer fp32_precision API (after
    which the legacy precision getter raises) the cpu path keeps float32 products: it falls back
    to matmul_fast, whose every product is the golden one."""
    rng = np.random.default_rng(5)
    a = np.maximum(rng.standard_normal((6, 9)), 0).astype(np.float32)
    b = (0.1 * rng.standard_normal((9, 5))).astype(np.float32)
    config = CFPUConfig.approx(3)
    want = mm.matmul_fast(a, b, config)
    matmul = torch.backends.mkldnn.matmul
    before = matmul.fp32_precision
    try:
        matmul.fp32_precision = "bf16"
        got = engine.matmul(torch.from_numpy(a), torch.from_numpy(b), config, path="cpu")
    finally:
        matmul.fp32_precision = before
    assert got.hits == want.hits
    assert np.array_equal(got.value.numpy().view(np.uint32), want.value.view(np.uint32))
    print(f"oneDNN matmul bf16: cpu path fell back to matmul_fast, {got.hits} hits, value bit-equal")


def test_cpu_path_refuses_a_transform_for_another_configuration():
    b = torch.randn(9, 5)
    prep = mm.prepare(b.numpy(), CFPUConfig.approx(0))
    for path in ("cpu", "numpy"):
        with pytest.raises(ValueError, match="^b was prepared for t=0 policy=b, not t=4 policy=b$"):
            engine.matmul(torch.randn(6, 9), b, CFPUConfig.approx(4), path=path, prepared=prep)
    print("a transform for t=0 refused for t=4 on the cpu and numpy paths")


def test_empty_batch_on_both_conv_routes():
    """An empty batch runs as in nn.Conv2d on the im2col route too (its reshapes once inferred a
    size from zero elements)."""
    cases = 0
    for native in (True, False):
        for config in (CFPUConfig.approx(4), CFPUConfig.approx(3, "dual")):
            m = CFPUConv2d(3, 4, 3, config=config)
            m.native_conv = native
            x = torch.randn(0, 3, 8, 8, requires_grad=True)
            y = m(x)
            y.sum().backward()
            assert y.shape == (0, 4, 6, 6) and x.grad.shape == x.shape
            cases += 1
    print(f"empty batch: {cases} route/policy cases give nn.Conv2d's shapes")


def test_precision_or_autocast_changed_before_backward(monkeypatch, lean_route):
    """A lean forward's verdict does not carry a backward under autocast or lowered float32
    GEMM precision: the backward takes the general path, which keeps float32 products (under
    autocast the cpu path's own GEMM with autocast off; at 'medium' matmul_fast). Python's lean
    branch then skips its lean backward; C++'s hands every phase to the general path."""
    from canna.torch import convert, layers
    torch.manual_seed(12)
    net = convert(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU6(), torch.nn.Linear(32, 8)),
                  CFPUConfig.approx(3))
    x = torch.rand(16, 64).requires_grad_()
    g = torch.randn(16, 8)
    lean_backwards, general = [], []
    real, real_general = layers._lean_backward, layers.lean_general_phase
    monkeypatch.setattr(layers, "_lean_backward", lambda *a: lean_backwards.append(1) or real(*a))
    monkeypatch.setattr(layers, "lean_general_phase", lambda *a: general.append(a[0]) or real_general(*a))
    ref = None
    for case in ("plain", "autocast", "medium"):
        net.zero_grad()
        x.grad = None
        lean_backwards.clear()
        general.clear()
        y = net(x)
        was = torch.get_float32_matmul_precision()
        try:
            if case == "medium":
                torch.set_float32_matmul_precision("medium")
            with torch.autocast("cpu", enabled=case == "autocast"):
                y.backward(g)
        finally:
            torch.set_float32_matmul_precision(was)
        if lean_route.name == "python":
            assert len(lean_backwards) == (2 if case == "plain" else 0) and not general, case
        else:      # both layers, gradient first
            assert not lean_backwards and general == ([] if case == "plain" else ["gradient", "backward"] * 2), case
        out = [x.grad.clone()] + [p.grad.clone() for p in net.parameters()]
        assert all(t.dtype == torch.float32 for t in out)
        if ref is None:
            ref = out
        for a, b in zip(out, ref):     # the same products; at 'medium' NumPy's BLAS sums
            assert torch.equal(a, b) if case == "autocast" else torch.allclose(a, b, rtol=1e-5, atol=1e-7), case
    print(f"backward under autocast or 'medium' precision after a lean forward ({lean_route.name}): "
          f"the general path, float32 products")


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_double_backward_is_refused(kind, lean_route):
    """The CFPU's backward is not itself differentiated: create_graph then a second backward
    raises, as for any once-differentiable function, rather than using plain products."""
    from canna.torch import CFPUConv2d, CFPULinear
    torch.manual_seed(13)
    layer = CFPULinear(6, 4, config=CFPUConfig.approx(3)) if kind == "linear" else \
        CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3))
    x = (torch.rand(3, 6) if kind == "linear" else torch.rand(2, 2, 5, 5)).requires_grad_()
    (gx,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()
    print(f"{kind} ({lean_route.name} lean branch): double backward refused")


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_zero_channel_convolution_runs():
    from canna.torch import CFPUConv2d
    layer = CFPUConv2d(0, 3, 3, config=CFPUConfig.approx(3))
    ref = torch.nn.Conv2d(0, 3, 3)
    x = torch.zeros(2, 0, 5, 5, requires_grad=True)
    y = layer(x)
    y.sum().backward()
    assert y.shape == ref(x).shape and x.grad.shape == x.shape
    print("a zero-channel CFPUConv2d runs forward and backward, as nn.Conv2d")


def test_mutated_checked_operands_leave_the_lean_route():
    """The plan's checked operands are a dict: changed in place, the lean route no longer
    serves the plan (it needs the default operands)."""
    from canna.torch import CFPULinear
    layer = CFPULinear(6, 4, config=CFPUConfig.approx(3))
    assert layer.plan.lean_bits == (3, 3)
    layer.plan.checked["forward"] = "input"
    assert layer.plan.lean_bits is None and not layer.plan.checked_right("forward")
    print("checked operands changed in place: lean route off")


def test_conv_counters_attached_between_forward_and_backward():
    """Counters attached after the forward book the backward phases on every route (the lean
    route leaves for the counted one; exact mode's native route counts its weight anew), as a
    model counted from the start books them: the same products and hits."""
    from canna.torch import CFPUConv2d, attach_counters
    booked = []
    for cfg in (CFPUConfig.approx(3), EXACT, CFPUConfig.approx(3, "dual")):
        late, early = [], []
        for when, out in (("late", late), ("early", early)):
            torch.manual_seed(0)
            layer = CFPUConv2d(2, 3, 3, config=cfg)
            x = torch.randn(2, 2, 6, 6).relu().requires_grad_()
            counters = attach_counters(layer) if when == "early" else None
            y = layer(x)
            if counters is None:
                counters = attach_counters(layer)
            y.sum().backward()
            out.append((counters.products.copy(), counters.hits.copy(), x.grad.clone(), layer.weight.grad.clone()))
        (p_late, h_late, gx_late, gw_late), (p_early, h_early, gx_early, gw_early) = late[0], early[0]
        assert p_late[0, 0] == 0 and (p_late[0, 1:] == p_early[0, 1:]).all() and (h_late[0, 1:] == h_early[0, 1:]).all()
        assert torch.equal(gx_late, gx_early) and torch.equal(gw_late, gw_early)
        booked.append(int(p_late.sum()))
    print(f"counters attached between forward and backward: backward phases booked on 3 routes "
          f"({booked} products), as counted from the start")
