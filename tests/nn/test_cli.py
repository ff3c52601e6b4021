"""`canna train` / `canna infer` end to end, and their error messages."""
import argparse
import json

import numpy as np
import pytest

from canna.cli import main
from canna.nn.cli import layer_sizes_arg, tuning_bits_arg
from canna.spec.config import MAX_TUNING_BITS


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
    (["--apx-min", "30"], "0..22"), (["--apx-min", "x"], "--apx-min: tuning bits must be an integer")])
def test_main_job_user_errors(args, message, capsys):
    """make sim's main job checks every option before its first run: one line, exit 2."""
    from canna.nn.main_job import main as main_job
    with pytest.raises(SystemExit) as e:
        main_job(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_argparse_types():
    """The type functions of the NN options: the spec's range, one-line argparse errors."""
    assert tuning_bits_arg("0") == 0 and tuning_bits_arg(str(MAX_TUNING_BITS)) == MAX_TUNING_BITS == 22
    for text, message in (("23", "tuning bits must be in 0..22, got 23"), ("-1", "tuning bits must be in 0..22, got -1"),
                          ("x", "tuning bits must be an integer, got 'x'"),
                          ("1.5", "tuning bits must be an integer, got '1.5'")):
        with pytest.raises(argparse.ArgumentTypeError) as e:
            tuning_bits_arg(text)
        assert str(e.value) == message
    assert layer_sizes_arg("24, 16") == (24, 16) and layer_sizes_arg("500,") == (500,)
    for text, message in (("5,x", "comma-separated integers"), ("0", "positive layer sizes"), ("", "positive")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            layer_sizes_arg(text)


@pytest.mark.parametrize("args, message", [
    (["train", "--mode", "uniform", "--tuning-bits", "x"], "argument --tuning-bits: tuning bits must be an integer"),
    (["train", "--mode", "gta", "--apx-min", "-1"], "argument --apx-min: tuning bits must be in 0..22, got -1"),
    (["train", "--hidden", "5,0"], "argument --hidden: expected positive layer sizes")])
def test_option_type_errors_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_infer_spread_range(capsys):
    assert main(["infer", "--spread", "22.5", "--quiet"]) == 2   # checked before any training
    assert "--spread must be in 0..22 tuning bits, got 22.5" in capsys.readouterr().err


def test_hardware_block_in_train_and_infer(tmp_path, capsys, monkeypatch):
    """`canna train` / `canna infer` print a hardware block after the hit rates and save it in
    results.json (the --baseline exact run too); without build/synth and build/activity the
    energy is one line and the cycles are still there; --lanes / --exact-cycles reach it."""
    out = tmp_path / "run"
    monkeypatch.setenv("CANNA_BUILD_DIR", str(tmp_path / "no-build"))
    rc = main(["train", "--mode", "uniform", "--tuning-bits", "1", "--epochs", "1", "--hidden", "12",
               "--train-limit", "96", "--baseline", "--quiet", "--lanes", "6", "--exact-cycles", "3",
               "--hit-accounting", "fast", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    hw = res["hardware"]
    assert (hw["lanes"], hw["exact_cycles"]) == (6, 3)
    assert set(hw["speedup"]) == {"zero_skip", "plain"}
    assert set(hw["speedup"]["plain"]) == {"lockstep", "decoupled"}
    assert hw["energy_ratio"] is None and "make activity" in hw["energy_note"]
    assert set(hw["decomposition"]) == {"zero_skip_alone", "approximation_alone", "both"}
    assert hw["cycles"]["lockstep"] <= hw["baseline_cycles"]["plain"]["lockstep"]
    assert 0 <= res["hit_rate"] <= res["fast_rate"] <= 1
    assert all("fast_rate" in row["total"] for row in res["per_layer"])
    assert all("fast_rate" in row for row in res["per_epoch"])
    assert res["hit_accounting"] == "fast" and "hit accounting fast" in text
    base = json.loads((out / "baseline" / "results.json").read_text())
    assert base["hardware"]["speedup"]["zero_skip"] == {"lockstep": 1.0, "decoupled": 1.0}
    assert res["baseline"]["hardware"] == base["hardware"]
    assert "hardware (6 lanes, exact multiply 3 cycles, assumed)" in text and "energy not available" in text
    assert "checked operand: forward weight, backward weight, gradient input" in text
    rc = main(["infer", "--model", str(out / "model.npz"), "--mode", "uniform", "--quiet", "--lanes", "5",
               "--out", str(out / "inf")])
    assert rc == 0
    inf = json.loads((out / "inf" / "infer.json").read_text())
    assert inf["hardware"]["lanes"] == 5 and inf["uniform"]["hardware"] == inf["hardware"]
    assert inf["exact_hardware"]["speedup"]["zero_skip"]["lockstep"] == 1.0
    assert all(0 <= row["hit_rate"] <= row["fast_rate"] <= 1 for row in inf["uniform"]["trace"])
    text = capsys.readouterr().out
    assert "hardware (5 lanes" in text and "checked operand: forward weight" in text
    print(f"train: hardware block ({hw['products']} products, speedup vs plain {hw['speedup']['plain']}), "
          f"baseline run's block, energy note; infer: hardware blocks of exact and chosen configurations")


@pytest.mark.parametrize("args, message", [
    (["--lanes", "0"], "--lanes"), (["--exact-cycles", "x"], "--exact-cycles"),
    (["--input-scale", "raw"], "--input-scale"), (["--hit-accounting", "both"], "--hit-accounting")])
def test_hardware_option_errors(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--quiet", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    print(f"{' '.join(args)}: one line, exit 2")


def test_input_scale_reaches_the_run(tmp_path, capsys):
    """--input-scale unit loads the raw [0, 1] features, says so in the header and the results;
    a TrainConfig whose scale differs from the loaded data's is refused."""
    from canna.nn.datasets import load_digits
    from canna.nn.train import TrainConfig, train
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--hidden", "8", "--train-limit", "64", "--quiet",
                 "--input-scale", "unit", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["dataset"]["input_scale"] == "unit" and res["config"]["input_scale"] == "unit"
    assert "input scale unit" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--input-scale unit"):
        train(load_digits(), TrainConfig(input_scale="unit", epochs=1, hidden=(4,)))
    print("--input-scale unit: in the results' dataset and config and the header; a mismatch is refused")
