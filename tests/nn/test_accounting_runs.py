"""Every matmul of a training or inference run is accounted on the lane array, exactly as the golden
lane model runs it; the hardware block; the rtl backend against golden-exact; fast accounting."""
from __future__ import annotations

import json

import numpy as np
import pytest

from canna.nn.backends import Backend, get_backend
from canna.nn.datasets import load_digits
from canna.nn.layerwise import run_inference
from canna.nn.mlp import LANE_FIELDS, MLP, ArithPlan, Counters
from canna.nn.train import TrainConfig, train
from canna.sim import lanes_native
from canna.sim.energy import EnergyModel
from canna.sim.lanes import LaneArrayTotals
from canna.sim.savings import design_cycles, design_events, hardware_block
from canna.spec.array import ArrayGeometry
from canna.spec.config import CFPUConfig


class Recorder:
    """A golden-fast backend that keeps every (a, b, config) it is given."""

    def __init__(self):
        self.calls = []
        self.inner = get_backend("golden-fast")

    def __call__(self, a, b, config):
        self.calls.append((np.array(a), np.array(b if isinstance(b, np.ndarray) else b.original), config))
        return self.inner.matmul(a, b, config)


def lane_model_totals(calls, geometry) -> LaneArrayTotals:
    total = LaneArrayTotals()
    for a, b, config in calls:
        total.add(lanes_native.run_lane_array(a, b, config, geometry))
    return total


@pytest.mark.parametrize("policy,lanes,exact_cycles,checked", [
    ("b", 16, 4, {}), ("dual", 5, 3, {}), ("b", 7, 2, {"forward": "input", "gradient": "delta"})])
def test_training_step_accounting_equals_the_lane_model(policy, lanes, exact_cycles, checked):
    """One training step (forward, backward error, weight gradient) and one inference pass:
    the counters' lane totals equal the golden lane model's (C twin) on the very operands."""
    rng = np.random.default_rng(3)
    geometry = ArrayGeometry(lanes, exact_cycles)
    model = MLP([20, 13, 9, 4], seed=1)
    x = rng.standard_normal((11, 20)).astype(np.float32)
    x[x < -0.5] = 0.0                                   # exact zeros: bypasses
    y = rng.integers(0, 4, 11)
    plan = ArithPlan.uniform(model.n_layers, 2, policy, checked=checked)
    rec = Recorder()
    backend = Backend("recorder", rec)
    c = Counters(model.n_layers, geometry)
    logits, cache = model.forward(x, plan, backend, c, dropout=0.5, rng=np.random.default_rng(0))
    model.backward(logits, cache, y, plan, backend, c)
    want = lane_model_totals(rec.calls, geometry)
    got = c.totals()
    assert {f: getattr(got, f) for f in LANE_FIELDS} == {f: getattr(want, f) for f in LANE_FIELDS}
    assert got.hits == c.total_hits and got.products == c.total_products
    # per layer and phase too (each matmul is one layer and phase)
    order = _call_order(model.n_layers)
    assert len(rec.calls) == len(order)
    for (a, b, config), (layer, phase) in zip(rec.calls, order):
        one = lanes_native.run_lane_array(a, b, config, geometry)
        mine = c.totals(layer, phase)
        assert all(getattr(mine, f) == getattr(one, f) for f in LANE_FIELDS), (layer, phase)
    # inference with prepared weights (golden-fast caches them)
    rec.calls.clear()
    ci = Counters(model.n_layers, geometry)
    model.logits(x, ArithPlan.uniform(model.n_layers, 1, policy, ("forward",)), Backend(
        "recorder", rec, prepare=get_backend("golden-fast").prepare), ci)
    want = lane_model_totals(rec.calls, geometry)
    assert {f: getattr(ci.totals(), f) for f in LANE_FIELDS} == {f: getattr(want, f) for f in LANE_FIELDS}
    print(f"policy {policy}, {lanes} lanes, exact {exact_cycles} cycles, checked {checked or 'default'}: "
           f"{len(rec.calls)} inference + 8 training matmuls, {got.products} products, lane totals equal "
           f"the golden lane model's ({got.hits} hits, {got.bypassed} bypassed, lockstep "
           f"{got.cycles_lockstep}, decoupled {got.cycles_decoupled}, plain {got.cycles_plain})")


def _call_order(n_layers):
    order = [(i, "forward") for i in range(n_layers)]
    for i in reversed(range(n_layers)):
        order.append((i, "gradient"))
        if i:
            order.append((i, "backward"))
    return order


def test_hardware_block_arithmetic():
    """Speedups, energy ratios and the decomposition from hand-made totals."""
    t = LaneArrayTotals(products=1000, hits=300, bypassed=200, tiles=10, cycles_lockstep=1500,
                        cycles_decoupled=1200, cycles_baseline=2500, cycles_baseline_decoupled=2200,
                        cycles_plain=4000, cycles_no_skip_lockstep=3000, cycles_no_skip_decoupled=2800)
    model = EnergyModel(mul_exact=100.0, mul_hit=10.0, mul_bypass=2.0, add=20.0, lane_flops=5,
                        lane_transistors=1000, leakage=0.001)
    g = ArrayGeometry(4, 4)
    block = hardware_block(t, g, model)
    assert block["speedup"]["zero_skip"] == {"lockstep": 2500 / 1500, "decoupled": 2200 / 1200}
    assert block["speedup"]["plain"] == {"lockstep": 4000 / 1500, "decoupled": 4000 / 1200}
    lane_cycle = 2 * 5 + 0.001 * 1000
    e_cfpu = 500 * 100 + 300 * 10 + 200 * 2 + 1000 * 20 + 1500 * 4 * lane_cycle
    e_plain = 1000 * 100 + 1000 * 20 + 4000 * 4 * lane_cycle
    e_zs_dc = 800 * 100 + 200 * 2 + 1000 * 20 + 2200 * 4 * lane_cycle
    e_ns = 700 * 100 + 300 * 10 + 1000 * 20 + 3000 * 4 * lane_cycle
    assert block["energy_ratio"]["plain"]["lockstep"] == pytest.approx(e_cfpu / e_plain, rel=1e-12)
    cfpu_dc = 500 * 100 + 300 * 10 + 200 * 2 + 1000 * 20 + 1200 * 4 * lane_cycle
    assert block["energy_ratio"]["zero_skip"]["decoupled"] == pytest.approx(cfpu_dc / e_zs_dc, rel=1e-12)
    d = block["decomposition"]
    assert d["zero_skip_alone"]["speedup"]["lockstep"] == 4000 / 2500
    assert d["approximation_alone"]["speedup"]["decoupled"] == 4000 / 2800
    assert d["approximation_alone"]["energy_ratio"]["lockstep"] == pytest.approx(e_ns / e_plain, rel=1e-12)
    assert d["both"]["speedup"] == block["speedup"]["plain"]
    assert design_events(t, "plain") == {"exact": 1000, "hits": 0, "bypassed": 0, "adds": 1000}
    assert design_cycles(t, "no_skip", "lockstep") == 3000
    json.dumps(block, allow_nan=False)
    nothing = hardware_block(LaneArrayTotals(), g, None, "build/activity missing")
    assert nothing["energy_ratio"] is None and nothing["speedup"]["plain"]["lockstep"] is None
    assert "build/activity missing" in nothing["energy_note"]
    json.dumps(nothing, allow_nan=False)
    print("hardware block: 2 baselines x 2 disciplines, 3 decomposition entries, energy by hand; "
           "no products / no energy model: nulls and a note (strict JSON)")


def _tiny_train(backend, **kw):
    data = load_digits()
    cfg = TrainConfig(mode="uniform", tuning_bits=2, epochs=1, hidden=(6,), batch_size=32, train_limit=64,
                      backend=backend, **kw)
    res = train(data, cfg)
    return res, data


def test_rtl_and_golden_exact_report_identical_hardware_blocks():
    """The rtl backend's counters (the Verilated array, checked against the golden lane model on
    every matmul, and here against the accounting) and golden-exact's accounting agree."""
    blocks = {}
    for backend in ("rtl", "golden-exact"):
        res, data = _tiny_train(backend, lanes=5, exact_cycles=3)
        model = res.pop("_model")
        blocks[backend] = (res["hardware"], res["per_layer"], res["fast_rate"])
        inf = run_inference(model, data, 1.0, backend, modes=("uniform",), geometry=ArrayGeometry(5, 3))
        blocks[backend] += (inf["hardware"], inf["exact_hardware"])
    assert blocks["rtl"] == blocks["golden-exact"]
    hw = blocks["rtl"][0]
    print(f"training ({hw['products']} products, 2 iterations) and uniform inference on 5 lanes, "
           f"exact 3 cycles: rtl and golden-exact hardware blocks identical (lockstep {hw['cycles']})")


def test_fast_accounting_gives_the_papers_100_percent_at_0_bits():
    """At 0 tuning bits every product of two normal operands is a hit, so the share of products
    retiring in one cycle (hits + zero/special operands) is 100%, the paper's Table IV figure; the
    hit rate itself is only the share of products with two nonzero operands."""
    data = load_digits()
    cfg = TrainConfig(mode="uniform", tuning_bits=0, epochs=1, hidden=(32, 32), train_limit=320,
                      hit_accounting="fast")
    res = train(data, cfg)
    assert res["fast_rate"] >= 0.99995, res["fast_rate"]
    assert res["hit_rate"] < 0.9, res["hit_rate"]
    assert res["hit_rate"] == pytest.approx(res["nonzero_hit_rate"] * res["nonzero_products"] / res["products"])
    for row in res["per_layer"]:
        for phase in ("forward", "backward", "gradient"):
            if phase in row:
                assert row[phase]["fast_rate"] >= 0.999, (row["layer"], phase, row[phase])
    print(f"digits, t=0, 10 iterations: fast rate {100 * res['fast_rate']:.4f}% (paper: 100%), hit rate "
           f"{100 * res['hit_rate']:.2f}% of {res['products']:,} products")


def test_nonzero_products_equal_products_minus_bypassed():
    """Counters take the nonzero products from the accounting when it runs and count them
    otherwise: the same number, inf and NaN operands included (they are bypassed)."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((9, 40)).astype(np.float32)
    b = rng.standard_normal((40, 7)).astype(np.float32)
    a[a < -0.8] = 0
    b[b > 1.2] = 0
    a[0, 3], a[2, 5], b[7, 1] = np.inf, np.nan, -np.inf
    from canna.nn.backends import nonzero_products
    for config in (CFPUConfig.approx(1), CFPUConfig.exact()):
        with_acc, without = Counters(1, ArrayGeometry(4, 3)), Counters(1)
        r = get_backend("golden-fast").matmul(a, b, config)
        with_acc.count(0, "forward", a, b, config, r)
        without.count(0, "forward", a, b, config, r)
        assert with_acc.nonzero[0, 0] == without.nonzero[0, 0] == nonzero_products(a, b)
        assert with_acc.nonzero[0, 0] == r.products - with_acc.totals().bypassed
    print(f"nonzero products {nonzero_products(a, b)} of {a.shape[0] * a.shape[1] * b.shape[1]} "
          f"(zeros, inf, NaN): counted = products - bypassed, 2 configurations")
