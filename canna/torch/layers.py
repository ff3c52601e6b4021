"""CFPU layers for PyTorch: the autograd matmul, ``CFPULinear``, ``CFPUConv2d`` and ``convert``.

Every layer computes its three matmuls as :class:`canna.nn.mlp.MLP` does, each under its own
:class:`~canna.spec.config.CFPUConfig` and with its own checked operand (a :class:`LayerPlan`,
one layer's row of an :class:`~canna.nn.mlp.ArithPlan`):

============  ======================  =====================  ====================
phase         product                 operands (a, b side)   checked by default
============  ======================  =====================  ====================
forward       ``x @ W``               input, weight          weight
backward      ``delta @ W.T``         delta, weight          weight
gradient      ``x.T @ delta``         input, delta           input
============  ======================  =====================  ====================

``W`` is ``weight.T`` (``nn.Linear`` stores ``(out, in)``). A convolution is the same three
matmuls on its im2col patches (:mod:`canna.torch.conv`).
Biases, activations, the loss and the optimiser are plain PyTorch. The backward error is not
computed where autograd does not ask for it (a first layer's input), as in the NumPy driver.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from canna.nn.backends import OPERANDS
from canna.nn.mlp import DEFAULT_CHECKED, PHASES, ArithPlan, Counters
from canna.sim.matmul import prepare
from canna.spec.config import EXACT, CFPUConfig

from . import engine
from .engine import as_numpy

__all__ = ["LayerPlan", "cfpu_matmul", "CFPULinear"]


@dataclass(frozen=True)
class LayerPlan:
    """One layer's CFPU configuration per phase and checked operand per phase (the semantics of
    one row of :class:`~canna.nn.mlp.ArithPlan`, which checks them)."""

    forward: CFPUConfig = EXACT
    backward: CFPUConfig = EXACT
    gradient: CFPUConfig = EXACT
    checked: dict = field(default_factory=lambda: dict(DEFAULT_CHECKED))

    def __post_init__(self):
        plan = ArithPlan([{p: getattr(self, p) for p in PHASES}], self.checked)   # the checks
        object.__setattr__(self, "checked", plan.checked)

    @classmethod
    def of(cls, config, checked: dict | None = None) -> "LayerPlan":
        """A plan from ``config``: None (exact), a CFPUConfig (every phase), a dict phase ->
        CFPUConfig (missing phases exact) or a LayerPlan (``checked`` then overrides its own)."""
        if isinstance(config, LayerPlan):
            return config if checked is None else cls(config.forward, config.backward,
                                                      config.gradient, checked)
        if config is None:
            config = {}
        if isinstance(config, CFPUConfig):
            config = {p: config for p in PHASES}
        if not isinstance(config, dict):
            raise TypeError(f"config: expected a CFPUConfig, a dict phase -> CFPUConfig or a "
                            f"LayerPlan, got {type(config).__name__}")
        unknown = set(config) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown phase {sorted(unknown)[0]!r}; known: {', '.join(PHASES)}")
        return cls(**{p: config.get(p, EXACT) for p in PHASES}, checked=checked or dict(DEFAULT_CHECKED))

    @classmethod
    def uniform(cls, tuning_bits: int | None, policy="b", phases=PHASES,
                checked: dict | None = None) -> "LayerPlan":
        """Every phase in ``phases`` at ``tuning_bits`` (None: exact), as ArithPlan.uniform."""
        row = ArithPlan.uniform(1, tuning_bits, policy, phases, checked)
        return cls(**row.configs[0], checked=row.checked)

    def config(self, phase: str) -> CFPUConfig:
        return getattr(self, phase)

    def checked_right(self, phase: str) -> bool:
        return self.checked[phase] == OPERANDS[phase][1]

    def as_dict(self) -> dict:
        return {"checked": dict(self.checked), **{p: self.config(p).as_dict() for p in PHASES}}


def _phase(left, right, plan: LayerPlan, phase: str, path: str, hook, prepared=None,
           transposed: bool = False):
    """``left @ right`` for ``phase``, with the plan's checked operand as the CFPU's ``b``
    (:func:`canna.nn.backends.oriented`'s rule: else ``(right.T @ left.T).T``); ``prepared``:
    ``b`` already transformed. ``b`` may stay a transposed view (the engine takes it without a
    copy); ``a`` is made contiguous once, for the engine and the counters alike."""
    config = plan.config(phase)
    right_checked = plan.checked_right(phase)
    a, b = (left, right) if right_checked else (right.t(), left.t())
    a = a.contiguous()
    r = engine.matmul(a, b, config, path=path, prepared=prepared, transposed=transposed)
    if hook is not None:
        hook(phase, a, b, config, r)
    return r.value if right_checked else r.value.t()


def _shared_weight(b, plan: LayerPlan, path: str, counting: bool):
    """The weight ``b.T`` (``(out, in)``, contiguous) transformed once for the forward phase
    (as its transpose: no copy) and the backward phase, where both check it under one
    configuration on the ``numpy`` path; else None (each phase transforms its own)."""
    if (engine.resolve_path(path, b) != "numpy" or plan.forward != plan.backward
            or not (plan.checked_right("forward") and plan.checked_right("backward"))):
        return None
    w = b.detach().t()
    if not w.is_contiguous():
        return None
    return prepare(w.numpy(), plan.forward, columns=True, nonzero=counting)


class _CFPUMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, plan, path, hook):
        ctx.save_for_backward(a, b)
        ctx.plan, ctx.path, ctx.hook = plan, path, hook
        ctx.prep = _shared_weight(b, plan, path, hook is not None)
        fwd = None if ctx.prep is None else ctx.prep.T
        # M(W) @ x.T rather than x @ M(W).T: OpenBLAS runs it 1.3-1.5x faster (784x500, batch 32).
        return _phase(a, b, plan, "forward", path, hook, fwd, transposed=fwd is not None)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        plan, path, hook = ctx.plan, ctx.path, ctx.hook
        grad_a = grad_b = None
        if ctx.needs_input_grad[1]:      # the NumPy driver's order: weight gradient first
            grad_b = _phase(a.t(), grad, plan, "gradient", path, hook)
        if ctx.needs_input_grad[0]:
            grad_a = _phase(grad, b.t(), plan, "backward", path, hook, ctx.prep)
        return grad_a, grad_b, None, None, None


def cfpu_matmul(a: torch.Tensor, b: torch.Tensor, config=None, *, path: str = "auto",
                hook=None) -> torch.Tensor:
    """``a @ b`` (float32, 2-D) on the CFPU, differentiable: forward ``a @ b``, backward error
    ``grad @ b.T`` and gradient ``a.T @ grad``, each under its phase's configuration and
    checked operand (``a`` plays the input, ``b`` the weight). ``config``: anything
    :meth:`LayerPlan.of` takes. ``hook(phase, a, b, config, result)`` sees every matmul as the
    engine got it (``b`` checked). ``path``: see :mod:`canna.torch.engine`."""
    return _CFPUMatmul.apply(a, b, LayerPlan.of(config), path, hook)


class _CFPULayer:
    """What CFPULinear and CFPUConv2d share: the plan, the engine path and the counters."""

    def _init_cfpu(self, config, path: str) -> None:
        if path not in engine.PATHS:
            raise ValueError(f"unknown path {path!r}; known: {', '.join(engine.PATHS)}")
        self.plan = LayerPlan.of(config)
        self.path = path
        self.counters: Counters | None = None
        self.index = 0           # this layer's row in the counters
        #: ``hook(layer, phase, a, b, config, result)``, called on every matmul, or None.
        self.hook = None
        #: True: the plain PyTorch layer's arithmetic, nothing counted (the NumPy driver's
        #: ``native`` backend: fast exact float32 inference; a convolution may then use
        #: algorithms whose products are not the CFPU's).
        self.native = False

    def _hook(self):
        counters, index, hook = self.counters, self.index, self.hook
        if counters is None and hook is None:
            return None

        def seen(phase, a, b, config, r):
            if counters is not None:
                counters.count(index, phase, as_numpy(a), engine.numpy_view(b), config, r)
            if hook is not None:
                hook(self, phase, a, b, config, r)
        return seen

    def _matmul(self, x, w):
        return cfpu_matmul(x, w, self.plan, path=self.path, hook=self._hook())


class CFPULinear(nn.Linear, _CFPULayer):
    """``nn.Linear`` whose three matmuls run on the CFPU (``config``: see :meth:`LayerPlan.of`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None, *, config=None, path: str = "auto"):
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_cfpu(config, path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native:
            return nn.Linear.forward(self, x)
        lead = x.shape[:-1]
        y = self._matmul(x.reshape(-1, self.in_features), self.weight.t())
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, plan={_describe(self.plan)}"


def _describe(plan: LayerPlan) -> str:
    return "/".join(plan.config(p).describe() for p in PHASES)
