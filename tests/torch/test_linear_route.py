"""CFPULinear on the cpu path (the default on CPU): on NN-like operands every phase runs as
matmul_fast's scan plus PyTorch's GEMM on the transform, the weight gradient scanning delta.T in
place; risky operands fall back to matmul_fast. Both give the NumPy path's hit and nonzero counts
and lane counters, and outputs within the summation bound of each other's reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from canna.sim import matmul as mm
from canna.spec.array import ArrayGeometry
from canna.spec.config import CFPUConfig
from canna.torch import attach_counters, convert, engine, layers


def _net(path, special=False):
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(24, 20), torch.nn.ReLU6(), torch.nn.Linear(20, 12))
    net = convert(net, CFPUConfig.approx(3), path=path)
    counters = attach_counters(net, ArrayGeometry(4, 3))
    g = torch.Generator().manual_seed(4)
    x = torch.randn(9, 24, generator=g).clamp(min=0)
    if special:
        x[2, 5] = 1e-40         # a subnormal input: risky in the forward phase and the gradient
    x.requires_grad_(True)
    y = net(x)
    y.backward(torch.randn(9, 12, generator=g) * 0.1)
    return counters, [y.detach(), x.grad] + [p.grad for p in net.parameters()]


@pytest.mark.parametrize("special", [False, True])
def test_lean_route_and_fallback(monkeypatch, special):
    calls = []
    real = engine.matmul_fast
    monkeypatch.setattr(engine, "matmul_fast", lambda *a, **k: calls.append(1) or real(*a, **k))
    scans = []
    lib = mm._Kernels.get()

    class Spy:
        def __getattr__(self, name):
            f = getattr(lib, name)
            return (lambda *a: scans.append(name) or f(*a)) if name.startswith("scan_first_quick") else f
    monkeypatch.setattr(mm._Kernels, "_lib", Spy())
    counters, out = _net("auto", special)
    monkeypatch.undo()
    ref_counters, ref = _net("numpy", special)
    # 6 matmuls (x requires grad: layer 1 has a backward error too); the gradients scan delta.T
    assert len(scans) == 6 + special and scans.count("scan_first_quick_t") == 2
    assert (len(calls) > 0) == special, calls
    for field in ("products", "hits", "nonzero", "lane"):
        assert np.array_equal(getattr(counters, field), getattr(ref_counters, field)), field
    for a, b in zip(out, ref):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    print(f"special={special}: {len(scans)} lean scans ({scans.count('scan_first_quick_t')} of delta.T "
          f"in place), {len(calls)} matmul_fast fallbacks, {int(counters.hits.sum())} hits and lane "
          f"counters equal to the numpy path's")


def _step(net, x, g, hook):
    for m in net:
        if hasattr(m, "hook"):
            m.hook = hook
    x = x.clone().requires_grad_(True)
    y = net(x)
    y.backward(g)
    out = [y.detach(), x.grad] + [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    return out


@pytest.mark.parametrize("case", ["nn", "subnormal-input", "subnormal-error", "dual", "mixed-levels"])
def test_lean_branch_is_the_cpu_path_bit_for_bit(monkeypatch, lean_route, case):
    """With nothing counted or hooked a CFPULinear takes its lean branch (the kernel's
    transform, the lean scan, the same GEMMs), in Python or in C++; with a hook it takes the
    general cpu path, whose every product tests/torch/test_layers.py checks against the golden
    model. Both give the same outputs and gradients bit for bit, and the lean branch runs where
    it should (a phase it declines takes the general path)."""
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Linear(24, 20), torch.nn.ReLU6(), torch.nn.Linear(20, 12))
    plan = {"dual": CFPUConfig.approx(3, "dual"),
            "mixed-levels": {"forward": CFPUConfig.approx(2), "backward": CFPUConfig.approx(2),
                             "gradient": CFPUConfig.approx(5)}}.get(case, CFPUConfig.approx(3))
    net = convert(net, plan)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(9, 24, generator=g).clamp(min=0)
    if case == "subnormal-input":
        x[4, 7] = 1e-40          # layer 1's forward scan declines: the general path for it
    grad_out = torch.randn(9, 12, generator=g) * 0.1
    if case == "subnormal-error":
        grad_out[3, 2] = 1e-40   # layer 2's backward verdicts decline: the general path per phase
    lean_calls = []      # per lean forward (Python's): whether it served
    real = engine.lean_forward

    def spy(*a):
        r = real(*a)
        lean_calls.append(r is not None)
        return r
    monkeypatch.setattr(engine, "lean_forward", spy)
    general_phases = []
    real_phase = layers._phase
    monkeypatch.setattr(layers, "_phase", lambda l, r, p, phase, *a, **k: general_phases.append(phase)
                        or real_phase(l, r, p, phase, *a, **k))
    lean = _step(net, x, grad_out, None)
    monkeypatch.setattr(engine, "lean_forward", real)
    monkeypatch.setattr(layers, "_phase", real_phase)
    general = _step(net, x, grad_out, lambda *a: None)
    for a, b in zip(lean, general):
        assert torch.equal(a, b)
    # per layer one lean forward; layer 1's verdict declines on the subnormal input; dual has none
    expected = {"dual": [], "subnormal-input": [False, True]}.get(case, [True, True])
    if lean_route.name == "cpp":
        assert [served for _, _, served in lean_route.spy.calls] == expected, (case, lean_route.spy.calls)
        expected = [False] if case == "subnormal-input" else []   # Python's, where C++ declined
    assert lean_calls == expected, (case, lean_calls)
    want = {"nn": [], "mixed-levels": [], "subnormal-input": ["forward", "gradient", "backward"],
            "subnormal-error": ["gradient", "backward"]}.get(case, general_phases)
    assert general_phases == want, (case, general_phases)
    print(f"{case} ({lean_route.name}): {expected.count(True) if lean_route.name == 'python' else len(lean_route.spy.calls)} "
          f"lean forwards, general path for {general_phases or 'none'}; outputs and gradients "
          f"bit-equal to the general cpu path")


def test_lean_forward_transforms_the_input_only_for_a_gradient(monkeypatch, lean_route):
    """The lean forward transforms the input for the weight gradient only where one will be
    computed: not under no_grad, not for a frozen weight."""
    torch.manual_seed(7)
    net = convert(torch.nn.Sequential(torch.nn.Linear(24, 20), torch.nn.ReLU6(), torch.nn.Linear(20, 12)),
                  CFPUConfig.approx(3))
    x = torch.rand(5, 24)
    seen = []
    real = engine.lean_forward

    def spy(x, w, k, bits, with_x):
        r = real(x, w, k, bits, with_x)
        seen.append((tuple(w.shape), with_x, r is not None and r[1] is not None))
        return r
    monkeypatch.setattr(engine, "lean_forward", spy)
    # (weight shape, with_x, then M(x) made (Python) or the forward served (C++))
    calls, served = (seen, False) if lean_route.name == "python" else (lean_route.spy.calls, True)
    with torch.no_grad():
        y = net(x)
    assert calls == [((20, 24), False, served), ((12, 20), False, served)]
    calls.clear()
    net[0].weight.requires_grad_(False)
    net(x).sum().backward()
    assert calls == [((20, 24), False, served), ((12, 20), True, True)] and net[0].weight.grad is None
    monkeypatch.undo()
    assert torch.equal(y, net(x).detach())
    print(f"lean forward ({lean_route.name}): weights only under no_grad; the input of a frozen "
          f"layer not transformed")


def _scan_verdict(a: np.ndarray, prep) -> bool:
    """matmul_fast's lean-path scan of ``a`` against the prepared ``prep`` (its verdict)."""
    if prep.quick is None:
        return False
    return mm._Kernels.get().scan_first_quick(np.ascontiguousarray(a), np.zeros(a.shape[1], np.uint32),
                                              *prep.quick) >= 0


def test_lean_entries_are_prepare_and_the_scans(cfpu):
    """The lean routes' two C entries against prepare() and the lean scan, on operands from
    NN-like through the exponent range's edges to specials, with the inner sizes read from the
    matrices (k = -1) or given: served exactly where prepare's lean path serves both transforms
    and the scan passes, with prepare's M(W) and M(x) bits and ranges; the backward verdicts
    are the scans of the error (as delta.T and as delta)."""
    rng = np.random.default_rng(41)
    lib = mm._Kernels.get()
    outcomes = {"served": 0, "declined": 0, "w ok": 0, "x ok": 0}
    scales = (-120, -100, -60, 0, 60, 100, 120)
    for i in range(300):
        m, k, n = (int(v) for v in rng.integers(1, 12, 3))
        tw, tx = (int(v) for v in rng.integers(0, 8, 2))
        x, w, g = (cfpu.special(rng, shape) if rng.random() < 0.15 else
                   (cfpu.draw(rng, shape, "nn") * np.float32(2.0 ** rng.choice(scales))).astype(np.float32)
                   for shape in ((m, k), (n, k), (m, n)))
        with_x = bool(i % 3)
        mw, mx = np.empty_like(w), np.empty_like(x) if with_x else None
        ranges = lib.lean_forward(x, w, -1 if i % 2 else k, tw, tx, mw, mx)
        pw, px = mm.prepare(w.T, CFPUConfig.approx(tw)), mm.prepare(x, CFPUConfig.approx(tx))
        want = (pw.quick is not None and (not with_x or px.quick is not None) and _scan_verdict(x, pw))
        assert (ranges is not None) == want, i
        outcomes["served" if want else "declined"] += 1
        if ranges is None:
            continue
        assert np.array_equal(mw.view(np.uint32), pw.checked.T.view(np.uint32))
        assert ranges[:3] == tuple(pw.quick[1:])
        if with_x:
            assert np.array_equal(mx.view(np.uint32), px.checked.view(np.uint32))
            assert ranges[3:] == tuple(px.quick[1:])
        ok_w, ok_x = lib.lean_backward(g, ranges, *((-1, -1) if i % 2 else (m, n)), with_x, True)
        assert ok_w == (with_x and _scan_verdict(g.T, px)) and ok_x == _scan_verdict(g, mm.prepare(w, CFPUConfig.approx(tw)))
        outcomes["w ok"] += ok_w
        outcomes["x ok"] += ok_x
    assert all(outcomes.values()), outcomes
    # what the entries do not serve: None or (False, False), never an error
    x, w = np.ones((3, 4), np.float32), np.ones((5, 4), np.float32)
    for a, b in ((x.astype(np.float64), w), (x, w[:, :3]), (np.asfortranarray(x), w), (x[None], w), (x, w.T)):
        assert lib.lean_forward(a, b, -1, 3, 3, np.empty(b.size, np.float32), None) is None
    assert lib.lean_forward(x.astype(np.float64), w, 4, 3, 3, np.empty_like(w), None) is None
    assert lib.lean_backward(x.T, (0, 0, 0, 0, 0, 0), -1, -1, True, True) == (False, False)
    for call, message in ((lambda: lib.lean_forward(x, w, -1, 3, 3, np.empty(3, np.float32), None), "mw"),
                          (lambda: lib.lean_forward(x, w, -1, 23, 3, np.empty_like(w), None), "tuning bits"),
                          (lambda: lib.lean_forward(x, w, -2, 3, 3, np.empty_like(w), None), "k < -1"),
                          (lambda: lib.lean_backward(x, (0,) * 6, -1, 4, True, True), "both -1")):
        with pytest.raises(ValueError, match=message):
            call()
    print(f"lean entries: 300 operand triples as prepare() and the lean scans {outcomes}; "
          f"6 unserved operands, 4 bad calls refused")


@pytest.mark.parametrize("changed", ["input", "weight"])
def test_in_place_change_before_backward_is_refused(changed):
    """As nn.Linear: an operand changed in place between forward and backward is an error,
    though the lean branch transformed both in the forward."""
    torch.manual_seed(8)
    layer = convert(torch.nn.Sequential(torch.nn.Linear(6, 4)), CFPUConfig.approx(3))[0]
    x = torch.rand(3, 6).requires_grad_()
    h = x * 1.0
    y = layer(h)
    with torch.no_grad():
        (h if changed == "input" else layer.weight).add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
    print(f"{changed} changed in place before backward: RuntimeError, as nn.Linear")


def test_bad_input_still_gets_the_engine_errors():
    """What the lean branch does not serve goes the general way, which reports it in one line."""
    from canna.torch import cfpu_matmul
    config = CFPUConfig.approx(3)
    cases = [((torch.ones(2, 3), torch.ones(2, 2)), ValueError, r"^shape mismatch: a is \(2, 3\), b is \(2, 2\)"),
             ((torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 2)), TypeError, "^a: expected a float32 tensor"),
             ((torch.ones(2, 3), torch.ones(3, 2, dtype=torch.float64)), TypeError, "^b: expected a float32 tensor")]
    for (a, b), exc, message in cases:
        with pytest.raises(exc, match=message):
            cfpu_matmul(a, b, config)
    print(f"{len(cases)} bad inputs: the engine's one-line errors")
