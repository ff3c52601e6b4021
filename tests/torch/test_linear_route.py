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
from canna.torch import attach_counters, convert, engine


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


@pytest.mark.parametrize("case", ["nn", "subnormal-input", "dual", "mixed-levels"])
def test_lean_branch_is_the_cpu_path_bit_for_bit(monkeypatch, case):
    """With nothing counted or hooked a CFPULinear takes its lean branch (the kernel's
    transform, the lean scan, the same GEMMs); with a hook it takes the general cpu path, whose
    every product tests/torch/test_layers.py checks against the golden model. Both give the same
    outputs and gradients bit for bit, and the lean branch runs where it should."""
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
    lean_calls = []
    real = engine.transform_lean
    monkeypatch.setattr(engine, "transform_lean", lambda *a: lean_calls.append(1) or real(*a))
    lean = _step(net, x, grad_out, None)
    monkeypatch.undo()
    general = _step(net, x, grad_out, lambda *a: None)
    for a, b in zip(lean, general):
        assert torch.equal(a, b)
    # per layer its weight and (gradient phase) its input; layer 1 declined after its weight
    expected = {"nn": 2 + 2, "subnormal-input": 1 + 2, "dual": 0, "mixed-levels": 2 + 2}[case]
    assert len(lean_calls) == expected, (case, len(lean_calls))
    print(f"{case}: {len(lean_calls)} lean transforms; outputs and gradients bit-equal to the "
          f"general cpu path")


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
