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

import functools
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from canna.nn.backends import OPERANDS
from canna.nn.mlp import DEFAULT_CHECKED, PHASES, ArithPlan, Counters
from canna.sim.matmul import prepare
from canna.spec.config import EXACT, CFPUConfig, Policy

from . import engine, native
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
        # the lean route's configurations: policy b everywhere, one for the phases that check the
        # weight; (forward's, gradient's tuning bits) or None
        lean = (all(c.enabled and c.policy is Policy.B for c in (self.forward, self.gradient))
                and self.backward == self.forward)
        object.__setattr__(self, "_lean_configs", (self.forward.tuning_bits, self.gradient.tuning_bits)
                           if lean else None)

    @property
    def lean_bits(self):
        """``(forward's, gradient's tuning bits)`` where the lean route serves this plan (policy b
        everywhere, one configuration for the phases that check the weight, the default checked
        operands: asked each time, ``checked`` being a dict), else None."""
        return self._lean_configs if self.checked == DEFAULT_CHECKED else None

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
    ``b`` already transformed. ``b`` may stay a transposed view (taken without a copy), and so
    may ``a`` on the ``cpu`` path (the weight gradient's ``delta.T``); elsewhere ``a`` is made
    contiguous once, for the engine and the counters alike. ``transposed``: see
    :func:`canna.torch.engine.matmul` (the ``numpy`` path)."""
    config = plan.config(phase)
    right_checked = plan.checked_right(phase)
    a, b = (left, right) if right_checked else (right.t(), left.t())
    path = engine.resolve_path(path, a)
    if not (path == "cpu" and a.t().is_contiguous()):     # the cpu path scans a transposed view in place
        a = a.contiguous()
    r = engine.matmul(a, b, config, path=path, prepared=prepared, transposed=transposed,
                      nonzero=hook is not None)
    if hook is not None:
        hook(phase, a, b, config, r)
    return r.value if right_checked else r.value.t()


def _shared_weight(weight, plan: LayerPlan, path: str, counting: bool):
    """The weight (``(out, in)``, contiguous) transformed once for the forward phase (as its
    transpose: no copy) and the backward phase, where both check it under one configuration
    on the CPU (``cpu`` and ``numpy`` paths); else None (each phase transforms its own)."""
    if (engine.resolve_path(path, weight) not in ("cpu", "numpy") or plan.forward != plan.backward
            or not (plan.checked_right("forward") and plan.checked_right("backward"))
            or not weight.is_contiguous()):
        return None
    return prepare(weight.detach().numpy(), plan.forward, columns=True, nonzero=counting)


class _CFPULinearFn(torch.autograd.Function):
    """``x @ weight.T (+ bias)``, ``weight`` ``(out, in)`` as nn.Linear's: one autograd node for
    the layer's three phases (and its bias), as nn.Linear has one."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan, path, hook, grad_enabled):
        ctx.save_for_backward(x, weight)
        ctx.plan, ctx.path, ctx.hook = plan, path, hook
        ctx.lean, ctx.prep = _lean_forward(ctx, x, weight, plan, path, hook, grad_enabled), None
        if ctx.lean is not None:
            y = torch.mm(x, ctx.lean[0].t())
            return y if bias is None else y + bias
        ctx.prep = _shared_weight(weight, plan, path, hook is not None)
        fwd = None if ctx.prep is None else ctx.prep.T
        # numpy path: M(W) @ x.T rather than x @ M(W).T, OpenBLAS runs it 1.3-1.5x faster
        transposed = fwd is not None and engine.resolve_path(path, x) == "numpy"
        y = _phase(x, weight.t(), plan, "forward", path, hook, fwd, transposed=transposed)
        return y if bias is None else y + bias

    @staticmethod
    @once_differentiable          # the CFPU's backward has no derivative of its own
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors     # (always: it raises if either changed in place since)
        want_x, want_w, want_bias = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_bias = None
        if ctx.lean is not None and engine.float32_gemm_now():     # (precision set since the forward?)
            grad = grad.contiguous()
            grad_w, grad_x = _lean_backward(ctx, grad, want_w, want_x)
        plan, path, hook = ctx.plan, ctx.path, ctx.hook
        if want_w and grad_w is None:        # the NumPy driver's order: gradient first
            grad_w = _phase(x.t(), grad, plan, "gradient", path, hook).t()
        if want_x and grad_x is None:
            grad_x = _phase(grad, weight, plan, "backward", path, hook, ctx.prep)
        if want_bias:
            grad_bias = grad.sum(0)
        return grad_x, grad_w, grad_bias, None, None, None, None


# The lean branch of a CFPULinear step: nothing counted or hooked, policy b with the default
# checked operands on the cpu path. The same transforms (the kernel's, without prepare's counts
# and objects) and the same GEMMs as the cpu path, so the same bits
# (tests/torch/test_linear_route.py). Every verdict is the lean scan's, from one pass over each
# operand (its magnitude range): the input's comes with its transform for the weight gradient,
# made in the forward while the input is in cache, and the error's serves both backward phases.
# One C call per direction (inside a step the Python around each kernel call cost more than the
# kernels). A phase whose verdict declines takes the general path, and so does anything the
# branch does not serve (which also reports bad input).

def _lean_bits(plan: LayerPlan, path: str, hook):
    """``(forward's, gradient's tuning bits)`` where the lean branch (Python's or C++'s) may
    serve a forward now: nothing hooked or counted, the cpu path, float32 GEMMs; else None."""
    bits = plan.lean_bits
    if bits is None or hook is not None or path not in ("auto", "cpu") or not engine.float32_gemm_now():
        return None
    return bits


def _lean_forward(ctx, x, weight, plan: LayerPlan, path: str, hook, grad_enabled: bool):
    """``(M(weight), M(x) or None, the ranges)`` where the lean branch serves this forward phase
    (``M(x)`` where the weight gradient will be wanted), else None."""
    bits = _lean_bits(plan, path, hook)
    if bits is None:
        return None
    return engine.lean_forward(x, weight, -1, bits, grad_enabled and ctx.needs_input_grad[1])


def _lean_cpp(layer: "CFPULinear", x, hook, grad_enabled: bool):
    """The layer's output from the C++ lean branch (lean_layers.cpp: the same arithmetic in one
    C++ autograd node, without the Python around it), or None where it does not serve."""
    bits = _lean_bits(layer.plan, layer.path, hook) if type(x) is torch.Tensor else None
    if bits is None:
        return None
    module = native.lean_module()
    if module is None:
        return None
    weight = layer.weight
    return module.lean_linear(x, weight, layer.bias, bits[0], bits[1],
                              grad_enabled and weight.requires_grad, layer.path)


@functools.cache
def _lean_plan(t_w: int, t_x: int) -> LayerPlan:
    """The plan a lean branch with these tuning bits serves (policy b, the default checked
    operands, the forward's configuration for the backward)."""
    fwd = CFPUConfig.approx(t_w, "b")
    return LayerPlan(fwd, fwd, CFPUConfig.approx(t_x, "b"))


def lean_general_phase(phase: str, t_w: int, t_x: int, path: str, a, b):
    """The general path of a backward phase the C++ lean branch declines, as
    :class:`_CFPULinearFn` computes it: ``gradient`` of ``(x, grad)``, ``backward`` of
    ``(grad, weight)``."""
    plan = _lean_plan(t_w, t_x)
    if phase == "gradient":
        return _phase(a.t(), b, plan, "gradient", path, None).t()
    return _phase(a, b, plan, "backward", path, None)


def _lean_backward(ctx, grad, want_w: bool, want_x: bool):
    """``(grad_w, grad_x)`` of the lean branch, each None where not wanted or where its verdict
    declines (the general path then computes it)."""
    w, mx, ranges = ctx.lean
    ok_w, ok_x = engine.lean_verdicts(grad, ranges, -1, -1, want_w and mx is not None, want_x)
    grad_w = torch.mm(grad.t(), mx) if ok_w else None
    grad_x = torch.mm(grad, w) if ok_x else None      # the backward phase's configuration is the forward's
    return grad_w, grad_x


def cfpu_matmul(a: torch.Tensor, b: torch.Tensor, config=None, *, path: str = "auto",
                hook=None) -> torch.Tensor:
    """``a @ b`` (float32, 2-D) on the CFPU, differentiable: forward ``a @ b``, backward error
    ``grad @ b.T`` and gradient ``a.T @ grad``, each under its phase's configuration and
    checked operand (``a`` plays the input, ``b`` the weight). ``config``: anything
    :meth:`LayerPlan.of` takes. ``hook(phase, a, b, config, result)`` sees every matmul as the
    engine got it (``b`` checked). ``path``: see :mod:`canna.torch.engine`."""
    return _CFPULinearFn.apply(a, b.t(), None, LayerPlan.of(config), path, hook,
                                torch.is_grad_enabled())


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



class CFPULinear(nn.Linear, _CFPULayer):
    """``nn.Linear`` whose three matmuls run on the CFPU (``config``: see :meth:`LayerPlan.of`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None, *, config=None, path: str = "auto"):
        super().__init__(in_features, out_features, bias, device, dtype)
        self._init_cfpu(config, path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native:
            return nn.Linear.forward(self, x)
        if x.dim() == 2:
            hook, grad_enabled = self._hook(), torch.is_grad_enabled()
            y = _lean_cpp(self, x, hook, grad_enabled)
            if y is not None:
                return y
            return _CFPULinearFn.apply(x, self.weight, self.bias, self.plan, self.path, hook,
                                       grad_enabled)
        return self.forward(x.reshape(-1, self.in_features)).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, plan={_describe(self.plan)}"


def _describe(plan: LayerPlan) -> str:
    return "/".join(plan.config(p).describe() for p in PHASES)
