"""The formal proofs (canna.formal): the fast set passes, deliberately broken decision rules are
caught with counterexamples that really are mismatches, and the specification the proofs use
agrees with the golden model (so a proof against it is a proof against the documented rule)."""
import subprocess
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator

from canna.formal import cex, mutants, proofs
from canna.formal.spec import CONFIGS, HitRule
from canna.sim import golden
from canna.spec.config import CFPUConfig, Policy, decode_config, encode_config
from helpers import seed

FAST = proofs.all_proofs()
ALL_CODES = [encode_config(CFPUConfig.exact())] + [
    encode_config(CFPUConfig.approx(t, p)) for t in range(23) for p in (Policy.B, Policy.DUAL)]


def test_configuration_count():
    assert len(set(ALL_CODES)) == CONFIGS == 47


def test_spec_agrees_with_golden():
    """The formal model of the hit rule against canna.sim.golden on random operands, biased to
    qualify, under all 47 configurations."""
    rng = np.random.default_rng(seed(16))
    n = 2000
    a = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    b[::2] &= np.uint32(~0x3FF000 & 0xFFFFFFFF)       # m1 = 0 and many zero checked bits
    a[1::3] |= np.uint32(0x7FF000)                      # m1 = 1 and many one checked bits
    codes = rng.choice(ALL_CODES, n)
    dut = HitRule()
    got = []

    async def testbench(ctx):
        for x, y, c in zip(a, b, codes):
            ctx.set(dut.a, int(x))
            ctx.set(dut.b, int(y))
            ctx.set(dut.config.as_value(), int(c))
            got.append((ctx.get(dut.hit), ctx.get(dut.bits)))

    sim = Simulator(dut)
    sim.add_testbench(testbench)
    sim.run()
    hits = bad = 0
    for (hit, bits), x, y, c in zip(got, a, b, codes):
        ref = golden.mul_bits(np.array([x]), np.array([y]), decode_config(int(c)))
        hits += hit
        bad += bool(hit) != bool(ref.hit[0]) or (hit and bits != int(ref.bits[0]))
    print(f"spec vs golden: {n} operations, {hits} hits, {bad} mismatches")
    assert bad == 0
    assert hits > n // 10


@pytest.mark.parametrize("proof", FAST, ids=[p.name for p in FAST])
def test_fast_proof_passes(proof, tmp_path):
    result = proofs.run_proof(proof, tmp_path)
    print(f"{proof.name}: {'PASS' if result.passed else 'FAIL'} in {result.seconds:.1f} s")
    assert result.passed, result.counterexample


@pytest.mark.parametrize("mutant", sorted(mutants.MUTANTS))
def test_mutant_caught(mutant, tmp_path):
    """A broken decision rule fails the hit proof; its counterexample, replayed through the
    (mutated) RTL in simulation and through the golden model, is a real mismatch, and its
    vector line and waveform are written."""
    hit_proof = next(p for p in FAST if p.name.startswith("hit-rule"))
    result = proofs.run_proof(hit_proof, tmp_path, mutant=mutant)
    assert not result.passed
    c = result.counterexample
    print(f"{mutant}: caught in {result.seconds:.1f} s; a={c['a']:08X} b={c['b']:08X} "
          f"{c['config_text']} RTL {c['rtl']} golden {c['golden']}")
    assert c["mismatch"]
    rtl, ref = cex.replay(c["a"], c["b"], c["config"], hit_proof.stages, mutant)
    assert (rtl, ref) == (c["rtl"], c["golden"])
    assert rtl != ref
    # the real decision rule agrees with the golden model on the same operation
    assert cex.replay(c["a"], c["b"], c["config"], hit_proof.stages, None)[0] == ref
    assert c["vcd"].stat().st_size > 0
    a, b, r, f = c["vec"].read_text().split()
    assert (int(a, 16), int(b, 16), int(r, 16), int(f, 16)) == (c["a"], c["b"], *rtl[:2])


def test_mutant_fails_stream_proof(tmp_path):
    """The CFPU stream proof is not vacuous: against a mutated pipeline its reference (the real
    decision stage) disagrees."""
    stream = next(p for p in FAST if p.name.startswith("cfpu-stream"))
    assert not proofs.run_proof(stream, tmp_path, mutant="dual-second-check-dropped").passed


def test_mutant_fails_counter_proof(tmp_path):
    """The lane counter proof is not vacuous: a lane whose rule ignores a tuning bit takes the
    wrong number of cycles for some operation."""
    counters = next(p for p in FAST if p.name.startswith("lane-counters"))
    assert not proofs.run_proof(counters, tmp_path, mutant="last-tuning-bit-ignored").passed


def test_vcd_reader(tmp_path):
    path = tmp_path / "t.vcd"
    path.write_text("$scope module top $end\n$var wire 32 ! cex_a $end\n$var wire 1 \" cex_b $end\n"
                    "$scope module dut $end\n$var wire 32 # cex_a $end\n$upscope $end\n$upscope $end\n"
                    "#0\nb101 !\n0\"\nb111 #\n#5\nb110 !\n1\"\n")
    assert cex.read_vcd_final(path, ("cex_a", "cex_b")) == {"cex_a": 6, "cex_b": 1}
    with pytest.raises(ValueError, match="no values for cex_cfg"):
        cex.read_vcd_final(path, ("cex_a", "cex_cfg"))


def test_cli_bad_option():
    r = subprocess.run([sys.executable, "-m", "canna.formal", "--only", "no-such-proof"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["python -m canna.formal: error: --only no-such-proof: "
                                             "no proof has that in its name"]


def test_frozen_clock_is_refused(tmp_path, monkeypatch):
    """A harness whose clock is not the design's input (the bug that once made every proof pass
    vacuously: the registers stay, frozen) is refused by the guard, not proved."""
    from canna.formal import harness
    monkeypatch.setattr(harness._Harness, "ports", property(lambda self: []))
    hit_proof = next(p for p in FAST if p.name.startswith("hit-rule"))
    with pytest.raises(RuntimeError, match="no verdict"):
        proofs.run_proof(hit_proof, tmp_path, mutant="last-tuning-bit-ignored")
    print("hit proof with the clock off the ports: refused (no verdict), not passed")
