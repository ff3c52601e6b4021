"""``make verilog``: write the CFPU's Verilog under build/ and lint it with Verilator.

Writes ``build/verilog/cfpu.v`` (the CFPU, binary32, default pipeline depth) and
``build/verilog/fpmul_exact.v`` (the exact-only multiplier from the same stages), then runs
``verilator --lint-only -Wall`` on each with the waivers in ``build/verilog/cfpu_lint.vlt``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from canna.sim.paths import build_root
from canna.sim.rtl_build import cfpu_verilog, verilator_env
from canna.spec.array import DEFAULT_STAGES
from canna.spec.formats import FORMATS

# Waivers, each justified. The Verilog is machine-written by Amaranth (through Yosys
# `write_verilog`); every other -Wall rule (LATCH, MULTIDRIVEN, UNDRIVEN, COMBDLY, BLKSEQ,
# CASEINCOMPLETE, UNOPTFLAT, ...) stays on and must be clean.
# * WIDTHEXPAND / WIDTHTRUNC: Yosys writes operands at their natural width and relies on
#   Verilog's context-width rules (e.g. `exp - 7'h7f` in a 10-bit context, `!vec` for a reduce-NOR);
#   the semantics are the Verilog standard's, and this exact text is what the cocotb/Verilator
#   regression checks bit for bit against the golden model.
# * UNUSEDSIGNAL: Amaranth keeps every named intermediate and struct field (e.g. `flags.infinite`,
#   port aliases such as `a`, bits dropped by a deliberate truncation like `pn = p << lz`); they
#   drive no logic and synthesis removes them.
# * PROCASSINIT: Amaranth declares registers and combinational defaults with their reset/initial
#   value (`reg o__valid = 1'h0;`) and then assigns them in always blocks; that is intended.
# * DECLFILENAME: one file holds the top and its submodules (`cfpu.unpack`, ...), named by the
#   Amaranth hierarchy, so module names cannot match the file name.
LINT_WAIVERS = """`verilator_config
lint_off -rule WIDTHEXPAND
lint_off -rule WIDTHTRUNC
lint_off -rule UNUSEDSIGNAL
lint_off -rule PROCASSINIT
lint_off -rule DECLFILENAME
"""


def lint(path: Path, waivers: Path, top: str) -> int:
    env = verilator_env()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top, str(waivers), str(path)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    print(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}".rstrip())
    return p.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", type=int, default=DEFAULT_STAGES)
    ap.add_argument("--format", default="binary32", choices=sorted(FORMATS))
    ap.add_argument("--out", default=str(build_root() / "verilog"))
    ap.add_argument("--no-lint", action="store_true")
    args = ap.parse_args(argv)
    fmt = FORMATS[args.format]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    waivers = out / "cfpu_lint.vlt"
    waivers.write_text(LINT_WAIVERS)
    rc = 0
    for name, approx in (("cfpu", True), ("fpmul_exact", False)):
        t0 = time.time()
        path = cfpu_verilog(out / f"{name}.v", stages=args.stages, approx=approx, fmt=fmt,
                            name=name)
        print(f"wrote {path} ({fmt.name}, stages={args.stages}, approx={approx}) "
              f"in {time.time() - t0:.1f} s")
        if not args.no_lint:
            r = lint(path, waivers, name)
            print(f"verilator --lint-only -Wall {path.name}: {'clean' if r == 0 else 'FAILED'}")
            rc |= r
    return rc


if __name__ == "__main__":
    sys.exit(main())
