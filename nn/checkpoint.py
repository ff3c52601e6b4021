"""Atomic files: results JSON, checkpoints and trained models.

Every write goes to a temporary file in the destination's directory, is flushed to disk, then
renamed over the destination with :func:`os.replace`, so a reader (or a crash, or Ctrl-C) never
sees a half-written file. The file gets the mode a plain ``open()`` would give it (``0o666`` less
the umask: 0644 under umask 022), not :func:`tempfile.mkstemp`'s private 0600. A checkpoint or
model is one ``.npz``: named arrays plus a JSON ``meta`` entry (a JSON object).

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
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["atomic_write_bytes", "remove_stale_temporaries", "write_json", "save_npz", "load_npz",
           "CheckpointError", "NpzArrays", "require_finite", "finite_or_null", "check_output_dir"]


class CheckpointError(ValueError):
    """A checkpoint or model file is missing, unreadable or does not fit the run; or an output
    location cannot take the run's files."""


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc/self/status);
    elsewhere by setting it and straight back (another thread creating a file meanwhile would
    get 077)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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


def remove_stale_temporaries(directory, names) -> None:
    """Delete the temporary files (``.<name>.<random>.tmp``) that an atomic write of one of
    ``names`` in ``directory`` leaves behind when its process is killed (SIGKILL, power loss)
    between creating and renaming it; a run calls this before it writes there again."""
    d = Path(directory)
    for name in names:
        for p in d.glob(f".{name}.*.tmp"):
            if p.is_file() and not p.is_symlink():
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass


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
    """Write ``obj`` as indented strict JSON, atomically; ValueError (and no file) when it holds
    NaN or infinity."""
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


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
    payload["meta"] = np.frombuffer(json.dumps(meta, default=_json_default).encode(), dtype=np.uint8)
    _atomic(Path(path), lambda fh: np.savez(fh, **payload))


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


def check_output_dir(directory, files=(), option: str = "--out") -> None:
    """Fail now, before any work, unless ``directory`` can take the run's output ``files``
    (paths relative to it): the directory and every folder of ``files`` are directories or
    absent, each file is a regular file or absent, and the nearest existing folder of each
    can have files created in it (probed with a temporary file, removed at once). Nothing else
    is created. CheckpointError naming ``option`` and the offending path."""
    root = Path(directory)
    dirs = sorted({root, *(root / Path(f).parent for f in files)})
    for d in dirs:
        if d.exists() and not d.is_dir():
            what = "" if d == root else f"{d} "
            raise CheckpointError(f"{option} {root}: {what}exists and is not a directory")
    for f in files:
        p = root / f
        if p.exists() and not p.is_file():
            raise CheckpointError(f"{option} {root}: {p} exists and is not a regular file "
                                  f"(the run writes a file there)")
    for d in dirs:
        a = d
        while not a.exists() and a != a.parent:
            a = a.parent
        if not a.is_dir():
            raise CheckpointError(f"{option} {root}: {a} is not a directory")
        try:
            fd, probe = tempfile.mkstemp(prefix=".canna-probe.", dir=a)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise CheckpointError(f"{option} {root}: cannot create files in {a}: {e.strerror}") from None
