"""Golden lane-array model: outputs equal the sequential reference; cycles follow the two
disciplines, checked against a cycle-by-cycle restatement (also those of the plain and no-skip
baselines)."""
import dataclasses

import numpy as np
import pytest

from canna.sim import accounting, golden, lanes_native
from canna.spec.config import CFPUConfig, EXACT
from canna.sim.lanes import LaneArrayResult, LaneArrayTotals, run_lane_array
from canna.sim.toggles import register_toggles
from canna.spec.array import ArrayGeometry, tile_plan
from canna.sim.matmul import matmul_reference
from helpers import nn_like


def simulate_cycles(a, b, config, lanes, exact_cycles):
    """Cycle-by-cycle restatement: lanes issue one product when free; lockstep lanes wait for
    each other every step, decoupled lanes only at the end of a tile. ``config``: one for all
    lanes or a list, one per lane. Returns ``(lockstep, decoupled)`` of the CFPU array (fast =
    hit or zero/inf/NaN operand) and a dict with both disciplines of every array:
    ``cfpu``, ``zero_skip`` (fast = zero/inf/NaN operand), ``no_skip`` (fast = hit) and
    ``plain`` (nothing fast)."""
    m, k_dim = a.shape
    n = b.shape[1]
    outputs = [(i, j) for i in range(m) for j in range(n)]
    kinds = ("cfpu", "zero_skip", "no_skip", "plain")
    total = {kind: [0, 0] for kind in kinds}
    for t0 in range(0, len(outputs), lanes):
        tile = outputs[t0:t0 + lanes]
        lane_time = {kind: [0] * len(tile) for kind in kinds}
        for k in range(k_dim):
            step = {kind: [] for kind in kinds}
            for lane, (i, j) in enumerate(tile):
                x, w = a[i:i + 1, k], b[k:k + 1, j]
                cfg = config[lane] if isinstance(config, list) else config
                hit = bool(golden.mul(x, w, cfg).hit[0])
                special = any(v == 0 or not np.isfinite(v) for v in (x[0], w[0]))
                fast = {"cfpu": hit or special, "zero_skip": special, "no_skip": hit, "plain": False}
                for kind in kinds:
                    lat = 1 if fast[kind] else exact_cycles
                    step[kind].append(lat)
                    lane_time[kind][lane] += lat
            for kind in kinds:
                total[kind][0] += max(step[kind])
        for kind in kinds:
            total[kind][1] += max(lane_time[kind])
    return tuple(total["cfpu"]), {kind: tuple(v) for kind, v in total.items()}


def result_cycles(r) -> dict:
    """The cycle counts of a lane-array result, named as :func:`simulate_cycles` names them."""
    return {"cfpu": (r.cycles_lockstep, r.cycles_decoupled),
            "zero_skip": (r.cycles_baseline, r.cycles_baseline_decoupled),
            "no_skip": (r.cycles_no_skip_lockstep, r.cycles_no_skip_decoupled),
            "plain": (r.cycles_plain, r.cycles_plain)}


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
    (lock, dec), every = simulate_cycles(a, b, config, lanes, exact_cycles)
    assert (r.cycles_lockstep, r.cycles_decoupled) == (lock, dec)
    assert result_cycles(r) == every
    assert r.cycles_decoupled <= r.cycles_lockstep <= r.cycles_baseline
    assert r.cycles_lockstep <= r.cycles_no_skip_lockstep <= r.cycles_plain
    assert r.cycles_decoupled <= r.cycles_no_skip_decoupled <= r.cycles_no_skip_lockstep
    assert r.cycles_plain == r.tiles * a.shape[1] * exact_cycles
    if not config.enabled:
        assert r.cycles_lockstep == r.cycles_baseline and r.hits == 0
        assert r.cycles_no_skip_lockstep == r.cycles_no_skip_decoupled == r.cycles_plain
    print(f"{config.describe()} lanes={lanes} k={exact_cycles}: {r.products} products, "
          f"{r.hits} hits, cycles lockstep {lock}, decoupled {dec}, baseline {r.cycles_baseline}, "
          f"no-skip {r.cycles_no_skip_lockstep}/{r.cycles_no_skip_decoupled}, plain "
          f"{r.cycles_plain}: 4 arrays x 2 disciplines equal to the restatement")


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
    cfpu, every = simulate_cycles(a, b, configs, 4, 3)
    assert (r.cycles_lockstep, r.cycles_decoupled) == cfpu and result_cycles(r) == every
    # one configuration per lane, all the same, is the broadcast configuration
    same = run_lane_array(a, b, [CFPUConfig.approx(2)] * 4, geometry)
    uni = run_lane_array(a, b, CFPUConfig.approx(2), geometry)
    assert np.array_equal(same.value.view(np.uint32), uni.value.view(np.uint32))
    assert result_cycles(same) == result_cycles(uni) and same.hits == uni.hits
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
    # no operand is zero: without zero skipping the CFPU is as fast; plain = 1 tile * 9 * 5
    assert r.cycles_no_skip_lockstep == r.cycles_no_skip_decoupled == 9 and r.cycles_plain == 45


def _hand_case():
    """1 x 3 @ 3 x 6 on 4 lanes, exact multiply 3 cycles, t=0 policy b (every normal pair with
    its exponent in range hits). Per output j, k = 0, 1, 2 (H hit, B zero operand, X exact, the
    subnormal weight):

        j:    0      1      2      3   |   4      5      (tile 1: lanes 2, 3 pad)
             HBH    HBX    BBH    HBH  |  HBB    HBH
    """
    a = np.array([[1.5, 0.0, 2.0]], np.float32)
    b = np.array([[3, 3, 0, 3, 3, 3],
                  [3, 3, 3, 3, 3, 3],
                  [3, 1e-40, 3, 3, 0, 3]], np.float32)
    return a, b, CFPUConfig.approx(0), ArrayGeometry(4, 3)


#: The hand-computed counts of _hand_case, tile 0 + tile 1 (lat: fast 1, slow 3):
#:   CFPU (fast = H or B):   lockstep (1+1+3) + (1+1+1) = 8,  decoupled max(3,5,3,3) + 3 = 8
#:   zero_skip (fast = B):   lockstep (3+1+3) + (3+1+3) = 14, decoupled 7 + max(5,7) = 14
#:   no_skip (fast = H):     lockstep (3+3+3) + (1+3+3) = 16, decoupled max(5,7,7,5) + 7 = 14
#:   plain:                  2 tiles * 3 * 3 = 18
HAND = {"cycles_lockstep": 8, "cycles_decoupled": 8, "cycles_baseline": 14,
        "cycles_baseline_decoupled": 14, "cycles_no_skip_lockstep": 16,
        "cycles_no_skip_decoupled": 14, "cycles_plain": 18, "hits": 9, "bypassed": 8}


def test_hand_computed_baselines():
    """Concrete numbers for every cycle count, on every model that reports them: the golden lane
    model, its C twin, the accounting engine (SIMD and portable builds, per-lane and totals) and
    its NumPy fallback."""
    a, b, config, geometry = _hand_case()
    results = {"golden": run_lane_array(a, b, config, geometry),
               "C twin": lanes_native.run_lane_array(a, b, config, geometry),
               "accounting numpy": accounting.account_result(a, b, config, geometry, native=False),
               "accounting totals numpy": accounting.account_matmul(a, b, config, geometry,
                                                                    native=False)}
    for name, lib in (("simd", accounting.library()), ("scalar", accounting.library(scalar=True))):
        prep = accounting.prepare_accounting(b, config, lib=lib)
        results[f"accounting {name}"] = accounting.account_result(a, prep, None, geometry)
        results[f"accounting totals {name}"] = accounting.account_matmul(a, prep, geometry=geometry)
    for name, r in results.items():
        got = {f: int(getattr(r, f)) for f in HAND}
        assert got == HAND, (name, got)
    assert simulate_cycles(a, b, config, 4, 3)[1] == result_cycles(results["golden"])
    print(f"hand-computed case: {len(HAND)} counts equal on {len(results)} models ({HAND})")


def test_result_fields_required():
    """The three baseline counts are required fields of LaneArrayResult (no silent 0) and add
    up in LaneArrayTotals."""
    names = ("cycles_plain", "cycles_no_skip_lockstep", "cycles_no_skip_decoupled")
    fields = {f.name: f for f in dataclasses.fields(LaneArrayResult)}
    for name in names:
        assert fields[name].default is dataclasses.MISSING
        assert fields[name].default_factory is dataclasses.MISSING
    a, b, config, geometry = _hand_case()
    r = run_lane_array(a, b, config, geometry)
    kwargs = {f: getattr(r, f) for f in fields if f not in ("cycles_plain",)}
    with pytest.raises(TypeError, match="cycles_plain"):
        LaneArrayResult(**kwargs)
    total = LaneArrayTotals()
    total.add(r)
    total.add(r)
    assert [getattr(total, f) for f in names] == [2 * HAND[f] for f in names]
    print(f"{len(names)} required fields of LaneArrayResult, added up by LaneArrayTotals")


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
