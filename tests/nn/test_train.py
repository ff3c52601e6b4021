"""Training: learning happens, every mode runs, interrupt + resume is exact, files are atomic."""
import json
from dataclasses import fields

import numpy as np
import pytest

from canna.nn.checkpoint import CheckpointError, load_npz
from canna.nn.datasets import load_digits
from canna.nn.gta import GTAController
from canna.nn.mlp import MLP, Counters
from canna.nn.train import TrainConfig, TrainState, load_model, train


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_learning_happens(digits):
    res = train(digits, TrainConfig(hidden=(64, 64), epochs=3, backend="native"))
    print(f"exact, 3 epochs: test accuracy {res['test_accuracy']:.3f} on {len(digits.y_test)} samples "
          f"(chance 0.1), {res['products']} products in {res['seconds']:.1f} s")
    assert res["test_accuracy"] > 0.85


@pytest.mark.parametrize("kw", [dict(mode="uniform", tuning_bits=0), dict(mode="uniform", tuning_bits=2, policy="dual"),
                                dict(mode="gta", apx_min=3, gta_window=10)])
def test_approximate_training_learns(digits, kw):
    res = train(digits, TrainConfig(hidden=(64, 64), epochs=4, **kw))
    print(f"{kw}: test accuracy {res['test_accuracy']:.3f}, hit rate {res['hit_rate']:.3f} "
          f"({res['hits']} of {res['products']} products)")
    assert res["test_accuracy"] > 0.8 and res["hits"] > 0
    per_phase = {ph for row in res["per_layer"] for ph in ("forward", "backward", "gradient") if ph in row}
    assert per_phase == {"forward", "backward", "gradient"}
    if kw["mode"] == "gta":
        levels = [e["level"] for e in res["gta"]["trajectory"]]
        assert levels == sorted(levels) and levels[0] == 0


def test_interrupt_and_resume_is_exact(digits, tmp_path):
    cfg = TrainConfig(hidden=(16,), epochs=3, mode="gta", apx_min=2, gta_window=5, seed=4)
    full = train(digits, cfg, out_dir=tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train(digits, cfg, out_dir=tmp_path / "cut", interrupt_after=50)
    arrays, meta = load_npz(tmp_path / "cut" / "checkpoint.npz")
    assert meta["iteration"] == 50 and not meta["finished"]
    with pytest.raises(KeyboardInterrupt):  # a second interruption, resumed again
        train(digits, cfg, out_dir=tmp_path / "cut", resume=True, interrupt_after=7)
    resumed = train(digits, cfg, out_dir=tmp_path / "cut", resume=True)
    a, _ = load_model(tmp_path / "full" / "model.npz")
    b, _ = load_model(tmp_path / "cut" / "model.npz")
    assert all(np.array_equal(x, y) for x, y in zip(a.weights + a.biases, b.weights + b.biases))
    assert resumed["hits"] == full["hits"] and resumed["gta"]["trajectory"] == full["gta"]["trajectory"]
    on_disk = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert on_disk["test_accuracy"] == full["test_accuracy"] and on_disk["config"]["mode"] == "gta"
    leftovers = [p.name for p in (tmp_path / "cut").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    its, _ = load_npz(tmp_path / "cut" / "iterations.npz")
    assert its["hits"].shape == (full["iterations_run"], 2, 3) and its["hits"].sum() == full["hits"]
    print(f"interrupted at 50 and 57 of {full['iter_max']} iterations, resumed twice: weights, "
          f"{full['hits']} hits and GTA trajectory identical to the uninterrupted run")
    other = TrainConfig(hidden=(16,), epochs=3, mode="gta", apx_min=3, gta_window=5, seed=4)
    with pytest.raises(CheckpointError, match="apx_min"):
        train(digits, other, out_dir=tmp_path / "cut", resume=True)


def test_config_validation():
    for kw, msg in ((dict(mode="uniform"), "needs tuning bits"), (dict(mode="uniform", tuning_bits=23), "0..22"),
                    (dict(mode="gta"), "apx-min"), (dict(mode="bogus"), "unknown mode"),
                    (dict(mode="uniform", tuning_bits=1, backend="native"), "exact float32 only"),
                    (dict(epochs=0), "epochs"), (dict(phases=("sideways",)), "unknown phase")):
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**kw)
    with pytest.raises(TypeError, match="--tuning-bits"):   # the spec's check: a bool is no count
        TrainConfig(mode="uniform", tuning_bits=True)
    p = TrainConfig.from_preset("paper")
    assert (p.lr, p.momentum, p.batch_size, p.dropout) == (0.001, 0.1, 10, 0.5)
    print("7 invalid configurations and a bool tuning-bit count rejected; paper preset = lr 0.001, momentum 0.1, batch 10")


def _same(a, b) -> bool:
    """Equal values of one TrainState field, arrays dtype and all (NaN equal to NaN)."""
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
    if isinstance(a, MLP):
        return a.sizes == b.sizes and _same(a.weights + a.biases, b.weights + b.biases)
    if isinstance(a, Counters):
        return (a.geometry == b.geometry
                and all(_same(getattr(a, k), getattr(b, k)) for k in ("products", "hits", "nonzero", "lane")))
    if isinstance(a, GTAController):
        return a.state() == b.state()
    if isinstance(a, list) and a and isinstance(a[0], np.ndarray):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# The checkpoint names written before TrainState existed: resumes of old checkpoints rely on them.
_CHECKPOINT_META = {"config", "sizes", "iteration", "finished", "history", "elapsed", "gta", "epoch_stats"}


def _checkpoint_arrays(n_layers):
    return ({f"{k}{i}" for i in range(n_layers) for k in ("W", "b")} | {f"V{i}" for i in range(2 * n_layers)}
            | {"products", "hits", "nonzero", "lane", "it_products", "it_hits", "it_fast", "it_level",
               "it_error", "it_loss"})


def test_train_state_round_trips_through_a_checkpoint(digits, tmp_path):
    cfg = TrainConfig(hidden=(16, 8), epochs=2, mode="gta", apx_min=2, gta_window=5, gta_stop=False, seed=1)
    sizes = [digits.n_features, 16, 8, digits.n_classes]
    with pytest.raises(KeyboardInterrupt):  # mid-epoch 2: history, epoch stats and GTA window all non-empty
        train(digits, cfg, out_dir=tmp_path, interrupt_after=40)
    state = TrainState.load(tmp_path / "checkpoint.npz", cfg, sizes)
    assert state.iteration == 40 and len(state.history) == 1 and state.epoch_stats["seen"] > 0
    assert state.controller.decisions > 0 and not state.finished and state.elapsed > 0
    state.save(tmp_path / "again.npz", cfg, sizes)
    again = TrainState.load(tmp_path / "again.npz", cfg, sizes)
    for f in fields(TrainState):
        assert _same(getattr(state, f.name), getattr(again, f.name)), f.name
    arrays, meta = load_npz(tmp_path / "again.npz")
    assert set(arrays) == _checkpoint_arrays(3) and set(meta) == _CHECKPOINT_META

    exact = TrainConfig(hidden=(16, 8), epochs=2)    # no controller: meta gta is None
    fresh = TrainState.fresh(exact, sizes, 68)
    fresh.save(tmp_path / "fresh.npz", exact, sizes)
    back = TrainState.load(tmp_path / "fresh.npz", exact, sizes)
    for f in fields(TrainState):
        assert _same(getattr(fresh, f.name), getattr(back, f.name)), f.name
    assert back.controller is None and load_npz(tmp_path / "fresh.npz")[1]["gta"] is None
    with pytest.raises(CheckpointError, match="topology"):
        TrainState.load(tmp_path / "fresh.npz", exact, [digits.n_features, 16, 9, digits.n_classes])
    print(f"{len(fields(TrainState))} TrainState fields identical after save/load, mid-run (GTA) and fresh "
          f"(exact); checkpoint array and meta names unchanged")


def test_resume_with_another_hit_accounting(digits, tmp_path):
    """--hit-accounting changes what a run reports, not what it computes: a checkpoint resumes
    under the other reading, and the counts equal the uninterrupted run's; a field that does
    change the computation (the lanes) is still refused."""
    from dataclasses import replace
    cfg = TrainConfig(hidden=(16,), epochs=2, mode="uniform", tuning_bits=2, seed=3)
    whole = train(digits, cfg)
    with pytest.raises(KeyboardInterrupt):
        train(digits, cfg, out_dir=tmp_path, interrupt_after=40)
    fast = replace(cfg, hit_accounting="fast")
    res = train(digits, fast, out_dir=tmp_path, resume=True)
    for key in ("products", "hits", "bypassed", "fast_rate", "hardware", "test_accuracy"):
        assert res[key] == whole[key], key
    assert res["hit_accounting"] == "fast"
    with pytest.raises(CheckpointError, match="lanes"):
        train(digits, replace(cfg, lanes=8), out_dir=tmp_path, resume=True)
    print(f"resumed at iteration 40 with hit accounting fast: counts and hardware block equal the "
          f"uninterrupted run's ({res['products']} products); --lanes 8 refused")
