"""Files every command writes, in one place: atomic writes, strict JSON results, and the check
of an output location before any work.

Every write goes to a temporary file in the destination's directory, is flushed to disk, then
renamed over the destination with :func:`os.replace`, so a reader (or a crash, or Ctrl-C) never
sees a half-written file. The file gets the mode a plain ``open()`` would give it (``0o666`` less
the umask: 0644 under umask 022), not :func:`tempfile.mkstemp`'s private 0600. Results are
strict JSON: :func:`write_json` refuses NaN and infinity.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["OutputError", "atomic_write", "atomic_write_bytes", "write_json", "json_default",
           "remove_stale_temporaries", "check_output_dir"]


class OutputError(ValueError):
    """An output location cannot take a run's files."""


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


def atomic_write(path, write) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, flush it to disk and rename it over
    ``path``: a reader never sees a half-written file, a failure leaves none behind."""
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
    atomic_write(path, lambda fh: fh.write(data))


def json_default(o):
    """JSON encoding of NumPy scalars and arrays."""
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
    text = json.dumps(obj, indent=2, default=json_default, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode())


def check_output_dir(directory, files=(), option: str = "--out") -> None:
    """Fail now, before any work, unless ``directory`` can take the run's output ``files``
    (paths relative to it): the directory and every folder of ``files`` are directories or
    absent, each file is a regular file or absent, and the nearest existing folder of each
    can have files created in it (probed with a temporary file, removed at once). Nothing else
    is created. OutputError naming ``option`` and the offending path."""
    root = Path(directory)
    dirs = sorted({root, *(root / Path(f).parent for f in files)})
    for d in dirs:
        if d.exists() and not d.is_dir():
            what = "" if d == root else f"{d} "
            raise OutputError(f"{option} {root}: {what}exists and is not a directory")
    for f in files:
        p = root / f
        if p.exists() and not p.is_file():
            raise OutputError(f"{option} {root}: {p} exists and is not a regular file "
                                  f"(the run writes a file there)")
    for d in dirs:
        a = d
        while not a.exists() and a != a.parent:
            a = a.parent
        if not a.is_dir():
            raise OutputError(f"{option} {root}: {a} is not a directory")
        try:
            fd, probe = tempfile.mkstemp(prefix=".canna-probe.", dir=a)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise OutputError(f"{option} {root}: cannot create files in {a}: {e.strerror}") from None
