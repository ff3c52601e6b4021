"""A multilayer perceptron whose every matmul multiplication runs on a CFPU backend.

Network (paper, Section V-A): fully connected layers, ReLU clamped at 6 on hidden layers,
dropout (0.5 in the paper) on hidden layers during training, softmax cross-entropy on the output.
Weights are stored ``(fan_in, fan_out)`` so that a layer computes ``z = x @ W + b`` on a batch
``x`` of row vectors (the paper's ``W x`` for column vectors).

Three matmuls per layer and training step go through the backend, each with its own
:class:`~canna.spec.config.CFPUConfig` from an :class:`ArithPlan`:

============  ====================  ==================================  =======================
phase         product               operands (a side, b side)           checked by default
============  ====================  ==================================  =======================
forward       ``x @ W``             input, weight                       weight
backward      ``delta @ W.T``       delta, weight                       weight
gradient      ``x.T @ delta``       input, delta                        input (paper: x bounds)
============  ====================  ==================================  =======================

Only these multiplications go through the CFPU, as in the paper; bias additions, ReLU, dropout,
softmax, the loss and the SGD update are plain float32 NumPy. The backward error is not computed
for the first layer (nothing consumes it).
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import numpy as np

from canna.sim.accounting import AccountingOperand, account_matmul, prepare_accounting
from canna.sim.accounting import available as accounting_available
from canna.sim.lanes import LaneArrayTotals
from canna.spec.array import ArrayGeometry
from canna.spec.config import CFPUConfig, EXACT

from .backends import OPERANDS, Backend, checked_matmul, get_backend, nonzero_products

__all__ = ["PHASES", "DEFAULT_CHECKED", "EVAL_BATCH", "LANE_FIELDS", "ArithPlan", "Counters", "MLP", "relu6", "log_softmax",
           "memory_estimate", "memory_limit", "check_memory"]

PHASES = ("forward", "backward", "gradient")
DEFAULT_CHECKED = {"forward": "weight", "backward": "weight", "gradient": "input"}
#: Rows per batch of inference (:meth:`MLP.logits`, :meth:`MLP.evaluate`).
EVAL_BATCH = 2048


def memory_estimate(sizes, batch: int, training: bool) -> int:
    """Bytes that a network of topology ``sizes`` needs at the least, before anything is
    allocated: its float32 weights and biases (in training also their velocities and
    gradients), the float64 draw that initialises the largest weight matrix, and eight float32
    arrays per layer for a ``batch``-row batch (inputs, pre-activations, dropout masks, outputs
    and the matmul's temporaries). Python integers: no overflow for any size."""
    sizes = [int(s) for s in sizes]
    pairs = list(zip(sizes[:-1], sizes[1:]))
    params = sum(i * o + o for i, o in pairs)
    largest = max((i * o for i, o in pairs), default=0)
    return 4 * (3 if training else 1) * params + 8 * largest + 4 * 8 * int(batch) * sum(sizes)


def memory_limit() -> int:
    """This machine's physical memory in bytes (``os.sysconf``); 1 TiB where it cannot be read."""
    try:
        n = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        if n > 0:
            return int(n)
    except (AttributeError, ValueError, OSError):
        pass
    return 1 << 40


def _format_bytes(n: int) -> str:
    if n >= 1 << 70:
        return "over 1 ZiB"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} EiB"


def check_memory(nbytes: int, what: str) -> None:
    """ValueError starting with ``what`` (the option or file to blame) when ``nbytes`` exceed
    :func:`memory_limit`: the allocation could never succeed, so refuse it in one line."""
    limit = memory_limit()
    if nbytes > limit:
        raise ValueError(f"{what}: about {_format_bytes(nbytes)} of memory needed, more than this "
                         f"machine's {_format_bytes(limit)}")


def _check_checked(checked: dict | None) -> dict:
    out = dict(DEFAULT_CHECKED)
    for phase, operand in (checked or {}).items():
        if phase not in OPERANDS:
            raise ValueError(f"unknown phase {phase!r}; known: {', '.join(PHASES)}")
        if operand not in OPERANDS[phase]:
            raise ValueError(f"phase {phase}: checked operand must be one of "
                             f"{', '.join(OPERANDS[phase])}, got {operand!r}")
        out[phase] = operand
    return out


class ArithPlan:
    """CFPU configuration per layer and phase, plus which operand is checked per phase.

    Parameters
    ----------
    configs : list of dict phase -> CFPUConfig, one per layer (missing phases are exact).
    checked : dict phase -> operand name (see :data:`DEFAULT_CHECKED`).
    """

    def __init__(self, configs: list[dict], checked: dict | None = None):
        self.configs = []
        for i, layer in enumerate(configs):
            row = {}
            for phase in PHASES:
                c = layer.get(phase, EXACT)
                if not isinstance(c, CFPUConfig):
                    raise TypeError(f"layer {i} {phase}: expected a CFPUConfig, got {type(c).__name__}")
                row[phase] = c
            self.configs.append(row)
        self.checked = _check_checked(checked)

    @classmethod
    def exact(cls, n_layers: int, checked: dict | None = None) -> "ArithPlan":
        return cls([{} for _ in range(n_layers)], checked)

    @classmethod
    def uniform(cls, n_layers: int, tuning_bits: int | None, policy="b", phases=PHASES,
                checked: dict | None = None) -> "ArithPlan":
        """Every layer and every phase in ``phases`` at ``tuning_bits`` (None: exact)."""
        return cls.per_layer([tuning_bits] * n_layers, policy, phases, checked)

    @classmethod
    def per_layer(cls, bits: list, policy="b", phases=("forward",), checked: dict | None = None) -> "ArithPlan":
        """Layer ``i`` at ``bits[i]`` tuning bits (None: exact) in the given phases."""
        for p in phases:
            if p not in PHASES:
                raise ValueError(f"unknown phase {p!r}; known: {', '.join(PHASES)}")
        rows = []
        for t in bits:
            c = EXACT if t is None else CFPUConfig.approx(t, policy)
            rows.append({p: c for p in phases})
        return cls(rows, checked)

    @property
    def n_layers(self) -> int:
        return len(self.configs)

    def config(self, layer: int, phase: str) -> CFPUConfig:
        return self.configs[layer][phase]

    def checked_right(self, phase: str) -> bool:
        """True when the checked operand is the natural product's right (``b``) side."""
        return self.checked[phase] == OPERANDS[phase][1]

    def bits(self, phase: str = "forward") -> list:
        """Tuning bits per layer for ``phase`` (None where exact)."""
        return [c[phase].tuning_bits if c[phase].enabled else None for c in self.configs]

    def as_dict(self) -> dict:
        return {"checked": dict(self.checked),
                "layers": [{p: c[p].as_dict() for p in PHASES} for c in self.configs]}


#: The lane-array counts :class:`Counters` keeps per layer and phase (the fields of
#: :class:`canna.sim.lanes.LaneArrayTotals`, in order).
LANE_FIELDS = tuple(LaneArrayTotals.__dataclass_fields__)


class Counters:
    """Products, hits and nonzero products (both operands nonzero and finite) per layer and phase
    (int64 arrays ``[layer, phase]``), and, with a ``geometry``, the lane array's accounting of
    every matmul (``lane[layer, phase, field]``, fields :data:`LANE_FIELDS`): exactly what
    :func:`canna.sim.lanes.run_lane_array` reports for it (:mod:`canna.sim.accounting`; a
    backend that ran the array itself, ``MatmulResult.lane``, is checked against it)."""

    def __init__(self, n_layers: int, geometry: ArrayGeometry | None = None):
        self.geometry = geometry
        self.products = np.zeros((n_layers, len(PHASES)), dtype=np.int64)
        self.hits = np.zeros((n_layers, len(PHASES)), dtype=np.int64)
        self.nonzero = np.zeros((n_layers, len(PHASES)), dtype=np.int64)
        self.lane = np.zeros((n_layers, len(PHASES), len(LANE_FIELDS)), dtype=np.int64)
        # prepared weights -> their accounting operand (None: seen once); weak keys, so that a
        # Counters kept over many training steps does not keep each step's transforms alive
        self._prepared = weakref.WeakKeyDictionary()
        #: A list to append ``(layer, phase, a, b, config)`` of every matmul to (copies), or None.
        self.recorder: list | None = None

    def add(self, layer: int, phase: str, products: int, hits: int, nonzero: int = 0) -> None:
        j = PHASES.index(phase)
        self.products[layer, j] += products
        self.hits[layer, j] += hits
        self.nonzero[layer, j] += nonzero

    def counter(self, layer: int, phase: str):
        """``count(a, b, config, result)`` for :func:`~canna.nn.backends.checked_matmul`."""
        return lambda a, b, config, r: self.count(layer, phase, a, b, config, r)

    def count(self, layer: int, phase: str, a, b, config: CFPUConfig, r) -> None:
        """Book the matmul ``a @ b`` (the operands as the backend got them) and its result."""
        if self.recorder is not None:
            self.recorder.append((layer, phase, a.copy(),
                                  (b if isinstance(b, np.ndarray) else b.original).copy(), config))
        if self.geometry is None:
            self.add(layer, phase, r.products, r.hits,
                     nonzero_products(a, b) if r.nonzero is None else r.nonzero)
            return
        operand = self._accounting_operand(b, config)
        if not a.flags.c_contiguous:     # the weight gradient's delta.T: the engine packs rows
            a = np.ascontiguousarray(a)
        t = account_matmul(a, operand, None if isinstance(operand, AccountingOperand) else config,
                           self.geometry)
        self.add(layer, phase, r.products, r.hits, t.products - t.bypassed)   # = nonzero_products
        if t.products != r.products or t.hits != r.hits:
            raise RuntimeError(f"layer {layer + 1} {phase}: the backend counted {r.hits} hits of "
                               f"{r.products} products, the lane model {t.hits} of {t.products}")
        row = [int(getattr(t, f)) for f in LANE_FIELDS]
        if r.lane is not None:
            ran = [int(getattr(r.lane, f)) for f in LANE_FIELDS]
            if ran != row:
                raise RuntimeError(f"layer {layer + 1} {phase}: the array's counters "
                                   f"{dict(zip(LANE_FIELDS, ran))} differ from the accounting "
                                   f"{dict(zip(LANE_FIELDS, row))}")
        self.lane[layer, PHASES.index(phase)] += row

    def _accounting_operand(self, b, config: CFPUConfig):
        """``b`` packed for the accounting engine when these prepared weights come again (an
        evaluation's: packed once for all its batches), else ``b``'s array, which
        :func:`~canna.sim.accounting.account_matmul` packs in the call that accounts it (a
        training step sees each operand once: the weights change after it; a transposed view,
        the backward phase's ``W.T``, is packed from ``W``'s rows)."""
        if isinstance(b, np.ndarray):
            return b
        if b not in self._prepared:      # first sight: not packed for keeps
            self._prepared[b] = None
            return b.original
        packed = self._prepared[b]
        if packed is None:
            if not accounting_available():
                return b.original
            packed = self._prepared[b] = prepare_accounting(b.original, config)
        return packed

    def merge(self, other: "Counters") -> None:
        self.products += other.products
        self.hits += other.hits
        self.nonzero += other.nonzero
        self.lane += other.lane

    @property
    def accounted(self) -> bool:
        return self.geometry is not None

    def totals(self, layer: int | None = None, phase: str | None = None) -> LaneArrayTotals:
        """The lane-array counts of the run, one layer and/or one phase."""
        x = self.lane
        x = x[layer] if layer is not None else x.sum(axis=0)
        x = x[PHASES.index(phase)] if phase is not None else x.sum(axis=0)
        return LaneArrayTotals(**{f: int(v) for f, v in zip(LANE_FIELDS, x)})

    @property
    def nonzero_hit_rate(self) -> float:
        nz = int(self.nonzero.sum())
        return self.total_hits / nz if nz else 0.0

    @property
    def total_products(self) -> int:
        return int(self.products.sum())

    @property
    def total_hits(self) -> int:
        return int(self.hits.sum())

    @property
    def hit_rate(self) -> float:
        return self.total_hits / self.total_products if self.total_products else 0.0

    @property
    def fast_rate(self) -> float | None:
        """Share of products that retire in one cycle (hits + zero/inf/NaN operands); None
        without accounting."""
        return _fast_rate(self.totals()) if self.accounted else None

    def layer_hit_rates(self) -> list[float]:
        p = self.products.sum(axis=1)
        h = self.hits.sum(axis=1)
        return [float(h[i] / p[i]) if p[i] else 0.0 for i in range(len(p))]

    def layer_fast_rates(self) -> list[float] | None:
        if not self.accounted:
            return None
        return [_fast_rate(self.totals(i)) for i in range(self.products.shape[0])]

    def _rates(self, p: int, h: int, layer=None, phase=None) -> dict:
        row = {"products": p, "hits": h, "hit_rate": h / p if p else 0.0}
        if self.accounted:
            t = self.totals(layer, phase)
            row.update(bypassed=t.bypassed, fast_rate=_fast_rate(t))
        return row

    def as_dict(self) -> dict:
        layers = []
        for i in range(self.products.shape[0]):
            row = {"layer": i + 1}
            for j, phase in enumerate(PHASES):
                p, h = int(self.products[i, j]), int(self.hits[i, j])
                if p:
                    row[phase] = self._rates(p, h, i, phase)
            row["total"] = self._rates(int(self.products[i].sum()), int(self.hits[i].sum()), i)
            layers.append(row)
        out = {"products": self.total_products, "hits": self.total_hits,
               "hit_rate": self.hit_rate}
        if self.accounted:
            out.update(bypassed=self.totals().bypassed, fast_rate=self.fast_rate)
        out.update(nonzero_products=int(self.nonzero.sum()), nonzero_hit_rate=self.nonzero_hit_rate,
                   per_layer=layers)
        return out

    def load(self, products, hits, nonzero, lane=None) -> None:
        self.products[...] = products
        self.hits[...] = hits
        self.nonzero[...] = nonzero
        if lane is not None:
            self.lane[...] = lane


def _counter(counters: Counters | None, layer: int, phase: str):
    return None if counters is None else counters.counter(layer, phase)


def _fast_rate(t: LaneArrayTotals) -> float:
    return (t.hits + t.bypassed) / t.products if t.products else 0.0


def relu6(z: np.ndarray) -> np.ndarray:
    return np.clip(z, 0.0, 6.0)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax (float64-safe)."""
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


@dataclass
class _Cache:
    inputs: list      # input of each layer (after dropout)
    pre: list         # pre-activations z of each layer
    masks: list       # dropout masks (scaled) of hidden layers, or None
    prepared: list    # per layer: the forward phase's prepared weights the backward reuses, or None


class MLP:
    """Fully connected network ``sizes[0] -> ... -> sizes[-1]``, He-initialised from ``seed``."""

    def __init__(self, sizes, seed: int = 0):
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or any(s <= 0 for s in sizes):
            raise ValueError(f"topology needs at least 2 positive layer sizes, got {sizes}")
        self.sizes = sizes
        rng = np.random.default_rng(seed)
        self.weights = [(rng.standard_normal((i, o)) * np.sqrt(2.0 / i)).astype(np.float32)
                        for i, o in zip(sizes[:-1], sizes[1:])]
        self.biases = [np.zeros(o, dtype=np.float32) for o in sizes[1:]]

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"input shape mismatch: network takes {self.sizes[0]} features, got {x.shape}")
        return x.astype(np.float32, copy=False)

    def forward(self, x, plan: ArithPlan, backend: Backend, counters: Counters | None = None, *,
                dropout: float = 0.0, rng: np.random.Generator | None = None, prepared=None,
                carried: dict | None = None):
        """Logits for the batch ``x``; returns ``(logits, cache)``.

        ``dropout`` > 0 (training) drops hidden activations with inverted scaling, drawn from
        ``rng``. ``prepared`` (inference) is a list of per-layer prepared weights or None.
        ``carried`` (training): layer -> ``(prepared, columns, nonzero)`` that the previous
        step's update left (:func:`canna.nn.train.sgd_step`), used where it was made from these
        very weights for this configuration with what this step needs.
        """
        backend = get_backend(backend)
        h = self._check_input(x)
        cache = _Cache([], [], [], [None] * self.n_layers)
        right = plan.checked_right("forward")
        for i in range(self.n_layers):
            cfg = plan.config(i, "forward")
            w = prepared[i] if (prepared is not None and prepared[i] is not None and right) else self.weights[i]
            if prepared is None and backend.strided and backend.prepare is not None and right:
                # training: prepared here, so the backward may reuse it and the transform counts
                # the nonzero weights on the way
                share, counted = self._shares_transform(plan, i), counters is not None
                c = (carried or {}).get(i)
                if (c is not None and c[0].original is w and c[0].config == cfg and c[1] >= share
                        and c[2] >= counted):
                    w = c[0]
                else:
                    w = backend.prepare(w, cfg, columns=share, nonzero=counted)
                cache.prepared[i] = w if share else None
            r = checked_matmul(backend, h, w, cfg, right, _counter(counters, i, "forward"))
            cache.inputs.append(h)
            z = r.value + self.biases[i]
            cache.pre.append(z)
            if i == self.n_layers - 1:
                return z, cache
            h = relu6(z)
            mask = None
            if dropout > 0.0:
                keep = 1.0 - dropout
                mask = ((rng.random(h.shape) < keep) / keep).astype(np.float32)
                h = h * mask
            cache.masks.append(mask)
        raise AssertionError("unreachable")

    @staticmethod
    def _shares_transform(plan: ArithPlan, i: int) -> bool:
        """Whether layer ``i``'s forward and backward phases use one transform of ``W`` (the
        backward multiplies by ``W.T``): both check the weight under the same configuration
        (on a backend that takes transposed views, :attr:`Backend.strided`, with a ``prepare``)."""
        return (i > 0 and plan.checked_right("forward") and plan.checked_right("backward")
                and plan.config(i, "forward") == plan.config(i, "backward"))

    def backward(self, logits, cache: _Cache, y, plan: ArithPlan, backend: Backend,
                 counters: Counters | None = None):
        """Gradients of the mean softmax cross-entropy; returns ``(grads_w, grads_b, loss)``."""
        backend = get_backend(backend)
        n = logits.shape[0]
        logp = log_softmax(logits)
        loss = float(-logp[np.arange(n), y].mean())
        delta = np.exp(logp)
        delta[np.arange(n), y] -= 1.0
        delta = (delta / n).astype(np.float32)
        gw = [None] * self.n_layers
        gb = [None] * self.n_layers
        # the gradient's checked input prepared here, so the transform counts its nonzero elements
        prepare_x = (backend.prepare is not None and backend.strided and backend.matmul_t is not None
                     and not plan.checked_right("gradient"))
        for i in reversed(range(self.n_layers)):
            cfg = plan.config(i, "gradient")
            x = cache.inputs[i]
            px = backend.prepare(x, cfg, nonzero=counters is not None) if prepare_x and cfg.enabled else None
            r = checked_matmul(backend, x.T, delta, cfg, plan.checked_right("gradient"),
                               _counter(counters, i, "gradient"), px)
            gw[i] = r.value
            gb[i] = delta.sum(axis=0)
            if i == 0:
                break
            cfg = plan.config(i, "backward")
            shared = cache.prepared[i]
            w_t = shared.T if shared is not None and shared.config == cfg else None
            r = checked_matmul(backend, delta, self.weights[i].T if w_t is None else w_t, cfg,
                               plan.checked_right("backward"), _counter(counters, i, "backward"))
            z = cache.pre[i - 1]
            d = r.value * ((z > 0.0) & (z < 6.0))
            if cache.masks[i - 1] is not None:
                d = d * cache.masks[i - 1]
            delta = d.astype(np.float32)
        return gw, gb, loss

    def logits(self, x, plan: ArithPlan, backend, counters: Counters | None = None,
               batch: int = EVAL_BATCH) -> np.ndarray:
        """Inference logits of ``x`` under ``plan`` (forward phase), in batches of ``batch``."""
        backend = get_backend(backend)
        x = self._check_input(x)
        for i in range(self.n_layers):
            backend.check(plan.config(i, "forward"))
        prepared = None
        if backend.prepare is not None and plan.checked_right("forward"):
            prepared = [backend.prepare(w, plan.config(i, "forward")) for i, w in enumerate(self.weights)]
        out = [self.forward(x[s:s + batch], plan, backend, counters, prepared=prepared)[0]
               for s in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.sizes[-1]), np.float32)

    def evaluate(self, x, y, plan: ArithPlan, backend, counters: Counters | None = None,
                 batch: int = EVAL_BATCH, return_logits: bool = False) -> dict:
        """Classification error and mean cross-entropy of ``(x, y)`` under ``plan`` (forward)."""
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        z = self.logits(x, plan, backend, counters, batch)
        wrong = int(np.count_nonzero(z.argmax(axis=1) != y))
        loss = float(-log_softmax(z)[np.arange(len(y)), y].mean())
        r = {"error": wrong / len(y), "accuracy": 1.0 - wrong / len(y), "loss": loss,
             "samples": int(len(y))}
        if return_logits:
            r["logits"] = z
        return r

    # -- persistence ---------------------------------------------------------------------------

    def arrays(self) -> dict:
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"W{i}"] = w
            out[f"b{i}"] = b
        return out

    @classmethod
    def from_arrays(cls, sizes, arrays) -> "MLP":
        m = cls(sizes)
        for i in range(m.n_layers):
            w = np.asarray(arrays[f"W{i}"], dtype=np.float32)
            b = np.asarray(arrays[f"b{i}"], dtype=np.float32)
            if w.shape != m.weights[i].shape or b.shape != m.biases[i].shape:
                raise ValueError(f"layer {i + 1}: stored shapes {w.shape}/{b.shape} do not match "
                                 f"topology {sizes}")
            m.weights[i] = w.copy()
            m.biases[i] = b.copy()
        return m
