"""What the canna.torch tests share (a fixture: test folders are not on sys.path): operands
with every risky kind of element, and the check of one engine matmul against the golden model."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from canna.sim import golden
from canna.sim import matmul as mm
from canna.sim.vectors import hit_pattern_fractions
from canna.spec.config import EXACT, CFPUConfig
from canna.torch import engine

CONFIGS = [EXACT, CFPUConfig.approx(0, "b"), CFPUConfig.approx(3, "b"),
           CFPUConfig.approx(0, "dual"), CFPUConfig.approx(4, "dual")]
#: The default checked operands and the other side in every phase.
CHECKED = {"default": None,
           "flipped": {"forward": "input", "backward": "delta", "gradient": "delta"}}


def special(rng, shape) -> np.ndarray:
    """float32 operands with zeros of both signs, subnormals, tiny and huge exponents (the
    edges of the hit exponent range), hit-pattern fractions, and a few infinities and NaNs."""
    size = int(np.prod(shape))
    kind = rng.random(size)
    exp = np.select([kind < 0.06, kind < 0.12, kind < 0.18, kind < 0.26, kind < 0.28],
                    [0, rng.integers(1, 30, size), rng.integers(200, 255, size), 0, 255],
                    rng.integers(115, 135, size)).astype(np.uint32)
    frac = np.where(rng.random(size) < 0.5, rng.integers(0, 1 << 23, size),
                    hit_pattern_fractions(rng, size)).astype(np.uint32)
    frac = np.where(kind < 0.06, frac | 1, frac)                         # subnormals
    frac = np.where((kind >= 0.18) & (kind < 0.26), 0, frac)             # zeros
    frac = np.where((kind >= 0.26) & (kind < 0.28) & (rng.random(size) < 0.5), 0, frac)  # inf
    sign = rng.integers(0, 2, size, dtype=np.uint32) << 31
    return (sign | (exp << 23) | frac).astype(np.uint32).view(np.float32).reshape(shape)


def nn_like(rng, shape, scale=1.0) -> np.ndarray:
    """ReLU-like activations (half zeros) or Gaussian weights."""
    x = rng.standard_normal(shape) * scale
    return (np.maximum(x, 0) if scale == 1.0 else x).astype(np.float32)


def draw(rng, shape, data: str, scale=1.0) -> np.ndarray:
    return special(rng, shape) if data == "special" else nn_like(rng, shape, scale)


def _gemm_products(a: np.ndarray, b: np.ndarray, config: CFPUConfig, path: str):
    """The products the path's GEMMs form, elementwise, and the risky flat indices of ``a``
    (whose products the golden model computes instead)."""
    with np.errstate(all="ignore"):
        if not config.enabled:
            return a[:, :, None] * b[None], np.empty(0, np.int64)
        if path == "tensor":
            p = engine.tensor_pieces(torch.from_numpy(a), torch.from_numpy(b), config)
            a_safe, checked = p.a_safe.numpy(), p.checked.numpy()
            ma, rest = (None, None) if p.rest is None else (p.ma.numpy(), p.rest.numpy())
            risky = p.risky.numpy()
        else:   # what matmul_fast hands BLAS: prepare's transform, the C kernels' scan
            prep = mm.prepare(b, config)
            risky, ma_bits, _, _ = mm._scan_first(a.view(np.uint32), prep, None)
            a_safe = a.copy()
            a_safe.reshape(-1)[risky] = 0.0
            checked, rest = prep.checked, prep.rest
            ma = None if ma_bits is None else ma_bits.view(np.float32)
        first = a_safe[:, :, None] * checked[None]
        if rest is None:
            return first, risky
        second = ma[:, :, None] * rest[None]
        return np.where((checked.view(np.uint32) != 0)[None], first, second), risky


def check_call(a: np.ndarray, b: np.ndarray, config: CFPUConfig, value: np.ndarray, hits: int,
               path: str) -> int:
    """One engine matmul ``a @ b`` (``b`` checked): each product its GEMMs form equals the golden
    product bit for bit (NaN: NaN), the hit count is the golden one, and every output is the
    reference's NaN or infinity or within the summation bound of it. Returns the products
    compared bit for bit."""
    gold = golden.mul_bits(a.view(np.uint32)[:, :, None], b.view(np.uint32)[None], config)
    assert hits == int(gold.hit.sum()), (hits, int(gold.hit.sum()))
    formed, risky = _gemm_products(a, b, config, path)
    safe = np.ones(a.size, bool)
    safe[risky] = False
    sel = np.broadcast_to(safe.reshape(a.shape)[:, :, None], gold.bits.shape)
    got, want = formed.view(np.uint32)[sel], gold.bits[sel]
    nan_got, nan_want = np.isnan(formed)[sel], np.isnan(gold.bits.view(np.float32))[sel]
    assert np.array_equal(nan_got, nan_want)
    assert np.array_equal(got[~nan_got], want[~nan_want])
    ref = mm.matmul_reference(a, b, config).value.astype(np.float64)
    g = gold.bits.view(np.float32).astype(np.float64)
    abs_sum = np.where(np.isfinite(g), np.abs(g), 0).sum(axis=1)
    value = value.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = ((np.isnan(ref) & np.isnan(value)) | (np.isinf(ref) & (ref == value))
              | (np.isfinite(ref) & (np.abs(ref - value) <= mm.summation_bound(abs_sum, a.shape[1]))))
    comparable = abs_sum < 2.0 ** 126    # no order of the sum can overflow
    assert ok[comparable].all(), np.argwhere(~ok & comparable)[:5]
    return int(sel.sum())


@pytest.fixture(scope="session")
def cfpu():
    return SimpleNamespace(CONFIGS=CONFIGS, CHECKED=CHECKED, draw=draw, special=special,
                           check_call=check_call)


class _LeanSpy:
    """The C++ lean branches' module with its ``lean_linear`` and ``lean_conv`` calls recorded
    as ``(weight shape, with_x, served)``."""

    def __init__(self, module):
        self.module, self.calls = module, []

    def lean_linear(self, x, w, bias, t_w, t_x, with_x, path):
        y = self.module.lean_linear(x, w, bias, t_w, t_x, with_x, path)
        self.calls.append((tuple(w.shape), with_x, y is not None))
        return y

    def lean_conv(self, x, w, bias, stride, padding, dilation, t_w, t_x, with_x, layer):
        y = self.module.lean_conv(x, w, bias, stride, padding, dilation, t_w, t_x, with_x, layer)
        self.calls.append((tuple(w.shape), with_x, y is not None))
        return y


@pytest.fixture(params=["python", "cpp"])
def lean_route(request, monkeypatch):
    """CFPULinear's and CFPUConv2d's lean branches in Python (the C++ extension turned off, as
    where it cannot be built) or in C++ (lean_layers.cpp, built here: a machine with the C
    kernels and a C++ compiler, as CI, must have it), whose calls are then recorded
    (``.spy.calls``)."""
    from canna.torch import native
    route = SimpleNamespace(name=request.param, spy=None)
    if request.param == "python":
        monkeypatch.setattr(native, "lean_module", lambda: None)
    else:
        module = native.lean_module()
        assert module is not None, "the C++ lean branch did not build"
        route.spy = _LeanSpy(module)
        monkeypatch.setattr(native, "lean_module", lambda: route.spy)
    return route
