"""The lane accounting of training steps on the fast paths (``W.T`` packed in place from ``W``'s
rows, plain operands packed in the accounting call, prepared weights packed for keeps the second
time they come) equals, per layer, phase and field, the accounting with every operand copied
C-contiguous and packed on its own (``prepare_accounting``), and the C twin of the golden lane
model on the very operands."""
from __future__ import annotations

import numpy as np
import pytest

from canna.nn import mlp
from canna.nn.mlp import LANE_FIELDS, MLP, PHASES, ArithPlan, Counters
from canna.sim import accounting, lanes_native
from canna.sim.accounting import account_matmul, prepare_accounting
from canna.spec.array import ArrayGeometry


class SeparateCounters(Counters):
    """Counters that pack every operand afresh from a C-contiguous copy (the path before the
    fast ones, and what ``prepare_accounting`` always did)."""

    def count(self, layer, phase, a, b, config, r):
        w = np.ascontiguousarray(b if isinstance(b, np.ndarray) else b.original)
        t = account_matmul(a, prepare_accounting(w, config), geometry=self.geometry)
        self.add(layer, phase, r.products, r.hits, t.products - t.bypassed)
        self.lane[layer, PHASES.index(phase)] += [int(getattr(t, f)) for f in LANE_FIELDS]


class ViewCounters(Counters):
    """Counters that also note how many operands came as transposed views (``W.T``)."""

    views = 0

    def count(self, layer, phase, a, b, config, r):
        arr = b if isinstance(b, np.ndarray) else b.original
        self.views += bool(arr.flags.f_contiguous and not arr.flags.c_contiguous)
        super().count(layer, phase, a, b, config, r)


def _steps(model, x, y, plan, geometry, cls):
    """Forward and backward of a step and an inference pass (prepared weights seen twice) on
    golden-fast, booked in one ``cls``; returns it."""
    c = cls(model.n_layers, geometry)
    c.recorder = []
    logits, cache = model.forward(x, plan, "golden-fast", c, dropout=0.5, rng=np.random.default_rng(0))
    model.backward(logits, cache, y, plan, "golden-fast", c)
    model.logits(np.concatenate([x, x]), plan, "golden-fast", c, batch=len(x))
    return c


def _golden(c: Counters, geometry) -> np.ndarray:
    """The C twin of the lane model on every recorded matmul, as ``Counters.lane``."""
    lane = np.zeros_like(c.lane)
    for layer, phase, a, b, config in c.recorder:
        t = lanes_native.run_lane_array(a, np.ascontiguousarray(b), config, geometry)
        lane[layer, PHASES.index(phase)] += [int(getattr(t, f)) for f in LANE_FIELDS]
    return lane


@pytest.mark.parametrize("policy,lanes,exact_cycles", [("b", 16, 4), ("b", 7, 2), ("dual", 5, 3)])
def test_fast_accounting_paths_count_what_separate_packing_counts(policy, lanes, exact_cycles, monkeypatch):
    packed = []     # prepared weights packed for keeps (the second time they come)
    monkeypatch.setattr(mlp, "prepare_accounting",
                        lambda *a, **k: packed.append(1) or prepare_accounting(*a, **k))
    rng = np.random.default_rng(5)
    geometry = ArrayGeometry(lanes, exact_cycles)
    # widths across 64-bit words and not multiples of the lanes; weights with zeros, subnormals
    # and a column of huge powers of two (hits that could overflow: product-by-product words)
    model = MLP([70, 130, 66, 5], seed=2)
    for w in model.weights:
        w[rng.random(w.shape) < 0.05] = 0.0
        w[rng.random(w.shape) < 0.02] = np.float32(1e-40)
    model.weights[1][:, 4] = np.float32(2.0 ** 126)
    x = rng.standard_normal((9, 70)).astype(np.float32) * 3
    x[x < -0.5] = 0.0
    y = rng.integers(0, 5, 9)
    plan = ArithPlan.uniform(model.n_layers, 3, policy)
    got = _steps(model, x, y, plan, geometry, ViewCounters)
    kept = len(packed)
    ref = _steps(model, x, y, plan, geometry, SeparateCounters)
    gold = _golden(got, geometry)
    assert np.array_equal(got.lane, ref.lane), "the fast paths differ from separate packing"
    assert np.array_equal(got.lane, gold), "accounting differs from the lane model"
    assert np.array_equal(got.hits, ref.hits) and np.array_equal(got.nonzero, ref.nonzero)
    # what the fast paths were given: W.T views in the backward phase (policy b), prepared
    # weights seen twice in the inference pass (packed for keeps), and product-by-product words
    views = got.views
    layer, phase, a, b, config = got.recorder[1]          # layer 2's forward phase
    hard = accounting.account_result(a, np.ascontiguousarray(b), config, geometry)
    assert (layer, phase) == (1, "forward") and hard.extra["product_by_product_words"] > 0
    assert views == 2 and kept == 3
    print(f"{policy} {geometry}: {len(got.recorder)} matmuls ({views} through W.T, {kept} prepared "
          f"weights packed for keeps), every lane field = separate packing = C twin of the lane model")


def test_counters_keep_no_transform_alive_and_pack_a_returning_one():
    """A Counters kept over many training steps holds none of their transforms (a review saw
    8 kept per step when the cache held them strongly); prepared weights that come a second
    time (an evaluation's) are packed once and reused."""
    from canna.nn.train import sgd_step
    rng = np.random.default_rng(4)
    model = MLP([30, 17, 13, 5], seed=2)
    velocity = [np.zeros_like(p) for p in model.weights + model.biases]
    c = Counters(3, ArrayGeometry(7, 3))
    plan = ArithPlan.uniform(3, 2, "b")
    for _ in range(10):
        x = rng.standard_normal((11, 30)).astype(np.float32)
        sgd_step(model, velocity, x, rng.integers(0, 5, 11), plan, "golden-fast", c, lr=0.05,
                 momentum=0.9, dropout=0.0, rng=np.random.default_rng(1))
    assert len(c._prepared) == 0, len(c._prepared)
    packed = []
    real = mlp.prepare_accounting
    mlp.prepare_accounting = lambda *a, **k: packed.append(1) or real(*a, **k)
    try:
        model.logits(rng.standard_normal((33, 30)).astype(np.float32), plan, "golden-fast", c, batch=11)
    finally:
        mlp.prepare_accounting = real
    assert len(packed) == 3 and len(c._prepared) == 0
    print(f"10 training steps: {len(c._prepared)} transforms kept after them; an evaluation of 3 "
          f"batches: its 3 prepared weights packed once each, none kept after it")
