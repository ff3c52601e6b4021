"""Build small C/C++ helpers on first use and cache them, so the project needs no build step
beyond ``pip install``: a fresh machine has gcc, and that is all this needs.

The cache key covers the sources, the compiler command and the CPU model (the build uses
``-march=native``), so a stale or foreign binary is never loaded. The cache lives in
``$CANNA_CACHE_DIR`` or ``~/.cache/canna``; the shared object is written to a temporary name and
renamed into place, so concurrent first uses cannot load a half-written file.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["NativeBuildError", "cache_dir", "build_shared", "run_parts"]


class NativeBuildError(RuntimeError):
    """The compiler is missing or rejected the source."""


def cache_dir() -> Path:
    root = os.environ.get("CANNA_CACHE_DIR") or os.path.join(Path.home(), ".cache", "canna")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "flags")):
                    return line
    except OSError:
        pass
    return platform.processor()


def build_shared(name: str, sources: list[Path], *, compiler: str | None = None,
                 flags: tuple[str, ...] = ("-O3", "-march=native", "-std=c11"),
                 libs: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Compile ``sources`` into a cached shared library and load it."""
    compiler = compiler or os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None:
        raise NativeBuildError(f"C compiler {compiler!r} not found")
    key = hashlib.sha256()
    for src in sources:
        key.update(Path(src).read_bytes())
    key.update(" ".join((compiler, *flags, *libs, platform.machine(), _cpu_model())).encode())
    target = cache_dir() / f"{name}-{key.hexdigest()[:16]}.so"
    if not target.exists():
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [compiler, *flags, "-shared", "-fPIC", "-o", tmp, *map(str, sources), *libs]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            os.unlink(tmp)
            raise NativeBuildError(f"building {name} failed: {' '.join(cmd)}\n{proc.stderr}")
        os.replace(tmp, target)
    return ctypes.CDLL(str(target))


def run_parts(part, parts: int) -> list:
    """``[part(0), ..., part(parts - 1)]``, each on its own thread when there are several (the
    native calls release the GIL, so the parts of a split job run in parallel)."""
    if parts == 1:
        return [part(0)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(parts) as pool:
        return list(pool.map(part, range(parts)))
