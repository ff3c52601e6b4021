"""The lane array's RTL through every matmul backend against the golden lane model: cocotb on
Verilator and the fast Verilator co-simulation (the Amaranth simulator backend is covered by
tests/hw/test_array.py). Every run checks output bits against the golden sequential matmul,
per-lane counters and the discipline's cycle count (canna.sim.array raises on a mismatch)."""
import numpy as np
import pytest

from canna.sim.array import run_array
from canna.spec.config import EXACT, CFPUConfig
from canna.sim.lanes import run_lane_array
from canna.spec.array import ArrayGeometry
from canna.sim.matmul import matmul_reference
from helpers import nn_like, seed

SEED = seed(23)


def check_reference(r, a, b, config):
    ref = matmul_reference(a, b, config)
    assert np.array_equal(r.value.view(np.uint32), ref.value.view(np.uint32))
    assert r.hits == ref.hits


@pytest.mark.parametrize("discipline", ["lockstep", "decoupled"])
def test_fast_small(discipline):
    rng = np.random.default_rng(SEED)
    geometry = ArrayGeometry(4, 4)
    checked = tiles = 0
    for shape in [(3, 7, 5), (1, 1, 1), (5, 16, 3)]:
        a, b = nn_like(rng, *shape, specials=True)
        for config in (EXACT, CFPUConfig.approx(0), CFPUConfig.approx(2), CFPUConfig.approx(3, "dual")):
            r = run_array(a, b, config, backend="verilator-fast", geometry=geometry,
                          discipline=discipline, seed=SEED)
            check_reference(r, a, b, config)
            checked += r.products
            tiles += r.tiles
    configs = [EXACT, CFPUConfig.approx(0), CFPUConfig.approx(4, "dual"), CFPUConfig.approx(1)]
    a, b = nn_like(rng, 3, 9, 6, specials=True)
    r = run_array(a, b, configs, backend="verilator-fast", geometry=geometry, discipline=discipline)
    # run_array checked the run against its golden model (the C twin when it builds); the NumPy
    # lane model agrees on outputs and per-lane counters
    ref = run_lane_array(a, b, configs, geometry)
    assert np.array_equal(r.value.view(np.uint32), ref.value.view(np.uint32))
    assert np.array_equal(r.counters["hits"], ref.lane_hits)
    assert np.array_equal(r.counters["ops"], ref.lane_products)
    checked += r.products
    print(f"verilator-fast {discipline}, 4 lanes: {checked} products in {tiles + r.tiles} tiles "
          f"bit-exact with golden, counters and cycles equal to the lane model "
          f"(incl. one run with per-lane configurations)")


def test_fast_bigger_16_lanes_with_activity():
    rng = np.random.default_rng(SEED + 1)
    a, b = nn_like(rng, 40, 128, 37, specials=True)
    total = 0
    for config in (CFPUConfig.approx(2), EXACT):
        r = run_array(a, b, config, backend="verilator-fast", geometry=ArrayGeometry(16, 4),
                      discipline="lockstep", activity=True, seed=SEED)
        check_reference(r, a, b, config)
        assert r.activity["toggles_a"].shape == (16,) and r.activity["toggles_acc"].sum() > 0
        # one eval() per clock cycle (dual-edge build), plus one settle per model at the start
        # and one whenever the lanes' valid inputs change (streams running out)
        assert r.activity["evals"] <= r.activity["sim_cycles"] + r.activity["models"] * 17
        total += r.products
        print(f"verilator-fast lockstep, 16 lanes, {config.describe()}: {r.products} products, "
              f"{r.tiles} tiles, hit rate {r.hits / r.products:.3f}, cycles {r.cycles} "
              f"(baseline {r.model.cycles_baseline}), {r.macs_per_second / 1e6:.2f} M MAC/s "
              f"on {r.activity['models']} model(s)")
    assert total == 2 * 40 * 128 * 37


def test_cocotb_small():
    rng = np.random.default_rng(SEED + 2)
    a, b = nn_like(rng, 3, 6, 5, specials=True)
    config = CFPUConfig.approx(1, "dual")
    r = run_array(a, b, config, backend="cocotb", geometry=ArrayGeometry(4, 4),
                  discipline="lockstep", seed=SEED, activity=True)
    check_reference(r, a, b, config)
    toggles = r.activity["toggles_a"] + r.activity["toggles_b"] + r.activity["toggles_acc"]
    assert r.activity["toggles_acc"].sum() > 0
    print(f"cocotb lockstep, 4 lanes: {r.products} products in {r.tiles} tiles bit-exact, "
          f"{r.cycles} cycles = model, wall {r.wall_cycles}, {int(toggles.sum())} register "
          f"toggles equal to the golden count")


def test_activity_is_checked(monkeypatch):
    """The measured register toggles are checked against the golden count: a golden model
    that is off by one toggle makes the run fail with a reproducer."""
    import canna.sim.array.check as ac
    from canna.sim.toggles import register_toggles
    rng = np.random.default_rng(SEED + 2)
    a, b = nn_like(rng, 6, 9, 5)
    r = run_array(a, b, CFPUConfig.approx(1), backend="verilator-fast", geometry=ArrayGeometry(4, 4),
                  activity=True)
    parts = r.activity["toggle_parts"]
    assert sum(int(t.sum()) for _, _, t in parts) == int(
        (r.activity["toggles_a"] + r.activity["toggles_b"] + r.activity["toggles_acc"]).sum()) > 0
    monkeypatch.setattr(ac, "register_toggles", lambda *args, **kw: register_toggles(*args, **kw) + 1)
    with pytest.raises(ac.ArrayMismatch, match="register toggles"):
        run_array(a, b, CFPUConfig.approx(1), backend="verilator-fast", geometry=ArrayGeometry(4, 4),
                  activity=True)
    print(f"register toggles of {len(parts)} model(s) checked; an off-by-one golden count is caught")


def test_fast_build_verilog_rewrites(tmp_path):
    """The fast build's two Verilog rewrites change only what they say: every register clocked
    on both edges, and the top module's o.ready and rst constants instead of ports (the lane
    module keeps its own); unexpected text is refused, not half-rewritten."""
    from canna.sim.array.fast import FAST_TIED_INPUTS, dual_edge_verilog, tie_top_inputs
    from canna.sim.rtl_build import array_verilog
    plain = array_verilog(tmp_path / "a.v", lanes=2, exact_cycles=2).read_text()
    fast = tie_top_inputs(dual_edge_verilog(plain), FAST_TIED_INPUTS)
    assert "posedge" not in fast and fast.count("always @(edge clk)") == plain.count("posedge clk")
    lane, top = fast.split("\nmodule lane_array(")
    assert "input o__ready;" in lane and "input rst;" in lane   # the lane module keeps its ports
    header = top[:top.index(");")]
    assert "o__ready" not in header and "rst" not in header and "cfg__payload" in header
    assert "\n  wire o__ready = 1'b1;\n" in top and "input o__ready;" not in top
    assert "\n  wire rst = 1'b0;\n" in top and "input rst;" not in top
    assert len(fast.splitlines()) == len(plain.splitlines()) - 2   # two declarations -> one each
    with pytest.raises(ValueError, match="o__ready"):
        tie_top_inputs(plain.replace("o__ready", "out_ready"), FAST_TIED_INPUTS)
    with pytest.raises(ValueError, match="no module"):
        tie_top_inputs(plain, FAST_TIED_INPUTS, top="other")
    with pytest.raises(ValueError, match="clocking"):
        dual_edge_verilog(plain.replace("posedge clk", "negedge clk", 1))
    print("fast-build Verilog rewrites: dual-edge registers, o.ready / rst tied, 3 bad inputs refused")
