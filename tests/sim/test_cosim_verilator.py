"""Level 2: the CFPU's Verilog on Verilator, driven by cocotb, bit-exact against the golden model.

Every run streams >= 200k vectors (the pattern cross in exact mode and across all 47
configurations, then weighted random vectors with random configurations) with random idle cycles
and back-pressure. ``CANNA_RTL_VECTORS=10000000`` is the long mode; ``CANNA_SEED`` picks the seed;
``CANNA_WAVES=1`` writes ``dump.vcd`` into the test directory printed on failure.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from canna.sim import cfpu_cosim
from canna.sim.paths import build_root
from canna.sim.rtl_build import apply_verilator_env
from canna.spec.array import DEFAULT_STAGES
from canna.spec.config import CFPUConfig
from canna.sim import golden
from helpers import seed

import cocotb_tools.runner  # noqa: F401  (a dev dependency: a broken install must fail, not skip)

MIN_CI_VECTORS = 200_000


@pytest.fixture(scope="session")
def verilator_sim():
    waves = os.environ.get("CANNA_WAVES") == "1"
    t0 = time.time()
    bdir = cfpu_cosim.cfpu_build(stages=DEFAULT_STAGES, waves=waves)
    print(f"\nVerilator build (stages={DEFAULT_STAGES}, waves={waves}): "
          f"{time.time() - t0:.1f} s, {bdir}")
    return bdir, waves


def test_verilator_regression(verilator_sim):
    from cocotb_tools.runner import get_runner

    bdir, waves = verilator_sim
    vectors = int(os.environ.get("CANNA_RTL_VECTORS", 300_000))
    run_seed = seed(1)
    test_dir = build_root() / "cocotb" / "regression"
    test_dir.mkdir(parents=True, exist_ok=True)
    summary_path = test_dir / "summary.json"
    summary_path.unlink(missing_ok=True)
    apply_verilator_env()
    env = {"CANNA_RTL_VECTORS": str(vectors), "CANNA_SEED": str(run_seed),
           "CANNA_SUMMARY": str(summary_path)}
    t0 = time.time()
    try:
        get_runner("verilator").test(
            test_module="canna.sim.cocotb_cfpu", hdl_toplevel="cfpu", hdl_toplevel_lang="verilog", testcase="regression",
            build_dir=bdir, test_dir=test_dir, extra_env=env, waves=waves, seed=run_seed,
            log_file=test_dir / "sim.log", results_xml=str(test_dir / "results.xml"))
    except SystemExit:
        pass
    assert summary_path.exists(), f"no summary; see {test_dir / 'sim.log'}"
    summary = json.loads(summary_path.read_text())
    print(f"cocotb/Verilator regression: checked {summary['vectors']} vectors "
          f"({summary['hits']} hits, {summary['configs_covered']} configurations, "
          f"{summary['cycles']} cycles, seed {run_seed}) in {time.time() - t0:.1f} s")
    if waves:
        print(f"waveform: {test_dir / 'dump.vcd'}")
    assert not summary["mismatch_reports"], summary["mismatch_reports"][0]
    assert summary["vectors"] == vectors
    if vectors >= MIN_CI_VECTORS:
        assert summary["configs_covered"] == 47


def test_mul_verilator_backend(verilator_sim):
    """``canna mul --backend verilator`` returns what the golden backend returns."""
    rng = np.random.default_rng(7)
    from canna.sim import vectors
    a, b = vectors.weighted_random(rng, 3000)
    for config in (CFPUConfig.exact(), CFPUConfig.approx(3, "dual")):
        got = cfpu_cosim.mul_verilator(a, b, config)
        want = golden.mul_bits(a, b, config)
        report = cfpu_cosim.mismatch_report(a, b, cfpu_cosim.config_codes(config, len(a)),
                                            want, got, seed=7, source="mul_verilator")
        print(f"mul_verilator {config.describe()}: checked {len(a)} vectors")
        assert not report, report
