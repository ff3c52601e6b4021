"""Atomic files: results JSON, checkpoints and trained models.

Every write goes to a temporary file in the destination's directory, is flushed to disk, then
renamed over the destination with :func:`os.replace`, so a reader (or a crash, or Ctrl-C) never
sees a half-written file. A checkpoint or model is one ``.npz``: named arrays plus a JSON
``meta`` entry.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "write_json", "save_npz", "load_npz", "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint or model file is missing, unreadable or does not fit the run."""


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    _atomic(Path(path), lambda fh: fh.write(data))


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=True) + "\n"
    atomic_write_bytes(path, text.encode())


def save_npz(path, arrays: dict, meta: dict) -> None:
    """Save named arrays and a JSON-able ``meta`` dict to ``path`` (.npz), atomically."""
    payload = {k: np.asarray(v) for k, v in arrays.items()}
    payload["meta"] = np.frombuffer(json.dumps(meta, default=_json_default).encode(), dtype=np.uint8)
    _atomic(Path(path), lambda fh: np.savez(fh, **payload))


def load_npz(path) -> tuple[dict, dict]:
    """``(arrays, meta)`` from a file written by :func:`save_npz`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "meta"}
            if "meta" not in z.files:
                raise CheckpointError(f"{path}: not a canna checkpoint/model (no meta entry)")
            meta = json.loads(z["meta"].tobytes().decode())
    except (OSError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: unreadable checkpoint/model: {e}") from None
    return arrays, meta
