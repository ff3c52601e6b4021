"""Layer-based inference approximation (Algorithm 2) and the uniform search."""
import numpy as np
import pytest

from canna.nn.datasets import load_digits
from canna.nn.layerwise import layer_bits, run_inference, search, sensitivity
from canna.nn.train import TrainConfig, train


@pytest.fixture(scope="module")
def trained():
    data = load_digits()
    res = train(data, TrainConfig(hidden=(48, 32), epochs=4, seed=2, backend="native"))
    return data, res["_model"]


def test_layer_bits_reproduce_table_ii():
    sens = [1.0, 0.52, 0.34, 0.89]
    assert layer_bits(6, sens) == [6, 5, 4, 6]
    assert layer_bits(3, sens) == [3, 2, 1, 3]
    assert layer_bits(2, sens) == [2, 1, 0, 2]
    assert layer_bits(0, sens) == [0, 0, 0, 0] and layer_bits(30, sens) == [22] * 4
    print("Table II configurations (m, m-1, m-2, m) reproduced for m = 6, 3, 2")


@pytest.mark.parametrize("metric", ["kl", "loss", "error"])
def test_sensitivity_normalised(trained, metric):
    data, model = trained
    s = sensitivity(model, data.x_val, data.y_val, metric=metric)
    print(f"{metric}: raw {np.round(s['raw'], 5).tolist()} normalised {np.round(s['normalized'], 3).tolist()}")
    assert len(s["normalized"]) == 3 and max(s["normalized"]) == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 for v in s["normalized"])
    if metric == "kl":
        assert all(v > 0 for v in s["raw"])


@pytest.mark.parametrize("qos", [0.0, 0.01, 0.05])
def test_search_meets_qos_on_validation(trained, qos):
    data, model = trained
    res = run_inference(model, data, qos)
    for mode in ("layer", "uniform"):
        r = res[mode]
        chosen = r["trace"][-1] if r["bits"] is not None else None
        print(f"QoS {qos}: {mode} bits {r['bits']} val error {r['val_error']:.4f} "
              f"(exact {res['exact_val_error']:.4f}), {len(r['trace'])} configurations tried, "
              f"test accuracy {r['test_accuracy']:.4f}, hit rate {r['hit_rate']:.3f}")
        assert r["val_error"] - res["exact_val_error"] <= qos + 1e-12
        # Everything tried before the chosen configuration failed the QoS (search order).
        assert all(not t["meets_qos"] for t in r["trace"][:-1])
        if chosen is not None:
            assert chosen["meets_qos"] and chosen["bits"] == r["bits"]
        assert r["products"] == len(data.y_test) * sum(a * b for a, b in zip(model.sizes, model.sizes[1:]))


def test_search_falls_back_to_exact(trained):
    data, model = trained
    r = search(model, data.x_val, data.y_val, -1.0, [(0, [0, 0, 0])])
    assert r["bits"] is None and len(r["trace"]) == 1
    with pytest.raises(ValueError, match="QoS"):
        run_inference(model, data, -0.1)
    print("no candidate meets an impossible QoS: exact network chosen")
