"""Training PyTorch models on the CFPU: the paper's MLP and a LeNet-5-style CNN, with exact,
uniform and GTA arithmetic (``canna train --framework torch``).

The run is :func:`canna.nn.train.train`'s, in PyTorch: the same :class:`~canna.nn.train.TrainConfig`,
the same shuffle (``(seed, 1, epoch)``), SGD with momentum, validation after every epoch, the
same GTA controller (:func:`~canna.torch.model.follow_gta` sets the level before each step),
the same counters (:class:`~canna.nn.mlp.Counters` with the lane array's accounting), the
same results dict, hardware block and progress bar, and the same checkpoints and resume: a
resumed run takes exactly the steps of the uninterrupted one, bit for bit (the checkpoint holds
the CPU generator that draws the dropout masks). What differs: the weights are PyTorch's
initialisation from ``torch.manual_seed(seed)``, dropout is ``nn.Dropout``, the loss and its
gradient are ``F.cross_entropy``'s. Files in ``out_dir``: ``checkpoint.npz`` (after every epoch,
and on Ctrl-C after the current iteration; :class:`TorchTrainState`), ``model.pt`` (the state
dict), ``iterations.npz`` (the NumPy driver's: per-iteration products/hits/fast products
``[iteration, layer, phase]`` over the CFPU layers, levels, batch errors, losses) and
``results.json``; all written atomically. The loop, its checkpoint points, the per-epoch rows,
the results dict and the files are :class:`canna.nn.train._Run`'s; this module adds the model,
the optimizer, the generator state and the step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from canna.files import atomic_write
from canna.nn.checkpoint import CheckpointError, load_npz, require_finite, save_npz
from canna.nn.datasets import Dataset
from canna.nn.gta import GTAController
from canna.nn.mlp import MLP, Counters
from canna.nn.train import (TrainConfig, _config_differences, _fresh_iterations, _IterationLog,
                            _iteration_shapes, _new_epoch_stats, _Run)

from .conv import CFPUConv2d
from .layers import CFPULinear
from .model import attach_counters, cfpu_layers, follow_gta, set_level

__all__ = ["MODELS", "OUTPUT_FILES", "mlp", "load_numpy_mlp", "lenet", "build_model", "train_step",
           "TorchTrainState", "train_torch"]

MODELS = ("mlp", "lenet")
#: The files a run writes in its ``out_dir``.
OUTPUT_FILES = ("checkpoint.npz", "model.pt", "iterations.npz", "results.json")


def mlp(sizes, dropout: float = 0.0, path: str = "auto") -> nn.Sequential:
    """The paper's MLP: CFPU linear layers, ReLU clamped at 6 and dropout on hidden layers."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(CFPULinear(n_in, n_out, path=path))
        if i < len(sizes) - 2:
            layers += [nn.ReLU6(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def load_numpy_mlp(model: nn.Module, source: MLP) -> nn.Module:
    """Copy the weights and biases of a NumPy :class:`~canna.nn.mlp.MLP` into the CFPU layers of
    ``model`` (``weight = W.T``: PyTorch stores ``(out, in)``); returns ``model``."""
    layers = cfpu_layers(model)
    if len(layers) != source.n_layers:
        raise ValueError(f"the model has {len(layers)} CFPU layers, the MLP {source.n_layers}")
    with torch.no_grad():
        for m, w, b in zip(layers, source.weights, source.biases):
            m.weight.copy_(torch.from_numpy(w.T))
            m.bias.copy_(torch.from_numpy(b))
    return model


def lenet(side: int, n_classes: int, dropout: float = 0.0, path: str = "auto") -> nn.Sequential:
    """A LeNet-5-style CNN on ``side`` x ``side`` grey images: conv 5x5 (6), pool, conv 5x5
    (16), pool, fully connected 120, 84, classes. The second convolution pads by 2 on images
    below 16 pixels (8x8 digits), so that something is left to pool."""
    pad2 = 2 if side < 16 else 0
    s = (side // 2 + 2 * pad2 - 4) // 2
    if s < 1:
        raise ValueError(f"--model lenet: images of {side}x{side} pixels are too small")
    return nn.Sequential(
        CFPUConv2d(1, 6, 5, padding=2, path=path), nn.ReLU(), nn.MaxPool2d(2),
        CFPUConv2d(6, 16, 5, padding=pad2, path=path), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        CFPULinear(16 * s * s, 120, path=path), nn.ReLU(), nn.Dropout(dropout),
        CFPULinear(120, 84, path=path), nn.ReLU(), nn.Dropout(dropout),
        CFPULinear(84, n_classes, path=path))


def _side(n_features: int) -> int:
    side = math.isqrt(n_features)
    if side * side != n_features:
        raise ValueError(f"--model lenet needs square grey images; the dataset has {n_features} features")
    return side


def build_model(kind: str, data: Dataset, cfg: TrainConfig, path: str = "auto") -> tuple[nn.Module, list]:
    """``(model, topology)`` of ``kind`` for ``data``, initialised from ``cfg.seed``: the MLP
    with the NumPy driver's initial weights (:class:`~canna.nn.mlp.MLP`), the CNN with
    PyTorch's after ``torch.manual_seed(seed)``."""
    torch.manual_seed(cfg.seed)
    if kind == "mlp":
        sizes = [data.n_features, *cfg.hidden, data.n_classes]
        return load_numpy_mlp(mlp(sizes, cfg.dropout, path), MLP(sizes, cfg.seed)), sizes
    if kind == "lenet":
        side = _side(data.n_features)
        model = lenet(side, data.n_classes, cfg.dropout, path)
        return model, [f"1x{side}x{side}", *(_layer_name(m) for m in cfpu_layers(model))]
    raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {kind!r}")


def _layer_name(m) -> str:
    if isinstance(m, CFPUConv2d):
        return f"conv{m.kernel_size[0]}x{m.kernel_size[1]}-{m.out_channels}"
    return f"fc-{m.out_features}"


def _inputs(x: np.ndarray, model: nn.Module) -> torch.Tensor:
    """The features as the model takes them: rows, or (n, 1, side, side) images for a CNN."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if isinstance(cfpu_layers(model)[0], CFPUConv2d):
        side = _side(t.shape[1])
        t = t.reshape(-1, 1, side, side)
    return t


def train_step(model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One SGD step (forward, cross-entropy, backward, update) on the model's current plans;
    returns ``(logits, loss)``. What a training-step benchmark times: the CFPU layers set with
    :func:`~canna.torch.model.set_level` (None: exact), counters attached or not."""
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return logits.detach(), float(loss.detach())


def _evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, level: int | None = None,
              policy="b", batch: int = 2048) -> dict:
    """Error and accuracy of inference, exact (plain PyTorch layers, as the NumPy driver
    evaluates with its ``native`` backend) or with the forward phase at ``level``; nothing
    counted."""
    model.eval()
    set_level(model, level, policy, ("forward",))
    counters = [m.counters for m in cfpu_layers(model)]
    for m in cfpu_layers(model):
        m.counters, m.native = None, level is None
    wrong = 0
    with torch.no_grad():
        for s in range(0, len(y), batch):
            z = model(_inputs(x[s:s + batch], model))
            wrong += int((z.argmax(dim=1).numpy() != y[s:s + batch]).sum())
    for m, c in zip(cfpu_layers(model), counters):
        m.counters, m.native = c, False
    model.train()
    n = max(len(y), 1)
    return {"error": wrong / n, "accuracy": 1.0 - wrong / n}


#: The names of the per-iteration arrays, the NumPy driver's (:func:`canna.nn.train._iteration_shapes`).
_ITERATION_ARRAYS = tuple(_iteration_shapes(1, 1))


@dataclass
class TorchTrainState(_IterationLog):
    """Everything a PyTorch training run changes: saved whole in ``checkpoint.npz``, restored
    whole on resume (the NumPy driver's :class:`~canna.nn.train.TrainState`, in PyTorch).

    Arrays: ``model.<name>`` (the state dict), ``opt<i>.<key>`` (the optimizer's state of
    parameter ``i``: SGD's momentum buffer), ``torch_rng`` (the CPU generator, which draws the
    dropout masks; the shuffle needs none, it is drawn from ``(seed, 1, epoch)``), the counters
    ``products``, ``hits``, ``nonzero``, ``lane`` and the per-iteration ``it_products``,
    ``it_hits``, ``it_fast`` ``[iter_max, layer, phase]``, ``it_level``, ``it_error``,
    ``it_loss`` ``[iter_max]`` (as :class:`~canna.nn.train.TrainState`'s). Meta: the run's tag
    (configuration, model, topology, engine path, threads), ``gta`` (the controller),
    ``optimizer`` (its state keys per parameter), ``iteration``, ``finished``, ``history``,
    ``elapsed``, ``epoch_stats``.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    counters: Counters
    controller: GTAController | None
    it_products: np.ndarray
    it_hits: np.ndarray
    it_fast: np.ndarray
    it_level: np.ndarray
    it_error: np.ndarray
    it_loss: np.ndarray
    iteration: int = 0
    finished: bool = False
    history: list = field(default_factory=list)
    elapsed: float = 0.0
    epoch_stats: dict = field(default_factory=_new_epoch_stats)

    def save(self, path, tag: dict) -> None:
        """Write the checkpoint ``path`` (atomically), tagged with ``tag``."""
        arrays = {f"model.{k}": v.detach().numpy() for k, v in self.model.state_dict().items()}
        opt = self.optimizer.state_dict()["state"]
        arrays.update({f"opt{i}.{k}": v.numpy() for i, st in opt.items() for k, v in st.items()})
        c = self.counters
        arrays.update(torch_rng=torch.get_rng_state().numpy(), products=c.products, hits=c.hits,
                      nonzero=c.nonzero, lane=c.lane, **{n: getattr(self, n) for n in _ITERATION_ARRAYS})
        meta = {**tag, "gta": None if self.controller is None else self.controller.state(),
                "optimizer": {str(i): sorted(st) for i, st in opt.items()},
                "iteration": self.iteration, "finished": self.finished, "history": self.history,
                "elapsed": self.elapsed, "epoch_stats": self.epoch_stats}
        save_npz(path, arrays, meta)

    def _shapes(self, params: dict, opt_keys: dict) -> dict:
        """name -> shape of every array a checkpoint of this run holds."""
        plist = list(self.model.parameters())
        shapes = {f"model.{k}": tuple(v.shape) for k, v in params.items()}
        shapes.update({f"opt{i}.{k}": tuple(plist[i].shape) for i, keys in opt_keys.items() for k in keys})
        shapes["torch_rng"] = tuple(torch.get_rng_state().shape)
        shapes.update({n: getattr(self.counters, n).shape for n in ("products", "hits", "nonzero", "lane")})
        shapes.update({n: getattr(self, n).shape for n in _ITERATION_ARRAYS})
        return shapes

    def load(self, path, tag: dict) -> None:
        """Replace this (fresh) state by checkpoint ``path``'s; CheckpointError naming the file
        when it was made by another driver, configuration (fields that only change reports
        aside), model, topology or engine, or when an entry is missing, misshapen or (parameters,
        optimizer state) not finite."""
        arrays, meta = load_npz(path)
        _check_tag(path, meta, tag)
        params = dict(self.model.state_dict())
        try:
            opt_keys = {int(i): list(keys) for i, keys in meta["optimizer"].items()}
            for name, shape in self._shapes(params, opt_keys).items():
                if arrays[name].shape != shape:
                    raise CheckpointError(f"{path}: array {name!r} has shape {arrays[name].shape}, "
                                          f"this run needs {shape}")
            require_finite(path, arrays, [n for n in arrays if n.startswith(("model.", "opt"))])
            with torch.no_grad():
                for k, v in params.items():
                    v.copy_(torch.from_numpy(arrays[f"model.{k}"]))
            self.optimizer.load_state_dict({
                "state": {i: {k: torch.from_numpy(arrays[f"opt{i}.{k}"].copy()) for k in ks}
                          for i, ks in opt_keys.items()},
                "param_groups": self.optimizer.state_dict()["param_groups"]})
            torch.set_rng_state(torch.from_numpy(arrays["torch_rng"].astype(np.uint8)))
            self.counters.load(arrays["products"], arrays["hits"], arrays["nonzero"], arrays["lane"])
            for n in _ITERATION_ARRAYS:
                getattr(self, n)[...] = arrays[n]
            self.controller = None if meta["gta"] is None else GTAController.from_state(meta["gta"])
            self.iteration, self.finished = int(meta["iteration"]), bool(meta["finished"])
            self.history, self.elapsed = list(meta["history"]), float(meta["elapsed"])
            self.epoch_stats = {k: meta["epoch_stats"][k] for k in _new_epoch_stats()}
        except KeyError as e:
            raise CheckpointError(f"{path}: no meta entry {e}") from None
        except CheckpointError:
            raise
        except (ValueError, TypeError, IndexError, AttributeError, RuntimeError) as e:
            raise CheckpointError(f"{path}: {' '.join(str(e).split())}") from None
        if not 0 < self.iteration <= len(self.it_products):
            raise CheckpointError(f"{path}: iteration {self.iteration} is outside 1..{len(self.it_products)}")


def _check_tag(path, meta: dict, tag: dict) -> None:
    """CheckpointError naming ``path`` unless the checkpoint's tag is ``tag`` (configuration
    fields in :data:`~canna.nn.train._REPORTING_ONLY` may differ, as in the NumPy driver)."""
    if meta.get("framework") != tag["framework"]:
        raise CheckpointError(f"{path}: not a checkpoint of --framework torch (the NumPy driver's? "
                              "resume it without --framework torch)")
    diff = _config_differences(meta.get("config"), tag["config"])
    diff += [f"{k}: {meta.get(k)!r} vs {v!r}" for k, v in tag.items()
             if k not in ("framework", "config") and meta.get(k) != v]
    if diff:
        raise CheckpointError(f"{path}: checkpoint was made with a different configuration ({', '.join(diff)})")


class _TorchRun(_Run):
    """One call of :func:`train_torch`: the model, its :class:`TorchTrainState` and the step;
    the rest is :class:`canna.nn.train._Run`'s."""

    output_files = OUTPUT_FILES

    def __init__(self, data, cfg, model_kind, out_dir, resume, progress, quiet, path, threads):
        self._start(data, cfg, out_dir, resume, quiet, progress)
        self.model_kind = model_kind
        self.model, self.topology = build_model(model_kind, self.data, cfg, path)
        self.n_layers = len(cfpu_layers(self.model))
        # what the checkpoint must match; --backend does not apply (the engine is canna.torch's)
        self.tag = {"framework": "torch", "config": {**cfg.as_dict(), "backend": "canna.torch"},
                    "model": model_kind, "topology": self.topology, "path": path, "threads": threads}
        self._open(resume)
        self.x_all = _inputs(self.data.x_train, self.model)
        self.y_all = torch.from_numpy(self.data.y_train.astype(np.int64))
        self.perm = (-1, None)      # (epoch, its shuffle)

    def fresh_state(self) -> TorchTrainState:
        cfg = self.cfg
        return TorchTrainState(
            model=self.model, optimizer=torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum),
            counters=Counters(self.n_layers, self.geometry),
            controller=GTAController(cfg.gta_config(), self.iter_max) if cfg.mode == "gta" else None,
            **_fresh_iterations(self.iter_max, self.n_layers))

    def load_state(self) -> TorchTrainState:
        state = self.fresh_state()
        state.load(self.ckpt, self.tag)
        return state

    def write_checkpoint(self, path) -> None:
        self.state.save(path, self.tag)

    def write_model(self) -> None:
        state_dict = self.state.model.state_dict()
        atomic_write(self.out / "model.pt", lambda fh: torch.save(state_dict, fh))

    def head(self) -> dict:
        return {**super().head(), "framework": "torch", "model": self.model_kind}

    def config_dict(self) -> dict:
        return self.tag["config"]

    def evaluate(self, x, y, level: int | None = None) -> dict:
        return _evaluate(self.state.model, x, y, level, self.cfg.policy)

    def step(self) -> tuple[int | None, float]:
        """One mini-batch SGD step, booked in the state; returns ``(level, loss)``."""
        cfg, s = self.cfg, self.state
        epoch, b = divmod(s.iteration, self.ipe)
        if self.perm[0] != epoch:
            self.perm = (epoch, np.random.default_rng([cfg.seed, 1, epoch]).permutation(self.n_train))
        idx = torch.from_numpy(self.perm[1][b * cfg.batch_size:(b + 1) * cfg.batch_size])
        if cfg.mode == "gta":
            level = follow_gta(s.model, s.controller, cfg.policy, cfg.phases)
        else:
            level = self.level()
            set_level(s.model, level, cfg.policy, cfg.phases)
        step = attach_counters(s.model, self.geometry)
        x, y = self.x_all[idx], self.y_all[idx]
        logits, loss = train_step(s.model, s.optimizer, x, y)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged at iteration {s.iteration} (loss {loss}); "
                                     "lower the learning rate")
        s.record(step, level, float((logits.argmax(dim=1) != y).sum()) / len(y), loss, len(y))
        return level, loss


def train_torch(data: Dataset, cfg: TrainConfig, *, model_kind: str = "mlp", out_dir=None,
                resume: bool = False, progress: bool = False, quiet: bool = True, path: str = "auto",
                threads: int | None = 1, interrupt_after: int | None = None) -> dict:
    """Train ``model_kind`` on ``data`` under ``cfg`` in PyTorch; returns the results dict (the
    NumPy driver's keys, plus ``framework`` and ``model``; the trained model in
    ``results["_model"]``) and writes the files to ``out_dir``. ``resume`` continues from
    ``out_dir/checkpoint.npz``. ``threads``: PyTorch's intra-op threads and NumPy's BLAS
    threads during the run (None: leave them; on this 2-core machine under load two threads
    made an 8x8 unfold 90x and a 32 x 500 x 500 GEMM 12x slower than one).

    As in :func:`canna.nn.train.train`: on Ctrl-C (or, for tests, after ``interrupt_after``
    iterations of this call) the current iteration finishes, a checkpoint is written and
    KeyboardInterrupt propagates."""
    args = (data, cfg, model_kind, out_dir, resume, progress, quiet, path, threads, interrupt_after)
    if threads is None:
        return _train_torch(*args)
    from threadpoolctl import threadpool_limits    # a dependency of scikit-learn
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads, user_api="blas"):
            return _train_torch(*args)
    finally:
        torch.set_num_threads(before)


def _train_torch(data, cfg, model_kind, out_dir, resume, progress, quiet, path, threads, interrupt_after) -> dict:
    run = _TorchRun(data, cfg, model_kind, out_dir, resume, progress, quiet, path, threads)
    return run.drive(f"{cfg.mode} {cfg.dataset} torch {model_kind}", interrupt_after)


def run_train_cli(args) -> int:
    """``canna train --framework torch``: the NumPy driver's command (options checked before any
    loading, ``--baseline``, ``--resume``, summary and results JSON) on :func:`train_torch`."""
    from canna.nn.cli import run_training

    def train(data, cfg, **kw):
        return train_torch(data, cfg, model_kind=args.model, **kw)
    return run_training(args, train, OUTPUT_FILES, "model.pt")
