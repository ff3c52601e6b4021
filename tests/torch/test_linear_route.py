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
