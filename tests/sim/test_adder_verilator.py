"""The lanes' accumulator RTL (hw/adder.py FAdd) Verilated and driven from C++
(sim/adder_cosim.py) against golden.add_bits, bits and flags: the directed pattern cross plus
weighted random sums (near-cancellations, alignments, the multiplier's hard cases); at least 1M
vectors in every run (CANNA_ADDER_VECTORS for more). A mismatch names the seed, the operands and
the expected and actual results."""
import os

import numpy as np
import pytest

from canna.sim.vectors import pattern_cross, weighted_random_add
from helpers import seed

SEED = seed(31)
VECTORS = int(os.environ.get("CANNA_ADDER_VECTORS", "1000000"))


def test_adder_rtl_vs_golden():
    from canna.sim.adder_cosim import AdderMismatch, check_adder, run_adder
    pa, pb = pattern_cross()
    n = check_adder(pa, pb, seed="pattern cross")
    rng = np.random.default_rng(SEED)
    chunk = 500_000
    done = 0
    while done < VECTORS:
        a, b = weighted_random_add(rng, min(chunk, VECTORS - done))
        n += check_adder(a, b, seed=SEED)
        done += a.size
    print(f"FAdd RTL (Verilator) vs golden.add_bits: {n} vectors, bits and flags equal "
          f"(pattern cross + {done} weighted random, seed {SEED})")
    assert n >= 1_000_000
    # the reproducer path: a corrupted expectation must be reported with seed and operands
    bits, _ = run_adder(pa[:4], pb[:4])
    assert bits.shape == (4,)
    with pytest.raises(AdderMismatch, match="seed"):
        import canna.sim.adder_cosim as ac
        real = ac.golden.add_bits

        class _Bad:
            @staticmethod
            def add_bits(x, y):
                r = real(x, y)
                return r._replace(bits=r.bits ^ np.uint32(1))
        ac.golden, saved = _Bad, ac.golden
        try:
            check_adder(pa[:4], pb[:4], seed=SEED)
        finally:
            ac.golden = saved
