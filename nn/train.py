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
(per-iteration products/hits/fast products ``[iteration, layer, phase]``, levels, batch errors) and
``results.json``; all written atomically.
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from canna.sim.savings import default_energy_model, hardware_block
from canna.spec.array import DEFAULT_EXACT_CYCLES, DEFAULT_LANES, ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig, check_tuning_bits

from .backends import get_backend
from .checkpoint import (CheckpointError, check_output_dir, load_npz, remove_stale_temporaries, require_finite,
                         save_npz, write_json)
from .datasets import Dataset
from .gta import GTAConfig, GTAController
from .mlp import (EVAL_BATCH, LANE_FIELDS, MLP, PHASES, ArithPlan, Counters, DEFAULT_CHECKED, check_memory,
                  memory_estimate)

__all__ = ["TrainConfig", "TrainState", "PRESETS", "train", "sgd_step", "blas_threads", "load_model", "MODES",
           "OUTPUT_FILES", "HIT_ACCOUNTINGS", "reported_hit_rate"]

MODES = ("exact", "uniform", "gta")
#: What a report calls "the hit rate": ``approx`` hits / products (ours, the default), ``fast``
#: (hits + products with a zero/inf/NaN operand) / products, the share that retires in one cycle.
HIT_ACCOUNTINGS = ("approx", "fast")

#: The files a run writes in its ``out_dir``.
OUTPUT_FILES = ("checkpoint.npz", "model.npz", "iterations.npz", "results.json")

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
    # The lane array every matmul is accounted on (accounting False: none, no hardware block),
    # and how the features are scaled.
    accounting: bool = True
    lanes: int = DEFAULT_LANES
    exact_cycles: int = DEFAULT_EXACT_CYCLES
    input_scale: str = "standard"
    hit_accounting: str = "approx"
    # where exact_cycles came from ("assumed", or make fpga's measurement): reports only
    exact_cycles_source: str = "assumed"

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
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate must be a finite number > 0, got {self.lr}")
        if not math.isfinite(self.momentum):
            raise ValueError(f"momentum must be a finite number, got {self.momentum}")
        if not math.isfinite(self.gta_thr):
            raise ValueError(f"GTA thr must be a finite number, got {self.gta_thr}")
        if not math.isfinite(self.gta_reserve):   # in every mode: it is in the results JSON
            raise ValueError(f"GTA reserve must be a finite number, got {self.gta_reserve}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer (--seed), got {self.seed!r}")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {self.hidden}")
        for p in self.phases:
            if p not in PHASES:
                raise ValueError(f"unknown phase {p!r}; known: {', '.join(PHASES)}")
        ArithPlan.exact(1, self.checked)  # validates checked operands
        self.geometry()                   # validates lanes and exact cycles
        from .datasets import INPUT_SCALES
        if self.input_scale not in INPUT_SCALES:
            raise ValueError(f"--input-scale must be one of {', '.join(INPUT_SCALES)}, got {self.input_scale!r}")
        if self.hit_accounting not in HIT_ACCOUNTINGS:
            raise ValueError(f"--hit-accounting must be one of {', '.join(HIT_ACCOUNTINGS)}, "
                             f"got {self.hit_accounting!r}")
        get_backend(self.backend).check(self.level_config_probe())

    def geometry(self) -> ArrayGeometry | None:
        """The accounted lane array (None when ``accounting`` is off; checked all the same)."""
        for name, v in (("--lanes", self.lanes), ("--exact-cycles", self.exact_cycles)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        geometry = ArrayGeometry(int(self.lanes), int(self.exact_cycles))
        return geometry if self.accounting else None

    def level_config_probe(self):
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


def _new_epoch_stats() -> dict:
    return {"loss": 0.0, "wrong": 0, "seen": 0}


def _iteration_shapes(iter_max: int, n_layers: int) -> dict:
    """name -> shape of the per-iteration arrays of a run's state (see :class:`TrainState`)."""
    counted = (iter_max, n_layers, len(PHASES))
    return {"it_products": counted, "it_hits": counted, "it_fast": counted,
            "it_level": (iter_max,), "it_error": (iter_max,), "it_loss": (iter_max,)}


def _fresh_iterations(iter_max: int, n_layers: int) -> dict:
    """The per-iteration arrays before the first iteration: nothing counted, level -1, NaN error and loss."""
    shapes = _iteration_shapes(iter_max, n_layers)
    return {**{n: np.zeros(shapes[n], np.int64) for n in ("it_products", "it_hits", "it_fast")},
            "it_level": np.full(iter_max, -1, np.int64),
            "it_error": np.full(iter_max, np.nan, np.float32),
            "it_loss": np.full(iter_max, np.nan, np.float32)}


class _IterationLog:
    """The bookkeeping of one iteration, shared by :class:`TrainState` and canna.torch's state:
    both have ``counters``, ``controller``, the per-iteration arrays, ``iteration``,
    ``finished`` and ``epoch_stats``."""

    def record(self, step: Counters, level: int | None, batch_error: float, loss: float,
               batch_size: int) -> None:
        """Book one finished iteration (its counters, level, error and loss) and advance."""
        i = self.iteration
        self.counters.merge(step)
        self.it_products[i] = step.products
        self.it_hits[i] = step.hits
        self.it_fast[i] = step.lane[..., _HITS] + step.lane[..., _BYPASSED]
        self.it_level[i] = -1 if level is None else level
        self.it_error[i] = batch_error
        self.it_loss[i] = loss
        self.epoch_stats["loss"] += loss * batch_size
        self.epoch_stats["wrong"] += int(round(batch_error * batch_size))
        self.epoch_stats["seen"] += batch_size
        if self.controller is not None:
            self.controller.observe(i, batch_error)
            self.finished = self.finished or self.controller.stopped
        self.iteration = i + 1


def _config_differences(stored, mine: dict) -> list:
    """``"field: stored vs mine"`` for every configuration field in which a checkpoint's
    ``stored`` configuration (not a dict: none) differs from ``mine``, :data:`_REPORTING_ONLY` aside."""
    stored = stored if isinstance(stored, dict) else {}
    return [f"{k}: {stored.get(k)!r} vs {mine.get(k)!r}" for k in sorted(set(stored) | set(mine))
            if k not in _REPORTING_ONLY and stored.get(k) != mine.get(k)]


# How a TrainState field is stored in the checkpoint under its own name; fields without a
# mark (model, velocity, counters, controller) are converted explicitly in to_arrays/from_arrays.
_ARRAY = {"checkpoint": "array"}
_META = {"checkpoint": "meta"}


@dataclass
class TrainState(_IterationLog):
    """Everything a training run changes: saved whole in a checkpoint, restored whole on resume.

    Parameters
    ----------
    model : MLP
        The network being trained (arrays ``W<i>``, ``b<i>``).
    velocity : list of ndarray
        SGD momentum, one per weight matrix then one per bias vector (arrays ``V<i>``).
    counters : Counters
        Products, hits and nonzero products so far and the lane array's accounting (arrays
        ``products``, ``hits``, ``nonzero``, ``lane``).
    controller : GTAController or None
        The GTA controller (meta ``gta``); None unless the mode is ``gta``.
    it_products, it_hits, it_fast : ndarray of int64, ``[iter_max, layer, phase]``
        Products, hits and fast products (hits + bypassed) of each iteration.
    it_level : ndarray of int64, ``[iter_max]``
        Tuning bits of each iteration (-1: exact, also for iterations not run yet).
    it_error, it_loss : ndarray of float32, ``[iter_max]``
        Batch error and loss of each iteration (NaN for iterations not run yet).
    iteration : int
        Iterations done (the next one to run).
    finished : bool
        True once the run is over (all iterations, or GTA stopped early).
    history : list of dict
        One row per finished epoch (the results' ``per_epoch``).
    elapsed : float
        Seconds of training up to the last save, over every call that trained this run.
    epoch_stats : dict
        Loss sum, wrong predictions and samples of the epoch in progress.
    """

    model: MLP
    velocity: list
    counters: Counters
    controller: GTAController | None
    it_products: np.ndarray = field(metadata=_ARRAY)
    it_hits: np.ndarray = field(metadata=_ARRAY)
    it_fast: np.ndarray = field(metadata=_ARRAY)
    it_level: np.ndarray = field(metadata=_ARRAY)
    it_error: np.ndarray = field(metadata=_ARRAY)
    it_loss: np.ndarray = field(metadata=_ARRAY)
    iteration: int = field(metadata=_META)
    finished: bool = field(metadata=_META)
    history: list = field(metadata=_META)
    elapsed: float = field(metadata=_META)
    epoch_stats: dict = field(metadata=_META)

    @classmethod
    def fresh(cls, cfg: TrainConfig, sizes: list, iter_max: int) -> "TrainState":
        """The state before the first iteration: weights from ``cfg.seed``, nothing counted."""
        model = MLP(sizes, cfg.seed)
        L = model.n_layers
        return cls(model=model,
                   velocity=[np.zeros_like(p) for p in model.weights + model.biases],
                   counters=Counters(L, cfg.geometry()),
                   controller=GTAController(cfg.gta_config(), iter_max) if cfg.mode == "gta" else None,
                   **_fresh_iterations(iter_max, L),
                   iteration=0, finished=False, history=[], elapsed=0.0,
                   epoch_stats=_new_epoch_stats())

    def to_arrays(self) -> tuple[dict, dict]:
        """``(arrays, meta)`` as :func:`~canna.nn.checkpoint.save_npz` stores them."""
        arrays = {**self.model.arrays(), **{f"V{i}": v for i, v in enumerate(self.velocity)},
                  "products": self.counters.products, "hits": self.counters.hits,
                  "nonzero": self.counters.nonzero, "lane": self.counters.lane}
        meta = {"gta": self.controller.state() if self.controller is not None else None}
        for f in fields(self):
            kind = f.metadata.get("checkpoint")
            if kind is not None:
                (arrays if kind == "array" else meta)[f.name] = getattr(self, f.name)
        return arrays, meta

    @classmethod
    def from_arrays(cls, sizes: list, arrays: dict, meta: dict, geometry: ArrayGeometry) -> "TrainState":
        """Inverse of :meth:`to_arrays` for a network of topology ``sizes``."""
        model = MLP.from_arrays(sizes, arrays)
        counters = Counters(model.n_layers, geometry)
        counters.load(arrays["products"], arrays["hits"], arrays["nonzero"], arrays["lane"])
        stored = {f.name: (arrays if f.metadata["checkpoint"] == "array" else meta)[f.name]
                  for f in fields(cls) if "checkpoint" in f.metadata}
        return cls(model=model,
                   velocity=[arrays[f"V{i}"].copy() for i in range(2 * model.n_layers)],
                   counters=counters,
                   controller=None if meta["gta"] is None else GTAController.from_state(meta["gta"]),
                   **stored)

    def save(self, path, cfg: TrainConfig, sizes: list) -> None:
        """Write the checkpoint ``path`` (atomically), tagged with the run's configuration."""
        arrays, meta = self.to_arrays()
        save_npz(path, arrays, {"config": cfg.as_dict(), "sizes": sizes, **meta})

    @classmethod
    def load(cls, path, cfg: TrainConfig, sizes: list, iter_max: int | None = None) -> "TrainState":
        """The state in checkpoint ``path``; CheckpointError naming the file when it was made by
        another configuration or topology (or for ``iter_max`` other iterations), or when an
        array or meta entry is missing, misshapen or (weights, biases, velocities) not finite."""
        arrays, meta = load_npz(path)
        diff = _config_differences(meta.get("config"), cfg.as_dict())
        if diff:
            raise CheckpointError(f"{path}: checkpoint was made with a different configuration ({', '.join(diff)})")
        if meta.get("sizes") != sizes:
            raise CheckpointError(f"{path}: topology {meta.get('sizes')} does not match {sizes}")
        L = len(sizes) - 1
        require_finite(path, arrays, [*(f"{k}{i}" for i in range(L) for k in "Wb"),
                                      *(f"V{i}" for i in range(2 * L))])
        try:
            state = cls.from_arrays(sizes, arrays, meta, cfg.geometry())
        except KeyError as e:
            raise CheckpointError(f"{path}: no meta entry {e}") from None
        except CheckpointError:
            raise
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: {e}") from None
        params = state.model.weights + state.model.biases
        for i, (v, p) in enumerate(zip(state.velocity, params)):
            if v.shape != p.shape:
                raise CheckpointError(f"{path}: array 'V{i}' has shape {v.shape}, its parameter {p.shape}")
        if iter_max is not None:
            for name, shape in _iteration_shapes(iter_max, L).items():
                if getattr(state, name).shape != shape:
                    raise CheckpointError(f"{path}: array {name!r} has shape {getattr(state, name).shape}, "
                                          f"this run needs {shape} ({iter_max} iterations)")
        return state


_HITS, _BYPASSED = LANE_FIELDS.index("hits"), LANE_FIELDS.index("bypassed")
#: Configuration fields that change what a run reports, not what it computes: a checkpoint made
#: with another value resumes all the same.
_REPORTING_ONLY = ("hit_accounting", "exact_cycles_source")


def reported_hit_rate(res: dict, hit_accounting: str = "approx") -> float | None:
    """The rate a report calls "the hit rate" of a results dict (or one of its rows) under
    ``hit_accounting`` (:data:`HIT_ACCOUNTINGS`)."""
    return res.get("fast_rate") if hit_accounting == "fast" else res.get("hit_rate")


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


class _NoProgress:
    """The bar of a run without one. Not a disabled tqdm: a tqdm object's finalizer runs
    whenever it is collected, and a Ctrl-C landing in it prints "Exception ignored in
    tqdm.__del__" with a traceback (found by tests/nn/test_fault_injection.py)."""

    def update(self, n=1) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total, initial, enabled, desc):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, file=sys.stderr, desc=desc, unit="it", leave=False,
                dynamic_ncols=True)


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


class _Run:
    """What one training call of either driver (:class:`_TrainingRun`, canna.torch's) shares:
    the setup checks, iteration counts, the Ctrl-C loop with its checkpoint points, the
    per-epoch row, the results dict and the output files. A driver adds its state
    (``fresh_state``, ``load_state``, ``write_checkpoint``), ``step``, ``evaluate`` and
    ``write_model``."""

    #: The files the run writes in its ``out_dir``.
    output_files = OUTPUT_FILES
    #: NumPy floating-point error handling during the loop.
    errstate: dict = {}

    def _start(self, data: Dataset, cfg: TrainConfig, out_dir, resume: bool, quiet: bool,
               progress: bool) -> None:
        """The driver-independent setup, checked before the driver builds anything."""
        self.t_start = time.monotonic()
        self.cfg, self.quiet, self.progress = cfg, quiet, progress
        self.geometry = cfg.geometry()
        scale = data.notes.get("input_scale", "standard")
        if scale != cfg.input_scale:
            raise ValueError(f"--input-scale {cfg.input_scale}: the dataset was loaded with input scale {scale}")
        self.data = data.limited(cfg.train_limit, cfg.seed)
        self.n_train = len(self.data.y_train)
        self.ipe = math.ceil(self.n_train / cfg.batch_size)
        self.iter_max = cfg.epochs * self.ipe
        self.out = Path(out_dir) if out_dir is not None else None
        self.ckpt = self.out / "checkpoint.npz" if self.out is not None else None
        if self.out is not None:
            check_output_dir(self.out, self.output_files)
        if resume and (self.ckpt is None or not self.ckpt.is_file()):
            raise CheckpointError(f"--resume: no checkpoint "
                                  f"{'(no --out given)' if self.ckpt is None else self.ckpt} to resume from")

    def _open(self, resume: bool) -> None:
        """The state: the checkpoint's (``resume``) or a fresh one."""
        if self.out is not None:     # what a killed run's atomic writes left
            remove_stale_temporaries(self.out, self.output_files)
        if resume:
            self.state = self.load_state()
            _log(self.quiet, f"resuming {self.ckpt} at iteration {self.state.iteration}/{self.iter_max}")
        else:
            self.state = self.fresh_state()
        self.elapsed_before = self.state.elapsed

    @property
    def done(self) -> bool:
        return self.state.finished or self.state.iteration >= self.iter_max

    @property
    def at_epoch_end(self) -> bool:
        it = self.state.iteration
        return it % self.ipe == 0 or self.state.finished or it == self.iter_max

    def seconds(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t_start

    def level(self) -> int | None:
        """Tuning bits of the next iteration (None: exact)."""
        if self.cfg.mode == "exact":
            return None
        if self.cfg.mode == "uniform":
            return self.cfg.tuning_bits
        return self.state.controller.level

    def drive(self, desc: str, interrupt_after: int | None) -> dict:
        """Train to the end and return the results dict (files written to ``out``; the trained
        model in ``results["_model"]``). On Ctrl-C (or after ``interrupt_after`` iterations of
        this call) the current iteration finishes, a checkpoint is written and KeyboardInterrupt
        propagates."""
        bar = _progress(self.iter_max, self.state.iteration, self.progress, desc)
        calls = 0
        saved_at_boundary = False
        try:
            with _SigintGuard() as guard, np.errstate(**self.errstate):
                while not self.done:
                    level, loss = self.step()
                    calls += 1
                    bar.update(1)
                    if self.progress:
                        bar.set_postfix(loss=f"{loss:.3f}", level="exact" if level is None else level,
                                        refresh=False)
                    if self.at_epoch_end:
                        self.end_epoch(level)
                    if guard.requested or (interrupt_after is not None and calls >= interrupt_after):
                        self.save_checkpoint()         # at an iteration boundary: a consistent state
                        saved_at_boundary = True
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            bar.close()
            where = f"iteration {self.state.iteration}/{self.iter_max}"
            if saved_at_boundary:
                _log(False, f"interrupted at {where}; "
                     + (f"resume with --resume (checkpoint {self.ckpt})" if self.ckpt else "no checkpoint (no --out)"))
            else:
                # A second Ctrl-C lands anywhere, possibly between a weight update and its
                # bookkeeping: saving now could make --resume repeat or skip part of a step.
                _log(False, f"interrupted twice at {where}; no checkpoint "
                     "written, the last one (end of an epoch or a first Ctrl-C) remains")
            raise
        bar.close()
        results = self.results()
        if self.out is not None:
            self.write_files(results)
        results["_model"] = self.state.model
        return results

    def end_epoch(self, level: int | None) -> None:
        """Validate, append the epoch's history row, start a new epoch and save a checkpoint."""
        s, ipe, it = self.state, self.ipe, self.state.iteration
        val = self.evaluate(self.data.x_val, self.data.y_val)
        epoch = slice(it - (it - 1) % ipe - 1, it)
        ep_p, ep_h, ep_f = (int(x[epoch].sum()) for x in (s.it_products, s.it_hits, s.it_fast))
        stats = s.epoch_stats
        s.history.append({
            "epoch": (it - 1) // ipe + 1, "iteration": it,
            "train_loss": stats["loss"] / max(stats["seen"], 1),
            "train_error": stats["wrong"] / max(stats["seen"], 1),
            "val_error": val["error"], "level": level,
            "products": ep_p, "hits": ep_h, "hit_rate": ep_h / ep_p if ep_p else 0.0,
            "fast_rate": ep_f / ep_p if ep_p else 0.0})
        s.epoch_stats = _new_epoch_stats()
        s.finished = s.finished or it == self.iter_max
        self.save_checkpoint()
        row = s.history[-1]
        _log(self.quiet or self.progress, f"epoch {row['epoch']}: loss {row['train_loss']:.4f} "
             f"val error {100 * row['val_error']:.2f}% level {row['level']} "
             f"{_rate_name(self.cfg.hit_accounting)} "
             f"{100 * reported_hit_rate(row, self.cfg.hit_accounting):.1f}%")

    def save_checkpoint(self) -> None:
        if self.ckpt is None:
            return
        self.state.elapsed = self.seconds()
        self.write_checkpoint(self.ckpt)

    def head(self) -> dict:
        """The first entries of the results dict."""
        return {"command": "train"}

    def config_dict(self) -> dict:
        """The configuration as the results report it."""
        return self.cfg.as_dict()

    def results(self) -> dict:
        """The results dict of the run (test and validation accuracy by exact inference)."""
        data, cfg, s = self.data, self.cfg, self.state
        controller = s.controller
        seconds = self.seconds()   # the training, not the evaluations below
        test = self.evaluate(data.x_test, data.y_test)
        val = self.evaluate(data.x_val, data.y_val)
        res = {
            **self.head(),
            "config": self.config_dict(),
            "dataset": data.summary(),
            "topology": self.topology,
            "iterations_run": s.iteration,
            "iter_max": self.iter_max,
            "iterations_per_epoch": self.ipe,
            "test_accuracy": test["accuracy"],
            "test_error": test["error"],
            "val_accuracy": val["accuracy"],
            "test_accuracy_note": "trained model evaluated with exact float32 inference",
            **s.counters.as_dict(),
            "hit_accounting": cfg.hit_accounting,
            "per_epoch": s.history,
            "seconds": seconds,
        }
        if self.geometry is not None:
            res["hardware"] = hardware_block(s.counters.totals(), self.geometry, *default_energy_model())
        final_level = cfg.tuning_bits if cfg.mode == "uniform" else (controller.level if controller else None)
        if final_level is not None:
            res["test_accuracy_final_level"] = self.evaluate(data.x_test, data.y_test, final_level)["accuracy"]
            res["final_level"] = final_level
        if controller is not None:
            res["gta"] = {"trajectory": controller.trajectory, "final_level": controller.level,
                          "stopped_early": controller.stopped, "iter_max": self.iter_max,
                          "definition": "iteration = one mini-batch SGD step; see canna.nn.gta"}
        return res

    def write_files(self, results: dict) -> None:
        """The final checkpoint, the model, ``iterations.npz`` and ``results.json``, each atomically."""
        s, n, out = self.state, self.state.iteration, self.out
        self.save_checkpoint()
        self.write_model()
        save_npz(out / "iterations.npz",
                 {"products": s.it_products[:n], "hits": s.it_hits[:n], "fast": s.it_fast[:n],
                  "level": s.it_level[:n],
                  "batch_error": s.it_error[:n], "loss": s.it_loss[:n]},
                 {"axes": ["iteration", "layer", "phase"], "phases": list(PHASES),
                  "level_exact": -1})
        write_json(out / "results.json", results)


class _TrainingRun(_Run):
    """One call of :func:`train`: the run's fixed setup, its :class:`TrainState`, and the step
    that advances it."""

    # A diverging run overflows before its loss turns NaN: step() reports that as one
    # error (FloatingPointError), so NumPy's overflow warnings would only add stderr lines.
    errstate = {"over": "ignore", "invalid": "ignore"}

    def __init__(self, data: Dataset, cfg: TrainConfig, out_dir, resume: bool, quiet: bool,
                 progress: bool, record_iterations=()):
        self.backend = get_backend(cfg.backend, cfg.geometry())
        self._start(data, cfg, out_dir, resume, quiet, progress)
        self.record_iterations = set(record_iterations)
        self.recorded: list = []     # (iteration, layer, phase, a, b, config) of those iterations
        self.sizes = self.topology = [self.data.n_features, *cfg.hidden, self.data.n_classes]
        self.plans: dict = {}   # level -> ArithPlan, built once per level
        self.carry: dict = {}   # what one step's update prepared for the next (sgd_step)
        check_training_memory(cfg, self.sizes, self.data)
        self._open(resume)

    def fresh_state(self) -> TrainState:
        return TrainState.fresh(self.cfg, self.sizes, self.iter_max)

    def load_state(self) -> TrainState:
        return TrainState.load(self.ckpt, self.cfg, self.sizes, self.iter_max)

    def write_checkpoint(self, path) -> None:
        self.state.save(path, self.cfg, self.sizes)

    def write_model(self) -> None:
        save_npz(self.out / "model.npz", self.state.model.arrays(),
                 {"sizes": self.sizes, "config": self.cfg.as_dict(), "dataset": self.data.summary()})

    @property
    def n_layers(self) -> int:
        return self.state.model.n_layers

    def evaluate(self, x, y, level: int | None = None) -> dict:
        """Error and accuracy of inference: exact (``native``), or with the forward phase at
        ``level`` on the run's backend."""
        if level is None:
            return self.state.model.evaluate(x, y, ArithPlan.exact(self.n_layers), "native")
        fwd = ArithPlan.uniform(self.n_layers, level, self.cfg.policy, ("forward",), self.cfg.checked)
        return self.state.model.evaluate(x, y, fwd, self.cfg.backend)

    def step(self) -> tuple[int | None, float]:
        """One mini-batch SGD step with momentum, booked in the state; returns ``(level, loss)``."""
        cfg, s, L = self.cfg, self.state, self.n_layers
        epoch, b = divmod(s.iteration, self.ipe)
        perm = np.random.default_rng([cfg.seed, 1, epoch]).permutation(self.n_train)
        idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        level = self.level()
        if level not in self.plans:
            self.plans[level] = _plan(cfg, L, level)
        plan = self.plans[level]
        step = Counters(L, self.geometry)
        if s.iteration in self.record_iterations:
            step.recorder = []
        rng = np.random.default_rng([cfg.seed, 2, s.iteration])
        x, y = self.data.x_train[idx], self.data.y_train[idx]
        batch_error, loss = sgd_step(s.model, s.velocity, x, y, plan, self.backend, step, lr=cfg.lr,
                                     momentum=cfg.momentum, dropout=cfg.dropout, rng=rng,
                                     iteration=s.iteration, carry=self.carry)
        if step.recorder is not None:
            self.recorded += [(s.iteration, *call) for call in step.recorder]
        s.record(step, level, batch_error, loss, len(y))
        return level, loss


#: A step whose largest GEMM has fewer multiply-adds runs BLAS on one thread: on the 2-core
#: development machine under load two OpenBLAS threads were 3-76x slower up to 300 x 784 x 500
#: and no faster at 1000 x 784 x 500 (docs/performance.md, "Training step").
ONE_THREAD_MACS = 4e8
_BLAS = []   # the threadpoolctl controller, made on first use (it scans the loaded libraries)


def blas_threads(sizes, batch: int) -> int | None:
    """BLAS threads for a training step of ``batch`` rows on topology ``sizes``: 1 where the
    GEMMs are too small to share (:data:`ONE_THREAD_MACS`), None (the library's own) beyond."""
    largest = max(int(i) * int(o) for i, o in zip(sizes[:-1], sizes[1:]))
    return 1 if batch * largest < ONE_THREAD_MACS else None


def _blas_limit(threads: int | None):
    if threads is None:
        return contextlib.nullcontext()
    if not _BLAS:
        from threadpoolctl import ThreadpoolController   # a dependency of scikit-learn
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=threads, user_api="blas")


def sgd_step(model: MLP, velocity: list, x, y, plan: ArithPlan, backend, counters: Counters | None,
             *, lr: float, momentum: float, dropout: float, rng: np.random.Generator,
             iteration: int = 0, threads: int | str | None = "auto",
             carry: dict | None = None) -> tuple[float, float]:
    """One training step, what :func:`train` runs per mini-batch: the forward pass (dropout
    from ``rng``), the backward error and weight gradients, every matmul on ``backend`` under
    ``plan`` and booked in ``counters`` (None: not counted), then the SGD update with classic
    momentum (``v = momentum * v - lr * g; W += v``, in place; ``velocity``: one per weight
    matrix, then one per bias). Returns ``(batch_error, loss)``; FloatingPointError (naming
    ``iteration``) before any update when the loss is not finite. ``threads``: BLAS threads
    during the step, ``"auto"`` (:func:`blas_threads`), a number, or None (leave them).

    ``carry``: a dict handed to consecutive steps of one run (nothing else may change the
    weights in between). Where the backend can (:attr:`~canna.nn.backends.Backend.update_prepare`),
    the update then also transforms each new weight matrix for the next step's forward phase
    in the same pass, assuming it runs under this ``plan``; a next step under another
    configuration prepares its weights itself."""
    if threads == "auto":
        threads = blas_threads(model.sizes, len(x))
    backend = get_backend(backend)
    with _blas_limit(threads):
        return _sgd_step(model, velocity, x, y, plan, backend, counters, lr, momentum, dropout, rng,
                         iteration, carry)


def _sgd_step(model, velocity, x, y, plan, backend, counters, lr, momentum, dropout, rng, iteration,
              carry):
    logits, cache = model.forward(x, plan, backend, counters, dropout=dropout, rng=rng, carried=carry)
    batch_error = float(np.count_nonzero(logits.argmax(axis=1) != y)) / len(y)
    gw, gb, loss = model.backward(logits, cache, y, plan, backend, counters)
    if not np.isfinite(loss):
        raise FloatingPointError(f"training diverged at iteration {iteration} (loss {loss}); "
                                 f"lower the learning rate")
    L = model.n_layers
    fused = carry is not None and backend.update_prepare is not None and plan.checked_right("forward")
    if carry is not None:
        carry.clear()
    for i, g in enumerate(gw + gb):
        if fused and i < L and plan.config(i, "forward").enabled:
            share, counted = MLP._shares_transform(plan, i), counters is not None
            carry[i] = (backend.update_prepare(model.weights[i], velocity[i], g, momentum, lr,
                                               plan.config(i, "forward"), columns=share,
                                               nonzero=counted), share, counted)
            continue
        velocity[i] *= momentum
        velocity[i] -= lr * g
        if i < L:
            model.weights[i] += velocity[i]
        else:
            model.biases[i - L] += velocity[i]
    return batch_error, loss


def _rate_name(hit_accounting: str) -> str:
    return "fast rate" if hit_accounting == "fast" else "hit rate"


def train(data: Dataset, cfg: TrainConfig, *, out_dir=None, resume: bool = False,
          progress: bool = False, quiet: bool = True, interrupt_after: int | None = None,
          record_iterations=()) -> dict:
    """Train an MLP on ``data`` under ``cfg``; returns the results dict (and writes files to
    ``out_dir`` when given). ``resume`` continues from ``out_dir/checkpoint.npz`` when present.
    The trained network is in ``results["_model"]``; the matmuls of the iterations in
    ``record_iterations`` (operands copied, as the backend got them) in ``results["_recorded"]``
    as ``(iteration, layer, phase, a, b, config)``.

    ``interrupt_after`` (for tests) acts as Ctrl-C after that many iterations of this call.
    On Ctrl-C the current iteration finishes, a checkpoint is written and KeyboardInterrupt
    propagates.
    """
    run = _TrainingRun(data, cfg, out_dir, resume, quiet=quiet, progress=progress,
                       record_iterations=record_iterations)
    results = run.drive(f"{cfg.mode} {cfg.dataset}", interrupt_after)
    if record_iterations:
        results["_recorded"] = run.recorded
    return results


def check_training_memory(cfg: TrainConfig, sizes: list, data: Dataset) -> None:
    """ValueError naming ``--hidden`` (or ``--epochs``) when training topology ``sizes`` on
    ``data`` could not fit in this machine's memory (:func:`~canna.nn.mlp.check_memory`): the
    network, its velocities and gradients and the activations of the larger of a training batch
    and an evaluation batch; and the per-iteration counters of ``cfg.epochs`` epochs."""
    n_train = len(data.y_train)
    batch = max(min(cfg.batch_size, n_train), min(EVAL_BATCH, max(len(data.y_val), len(data.y_test))))
    check_memory(memory_estimate(sizes, batch, training=True),
                 f"--hidden {','.join(map(str, cfg.hidden))}: training topology {sizes}")
    iter_max = cfg.epochs * math.ceil(n_train / cfg.batch_size)
    per_iteration = 3 * 8 * (len(sizes) - 1) * len(PHASES) + 8 + 4 + 4   # it_products/hits/fast/level/error/loss
    check_memory(iter_max * per_iteration, f"--epochs {cfg.epochs}: the per-iteration counters of {iter_max} iterations")


def load_model(path) -> tuple[MLP, dict]:
    """A trained network saved by :func:`train` (``model.npz``) and its meta; CheckpointError
    naming the file (and the array) when it is unreadable, names an impossible or oversized
    topology, lacks an array, or holds a NaN or infinite weight or bias."""
    arrays, meta = load_npz(path)
    if "sizes" not in meta:
        raise CheckpointError(f"{path}: not a canna model file (no topology)")
    sizes = meta["sizes"]
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)):
        raise CheckpointError(f"{path}: meta 'sizes' must list at least 2 positive layer sizes, got {sizes!r}")
    try:
        check_memory(memory_estimate(sizes, EVAL_BATCH, training=False), f"model {path}: topology {sizes}")
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    require_finite(path, arrays, [f"{k}{i}" for i in range(len(sizes) - 1) for k in "Wb"])
    try:
        return MLP.from_arrays(sizes, arrays), meta
    except CheckpointError:
        raise
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None
