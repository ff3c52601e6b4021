"""Inference approximation: layer-based (paper Algorithm 2) and uniform, on a trained network.

Only the forward matmuls run approximately here (inference); the checked operand is the
forward phase's (the weight by default).

Sensitivity analysis (Algorithm 2, lines 4-8)
    For each layer ``i``: layer ``i`` at maximum approximation (``apx_max`` = 0 tuning bits), all
    other layers exact, on the *validation* data. ``C_i`` measures how far that network is from
    the all-exact one by ``metric``: ``kl`` (default: mean KL divergence of its softmax outputs
    from the exact network's; always >= 0 and resolves differences that the classification
    error of a small validation set cannot), ``loss`` (increase of the mean cross-entropy) or
    ``error`` (increase of the classification error, the paper's error_estimation). Negative
    increases count as 0. The vector is normalised so that its
    maximum is 1, like the paper's Table V; if no layer is sensitive at all, every ``C_i`` is 1.
    Where the outputs are not finite (float32 overflow of the logits) the KL divergence or loss
    is NaN or infinite: such a layer counts as infinitely sensitive (``C_i`` = 1, every finite
    one 0), and the results hold ``null`` with a ``<name>_note`` for each such value (results
    files are strict JSON).

Selective approximation (lines 9-15)
    A configuration is one hardware level ``m`` (tuning bits of the most sensitive layer):
    layer ``i`` gets ``clip(m - round(spread * (1 - C_i)), 0, 22)`` tuning bits, so less
    sensitive layers are approximated more deeply. ``spread = 3`` reproduces the paper's Table II
    (sensitivities 1, .52, .34, .89 -> m, m-1, m-2, m). ``m`` runs from 0 (most approximate) up;
    repeated configurations are skipped; the first whose *validation* error exceeds the exact
    network's by at most ``qos`` is chosen (if none does, the exact network is). Only then is the
    chosen configuration evaluated on the *test* data (the paper's listing evaluates test data
    inside the search loop; we keep the test set out of the selection).

Uniform inference approximation (for comparison)
    Every layer at ``t`` tuning bits, ``t = 0 .. 22``, first ``t`` meeting the QoS on validation.
"""
from __future__ import annotations

import math

import numpy as np

from canna.spec.config import MAX_TUNING_BITS

from canna.sim.savings import default_energy_model, hardware_block

from .backends import get_backend
from .checkpoint import finite_or_null
from .datasets import Dataset
from .mlp import MLP, ArithPlan, Counters, log_softmax

__all__ = ["sensitivity", "layer_bits", "search", "run_inference", "METRICS"]

METRICS = ("kl", "loss", "error")
_OVERFLOW = "the network's float32 logits overflowed on validation data"


def _evaluate(model: MLP, x, y, bits, backend, policy, checked, logits=False,
              geometry=None) -> tuple[dict, Counters]:
    plan = ArithPlan.per_layer(list(bits), policy, ("forward",), checked)
    c = Counters(model.n_layers, geometry)
    r = model.evaluate(x, y, plan, backend, c, return_logits=logits)
    return r, c


def _kl(ref_logits, logits) -> float:
    lp = log_softmax(ref_logits.astype(np.float64))
    lq = log_softmax(logits.astype(np.float64))
    return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())


def sensitivity(model: MLP, x_val, y_val, backend="golden-fast", *, policy="b", checked=None,
                metric: str = "kl", apx_max: int = 0, geometry=None) -> dict:
    """Per-layer sensitivity to approximation, normalised to max 1 (see module docstring);
    with a ``geometry`` each layer's row also has its fast rate."""
    if metric not in METRICS:
        raise ValueError(f"unknown sensitivity metric {metric!r}; known: {', '.join(METRICS)}")
    L = model.n_layers
    base, _ = _evaluate(model, x_val, y_val, [None] * L, backend, policy, checked, logits=True)
    per_layer, raw = [], []
    for i in range(L):
        bits = [None] * L
        bits[i] = apx_max
        r, c = _evaluate(model, x_val, y_val, bits, backend, policy, checked, logits=True,
                         geometry=geometry)
        kl = _kl(base["logits"], r["logits"])
        inc = kl if metric == "kl" else r[metric] - base[metric]
        raw.append(max(inc, 0.0) if math.isfinite(inc) else math.inf)
        row = {"layer": i + 1, "error": r["error"], "loss": r["loss"], "kl": kl, "increase": inc,
               "hit_rate": c.layer_hit_rates()[i]}
        if c.accounted:
            row["fast_rate"] = c.layer_fast_rates()[i]
        per_layer.append(finite_or_null(row, _OVERFLOW))
    base.pop("logits")
    top = max(raw)
    if math.isinf(top):
        normalized = [1.0 if math.isinf(v) else 0.0 for v in raw]
    else:
        normalized = [v / top for v in raw] if top > 0 else [1.0] * L
    res = {"metric": metric, "apx_max": apx_max, "base": finite_or_null(base, _OVERFLOW),
           "per_layer": per_layer, "raw": [v if math.isfinite(v) else None for v in raw],
           "normalized": normalized}
    if math.isinf(top):
        res["raw_note"] = f"null: not finite ({_OVERFLOW}); that layer counts as infinitely sensitive"
    return res


def layer_bits(level: int, sens, spread: float = 3.0) -> list[int]:
    """Tuning bits per layer for hardware level ``level`` and normalised sensitivities."""
    return [int(np.clip(level - round(spread * (1.0 - s)), 0, MAX_TUNING_BITS)) for s in sens]


def search(model: MLP, x_val, y_val, qos: float, candidates, backend="golden-fast", *,
           policy="b", checked=None, exact_error: float | None = None, geometry=None) -> dict:
    """Try ``candidates`` (per-layer bit lists, most approximate first) on validation data; the
    first with ``val_error - exact_error <= qos`` wins (else the exact network, ``bits`` None).
    With a ``geometry`` every trace row also has its fast rate."""
    L = model.n_layers
    if exact_error is None:
        exact_error = _evaluate(model, x_val, y_val, [None] * L, backend, policy, checked)[0]["error"]
    trace, seen = [], set()
    for level, bits in candidates:
        bits = tuple(bits)
        if bits in seen:
            continue
        seen.add(bits)
        r, c = _evaluate(model, x_val, y_val, bits, backend, policy, checked, geometry=geometry)
        added = r["error"] - exact_error
        ok = added <= qos + 1e-12
        trace.append({"level": level, "bits": list(bits), "val_error": r["error"],
                      "added_error": added, "hit_rate": c.hit_rate, "meets_qos": ok})
        if c.accounted:
            trace[-1]["fast_rate"] = c.fast_rate
        if ok:
            return {"bits": list(bits), "level": level, "val_error": r["error"], "trace": trace}
    return {"bits": None, "level": None, "val_error": exact_error, "trace": trace}


def _test_report(model: MLP, data: Dataset, bits, backend, policy, checked, exact_test_error,
                 geometry=None) -> dict:
    """Test accuracy, counters and (with a ``geometry``) the hardware block of ``bits``."""
    L = model.n_layers
    r, c = _evaluate(model, data.x_test, data.y_test, bits if bits is not None else [None] * L,
                     backend, policy, checked, geometry=geometry)
    out = {"test_accuracy": r["accuracy"], "test_error": r["error"],
           "quality_loss": r["error"] - exact_test_error, **c.as_dict(),
           "layer_hit_rates": c.layer_hit_rates()}
    if geometry is not None:
        out["layer_fast_rates"] = c.layer_fast_rates()
        out["hardware"] = hardware_block(c.totals(), geometry, *default_energy_model())
    return out


def run_inference(model: MLP, data: Dataset, qos: float, backend="golden-fast", *, policy="b",
                  checked=None, metric: str = "kl", spread: float = 3.0,
                  modes=("layer", "uniform"), geometry=None) -> dict:
    """Sensitivity analysis, layer-based and/or uniform search on validation, test evaluation.

    ``qos``: maximum added classification error as a fraction (0.01 = 1 percentage point).
    ``geometry`` (an :class:`~canna.spec.array.ArrayGeometry`): account the test evaluation of
    the exact network and of each chosen configuration on that lane array (a ``hardware`` block
    in each); None: no accounting.
    """
    backend = get_backend(backend, geometry)
    if not qos >= 0:
        raise ValueError(f"QoS (maximum added error) must be >= 0, got {qos!r}")
    for m in modes:
        if m not in ("layer", "uniform"):
            raise ValueError(f"unknown inference mode {m!r}; known: layer, uniform")
    L = model.n_layers
    exact_val, _ = _evaluate(model, data.x_val, data.y_val, [None] * L, backend, policy, checked)
    exact_test, exact_c = _evaluate(model, data.x_test, data.y_test, [None] * L, backend, policy,
                                    checked, geometry=geometry)
    res = {"command": "infer", "qos": qos, "policy": str(policy), "backend": backend.name,
           "checked": dict(ArithPlan.exact(1, checked).checked),
           "exact_val_error": exact_val["error"], "exact_test_accuracy": exact_test["accuracy"],
           "exact_test_error": exact_test["error"]}
    if geometry is not None:
        res["exact_hardware"] = hardware_block(exact_c.totals(), geometry, *default_energy_model())
    if "layer" in modes:
        sens = sensitivity(model, data.x_val, data.y_val, backend, policy=policy, checked=checked,
                           metric=metric, geometry=geometry)
        cands = [(m, layer_bits(m, sens["normalized"], spread))
                 for m in range(0, MAX_TUNING_BITS + int(np.ceil(spread)) + 1)]
        found = search(model, data.x_val, data.y_val, qos, cands, backend, policy=policy,
                       checked=checked, exact_error=exact_val["error"], geometry=geometry)
        res["sensitivity"] = sens
        res["layer"] = {**found, "spread": spread,
                        **_test_report(model, data, found["bits"], backend, policy, checked,
                                       exact_test["error"], geometry)}
    if "uniform" in modes:
        cands = [(t, [t] * L) for t in range(0, MAX_TUNING_BITS + 1)]
        found = search(model, data.x_val, data.y_val, qos, cands, backend, policy=policy,
                       checked=checked, exact_error=exact_val["error"], geometry=geometry)
        res["uniform"] = {**found, **_test_report(model, data, found["bits"], backend, policy,
                                                  checked, exact_test["error"], geometry)}
    chosen = res.get("layer") or res.get("uniform")
    res["test_accuracy"] = chosen["test_accuracy"]
    res["hit_rate"] = chosen["hit_rate"]
    res["products"] = chosen["products"]
    res["hits"] = chosen["hits"]
    if geometry is not None:
        res["fast_rate"] = chosen["fast_rate"]
        res["hardware"] = chosen["hardware"]
    return res
