"""What the test files share: the CANNA_SEED override, the NN-like operand generator, a NaN bit
test, and loading a script of scripts/ (not a package) by path.

Importable from every test file as ``from helpers import ...``: pyproject.toml's
``[tool.pytest.ini_options] pythonpath = ["tests"]`` puts this folder on ``sys.path`` (the tests
run with ``--import-mode=importlib``, which does not add test folders to it).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from canna.spec.formats import BINARY32, FloatFormat

__all__ = ["seed", "nn_like", "is_nan", "load_script", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def seed(default: int) -> int:
    """The seed of a randomised test: ``CANNA_SEED`` from the environment when set (parsed like
    ``int()``), else ``default``. Anything but a non-negative integer is a clear error."""
    text = os.environ.get("CANNA_SEED")
    if text is None:
        return int(default)
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 0:
        raise ValueError(f"CANNA_SEED must be a non-negative integer, got {text!r}")
    return value


def nn_like(rng, m: int, k: int, n: int, *, specials: bool = False):
    """Operands of an NN layer ``x @ w``: ReLU activations ``x`` (m, k), half exact zeros and the
    rest |N(0, 1)|, times small Gaussian weights ``w`` (k, n) ~ N(0, 0.05), both float32.

    ``specials=True`` then plants ``x[1, 2] = +inf`` and a subnormal weight ``w[0, 0] = 1e-40``
    (the multiplier's exact path), when ``m > 1 and k > 2``; it draws nothing more from ``rng``.
    """
    x = np.maximum(rng.standard_normal((m, k)), 0).astype(np.float32)
    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    if specials and m > 1 and k > 2:
        x[1, 2] = np.inf
        w[0, 0] = np.float32(1e-40)
    return x, w


def is_nan(bits, fmt: FloatFormat = BINARY32):
    """NaN encodings of ``fmt`` (all-ones exponent, non-zero fraction), from the bits: an
    unsigned integer array (elementwise) or a Python int."""
    return (((bits >> fmt.frac_bits) & fmt.exp_max) == fmt.exp_max) & ((bits & fmt.frac_mask) != 0)


def load_script(name: str):
    """The module ``scripts/<name>.py``, loaded by path (scripts/ is not a package). Not entered
    in ``sys.modules``: every call loads a fresh copy."""
    path = REPO_ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"canna_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
