"""``CFPUConv2d``: ``nn.Conv2d`` whose products are its im2col matmul's, on the CFPU.

A convolution is the three matmuls of :mod:`canna.torch.layers` on its im2col patches
(``F.unfold``), one per group: ``x`` is the patches ``(batch * positions, in/groups * kh * kw)``
and ``W`` the group's weight reshaped to ``(in/groups * kh * kw, out/groups)``; unfold's
backward (fold) sums the patch gradients. Where nothing in a phase is risky (matmul_fast's
rules) the convolution instead runs as one PyTorch convolution on the transformed checked
operand, the same products (the native route, docs/torch.md), its counts from box sums over
indicator maps rather than patches.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from canna.sim.matmul import count_nonzero_finite

from . import engine, native
from .engine import as_numpy
from .layers import _CFPULayer, _describe, _phase

__all__ = ["CFPUConv2d"]

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
        self.routes.clear()      # (not a new dict: nn.Module's __setattr__ costs more)
        grad_enabled = torch.is_grad_enabled()
        y = _lean_cpp(self, x, tuple(padding), grad_enabled)
        if y is not None:
            self.routes["forward"] = "native"
            return y
        return _CFPUConv.apply(x, self.weight, self.bias, self, tuple(padding), grad_enabled)

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
    """A CFPUConv2d's three phases, each on its native or its im2col route, and its bias (as
    ``nn.Conv2d``: one node, the bias added by the native convolution and its gradient summed
    by the native backward when one runs)."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer, padding, grad_enabled):
        # saved before .contiguous(): a copy would hide an in-place change made before backward
        ctx.save_for_backward(x, weight)
        x, weight = x.detach().contiguous(), weight.detach().contiguous()
        ctx.layer, ctx.padding, ctx.preps, ctx.patches, ctx.lean = layer, padding, {}, None, None
        plan = layer.plan
        cfg = plan.forward
        ctx.native_ok = _native_float32(layer, x, weight)    # the step's decision, for the backward too
        k = math.prod(weight.shape[1:])          # the im2col matmul's inner size, C kh kw
        bits = _lean_bits(layer, ctx.native_ok)
        if bits is not None:
            # the lean route (as CFPULinear's): M(W), and M(x) for the weight gradient, in one call
            ctx.lean = engine.lean_forward(x, weight, k, bits, grad_enabled and ctx.needs_input_grad[1])
            if ctx.lean is not None:
                return _native_forward(layer, x, ctx.lean[0], bias, padding)
        if ctx.native_ok and plan.checked_right("forward"):
            prep = _weight_prep(ctx, weight, cfg, layer)
            if engine.first_is_safe(x.numpy(), prep, k):
                y = _native_forward(layer, x, _checked_tensor(prep, weight), bias, padding)
                if layer.counters is not None:
                    cnt = _window_counts(x, layer, padding, y.shape[2:])     # per (c, kh, kw)
                    hits = int(cnt @ prep.qualifying_cols) if cfg.enabled else 0
                    nonzero = int(cnt @ prep.nonzero_cols)
                    layer._book("forward", cfg, y.numel() * prep.shape[1], hits, nonzero,
                                lambda: (layer._patches(x, padding)[0], weight.reshape(weight.shape[0], -1).t()))
                return y
        layer.routes["forward"] = "im2col"
        n, _, h, w = x.shape
        oh, ow = (_out_size(s, p, d, k, st) for s, p, d, k, st in
                  zip((h, w), padding, layer.dilation, layer.kernel_size, layer.stride))
        patches = ctx.patches = layer._patches(x, padding)
        wg = layer._group_weight(weight)
        hook = layer._hook()
        y = torch.stack([_phase(patches[i], wg[i].t(), plan, "forward", layer.path, hook)
                         for i in range(layer.groups)])
        per_group = layer.out_channels // layer.groups       # (not -1: an empty batch has no size)
        y = y.reshape(layer.groups, n, oh * ow, per_group).permute(1, 0, 3, 2).reshape(n, layer.out_channels, oh, ow)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1)

    @staticmethod
    @once_differentiable          # the CFPU's backward has no derivative of its own
    def backward(ctx, grad):
        x, weight = (t.detach().contiguous() for t in ctx.saved_tensors)
        return (*_backward(ctx, x, weight, grad.detach().contiguous(), *ctx.needs_input_grad[:3]),
                None, None, None)


def _backward(ctx, x, weight, grad, want_x: bool, want_w: bool, want_b: bool):
    """``(grad_x, grad_w, grad_b)`` of :class:`_CFPUConv` (or of the C++ lean route's
    :func:`lean_backward`): each phase on its native or its im2col route."""
    grad_x = grad_w = grad_b = None
    nat_w, nat_x = _native_phases(ctx, x, weight, grad, want_w, want_x)
    if nat_w is not None or nat_x is not None:    # the native phases and the bias in one call
        gx, gw, grad_b = _convolution_backward(ctx, grad, x if nat_w is None else nat_w[0],
                                               weight if nat_x is None else nat_x[0],
                                               nat_x is not None, nat_w is not None, want_b)
        grad_x, grad_w = (gx if nat_x is not None else None), (gw if nat_w is not None else None)
    elif want_b:
        grad_b = grad.sum((0, 2, 3))
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
    return grad_x, grad_w, grad_b


def _native_float32(layer: CFPUConv2d, x, weight) -> bool:
    """Whether this step's phases may take the native route: :meth:`CFPUConv2d._native_ok` on
    float32 operands (the kernels read float32 bits)."""
    return layer._native_ok(x) and x.dtype == weight.dtype == torch.float32


def _lean_bits(layer: CFPUConv2d, native_ok: bool):
    """``(forward's, gradient's tuning bits)`` where the lean route (Python's or C++'s) serves a
    step whose native route is ``native_ok``: nothing counted; else None."""
    return layer.plan.lean_bits if native_ok and layer.counters is None else None


def _lean_cpp(layer: CFPUConv2d, x, padding: tuple, grad_enabled: bool):
    """The layer's output from the C++ lean route (lean_layers.cpp: :class:`_CFPUConv`'s lean
    route in one C++ autograd node), or None where it does not serve."""
    weight = layer.weight
    bits = _lean_bits(layer, type(x) is torch.Tensor and _native_float32(layer, x, weight))
    if bits is None:
        return None
    module = native.lean_module()
    if module is None:
        return None
    return module.lean_conv(x, weight, layer.bias, layer.stride, padding, layer.dilation, bits[0],
                            bits[1], grad_enabled and weight.requires_grad, layer)


def lean_backward_ok(layer: CFPUConv2d | None) -> bool:
    """Whether the C++ lean route's backward may run as it is (else :func:`lean_backward`):
    nothing counted since the forward, the float32 convolution settings unchanged. ``layer``:
    None where it was freed since the forward (the node holds it weakly)."""
    return (layer is None or layer.counters is None) and engine.conv_precision_ieee()


def lean_backward(layer: CFPUConv2d | None, padding: tuple, x, weight, grad, mw, mx, ranges: tuple,
                  want_x: bool, want_w: bool, want_b: bool):
    """The backward of a C++ lean forward, where a verdict declines or :func:`lean_backward_ok`
    says no: :class:`_CFPUConv`'s, from the context its lean forward would have left."""
    if layer is None:
        raise RuntimeError("CFPUConv2d: the layer was freed before this backward, which needs its "
                           "im2col route; keep the model alive until backward")
    ctx = SimpleNamespace(layer=layer, padding=padding, preps={}, patches=None, native_ok=True,
                          lean=(mw, mx, ranges))
    return _backward(ctx, x, weight, grad, want_x, want_w, want_b)


def _native_forward(layer, x, checked_weight, bias, padding):
    """The forward phase on the native route: one PyTorch convolution on ``M(W)``."""
    layer.routes["forward"] = "native"
    with _NoNNPACK():                                    # products as formed: no Winograd
        return F.conv2d(x, checked_weight, bias, layer.stride, padding, layer.dilation)


def _convolution_backward(ctx, grad, x, weight, want_x: bool, want_w: bool, want_b: bool = False):
    """PyTorch's convolution backward (what ``nn.Conv2d`` runs): the input gradient from
    ``weight``, the weight gradient from ``x`` and the bias gradient (a sum), in one call."""
    layer = ctx.layer
    with _NoNNPACK():                                    # products as formed: no Winograd
        return _CONVOLUTION_BACKWARD(
            grad, x, weight, [weight.shape[0]] if want_b else None, layer.stride, ctx.padding,
            layer.dilation, False, (0, 0), 1, (want_x, want_w, want_b))


_CONVOLUTION_BACKWARD = torch.ops.aten.convolution_backward.default


class _NoNNPACK:
    """NNPACK off inside (it may use Winograd), as ``torch.backends.nnpack.flags(enabled=False)``
    at a fraction of its cost."""

    def __enter__(self):
        self.was = torch._C._get_nnpack_enabled()
        if self.was:
            torch._C._set_nnpack_enabled(False)

    def __exit__(self, *exc):
        if self.was:
            torch._C._set_nnpack_enabled(True)


def _weight_prep(ctx, weight, config, layer):
    """The weight transformed for ``config``, once per step for the phases that agree on it
    (with the counts its phases book only when counting)."""
    prep = ctx.preps.get(id(config))      # the plan holds its configs: ids stay theirs
    counting = layer.counters is not None
    # (counters attached since the forward: the forward's transform has no counts)
    if prep is None or (counting and getattr(prep, "nonzero_rows", None) is None):
        prep = ctx.preps[id(config)] = (engine.prepare_checked(weight, config, nonzero=True) if counting
                                        else engine.transform_lean(weight.numpy(), config))
    return prep


def _checked_tensor(prep, like):
    """The transformed checked operand (M(b) policy b, b itself exact) in ``like``'s shape."""
    return torch.from_numpy(prep.checked.reshape(like.shape))


def _nonzero(x):
    """1.0 where ``x`` is nonzero, else 0.0 (float32; ``x`` finite, as on the native route).
    Sums over a channel or a batch are exact in float32 (below 2^24); longer ones use float64."""
    return x.abs().sign()


def _nonzero_over_batch(x):
    """Per (c, h, w), the samples where ``x`` is nonzero (float32; finite ``x``): one C pass."""
    counts = count_nonzero_finite(x.numpy().reshape(x.shape[0], -1), 0)
    return torch.from_numpy(counts.reshape(x.shape[1:])).float()


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
    s = _padded(_nonzero_over_batch(x), padding)                             # (C, H, W)
    box = _box_sums(s, out_hw, layer.stride, layer.dilation, layer.kernel_size)
    return box.reshape(-1).round().long().numpy()


def _grad_groups(grad, g):
    n, out, oh, ow = grad.shape
    return grad.reshape(n, g, out // g, oh * ow).permute(1, 0, 3, 2).reshape(g, n * oh * ow, out // g)


def _native_phases(ctx, x, weight, grad, want_w: bool, want_x: bool):
    """The weight gradient's and the backward error's native routes (``_native_gradient``,
    ``_native_backward``; None: im2col, or not wanted), ``grad`` scanned once for both."""
    layer, plan = ctx.layer, ctx.layer.plan
    if not (ctx.native_ok and engine.conv_precision_ieee()):    # (precision set since the forward?)
        return None, None
    # inner sizes: the weight gradient sums over batch and positions, the backward error over
    # the output channels and the kernel's positions
    k_w = grad.shape[0] * math.prod(grad.shape[2:])
    k_x = weight.shape[0] * math.prod(weight.shape[2:])
    if ctx.lean is not None and layer.counters is None:   # the lean route: M(W) and M(x) at hand
        mw, mx, ranges = ctx.lean
        ok_w, ok_x = engine.lean_verdicts(grad, ranges, k_w, k_x, want_w and mx is not None, want_x)
        for phase, ok in (("gradient", ok_w), ("backward", ok_x)):
            if ok:
                layer.routes[phase] = "native"
        return (mx, _no_book) if ok_w else None, (mw, _no_book) if ok_x else None
    prep_x = prep_w = None
    if want_w and not plan.checked_right("gradient"):
        prep_x = engine.transform_lean(x.numpy(), plan.gradient)
    if want_x and plan.checked_right("backward"):
        prep_w = _weight_prep(ctx, weight, plan.backward, layer)
    wanted = [(p, k) for p, k in ((prep_x, k_w), (prep_w, k_x)) if p is not None]
    safe = iter(engine.first_is_safe_all(grad.numpy(), [p for p, _ in wanted], [k for _, k in wanted]))
    nat_w = _native_gradient(ctx, x, weight, grad, prep_x) if prep_x is not None and next(safe) else None
    nat_x = _native_backward(ctx, weight, grad, prep_w) if prep_w is not None and next(safe) else None
    return nat_w, nat_x


def _no_book():
    """Nothing to book: the lean route counts nothing."""


def _native_gradient(ctx, x, weight, grad, prep):
    """The weight gradient ``patches.T @ delta`` (input checked, ``prep``) on the native route:
    the transformed input, for ``convolution_backward``, and what books the phase."""
    layer, padding = ctx.layer, ctx.padding
    cfg = layer.plan.gradient
    layer.routes["gradient"] = "native"

    def book():
        if layer.counters is None:
            return
        per_pos = _nonzero(grad).sum(dim=1).reshape(-1).double()            # per output position
        maps = [_nonzero(x).sum(dim=1)]
        if cfg.enabled:
            maps.append(engine.hit_mask(x, cfg).sum(dim=1, dtype=torch.float32))
        win = _box_sums(_padded(torch.stack(maps), padding), layer.kernel_size, layer.dilation,
                        layer.stride, grad.shape[2:]).reshape(len(maps), -1).double()   # per patch
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


def _native_backward(ctx, weight, grad, prep):
    """The backward error ``delta @ W.T`` folded onto the input (weight checked, ``prep``) on
    the native route: the transformed weight and what books the phase."""
    layer = ctx.layer
    cfg = layer.plan.backward
    layer.routes["backward"] = "native"

    def book():
        if layer.counters is None:
            return
        n, out = grad.shape[:2]              # nonzero per (sample, channel), one C pass, summed
        per_channel = count_nonzero_finite(grad.numpy().reshape(n * out, -1), 1).reshape(n, out).sum(axis=0)
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
    n, (oh, ow) = x.shape[0], grad.shape[2:]
    cols = gp.reshape(layer.groups, n, oh * ow, gp.shape[-1]).permute(1, 0, 3, 2).reshape(n, layer.groups * gp.shape[-1], oh * ow)
    return F.fold(cols, x.shape[2:], layer.kernel_size, layer.dilation, padding, layer.stride)


def _out_size(size, pad, dilation, kernel, stride) -> int:
    return math.floor((size + 2 * pad - dilation * (kernel - 1) - 1) / stride) + 1
