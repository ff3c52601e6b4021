"""The benchmark's own logic (its timings are never asserted): goal marks and the floor."""
import numpy as np
import pytest

from helpers import load_script

bench = load_script("bench")


@pytest.mark.parametrize("ratio, floor, variant, mark", [
    (1.05, 1.20, "transform", "*"),   # met
    (1.12, 1.05, "transform", "!"),   # missed, the floor was below the goal
    (1.20, 1.15, "transform", "~"),   # missed, the floor alone exceeds the goal
    (1.06, 1.20, "cached", "!"),      # the floor says nothing about the cached path
])
def test_goal_marks(ratio, floor, variant, mark):
    row = {"policy": "b", f"ratio_{variant}": ratio, "ratio_floor": floor, f"goal_{variant}": 1.1 if
           variant == "transform" else 1.05}
    assert bench.goal_mark(row, variant) == mark
    assert bench.goal_mark({"policy": "b"}, variant) == ""
    print(f"goal mark {variant} {ratio} (floor {floor}): {mark!r}")


@pytest.mark.parametrize("policy, factor", [("b", 1), ("dual", 2)])
def test_floor_runs_the_policys_gemms(policy, factor):
    """The floor does the policy's writes and GEMMs: one GEMM for b, two summed for dual."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5)).astype(np.float32)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    y = bench.write_floor(x, w, policy)()
    assert np.allclose(y, factor * (x @ w), rtol=1e-5, atol=1e-6)
    print(f"floor for {policy}: {factor} GEMM(s) of {x.shape} x {w.shape}")
