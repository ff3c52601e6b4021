"""The configuration encoding (one place: canna.hw.layouts) and payload packing."""
from __future__ import annotations

import numpy as np
import pytest

from canna.hw.layouts import (config_layout, encode_config, encode_configs, input_layout,
                              output_layout, pack_inputs, unpack_outputs)
from canna.sim.config import CFPUConfig
from canna.sim.cosim import decode_config
from canna.sim.formats import BINARY32


def test_config_layout_widths():
    assert config_layout(BINARY32).size == 7          # enabled 1, tuning bits 5, policy 1
    assert input_layout(BINARY32).size == 71
    assert output_layout(BINARY32).size == 38


def test_encode_roundtrip():
    configs = [CFPUConfig.exact()] + [CFPUConfig.approx(t, p) for t in range(23) for p in ("b", "dual")]
    codes = [encode_config(c) for c in configs]
    assert len(set(codes)) == len(configs)
    for c, code in zip(configs, codes):
        assert decode_config(code) == c
        assert int(encode_configs(c.enabled, c.tuning_bits, c.policy.value == "dual")) == code
    assert encode_config(CFPUConfig.exact()) == 0
    assert encode_config(CFPUConfig.approx(22, "dual")) == 1 | (22 << 1) | (1 << 6)
    print(f"checked {len(configs)} configurations")


def test_encode_rejects():
    with pytest.raises(TypeError):
        encode_config("exact")


def test_pack_unpack():
    words = pack_inputs(np.array([1], dtype=np.uint32), np.array([2], dtype=np.uint32), 3)
    assert words == [1 | (2 << 32) | (3 << 64)]
    bits, flags, hit = unpack_outputs([0x12345678 | (0x15 << 32) | (1 << 37)])
    assert bits[0] == 0x12345678 and flags[0] == 0x15 and hit[0]
