"""Checkpoints and trained models, and the results JSON of the NN driver.

Every file is written atomically by :mod:`canna.files` (its writers, and the output-location
check, are re-exported here). A checkpoint or model is one ``.npz``: named arrays plus a JSON
``meta`` entry (a JSON object).

Results are strict JSON: :func:`write_json` refuses NaN and infinity (``allow_nan=False``);
a producer whose value may not be finite writes ``null`` and a ``<name>_note`` saying why
(:func:`finite_or_null`).

Reading is defensive: an unreadable, truncated or corrupt file, a missing array (looking one up
in the arrays :func:`load_npz` returns) or a non-finite parameter (:func:`require_finite`) is a
:class:`CheckpointError` naming the file (and the array).
"""
from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from canna.files import (atomic_write, atomic_write_bytes, check_output_dir,
                         json_default, remove_stale_temporaries, write_json)

__all__ = ["atomic_write_bytes", "remove_stale_temporaries", "write_json", "save_npz", "load_npz",
           "CheckpointError", "NpzArrays", "require_finite", "finite_or_null", "check_output_dir"]


class CheckpointError(ValueError):
    """A checkpoint or model file is missing, unreadable or does not fit the run."""


def finite_or_null(record: dict, reason: str) -> dict:
    """A copy of ``record`` in which every float that is NaN or infinite is ``None``, with a
    ``<key>_note`` beside it: the value and ``reason``."""
    out = {}
    for k, v in record.items():
        if isinstance(v, (float, np.floating)) and not math.isfinite(v):
            out[k] = None
            out[f"{k}_note"] = f"not finite ({float(v)}): {reason}"
        else:
            out[k] = v
    return out


def save_npz(path, arrays: dict, meta: dict) -> None:
    """Save named arrays and a JSON-able ``meta`` dict to ``path`` (.npz), atomically."""
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["meta"] = np.frombuffer(json.dumps(meta, default=json_default).encode(), dtype=np.uint8)
    atomic_write(path, lambda fh: np.savez(fh, **payload))


class NpzArrays(dict):
    """The arrays of one ``.npz`` file (name -> ndarray); looking up a name it lacks raises
    :class:`CheckpointError` naming the file and the array (not a bare ``KeyError``)."""

    def __init__(self, path, arrays: dict):
        super().__init__(arrays)
        self.path = Path(path)

    def __missing__(self, name):
        raise CheckpointError(f"{self.path}: no array {name!r}")


def require_finite(path, arrays, names) -> None:
    """CheckpointError naming ``path`` and the array unless each of ``arrays[name]`` is there and
    holds no NaN or infinity."""
    for name in names:
        if name not in arrays:
            raise CheckpointError(f"{path}: no array {name!r}")
        a = np.asarray(arrays[name])
        if a.dtype.kind in "fc":
            bad = int(np.count_nonzero(~np.isfinite(a)))
            if bad:
                raise CheckpointError(f"{path}: array {name!r} holds {bad} non-finite values "
                                      f"(NaN or infinity)")


# What reading a damaged .npz raises: a truncated or empty file, a bad CRC, a damaged deflate
# stream of savez_compressed, a missing zip member, a pickled array.
_UNREADABLE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, KeyError)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def load_npz(path) -> tuple[NpzArrays, dict]:
    """``(arrays, meta)`` from a file written by :func:`save_npz`; CheckpointError naming the
    file when it is missing, not a .npz, corrupt, or its meta entry is not a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: not a .npz file (it holds a single array, as numpy.save "
                                  f"writes); checkpoints and models are the .npz files canna train writes")
        with z:
            if "meta" not in z.files:
                raise CheckpointError(f"{path}: not a canna checkpoint/model (no meta entry)")
            arrays = NpzArrays(path, {k: z[k] for k in z.files if k != "meta"})
            raw_meta = z["meta"].tobytes()
    except CheckpointError:
        raise
    except _UNREADABLE as e:
        raise CheckpointError(f"{path}: unreadable checkpoint/model (corrupt or truncated?): "
                              f"{_one_line(e)}") from None
    try:
        meta = json.loads(raw_meta.decode())
    except ValueError:
        raise CheckpointError(f"{path}: its meta entry is not JSON text") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its meta entry is a JSON {type(meta).__name__}, not an object")
    return arrays, meta
