"""Jobs of the reproduction suite: what a job is, its key, how a worker runs one, and where its
results live.

A :class:`Job` is a kind (a registered ``module:function``) and the complete parameters of one
run. Its :attr:`Job.key` hashes the kind, the parameters, the keys of the jobs it depends on and
:func:`code_version` (the sources the results depend on), so an edit of the golden model, the
simulator or the NN driver gives every job a new key and nothing stale is reused.

:class:`JobStore` keeps one folder per job under ``<root>/jobs/<key[:16]>/``: ``job.json`` (what
the job is), the job's own artefacts, ``error.json`` after a failure, and ``result.json``,
written atomically and last, so that its presence means the job is done. The sweep engine
(:mod:`canna.repro.sweep`) writes all of these in the parent process; a worker only runs
:func:`run_job` and returns its result. See docs/sweeps.md.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KINDS", "register_kind", "code_version", "canonical_json", "Job", "run_job",
           "probe_job", "JobStore", "THREADS_ENV"]

#: Kind name -> ``"module:function"``; the function is called as ``fn(params, workdir, deps)``.
KINDS: dict[str, str] = {"probe": "canna.repro.jobs:probe_job"}

#: Set in a worker's environment, a positive integer: :func:`run_job` limits the BLAS/OpenMP
#: thread pools to it (threadpoolctl) while the job runs. The local process pool and
#: ``--scheduler local`` set it; remote Dask workers get it from the shell that starts them.
THREADS_ENV = "CANNA_JOB_THREADS"

# The packages whose sources the results depend on (recursively), and the file types hashed.
_HASHED_PACKAGES = ("canna.spec", "canna.sim", "canna.nn")
_HASHED_SUFFIXES = (".py", ".c", ".h", ".cpp")
# Single modules whose source the results depend on too: the job kinds of canna reproduce (how a
# job's params become a run).
_HASHED_MODULES = ("canna.repro.experiments",)
# Measured inputs of the energy model, under canna.sim.paths.build_root(), when present.
_HASHED_BUILD_FILES = ("activity/activity.json", "synth/synth.json")


def _check_target(target) -> tuple[str, str]:
    module, sep, name = target.partition(":") if isinstance(target, str) else ("", "", "")
    if not sep or not module or not name or ":" in name:
        raise ValueError(f"a job kind's target is 'module:function', got {target!r}")
    return module, name


def register_kind(name: str, target: str) -> None:
    """Make ``name`` a job kind run by ``target`` (``"module:function"``). Registering the same
    target again is fine; another target for a registered name is a ValueError."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a job kind's name is a non-empty string without ':', got {name!r}")
    _check_target(target)
    if KINDS.get(name, target) != target:
        raise ValueError(f"job kind {name!r} is already registered as {KINDS[name]!r}, "
                         f"not {target!r}")
    KINDS[name] = target


def _source_files() -> list[tuple[str, Path]]:
    """``(name, path)`` of every file :func:`code_version` hashes, sorted by name: the sources of
    :data:`_HASHED_PACKAGES` (``canna.sim/array/lanes.cpp``) and the build files present
    (``build/synth/synth.json``)."""
    files = []
    for package in _HASHED_PACKAGES:
        spec = importlib.util.find_spec(package)
        for location in spec.submodule_search_locations:
            base = Path(location)
            for p in base.rglob("*"):
                if p.suffix in _HASHED_SUFFIXES and p.is_file() and "__pycache__" not in p.parts:
                    files.append((f"{package}/{p.relative_to(base).as_posix()}", p))
    for module in _HASHED_MODULES:
        files.append((module, Path(importlib.util.find_spec(module).origin)))
    from canna.sim.paths import build_root
    build = build_root()
    for rel in _HASHED_BUILD_FILES:
        if (build / rel).is_file():
            files.append((f"build/{rel}", build / rel))
    return sorted(files)


def _hash_sources(files) -> str:
    """SHA-256 hex over ``(name, path)`` pairs in the given order: each name and the file's bytes,
    both length-prefixed (no two different lists hash alike)."""
    h = hashlib.sha256()
    for name, path in files:
        data = Path(path).read_bytes()
        encoded = name.encode()
        h.update(len(encoded).to_bytes(8, "little") + encoded)
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


@functools.cache
def code_version() -> str:
    """SHA-256 hex of the sources the results depend on: every ``*.py``, ``*.c``, ``*.h`` and
    ``*.cpp`` file of canna.spec, canna.sim (recursively) and canna.nn, the job kinds' module
    canna.repro.experiments, plus
    ``build/activity/activity.json`` and ``build/synth/synth.json`` when present. Computed once
    per process (``code_version.cache_clear()`` forgets it)."""
    return _hash_sources(_source_files())


def canonical_json(obj) -> str:
    """Sorted keys, no spaces, strict (no NaN or infinity), NumPy scalars and arrays as numbers
    and lists: the text a key hashes, and what a job's function receives back as its params."""
    from canna.files import json_default
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      default=json_default)


@dataclass(frozen=True)
class Job:
    """One run: ``kind`` (a name of :data:`KINDS`), ``params`` (JSON-able and complete:
    everything the run depends on), ``deps`` (keys of the jobs whose results it takes) and
    ``label`` (a short name for progress lines, not part of the key)."""
    kind: str
    params: dict
    deps: tuple = ()
    label: str = ""

    def record(self) -> dict:
        """What ``job.json`` holds: kind, params, deps, label and the full key."""
        return {"kind": self.kind, "params": self.params, "deps": list(self.deps),
                "label": self.label, "key": self.key}

    @property
    def name(self) -> str:
        """The label, or ``<kind> <key[:8]>`` without one."""
        return self.label or f"{self.kind} {self.key[:8]}"

    @property
    def key(self) -> str:
        """SHA-256 hex of the canonical JSON of kind, params, deps (as a sorted list: their
        order does not matter) and :func:`code_version`. TypeError or ValueError when the params
        are not strict JSON."""
        text = canonical_json({"kind": self.kind, "params": self.params,
                               "deps": sorted(self.deps), "code": code_version()})
        return hashlib.sha256(text.encode()).hexdigest()


def _resolve(kind: str):
    target = kind if ":" in kind else KINDS.get(kind)
    if target is None:
        raise ValueError(f"unknown job kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    module, name = _check_target(target)
    return getattr(importlib.import_module(module), name)


def _job_threads():
    text = os.environ.get(THREADS_ENV)
    if not text:
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{THREADS_ENV} must be a positive integer, got {text!r}")
    return n


def run_job(kind: str, params: dict, workdir: str, deps: dict) -> dict:
    """Run one job where this is called (the sweep's process, a pool worker or a Dask worker):
    ``fn(params, Path(workdir), deps)`` with ``fn`` the kind's function, resolved by importlib.
    ``kind`` is a name of :data:`KINDS` or a ``"module:function"`` target itself (what the sweep
    sends, so that kinds registered at run time in the parent work in fresh workers). ``deps``
    maps each dependency's key to ``{"result": its result, "workdir": its folder}``. With
    :data:`THREADS_ENV` set, the BLAS/OpenMP thread pools are limited to it while the job
    runs. Returns the job's JSON-able result; whatever the job raises propagates."""
    fn = _resolve(kind)
    threads = _job_threads()
    if threads is None:
        return fn(params, Path(workdir), deps)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(threads):
        return fn(params, Path(workdir), deps)


def probe_job(params, workdir, deps) -> dict:
    """A job for testing the engine. Sleeps ``params["sleep"]`` seconds (default 0), raises
    RuntimeError(``params["fail"]``) when given, writes ``workdir/artifact.txt`` (the text of
    ``params["artifact"]``) when given. Its ``value`` is ``params["value"]`` (default 0) plus the
    ``value`` of every dependency's result, so values add up along the dependency graph;
    ``sum`` is the same number. With ``params["report_threads"]`` the result also has
    ``threads``: the thread-limit variables of the environment and the thread counts of the
    BLAS/OpenMP pools loaded (NumPy's included), to check a worker's limits."""
    time.sleep(float(params.get("sleep", 0)))
    if params.get("fail") is not None:
        raise RuntimeError(params["fail"])
    if params.get("artifact"):
        from canna.files import atomic_write_bytes
        atomic_write_bytes(Path(workdir) / "artifact.txt", str(params["artifact"]).encode())
    total = params.get("value", 0) + sum(d["result"]["value"] for d in deps.values())
    result = {"params": params, "deps": sorted(deps), "pid": os.getpid(), "sum": total,
              "value": total}
    if params.get("report_threads"):
        from threadpoolctl import threadpool_info
        importlib.import_module("numpy")    # loads its BLAS, which the thread limits must reach
        result["threads"] = {
            "env": {v: os.environ.get(v) for v in
                    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", THREADS_ENV)},
            "pools": sorted({lib["num_threads"] for lib in threadpool_info()})}
    return result


class JobStore:
    """The folders of a sweep's jobs: ``<root>/jobs/<key[:16]>/`` holds ``job.json`` (kind,
    params, deps, label, full key), the job's own artefacts (it is the job's workdir),
    ``error.json`` after a failure (the error line, the traceback text, the job) and
    ``result.json``, written atomically and last: its presence means the job is done."""

    JOB, RESULT, ERROR = "job.json", "result.json", "error.json"

    def __init__(self, root):
        self.root = Path(root)

    def workdir(self, job) -> Path:
        return self.root / "jobs" / job.key[:16]

    def done(self, job) -> bool:
        return (self.workdir(job) / self.RESULT).is_file()

    def result(self, job) -> dict:
        return json.loads((self.workdir(job) / self.RESULT).read_text())

    def error(self, job) -> dict | None:
        p = self.workdir(job) / self.ERROR
        return json.loads(p.read_text()) if p.is_file() else None
