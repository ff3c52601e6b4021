"""scripts/bench_step_torch.py (the PyTorch training-step bench of `make bench`): its quick mode
runs both models and writes the report's fields; bad options are one line, exit 2. No timing is
asserted."""
import json
import subprocess
import sys

import pytest

from helpers import REPO_ROOT, load_script

SCRIPT = REPO_ROOT / "scripts" / "bench_step_torch.py"
sys.path.insert(0, str(SCRIPT.parent))     # as when run: it imports bench_step's helpers
try:
    bench = load_script("bench_step_torch")
finally:
    sys.path.remove(str(SCRIPT.parent))
SIDES = ("approx", "approx+cnt", "approx+acc", "py-floor")


def test_quick_run_writes_the_report(tmp_path):
    out = tmp_path / "step.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--batches", "10,32", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["rounds"] == 2 and report["torch_threads"] == 1
    assert report["blas"] and all(b["threads"] == 1 for b in report["blas"])
    assert len(report["load_average"]["start"]) == 3
    assert [(row["model"], row["batch"]) for row in report["rows"]] == [
        ("mlp", 10), ("mlp", 32), ("lenet", 10), ("lenet", 32)]
    for row in report["rows"]:
        for side in ("native", *SIDES):
            s = row["seconds"][side]
            assert 0 < s["min"] <= s["median"] <= s["max"]
        assert set(row["ratio"]) == set(row["cpu_ratio"]) == set(SIDES)
        for s in [*row["ratio"].values(), *row["cpu_ratio"].values()]:
            assert 0 < s["min"] <= s["median"] <= s["max"]
        if row["batch"] == 32:
            assert row["goal"] == 1.2 and set(row["met"]) == set(SIDES)
            assert all(isinstance(v, bool) for v in row["met"].values())
        else:
            assert row["goal"] is None and row["met"] is None
    print(f"bench_step_torch --quick: {len(report['rows'])} rows, medians approx/native "
          f"{[round(r['ratio']['approx']['median'], 2) for r in report['rows']]} (not asserted)")


def test_quick_epoch_writes_its_rows(tmp_path):
    out = tmp_path / "epoch.json"
    r = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--epoch", "--models", "mlp", "--batches", "10,32",
                        "--rounds", "1", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    epochs = json.loads(out.read_text())["epochs"]
    assert [(e["model"], e["batch"], e["steps"], e["block"]) for e in epochs] == [("mlp", 10, 19, 2), ("mlp", 32, 6, 2)]
    for e in epochs:
        assert e["cpu_seconds"]["native"] > 0 and e["cpu_seconds"]["approx"] > 0
        assert abs(e["ratio"] - e["cpu_seconds"]["approx"] / e["cpu_seconds"]["native"]) < 1e-12
        assert 0 < e["block_ratio"]["min"] <= e["block_ratio"]["median"] <= e["block_ratio"]["max"]
        assert (e["goal"], type(e["met"])) == ((1.2, bool) if e["batch"] == 32 else (None, type(None)))
    print(f"bench_step_torch --quick --epoch: {len(epochs)} epoch rows, ratios "
          f"{[round(e['ratio'], 2) for e in epochs]} (not asserted)")


@pytest.mark.parametrize("args, option", [
    (["--rounds", "0"], "--rounds"), (["--rounds", "x"], "--rounds"),
    (["--batches", "10,,32"], "--batches"), (["--batches", "-4"], "--batches"),
    (["--models", "mlp,vgg"], "--models"), (["--sample-ms", "0"], "--sample-ms"),
    (["--data", "mnist"], "--data"), (["--block", "0"], "--block"), (["--bogus"], "--bogus")])
def test_bad_options_are_one_line(args, option, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and option in lines[0]
    print(f"{' '.join(args)}: exit 2, {lines[0]!r}")


def test_python_floor_computes_what_the_plain_model_computes():
    """The bench's py-floor side is the plain model's arithmetic through Python Functions: the
    same outputs bit for bit, the same gradients up to the sums' order."""
    import copy

    import torch
    bench = load_script("bench_step_torch")
    for kind, shape in (("mlp", (8, 784)), ("lenet", (8, 1, 28, 28))):
        base = bench.plain_model(kind).eval()
        floor = bench.python_floor(copy.deepcopy(base))
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        y0, y1 = base(x), floor(x)
        y0.sum().backward()
        y1.sum().backward()
        assert torch.equal(y0, y1), kind
        for a, b in zip(base.parameters(), floor.parameters()):
            assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7), kind
    print("py-floor: mlp and lenet outputs bit-equal to the plain models, gradients equal")
