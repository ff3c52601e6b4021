"""``iterations.npz`` of ``canna train --framework torch``: the NumPy driver's file (same arrays,
dtypes, axes and meta; the products of each iteration equal to the NumPy driver's on the same
MLP, batch and shuffle), and its meaning checked against the results: the products and hits of
each iteration sum to the run's and each epoch's, the fast products to its fast rate, the level
of each iteration is the GTA trajectory's, the batch errors and losses give each epoch's train
error and loss. That a resumed run writes the uninterrupted run's file bit for bit is
tests/torch/test_resume.py's (it compares every file of ``--out``)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from canna.cli import main
from canna.nn.checkpoint import load_npz

# digits, 150 training samples, batch 16: 10 iterations per epoch, the last of 6 samples
QUICK = ["train", "--train-limit", "150", "--batch-size", "16", "--hidden", "24,16", "--quiet"]
N_TRAIN, BATCH, IPE = 150, 16, 10


def _run(tmp_path, name, argv) -> tuple[dict, dict, dict]:
    out = tmp_path / name
    assert main([*argv, "--out", str(out)]) == 0
    its, meta = load_npz(out / "iterations.npz")
    return its, meta, json.loads((out / "results.json").read_text())


def test_same_file_as_the_numpy_driver(tmp_path):
    argv = [*QUICK, "--epochs", "2", "--mode", "uniform", "--tuning-bits", "2"]
    mine, mine_meta, res = _run(tmp_path, "torch", [*argv, "--framework", "torch"])
    ref, ref_meta, _ = _run(tmp_path, "numpy", argv)
    assert sorted(mine) == sorted(ref) == ["batch_error", "fast", "hits", "level", "loss", "products"]
    assert {k: (a.dtype, a.shape) for k, a in mine.items()} == {k: (a.dtype, a.shape) for k, a in ref.items()}
    assert mine_meta == ref_meta
    n = res["iterations_run"]
    assert mine["products"].shape == (n, 3, 3) and n == 2 * IPE
    # products depend on the shapes only: equal per iteration, layer and phase (the short last batch too)
    assert np.array_equal(mine["products"], ref["products"])
    assert mine["products"][IPE - 1].sum() * BATCH == mine["products"][0].sum() * (N_TRAIN - (IPE - 1) * BATCH)
    assert (mine["level"] == 2).all() and mine["hits"].sum() > 0
    print(f"torch vs NumPy driver, uniform t=2: {len(mine)} arrays with the same dtypes, shapes and meta; "
          f"{n} x 3 x 3 products equal ({int(mine['products'].sum())} in all)")


@pytest.fixture(scope="module")
def gta(tmp_path_factory):
    argv = [*QUICK, "--framework", "torch", "--epochs", "4", "--mode", "gta", "--apx-min", "3",
            "--gta-window", "3"]
    return _run(tmp_path_factory.mktemp("gta"), "run", argv)


def test_counts_add_up_to_the_results(gta):
    its, _, res = gta
    n = res["iterations_run"]
    assert its["products"].shape[0] == n and int(its["products"].sum()) == res["products"]
    assert int(its["hits"].sum()) == res["hits"]
    assert int(its["fast"].sum()) / res["products"] == pytest.approx(res["fast_rate"], rel=1e-12)
    for row in res["per_epoch"]:
        ep = slice(row["iteration"] - (row["iteration"] - 1) % IPE - 1, row["iteration"])
        assert (int(its["products"][ep].sum()), int(its["hits"][ep].sum())) == (row["products"], row["hits"])
    for layer in res["per_layer"]:
        assert int(its["products"][:, layer["layer"] - 1].sum()) == layer["total"]["products"]
    print(f"gta: {n} iterations, products, hits and fast products add up to the run's and to each of "
          f"{len(res['per_epoch'])} epochs'")


def test_levels_errors_and_losses_mean_what_they_say(gta):
    its, _, res = gta
    n = res["iterations_run"]
    trajectory = res["gta"]["trajectory"]
    expected = [max((e for e in trajectory if e["iteration"] <= i), key=lambda e: e["iteration"])["level"]
                for i in range(n)]
    assert its["level"].tolist() == expected and len(set(expected)) > 1, (its["level"], trajectory)
    sizes = np.array([min(BATCH, N_TRAIN - (i % IPE) * BATCH) for i in range(n)])
    assert not np.isnan(its["batch_error"]).any() and not np.isnan(its["loss"]).any()
    for row in res["per_epoch"]:
        ep = slice(row["iteration"] - (row["iteration"] - 1) % IPE - 1, row["iteration"])
        seen = sizes[ep].sum()
        assert np.rint(its["batch_error"][ep] * sizes[ep]).sum() / seen == row["train_error"]
        assert (its["loss"][ep] * sizes[ep]).sum() / seen == pytest.approx(row["train_loss"], rel=1e-6)
        assert its["level"][row["iteration"] - 1] == row["level"]
    print(f"gta: levels of {n} iterations follow the trajectory ({len(trajectory)} entries, levels "
          f"{sorted(set(expected))}); batch errors and losses give the train error and loss of "
          f"{len(res['per_epoch'])} epochs")
