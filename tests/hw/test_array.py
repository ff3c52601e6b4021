"""The lane array (hw/array.py) in the Amaranth simulator, driven by the matmul driver
(canna.sim.array, backend "amaranth"): outputs bit-identical to the golden sequential matmul,
per-lane counters and the cycle count of each discipline equal to the golden lane model."""
import numpy as np
import pytest

from canna.hw.array import LaneArray
from canna.spec.array import pipeline_latency
from canna.sim.array import ArrayMismatch, run_array
from canna.spec.config import EXACT, CFPUConfig
from canna.spec.array import ArrayGeometry
from canna.sim.matmul import matmul_reference
from helpers import nn_like, seed

SEED = seed(11)


@pytest.mark.parametrize("discipline", ["lockstep", "decoupled"])
@pytest.mark.parametrize("config", [EXACT, CFPUConfig.approx(0), CFPUConfig.approx(2, "dual")],
                         ids=lambda c: c.describe())
@pytest.mark.parametrize("lanes, exact_cycles, shape", [(4, 3, (3, 7, 5)), (1, 2, (2, 3, 2)),
                                                         (5, 4, (2, 1, 4))])
def test_array_matches_golden(discipline, config, lanes, exact_cycles, shape):
    rng = np.random.default_rng(SEED + lanes)
    a, b = nn_like(rng, *shape)
    a[0, 0] = np.inf if shape[1] > 1 else a[0, 0]
    r = run_array(a, b, config, backend="amaranth", discipline=discipline,
                  geometry=ArrayGeometry(lanes, exact_cycles), seed=SEED)  # raises on mismatch
    ref = matmul_reference(a, b, config)
    assert np.array_equal(r.value.view(np.uint32), ref.value.view(np.uint32))
    assert r.hits == ref.hits
    want = r.model.cycles_lockstep if discipline == "lockstep" else r.model.cycles_decoupled
    assert r.cycles == want and r.wall_cycles == want + pipeline_latency(3)
    print(f"amaranth {discipline} lanes={lanes} k={exact_cycles} {config.describe()}: "
          f"{r.products} products in {r.tiles} tiles, {r.hits} hits, {r.cycles} cycles "
          f"(model lockstep {r.model.cycles_lockstep}, decoupled {r.model.cycles_decoupled})")


def test_per_lane_configs_and_backpressure():
    rng = np.random.default_rng(SEED)
    a, b = nn_like(rng, 3, 6, 4)
    configs = [EXACT, CFPUConfig.approx(0), CFPUConfig.approx(3, "dual"), CFPUConfig.approx(1)]
    r = run_array(a, b, configs, backend="amaranth", discipline="decoupled",
                  geometry=ArrayGeometry(4, 3), p_stall=0.5, seed=SEED, activity=True)
    # the register toggles were checked against the golden count (back-pressure delays the
    # registers' values, it does not change them)
    (tiles, start, toggles), = r.activity["toggle_parts"]
    assert tiles == (0, r.tiles) and not start.any() and toggles[:, 2].sum() > 0
    print(f"per-lane configurations with 50% output back-pressure: {r.products} products, "
          f"{r.hits} hits, {r.tiles} tiles bit-exact, {int(toggles.sum())} register toggles "
          f"equal to the golden count")


def test_mismatch_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("CANNA_BUILD_DIR", str(tmp_path))
    from canna.sim.array import amaranth_sim
    rng = np.random.default_rng(SEED)
    a, b = nn_like(rng, 2, 3, 2)
    real = amaranth_sim.run

    def broken(job):
        raw = real(job)
        raw.out = raw.out.copy()
        raw.out[0, 1] ^= 1
        raw.cycles += 1
        return raw
    monkeypatch.setattr(amaranth_sim, "run", broken)
    with pytest.raises(ArrayMismatch, match=r"Y\[0,1\].*expected") as e:
        run_array(a, b, CFPUConfig.approx(1), backend="amaranth", geometry=ArrayGeometry(2, 2),
                  seed=5)
    assert "seed 5" in str(e.value) and "cycles" in str(e.value)
    assert list(tmp_path.glob("array_mismatch/*.npz"))
    print("an injected one-bit error is reported with a reproducer:\n" + str(e.value))


@pytest.mark.filterwarnings("ignore::Warning")
def test_bad_parameters():
    with pytest.raises(ValueError, match="discipline"):
        LaneArray(discipline="async")
    with pytest.raises(ValueError, match="lanes"):
        LaneArray(lanes=0)
    with pytest.raises(ValueError, match="backend"):
        run_array(np.ones((1, 1), np.float32), np.ones((1, 1), np.float32), backend="spice")
    one = np.ones((1, 1), np.float32)
    with pytest.raises(ValueError, match="at least one output"):
        run_array(np.ones((0, 1), np.float32), one, backend="amaranth")
    with pytest.raises(ValueError, match="at least one output"):
        run_array(one, np.ones((1, 0), np.float32), backend="verilator-fast")
    with pytest.raises(ValueError, match="p_stall and vcd"):
        run_array(one, one, backend="verilator-fast", p_stall=0.2)


def test_bad_thread_count(monkeypatch):
    from canna.sim.array.fast import FastArray, build
    monkeypatch.setenv("CANNA_ARRAY_THREADS", "abc")
    with pytest.raises(ValueError, match="CANNA_ARRAY_THREADS"):
        FastArray(build(lanes=4, exact_cycles=4), 4, 3)
