"""The sweep engine of ``canna reproduce``: run a list of :class:`~canna.repro.jobs.Job` in
dependency order, in this process, on a local process pool or on Dask, skipping those already
done and storing each result atomically in a :class:`~canna.repro.jobs.JobStore`.

The parent process does all the writing (``job.json``, ``result.json``, ``error.json``); the
workers only run :func:`~canna.repro.jobs.run_job` and return or raise. A job that raises is
recorded in ``error.json`` and fails its dependants without running them; the sweep goes on,
and a rerun of the same sweep retries every job that is not done (the failed ones included).
Ctrl-C stops submitting, stops the workers and re-raises; a rerun then runs only the unfinished
jobs. See docs/sweeps.md.
"""
from __future__ import annotations

import heapq
import json
import logging
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from canna.files import (OutputError, check_output_dir, json_default, remove_stale_temporaries,
                         write_json)

from .jobs import KINDS, THREADS_ENV, Job, JobStore, canonical_json, run_job

__all__ = ["SweepError", "SweepReport", "run_sweep", "CONNECT_TIMEOUT"]

#: Seconds to wait for a remote Dask scheduler before giving up.
CONNECT_TIMEOUT = 5

# What a worker of the local pool or of ``--scheduler local`` gets in its environment.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", THREADS_ENV)


class SweepError(Exception):
    """A user-facing problem with a sweep (an unreachable scheduler, an unwritable root, a
    dependency cycle or a missing dependency): one line."""


@dataclass
class SweepReport:
    results: dict       # key -> result, every finished job (those skipped included)
    failed: dict        # key -> one-line error
    skipped: int        # finished before this call
    ran: int            # run by this call (succeeded or failed)
    seconds: float


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------------------- the plan


def _plan(jobs) -> dict:
    """Key -> job, in the list's order (a repeated key is one job), after checking every job
    (a known kind, strict-JSON params, deps that are jobs of the list) and that the
    dependencies have no cycle."""
    if isinstance(jobs, (str, bytes)) or not hasattr(jobs, "__iter__"):
        raise SweepError(f"jobs must be a list of Job, got {type(jobs).__name__}")
    plan = {}
    for i, job in enumerate(jobs):
        if not isinstance(job, Job):
            raise SweepError(f"job {i}: expected a Job, got {type(job).__name__}")
        if job.kind not in KINDS:
            raise SweepError(f"job {job.label or i}: unknown kind {job.kind!r} "
                             f"(known: {', '.join(sorted(KINDS))})")
        if not isinstance(job.params, dict):
            raise SweepError(f"job {job.label or i}: params must be a dict, "
                             f"got {type(job.params).__name__}")
        if not isinstance(job.deps, tuple):
            raise SweepError(f"job {job.label or i}: deps must be a tuple of keys, "
                             f"got {type(job.deps).__name__}")
        try:
            key = job.key
        except (TypeError, ValueError) as e:
            raise SweepError(f"job {job.label or i}: params are not strict JSON: {e}") from None
        plan.setdefault(key, job)
    prefixes = {}
    for key, job in plan.items():
        other = prefixes.setdefault(key[:16], key)
        if other != key:
            raise SweepError(f"jobs {job.name} and {plan[other].name}: keys share the store "
                             f"folder {key[:16]}")
        for dep in job.deps:
            if dep not in plan:
                raise SweepError(f"job {job.name}: dependency {str(dep)[:16]} is not a job of "
                                 f"this sweep")
    _check_acyclic(plan)
    return plan


def _check_acyclic(plan) -> None:
    remaining = {key: set(job.deps) for key, job in plan.items()}
    ready = [key for key, deps in remaining.items() if not deps]
    dependants = _dependants(plan)
    while ready:
        key = ready.pop()
        del remaining[key]
        for d in dependants[key]:
            remaining[d].discard(key)
            if not remaining[d]:
                ready.append(d)
    if remaining:
        names = ", ".join(sorted(plan[k].name for k in remaining)[:5])
        more = f" and {len(remaining) - 5} more" if len(remaining) > 5 else ""
        raise SweepError(f"dependency cycle among jobs {names}{more}")


def _dependants(plan) -> dict:
    out = {key: [] for key in plan}
    for key, job in plan.items():
        for dep in dict.fromkeys(job.deps):
            out[dep].append(key)
    return out


def _prepare_root(root) -> JobStore:
    if not isinstance(root, (str, os.PathLike)) or not str(root):
        raise SweepError(f"sweep root: expected a path, got {root!r}")
    try:
        check_output_dir(root, option="sweep root")
        Path(root).mkdir(parents=True, exist_ok=True)
    except OutputError as e:
        raise SweepError(str(e)) from None
    except OSError as e:
        raise SweepError(f"sweep root {root}: cannot create it: {e.strerror}") from None
    jobs_dir = Path(root) / "jobs"
    if jobs_dir.exists() and not jobs_dir.is_dir():
        raise SweepError(f"sweep root {root}: {jobs_dir} exists and is not a directory")
    return JobStore(root)


def _load_result(store: JobStore, job: Job) -> dict:
    try:
        return store.result(job)
    except (OSError, ValueError) as e:
        path = store.workdir(job) / store.RESULT
        raise SweepError(f"job {job.name}: cannot read {path}: {e} "
                         f"(delete it to run the job again)") from None


# ---------------------------------------------------------------------------- executors
#
# Each runs run_job(target, params, workdir, deps) and has: capacity() (how many jobs may be in
# flight), submit(args) -> handle, next_done() -> (handle, ok, result or exception) blocking,
# abort() (Ctrl-C: drop everything now) and close().


class _InlineExecutor:
    """This process, one job at a time, in submission order."""

    def __init__(self):
        self._queue = []

    def capacity(self):
        return 1

    def submit(self, args):
        handle = object()
        self._queue.append((handle, args))
        return handle

    def next_done(self):
        handle, args = self._queue.pop(0)
        try:
            return handle, True, run_job(*args)
        except Exception as e:
            return handle, False, e

    def abort(self):
        self._queue.clear()

    def close(self):
        pass


def _job_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _thread_environment(workers: int) -> dict:
    n = str(_job_threads(workers))
    return {name: n for name in _THREAD_VARIABLES}


def _init_pool_worker(environment: dict) -> None:
    """Initializer of a local pool worker: the thread limits in its environment (for the
    libraries a job loads later) and on the BLAS/OpenMP pools already loaded."""
    os.environ.update(environment)
    from threadpoolctl import threadpool_limits
    threadpool_limits(int(environment[THREADS_ENV]))


class _PoolExecutor:
    """A local ProcessPoolExecutor ("spawn"); a pool broken by a dead worker is replaced."""

    def __init__(self, workers: int):
        import multiprocessing
        self._workers = workers
        self._context = multiprocessing.get_context("spawn")
        self._pool = None
        self._futures = set()

    def _new_pool(self):
        return ProcessPoolExecutor(self._workers, mp_context=self._context,
                                   initializer=_init_pool_worker,
                                   initargs=(_thread_environment(self._workers),))

    def capacity(self):
        return self._workers

    def submit(self, args):
        if self._pool is None:
            self._pool = self._new_pool()
        try:
            future = self._pool.submit(run_job, *args)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False)
            self._pool = self._new_pool()
            future = self._pool.submit(run_job, *args)
        self._futures.add(future)
        return future

    def next_done(self):
        done, _ = wait(self._futures, return_when=FIRST_COMPLETED)
        future = next(iter(done))
        self._futures.discard(future)
        exc = future.exception()
        return (future, True, future.result()) if exc is None else (future, False, exc)

    def abort(self):
        if self._pool is None:
            return
        # the workers first (shutdown forgets them); a job may run for hours. The pool spawns
        # workers on demand, into this very dict: one may appear while we terminate, so loop.
        processes = getattr(self._pool, "_processes", None) or {}
        for p in list(processes.values()):
            p.terminate()
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            alive = [p for p in list(processes.values()) if p.is_alive()]
            if not alive:
                break
            for p in alive:
                p.terminate()
                p.join(0.1)
        self._pool = None

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class _DaskExecutor:
    """A Dask client: on a LocalCluster (``scheduler="local"``) or a remote scheduler."""

    def __init__(self, scheduler: str, workers: int):
        import distributed
        self._distributed = distributed
        self._cluster = None
        if scheduler == "local":
            try:
                self._cluster = distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, env=_thread_environment(workers),
                    silence_logs=logging.CRITICAL)
                self._client = distributed.Client(self._cluster)
            except Exception as e:
                self.close()
                raise SweepError(f"--scheduler local: cannot start a local Dask cluster: "
                                 f"{_one_line(e)}") from None
            self._capacity = workers
        else:
            try:
                self._client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
            except Exception as e:
                raise SweepError(f"--scheduler {scheduler}: cannot connect: {_one_line(e)}") from None
            self._capacity = None
        self._completed = distributed.as_completed()
        self._futures = set()

    def capacity(self):
        if self._capacity is not None:
            return self._capacity
        # a remote cluster: as many jobs in flight as it has worker threads now
        return max(1, sum(self._client.nthreads().values()))

    def submit(self, args):
        future = self._client.submit(run_job, *args, pure=False)
        self._futures.add(future)
        self._completed.add(future)
        return future

    def next_done(self):
        future = next(self._completed)
        self._futures.discard(future)
        if future.status == "finished":
            return future, True, future.result()
        try:
            exc = future.exception()
            exc = exc.with_traceback(future.traceback())
        except Exception as e:     # cancelled: the scheduler lost the task
            exc = e
        return future, False, exc

    def abort(self):
        try:
            self._client.cancel(list(self._futures))
        except Exception:
            pass
        self.close()

    def close(self):
        for thing in (getattr(self, "_client", None), self._cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass
        self._client = self._cluster = None


def _executor(workers: int, scheduler):
    if scheduler is not None:
        return _DaskExecutor(scheduler, workers)
    return _InlineExecutor() if workers == 1 else _PoolExecutor(workers)


# ---------------------------------------------------------------------------- the sweep


class _Progress:
    """The tqdm bar (progress=True) and the per-job log lines."""

    def __init__(self, total: int, initial: int, progress: bool, log):
        self.bar = None
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="job", file=sys.stderr,
                            dynamic_ncols=True)
        self.log = log if log is not None else self._default_log

    def _default_log(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def finished(self, line: str) -> None:
        if self.bar is not None:
            self.bar.update(1)
        self.log(line)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _check_options(workers, scheduler) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SweepError(f"workers must be a positive integer, got {workers!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise SweepError(f"--scheduler must be 'local' or a scheduler address such as "
                         f"tcp://host:8786, got {scheduler!r}")


def run_sweep(jobs: list[Job], root, *, workers: int = 1, scheduler: str | None = None,
              progress: bool = False, log=None) -> SweepReport:
    """Run ``jobs`` into the store at ``root`` and report.

    Checked before anything runs (SweepError, one line): ``root`` is or can be made a writable
    directory, every job is valid, every dependency is a job of the list, there is no cycle.
    Jobs already done are skipped (their results loaded). The others run as soon as their
    dependencies are done: in this process, in list order (``workers=1``), on a local "spawn"
    process pool of ``workers`` processes, or on Dask (``scheduler="local"``: a LocalCluster of
    ``workers`` processes; else the address of a running scheduler). A job that raises gets
    ``error.json`` and its dependants fail unrun ("dependency <label> failed"); the sweep goes
    on. ``progress``: a tqdm bar on stderr; ``log(line)`` (default: stderr) gets one line per job
    finished by this call. Ctrl-C stops every worker and re-raises; rerun to continue.
    """
    start = time.monotonic()
    _check_options(workers, scheduler)
    plan = _plan(jobs)
    store = _prepare_root(root)
    results, failed = {}, {}
    for key, job in plan.items():
        if store.done(job):
            results[key] = _load_result(store, job)
    skipped = len(results)
    if skipped == len(plan):
        return SweepReport(results, failed, skipped, 0, time.monotonic() - start)

    executor = _executor(workers, scheduler)
    status = _Progress(len(plan), skipped, progress, log)
    index = {key: i for i, key in enumerate(plan)}
    dependants = _dependants(plan)
    waiting = {key: {d for d in job.deps if d not in results}
               for key, job in plan.items() if key not in results}
    ready = [(index[k], k) for k, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    in_flight = {}
    ran = 0

    def fail(key, line, record, log_line):
        # error.json of the job, then of each dependant (recursively), which fails unrun
        failed[key] = line
        write_json(store.workdir(plan[key]) / store.ERROR, record)
        status.finished(log_line)
        todo = [(d, key) for d in dependants[key]]
        while todo:
            d, cause = todo.pop(0)
            if d in failed:
                continue
            dep_line = f"dependency {plan[cause].name} failed"
            failed[d] = dep_line
            _write_job(store, plan[d])
            write_json(store.workdir(plan[d]) / store.ERROR,
                       {"error": dep_line, "traceback": None, "job": plan[d].record()})
            status.finished(f"{plan[d].name}: not run, failed: {dep_line}")
            todo += [(dd, d) for dd in dependants[d]]

    try:
        while ready or in_flight:
            capacity = executor.capacity()
            while ready and len(in_flight) < capacity:
                _, key = heapq.heappop(ready)
                job = plan[key]
                _write_job(store, job)
                dep_info = {d: {"result": results[d], "workdir": str(store.workdir(plan[d]))}
                            for d in dict.fromkeys(job.deps)}
                params = json.loads(canonical_json(job.params))
                handle = executor.submit((KINDS[job.kind], params, str(store.workdir(job)),
                                          dep_info))
                in_flight[handle] = (key, time.monotonic())
            handle, ok, value = executor.next_done()
            key, t0 = in_flight.pop(handle)
            job, seconds = plan[key], time.monotonic() - t0
            ran += 1
            if ok:
                try:
                    value = _store_result(store, job, value)
                except (TypeError, ValueError) as e:
                    ok, value = False, ValueError(f"the result is not strict JSON: {e}")
            if ok:
                results[key] = value
                status.finished(f"{job.name}: {seconds:.1f} s ok")
                for d in dependants[key]:
                    waiting[d].discard(key)
                    if not waiting[d] and d not in failed:
                        heapq.heappush(ready, (index[d], d))
            else:
                line = _one_line(value)
                trace = "".join(traceback.format_exception(value))
                fail(key, line, {"error": line, "traceback": trace, "job": job.record()},
                     f"{job.name}: {seconds:.1f} s failed: {line}")
    except BaseException:      # Ctrl-C (or a failing log): stop every worker, keep what is done
        executor.abort()
        raise
    else:
        executor.close()
    finally:
        status.close()
    return SweepReport(results, failed, skipped, ran, time.monotonic() - start)


def _write_job(store: JobStore, job: Job) -> None:
    workdir = store.workdir(job)
    workdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(workdir, (store.JOB, store.RESULT, store.ERROR))
    write_json(workdir / store.JOB, job.record())


def _store_result(store: JobStore, job: Job, result) -> dict:
    """Write ``result.json`` (after removing an earlier failure's ``error.json``); the result as
    it reads back from the file."""
    text = json.dumps(result, default=json_default, allow_nan=False)
    workdir = store.workdir(job)
    (workdir / store.ERROR).unlink(missing_ok=True)
    write_json(workdir / store.RESULT, result)
    return json.loads(text)

