"""Unit tests of the approximate decision and the result select (canna.hw.approx)."""
from __future__ import annotations

import numpy as np
import pytest

from canna.hw.approx import ApproxDecide, ResultSelect
from canna.spec.config import encode_config
from canna.sim import golden, vectors
from canna.spec.config import CFPUConfig
from canna.spec.formats import BFLOAT16, BINARY16, BINARY32


def _operands(rng, n, fmt):
    """Normal operands whose fractions sit on the hit rule's boundaries, plus specials."""
    F, E = fmt.frac_bits, fmt.exp_bits
    if fmt is BINARY32:
        frac = vectors.hit_pattern_fractions(rng, n).astype(np.int64)
    else:
        frac = rng.integers(0, 1 << F, n)
        k = rng.integers(0, F, n)
        ones = (np.int64(1) << (F - k)) - 1
        frac = np.where(rng.random(n) < 0.5, frac & ~ones, frac | ones) & fmt.frac_mask
    exp = np.where(rng.random(n) < 0.85, rng.integers(fmt.bias - 40 if E > 5 else 1, fmt.bias + 40
                                                       if E > 5 else fmt.exp_max, n),
                   rng.integers(0, fmt.exp_max + 1, n))
    exp = np.clip(exp, 0, fmt.exp_max)
    sign = rng.integers(0, 2, n)
    return ((sign << (E + F)) | (exp << F) | frac).astype(fmt.storage_dtype)


@pytest.mark.parametrize("fmt", [BINARY32, BFLOAT16, BINARY16], ids=lambda f: f.name)
def test_decide_matches_golden(comb_eval, fmt):
    """hit and the approximate result for every tuning bit count, both policies, and off."""
    rng = np.random.default_rng(21)
    configs = [CFPUConfig.exact()] + [CFPUConfig.approx(t, p) for t in range(fmt.max_tuning_bits + 1)
                                      for p in ("b", "dual")]
    dut = ApproxDecide(fmt=fmt)
    total = 0
    for config in configs:
        a = _operands(rng, 80, fmt)
        b = _operands(rng, 80, fmt)
        # Near the exponent range edges too.
        b[:10] = (b[:10] & ~np.array(fmt.exp_max << fmt.frac_bits, dtype=b.dtype)) | (
            np.array([1, 2, fmt.exp_max - 1, fmt.exp_max - 2, 3] * 2, dtype=b.dtype) << fmt.frac_bits)
        code = encode_config(config, fmt)
        F, emax = fmt.frac_bits, fmt.exp_max
        exps = [max((x >> F) & emax, 1) + max((y >> F) & emax, 1) - fmt.bias
                for x, y in zip(a.tolist(), b.tolist())]
        got = comb_eval(dut, [{"a": x, "b": y, "config": code, "exp": e}
                              for x, y, e in zip(a.tolist(), b.tolist(), exps)], ["hit", "approx"])
        want = golden.mul_bits(a, b, config, fmt=fmt)
        mag = (1 << (fmt.width - 1)) - 1
        for i, g in enumerate(got):
            assert g["hit"] == int(want.hit[i]), (
                f"{config.describe()} a={int(a[i]):X} b={int(b[i]):X}: hit {g['hit']}")
            if g["hit"]:
                assert g["approx"] == int(want.bits[i]) & mag, (
                    f"{config.describe()} a={int(a[i]):X} b={int(b[i]):X}: approx {g['approx']:X}")
        total += len(got)
    print(f"ApproxDecide {fmt.name}: checked {total} vectors over {len(configs)} configurations")


def test_result_select(comb_eval):
    vecs = [dict(exact_bits=0x3F800000, exact_flags=0x11, hit=h, approx=0x40400000, sign=s)
            for h in (0, 1) for s in (0, 1)]
    got = comb_eval(ResultSelect(), vecs, ["bits", "flags"])
    for v, g in zip(vecs, got):
        if v["hit"]:
            assert g == {"bits": 0x40400000 | (v["sign"] << 31), "flags": 0}
        else:
            assert g == {"bits": 0x3F800000, "flags": 0x11}
    print(f"ResultSelect: checked {len(vecs)} vectors")
