"""Unit tests of the pipelined CFPU (canna.hw.cfpu): bit-exact streams under idle cycles and
back-pressure for every pipeline depth, latency, stream rules, operand isolation, and the
``canna mul --backend amaranth`` path."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from amaranth.sim import Simulator

from canna.hw import CFPU
from canna.spec.config import encode_config, encode_configs
from canna.spec.layouts import pack_inputs
from canna.sim import cfpu_cosim, golden, vectors
from canna.spec.config import CFPUConfig
from canna.spec.formats import BFLOAT16, BINARY16, BINARY32


def _random_codes(rng, n, fmt=BINARY32):
    return encode_configs(rng.random(n) < 0.8, rng.integers(0, fmt.max_tuning_bits + 1, n),
                          rng.random(n) < 0.5, fmt)


def _check(a, b, codes, result, seed, fmt=BINARY32, source=""):
    want = cfpu_cosim.golden_for_codes(a, b, codes, fmt)
    report = cfpu_cosim.mismatch_report(a, b, codes, want, result, seed=seed, source=source, fmt=fmt)
    print(f"{source}: checked {len(a)} vectors ({int(want.hit.sum())} hits)")
    assert not report, report


@pytest.mark.parametrize("stages", [0, 1, 2, 3, 4])
def test_stream_backpressure(stages):
    seed = 100 + stages
    rng = np.random.default_rng(seed)
    a, b = vectors.weighted_random(rng, 1500)
    codes = _random_codes(rng, len(a))
    result, cycles = cfpu_cosim.simulate_amaranth(a, b, codes, stages=stages, rng=rng,
                                             p_idle=0.3, p_stall=0.3)
    _check(a, b, codes, result, seed, source=f"stages={stages}, idle/stall 0.3, {cycles} cycles")


def test_exact_only_variant():
    """approx=False: the exact IEEE multiplier from the same stages ignores the configuration."""
    rng = np.random.default_rng(5)
    a, b = vectors.weighted_random(rng, 2000)
    codes = _random_codes(rng, len(a))
    result, _ = cfpu_cosim.simulate_amaranth(a, b, codes, stages=3, approx=False, rng=rng,
                                        p_idle=0.2, p_stall=0.2)
    _check(a, b, np.zeros(len(a), dtype=np.uint64), result, 5, source="exact-only")


@pytest.mark.parametrize("fmt", [BFLOAT16, BINARY16], ids=lambda f: f.name)
def test_other_formats(fmt):
    rng = np.random.default_rng(6)
    n = 1500
    a = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    b = rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    b[::2] &= ~np.uint16(((1 << (fmt.frac_bits - 1)) - 1))   # many qualifying fractions
    codes = _random_codes(rng, n, fmt)
    result, _ = cfpu_cosim.simulate_amaranth(a, b, codes, stages=2, fmt=fmt, rng=rng, p_stall=0.2)
    _check(a, b, codes, result, 6, fmt=fmt, source=fmt.name)


def test_pattern_cross_subset():
    a, b = vectors.pattern_cross()
    sel = np.arange(len(a)) % 11 == 0
    a, b = a[sel], b[sel]
    every = np.array([0] + [encode_config(CFPUConfig.approx(t, p)) for t in range(23)
                            for p in ("b", "dual")], dtype=np.uint64)
    codes = every[np.arange(len(a)) % len(every)]
    result, _ = cfpu_cosim.simulate_amaranth(a, b, codes, stages=3)
    _check(a, b, codes, result, 0, source="pattern cross / 11, all 47 configurations")


def _run(dut, testbench):
    sim = Simulator(dut)
    if dut.stages:
        sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("stages", [1, 2, 3, 4])
def test_latency_and_throughput(stages):
    dut = CFPU(stages=stages)
    assert dut.latency == stages
    n = 20
    words = pack_inputs(np.full(n, 0x3F800000, dtype=np.uint32),
                        np.arange(0x40000000, 0x40000000 + n, dtype=np.uint32), 0)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(n + stages + 3):
            ctx.set(dut.i.valid, cycle < n)
            if cycle < n:
                ctx.set(dut.i.payload.as_value(), words[cycle])
                assert ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                seen.append((cycle, ctx.get(dut.o.payload.bits)))
            await ctx.tick()

    _run(dut, testbench)
    assert [c for c, _ in seen] == list(range(stages, stages + n)), "one result per cycle after latency"
    assert [v for _, v in seen] == list(range(0x40000000, 0x40000000 + n))
    print(f"stages={stages}: latency {stages}, {n} results in {n} consecutive cycles")


def test_stream_rules_under_backpressure():
    """While o.valid and not o.ready, the output holds; i.ready is low when the pipe is full."""
    dut = CFPU(stages=3)
    rng = np.random.default_rng(9)
    a, b = vectors.weighted_random(rng, 300)
    words = pack_inputs(a, b, 0)
    checked = {"cycles": 0}

    async def testbench(ctx):
        prev = None
        sent = 0
        for cycle in range(1200):
            ready = bool(rng.random() < 0.4)
            offer = sent < len(words) and rng.random() < 0.8
            ctx.set(dut.o.ready, ready)
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload.as_value(), words[sent])
            valid = ctx.get(dut.o.valid)
            payload = ctx.get(dut.o.payload.as_value())
            if prev is not None:
                assert valid and payload == prev, f"cycle {cycle}: output changed while stalled"
            prev = payload if (valid and not ready) else None
            if valid and not ready:
                assert not ctx.get(dut.i.ready), "a full, stalled pipeline must not accept"
            if offer and ctx.get(dut.i.ready):
                sent += 1
            await ctx.tick()
            checked["cycles"] += 1

    _run(dut, testbench)
    print(f"stream rules: checked {checked['cycles']} cycles")


def test_operand_isolation_on_hits():
    """After an exact operation, hits and special operands leave the multiplier inputs still."""
    dut = CFPU(stages=3)
    t2 = encode_config(CFPUConfig.approx(2))
    a = np.array([0x3FC90FDB, 0x40490FDB, 0x3E4CCCCD, 0x00000000, 0x7FC00000, 0x41200000],
                 dtype=np.uint32)
    b = np.array([0x3FAAAAAB, 0x3F800000, 0x3F7FFFFF, 0x3FAAAAAB, 0x3FAAAAAB, 0x3F800001],
                 dtype=np.uint32)
    codes = np.array([0, t2, t2, t2, t2, t2], dtype=np.uint64)
    want = cfpu_cosim.golden_for_codes(a, b, codes)
    assert want.hit.tolist() == [False, True, True, False, False, True]
    words = pack_inputs(a, b, codes)
    samples = []

    async def testbench(ctx):
        sigmul = dut.parts["sigmul"]
        ctx.set(dut.o.ready, 1)
        for cycle in range(len(words) + 4):
            ctx.set(dut.i.valid, cycle < len(words))
            if cycle < len(words):
                ctx.set(dut.i.payload.as_value(), words[cycle])
            await ctx.tick()
            samples.append((ctx.get(sigmul.sig_a), ctx.get(sigmul.sig_b)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    first = samples[0]
    assert first == (0xC90FDB, 0xAAAAAB)
    assert all(s == first for s in samples), f"multiplier inputs moved on hits/specials: {samples}"
    print(f"operand isolation: {len(samples)} cycles, multiplier inputs held")


def test_mismatch_report_names_everything():
    a = np.array([0x3F800000], dtype=np.uint32)
    b = np.array([0x40000000], dtype=np.uint32)
    want = golden.MulResult(np.array([0x40000000], np.uint32), np.array([0], np.uint8), np.array([False]))
    got = golden.MulResult(np.array([0x40000001], np.uint32), np.array([1], np.uint8), np.array([False]))
    code = encode_config(CFPUConfig.approx(4, "dual"))
    text = cfpu_cosim.mismatch_report(a, b, [code], want, got, seed=1234)
    for part in ("3F800000", "40000000", "40000001", "t=4 policy=dual", "seed 1234", "flags 01"):
        assert part in text
    assert cfpu_cosim.mismatch_report(a, b, [code], want, want) == ""


def test_mul_amaranth_vcd(tmp_path):
    a = np.array([0x3F800000, 0x00000001], dtype=np.uint32)
    b = np.array([0x40400000, 0x3F000000], dtype=np.uint32)
    vcd = tmp_path / "run.vcd"
    r = cfpu_cosim.mul_amaranth(a, b, CFPUConfig.exact(), vcd=str(vcd))
    assert r.bits.tolist() == [0x40400000, 0x00000000] and r.flags.tolist() == [0, 3]
    assert vcd.stat().st_size > 1000


def test_cli_amaranth_backend(tmp_path):
    """``canna mul --backend amaranth`` prints what the golden backend prints, same exit codes."""
    rng = np.random.default_rng(3)
    a, b = vectors.weighted_random(rng, 300)
    config = CFPUConfig.approx(1, "dual")
    r = golden.mul_bits(a, b, config)
    good = tmp_path / "good.txt"
    bad = tmp_path / "bad.txt"
    good.write_text("".join(f"{x:08X} {y:08X} {z:08X} {f:02X}\n"
                            for x, y, z, f in zip(a, b, r.bits, r.flags)))
    lines = good.read_text().splitlines()
    lines[5] = lines[5][:18] + f"{(int(r.bits[5]) ^ 1):08X}" + lines[5][26:]
    bad.write_text("\n".join(lines) + "\n")
    outs = {}
    for backend in ("golden", "amaranth"):
        for name, path in (("good", good), ("bad", bad)):
            p = subprocess.run([sys.executable, "-m", "canna.cli", "mul", "-t", "1", "--policy",
                                "dual", "--backend", backend, str(path)], capture_output=True, text=True)
            outs[backend, name] = (p.returncode, p.stdout, p.stderr.replace(backend, "BACKEND"))
    assert outs["golden", "good"] == outs["amaranth", "good"]
    assert outs["golden", "bad"] == outs["amaranth", "bad"]
    assert outs["amaranth", "good"][0] == 0 and outs["amaranth", "bad"][0] == 1
    print(f"canna mul --backend amaranth: checked {len(a)} vectors against the golden backend")
