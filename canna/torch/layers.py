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
matmuls on its im2col patches (``F.unfold``), one per group: ``x`` is the patches
``(batch * positions, in/groups * kh * kw)`` and ``W`` the group's weight reshaped to
``(in/groups * kh * kw, out/groups)``; unfold's backward (fold) sums the patch gradients.
Where nothing in a phase is risky (matmul_fast's rules) the convolution instead runs as one
PyTorch convolution on the transformed checked operand, the same products (the native route,
docs/torch.md), its counts from box sums over indicator maps rather than patches.
Biases, activations, the loss and the optimiser are plain PyTorch. The backward error is not
computed where autograd does not ask for it (a first layer's input), as in the NumPy driver.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from canna.nn.backends import OPERANDS
from canna.nn.mlp import DEFAULT_CHECKED, PHASES, ArithPlan, Counters
from canna.sim.matmul import prepare
from canna.spec.array import ArrayGeometry
from canna.spec.config import EXACT, CFPUConfig

from . import engine
from .engine import as_numpy

__all__ = ["LayerPlan", "cfpu_matmul", "CFPULinear", "CFPUConv2d", "convert", "cfpu_layers",
           "attach_counters", "set_level", "follow_gta"]


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


class CFPUConv2d(nn.Conv2d, _CFPULayer):
    """``nn.Conv2d`` (every argument, groups included) whose products are the im2col matmul's,
    on the CFPU (``config``: see :meth:`LayerPlan.of`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, config=None, path: str = "auto"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        self._init_cfpu(config, path)
        #: False: every phase on the im2col route (True: the native convolution where it is safe).
        self.native_conv = True
        #: phase -> "native" or "im2col": the route each phase of the last step took.
        self.routes: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native:
            return nn.Conv2d.forward(self, x)
        if x.dim() == 3:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        padding = self.padding
        if self.padding_mode != "zeros" or isinstance(padding, str):   # 'same', or not zeros
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
            padding = (0, 0)
        self.routes = {}
        y = _CFPUConv.apply(x, self.weight, self, tuple(padding))
        if self.bias is not None:
            y = y + self.bias.reshape(1, -1, 1, 1)
        return y

    # Each phase takes the native route (one PyTorch convolution on the transformed checked
    # operand: every product the CFPU's, because a hit's operand is an exact power of two) when
    # nothing in it is risky, else the im2col route (the matmuls of the module docstring).
    def _native_ok(self, x: torch.Tensor) -> bool:
        return (self.native_conv and self.hook is None and self.groups == 1 and self.path != "tensor"
                and engine.native_conv_available(x))

    def _book(self, phase, config, products, hits, nonzero, operands) -> None:
        """Count a phase computed natively; the accounting (and the recorder) need the im2col
        operands, which ``operands()`` builds only then (an extra cost, docs/torch.md)."""
        counters = self.counters
        if counters is None:
            return
        if counters.geometry is None and counters.recorder is None:
            counters.add(self.index, phase, products, int(hits), int(nonzero))
            return
        a, b = operands()
        counters.count(self.index, phase, as_numpy(a), as_numpy(b), config,
                       engine.MatmulResult(None, products, int(hits), None, int(nonzero)))

    def _patches(self, x, padding):
        """im2col: (groups, batch * positions, in/groups * kh * kw)."""
        cols = F.unfold(x, self.kernel_size, self.dilation, padding, self.stride)
        n, ck, positions = cols.shape
        g = self.groups
        return cols.reshape(n, g, ck // g, positions).permute(1, 0, 3, 2).reshape(g, n * positions, ck // g)

    def _group_weight(self, weight):
        return weight.reshape(self.groups, self.out_channels // self.groups, -1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, plan={_describe(self.plan)}"


class _CFPUConv(torch.autograd.Function):
    """A CFPUConv2d's three phases, each on its native or its im2col route."""

    @staticmethod
    def forward(ctx, x, weight, layer, padding):
        # saved before .contiguous(): a copy would hide an in-place change made before backward
        ctx.save_for_backward(x.detach(), weight.detach())
        x, weight = x.detach().contiguous(), weight.detach().contiguous()
        ctx.layer, ctx.padding, ctx.preps, ctx.patches = layer, padding, {}, None
        plan = layer.plan
        n, _, h, w = x.shape
        oh, ow = (_out_size(s, p, d, k, st) for s, p, d, k, st in
                  zip((h, w), padding, layer.dilation, layer.kernel_size, layer.stride))
        ctx.out_hw = (oh, ow)
        cfg = plan.forward
        if layer._native_ok(x) and plan.checked_right("forward"):
            prep = _weight_prep(ctx, weight, cfg, layer)
            if engine.first_is_safe(x, prep):
                layer.routes["forward"] = "native"
                mw = _checked_tensor(prep, weight)
                with torch.backends.nnpack.flags(enabled=False):    # products as formed: no Winograd
                    y = F.conv2d(x, mw, None, layer.stride, padding, layer.dilation)
                if layer.counters is not None:
                    cnt = _window_counts(x, layer, padding, (oh, ow))        # per (c, kh, kw)
                    hits = int(cnt @ prep.qualifying_cols) if cfg.enabled else 0
                    nonzero = int(cnt @ prep.nonzero_cols)
                    layer._book("forward", cfg, y.numel() * prep.shape[1], hits, nonzero,
                                lambda: (layer._patches(x, padding)[0], weight.reshape(weight.shape[0], -1).t()))
                return y
        layer.routes["forward"] = "im2col"
        patches = ctx.patches = layer._patches(x, padding)
        wg = layer._group_weight(weight)
        hook = layer._hook()
        y = torch.stack([_phase(patches[i], wg[i].t(), plan, "forward", layer.path, hook)
                         for i in range(layer.groups)])
        return y.reshape(layer.groups, n, oh * ow, -1).permute(1, 0, 3, 2).reshape(n, layer.out_channels, oh, ow)

    @staticmethod
    def backward(ctx, grad):
        x, weight = (t.contiguous() for t in ctx.saved_tensors)
        grad = grad.contiguous()
        want_w, want_x = ctx.needs_input_grad[1], ctx.needs_input_grad[0]
        grad_x = grad_w = None
        nat_w = _native_gradient(ctx, x, weight, grad) if want_w else None
        nat_x = _native_backward(ctx, x, weight, grad) if want_x else None
        if nat_w is not None or nat_x is not None:    # both native phases in one PyTorch call
            gx, gw = _convolution_backward(ctx, grad, x if nat_w is None else nat_w[0],
                                           weight if nat_x is None else nat_x[0],
                                           nat_x is not None, nat_w is not None)
            grad_x, grad_w = (gx if nat_x is not None else None), (gw if nat_w is not None else None)
        if want_w:                       # the NumPy driver's order: weight gradient first
            if nat_w is None:
                grad_w = _conv_gradient(ctx, x, weight, grad)
            else:
                nat_w[1]()
        if want_x:
            if nat_x is None:
                grad_x = _conv_backward(ctx, x, weight, grad)
            else:
                nat_x[1]()
        return grad_x, grad_w, None, None


def _convolution_backward(ctx, grad, x, weight, want_x: bool, want_w: bool):
    """PyTorch's convolution backward (what ``nn.Conv2d`` runs): the input gradient from
    ``weight``, the weight gradient from ``x``, in one call."""
    layer = ctx.layer
    with torch.backends.nnpack.flags(enabled=False):      # products as formed: no Winograd
        gx, gw, _ = torch.ops.aten.convolution_backward(
            grad, x, weight, None, layer.stride, ctx.padding, layer.dilation, False, (0, 0), 1,
            (want_x, want_w, False))
    return gx, gw


def _weight_prep(ctx, weight, config, layer):
    """The weight transformed for ``config``, once per step for the phases that agree on it."""
    prep = ctx.preps.get(config)
    if prep is None:
        prep = ctx.preps[config] = engine.prepare_checked(weight, config, nonzero=layer.counters is not None)
    return prep


def _checked_tensor(prep, like):
    """The transformed checked operand (M(b) policy b, b itself exact) in ``like``'s shape."""
    return torch.from_numpy(prep.checked).reshape(like.shape)


def _nonzero(x):
    """1.0 where ``x`` is nonzero, else 0.0 (float32; ``x`` finite, as on the native route).
    Sums over a channel or a batch are exact in float32 (below 2^24); longer ones use float64."""
    return x.abs().sign()


def _box_sums(p, size, gap, stride, count):
    """Sums over windows of ``p`` (counts, ``(..., H, W)``): ``size`` elements spaced ``gap``
    apart per axis, a window every ``stride``, ``count`` windows per axis. With no gaps four
    lookups in the integral image, else a ones convolution (float64)."""
    if tuple(gap) == (1, 1):      # the integral image in float64: exact at any size
        s = F.pad(p.double().cumsum(-2).cumsum(-1), (1, 0, 1, 0))
        r0, c0 = (slice(0, st * (n - 1) + 1, st) for n, st in zip(count, stride))
        r1, c1 = (slice(k, k + st * (n - 1) + 1, st) for k, n, st in zip(size, count, stride))
        return s[..., r1, c1] - s[..., r0, c1] - s[..., r1, c0] + s[..., r0, c0]
    lead, p = p.shape[:-2], p.double()
    ones = torch.ones(1, 1, *size, dtype=p.dtype)
    out = F.conv2d(p.reshape(-1, 1, *p.shape[-2:]), ones, None, stride, 0, gap)
    return out[..., :count[0], :count[1]].reshape(*lead, *count)


def _padded(p, padding):
    return F.pad(p, (padding[1], padding[1], padding[0], padding[0]))


def _window_counts(x, layer, padding, out_hw):
    """Per (c, kh, kw), the nonzero elements of the im2col column (c, kh, kw) summed over batch
    and positions (on the native route every element is finite): box sums of the output's size,
    spaced by the stride, over the batch-summed indicator."""
    s = _padded(_nonzero(x).sum(dim=0), padding)                             # (C, H, W)
    box = _box_sums(s, out_hw, layer.stride, layer.dilation, layer.kernel_size)
    return box.reshape(-1).round().long().numpy()


def _grad_groups(grad, g):
    n, out, oh, ow = grad.shape
    return grad.reshape(n, g, out // g, oh * ow).permute(1, 0, 3, 2).reshape(g, n * oh * ow, out // g)


def _native_gradient(ctx, x, weight, grad):
    """The weight gradient ``patches.T @ delta`` (input checked) on the native route: the
    transformed input, for ``convolution_backward``, and what books the phase; None: im2col."""
    layer, padding = ctx.layer, ctx.padding
    plan, cfg = layer.plan, layer.plan.gradient
    if not layer._native_ok(x) or plan.checked_right("gradient"):
        return None
    prep = engine.prepare_checked(x, cfg)
    if not engine.first_is_safe(grad, prep):
        return None
    layer.routes["gradient"] = "native"

    def book():
        if layer.counters is None:
            return
        per_pos = _nonzero(grad).sum(dim=1).reshape(-1).double()            # per output position
        maps = [_nonzero(x).sum(dim=1)]
        if cfg.enabled:
            maps.append(engine.hit_mask(x, cfg).sum(dim=1, dtype=torch.float32))
        win = _box_sums(_padded(torch.stack(maps), padding), layer.kernel_size, layer.dilation,
                        layer.stride, ctx.out_hw).reshape(len(maps), -1).double()   # per patch
        nonzero = torch.dot(per_pos, win[0])
        hits = torch.dot(per_pos, win[1]) if cfg.enabled else 0
        layer._book("gradient", cfg, grad.numel() * weight[0].numel(), hits, nonzero,
                    lambda: (_grad_groups(grad, 1)[0].t(), _patches_of(ctx, x)[0]))
    return _checked_tensor(prep, x), book


def _conv_gradient(ctx, x, weight, grad):
    """The weight gradient on the im2col route."""
    layer = ctx.layer
    layer.routes["gradient"] = "im2col"
    patches, gg = _patches_of(ctx, x), _grad_groups(grad, layer.groups)
    hook = layer._hook()
    gw = torch.stack([_phase(patches[i].t(), gg[i], layer.plan, "gradient", layer.path, hook).t()
                      for i in range(layer.groups)])
    return gw.reshape(weight.shape)


def _patches_of(ctx, x):
    if ctx.patches is None:
        ctx.patches = ctx.layer._patches(x, ctx.padding)
    return ctx.patches


def _native_backward(ctx, x, weight, grad):
    """The backward error ``delta @ W.T`` folded onto the input (weight checked) on the native
    route: the transformed weight and what books the phase; None: im2col."""
    layer = ctx.layer
    plan, cfg = layer.plan, layer.plan.backward
    if not layer._native_ok(x) or not plan.checked_right("backward"):
        return None
    prep = _weight_prep(ctx, weight, cfg, layer)
    if not engine.first_is_safe(grad, prep):
        return None
    layer.routes["backward"] = "native"

    def book():
        if layer.counters is None:
            return
        per_channel = _nonzero(grad).sum(dim=(0, 2, 3), dtype=torch.float64).round().long().numpy()
        hits = int(per_channel @ prep.qualifying) if cfg.enabled else 0
        nonzero = int(per_channel @ prep.nonzero_rows)
        layer._book("backward", cfg, grad.numel() * weight[0].numel(), hits, nonzero,
                    lambda: (_grad_groups(grad, 1)[0], weight.reshape(weight.shape[0], -1)))
    return _checked_tensor(prep, weight), book


def _conv_backward(ctx, x, weight, grad):
    """The backward error on the im2col route: the patch gradients, folded."""
    layer, padding = ctx.layer, ctx.padding
    layer.routes["backward"] = "im2col"
    gg, wg = _grad_groups(grad, layer.groups), layer._group_weight(weight)
    hook = layer._hook()
    gp = torch.stack([_phase(gg[i], wg[i], layer.plan, "backward", layer.path, hook)
                      for i in range(layer.groups)])                      # (g, n * positions, per group)
    n, (oh, ow) = x.shape[0], ctx.out_hw
    cols = gp.reshape(layer.groups, n, oh * ow, -1).permute(1, 0, 3, 2).reshape(n, -1, oh * ow)
    return F.fold(cols, x.shape[2:], layer.kernel_size, layer.dilation, padding, layer.stride)


def _out_size(size, pad, dilation, kernel, stride) -> int:
    return math.floor((size + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1


def _describe(plan: LayerPlan) -> str:
    return "/".join(plan.config(p).describe() for p in PHASES)


def cfpu_layers(model: nn.Module) -> list:
    """The CFPU layers of ``model`` in module order (the layer index of plans and counters)."""
    return [m for m in model.modules() if isinstance(m, _CFPULayer)]


def _plans(config, n: int) -> list:
    if isinstance(config, ArithPlan):
        if config.n_layers != n:
            raise ValueError(f"the plan has {config.n_layers} layers, the model {n} Linear/Conv2d layers")
        return [LayerPlan(**row, checked=config.checked) for row in config.configs]
    if isinstance(config, (list, tuple)):
        if len(config) != n:
            raise ValueError(f"{len(config)} per-layer plans for {n} Linear/Conv2d layers")
        return [LayerPlan.of(c) for c in config]
    return [LayerPlan.of(config)] * n


def convert(model: nn.Module, config=None, *, path: str = "auto") -> nn.Module:
    """Replace every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` (in place; ``model`` itself
    when it is one) by its CFPU layer holding the same Parameter objects (tied weights stay tied;
    a module used twice becomes one CFPU layer used twice). ``config``: one plan for every layer
    (anything :meth:`LayerPlan.of` takes), a list of them (one per distinct layer, in module
    order) or an :class:`~canna.nn.mlp.ArithPlan` with one row per layer. Returns the model.
    Layers that already are CFPU layers get their plan set instead."""
    uses = [(name, m) for name, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, (nn.Linear, nn.Conv2d))]
    distinct = list({id(m): m for _, m in uses}.values())
    twins = {}
    for old, plan in zip(distinct, _plans(config, len(distinct))):
        if isinstance(old, _CFPULayer):
            old.plan, old.path = plan, path
        else:
            twins[id(old)] = _cfpu_twin(old, plan, path)
    out = model
    for name, old in uses:
        new = twins.get(id(old))
        if new is None:
            continue
        if name == "":
            out = new
        else:
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, new)
    return out


def _cfpu_twin(old: nn.Module, plan: LayerPlan, path: str) -> nn.Module:
    p = old.weight
    kw = dict(bias=old.bias is not None, device=p.device, dtype=p.dtype, config=plan, path=path)
    if isinstance(old, nn.Conv2d):
        new = CFPUConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                         old.dilation, old.groups, padding_mode=old.padding_mode, **kw)
    else:
        new = CFPULinear(old.in_features, old.out_features, **kw)
    new.weight, new.bias = old.weight, old.bias    # the same Parameters, not copies
    new.train(old.training)
    return new


def attach_counters(model: nn.Module, geometry: ArrayGeometry | None = None) -> Counters:
    """A fresh :class:`~canna.nn.mlp.Counters` (products, hits, nonzero products per layer and
    phase; with ``geometry`` the lane array's accounting of every matmul) that every CFPU layer
    of ``model`` books into from now on (layer ``i`` = the ``i``-th in module order)."""
    layers = cfpu_layers(model)
    counters = Counters(len(layers), geometry)
    for i, m in enumerate(layers):
        m.counters, m.index = counters, i
    return counters


def set_level(model: nn.Module, tuning_bits: int | None, policy="b", phases=PHASES) -> None:
    """Every CFPU layer at ``tuning_bits`` (None: exact) in ``phases`` (the others exact),
    keeping each layer's checked operands."""
    for m in cfpu_layers(model):
        m.plan = LayerPlan.uniform(tuning_bits, policy, phases, m.plan.checked)


def follow_gta(model: nn.Module, controller, policy="b", phases=PHASES) -> int:
    """Set every CFPU layer to the GTA controller's current level (call it before each step,
    and ``controller.observe(iteration, batch_error)`` after); returns that level."""
    set_level(model, controller.level, policy, phases)
    return controller.level
