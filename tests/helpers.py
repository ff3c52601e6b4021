"""What the test files share: the CANNA_SEED override, the NN-like operand generator, a NaN bit
test, loading a script of scripts/ (not a package) by path, and tiny MNIST-format IDX files.

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

__all__ = ["seed", "nn_like", "is_nan", "load_script", "write_idx", "make_mnist", "REPO_ROOT"]

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


def write_idx(path, arr, magic, gz=False):
    """An IDX file (big-endian magic and shape, then uint8 data) at ``path`` (``path.gz`` with
    ``gz``)."""
    import gzip
    import struct
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(data)
    else:
        Path(path).write_bytes(data)


def make_mnist(d, n_train=60, n_test=20, gz=False, rng=None, seed=0):
    """A tiny MNIST in folder ``d``: random 4x4 images, labels 0..9 cycling."""
    rng = rng or np.random.default_rng(seed)
    d = Path(d)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(d / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (n, 4, 4)), 0x803, gz)
        write_idx(d / f"{stem}-labels-idx1-ubyte", np.arange(n) % 10, 0x801, gz)
