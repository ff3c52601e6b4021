"""scripts/bench_step.py (the paired training-step bench of `make bench`): its quick mode runs and
writes the report's fields; bad options are one line, exit 2. No timing is asserted."""
import json
import subprocess
import sys

import pytest

from helpers import REPO_ROOT, load_script

SCRIPT = REPO_ROOT / "scripts" / "bench_step.py"
bench_step = load_script("bench_step")


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_quick_run_writes_the_report(tmp_path):
    out = tmp_path / "step.json"
    r = run("--quick", "--batches", "10,32", "--json", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["network"] == [784, 500, 500, 10] and report["rounds"] == 2
    assert report["blas"] and all(b["threads"] >= 1 for b in report["blas"])
    assert len(report["load_average"]["start"]) == 3
    assert [row["batch"] for row in report["batches"]] == [10, 32]
    for row in report["batches"]:
        for side in ("native", "approx", "approx+acc"):
            s = row["seconds"][side]
            assert 0 < s["min"] <= s["median"] <= s["max"]
        for side in ("approx", "approx+acc"):
            s = row["ratio"][side]
            assert 0 < s["min"] <= s["median"] <= s["max"]
    assert report["batches"][1]["goal"] == 1.2
    assert set(report["batches"][1]["met"]) == {"approx", "approx+acc"}
    assert all(isinstance(v, bool) for v in report["batches"][1]["met"].values())
    assert report["batches"][0]["goal"] is None and report["batches"][0]["met"] is None
    print(f"bench_step --quick: {len(report['batches'])} batch sizes, medians approx/native "
          f"{[round(r['ratio']['approx']['median'], 2) for r in report['batches']]} (not asserted)")


@pytest.mark.parametrize("args, option", [
    (["--rounds", "0"], "--rounds"), (["--rounds", "x"], "--rounds"),
    (["--batches", "10,,32"], "--batches"), (["--batches", "-4"], "--batches"),
    (["--sample-ms", "0"], "--sample-ms"), (["--blas-threads", "0"], "--blas-threads"),
    (["--blas-threads", "many"], "--blas-threads"),
    (["--data", "mnist"], "--data"), (["--bogus"], "--bogus")])
def test_bad_options_are_one_line(args, option, capsys):
    with pytest.raises(SystemExit) as e:
        bench_step.main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and option in lines[0]
    print(f"{' '.join(args)}: exit 2, {lines[0]!r}")


def test_missing_fashion_mnist_is_one_line(tmp_path, monkeypatch, capsys):
    """--data fashion-mnist where it is not installed: one line naming --data, exit 2."""
    from canna.nn import datasets

    def missing(*args, **kw):
        raise datasets.DatasetError(f"fashion-mnist: no IDX files in {tmp_path}")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(SystemExit) as e:
        bench_step.main(["--data", "fashion-mnist", "--rounds", "1"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and "--data fashion-mnist" in lines[0]
    print(f"missing dataset: exit 2, {lines[0]!r}")


def test_reset_carries_the_initial_transforms():
    """After a reset the carry holds the initial weights' transforms (what a training step finds
    from the update before it): steps from it are bit-identical to steps that prepare afresh."""
    import numpy as np
    from canna.nn.mlp import MLP, ArithPlan, Counters
    from canna.nn.train import sgd_step
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 784)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    plan = ArithPlan.uniform(3, 4, "b")
    runs = []
    for carried in (False, True):
        model = MLP(bench_step.SIZES, seed=0)
        velocity = [np.zeros_like(p) for p in model.weights + model.biases]
        carry = bench_step.initial_transforms(model, plan, "golden-fast", True) if carried else {}
        assert sorted(carry) == ([0, 1, 2] if carried else [])
        c = Counters(3)
        for i in range(2):
            sgd_step(model, velocity, x, y, plan, "golden-fast", c, lr=0.01, momentum=0.9, dropout=0.5,
                     rng=np.random.default_rng(i), carry=carry)
        runs.append((model.weights + velocity, c))
    (p0, c0), (p1, c1) = runs
    assert all(np.array_equal(a.view(np.uint32), b.view(np.uint32)) for a, b in zip(p0, p1))
    assert np.array_equal(c0.hits, c1.hits) and np.array_equal(c0.nonzero, c1.nonzero)
    assert bench_step.initial_transforms(MLP([4, 3, 2]), ArithPlan.exact(2), "native", False) == {}
    print(f"reset carry: 2 steps bit-identical with and without it ({int(c1.hits.sum())} hits)")
