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

__all__ = ["NativeBuildError", "cache_dir", "build_shared", "build_extension", "build_verilated",
           "run_parts"]


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
    if not target.exists():
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        cmd = [compiler, *flags, "-shared", "-fPIC", "-o", tmp, *map(str, sources), *libs]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            os.unlink(tmp)
            raise NativeBuildError(f"building {name} failed: {' '.join(cmd)}\n{proc.stderr}")
        os.replace(tmp, target)
    return target


def build_shared(name: str, sources: list[Path], *, compiler: str | None = None,
                 flags: tuple[str, ...] = ("-O3", "-march=native", "-std=c11"),
                 libs: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Compile ``sources`` into a cached shared library and load it with ctypes."""
    return ctypes.CDLL(str(_compile(name, sources, compiler, flags, libs)))


def build_extension(name: str, sources: list[Path], *, compiler: str | None = None,
                    flags: tuple[str, ...] = ("-O3", "-march=native", "-std=c11")):
    """Compile ``sources`` into a cached CPython extension module ``name`` (one of them defines
    ``PyInit_<name>``) against this interpreter's headers, and import it."""
    import importlib.machinery
    import importlib.util
    import sysconfig
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise NativeBuildError(f"Python headers not found in {include}")
    path = _compile(name, sources, compiler, (*flags, f"-I{include}"), (),
                    key_extra=sysconfig.get_config_var("EXT_SUFFIX") or "")
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def run_parts(part, parts: int) -> list:
    """``[part(0), ..., part(parts - 1)]``, each on its own thread when there are several (the
    native calls release the GIL, so the parts of a split job run in parallel)."""
    if parts == 1:
        return [part(0)]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(parts) as pool:
        return list(pool.map(part, range(parts)))


def _run_parallel(cmds: list[list[str]], jobs: int, cwd) -> None:
    """Run compiler commands, ``jobs`` at a time; the first failure kills the rest and raises."""
    running: list[tuple[subprocess.Popen, list[str]]] = []
    pending = list(cmds)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                cmd = pending.pop(0)
                running.append((subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT, text=True), cmd))
            proc, cmd = running.pop(0)
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise NativeBuildError(f"{' '.join(cmd)} failed:\n{out[-4000:]}")
    finally:  # a failure or an interrupt: stop the other compilers before their directory goes
        for proc, _ in running:
            proc.kill()
            proc.wait()


#: ``-fvisibility=hidden -fno-plt``: the model's functions call each other (and the C++ runtime)
#: directly instead of through the shared library's PLT: 4 % more cycles/s for the lane array.
#: Each driver exports its C interface explicitly (``#pragma GCC visibility push(default)``).
_CXX_BASE = ("-std=c++17", "-fPIC", "-DVM_TRACE=0", "-fvisibility=hidden", "-fno-plt")
_LINK = ("-pthread",)


def build_verilated(name: str, verilog: str, *, top: str, driver: Path, root: Path,
                    verilator_flags: tuple[str, ...], cxx_fast: tuple[str, ...],
                    cxx_slow: tuple[str, ...] | None = None, config: str = "",
                    headers: dict[str, str] | None = None, quiet: bool = True) -> Path:
    """Verilate ``verilog`` (top module ``top``, C++ class ``V<top>``) and link it with the C++
    ``driver`` into the shared library ``root/<name>-<hash>.so``; returns its path.

    Cached: the hash covers the Verilog, the driver, ``config`` (a Verilator configuration file's
    text), the generated ``headers`` (file name -> text, written next to the Verilated sources
    for the driver to include), every flag, the Verilator version and the C++ compiler, so a
    rebuild happens only when one of them changes. The model's files compile with
    ``cxx_fast``; its one-off initialisation files (``*Slow*``) and Verilator's runtime with
    ``cxx_slow`` (default: ``cxx_fast``), two jobs at a time. Each build works in a directory of
    its own and renames the library into place, so concurrent first uses do not clash. The build
    time goes to ``<name>-<hash>.build.log``.
    """
    import time

    from .cosim import verilator_env
    env = verilator_env()
    vl_root = Path(env.get("VERILATOR_ROOT", ""))
    try:
        version = subprocess.run(["verilator", "--version"], env=env, capture_output=True,
                                 text=True).stdout.strip()
    except FileNotFoundError as e:
        raise NativeBuildError(f"verilator not found: {e}") from None
    cxx = os.environ.get("CXX", "g++")
    cxx_slow = cxx_fast if cxx_slow is None else cxx_slow
    headers = dict(headers or {})
    key = hashlib.sha256("\0".join([
        verilog, Path(driver).read_text(), config, repr(sorted(headers.items())), top,
        repr((verilator_flags, cxx_fast, cxx_slow, _CXX_BASE, _LINK)), version,
        cxx]).encode()).hexdigest()[:16]
    root.mkdir(parents=True, exist_ok=True)
    lib = root / f"{name}-{key}.so"
    if lib.exists():
        return lib
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=f"{name}-{key}.", suffix=".obj", dir=root))
    try:
        src = work / f"{top}.v"
        src.write_text(verilog)
        inputs = [str(src)]
        if config:
            (work / "config.vlt").write_text(config)
            inputs.insert(0, str(work / "config.vlt"))
        prefix = f"V{top}"
        cmd = ["verilator", "--cc", *inputs, "--top-module", top, "--prefix", prefix,
               "-Mdir", str(work), *verilator_flags]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NativeBuildError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}"
                                   f"{proc.stderr[-4000:]}")
        t_vl = time.perf_counter() - t0
        for file_name, text in headers.items():
            (work / file_name).write_text(text)
        inc = ["-I", str(work), "-I", str(vl_root / "include"),
               "-I", str(vl_root / "include" / "vltstd")]
        model = sorted(work.glob(f"{prefix}*.cpp"))
        slow = [p for p in model if "Slow" in p.name]
        fast = [p for p in model if "Slow" not in p.name] + [Path(driver)]
        runtime = [vl_root / "include" / "verilated.cpp",
                   vl_root / "include" / "verilated_threads.cpp"]
        cmds, objs = [], []
        for files, opt in ((fast, cxx_fast), (slow + runtime, cxx_slow)):
            for f in files:
                obj = work / (Path(f).stem + ".o")
                objs.append(obj)
                cmds.append([cxx, *_CXX_BASE, *opt, *inc, "-c", str(f), "-o", str(obj)])
        cmds.sort(key=lambda c: -Path(c[-3]).stat().st_size)  # biggest first: jobs end together
        jobs = max(1, min(2, os.cpu_count() or 1))
        _run_parallel(cmds, jobs, work)
        tmp = work / lib.name  # renamed into place: no one loads a half-written library
        proc = subprocess.run([cxx, "-shared", "-o", str(tmp), *map(str, objs), *_LINK],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise NativeBuildError(f"link failed:\n{proc.stderr[-4000:]}")
        os.replace(tmp, lib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    (root / f"{name}-{key}.build.log").write_text(
        f"verilator {t_vl:.1f} s, total {elapsed:.1f} s, jobs {jobs}\n{' '.join(cmd)}\n")
    if not quiet:
        print(f"built {lib.name}: verilator {t_vl:.1f} s, total {elapsed:.1f} s")
    return lib
