"""The specification layer: the configuration word (encoded in one place, canna.spec.config),
the port layouts and their packing (canna.spec.layouts), the tuning-bit check and the tile plan
(canna.spec.array)."""
from __future__ import annotations

import numpy as np
import pytest

from canna.spec.array import ArrayGeometry, split_tiles, tile_count, tile_plan
from canna.spec.config import (CFPUConfig, check_tuning_bits, config_layout, decode_config,
                               encode_config, encode_configs)
from canna.spec.formats import BFLOAT16, BINARY32
from canna.spec.layouts import (config_write_layout, input_layout, lanes_layout, op_layout,
                                output_layout, pack, pack_inputs, unpack, unpack_lanes,
                                unpack_outputs)


def test_config_layout_widths():
    assert config_layout(BINARY32).size == 7          # enabled 1, tuning bits 5, policy 1
    assert input_layout(BINARY32).size == 71
    assert output_layout(BINARY32).size == 38
    assert op_layout(BINARY32).size == 66
    assert config_write_layout(BINARY32, 16).size == 7 + 4 + 1


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
    with pytest.raises(ValueError, match=r"^tuning_bits must be in 0\.\.6 for bfloat16, got 7$"):
        encode_config(CFPUConfig.approx(7), BFLOAT16)


def test_check_tuning_bits():
    assert check_tuning_bits(22) == 22 and check_tuning_bits(np.int64(3)) == 3
    with pytest.raises(ValueError, match=r"^--apx-min must be in 0\.\.22, got 23$"):
        check_tuning_bits(23, "--apx-min")
    with pytest.raises(TypeError, match=r"^tuning_bits must be an integer, got a bool$"):
        check_tuning_bits(True)
    with pytest.raises(TypeError, match=r"^t must be an integer, got 1\.5$"):
        check_tuning_bits(1.5, "t")


def test_pack_unpack():
    words = pack_inputs(np.array([1], dtype=np.uint32), np.array([2], dtype=np.uint32), 3)
    assert words == [1 | (2 << 32) | (3 << 64)]
    bits, flags, hit = unpack_outputs([0x12345678 | (0x15 << 32) | (1 << 37)])
    assert bits[0] == 0x12345678 and flags[0] == 0x15 and hit[0]
    # the lane operation word, from its layout: a, b, last, nop
    ops = pack(op_layout(), a=[7, 8], b=9, last=[0, 1], nop=[1, 0])
    assert ops == [7 | (9 << 32) | (1 << 65), 8 | (9 << 32) | (1 << 64)]
    back = unpack(op_layout(), ops)
    assert back["a"].tolist() == [7, 8] and back["nop"].tolist() == [1, 0]
    # a configuration write: 7-bit config, 4-bit lane, broadcast
    assert pack(config_write_layout(BINARY32, 16), config=5, lane=3, broadcast=1) == [5 | (3 << 7) | (1 << 11)]


def test_pack_rejects():
    with pytest.raises(ValueError, match=r"^a value of field 'last' does not fit its 1 bits$"):
        pack(op_layout(), a=1, last=2)
    with pytest.raises(KeyError, match="no field 'x'"):
        pack(op_layout(), x=1)


@pytest.mark.parametrize("m,n,lanes", [(1, 1, 16), (3, 5, 16), (4, 4, 16), (7, 9, 4), (2, 3, 1)])
def test_tile_plan(m, n, lanes):
    rows, cols, valid = tile_plan(m, n, lanes)
    tiles = tile_count(m, n, lanes)
    assert rows.shape == cols.shape == valid.shape == (tiles, lanes)
    assert tiles * lanes >= m * n > (tiles - 1) * lanes
    flat = (rows * n + cols)[valid]
    assert flat.tolist() == list(range(m * n))      # every output once, row-major
    assert not valid.reshape(-1)[m * n:].any()


def test_split_tiles():
    assert split_tiles(10, 2) == [0, 5, 10]
    assert split_tiles(1, 4) == [0, 1]
    assert split_tiles(7, 3) == [0, 2, 4, 7]
    with pytest.raises(ValueError, match="lanes must be a positive integer"):
        ArrayGeometry(lanes=0)


def test_unpack_lanes_fast_path_equals_the_layout():
    """unpack_lanes' whole-byte path (per-cycle probes) gives what the layout's field offsets give."""
    rng = np.random.default_rng(5)
    checked = 0
    for width, lanes in ((32, 16), (32, 1), (8, 3), (64, 2), (5, 7)):
        words = [int(rng.integers(0, 2 ** 62)) % (1 << (width * lanes)) for _ in range(20)]
        fields = unpack(lanes_layout(width, lanes), words)
        want = np.stack([fields[l] for l in range(lanes)], axis=-1)
        assert np.array_equal(unpack_lanes(words, width, lanes), want), (width, lanes)
        checked += len(words)
    print(f"unpack_lanes: {checked} words in 5 widths/lane counts equal the layout's fields")
