"""GTA controller: monotone levels, the deadline guarantee, THR and persistence."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from canna.nn.gta import GTAConfig, GTAController, window_slope


def run(controller, errors):
    levels = []
    for i, e in enumerate(errors):
        controller.observe(i, e)
        levels.append(controller.level)
    return levels


@settings(max_examples=60, deadline=None)
@given(apx_min=st.integers(0, 8), window=st.integers(2, 20), iter_max=st.integers(1, 600),
       reserve=st.floats(0, 0.9), thr=st.floats(0, 0.1), seed=st.integers(0, 2**32 - 1),
       trend=st.sampled_from(["flat", "falling", "rising", "noise"]))
def test_level_never_moves_toward_deeper_approximation(apx_min, window, iter_max, reserve, thr, seed, trend):
    rng = np.random.default_rng(seed)
    t = np.arange(iter_max)
    base = {"flat": np.full(iter_max, 0.3), "falling": np.exp(-t / 50.0),
            "rising": t / iter_max, "noise": np.zeros(iter_max)}[trend]
    errors = np.clip(base + rng.normal(0, 0.1, iter_max), 0, 1)
    c = GTAController(GTAConfig(apx_min=apx_min, window=window, thr=thr, reserve=reserve), iter_max)
    levels = run(c, errors)
    assert all(b >= a for a, b in zip([0] + levels, levels)), "tuning bits decreased"
    assert all(0 <= lv <= apx_min for lv in levels)
    steps = [e["level"] for e in c.trajectory]
    assert steps == sorted(steps) and all(b - a <= 1 for a, b in zip(steps, steps[1:]))


@pytest.mark.parametrize("apx_min,window,reserve", [(5, 50, 0.25), (8, 10, 0.0), (3, 20, 0.5)])
def test_deadline_reaches_apx_min(apx_min, window, reserve):
    """With thr = 0 a steadily improving error never 'converges'; the time pressure alone still
    forces every step before the reserve begins."""
    iter_max = int(math.ceil(apx_min * window / (1 - reserve))) + 3 * window
    c = GTAController(GTAConfig(apx_min=apx_min, window=window, reserve=reserve, thr=0.0, stop=False),
                      iter_max)
    levels = run(c, 0.05 + 0.9 * (1 - np.arange(iter_max) / iter_max))  # steady, steep fall
    reached = levels.index(apx_min) + 1
    print(f"apx_min {apx_min}, window {window}, iter_max {iter_max}: reached at iteration {reached}; "
          f"reasons {[e['reason'] for e in c.trajectory]}")
    assert reached <= iter_max * (1 - reserve)
    assert all(e["reason"] in ("start", "deadline") for e in c.trajectory)


def test_plateau_steps_early_and_stops():
    c = GTAController(GTAConfig(apx_min=2, window=10, patience=2, reserve=0.1), 200)
    levels = run(c, np.full(200, 0.1))
    print(f"flat error: trajectory {[(e['iteration'], e['level'], e['reason']) for e in c.trajectory]}")
    assert levels[9] == 1 and levels[19] == 2  # each full window on a plateau converges
    assert c.stopped and c.trajectory[-1]["reason"] == "stop" and c.trajectory[-1]["iteration"] == 40


def test_stop_waits_for_the_reserve_at_the_final_level():
    """Converged windows at Apx_min stop training only after reserve * iter_max iterations there."""
    c = GTAController(GTAConfig(apx_min=2, window=10, patience=2, reserve=0.25), 1000)
    run(c, np.full(1000, 0.1))
    stop = c.trajectory[-1]
    print(f"reached apx_min at {c.final_level_since}, stopped at {stop['iteration']}")
    assert stop["reason"] == "stop" and stop["iteration"] - c.final_level_since >= 250
    assert stop["iteration"] == 270


def test_thr_definition():
    c = GTAController(GTAConfig(apx_min=4, window=50, thr=0.002, reserve=0.25), 1000)
    # u = 4 * 50 / (1000 - 100 - 250) = 200 / 650
    u = 200 / 650
    assert c.thr(99, 0.2) == pytest.approx(0.002 * 0.2 / (1 - u))
    assert math.isinf(c.thr(600, 0.2))  # 4 windows no longer fit before the reserve
    assert window_slope([3, 2, 1, 0]) == pytest.approx(-1.0)
    print(f"THR at iteration 100: {c.thr(99, 0.2):.6f}; u = {u:.3f}")


def test_state_roundtrip_and_validation():
    rng = np.random.default_rng(0)
    errs = rng.random(300)
    a = GTAController(GTAConfig(apx_min=3, window=20), 400)
    run(a, errs[:150])
    b = GTAController.from_state(a.state())
    for i in range(150, 300):
        a.observe(i, errs[i])
        b.observe(i, errs[i])
    assert a.state() == b.state()
    for bad in (dict(apx_min=23), dict(apx_min=2, start=3), dict(apx_min=2, window=1), dict(apx_min=2, reserve=1.0)):
        with pytest.raises(ValueError, match="GTA"):
            GTAConfig(**bad)
    print(f"state round trip over 150 iterations; final level {a.level}")
