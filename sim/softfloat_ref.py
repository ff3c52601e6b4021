"""Berkeley SoftFloat (through ``softfloatpy``) as the independent IEEE-754 reference.

Every exact-mode claim of the golden model is checked against this, never against ourselves:
round to nearest even, tininess detected after rounding, flags cleared before every operation.
``softfloatpy`` is a development dependency (``pip install -e '.[dev]'``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["f32_mul", "f32_add"]


def _run(op_name: str, a: np.ndarray, b: np.ndarray):
    try:
        import softfloatpy as sf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("softfloatpy is not installed: pip install -e '.[dev]'") from e
    op = getattr(sf, op_name)
    sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    sf.set_tininess_mode(sf.TininessMode.AFTER_ROUNDING)
    from_bytes = sf.Float32.from_bytes
    set_flags, get_flags = sf.set_exception_flags, sf.get_exception_flags
    a_bytes = np.asarray(a, dtype=">u4").tobytes()
    b_bytes = np.asarray(b, dtype=">u4").tobytes()
    n = len(a_bytes) // 4
    out = bytearray(4 * n)
    flags = np.empty(n, dtype=np.uint8)
    for i in range(n):
        j = 4 * i
        set_flags(0)
        out[j:j + 4] = op(from_bytes(a_bytes[j:j + 4]), from_bytes(b_bytes[j:j + 4])).to_bytes()
        flags[i] = get_flags()
    return np.frombuffer(bytes(out), dtype=">u4").astype(np.uint32), flags


def f32_mul(a, b):
    """SoftFloat's f32_mul over uint32 arrays: (result bits, flags in TestFloat order)."""
    return _run("f32_mul", a, b)


def f32_add(a, b):
    """SoftFloat's f32_add over uint32 arrays: (result bits, flags in TestFloat order)."""
    return _run("f32_add", a, b)
