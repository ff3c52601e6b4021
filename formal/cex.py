"""A failed proof's counterexample: the operation it is about, read from SymbiYosys's trace
(``cex_a``, ``cex_b``, ``cex_cfg`` at the failing step), replayed through the Amaranth
simulation of the same (possibly mutated) CFPU and through the golden model, and written as a
``canna mul`` vector line beside the waveform under ``build/formal/``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from canna.spec.config import decode_config

from . import mutants

__all__ = ["read_vcd_final", "read_counterexample", "replay", "mul_command"]

NAMES = ("cex_a", "cex_b", "cex_cfg")


def read_vcd_final(path: Path, names) -> dict[str, int]:
    """The last value of each top-level VCD variable in ``names`` (their values at the end of
    the trace: the failing step)."""
    ids, values = {}, {}
    depth = 0
    with open(path) as f:
        for line in f:
            tok = line.split()
            if not tok:
                continue
            if tok[0] == "$scope":
                depth += 1
            elif tok[0] == "$upscope":
                depth -= 1
            elif tok[0] == "$var" and depth == 1 and tok[4] in names:
                ids[tok[3]] = tok[4]
            elif tok[0][0] == "b" and len(tok) == 2 and tok[1] in ids:
                values[ids[tok[1]]] = int(tok[0][1:].replace("x", "0").replace("z", "0"), 2)
            elif tok[0][0] in "01xz" and len(tok) == 1 and tok[0][1:] in ids:
                values[ids[tok[0][1:]]] = int(tok[0][0] == "1")
    missing = [n for n in names if n not in values]
    if missing:
        raise ValueError(f"{path}: no values for {', '.join(missing)}")
    return values


def replay(a: int, b: int, code: int, stages: int, mutant: str | None):
    """(RTL (bits, flags, hit), golden (bits, flags, hit)) of one operation: the RTL is the
    Amaranth simulation of the CFPU with ``mutant``'s decision rule."""
    from canna.sim import golden
    from canna.sim.cfpu_cosim import simulate_amaranth
    av, bv = np.array([a], np.uint32), np.array([b], np.uint32)
    with mutants.applied(mutant):
        rtl, _ = simulate_amaranth(av, bv, np.array([code], np.uint64), stages=stages)
    ref = golden.mul_bits(av, bv, decode_config(code))
    as_tuple = lambda r: (int(r.bits[0]), int(r.flags[0]), bool(r.hit[0]))  # noqa: E731
    return as_tuple(rtl), as_tuple(ref)


def mul_command(code: int) -> str:
    """The ``canna mul`` options of configuration word ``code``."""
    cfg = decode_config(code)
    if not cfg.enabled:
        return "canna mul --exact"
    return f"canna mul --tuning-bits {cfg.tuning_bits} --policy {cfg.policy.value}"


def read_counterexample(vcd: Path, proof, mutant, out_dir: Path, tag: str) -> dict:
    """The counterexample of a failed ``proof``: operands, configuration, both replays, and the
    saved waveform and vector file (``out_dir/<tag>.vcd``, ``out_dir/<tag>.vec``)."""
    v = read_vcd_final(vcd, NAMES)
    a, b, code = v["cex_a"], v["cex_b"], v["cex_cfg"]
    rtl, ref = replay(a, b, code, proof.stages, mutant)
    out_dir = Path(out_dir)
    wave = out_dir / f"{tag}.vcd"
    shutil.copyfile(vcd, wave)
    vec = out_dir / f"{tag}.vec"
    line = f"{a:08X} {b:08X} {rtl[0]:08X} {rtl[1]:02X}"
    vec.write_text(line + "\n")
    return {"a": a, "b": b, "config": code, "config_text": decode_config(code).describe(),
            "rtl": rtl, "golden": ref, "mismatch": rtl != ref, "line": line,
            "command": f"{mul_command(code)} {vec}", "vcd": wave, "vec": vec}
