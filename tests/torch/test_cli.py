"""`canna train --framework torch`: the MLP and the CNN end to end, the NumPy driver's results
keys and hardware block, and its option errors (resume: test_resume.py)."""
from __future__ import annotations

import json

import pytest

from canna.cli import main

QUICK = ["--train-limit", "96", "--epochs", "2", "--batch-size", "16", "--quiet"]


def _flat_keys(d: dict, prefix="") -> set:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict) and k in ("hardware", "gta"):
            out |= _flat_keys(v, prefix + k + ".")
    return out


@pytest.mark.parametrize("model, mode", [("mlp", ["--mode", "gta", "--apx-min", "2", "--gta-window", "3"]),
                                         ("lenet", ["--mode", "uniform", "--tuning-bits", "2"])])
def test_train_torch_writes_the_numpy_drivers_results(tmp_path, capsys, model, mode):
    out_np, out_t = tmp_path / "numpy", tmp_path / "torch"
    common = ["train", "--hidden", "24,16", *QUICK, *mode]
    assert main([*common, "--out", str(out_np)]) == 0
    assert main([*common, "--framework", "torch", "--model", model, "--baseline", "--out", str(out_t)]) == 0
    res_np = json.loads((out_np / "results.json").read_text())
    res = json.loads((out_t / "results.json").read_text())
    missing = _flat_keys(res_np) - _flat_keys(res)
    assert not missing, missing
    assert res["framework"] == "torch" and res["model"] == model
    assert (out_t / "model.pt").is_file() and (out_t / "baseline" / "results.json").is_file()
    assert res["hits"] > 0 and res["hardware"]["products"] == res["products"]
    assert len(res["per_layer"]) == (3 if model == "mlp" else 5)
    text = capsys.readouterr().out
    assert "hardware (16 lanes" in text and "quality loss" in text
    print(f"torch {model}: {res['products']} products, hit rate {res['hit_rate']:.3f}, "
          f"{len(_flat_keys(res_np))} NumPy-driver result keys present")


@pytest.mark.parametrize("argv, message", [
    (["--model", "lenet"], "--model lenet: the NumPy driver trains MLPs only; add --framework torch"),
    (["--framework", "torch", "--resume", "--out", "x"], "--resume: no checkpoint x/checkpoint.npz to resume from"),
    (["--framework", "torch", "--mode", "uniform"], "mode uniform needs tuning bits (--tuning-bits)"),
])
def test_option_errors(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_lenet_needs_square_images():
    import numpy as np
    from canna.nn.datasets import Dataset
    from canna.nn.train import TrainConfig
    from canna.torch.train import build_model
    x, y = np.zeros((4, 10), np.float32), np.zeros(4, np.int64)
    data = Dataset("flat", x, y, x, y, x, y, 2)
    with pytest.raises(ValueError, match="^--model lenet needs square grey images; the dataset has 10 features$"):
        build_model("lenet", data, TrainConfig())
    with pytest.raises(ValueError, match="^--model must be one of mlp, lenet, got 'vgg'$"):
        build_model("vgg", data, TrainConfig())


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_baseline_without_accounting(tmp_path, capsys, framework):
    """``--baseline --no-accounting``: the baseline summary keeps what the baseline has (no fast
    rate, no hardware block), in both drivers (nn/cli.py ``run_training``)."""
    out = tmp_path / framework
    assert main(["train", "--framework", framework, "--hidden", "8", "--train-limit", "64", "--epochs", "1",
                 "--mode", "uniform", "--tuning-bits", "2", "--baseline", "--no-accounting", "--quiet",
                 "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert sorted(res["baseline"]) == ["hit_rate", "products", "seconds", "test_accuracy", "val_accuracy"]
    assert res["baseline"]["test_accuracy"] == res["exact_test_accuracy"] == \
        json.loads((out / "baseline" / "results.json").read_text())["test_accuracy"]
    assert "hardware" not in res and "quality loss" in capsys.readouterr().out
    print(f"{framework}: --baseline --no-accounting, baseline keys {sorted(res['baseline'])}")
