"""cocotb 2.x testbench of the CFPU's Verilog (run on Verilator through ``cocotb_tools.runner``).

Tests
-----
``regression``
    Streams the directed pattern cross (once in exact mode, once cycling through every
    configuration: approximation off, tuning bits 0..22, both policies) and seeded weighted
    random vectors with random per-operation configurations, with random idle input cycles and
    random back-pressure; every result is checked against the golden model (computed in bulk).
    Environment: ``CANNA_RTL_VECTORS`` (total vectors, default 300,000), ``CANNA_SEED``,
    ``CANNA_P_IDLE``, ``CANNA_P_STALL``, ``CANNA_SUMMARY`` (JSON summary path).
``stream_file``
    The ``canna mul --backend verilator`` path: reads ``CANNA_STREAM_IN`` (npz with ``a``, ``b``,
    ``codes``), writes ``CANNA_STREAM_OUT`` (npz with ``bits``, ``flags``, ``hit``).
"""
from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, ReadOnly

from canna.sim import vectors
from canna.sim.cfpu_cosim import golden_for_codes, mismatch_report
from canna.sim.golden import MulResult
from canna.sim.testbench import CocotbClockReset
from canna.spec.config import MAX_TUNING_BITS, encode_configs
from canna.spec.formats import get_format
from canna.spec.layouts import pack_inputs, unpack_outputs

DEFAULT_VECTORS = 300_000
CHUNK = 50_000


class TB(CocotbClockReset):
    """Streams operations through the DUT with random idle cycles (``i.valid`` low) and
    back-pressure (``o.ready`` low); clock and reset: the base."""

    def __init__(self, dut, rng, p_idle: float, p_stall: float):
        super().__init__(dut)
        self.rng = rng
        self.p_idle = p_idle
        self.p_stall = p_stall
        self.cycles = 0

    def idle_inputs(self):
        dut = self.dut
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        dut.i__payload.value = 0

    async def stream(self, words: list[int]) -> list[int]:
        """Send ``words`` (input payloads) in order; return the output payloads in order."""
        dut = self.dut
        n = len(words)
        budget = 4 * n + 64
        idle = (self.rng.random(budget) < self.p_idle).tolist()
        stall = (self.rng.random(budget) < self.p_stall).tolist()
        i_valid, i_ready, i_payload = dut.i__valid, dut.i__ready, dut.i__payload
        o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
        falling = FallingEdge(dut.clk)
        settle = ReadOnly()
        outs: list[int] = []
        sent = 0
        cycle = 0
        while len(outs) < n:
            if cycle >= budget:
                raise AssertionError(f"DUT stalled: {len(outs)} of {n} results after {cycle} cycles")
            await falling
            offer = sent < n and not idle[cycle]
            i_valid.value = int(offer)
            if offer:
                i_payload.value = words[sent]
            o_ready.value = int(not stall[cycle])
            await settle
            if offer and int(i_ready.value):
                sent += 1
            if not stall[cycle] and int(o_valid.value):
                outs.append(o_payload.value.to_unsigned())
            cycle += 1
        self.cycles += cycle
        return outs


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _all_codes(fmt):
    """Approximation off, then every tuning bit count with both policies."""
    codes = [0]
    for t in range(fmt.max_tuning_bits + 1):
        for dual in (False, True):
            codes.append(int(encode_configs(True, t, dual, fmt)))
    return np.array(codes, dtype=np.uint64)


def regression_chunks(total: int, seed: int, fmt):
    """Yield (name, a, b, codes) chunks, ``total`` vectors in all: the pattern cross in exact
    mode, the pattern cross cycling through every configuration, then weighted random vectors
    (a ``total`` below the two crosses truncates them: for quick runs with waveforms)."""
    rng = np.random.default_rng(seed)
    a, b = vectors.pattern_cross()
    every = _all_codes(fmt)
    left = total
    for name, codes in (("pattern-cross exact", np.zeros(len(a), dtype=np.uint64)),
                        ("pattern-cross all configs", every[np.arange(len(a)) % len(every)])):
        n = min(len(a), left)
        if n:
            yield name, a[:n], b[:n], codes[:n]
        left -= n
    while left > 0:
        n = min(CHUNK, left)
        ra, rb = vectors.weighted_random(rng, n)
        enabled = rng.random(n) < 0.875
        codes = encode_configs(enabled, rng.integers(0, MAX_TUNING_BITS + 1, n),
                               rng.random(n) < 0.5, fmt)
        yield "weighted random", ra, rb, codes
        left -= n


@cocotb.test()
async def regression(dut):
    fmt = get_format(os.environ.get("CANNA_FORMAT", "binary32"))
    total = int(os.environ.get("CANNA_RTL_VECTORS", DEFAULT_VECTORS))
    seed = int(os.environ.get("CANNA_SEED", 1))
    tb = TB(dut, np.random.default_rng(seed + 1),
            _env_float("CANNA_P_IDLE", 0.15), _env_float("CANNA_P_STALL", 0.15))
    await tb.start()
    checked = 0
    hits = 0
    covered = set()
    failures = []
    t0 = time.time()
    for name, a, b, codes in regression_chunks(total, seed, fmt):
        expected = golden_for_codes(a, b, codes, fmt)
        outs = await tb.stream(pack_inputs(a, b, codes, fmt))
        actual = unpack_outputs(outs, fmt)
        report = mismatch_report(a, b, codes, expected, MulResult(*actual), seed=seed,
                                 source=name, fmt=fmt)
        checked += len(a)
        hits += int(expected.hit.sum())
        covered.update(int(c) for c in np.unique(codes))
        if report:
            failures.append(report)
            dut._log.error(report)
            break
    summary = {
        "test": "regression", "seed": seed, "vectors": checked, "hits": hits,
        "configs_covered": len(covered), "cycles": tb.cycles, "seconds": round(time.time() - t0, 2),
        "mismatch_reports": failures,
    }
    dut._log.info(f"checked {checked} vectors ({hits} hits, {len(covered)} configurations, "
                  f"{tb.cycles} cycles) against the golden model, seed {seed}: "
                  f"{'FAIL' if failures else 'all equal'}")
    if os.environ.get("CANNA_SUMMARY"):
        with open(os.environ["CANNA_SUMMARY"], "w") as fh:
            json.dump(summary, fh, indent=1)
    assert not failures, failures[0]


@cocotb.test()
async def stream_file(dut):
    src = os.environ.get("CANNA_STREAM_IN")
    if not src:
        return  # only used by canna mul --backend verilator
    fmt = get_format(os.environ.get("CANNA_FORMAT", "binary32"))
    seed = int(os.environ.get("CANNA_SEED", 1))
    data = np.load(src)
    tb = TB(dut, np.random.default_rng(seed), _env_float("CANNA_P_IDLE", 0.0),
            _env_float("CANNA_P_STALL", 0.0))
    await tb.start()
    outs = await tb.stream(pack_inputs(data["a"], data["b"], data["codes"], fmt))
    bits, flags, hit = unpack_outputs(outs, fmt)
    np.savez(os.environ["CANNA_STREAM_OUT"], bits=bits.astype(np.uint64), flags=flags, hit=hit)
