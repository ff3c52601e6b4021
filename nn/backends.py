"""Pluggable matmul backends for the NN driver.

A backend is a callable ``matmul(a, b, config) -> MatmulResult`` with ``a`` (M x K) and ``b``
(K x N) float32 and ``b`` the CFPU's second operand (the one policy ``b`` checks). The registry maps
a name to a :class:`Backend`; :func:`register_backend` adds one.

=================  ==============================================================================
``native``         NumPy/BLAS float32 ``a @ b``. Exact arithmetic only (refuses an approximate
                   config); counts products, never hits.
``golden-fast``    :func:`canna.sim.matmul.matmul_fast`: every product equals the golden CFPU
                   product bit for bit, summed by BLAS. Prepared weights are cached for inference.
``golden-exact``   :func:`canna.sim.matmul.matmul_reference`: golden products accumulated
                   sequentially in binary32 -- the bit-exact specification; slow (loop over K).
``rtl``            :class:`ArrayCosim`: the Verilated RTL lane array, checked against the golden
                   lane model on every matmul (bit-identical to ``golden-exact``); slow.
=================  ==============================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from canna.spec.config import CFPUConfig
from canna.sim.matmul import (MatmulResult, count_nonzero_finite, matmul_fast, matmul_reference, prepare,
                              sgd_update_prepare)

__all__ = ["Backend", "ArrayCosim", "MatmulResult", "register_backend", "get_backend", "backend_names",
           "checked_matmul", "oriented", "nonzero_products", "OPERANDS"]


@dataclass(frozen=True)
class Backend:
    """A named matmul implementation.

    Parameters
    ----------
    name : registry name.
    matmul : ``(a, b, config) -> MatmulResult``.
    description : one line for ``--help``.
    supports_approx : False for backends that only compute exactly.
    prepare : optional ``(b, config) -> object`` accepted by ``matmul`` in place of ``b`` (a
        cached transform of fixed weights); None when the backend has none.
    on_geometry : optional ``(ArrayGeometry) -> Backend``: the same backend for another lane
        array (a backend that runs the array itself and reports its counters in
        ``MatmulResult.lane``); None when the geometry does not change what it computes.
    strided : True when ``matmul`` (and ``prepare``) take transposed views (``W.T``, ``delta.T``:
        F-contiguous) as ``a`` and ``b`` without copying them (BLAS reads them in place); the
        others get C-contiguous operands.
    matmul_t : optional ``(a, b, config) -> MatmulResult`` whose value is ``(a @ b).T``,
        C-contiguous, computed in that layout (the weight gradient with its left operand
        checked) instead of transposed by a copy; None: ``matmul`` and a copy.
    update_prepare : optional ``(w, v, g, momentum, lr, config, columns=, nonzero=) -> object``:
        the SGD update of ``w`` in place (as :func:`canna.nn.train.sgd_step` does it) and
        ``prepare`` of the new ``w`` in the same pass; None: the update, then ``prepare``.
    """

    name: str
    matmul: Callable[[np.ndarray, np.ndarray, CFPUConfig], MatmulResult]
    description: str = ""
    supports_approx: bool = True
    prepare: Callable | None = None
    on_geometry: Callable | None = None
    strided: bool = False
    matmul_t: Callable | None = None
    update_prepare: Callable | None = None

    def check(self, config: CFPUConfig) -> None:
        if config.enabled and not self.supports_approx:
            raise ValueError(f"backend {self.name!r} computes exact float32 only; "
                             f"use golden-fast or golden-exact for {config.describe()}")


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Add ``backend`` to the registry (``replace=True`` to overwrite a name)."""
    if not isinstance(backend, Backend):
        raise TypeError(f"expected a Backend, got {type(backend).__name__}")
    if backend.name in _REGISTRY and not replace:
        raise ValueError(f"backend {backend.name!r} is already registered")
    _REGISTRY[backend.name] = backend
    return backend


def get_backend(name, geometry=None) -> Backend:
    """The backend called ``name`` (a :class:`Backend` passes through), for the lane array
    ``geometry`` when it runs one (:attr:`Backend.on_geometry`)."""
    if isinstance(name, Backend):
        backend = name
    else:
        try:
            backend = _REGISTRY[name]
        except KeyError:
            raise ValueError(f"unknown backend {name!r}; known: {', '.join(_REGISTRY)}") from None
    if geometry is not None and backend.on_geometry is not None:
        backend = backend.on_geometry(geometry)
    return backend


def backend_names() -> list[str]:
    return list(_REGISTRY)


def _native(a, b, config: CFPUConfig, transposed: bool = False) -> MatmulResult:
    if config.enabled:
        raise ValueError(f"backend 'native' computes exact float32 only, got {config.describe()}")
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"shape mismatch: a is {a.shape}, b is {b.shape}")
    return MatmulResult(np.matmul(b.T, a.T) if transposed else np.matmul(a, b),
                        a.shape[0] * a.shape[1] * b.shape[1], 0)


def _native_t(a, b, config: CFPUConfig) -> MatmulResult:
    return _native(a, b, config, transposed=True)


def _fast(a, b, config: CFPUConfig) -> MatmulResult:
    # b may be prepare()'s cached transform; matmul_fast checks it was made for this config.
    return matmul_fast(a, b, config)


def _fast_t(a, b, config: CFPUConfig) -> MatmulResult:
    return matmul_fast(a, b, config, transposed=True)


register_backend(Backend("native", _native, "NumPy/BLAS float32, exact only", supports_approx=False,
                         strided=True, matmul_t=_native_t))
register_backend(Backend("golden-fast", _fast, "golden CFPU products, BLAS summation", prepare=prepare,
                         strided=True, matmul_t=_fast_t, update_prepare=sgd_update_prepare))
register_backend(Backend("golden-exact", matmul_reference,
                         "golden CFPU products, sequential binary32 sum (bit-exact, slow)"))

class ArrayCosim:
    """The RTL lane array as a matmul backend: every matmul runs on the Verilated array
    (:func:`canna.sim.array.run_array`, fast C++ co-simulation), checked bit for bit, counter
    for counter and cycle for cycle against the golden lane model. The counters of every call
    add up in :attr:`totals` (golden lane model, both disciplines) and :attr:`rtl_cycles` (the
    RTL's own cycle counter, in this backend's discipline)."""

    def __init__(self, discipline: str = "lockstep", lanes: int = 16, exact_cycles: int = 4,
                 simulator: str = "verilator-fast"):
        from canna.spec.array import ArrayGeometry
        self.discipline = discipline
        self.geometry = ArrayGeometry(lanes, exact_cycles)
        self.simulator = simulator
        self.reset()

    def reset(self) -> None:
        from canna.sim.lanes import LaneArrayTotals
        self.totals = LaneArrayTotals()
        self.rtl_cycles = 0

    def __call__(self, a, b, config: CFPUConfig) -> MatmulResult:
        from canna.sim.array import run_array
        r = run_array(np.ascontiguousarray(a, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32),
                      config, backend=self.simulator, geometry=self.geometry, discipline=self.discipline)
        self.totals.add(r.model)
        self.rtl_cycles += int(r.cycles)
        return MatmulResult(r.value, r.products, r.hits, r.model)


def _rtl_backend(geometry=None) -> Backend:
    from canna.spec.array import ArrayGeometry
    geometry = geometry or ArrayGeometry()
    return Backend("rtl", ArrayCosim("lockstep", geometry.lanes, geometry.exact_cycles),
                   f"RTL lane array ({geometry.lanes} lanes by default, fast Verilator "
                   "co-simulation, lockstep), checked against the golden model; slow",
                   on_geometry=_rtl_backend)


register_backend(_rtl_backend())

#: Operand names per phase: the first is the ``a`` side, the second the ``b`` side of the natural
#: product (forward ``x @ W``, backward ``delta @ W.T``, gradient ``x.T @ delta``).
OPERANDS = {
    "forward": ("input", "weight"),
    "backward": ("delta", "weight"),
    "gradient": ("input", "delta"),
}


def nonzero_products(left: np.ndarray, right) -> int:
    """How many of the products of ``left @ right`` have two nonzero finite operands, i.e. are
    not bypassed (a zero, infinite or NaN operand): the products the hit rule can take at all.
    Equal to ``products - bypassed`` of the lane array's accounting."""
    if isinstance(right, np.ndarray):
        per_row = count_nonzero_finite(right, 1)
    else:   # prepared: counted by the transform where asked for
        per_row = right.nonzero_rows if right.nonzero_rows is not None else count_nonzero_finite(right.original, 1)
    return int(count_nonzero_finite(left, 0) @ per_row)


def oriented(left: np.ndarray, right, checked_right: bool = True, strided: bool = False) -> tuple:
    """The operands ``(a, b)`` the CFPU multiplies for ``left @ right``: ``(left, right)`` when
    ``right`` is the checked operand, else ``(right.T, left.T)`` (so that ``left`` is the ``b``
    operand; the products are the same pairs, the operands swap roles). C-contiguous float32;
    a prepared ``right`` (not an ndarray) passes through, and so do float32 transposed views
    when ``strided`` (:attr:`Backend.strided`): ``W.T`` as ``b``, and ``delta.T`` as ``a`` of
    the weight gradient (the textbook ``x.T @ delta``, no transposing copy)."""
    if checked_right:
        if not isinstance(right, np.ndarray) or (strided and right.dtype == np.float32
                                                 and right.flags.f_contiguous):
            b = right
        else:
            b = np.ascontiguousarray(right, dtype=np.float32)
        return np.ascontiguousarray(left, dtype=np.float32), b
    a = right.T
    if not (strided and a.dtype == np.float32 and a.flags.f_contiguous):
        a = np.ascontiguousarray(a, dtype=np.float32)
    return a, np.ascontiguousarray(left.T, dtype=np.float32)


def checked_matmul(backend: Backend, left: np.ndarray, right: np.ndarray, config: CFPUConfig,
                   checked_right: bool = True, count: Callable | None = None,
                   prepared=None) -> MatmulResult:
    """``left @ right`` with ``right`` (default) or ``left`` as the CFPU's checked operand
    (:func:`oriented`); ``count(a, b, config, result)`` sees the operands the backend got.
    ``prepared``: the checked operand as the backend's ``b`` (``right``, or ``left.T``), made
    by ``backend.prepare`` for ``config``, taken in its place."""
    a, b = oriented(left, right, checked_right, backend.strided)
    if prepared is not None:
        b = prepared
    if not checked_right and backend.matmul_t is not None:
        r = backend.matmul_t(a, b, config)       # value: left @ right, no transposing copy
    else:
        r = backend.matmul(a, b, config)
    if count is not None:
        count(a, b, config, r)
    if checked_right or backend.matmul_t is not None:
        return r
    return r._replace(value=np.ascontiguousarray(r.value.T))
