"""CFPULinear's and CFPUConv2d's lean branches in C++ (canna/torch/lean_layers.cpp) against the
same branches in Python and the general paths: the same outputs, gradients, weights and routes bit
for bit, over training steps, layer shapes, frozen parts, no_grad, and the operands each branch
declines (a subnormal or huge input, error or weight); what PyTorch guarantees of an autograd
node (in-place changes refused, no second derivative); and the Python route where the C++ one
cannot serve."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch

from canna.spec.config import CFPUConfig
from canna.torch import CFPUConv2d, attach_counters, convert, layers, native


def _train(net, steps, route, monkeypatch, special: str, seed: int):
    """``steps`` SGD steps of ``net`` (a copy) on one route: (outputs, input gradients, final
    parameters, per step)."""
    net = copy.deepcopy(net)
    with monkeypatch.context() as m:
        if route == "python":
            m.setattr(native, "lean_module", lambda: None)
        elif route == "general":      # a hook sends every phase to the general cpu path
            for layer in net:
                if isinstance(layer, layers.CFPULinear):
                    layer.hook = lambda *a: None
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        out = []
        for step in range(steps):
            x = torch.randn(7, net[0].in_features, generator=g).requires_grad_(step % 2 == 0)
            if special == "subnormal-input" and step == 1:
                x.data[2, 3] = 1e-40           # layer 1's forward declines
            if special == "huge-input" and step == 2:
                x.data[0, 0] = 3e38            # the forward's sums could overflow: declines
            if special == "inf-weight" and step == 2:
                net[2].weight.data[0, 0] = float("inf")    # the weight's transform declines
            y = net(x)
            if special == "subnormal-error" and step == 1:   # the last layer's verdicts decline
                y.register_hook(lambda g: g.index_put((torch.tensor([3]), torch.tensor([1])),
                                                      torch.tensor(1e-40)))
            loss = torch.nn.functional.cross_entropy(y, torch.arange(7) % y.shape[1])
            opt.zero_grad()
            loss.backward()
            out.append((y.detach().clone(), None if x.grad is None else x.grad.clone()))
            opt.step()
        return out, [p.detach().clone() for p in net.parameters()]


def _equal(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None
                                        and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
                                        and torch.equal(a.isnan(), b.isnan()))


def _assert_routes_agree(net, frozen, train, reference: str, monkeypatch, special: str, seed: int):
    """Four steps of ``train`` on the C++, the Python and the ``reference`` route from ``net``
    (layer ``frozen``'s weight frozen, None: none) agree: every step and the final parameters
    equal the C++ route's, tensors bit for bit (NaNs where they are), routes as dicts."""
    if frozen is not None:
        net[frozen].weight.requires_grad_(False)
    runs = {route: train(net, 4, route, monkeypatch, special, seed) for route in ("cpp", "python", reference)}
    case = (special, seed)
    steps, params = runs["cpp"]
    for route, (ref_steps, ref_params) in runs.items():
        for step, ref in zip(steps, ref_steps):
            assert all(a == b if isinstance(a, dict) else _equal(a, b) for a, b in zip(step, ref)), (case, route)
        assert all(_equal(p, r) for p, r in zip(params, ref_params)), (case, route)


@pytest.mark.parametrize("special", ["none", "subnormal-input", "huge-input", "subnormal-error", "inf-weight"])
def test_cpp_lean_branch_is_python_and_general_bit_for_bit(monkeypatch, special):
    assert native.lean_module() is not None, "the C++ lean branch did not build"
    cases = 0
    for seed, (sizes, bias, frozen, bits) in enumerate([
            ((20, 16, 8, 4), True, None, 3), ((33, 9, 7, 5), False, None, 0),
            ((12, 30, 10, 6), True, 0, 5), ((20, 16, 8, 4), True, 2, 22)]):
        torch.manual_seed(seed)
        mods = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            mods += [torch.nn.Linear(a, b, bias=bias), torch.nn.ReLU()]
        net = convert(torch.nn.Sequential(*mods[:-1]), CFPUConfig.approx(bits))
        _assert_routes_agree(net, frozen, _train, "general", monkeypatch, special, seed)
        cases += 1
    print(f"{special}: C++ lean branch bit-equal to Python's and to the general path, {cases} "
          f"networks x 4 training steps (outputs, input gradients, parameters)")


def _train_conv(net, steps, route, monkeypatch, special: str, seed: int):
    """As :func:`_train` for a small CNN (the first two modules convolutions): per step the
    outputs, input gradients and both convolutions' routes, then the final parameters."""
    net = copy.deepcopy(net)
    with monkeypatch.context() as m:
        if route == "python":
            m.setattr(native, "lean_module", lambda: None)
        elif route == "counted":       # counted: the native route with prepare()'s counts
            attach_counters(net)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        out = []
        for step in range(steps):
            x = torch.randn(4, net[0].in_channels, 11, 10, generator=g).requires_grad_(step % 2 == 0)
            if special == "subnormal-input" and step == 1:
                x.data[1, 0, 4, 4] = 1e-40
            if special == "inf-weight" and step == 2:
                net[0].weight.data[0, 0, 0, 0] = float("inf")
            h = net[1](net[0](x))
            if special == "subnormal-error" and step == 1:     # the first convolution's verdicts decline
                h.register_hook(lambda t: t.index_put((torch.tensor([0]), torch.tensor([1]), torch.tensor([2]),
                                                       torch.tensor([2])), torch.tensor(1e-40)))
            y = net[3](net[2](h).flatten(1))
            loss = torch.nn.functional.cross_entropy(y, torch.arange(4) % y.shape[1])
            opt.zero_grad()
            loss.backward()
            out.append((y.detach().clone(), None if x.grad is None else x.grad.clone(),
                        dict(net[0].routes), dict(net[2].routes)))
            opt.step()
        return out, [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("special", ["none", "subnormal-input", "subnormal-error", "inf-weight"])
def test_cpp_lean_conv_route_is_python_and_counted_bit_for_bit(monkeypatch, special):
    assert native.lean_module() is not None, "the C++ lean branch did not build"
    cases = 0
    for seed, (kw1, kw2, bias, frozen, bits) in enumerate([
            (dict(kernel_size=3, padding=1), dict(kernel_size=3, stride=2), True, None, 3),
            (dict(kernel_size=(3, 2), padding=(1, 0), dilation=2), dict(kernel_size=2), False, None, 0),
            (dict(kernel_size=5, padding=2), dict(kernel_size=3, padding=1, stride=(2, 1)), True, 0, 5)]):
        torch.manual_seed(seed)
        c1 = torch.nn.Conv2d(2, 3, bias=bias, **kw1)
        c2 = torch.nn.Conv2d(3, 4, bias=bias, **kw2)
        with torch.no_grad():
            n = c2(c1(torch.zeros(1, 2, 11, 10))).numel()
        net = convert(torch.nn.Sequential(c1, torch.nn.ReLU(), c2, torch.nn.Linear(n, 5)),
                      CFPUConfig.approx(bits))
        _assert_routes_agree(net, frozen, _train_conv, "counted", monkeypatch, special, seed)
        cases += 1
    print(f"{special}: C++ lean conv route bit-equal to Python's and to the counted native route "
          f"(outputs, input gradients, parameters, routes), {cases} CNNs x 4 training steps")


def test_cpp_lean_conv_backward_after_a_precision_change():
    """A convolution backward after oneDNN's float32 convolutions were set to bfloat16 since
    the forward: the im2col route for both phases, float32 products, as the Python route."""
    outs = {}
    for route in ("cpp", "python"):
        torch.manual_seed(23)
        layer = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3))
        x = torch.rand(2, 2, 7, 7, requires_grad=True)
        orig = native.lean_module
        if route == "python":
            native.lean_module = lambda: None
        try:
            y = layer(x)
            was = torch.backends.mkldnn.conv.fp32_precision
            torch.backends.mkldnn.conv.fp32_precision = "bf16"
            try:
                y.backward(torch.ones_like(y))
            finally:
                torch.backends.mkldnn.conv.fp32_precision = was
        finally:
            native.lean_module = orig
        outs[route] = (dict(layer.routes), x.grad, layer.weight.grad, layer.bias.grad)
    assert outs["cpp"][0] == {"forward": "native", "gradient": "im2col", "backward": "im2col"}
    assert outs["cpp"][0] == outs["python"][0]
    assert all(torch.equal(a, b) for a, b in zip(outs["cpp"][1:], outs["python"][1:]))
    print(f"conv backward under bf16 convolutions since the forward: routes {outs['cpp'][0]}, as Python's")


@pytest.mark.parametrize("lean_route", ["cpp"], indirect=True)
def test_cpp_lean_branch_serves_and_declines_where_python_does(lean_route):
    """The forward of a plain CPU matrix is served; a transposed view, a float64 input, an input
    with the negative bit, and a weight with an inf are not (the Python route then decides):
    the general path's values, or its error (it refuses a negative-bit tensor, as before)."""
    torch.manual_seed(21)
    layer = convert(torch.nn.Sequential(torch.nn.Linear(6, 5)), CFPUConfig.approx(3))[0]
    ref = copy.deepcopy(layer)
    ref.hook = lambda *a: None
    x = torch.rand(6, 4)
    inputs = {"plain": x.t().contiguous(), "transposed view": x.t(), "float64": x.t().double(),
              "negative bit": (-x.t().contiguous())._neg_view()}
    for name, xi in inputs.items():
        lean_route.spy.calls.clear()
        if name in ("float64", "negative bit"):     # as the Python route: the general path's error
            with pytest.raises((TypeError, RuntimeError), match="float32|negative bit"):
                layer(xi)
        else:
            assert torch.equal(layer(xi), ref(xi)), name
        served = [s for _, _, s in lean_route.spy.calls]
        assert served == [name == "plain"], (name, served)
    with torch.no_grad():
        layer.weight[0, 0] = float("inf")
        ref.weight[0, 0] = float("inf")
    lean_route.spy.calls.clear()
    assert _equal(layer(x.t().contiguous()), ref(x.t().contiguous()))
    assert [s for _, _, s in lean_route.spy.calls] == [False]
    print("C++ lean forward: served for a plain matrix; declined (general path, same values) for a "
          "transposed view, float64, a negative bit, an inf weight")


def test_cpp_lean_branch_refuses_in_place_changes_and_second_derivatives():
    assert native.lean_module() is not None
    torch.manual_seed(22)
    layer = convert(torch.nn.Sequential(torch.nn.Linear(6, 4)), CFPUConfig.approx(3))[0]
    x = torch.rand(3, 6, requires_grad=True)
    y = layer(x)
    assert type(y.grad_fn).__name__ != "_CFPULinearFnBackward"      # the C++ node
    with torch.no_grad():
        layer.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    x2 = torch.rand(3, 6)
    y = layer(x2.requires_grad_())
    with torch.no_grad():
        x2.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    (gx,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        gx.sum().backward()
    print("C++ lean branch: in-place changes of weight and input refused; a second derivative refused")


def test_cpp_fallback_error_reaches_the_caller(monkeypatch):
    """An exception in a phase the C++ backward hands to Python reaches ``backward()``'s caller."""
    assert native.lean_module() is not None
    layer = convert(torch.nn.Sequential(torch.nn.Linear(6, 4)), CFPUConfig.approx(3))[0]

    def fail(*a):
        raise ValueError("general path failed on purpose")
    monkeypatch.setattr(layers, "lean_general_phase", fail)
    y = layer(torch.rand(3, 6))
    with pytest.raises(Exception, match="general path failed on purpose"):
        (y * 1e-39).sum().backward()     # subnormal errors: the verdicts decline
    print("C++ backward: a failing general phase raises to the caller")


def test_build_failure_warns_and_python_serves(monkeypatch, tmp_path):
    monkeypatch.setenv("CANNA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    native._built.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="C\\+\\+ lean branches of CFPULinear and CFPUConv2d unavailable"):
            assert native.lean_module() is None
        layer = convert(torch.nn.Sequential(torch.nn.Linear(6, 4)), CFPUConfig.approx(3))[0]
        y = layer(torch.rand(3, 6))
        assert type(y.grad_fn).__name__ == "_CFPULinearFnBackward"
    finally:
        monkeypatch.undo()
        native._built.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.lean_module() is not None
    print("no C++ compiler: one warning, the Python lean branch serves")


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_tracing_and_compiling_take_the_python_route(kind):
    """``torch.jit.trace`` and ``torch.compile`` see the layer as one Python autograd Function
    (a C++ node's operations would be recorded one by one, without the C kernels that fill
    M(W) between them): the trace and the compiled model reproduce the eager layer's bits on
    new input, and a model whose first forward is compiled runs."""
    assert native.lean_module() is not None
    torch.manual_seed(24)
    make = (lambda: convert(torch.nn.Sequential(torch.nn.Linear(6, 4)), CFPUConfig.approx(3))) if kind == "linear" \
        else (lambda: convert(torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3)), CFPUConfig.approx(3)))
    shape = (5, 6) if kind == "linear" else (2, 2, 7, 7)
    model = make()
    compiled = torch.compile(copy.deepcopy(model), backend="eager")
    x, x2 = torch.rand(*shape), torch.rand(*shape)
    assert torch.equal(compiled(x2), model(x2))          # the first forward under torch.compile
    traced = torch.jit.trace(model, x, check_trace=False)
    assert "CFPU" in str(traced.graph)                  # one operation: the Python Function
    assert torch.equal(traced(x2), model(x2))
    print(f"{kind}: torch.jit.trace and torch.compile record the Python route; bit-equal to eager")


def test_a_layer_keeping_its_output_is_collected():
    """The C++ convolution node holds its layer weakly: a layer that keeps an output (a forward
    hook storing activations) is freed with its graph once unreachable. A backward after the
    layer was freed runs its native phases; one that needs the layer's im2col route says why."""
    import gc
    import weakref
    assert native.lean_module() is not None
    layer = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3))
    layer.last_output = layer(torch.rand(2, 2, 6, 6, requires_grad=True))
    ref = weakref.ref(layer)
    del layer
    gc.collect()
    assert ref() is None
    for scale, ok in ((1.0, True), (1e-39, False)):    # subnormal errors: the verdicts decline
        layer = CFPUConv2d(2, 3, 3, config=CFPUConfig.approx(3))
        x = torch.rand(2, 2, 6, 6, requires_grad=True)
        y = layer(x)
        del layer
        gc.collect()
        if ok:
            (y * scale).sum().backward()
            assert x.grad is not None
        else:
            with pytest.raises(RuntimeError, match="freed before this backward"):
                (y * scale).sum().backward()
    print("C++ conv node: a layer keeping its output is collected; a freed layer's native backward "
          "runs, its im2col backward is one clear error")
