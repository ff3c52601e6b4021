"""The energy model: arithmetic, normalisation and clear errors on missing inputs."""
import json

import numpy as np
import pytest

from canna.spec.config import CFPUConfig
from canna.sim.energy import EnergyModel, EnergyReport, HOROWITZ_FP32_MUL_PJ, load_energy_model
from canna.sim.lanes import run_lane_array
from canna.spec.array import ArrayGeometry
from helpers import nn_like

MODEL = EnergyModel(mul_exact=1900.0, mul_hit=210.0, mul_bypass=62.0, add=344.0,
                    lane_flops=300, lane_transistors=50_000, leakage=0.001)


def test_energy_parts_and_calibration():
    e = MODEL.energy(exact=10, hits=5, bypassed=3, adds=18, cycles=50, lanes=2)
    assert e["parts"] == {"mul_exact": 19_000.0, "mul_hit": 1050.0, "mul_bypass": 186.0,
                          "add": 18 * 344.0, "clock_leakage": 50 * 2 * (600 + 50.0)}
    assert e["toggles"] == pytest.approx(sum(e["parts"].values()))
    # one exact multiply is 3.7 pJ by construction
    assert MODEL.energy(exact=1, hits=0, bypassed=0, adds=0, cycles=0, lanes=1)["pj"] == pytest.approx(HOROWITZ_FP32_MUL_PJ)


def test_report_on_lane_array():
    rng = np.random.default_rng(0)
    a, b = nn_like(rng, 8, 40, 20)
    exact = run_lane_array(a, b, CFPUConfig.exact(), ArrayGeometry(16, 4))
    rep = EnergyReport.from_result(MODEL, exact, 16)
    assert rep.ratios() == {"lockstep": pytest.approx(1.0), "decoupled": pytest.approx(1.0)}
    approx = run_lane_array(a, b, CFPUConfig.approx(0), ArrayGeometry(16, 4))
    rep = EnergyReport.from_result(MODEL, approx, 16)
    r = rep.ratios()
    assert 0 < r["decoupled"] < 1 and 0 < r["lockstep"] < 1
    # independent of the calibration constant: scale every energy, same ratios
    scaled = EnergyModel(**{k: (v * 3 if k in ("mul_exact", "mul_hit", "mul_bypass", "add") else v)
                            for k, v in MODEL.__dict__.items()})
    scaled = scaled.with_leakage(0.003)
    scaled = EnergyModel(**{**scaled.__dict__, "lane_flops": 900})
    assert EnergyReport.from_result(scaled, approx, 16).ratios()["lockstep"] == pytest.approx(r["lockstep"])
    print(f"energy ratios at t=0 on {approx.products} products: {r}")


def test_missing_inputs_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="make activity"):
        load_energy_model(tmp_path / "activity.json", tmp_path / "synth.json")
    (tmp_path / "activity.json").write_text(json.dumps({"per_operation": {"exact_op": {"total": 1}}}))
    (tmp_path / "synth.json").write_text(json.dumps({"designs": {}}))
    with pytest.raises(ValueError, match="lacks approx_hit, bypass_op, add"):
        load_energy_model(tmp_path / "activity.json", tmp_path / "synth.json")
    per_op = {k: {"total": 1.0} for k in ("exact_op", "approx_hit", "bypass_op", "add")}
    (tmp_path / "activity.json").write_text(json.dumps({"per_operation": per_op}))
    with pytest.raises(ValueError, match="no 'lane' design"):
        load_energy_model(tmp_path / "activity.json", tmp_path / "synth.json")
    (tmp_path / "synth.json").write_text(json.dumps({"designs": {"lane": {"total": {"flops": 10, "transistors_incl_flops": 340}}}}))
    m = load_energy_model(tmp_path / "activity.json", tmp_path / "synth.json")
    assert m.lane_flops == 10 and m.lane_transistors == 340
