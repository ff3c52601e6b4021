"""Checkpoints and ``--resume`` of ``canna train --framework torch`` (docs/torch.md, "Training
from the command line"): a run interrupted mid-epoch and resumed writes the files of the
uninterrupted run bit for bit (``model.pt`` tensors, the checkpoint's arrays, ``results.json``
timing aside), for a GTA MLP with ``--baseline`` (cut in either run) and a LeNet on digits; a
real SIGINT to a subprocess; a missing, corrupt or mismatched checkpoint is one line, exit 2."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import canna.torch.train as torch_train
from canna.cli import main

# digits, 160 training samples, batch 16: 10 iterations per epoch, 4 epochs; dropout 0.5 (the preset)
QUICK = ["train", "--framework", "torch", "--train-limit", "160", "--batch-size", "16", "--epochs", "4", "--quiet"]
GTA = [*QUICK, "--hidden", "24,16", "--mode", "gta", "--apx-min", "3", "--gta-window", "3", "--baseline"]
LENET = [*QUICK, "--model", "lenet", "--mode", "uniform", "--tuning-bits", "2"]


def _strip_timing(obj):
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items() if k not in ("seconds", "elapsed")}
    if isinstance(obj, list):
        return [_strip_timing(v) for v in obj]
    return obj


def _tensors(path: Path) -> dict:
    """name -> (dtype, shape, bytes) of a saved state dict."""
    return {k: (str(v.dtype), tuple(v.shape), v.numpy().tobytes())
            for k, v in torch.load(path, weights_only=True).items()}


def _npz(path: Path) -> dict:
    with np.load(path) as z:
        return {k: (z[k].dtype.str, z[k].shape, z[k].tobytes()) if k != "meta"
                else _strip_timing(json.loads(z[k].tobytes())) for k in z.files}


def assert_same_run(out: Path, ref: Path) -> int:
    """The files under ``out`` equal the uninterrupted run's under ``ref``; returns how many."""
    files = sorted(str(p.relative_to(ref)) for p in ref.rglob("*") if p.is_file())
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == files
    for rel in files:
        a, b = out / rel, ref / rel
        if rel.endswith(".json"):
            assert _strip_timing(json.loads(a.read_text())) == _strip_timing(json.loads(b.read_text())), rel
        elif rel.endswith(".pt"):
            assert _tensors(a) == _tensors(b), rel
        else:
            x, y = _npz(a), _npz(b)
            bad = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
            assert not bad, f"{rel}: {bad} differ"
    return len(files)


def _interrupting(monkeypatch, cut_call: int, after: int):
    """Make call ``cut_call`` of train_torch act as Ctrl-C after ``after`` iterations."""
    real, calls = torch_train.train_torch, []

    def train(data, cfg, **kw):
        calls.append(cfg.mode)
        if len(calls) == cut_call:
            kw["interrupt_after"] = after
        return real(data, cfg, **kw)
    monkeypatch.setattr(torch_train, "train_torch", train)
    return real


@pytest.mark.parametrize("argv, cut_call, after", [(GTA, 2, 17), (GTA, 1, 23), (LENET, 1, 25)],
                         ids=["gta-main-run", "gta-baseline-run", "lenet"])
def test_resume_is_bit_identical(tmp_path, monkeypatch, capsys, argv, cut_call, after):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*argv, "--out", str(full)]) == 0
    real = _interrupting(monkeypatch, cut_call, after)
    assert main([*argv, "--out", str(cut)]) == 130
    monkeypatch.setattr(torch_train, "train_torch", real)
    err = capsys.readouterr().err
    assert f"interrupted at iteration {after}/40; resume with --resume" in err, err
    assert main([*argv, "--out", str(cut), "--resume"]) == 0
    n = assert_same_run(cut, full)
    res = json.loads((full / "results.json").read_text())
    assert res["iterations_run"] > after and res["hits"] > 0
    print(f"{' '.join(argv[argv.index('--epochs') + 2:])}: run {cut_call} cut after {after} of 40 "
          f"iterations ({res['iterations_run']} run in all), resumed: {n} files equal the uninterrupted "
          "run's bit for bit")


def test_sigint_to_a_running_process_then_resume(tmp_path, capsys):
    """A real Ctrl-C (SIGINT to a subprocess) once the first epoch's checkpoint is written: exit
    130, one line; ``--resume`` completes the run with the uninterrupted run's files."""
    argv = [*LENET[:LENET.index("--epochs") + 1], "8", *LENET[LENET.index("--epochs") + 2:]]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*argv, "--out", str(full)]) == 0
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from canna.cli import main; sys.exit(main())",
                             *argv, "--out", str(cut)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while proc.poll() is None and not (cut / "checkpoint.npz").is_file():
        assert time.monotonic() - t0 < 120, "no checkpoint after 120 s"
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and lines[-1] == "canna train: interrupted" and "Traceback" not in err, err
    assert lines[0].startswith("interrupted at iteration ") and len(lines) == 2, err
    assert main([*argv, "--out", str(cut), "--resume"]) == 0
    n = assert_same_run(cut, full)
    print(f"lenet 8 epochs, SIGINT after the first checkpoint: {lines[0]!r}, exit 130; resumed, "
          f"{n} files equal the uninterrupted run's bit for bit")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A LeNet run cut after 13 iterations: its --out holds a checkpoint to resume."""
    out = tmp_path_factory.mktemp("cut") / "run"
    from canna.nn.cli import _load, _train_config, register
    import argparse
    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    args = p.parse_args([*LENET, "--out", str(out)])
    with pytest.raises(KeyboardInterrupt):
        torch_train.train_torch(_load(args), _train_config(args), model_kind="lenet", out_dir=out,
                                interrupt_after=13)
    return out


def _damaged(src: Path, dst: Path, drop=(), change=None, meta=None):
    """Copy checkpoint ``src`` to ``dst`` without arrays ``drop``, with ``change[name](array)``
    and ``meta(dict)`` applied."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    for k, f in (change or {}).items():
        arrays[k] = f(arrays[k])
    if meta is not None:
        m = meta(json.loads(arrays["meta"].tobytes()))
        arrays["meta"] = np.frombuffer(json.dumps(m).encode(), np.uint8)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def _numpy_checkpoint(tmp_path: Path) -> Path:
    out = tmp_path / "numpy"
    assert main(["train", "--train-limit", "32", "--epochs", "1", "--hidden", "8", "--quiet", "--out", str(out)]) == 0
    return out / "checkpoint.npz"


@pytest.mark.parametrize("case, extra, needles", [
    ("missing", [], ["--resume: no checkpoint", "checkpoint.npz to resume from"]),
    ("truncated", [], ["unreadable checkpoint/model (corrupt or truncated?)"]),
    ("no-momentum", [], ["no array 'opt0.momentum_buffer'"]),
    ("nan-weight", [], ["array 'model.0.weight' holds", "non-finite"]),
    ("rng", [], ["array 'torch_rng' has shape"]),
    ("numpy-driver", [], ["not a checkpoint of --framework torch"]),
    ("lr", ["--lr", "0.02"], ["different configuration (lr: 0.01 vs 0.02)"]),
    ("model", ["--model", "mlp"], ["different configuration (model: 'lenet' vs 'mlp', topology: "]),
])
def test_bad_checkpoints_are_one_line_errors(interrupted, tmp_path, capsys, case, extra, needles):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    ckpt, good = run / "checkpoint.npz", interrupted / "checkpoint.npz"
    if case == "missing":
        ckpt.unlink()
    elif case == "truncated":
        ckpt.write_bytes(good.read_bytes()[:3000])
    elif case == "no-momentum":
        _damaged(good, ckpt, drop=("opt0.momentum_buffer",))
    elif case == "nan-weight":
        _damaged(good, ckpt, change={"model.0.weight": lambda a: a * np.nan})
    elif case == "rng":
        _damaged(good, ckpt, change={"torch_rng": lambda a: a[:100]})
    elif case == "numpy-driver":
        shutil.copy(_numpy_checkpoint(tmp_path), ckpt)
    before = ckpt.read_bytes() if ckpt.is_file() else None
    assert main([*LENET, *extra, "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert all(n in err for n in needles), (needles, err)
    assert (ckpt.read_bytes() if ckpt.is_file() else None) == before, "a refused --resume changed the checkpoint"
    print(f"{case}: {err.strip()[:150]}")


def test_reporting_only_fields_may_change_on_resume(interrupted, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    assert main([*LENET, "--hit-accounting", "fast", "--out", str(run), "--resume"]) == 0
    res = json.loads((run / "results.json").read_text())
    assert res["config"]["hit_accounting"] == "fast" and res["iterations_run"] == 40
    print("--hit-accounting fast on resume of an approx checkpoint: accepted, run completed")
