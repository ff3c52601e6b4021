"""Training: exact, uniform approximate and GTA, with checkpoints, resume and a results dict.

SGD with classic momentum (``v = momentum * v - lr * g; W += v``) on the mean softmax
cross-entropy of each mini-batch. Every matmul of the step (forward, backward error, weight
gradient) runs on the chosen backend under the :class:`~canna.nn.mlp.ArithPlan` of the current
approximation level; products and hits are counted per layer, phase and iteration.

Reproducibility: the initial weights come from ``seed``, the shuffle of epoch ``e`` from
``(seed, 1, e)`` and the dropout masks of iteration ``i`` from ``(seed, 2, i)``, so a run resumed
from any checkpoint takes exactly the steps the uninterrupted run takes.

Files in ``out_dir``: ``checkpoint.npz`` (after every epoch, and on Ctrl-C after the current
iteration), ``model.npz`` (the trained network, for ``canna infer``), ``iterations.npz``
(per-iteration products/hits ``[iteration, layer, phase]``, levels, batch errors) and
``results.json``; all written atomically.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .backends import get_backend
from .checkpoint import CheckpointError, load_npz, save_npz, write_json
from .datasets import Dataset
from .gta import GTAConfig, GTAController
from .mlp import MLP, PHASES, ArithPlan, Counters, DEFAULT_CHECKED, check_tuning_bits

__all__ = ["TrainConfig", "PRESETS", "train", "load_model", "MODES"]

MODES = ("exact", "uniform", "gta")

#: Hyper-parameter presets. ``paper``: Section V-A (lr 0.001, momentum 0.1, batch 10).
#: ``default``: ours, chosen to reach good accuracy in a few epochs (digits: ~97% in 10 epochs).
PRESETS = {
    "default": {"lr": 0.01, "momentum": 0.9, "batch_size": 32, "dropout": 0.5},
    "paper": {"lr": 0.001, "momentum": 0.1, "batch_size": 10, "dropout": 0.5},
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in checkpoints and results).

    ``mode``: ``exact``, ``uniform`` (``tuning_bits`` for the whole run) or ``gta`` (levels
    ``gta_start .. apx_min``, see :mod:`canna.nn.gta`). ``phases``: which matmul phases are
    approximated (the others run exact). ``checked``: checked operand per phase.
    """

    dataset: str = "digits"
    hidden: tuple = (500, 500)
    mode: str = "exact"
    tuning_bits: int | None = None
    apx_min: int | None = None
    policy: str = "b"
    backend: str = "golden-fast"
    phases: tuple = PHASES
    checked: dict = field(default_factory=lambda: dict(DEFAULT_CHECKED))
    epochs: int = 10
    preset: str = "default"
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 32
    dropout: float = 0.5
    seed: int = 0
    train_limit: int | None = None
    # GTA parameters: the defaults are GTAConfig's, the one place they are chosen.
    gta_window: int = GTAConfig.window
    gta_thr: float = GTAConfig.thr
    gta_reserve: float = GTAConfig.reserve
    gta_start: int = GTAConfig.start
    gta_stop: bool = GTAConfig.stop
    gta_patience: int = GTAConfig.patience

    @classmethod
    def from_preset(cls, preset: str = "default", **overrides) -> "TrainConfig":
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "phases", tuple(self.phases))
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.mode == "uniform":
            if self.tuning_bits is None:
                raise ValueError("mode uniform needs tuning bits (--tuning-bits)")
            check_tuning_bits(self.tuning_bits, "--tuning-bits")
        if self.mode == "gta":
            if self.apx_min is None:
                raise ValueError("mode gta needs the finest allowed level (--apx-min)")
            check_tuning_bits(self.apx_min, "--apx-min")
            self.gta_config()  # validates the GTA parameters
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {self.hidden}")
        for p in self.phases:
            if p not in PHASES:
                raise ValueError(f"unknown phase {p!r}; known: {', '.join(PHASES)}")
        ArithPlan.exact(1, self.checked)  # validates checked operands
        get_backend(self.backend).check(self.level_config_probe())

    def level_config_probe(self):
        from canna.sim.config import CFPUConfig, EXACT
        return EXACT if self.mode == "exact" else CFPUConfig.approx(0, self.policy)

    def gta_config(self) -> GTAConfig:
        return GTAConfig(apx_min=self.apx_min, window=self.gta_window, thr=self.gta_thr,
                         reserve=self.gta_reserve, start=self.gta_start, stop=self.gta_stop,
                         patience=self.gta_patience)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["phases"] = list(self.phases)
        return d


def _plan(cfg: TrainConfig, n_layers: int, level: int | None) -> ArithPlan:
    if level is None:
        return ArithPlan.exact(n_layers, cfg.checked)
    return ArithPlan.uniform(n_layers, level, cfg.policy, cfg.phases, cfg.checked)


class _SigintGuard:
    """Turns Ctrl-C into a flag checked between iterations (main thread only)."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


def _progress(total, initial, enabled, desc):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not enabled, file=sys.stderr, desc=desc,
                unit="it", leave=False, dynamic_ncols=True)


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def train(data: Dataset, cfg: TrainConfig, *, out_dir=None, resume: bool = False,
          progress: bool = False, quiet: bool = True, interrupt_after: int | None = None) -> dict:
    """Train an MLP on ``data`` under ``cfg``; returns the results dict (and writes files to
    ``out_dir`` when given). ``resume`` continues from ``out_dir/checkpoint.npz`` when present.

    ``interrupt_after`` (for tests) acts as Ctrl-C after that many iterations of this call.
    On Ctrl-C the current iteration finishes, a checkpoint is written and KeyboardInterrupt
    propagates.
    """
    t_start = time.monotonic()
    backend = get_backend(cfg.backend)
    data = data.limited(cfg.train_limit, cfg.seed)
    sizes = [data.n_features, *cfg.hidden, data.n_classes]
    n = len(data.y_train)
    ipe = math.ceil(n / cfg.batch_size)
    iter_max = cfg.epochs * ipe
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / "checkpoint.npz" if out is not None else None

    model = MLP(sizes, cfg.seed)
    L = model.n_layers
    velocity = [np.zeros_like(w) for w in model.weights] + [np.zeros_like(b) for b in model.biases]
    counters = Counters(L)
    it_products = np.zeros((iter_max, L, len(PHASES)), np.int64)
    it_hits = np.zeros((iter_max, L, len(PHASES)), np.int64)
    it_level = np.full(iter_max, -1, np.int64)
    it_error = np.full(iter_max, np.nan, np.float32)
    it_loss = np.full(iter_max, np.nan, np.float32)
    history: list[dict] = []
    controller = GTAController(cfg.gta_config(), iter_max) if cfg.mode == "gta" else None
    iteration, elapsed_before, finished = 0, 0.0, False
    epoch_stats = {"loss": 0.0, "wrong": 0, "seen": 0}

    saved_at_boundary = False
    if resume and (ckpt is None or not ckpt.is_file()):
        raise CheckpointError(f"--resume: no checkpoint {'(no --out given)' if ckpt is None else ckpt} "
                              "to resume from")
    if resume:
        arrays, meta = load_npz(ckpt)
        stored = meta.get("config", {})
        mine = cfg.as_dict()
        diff = sorted(k for k in set(stored) | set(mine) if stored.get(k) != mine.get(k))
        if diff:
            raise CheckpointError(f"{ckpt}: checkpoint was made with a different configuration "
                                  f"({', '.join(f'{k}: {stored.get(k)!r} vs {mine.get(k)!r}' for k in diff)})")
        if meta.get("sizes") != sizes:
            raise CheckpointError(f"{ckpt}: topology {meta.get('sizes')} does not match {sizes}")
        model = MLP.from_arrays(sizes, arrays)
        velocity = [arrays[f"V{i}"].copy() for i in range(2 * L)]
        counters.load(arrays["products"], arrays["hits"], arrays["nonzero"])
        it_products[...] = arrays["it_products"]
        it_hits[...] = arrays["it_hits"]
        it_level[...] = arrays["it_level"]
        it_error[...] = arrays["it_error"]
        it_loss[...] = arrays["it_loss"]
        history = meta["history"]
        iteration = int(meta["iteration"])
        finished = bool(meta["finished"])
        elapsed_before = float(meta["elapsed"])
        if controller is not None:
            controller = GTAController.from_state(meta["gta"])
        epoch_stats = dict(meta["epoch_stats"])
        _log(quiet, f"resuming {ckpt} at iteration {iteration}/{iter_max}")

    def level_now():
        if cfg.mode == "exact":
            return None
        if cfg.mode == "uniform":
            return cfg.tuning_bits
        return controller.level

    def save_checkpoint():
        if ckpt is None:
            return
        arrays = {**model.arrays(), **{f"V{i}": v for i, v in enumerate(velocity)},
                  "products": counters.products, "hits": counters.hits, "nonzero": counters.nonzero,
                  "it_products": it_products, "it_hits": it_hits, "it_level": it_level,
                  "it_error": it_error, "it_loss": it_loss}
        meta = {"config": cfg.as_dict(), "sizes": sizes, "iteration": iteration,
                "finished": finished, "history": history,
                "elapsed": elapsed_before + time.monotonic() - t_start,
                "gta": controller.state() if controller is not None else None,
                "epoch_stats": epoch_stats}
        save_npz(ckpt, arrays, meta)

    plans: dict = {}
    calls = 0
    bar = _progress(iter_max, iteration, progress, f"{cfg.mode} {cfg.dataset}")
    try:
        with _SigintGuard() as guard:
            while not finished and iteration < iter_max:
                epoch, b = divmod(iteration, ipe)
                perm = np.random.default_rng([cfg.seed, 1, epoch]).permutation(n)
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                level = level_now()
                plan = plans.get(level) or plans.setdefault(level, _plan(cfg, L, level))
                step = Counters(L)
                rng = np.random.default_rng([cfg.seed, 2, iteration])
                x, y = data.x_train[idx], data.y_train[idx]
                logits, cache = model.forward(x, plan, backend, step, dropout=cfg.dropout, rng=rng)
                batch_error = float(np.count_nonzero(logits.argmax(axis=1) != y)) / len(y)
                gw, gb, loss = model.backward(logits, cache, y, plan, backend, step)
                if not np.isfinite(loss):
                    raise FloatingPointError(f"training diverged at iteration {iteration} (loss {loss}); "
                                             f"lower the learning rate")
                for i, g in enumerate(gw + gb):
                    velocity[i] *= cfg.momentum
                    velocity[i] -= cfg.lr * g
                for i in range(L):
                    model.weights[i] += velocity[i]
                    model.biases[i] += velocity[L + i]
                counters.merge(step)
                it_products[iteration] = step.products
                it_hits[iteration] = step.hits
                it_level[iteration] = -1 if level is None else level
                it_error[iteration] = batch_error
                it_loss[iteration] = loss
                epoch_stats["loss"] += loss * len(y)
                epoch_stats["wrong"] += int(round(batch_error * len(y)))
                epoch_stats["seen"] += len(y)
                if controller is not None:
                    controller.observe(iteration, batch_error)
                iteration += 1
                calls += 1
                bar.update(1)
                if progress:
                    bar.set_postfix(loss=f"{loss:.3f}", level="exact" if level is None else level, refresh=False)
                if controller is not None and controller.stopped:
                    finished = True
                if iteration % ipe == 0 or finished or iteration == iter_max:
                    val = model.evaluate(data.x_val, data.y_val, ArithPlan.exact(L), "native")
                    sl = slice(iteration - (iteration - 1) % ipe - 1, iteration)
                    ep_p, ep_h = int(it_products[sl].sum()), int(it_hits[sl].sum())
                    history.append({
                        "epoch": (iteration - 1) // ipe + 1, "iteration": iteration,
                        "train_loss": epoch_stats["loss"] / max(epoch_stats["seen"], 1),
                        "train_error": epoch_stats["wrong"] / max(epoch_stats["seen"], 1),
                        "val_error": val["error"], "level": None if level is None else level,
                        "products": ep_p, "hits": ep_h, "hit_rate": ep_h / ep_p if ep_p else 0.0})
                    epoch_stats = {"loss": 0.0, "wrong": 0, "seen": 0}
                    finished = finished or iteration == iter_max
                    save_checkpoint()
                    _log(quiet or progress, f"epoch {history[-1]['epoch']}: loss {history[-1]['train_loss']:.4f} "
                         f"val error {100 * val['error']:.2f}% level {history[-1]['level']} "
                         f"hit rate {100 * history[-1]['hit_rate']:.1f}%")
                if guard.requested or (interrupt_after is not None and calls >= interrupt_after):
                    save_checkpoint()         # at an iteration boundary: a consistent state
                    saved_at_boundary = True
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        if saved_at_boundary:
            _log(False, f"interrupted at iteration {iteration}/{iter_max}; "
                 + (f"resume with --resume (checkpoint {ckpt})" if ckpt else "no checkpoint (no --out)"))
        else:
            # A second Ctrl-C lands anywhere, possibly between a weight update and its
            # bookkeeping: saving now could make --resume repeat or skip part of a step.
            _log(False, f"interrupted twice at iteration {iteration}/{iter_max}; no checkpoint "
                 "written, the last one (end of an epoch or a first Ctrl-C) remains")
        raise
    bar.close()

    results = _results(data, cfg, model, counters, history, controller, iteration, iter_max, ipe,
                       sizes, elapsed_before + time.monotonic() - t_start)
    if out is not None:
        save_checkpoint()
        save_npz(out / "model.npz", model.arrays(),
                 {"sizes": sizes, "config": cfg.as_dict(), "dataset": data.summary()})
        save_npz(out / "iterations.npz",
                 {"products": it_products[:iteration], "hits": it_hits[:iteration],
                  "level": it_level[:iteration], "batch_error": it_error[:iteration],
                  "loss": it_loss[:iteration]},
                 {"axes": ["iteration", "layer", "phase"], "phases": list(PHASES),
                  "level_exact": -1})
        write_json(out / "results.json", results)
    results["_model"] = model
    return results


def _results(data, cfg, model, counters, history, controller, iteration, iter_max, ipe, sizes,
             seconds) -> dict:
    L = model.n_layers
    test = model.evaluate(data.x_test, data.y_test, ArithPlan.exact(L), "native")
    val = model.evaluate(data.x_val, data.y_val, ArithPlan.exact(L), "native")
    res = {
        "command": "train",
        "config": cfg.as_dict(),
        "dataset": data.summary(),
        "topology": sizes,
        "iterations_run": iteration,
        "iter_max": iter_max,
        "iterations_per_epoch": ipe,
        "test_accuracy": test["accuracy"],
        "test_error": test["error"],
        "val_accuracy": val["accuracy"],
        "test_accuracy_note": "trained model evaluated with exact float32 inference",
        **counters.as_dict(),
        "per_epoch": history,
        "seconds": seconds,
    }
    final_level = cfg.tuning_bits if cfg.mode == "uniform" else (controller.level if controller else None)
    if final_level is not None:
        fwd = ArithPlan.uniform(L, final_level, cfg.policy, ("forward",), cfg.checked)
        res["test_accuracy_final_level"] = model.evaluate(data.x_test, data.y_test, fwd, cfg.backend)["accuracy"]
        res["final_level"] = final_level
    if controller is not None:
        res["gta"] = {"trajectory": controller.trajectory, "final_level": controller.level,
                      "stopped_early": controller.stopped, "iter_max": iter_max,
                      "definition": "iteration = one mini-batch SGD step; see canna.nn.gta"}
    return res


def load_model(path) -> tuple[MLP, dict]:
    """A trained network saved by :func:`train` (``model.npz``) and its meta."""
    arrays, meta = load_npz(path)
    if "sizes" not in meta:
        raise CheckpointError(f"{path}: not a canna model file (no topology)")
    try:
        return MLP.from_arrays(meta["sizes"], arrays), meta
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None
