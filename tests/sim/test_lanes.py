"""Golden lane-array model: outputs equal the sequential reference; cycles follow the two
disciplines, checked against a cycle-by-cycle restatement."""
import numpy as np
import pytest

from canna.sim import golden
from canna.spec.config import CFPUConfig, EXACT
from canna.sim.lanes import run_lane_array
from canna.sim.toggles import register_toggles
from canna.spec.array import ArrayGeometry, tile_plan
from canna.sim.matmul import matmul_reference
from helpers import nn_like


def simulate_cycles(a, b, config, lanes, exact_cycles):
    """Cycle-by-cycle restatement: lanes issue one product when free; lockstep lanes wait for
    each other every step, decoupled lanes only at the end of a tile. ``config``: one for all
    lanes or a list, one per lane."""
    m, k_dim = a.shape
    n = b.shape[1]
    outputs = [(i, j) for i in range(m) for j in range(n)]
    lock = dec = 0
    for t0 in range(0, len(outputs), lanes):
        tile = outputs[t0:t0 + lanes]
        lane_time = [0] * len(tile)
        for k in range(k_dim):
            step = []
            for lane, (i, j) in enumerate(tile):
                x, w = a[i:i + 1, k], b[k:k + 1, j]
                cfg = config[lane] if isinstance(config, list) else config
                hit = bool(golden.mul(x, w, cfg).hit[0])
                special = any(v == 0 or not np.isfinite(v) for v in (x[0], w[0]))
                lat = 1 if hit or special else exact_cycles
                step.append(lat)
                lane_time[lane] += lat
            lock += max(step)
        dec += max(lane_time)
    return lock, dec


@pytest.mark.parametrize("config", [EXACT, CFPUConfig.approx(0), CFPUConfig.approx(1, "dual"),
                                    CFPUConfig.approx(3)], ids=lambda c: c.describe())
@pytest.mark.parametrize("lanes, exact_cycles", [(16, 4), (5, 3), (1, 2)])
def test_outputs_and_cycles(config, lanes, exact_cycles):
    rng = np.random.default_rng(lanes * 7 + exact_cycles)
    a, b = nn_like(rng, 3, 11, 7)
    a[0, 3] = np.inf
    r = run_lane_array(a, b, config, ArrayGeometry(lanes, exact_cycles))
    ref = matmul_reference(a, b, config)
    assert np.array_equal(r.value.view(np.uint32), ref.value.view(np.uint32))
    assert r.hits == ref.hits == int(r.lane_hits.sum())
    assert r.products == int(r.lane_products.sum()) == ref.products
    lock, dec = simulate_cycles(a, b, config, lanes, exact_cycles)
    assert (r.cycles_lockstep, r.cycles_decoupled) == (lock, dec)
    assert r.cycles_decoupled <= r.cycles_lockstep <= r.cycles_baseline
    if not config.enabled:
        assert r.cycles_lockstep == r.cycles_baseline and r.hits == 0
    print(f"{config.describe()} lanes={lanes} k={exact_cycles}: {r.products} products, "
          f"{r.hits} hits, cycles lockstep {lock}, decoupled {dec}, baseline {r.cycles_baseline}")


def test_per_lane_configurations():
    """Lane l runs config[l] (the array's per-lane configuration writes): outputs, per-lane hits
    and both disciplines' cycles against the per-output reference and the restatement."""
    rng = np.random.default_rng(11)
    a, b = nn_like(rng, 3, 9, 7)
    configs = [EXACT, CFPUConfig.approx(0), CFPUConfig.approx(4, "dual"), CFPUConfig.approx(1)]
    geometry = ArrayGeometry(4, 3)
    r = run_lane_array(a, b, configs, geometry)
    n = b.shape[1]
    hits = np.zeros(4, np.int64)
    for i in range(a.shape[0]):
        for j in range(n):
            lane = (i * n + j) % 4
            ref = matmul_reference(a[i:i + 1], b[:, j:j + 1], configs[lane])
            assert r.value[i, j].view(np.uint32) == ref.value[0, 0].view(np.uint32)
            hits[lane] += ref.hits
    assert np.array_equal(r.lane_hits, hits) and hits[0] == 0 and hits[1] > 0
    assert (r.cycles_lockstep, r.cycles_decoupled) == simulate_cycles(a, b, configs, 4, 3)
    # one configuration per lane, all the same, is the broadcast configuration
    same = run_lane_array(a, b, [CFPUConfig.approx(2)] * 4, geometry)
    uni = run_lane_array(a, b, CFPUConfig.approx(2), geometry)
    assert np.array_equal(same.value.view(np.uint32), uni.value.view(np.uint32))
    assert (same.cycles_lockstep, same.cycles_decoupled, same.hits) == \
        (uni.cycles_lockstep, uni.cycles_decoupled, uni.hits)
    with pytest.raises(ValueError, match="list of 4"):
        run_lane_array(a, b, configs[:3], geometry)
    print(f"per-lane configurations: {r.products} products, hits per lane {hits.tolist()}, "
          f"cycles {r.cycles_lockstep} (lockstep) / {r.cycles_decoupled} (decoupled) as restated")


def test_all_hits_take_one_cycle_per_step():
    a = np.full((2, 9), 1.5, np.float32)
    b = np.full((9, 8), 3.0, np.float32)
    r = run_lane_array(a, b, CFPUConfig.approx(0), ArrayGeometry(16, 5))
    assert r.hits == r.products and r.tiles == 1
    assert r.cycles_lockstep == r.cycles_decoupled == 9 and r.cycles_baseline == 45


def test_tile_plan_partial_tile():
    rows, cols, valid = tile_plan(3, 5, 4)
    assert rows.shape == (4, 4) and valid.sum() == 15 and not valid[-1, -1]
    assert [(int(i), int(j)) for i, j in zip(rows[valid], cols[valid])] == [(i, j) for i in range(3) for j in range(5)]


@pytest.mark.parametrize("kwargs", [dict(lanes=0), dict(exact_cycles=0), dict(lanes=2.5)])
def test_bad_geometry(kwargs):
    with pytest.raises(ValueError, match="must be a positive integer"):
        ArrayGeometry(**kwargs)


def test_bad_operands():
    with pytest.raises(ValueError, match="shape mismatch"):
        run_lane_array(np.zeros((2, 3), np.float32), np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="float32"):
        run_lane_array(np.zeros((2, 3)), np.zeros((3, 2), np.float32))


def toggles_restated(a, b, configs, lanes, lo, hi, start):
    """Register toggles, one lane and one operation at a time in plain Python: the held
    operands load every accepted operation (a padding lane's nop carries zeros), the
    accumulator every partial sum of a real one (add(+0.0, p0) first in each tile)."""
    m, k_dim = a.shape
    n = b.shape[1]
    ab, bb = a.view(np.uint32), b.view(np.uint32)
    out = np.zeros((lanes, 3), np.int64)
    for l in range(lanes):
        held_a, held_b, acc = (int(v) for v in start[l])
        for t in range(lo, hi):
            f = t * lanes + l
            real = f < m * n
            partial = np.float32(0.0)
            for k in range(k_dim):
                x = int(ab[f // n, k]) if real else 0
                y = int(bb[k, f % n]) if real else 0
                out[l, 0] += bin(held_a ^ x).count("1")
                out[l, 1] += bin(held_b ^ y).count("1")
                held_a, held_b = x, y
                if real:
                    p = golden.mul_bits(np.uint32([x]), np.uint32([y]), configs[l]).bits.view(np.float32)
                    partial = golden.add(np.float32([partial]), p)[0]
                    new = int(np.float32(partial).view(np.uint32))
                    out[l, 2] += bin(acc ^ new).count("1")
                    acc = new
    return out


def test_register_toggles_match_restatement():
    rng = np.random.default_rng(31)
    a, b = nn_like(rng, 5, 6, 7)                      # 35 outputs: 9 tiles of 4, one partial
    a[1, 2] = -0.0
    configs = [EXACT, CFPUConfig.approx(0), CFPUConfig.approx(2, "dual"), CFPUConfig.approx(5)]
    geometry = ArrayGeometry(4, 4)
    start = rng.integers(0, 2**32, (4, 3), dtype=np.uint32)
    checked = 0
    for lo, hi, st, cfg in [(0, 9, None, configs), (3, 9, start, configs), (0, 4, start, EXACT),
                            (8, 9, start, CFPUConfig.approx(1))]:
        per_lane = cfg if isinstance(cfg, list) else [cfg] * 4
        s = np.zeros((4, 3), np.uint32) if st is None else st
        want = toggles_restated(a, b, per_lane, 4, lo, hi, s)
        got = register_toggles(a, b, cfg, geometry, tiles=(lo, hi), start=st, tile_batch=2)
        assert np.array_equal(got, want), (lo, hi)
        assert want[:, 2].sum() > 0
        checked += (hi - lo) * 4 * a.shape[1]
    for bad in [(5, 3), (0, 10), (-1, 2)]:
        with pytest.raises(ValueError, match="tiles must be a range"):
            register_toggles(a, b, EXACT, geometry, tiles=bad)
    print(f"register toggles equal to the operation-by-operation restatement: {checked} lane operations")
