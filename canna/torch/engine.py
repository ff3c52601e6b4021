"""``a @ b`` on PyTorch tensors with every product equal to the golden CFPU product.

The semantics are :func:`canna.sim.matmul.matmul_fast`'s (``b`` is the checked operand): a hit
replaces ``b``'s element by a power of two, so the GEMM forms the CFPU's product exactly; the
dual policy runs two GEMMs; the risky elements of ``a`` (subnormals, inf/NaN, exponents at the
edge of the range) are taken out of the GEMM and their products computed by the golden model.
Only the summation is the framework's. Three paths, one set of rules:

``cpu``     CPU tensors: :func:`~canna.sim.matmul.matmul_fast`'s transform of ``b`` (its C
            kernels) and its lean policy-b path's scan of ``a``; where the scan passes,
            PyTorch's GEMM on the transform (``torch.mm``: PyTorch's sums, C-contiguous
            results), elsewhere (risky elements, dual, exact mode) matmul_fast itself.
``numpy``   CPU tensors: :func:`~canna.sim.matmul.matmul_fast` itself on zero-copy
            ``.numpy()`` views (its C kernels and lean policy-b path); NumPy's BLAS sums, the
            NumPy driver's bit for bit.
``tensor``  any device: the rules of :mod:`canna.sim.checked_rules` evaluated with torch
            operations on the tensors' bits (``int32``), ``torch.matmul`` sums; the few risky
            products go through :func:`canna.sim.golden.mul_bits` on the CPU and are added with
            ``index_add_``. Tested on CPU against the ``numpy`` path; untested on CUDA here.

``auto`` (the default) takes ``cpu`` for CPU tensors and ``tensor`` elsewhere.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from canna.sim import golden
from canna.sim.checked_rules import (MAX_SAFE_EXPONENT_SUM, max_finite_exponent_numpy,
                                     scan_first_numpy, transform_checked_numpy)
from canna.sim.matmul import (MatmulResult, Prepared, QuickScan, _Kernels, lean_scan,
                              matmul_fast, matmul_reference, prepare)
from canna.spec.config import CFPUConfig, Policy

__all__ = ["PATHS", "matmul", "TensorPieces", "tensor_pieces"]

PATHS = ("auto", "cpu", "numpy", "tensor")
#: Risky products computed by the golden model per call of mul_bits (bounds its temporaries).
_CHUNK = 4096


def _check(a, b, config) -> CFPUConfig:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype != torch.float32:
            raise TypeError(f"{name}: expected a float32 tensor, got dtype {x.dtype}")
        if x.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D tensor, got shape {tuple(x.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"shape mismatch: a is {tuple(a.shape)}, b is {tuple(b.shape)} "
                         "(a.shape[1] != b.shape[0])")
    if a.device != b.device:
        raise ValueError(f"a is on {a.device}, b on {b.device}")
    return golden.check_config(config)


def as_numpy(x: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 ndarray of ``x`` (a zero-copy view for a contiguous CPU tensor)."""
    return np.ascontiguousarray(x.detach().cpu().numpy())


def matmul(a: torch.Tensor, b: torch.Tensor, config: CFPUConfig, *, path: str = "auto",
           prepared: Prepared | None = None, transposed: bool = False,
           nonzero: bool = False) -> MatmulResult:
    """``a @ b`` (float32 2-D tensors, ``b`` checked) under ``config``: a
    :class:`~canna.sim.matmul.MatmulResult` whose ``value`` is a tensor on ``a``'s device.
    ``prepared``: ``b`` already transformed for ``config`` (:func:`~canna.sim.matmul.prepare`;
    ``cpu`` and ``numpy`` paths, else ignored). ``transposed`` (``numpy`` path): the GEMM
    computes ``M(b).T @ a.T`` (the same products: ``matmul_fast(..., transposed=True)``, faster
    in OpenBLAS when ``b`` is a transposed view) and ``value`` is its transpose, a view.
    ``nonzero`` (``cpu`` path): transform ``b`` with its nonzero counts, so that the result
    counts the nonzero products too (for counters)."""
    config = _check(a, b, config)
    path = resolve_path(path, a)
    if path == "cpu":
        return _matmul_cpu(a, b, config, prepared, nonzero)
    if path == "numpy":
        if prepared is None:
            prepared = numpy_view(b)    # a transposed view too: prepare() takes it without a copy
        r = matmul_fast(as_numpy(a), prepared, config, transposed=transposed)
        value = torch.from_numpy(r.value)
        return r._replace(value=value.t() if transposed else value)
    return _matmul_tensor(a, b, config)


def _matmul_cpu(a: torch.Tensor, b: torch.Tensor, config: CFPUConfig, prepared: Prepared | None,
                nonzero: bool) -> MatmulResult:
    """The ``cpu`` path (``a`` C- or F-contiguous): where matmul_fast's lean-path scan of ``a``
    says every product is a plain float32 multiply with the transformed ``b``, PyTorch's GEMM
    on that transform (the same products, summed by the framework into a C-contiguous result,
    as ``nn.Linear``'s are); elsewhere (risky elements, dual, exact mode, PyTorch set to round
    float32 GEMM operands) matmul_fast itself, NumPy's BLAS summing."""
    if prepared is not None and prepared.config != config:
        raise ValueError(f"b was prepared for {prepared.config.describe()}, not {config.describe()}")
    prep = prepared if prepared is not None else prepare(numpy_view(b), config, nonzero=nonzero)
    a_np = a.detach().numpy()
    scan = lean_scan(a_np, prep) if _float32_gemm() else None
    if scan is None:
        r = matmul_fast(a_np, prep)
        return r._replace(value=torch.from_numpy(r.value))
    hits, nonzero = scan
    checked = torch.from_numpy(prep.checked)
    if torch.is_autocast_enabled("cpu"):       # autocast would run the GEMM in bfloat16
        with torch.autocast("cpu", enabled=False):
            value = torch.mm(a.detach(), checked)
    else:
        value = torch.mm(a.detach(), checked)
    return MatmulResult(value, a_np.size * prep.shape[1], hits, None, nonzero)


def lean_forward(x: torch.Tensor, w: torch.Tensor, k: int, bits: tuple, with_x: bool):
    """The lean forward of the matmul ``x @ M(w)`` of inner size ``k`` (``w`` checked; ``k`` -1:
    the matrices of ``x @ w.T``): ``(M(w), M(x) or None, ranges)`` as
    tensors of their operands' shapes, ``M(w)`` under ``bits[0]`` tuning bits, ``M(x)``
    (``with_x``: for the weight gradient) under ``bits[1]``; None where the lean path does not
    serve the forward phase (tensors not on the CPU; sim/fastkernels_module.c ``lean_forward``:
    layout, dtype, the transforms' and the lean scan's verdicts)."""
    lib = _lib()
    if lib is None:
        return None
    try:
        xn, wn = x.detach().numpy(), w.detach().numpy()
    except (TypeError, RuntimeError):    # not on the CPU, not a plain tensor: the general path's
        return None
    mw = np.empty(wn.shape, np.float32)
    mx = np.empty(xn.shape, np.float32) if with_x else None
    ranges = lib.lean_forward(xn, wn, k, bits[0], bits[1], mw, mx)
    if ranges is None:
        return None
    return torch.from_numpy(mw), None if mx is None else torch.from_numpy(mx), ranges


def lean_verdicts(grad: torch.Tensor, ranges: tuple, k_w: int, k_x: int, want_w: bool,
                  want_x: bool) -> tuple:
    """Whether the lean path serves the weight gradient (against ``M(x)``, inner size ``k_w``)
    and the backward error (against ``M(w)``, inner size ``k_x``) of :func:`lean_forward`'s
    ``ranges``, from one pass over ``grad`` (``k_w = k_x = -1``: the matrix ``grad`` of a linear
    layer, ``grad.T @ M(x)`` and ``grad @ M(w)``)."""
    return _lib().lean_backward(grad.detach().numpy(), ranges, k_w, k_x, want_w, want_x)


def float32_gemm_now() -> bool:
    """:func:`_float32_gemm` and no CPU autocast: PyTorch's CPU GEMMs keep float32 operands now
    (asked on every call: the settings may change between calls)."""
    return _float32_gemm() and not torch.is_autocast_enabled("cpu")


def _float32_gemm() -> bool:
    """Whether PyTorch's CPU GEMMs keep float32 operands (no bfloat16 or TF32 rounding asked for
    by ``set_float32_matmul_precision`` or oneDNN's ``fp32_precision``)."""
    return _onednn_precision("matmul") in ("none", "ieee") and _precision_highest()


# The getters behind torch.backends.mkldnn.<op>.fp32_precision and
# torch.get_float32_matmul_precision(), called directly: the public wrappers cost ten times as
# much, and a layer asks on every call. (None: a PyTorch without the newer precision settings.)
_FP32_PRECISION = getattr(torch._C, "_get_fp32_precision_getter", None)


def _onednn_precision(op: str) -> str:
    """oneDNN's ``fp32_precision`` for ``op`` ("matmul", "conv"); "none" (the default: IEEE)
    where this PyTorch has no such setting."""
    return "none" if _FP32_PRECISION is None else _FP32_PRECISION("mkldnn", op)


def _precision_highest() -> bool:
    """``torch.get_float32_matmul_precision() == "highest"``; False where that getter refuses to
    answer (it does once PyTorch's newer ``fp32_precision`` settings were changed)."""
    try:
        return torch._C._get_float32_matmul_precision() == "highest"
    except RuntimeError:
        return False


def resolve_path(path: str, a: torch.Tensor) -> str:
    """``path`` with ``auto`` decided for ``a``'s device (``cpu`` and ``numpy`` need a CPU
    tensor)."""
    if path not in PATHS:
        raise ValueError(f"unknown path {path!r}; known: {', '.join(PATHS)}")
    if path == "auto":
        return "cpu" if a.device.type == "cpu" else "tensor"
    if path in ("cpu", "numpy") and a.device.type != "cpu":
        raise ValueError(f"path {path!r} needs CPU tensors, got {a.device}")
    return path


def numpy_view(x: torch.Tensor) -> np.ndarray:
    """``x`` (CPU) as an ndarray without a copy where it is C- or F-contiguous (a transposed
    view), else a C-contiguous copy."""
    v = x.detach().numpy()
    return v if v.flags.c_contiguous or v.flags.f_contiguous else np.ascontiguousarray(v)


class TensorPieces:
    """What the tensor path hands the GEMMs for ``a @ b``: ``a_safe`` (``a`` with its risky
    elements zeroed) times ``checked``, plus (dual) ``ma @ rest``, plus the golden products of
    the ``risky`` flat indices of ``a``; ``hits`` counts the GEMMs' hits (the risky products'
    hits come from the golden model). Exposed for the product-by-product tests."""

    def __init__(self, a_safe, checked, ma, rest, risky, hits):
        self.a_safe, self.checked, self.ma, self.rest, self.risky, self.hits = (
            a_safe, checked, ma, rest, risky, hits)


def tensor_pieces(a: torch.Tensor, b: torch.Tensor, config: CFPUConfig) -> TensorPieces:
    """The transform of the tensor path (approximate ``config`` only): the rules of
    :mod:`canna.sim.checked_rules` on the bits of ``a`` and ``b``."""
    a, b = a.contiguous(), b.contiguous()
    dual = config.policy is Policy.DUAL
    t = config.tuning_bits
    mq, wn, qualifying, nonqualifying, row_flags, stats = transform_checked_numpy(
        b.view(torch.int32), t, dual)
    risky, ma, cnt_normal, cnt_q = scan_first_numpy(a.view(torch.int32), t, dual, row_flags, stats)
    a_safe = a
    if risky.numel():
        a_safe = a.clone()
        a_safe.view(-1)[risky] = 0.0
    hits = int((cnt_normal * qualifying).sum())
    if cnt_q is not None:
        hits += int((cnt_q * nonqualifying).sum())
    return TensorPieces(a_safe, mq.view(torch.float32), None if ma is None else ma.view(torch.float32),
                        None if wn is None else wn.view(torch.float32), risky, hits)


def _check_precision(a: torch.Tensor) -> None:
    # TF32 or bfloat16 GEMMs round the operands: the products would no longer be the CFPU's.
    if not _precision_highest() or (a.is_cuda and torch.backends.cuda.matmul.allow_tf32):
        raise RuntimeError("canna.torch needs full float32 GEMMs: call "
                           "torch.set_float32_matmul_precision('highest') and leave "
                           "torch.backends.cuda.matmul.allow_tf32 False")


def _matmul_tensor(a: torch.Tensor, b: torch.Tensor, config: CFPUConfig) -> MatmulResult:
    _check_precision(a)
    m, k_dim = a.shape
    products = m * k_dim * b.shape[1]
    if not config.enabled:
        return MatmulResult(_matmul_exact(a, b), products, 0)
    p = tensor_pieces(a, b, config)
    y = p.a_safe @ p.checked
    if p.rest is not None:
        y += p.ma @ p.rest
    hits = p.hits
    if p.risky.numel():
        hits += _add_golden_products(y, a, b, p.risky, config)
    return MatmulResult(y, products, hits)


def _bits_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().contiguous().view(torch.int32).cpu().numpy().view(np.uint32)


def _matmul_exact(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact mode: one GEMM; rows of ``a`` holding an element whose product with ``b`` may
    overflow (a fused GEMM could hide it) come from the reference, as in ``matmul_fast``."""
    y = a @ b
    a_bits, b_bits = a.contiguous().view(torch.int32), b.contiguous().view(torch.int32)
    e_b = max_finite_exponent_numpy(b_bits)
    if max_finite_exponent_numpy(a_bits) + e_b > MAX_SAFE_EXPONENT_SUM:
        e = (a_bits >> 23) & 0xFF
        rows = ((e != 255) & (e + e_b > MAX_SAFE_EXPONENT_SUM)).any(dim=1).nonzero().reshape(-1)
        ref = matmul_reference(as_numpy(a[rows]), as_numpy(b)).value
        y[rows] = torch.from_numpy(ref).to(y.device)
    return y


def _add_golden_products(y, a, b, risky, config: CFPUConfig) -> int:
    """Add the golden products of the risky elements of ``a`` (flat indices) with their rows of
    ``b`` into ``y``; returns their hit count."""
    k_dim = a.shape[1]
    a_flat = a.reshape(-1)
    hits = 0
    for start in range(0, risky.numel(), _CHUNK):
        idx = risky[start:start + _CHUNK]
        rows, ks = idx // k_dim, idx % k_dim
        r = golden.mul_bits(_bits_numpy(a_flat[idx])[:, None], _bits_numpy(b[ks]), config)
        hits += int(np.count_nonzero(r.hit))
        y.index_add_(0, rows, torch.from_numpy(r.bits.view(np.float32)).to(y.device))
    return hits


# --------------------------------------------------------------------------------------------
# Native convolutions (CFPUConv2d's fast route): the pieces, on CPU tensors
# --------------------------------------------------------------------------------------------

def _lib():
    return _Kernels.get()


def native_conv_available(x: torch.Tensor) -> bool:
    """Whether a convolution on ``x`` may take the native route: a CPU tensor, the C kernels
    built, and PyTorch's float32 convolutions at full precision (oneDNN's ``fp32_precision``
    left at its IEEE default, no autocast: under it the native convolution runs in bfloat16)."""
    return (x.is_cpu and _lib() is not None and conv_precision_ieee()
            and not torch.is_autocast_enabled("cpu"))


def conv_precision_ieee() -> bool:
    """Whether oneDNN's float32 convolutions keep float32 operands (``fp32_precision`` at its
    IEEE default, no bfloat16 or TF32 rounding)."""
    return _onednn_precision("conv") in ("none", "ieee")


def prepare_checked(b: torch.Tensor, config: CFPUConfig, *, nonzero: bool = False,
                    columns: bool = True) -> Prepared:
    """:func:`canna.sim.matmul.prepare` of the contiguous CPU tensor ``b`` viewed as a matrix
    (its first dimension the rows), with the per-column facts unless ``columns=False``."""
    b2 = b.detach().reshape(b.shape[0], -1)
    return prepare(as_numpy(b2), config, columns=columns, nonzero=nonzero)


class Transformed(NamedTuple):
    """A checked operand transformed for the lean routes (:func:`transform_lean`): ``checked``
    is ``M(b)`` (float32, ``b``'s rows), ``quick`` the lean scan's ranges; both None where the
    lean path cannot serve ``b`` (an inf, a NaN or an unrepresentable power of two).
    :class:`~canna.sim.matmul.Prepared` has the same ``config``, ``checked`` and ``quick``, and
    the counts these go without."""

    config: CFPUConfig
    checked: np.ndarray | None
    quick: QuickScan | None


def transform_lean(b, config: CFPUConfig) -> "Transformed | Prepared":
    """:func:`prepare_checked` without the counts (what a lean route needs when nothing is
    counted) of ``b`` (a contiguous CPU tensor or an ndarray): for policy b one pass of the C
    kernel, which returns the ranges (inside a training step ``prepare``'s arrays and checks
    cost several times the transform); exact mode and dual: :func:`prepare_checked` itself."""
    b2 = _array(b).reshape(b.shape[0], math.prod(b.shape[1:]))      # (-1 fails on an empty batch)
    if b2.dtype != np.float32:
        raise TypeError(f"expected a float32 operand, got dtype {b2.dtype}")
    lib = _lib()
    if lib is None or not config.enabled or config.policy is Policy.DUAL:
        return prepare(b2, config)
    mq = np.empty(b2.shape, np.float32)
    r = lib.transform_lean(b2, config.tuning_bits, mq)
    if r is None:
        return Transformed(config, None, None)
    return Transformed(config, mq, QuickScan(b2.shape[1], r[0], r[1], r[2]))


def _array(x) -> np.ndarray:
    return x if type(x) is np.ndarray else as_numpy(x)


def first_is_safe(a: torch.Tensor, prep: Prepared, k: int) -> bool:
    """Whether every product of an element of ``a`` with the checked operand ``prep`` in a
    matmul of inner size ``k`` may be formed by a plain float32 multiply and summed without
    overflow, whatever element of ``prep`` it meets: matmul_fast's lean-path rule
    (:func:`~canna.sim.matmul._matmul_quick`: no subnormal, inf or NaN in ``a``, no hit's
    exponent out of range, no product near overflow, no ``k``-term sum near overflow),
    elementwise; exact mode: no product near overflow (``MAX_SAFE_EXPONENT_SUM``). False: take
    the im2col route."""
    return first_is_safe_all(a, [prep], [k])[0]


def first_is_safe_all(a, preps, ks) -> list:
    """:func:`first_is_safe` of ``a`` (a tensor or an ndarray) against each of ``preps``
    (:class:`~canna.sim.matmul.Prepared` or :class:`Transformed`) with the inner sizes ``ks``,
    in one pass over ``a``: the lean-path verdict depends on ``a``'s magnitude range only."""
    safe, mag, finite = [], None, None
    for prep, k in zip(preps, ks, strict=True):
        if prep.config.enabled:     # quick None: dual, or a checked element with inf, NaN or no power of two
            if prep.quick is not None and mag is None:
                mag = magnitude_range(a)
            safe.append(prep.quick is not None and lean_verdict(mag, k, prep.quick))
            continue
        # an inf or NaN would meet the padding zeros only in im2col (0 * inf = NaN): that route
        bits = _flat(_array(a)).view(np.uint32)
        if finite is None:
            finite = not _has_non_finite(bits)
        safe.append(finite and not _has_non_finite(prep.original.view(np.uint32))
                    and _lib().max_finite_exponent(bits) + int(prep.stats[4]) <= MAX_SAFE_EXPONENT_SUM)
    return safe


def _flat(x: np.ndarray) -> np.ndarray:
    """The elements of ``x`` in memory order without a copy where it is C- or F-contiguous
    (the lean verdicts and the exponent checks do not depend on the order)."""
    if x.flags.c_contiguous:
        return x.reshape(-1)
    if x.flags.f_contiguous:
        return x.T.reshape(-1)
    return np.ascontiguousarray(x).reshape(-1)


def magnitude_range(a) -> tuple:
    """``(min(|a| - 1), max(|a|))`` over the binary32 patterns of ``a`` (a CPU tensor or an
    ndarray; zeros wrap to the top of the first): what the lean-path verdict reads of a first
    operand, in one pass of the C kernel."""
    return _lib().magnitude_range(_flat(_array(a)))


def lean_verdict(mag: tuple, k: int, quick: QuickScan) -> bool:
    """Whether matmul_fast's lean path serves a matmul of inner size ``k`` whose first operand
    has the magnitude range ``mag`` (:func:`magnitude_range`) and whose checked operand the
    lean-scan ranges ``quick``: ``scan_first_quick``'s verdict (sim/fastkernels.c
    ``quick_verdict``), which depends on these alone."""
    return _lib().lean_verdict(mag[0], mag[1], k, quick.pow2_lo, quick.pow2_hi, quick.e_max)


def _has_non_finite(bits: np.ndarray) -> bool:
    return bool(((bits & 0x7F800000) == 0x7F800000).any())


def hit_mask(x: torch.Tensor, config: CFPUConfig) -> torch.Tensor:
    """Where policy b replaces an element of the checked operand ``x`` by a power of two under
    ``config`` (bool, ``x``'s shape): where dual's ``Bq`` is nonzero, the same hit rule
    (:func:`~canna.sim.checked_rules.transform_checked_numpy`), one pass of the C kernel."""
    dual = CFPUConfig.approx(config.tuning_bits, Policy.DUAL)
    checked = prepare(as_numpy(x.reshape(x.shape[0], -1)), dual).checked.view(np.uint32)
    return torch.from_numpy(checked != 0).reshape(x.shape)
