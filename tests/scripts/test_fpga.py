"""scripts/fpga.py (``make fpga``): the harness keeps the design, the flow runs end to end on the
smallest design, and the report parser reads real Yosys and nextpnr output. No timing assertions:
the figures are measurements, only their consistency is checked."""
import importlib.util
import json
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from canna.hw.fpga_harness import ApproxPath, ShiftHarness, harness_cost, port_bits
from canna.sim.rtl_build import verilog_text, write_verilog

ROOT = Path(__file__).resolve().parents[2]


def _fpga():
    spec = importlib.util.spec_from_file_location("fpga_script", ROOT / "scripts" / "fpga.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_harness_ports_and_probe_errors():
    """Four pins whatever the design; every input bit from the chain, every output registered."""
    text = verilog_text(ShiftHarness(ApproxPath(), probe=("hit",)), "top")
    header = text[text.index("module top("):].split(";")[0]
    assert sorted(p.strip() for p in header[len("module top("):-1].split(",")) == \
        ["clk", "din", "dout", "probe_clk", "rst"]
    ins, outs = port_bits(ApproxPath())
    assert (ins, outs) == (32 + 32 + 7 + 32 + 5, 32 + 5 + 1)
    assert harness_cost(ApproxPath())["flops"] == ins + outs + 1
    with pytest.raises(ValueError, match=r"^probe names no output of the design: nope$"):
        ShiftHarness(ApproxPath(), probe=("nope",))
    print(f"harness: 5 pins, {ins} input bits, {outs} output bits, probe name checked")


def test_flow_on_the_approximate_path(tmp_path, capsys):
    """The smallest design through the whole flow (one seed): the design's cells survive
    synthesis inside the harness, the harness costs exactly its flip-flops, and the parsed
    nextpnr report is self-consistent (Fmax = 1 / critical path, register to register)."""
    fpga = _fpga()
    assert fpga.main(["--only", "approx_path", "--seeds", "1", "--out", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "fpga.json").read_text())
    d = rep["designs"]["approx_path"]
    ins, outs = d["ports"]["input_bits"], d["ports"]["output_bits"]
    assert d["design"]["LUT4"] > 0 and d["design"]["TRELLIS_FF"] == 0   # kept, combinational
    assert d["harness"]["TRELLIS_FF"] == ins + outs + 1
    run = d["pnr"]["runs"]["1"]
    cp = run["critical_path"]
    assert cp["from"].startswith("in_chain") and cp["to"].startswith("out_")
    assert cp["logic_ns"] + cp["routing_ns"] == pytest.approx(cp["delay_ns"], abs=0.01)
    assert 1000 / run["fmax_mhz"] == pytest.approx(cp["delay_ns"], rel=1e-3)
    assert run["utilization"]["TRELLIS_FF"] == ins + outs + 1
    assert "latency" not in rep   # needs the exact path too
    text = capsys.readouterr().out
    assert "approx_path" in text and "wrote" in text
    print(f"approx_path: {d['design']['LUT4']} LUT4, critical path {cp['delay_ns']} ns "
          f"({cp['logic_levels']} logic levels), Fmax {run['fmax_mhz']} MHz")


def test_probe_path_is_reported_apart(tmp_path):
    """An output in the probe domain gets its own clk -> probe path in the parsed report."""
    fpga = _fpga()
    v = write_verilog(verilog_text(ShiftHarness(ApproxPath(), probe=("hit",)), "top"), tmp_path / "top.v")
    syn = fpga.synthesize(tmp_path, v)
    assert syn["design"]["LUT4"] > 0
    res = fpga.place_and_route(tmp_path, 1)
    probe = res["probe_path"]
    assert probe["to"].startswith("out_hit") and probe["from"].startswith("in_chain")
    assert probe["delay_ns"] > 0 and probe["logic_levels"] > 0
    raw = json.loads((tmp_path / "seed1.json").read_text())
    with pytest.raises(ValueError, match="no Fmax of clock clk"):
        fpga.parse_report({**raw, "fmax": {}})
    print(f"probe path {probe['delay_ns']} ns beside critical path {res['critical_path']['delay_ns']} ns")


class _And(wiring.Component):
    a: In(1)
    b: In(1)
    x: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.x.eq(self.a & self.b)
        return m


class _Twins(wiring.Component):
    """Two outputs that are one signal, like the lockstep array's ready lines."""
    a: In(1)
    b: In(1)
    x: Out(1)
    y: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = _And()
        m.d.comb += [inner.a.eq(self.a), inner.b.eq(self.b), self.x.eq(inner.x), self.y.eq(inner.x)]
        return m


def test_identical_probes_survive_synthesis(tmp_path):
    """Identical probed outputs must not cancel in the harness's parity (they did, for the
    lockstep array's 16 ready lines, when the design is flattened into the harness, as the
    array is): the probe register and the parity survive Yosys."""
    fpga = _fpga()
    v = write_verilog(verilog_text(ShiftHarness(_Twins(), probe=("x", "y")), "top"), tmp_path / "top.v")
    fpga.synthesize(tmp_path, v, kept=("top.dut.inner",))
    stat = json.loads((tmp_path / "synth_stat.json").read_text())
    flops = stat["modules"]["\\top"]["num_cells_by_type"]["TRELLIS_FF"]
    # 2 input flip-flops, the probe registers (one signal: merged into one), the parity
    assert flops == 2 + 1 + 1, stat["modules"]["\\top"]
    print(f"two identical probes, design flattened: {flops} flip-flops kept (probe and parity)")


def test_latency_and_overhead_from_parsed_designs():
    """exact_cycles is the ceiling of the delays' ratio; the overhead is relative to exact-only."""
    fpga = _fpga()

    def design(luts, delays):
        runs = {str(i): {"fmax_mhz": 1000 / t} for i, t in enumerate(delays, 1)}
        return {"design": {r: luts for r in ("LUT4", "TRELLIS_FF", "CCU2C", "MULT18X18D")},
                "pnr": {"critical_path_ns": fpga.spread(delays), "utilization": {"TRELLIS_COMB": luts},
                        "fmax_mhz": fpga.spread(1000 / t for t in delays), "runs": runs}}

    designs = {"exact_s0": design(100, [40.0, 41.0, 45.0]), "approx_path": design(10, [10.0, 11.0, 12.0]),
               "cfpu_s0": design(110, [42.0])}
    lat = fpga.latency(designs, "2000-01-01")
    assert lat["exact_cycles"] == 4 and lat["ratio_median"] == pytest.approx(41 / 11, abs=1e-3)
    assert lat["cycles_range"] == [4, 5] and "2000-01-01" in lat["source"]
    ov = fpga.overhead(designs)["stages=0"]
    assert ov["LUT4"] == {"exact": 100, "cfpu": 110, "overhead": 0.1}
    print(f"latency: ratio {lat['ratio_median']} -> {lat['exact_cycles']} cycles; overhead +10% LUT4")


@pytest.mark.parametrize("args, message", [
    (["--only", "nope"], "--only: no design nope"), (["--seeds", "0"], "--seeds must be >= 1")])
def test_option_errors(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        _fpga().main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err, err
    print(f"{' '.join(args)}: exit 2")
