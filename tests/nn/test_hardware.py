"""Inference on the RTL lane array: results equal the golden backends, cycles equal the golden
lane model, energy ratios are consistent."""
import json

import numpy as np
import pytest

from canna.nn import hardware
from canna.nn.backends import ArrayCosim, Backend, get_backend
from canna.nn.mlp import MLP, ArithPlan, Counters


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    model = MLP([12, 10, 3], seed=1)
    x = rng.standard_normal((5, 12)).astype(np.float32)
    y = rng.integers(0, 3, 5)
    return model, x, y


def test_rtl_backend_equals_golden_exact(tiny):
    model, x, y = tiny
    plan = ArithPlan.per_layer([0, 2], "b", ("forward",))
    sim = ArrayCosim("decoupled", lanes=4)
    rtl = model.logits(x, plan, Backend("rtl-test", sim), Counters(2))
    ref = model.logits(x, plan, get_backend("golden-exact"), Counters(2))
    assert np.array_equal(rtl.view(np.uint32), ref.view(np.uint32))
    assert sim.rtl_cycles == sim.totals.cycles_decoupled > 0
    print(f"RTL backend == golden-exact on {sim.totals.products} products, {sim.totals.hits} hits")


def test_rtl_inference_report(tiny, tmp_path, monkeypatch):
    model, x, y = tiny
    # An energy model from small hand-made inputs, so the test does not depend on make synth.
    act = {"per_operation": {"exact_op": {"total": 1900.0}, "approx_hit": {"total": 210.0},
                             "bypass_op": {"total": 60.0}, "add": {"total": 340.0}}}
    syn = {"designs": {"lane": {"total": {"flops": 500, "transistors_incl_flops": 60000}}}}
    (tmp_path / "activity").mkdir()
    (tmp_path / "synth").mkdir()
    (tmp_path / "activity" / "activity.json").write_text(json.dumps(act))
    (tmp_path / "synth" / "synth.json").write_text(json.dumps(syn))
    monkeypatch.setenv("CANNA_BUILD_DIR", str(tmp_path))      # canna.sim.paths.build_root
    rep = hardware.rtl_inference(model, x, y, {"exact": [None, None], "t0": [0, 0]}, lanes=4)
    ex, t0 = rep["configs"]["exact"], rep["configs"]["t0"]
    assert ex["energy_ratio"] == {"lockstep": pytest.approx(1.0), "decoupled": pytest.approx(1.0)}
    assert ex["speedup_lockstep"] == 1.0 and t0["hits"] > 0
    assert t0["speedup_decoupled"] >= 1.0 and t0["energy_ratio"]["decoupled"] < 1.0
    hardware.print_rtl_report(rep)
