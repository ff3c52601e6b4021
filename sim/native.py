"""Build small C/C++ helpers on first use and cache them, so the project needs no build step
beyond ``pip install``: a fresh machine has gcc, and that is all this needs.

The cache key covers the sources, the compiler command and the CPU model (the build uses
``-march=native``), so a stale or foreign binary is never loaded. The cache lives in
``$CANNA_CACHE_DIR`` or ``~/.cache/canna``; the shared object is written to a temporary name and
renamed into place, so concurrent first uses cannot load a half-written file. Every cached
artefact is sealed with its SHA-256 (:func:`seal`) and used only while it still matches
(:func:`intact`): a damaged cache entry (truncated, overwritten, bit flips) is rebuilt.
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

__all__ = ["NativeBuildError", "cache_dir", "build_shared", "build_extension", "run_parts",
           "native_golden_available",
           "seal", "intact"]


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


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _seal_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def seal(path) -> None:
    """Record ``path``'s SHA-256 beside it (``<path>.sha256``, written atomically) once it is
    complete; :func:`intact` checks it before the artefact is used again."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(_digest(path) + "\n")
    os.replace(tmp, _seal_path(path))


def intact(path) -> bool:
    """True when ``path`` exists and still has the SHA-256 :func:`seal` recorded."""
    path, sealed = Path(path), _seal_path(Path(path))
    try:
        return path.is_file() and sealed.read_text().strip() == _digest(path)
    except OSError:
        return False


def _compile(name: str, sources: list[Path], compiler: str | None, flags: tuple[str, ...],
             libs: tuple[str, ...], key_extra: str = "") -> Path:
    """Compile ``sources`` into a cached shared object; returns its path."""
    compiler = compiler or os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None:
        raise NativeBuildError(f"C compiler {compiler!r} not found")
    key = hashlib.sha256()
    for src in sources:
        key.update(Path(src).read_bytes())
    for folder in sorted({Path(src).parent for src in sources}):   # headers the sources include
        for h in sorted(folder.glob("*.h")):
            key.update(h.read_bytes())
    key.update(" ".join((compiler, *flags, *libs, platform.machine(), _cpu_model(), key_extra)).encode())
    target = cache_dir() / f"{name}-{key.hexdigest()[:16]}.so"
    if not intact(target):
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [compiler, *flags, "-shared", "-fPIC", "-o", tmp, *map(str, sources), *libs]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            os.unlink(tmp)
            raise NativeBuildError(f"building {name} failed: {' '.join(cmd)}\n{proc.stderr}")
        os.replace(tmp, target)
        seal(target)
    return target


def build_shared(name: str, sources: list[Path], *, compiler: str | None = None,
                 flags: tuple[str, ...] = ("-O3", "-march=native", "-std=c11"),
                 libs: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Compile ``sources`` into a cached shared library and load it with ctypes."""
    return ctypes.CDLL(str(_compile(name, sources, compiler, flags, libs)))


def build_extension(name: str, sources: list[Path], *, compiler: str | None = None,
                    flags: tuple[str, ...] = ("-O3", "-march=native", "-std=c11"),
                    libs: tuple[str, ...] = (), key_extra: str = ""):
    """Compile ``sources`` into a cached CPython extension module ``name`` (one of them defines
    ``PyInit_<name>``) against this interpreter's headers, and import it. ``libs``: linker
    arguments after the sources; ``key_extra``: what else the binary depends on (a header
    elsewhere, a library's version), for the cache key."""
    import importlib.machinery
    import importlib.util
    import sysconfig
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise NativeBuildError(f"Python headers not found in {include}")
    path = _compile(name, sources, compiler, (*flags, f"-I{include}"), libs,
                    key_extra=(sysconfig.get_config_var("EXT_SUFFIX") or "") + key_extra)
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def native_golden_available(load) -> bool:
    """True when ``load()`` (building and loading a C twin of a golden model) succeeds;
    ``CANNA_GOLDEN_FAST=0`` turns every such twin off (the NumPy models run instead)."""
    if os.environ.get("CANNA_GOLDEN_FAST", "1") == "0":
        return False
    try:
        load()
        return True
    except Exception:   # no compiler, or a build that fails: the NumPy model is used instead
        return False


def run_parts(part, parts: int) -> list:
    """``[part(0), ..., part(parts - 1)]``, each on its own thread when there are several (the
    native calls release the GIL, so the parts of a split job run in parallel)."""
    if parts == 1:
        return [part(0)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(parts) as pool:
        return list(pool.map(part, range(parts)))
