"""CFPULinear's shared weight transform (one prepare() of W per step, serving the forward phase
as its transposed view and the backward phase as it is): the same products, hit, nonzero and
lane counts and outputs as each phase transforming its own copy of the weight."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from canna.sim import matmul as mm
from canna.spec.array import ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig
from canna.torch import CFPULinear, LayerPlan, attach_counters, layers

PLANS = {"b3": LayerPlan.of(CFPUConfig.approx(3)), "dual4": LayerPlan.of(CFPUConfig.approx(4, "dual")),
         "exact": LayerPlan.of(EXACT),
         "mixed": LayerPlan.of({"forward": CFPUConfig.approx(2), "backward": CFPUConfig.approx(5),
                                "gradient": CFPUConfig.approx(2)}),
         "flipped": LayerPlan.of(CFPUConfig.approx(3), {"forward": "input", "backward": "weight",
                                                        "gradient": "input"})}


def _step(plan, x_np, w_np, g_np, share: bool, monkeypatch):
    layer = CFPULinear(*reversed(w_np.shape), bias=False, config=plan)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w_np))
    counters = attach_counters(layer, ArrayGeometry(4, 3))
    seen = []
    shared = layers._shared_weight
    monkeypatch.setattr(layers, "_shared_weight", lambda *a: seen.append(shared(*a)) or seen[-1]
                        if share else None)
    x = torch.from_numpy(x_np).requires_grad_()
    y = layer(x)
    y.backward(torch.from_numpy(g_np))
    monkeypatch.undo()
    return (y.detach().numpy(), x.grad.numpy(), layer.weight.grad.numpy()), counters, seen


@pytest.mark.parametrize("plan", PLANS)
def test_shared_transform_changes_nothing(plan, monkeypatch):
    plan_ = PLANS[plan]
    rng = np.random.default_rng(31)
    x = np.maximum(rng.standard_normal((16, 40)), 0).astype(np.float32)
    w = (0.1 * rng.standard_normal((24, 40))).astype(np.float32)
    g = (0.1 * rng.standard_normal((16, 24))).astype(np.float32)
    out, c, seen = _step(plan_, x, w, g, True, monkeypatch)
    ref, c_ref, _ = _step(plan_, x, w, g, False, monkeypatch)
    shared = seen[0] is not None
    assert shared == (plan in ("b3", "dual4", "exact")), plan      # forward and backward agree
    if shared:
        assert isinstance(seen[0], mm.Prepared) and seen[0].original.shape == w.shape
    for name in ("products", "hits", "nonzero", "lane"):
        assert np.array_equal(getattr(c, name), getattr(c_ref, name)), name
    for a, b in zip(out, ref):    # the same transform and GEMMs: bit for bit
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    print(f"linear {plan}: shared transform {shared}, outputs bit-equal, {int(c.hits.sum())} hits "
          f"and lane counters as unshared")
