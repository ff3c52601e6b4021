"""`canna train` / `canna infer` end to end, and their error messages."""
import json

import numpy as np
import pytest

from canna.cli import main


def test_train_then_infer(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--mode", "gta", "--apx-min", "2", "--gta-window", "10", "--epochs", "2",
               "--hidden", "24,16", "--baseline", "--quiet", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    for key in ("config", "test_accuracy", "exact_test_accuracy", "hit_rate", "per_layer", "products", "gta"):
        assert key in res
    assert res["gta"]["trajectory"][0]["level"] == 0
    rc = main(["infer", "--model", str(out / "model.npz"), "--qos", "2", "--quiet", "--out", str(out)])
    assert rc == 0
    inf = json.loads((out / "infer.json").read_text())
    assert inf["layer"]["val_error"] - inf["exact_val_error"] <= 0.02 + 1e-12
    assert len(inf["sensitivity"]["normalized"]) == 3
    text = capsys.readouterr().out
    assert "GTA trajectory" in text and "sensitivity" in text
    print(f"train: test accuracy {res['test_accuracy']:.3f} (exact {res['exact_test_accuracy']:.3f}); "
          f"infer: layer bits {inf['layer']['bits']}, uniform bits {inf['uniform']['bits']}")


def test_user_errors(tmp_path, capsys):
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--quiet"]) == 2
    assert "none of train-images" in capsys.readouterr().err
    assert main(["train", "--mode", "uniform", "--quiet"]) == 2
    assert "needs tuning bits" in capsys.readouterr().err
    assert main(["train", "--mode", "gta", "--apx-min", "3", "--backend", "native", "--quiet"]) == 2
    assert "exact float32 only" in capsys.readouterr().err
    assert main(["infer", "--model", str(tmp_path / "nope.npz"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--mode", "uniform", "--tuning-bits", "23"])
    assert e.value.code == 2 and "0..22" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    assert main(["infer", "--model", str(tmp_path / "bad.npz"), "--quiet"]) == 2
    assert "not a canna" in capsys.readouterr().err
    print("missing data files, missing tuning bits, native+approx, missing/bad model, 23 tuning bits: exit 2")


@pytest.mark.parametrize("args, message", [
    (["--backend", "nope"], "unknown backend"), (["--epochs", "0"], "epochs must be >= 1"),
    (["--qos", "-5"], "--qos must be >= 0"), (["--qos", "nan"], "--qos must be >= 0"),
    (["--rtl-samples", "-1"], "--rtl-samples"), (["--hidden", "5,x"], "comma-separated"),
    (["--apx-min", "30"], "0..22")])
def test_main_job_user_errors(args, message, capsys):
    """make sim's main job checks every option before its first run: one line, exit 2."""
    from canna.nn.main_job import main as main_job
    with pytest.raises(SystemExit) as e:
        main_job(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
