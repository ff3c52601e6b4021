"""The sweep engine (canna.repro.jobs, canna.repro.sweep): job keys and the code version, the
store, in-process / process-pool / Dask sweeps giving the same results, failures and their
dependants, resume after Ctrl-C and after SIGKILL, and the one-line errors of bad input."""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from canna.repro import jobs as jobs_module
from canna.repro.jobs import KINDS, Job, JobStore, code_version, register_kind
from canna.repro.sweep import SweepError, run_sweep


def chain(*specs):
    """Jobs of the probe kind from ``(label, params, dep labels)``, deps resolved to keys."""
    out = {}
    for label, params, deps in specs:
        out[label] = Job("probe", params, tuple(out[d].key for d in deps), label)
    return out


def graph():
    """a -> b -> c <- a, d fails -> e -> f, g reports its thread limits, h alone."""
    return chain(("a", {"value": 1, "artifact": "from a"}, ()),
                 ("b", {"value": 2, "sleep": 0.4}, ("a",)),
                 ("c", {"value": 3}, ("a", "b")),
                 ("d", {"value": 4, "fail": "boom", "sleep": 0.4}, ()),
                 ("e", {"value": 5}, ("d",)),
                 ("f", {"value": 6}, ("e",)),
                 ("g", {"value": 7, "report_threads": True, "sleep": 0.4}, ()),
                 ("h", {"value": 8, "sleep": 0.4}, ()))


def stripped(results):
    """Results without what depends on where they ran (pid, thread limits)."""
    return {k: {f: v for f, v in r.items() if f not in ("pid", "threads")}
            for k, r in results.items()}


def leftovers(root):
    return sorted(str(p) for p in Path(root).rglob(".*.tmp"))


def check_graph_report(rep, jobs, root):
    """What every engine must produce for graph(); returns the number of facts checked."""
    k = {label: job.key for label, job in jobs.items()}
    assert set(rep.results) == {k[x] for x in "abcgh"}
    sums = {"a": 1, "b": 3, "c": 7, "g": 7, "h": 8}
    for label, total in sums.items():
        r = rep.results[k[label]]
        assert r["sum"] == r["value"] == total, (label, r)
        assert r["deps"] == sorted(jobs[label].deps)
        assert r["params"] == jobs[label].params
    assert rep.failed == {k["d"]: "RuntimeError: boom", k["e"]: "dependency d failed",
                          k["f"]: "dependency e failed"}
    store = JobStore(root)
    assert (store.workdir(jobs["a"]) / "artifact.txt").read_text() == "from a"
    err = store.error(jobs["d"])
    assert err["error"] == "RuntimeError: boom" and "RuntimeError: boom" in err["traceback"]
    assert err["job"] == jobs["d"].record()
    assert store.error(jobs["e"])["error"] == "dependency d failed"
    assert store.error(jobs["e"])["traceback"] is None
    assert not store.done(jobs["d"]) and not store.done(jobs["f"])
    for label in "abcgh":
        assert store.result(jobs[label]) == rep.results[k[label]]
        assert json.loads((store.workdir(jobs[label]) / "job.json").read_text()) \
            == jobs[label].record()
    assert leftovers(root) == []
    return len(sums) * 4 + 12


@pytest.fixture(scope="module")
def inline_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("inline")
    jobs = graph()
    lines = []
    rep = run_sweep(list(jobs.values()), root, log=lines.append)
    return jobs, rep, root, lines


# ---------------------------------------------------------------------------- keys


def test_job_keys(monkeypatch):
    base = Job("probe", {"x": 1, "y": [1, 2], "z": {"p": 1, "q": 2}}, ("k1", "k2"), "one")
    same = Job("probe", {"z": {"q": 2, "p": 1}, "y": [1, 2], "x": 1}, ("k2", "k1"), "other label")
    assert base.key == same.key and len(base.key) == 64 and int(base.key, 16) >= 0
    monkeypatch.setitem(KINDS, "probe2", KINDS["probe"])
    variants = [Job("probe", {"x": 2, "y": [1, 2], "z": {"p": 1, "q": 2}}, ("k1", "k2")),
                Job("probe", {"x": 1, "y": [2, 1], "z": {"p": 1, "q": 2}}, ("k1", "k2")),
                Job("probe", {"x": 1, "y": [1, 2], "z": {"p": 1, "q": 2}, "w": 0}, ("k1", "k2")),
                Job("probe", {"x": 1.0, "y": [1, 2], "z": {"p": 1, "q": 2}}, ("k1", "k2")),
                Job("probe2", {"x": 1, "y": [1, 2], "z": {"p": 1, "q": 2}}, ("k1", "k2")),
                Job("probe", {"x": 1, "y": [1, 2], "z": {"p": 1, "q": 2}}, ("k1",)),
                Job("probe", {"x": 1, "y": [1, 2], "z": {"p": 1, "q": 2}}, ("k1", "k3"))]
    keys = {v.key for v in variants}
    assert len(keys) == len(variants) and base.key not in keys
    # the code version is part of the key
    before = base.key
    monkeypatch.setattr(jobs_module, "code_version", lambda: "0" * 64)
    assert base.key != before
    monkeypatch.undo()
    assert base.key == before
    with pytest.raises(ValueError):
        Job("probe", {"x": math.nan}).key
    with pytest.raises(TypeError):
        Job("probe", {"x": object()}).key
    print(f"checked 1 reordering, 1 relabelling and {len(variants)} changed params / kind / deps "
          f"give {len(keys)} distinct keys; the code version and non-JSON params")


def test_register_kind(monkeypatch):
    monkeypatch.setattr(jobs_module, "KINDS", dict(KINDS))
    register_kind("probe", "canna.repro.jobs:probe_job")         # the same target: fine
    register_kind("other", "canna.repro.jobs:probe_job")
    assert jobs_module.KINDS["other"] == "canna.repro.jobs:probe_job"
    bad = [("probe", "canna.repro.jobs:run_job"), ("x", "no_colon"), ("x", "mod:"),
           ("x", ":fn"), ("a:b", "m:f"), ("", "m:f")]
    for name, target in bad:
        with pytest.raises(ValueError):
            register_kind(name, target)
    print(f"checked 2 good and {len(bad)} refused registrations")


def test_code_version(tmp_path, monkeypatch):
    files = jobs_module._source_files()
    names = [n for n, _ in files]
    assert names == sorted(names)
    for must in ("canna.spec/__init__.py", "canna.sim/golden.py", "canna.sim/fastkernels.c",
                 "canna.sim/fastkernels.h", "canna.nn/train.py"):
        assert must in names, must
    assert any(n.startswith("canna.sim/array/") and n.endswith(".cpp") for n in names)
    assert "canna.repro.experiments" in names          # the job kinds' module
    assert not any(n.startswith(("canna.hw", "canna.repro/")) or "__pycache__" in n
                   for n in names)
    from canna.sim.paths import build_root
    for rel in ("activity/activity.json", "synth/synth.json"):
        assert (f"build/{rel}" in names) == (build_root() / rel).is_file()
    # a copy of the sources hashes like the sources; any edit changes the hash
    copies = []
    for i, (name, path) in enumerate(files):
        dest = tmp_path / f"{i}{path.suffix}"
        shutil.copyfile(path, dest)
        copies.append((name, dest))
    assert jobs_module._hash_sources(copies) == code_version()
    victim = next(p for n, p in copies if n == "canna.sim/golden.py")
    victim.write_bytes(victim.read_bytes() + b" ")
    edited = jobs_module._hash_sources(copies)
    renamed = [(n + "x" if n == "canna.nn/train.py" else n, p) for n, p in copies]
    extra = tmp_path / "new.py"
    extra.write_text("x = 1\n")
    hashes = {code_version(), edited, jobs_module._hash_sources(renamed),
              jobs_module._hash_sources(sorted(copies + [("canna.nn/zzz.py", extra)]))}
    assert len(hashes) == 4
    # computed once per process
    monkeypatch.setattr(jobs_module, "_source_files", lambda: copies)
    assert code_version() != edited
    code_version.cache_clear()
    try:
        assert code_version() == edited
    finally:
        monkeypatch.undo()
        code_version.cache_clear()
    print(f"checked the hash of {len(files)} files: its list, a copy, an edit, a rename, a new "
          f"file and the cache")


# ---------------------------------------------------------------------------- in-process


def test_inline_sweep_and_rerun(inline_reference):
    jobs, rep, root, lines = inline_reference
    checked = check_graph_report(rep, jobs, root)
    assert (rep.skipped, rep.ran) == (0, 6)
    assert len(lines) == 8 and all(line.startswith(tuple("abcdefgh")) for line in lines)
    assert lines[3].startswith("d: ") and lines[3].endswith(" s failed: RuntimeError: boom")
    assert lines[4] == "e: not run, failed: dependency d failed"
    assert {r["pid"] for r in rep.results.values()} == {os.getpid()}
    # a rerun (the jobs listed twice) skips every finished job and retries the failed one
    again = run_sweep(list(jobs.values()) * 2, root, log=lambda line: None)
    assert (again.skipped, again.ran) == (5, 1)
    assert again.results == rep.results and again.failed == rep.failed
    print(f"checked {checked} facts of an in-process sweep of {len(jobs)} jobs, "
          f"{len(lines)} log lines, and a rerun (5 skipped, 1 retried)")


def test_failed_job_retried(tmp_path, monkeypatch):
    jobs = chain(("a", {"value": 1}, ()), ("b", {"value": 2, "flaky": True}, ("a",)),
                 ("c", {"value": 3}, ("b",)), ("d", {"value": 4}, ("c",)),
                 ("e", {"value": 5}, ()))
    real = jobs_module.probe_job
    attempts = []

    def flaky(params, workdir, deps):
        attempts.append(params["value"])
        if params.get("flaky") and len(attempts) < 3:
            raise OSError("disk on fire\nsecond line")
        return real(params, workdir, deps)

    monkeypatch.setattr(jobs_module, "probe_job", flaky)
    store = JobStore(tmp_path)
    first = run_sweep(list(jobs.values()), tmp_path, log=lambda line: None)
    k = {label: j.key for label, j in jobs.items()}
    assert first.failed == {k["b"]: "OSError: disk on fire", k["c"]: "dependency b failed",
                            k["d"]: "dependency c failed"}
    assert (first.ran, sorted(attempts)) == (3, [1, 2, 5])
    assert set(first.results) == {k["a"], k["e"]}
    assert "second line" in store.error(jobs["b"])["traceback"]
    second = run_sweep(list(jobs.values()), tmp_path, log=lambda line: None)
    assert (second.skipped, second.ran, second.failed) == (2, 3, {})
    assert sorted(attempts) == [1, 2, 2, 3, 4, 5]
    assert second.results[k["d"]]["sum"] == 10
    for label in "abcde":
        assert store.done(jobs[label]) and store.error(jobs[label]) is None
    print("checked a failure with 2 transitive dependants (one-line errors, error.json), then a "
          "rerun retrying exactly the 3 unfinished jobs and clearing their error.json")


def test_keyboard_interrupt_then_resume(tmp_path):
    jobs = chain(("a", {"value": 1}, ()), ("b", {"value": 2}, ("a",)), ("c", {"value": 3}, ()))

    def interrupt(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(list(jobs.values()), tmp_path, log=interrupt)
    store = JobStore(tmp_path)
    assert [store.done(j) for j in jobs.values()] == [True, False, False]
    rep = run_sweep(list(jobs.values()), tmp_path, log=lambda line: None)
    assert (rep.skipped, rep.ran, rep.failed) == (1, 2, {})
    assert leftovers(tmp_path) == []
    print("checked Ctrl-C after the first of 3 jobs: 1 done, rerun runs the other 2")


def test_progress_and_default_log(tmp_path, capsys):
    jobs = chain(("a", {"value": 1}, ()), ("b", {"value": 2}, ("a",)), ("c", {"fail": "no"}, ()))
    run_sweep([jobs["a"]], tmp_path)
    first = capsys.readouterr().err.splitlines()
    assert len(first) == 1 and re.fullmatch(r"a: \d+\.\d s ok", first[0]), first
    run_sweep(list(jobs.values()), tmp_path, progress=True)
    err = capsys.readouterr().err
    lines = [line.strip() for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert any(re.fullmatch(r"b: \d+\.\d s ok", line) for line in lines), lines
    assert any(re.fullmatch(r"c: \d+\.\d s failed: RuntimeError: no", line) for line in lines)
    assert not any(line.startswith("a:") for line in lines)
    assert "3/3" in err and "1/3" in err, err
    print(f"checked the default log lines and the bar ({len(lines)} stderr lines)")


def test_resume_after_sigkill(tmp_path):
    jobs = chain(("a", {"value": 1}, ()), ("b", {"value": 2}, ("a",)),
                 ("c", {"value": 3, "sleep": 2.5}, ("a",)), ("d", {"value": 4}, ("c", "b")))
    records = [{"kind": j.kind, "params": j.params, "deps": list(j.deps), "label": j.label}
               for j in jobs.values()]
    killed = tmp_path / "killed"
    script = ("import json, sys\n"
              "from canna.repro.jobs import Job\n"
              "from canna.repro.sweep import run_sweep\n"
              "jobs = [Job(r['kind'], r['params'], tuple(r['deps']), r['label'])\n"
              "        for r in json.loads(sys.argv[1])]\n"
              "run_sweep(jobs, sys.argv[2])\n")
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(records), str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    store = JobStore(killed)
    deadline = time.monotonic() + 60
    try:
        # kill while c runs: a and b finished, c started (its job.json is written as it starts;
        # waiting for b alone raced with that write)
        while not (store.done(jobs["a"]) and store.done(jobs["b"])
                   and (store.workdir(jobs["c"]) / "job.json").is_file()):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the sweep did not start"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not store.done(jobs["c"]), "killed too late: c finished (a slow machine?)"
    assert (store.workdir(jobs["c"]) / "job.json").is_file()
    rep = run_sweep(list(jobs.values()), killed, log=lambda line: None)
    assert (rep.skipped, rep.ran, rep.failed) == (2, 2, {})
    reference = run_sweep(list(jobs.values()), tmp_path / "reference", log=lambda line: None)
    assert stripped(rep.results) == stripped(reference.results)
    ref_store = JobStore(tmp_path / "reference")
    for job in jobs.values():
        got, want = store.result(job), ref_store.result(job)
        got.pop("pid"), want.pop("pid")
        assert got == want
    assert leftovers(killed) == []
    print("checked SIGKILL of a sweep after 2 of 4 jobs: the rerun ran the 2 unfinished and "
          "4 result.json equal an uninterrupted run's (pids aside)")


# ---------------------------------------------------------------------------- pool and Dask


def check_threads(rep, jobs, workers):
    want = str(max(1, (os.cpu_count() or 1) // workers))
    threads = rep.results[jobs["g"].key]["threads"]
    assert set(threads["env"].values()) == {want}, threads
    assert all(n <= int(want) for n in threads["pools"]) and threads["pools"], threads
    return len(threads["env"]) + len(threads["pools"])


def test_process_pool(inline_reference, tmp_path):
    jobs, ref, _, _ = inline_reference
    lines = []
    rep = run_sweep(list(jobs.values()), tmp_path, workers=2, log=lines.append)
    checked = check_graph_report(rep, jobs, tmp_path)
    assert stripped(rep.results) == stripped(ref.results) and rep.failed == ref.failed
    assert (rep.skipped, rep.ran, len(lines)) == (0, 6, 8)
    pids = {r["pid"] for r in rep.results.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    checked += check_threads(rep, jobs, 2)
    print(f"checked {checked} facts of a 2-process pool sweep: equal to the in-process one, "
          f"{len(pids)} worker pids, thread limits")


def test_pool_initializer_limits_loaded_pools():
    """The pool's initializer limits the BLAS/OpenMP pools already loaded (by the main module a
    spawned worker re-imports, say), not only those loaded after it (the environment)."""
    script = ("import json, numpy\n"
              "from threadpoolctl import threadpool_info\n"
              "from canna.repro.sweep import _init_pool_worker, _thread_environment\n"
              "before = [lib['num_threads'] for lib in threadpool_info()]\n"
              "_init_pool_worker(_thread_environment(1024))\n"
              "print(json.dumps([before, [lib['num_threads'] for lib in threadpool_info()]]))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True).stdout
    before, after = json.loads(out)
    assert before and after == [1] * len(before), (before, after)
    print(f"checked {len(before)} loaded thread pool(s) of {before} threads limited to 1")


def test_process_pool_interrupt(tmp_path):
    jobs = chain(("fast", {"value": 1}, ()), ("slow", {"value": 2, "sleep": 20}, ()))

    def interrupt(line):
        raise KeyboardInterrupt

    children = set(multiprocessing.active_children())
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(list(jobs.values()), tmp_path, workers=2, log=interrupt)
    seconds = time.monotonic() - start
    assert seconds < 10, seconds
    assert set(multiprocessing.active_children()) <= children, "a worker is still running"
    store = JobStore(tmp_path)
    assert store.done(jobs["fast"]) and not store.done(jobs["slow"])
    assert leftovers(tmp_path) == []
    print(f"checked Ctrl-C of a pool with a 20 s job running: back in {seconds:.1f} s, "
          f"1 done, 1 not")


CRASH_MODULE = """
import os
from canna.repro.jobs import probe_job

def crash(params, workdir, deps):
    if params.get("crash"):
        os._exit(3)
    return probe_job(params, workdir, deps)
"""


def test_process_pool_worker_dies(tmp_path, monkeypatch):
    """A worker that dies fails the jobs then in flight (which one killed it is unknown); the
    pool is replaced and the sweep goes on. Also: a kind registered at run time, from a module
    only the parent imported, runs in spawned workers."""
    (tmp_path / "canna_crash_kind.py").write_text(CRASH_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(KINDS, "crash", "canna_crash_kind:crash")
    jobs = {label: Job("crash", params, label=label) for label, params in
            [("dies", {"crash": True}), ("beside", {"value": 1, "sleep": 2}),
             ("after", {"value": 2}), ("last", {"value": 3})]}
    rep = run_sweep(list(jobs.values()), tmp_path / "root", workers=2, log=lambda line: None)
    # "beside" shares the broken pool unless the crash came before its submission
    broken = set(rep.failed)
    assert jobs["dies"].key in broken and broken <= {jobs["dies"].key, jobs["beside"].key}
    assert all(e.startswith("BrokenProcessPool: ") for e in rep.failed.values()), rep.failed
    assert set(rep.results) == {j.key for j in jobs.values()} - broken and rep.ran == 4
    assert {rep.results[jobs[x].key]["value"] for x in ("after", "last")} == {2, 3}
    print(f"checked a worker dying: {len(broken)} job(s) failed with it, "
          f"{len(rep.results)} ran on a new pool")


def test_dask_local_cluster(inline_reference, tmp_path):
    jobs, ref, _, _ = inline_reference
    rep = run_sweep(list(jobs.values()), tmp_path, workers=2, scheduler="local",
                    log=lambda line: None)
    checked = check_graph_report(rep, jobs, tmp_path)
    assert stripped(rep.results) == stripped(ref.results) and rep.failed == ref.failed
    assert (rep.skipped, rep.ran) == (0, 6)
    pids = {r["pid"] for r in rep.results.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    checked += check_threads(rep, jobs, 2)
    print(f"checked {checked} facts of a sweep on a 2-worker Dask LocalCluster: equal to the "
          f"in-process one, thread limits")


def test_unreachable_scheduler(tmp_path):
    root = tmp_path / "root"
    jobs = chain(("a", {"value": 1}, ()))
    start = time.monotonic()
    with pytest.raises(SweepError) as e:
        run_sweep(list(jobs.values()), root, scheduler="tcp://127.0.0.1:1")
    seconds = time.monotonic() - start
    message = str(e.value)
    assert message.startswith("--scheduler tcp://127.0.0.1:1: cannot connect: ")
    assert "\n" not in message and seconds < 10, (message, seconds)
    assert root.is_dir() and list(root.iterdir()) == []
    print(f"checked an unreachable scheduler: one line in {seconds:.1f} s, nothing written")


# ---------------------------------------------------------------------------- bad input


def test_bad_input(tmp_path, monkeypatch):
    good = chain(("a", {"value": 1}, ()))["a"]
    cases = {
        "missing dep": ([good, Job("probe", {}, ("f" * 64,), "orphan")], tmp_path / "r1", {},
                        "job orphan: dependency ffffffffffffffff is not a job of this sweep"),
        "unknown kind": ([Job("nope", {})], tmp_path / "r2", {}, "unknown kind 'nope'"),
        "nan param": ([Job("probe", {"x": math.inf}, label="inf")], tmp_path / "r3", {},
                      "job inf: params are not strict JSON"),
        "empty root": ([good], "", {}, "sweep root: expected a path"),
        "zero workers": ([good], tmp_path / "r4", {"workers": 0}, "workers must be"),
        "empty scheduler": ([good], tmp_path / "r5", {"scheduler": ""}, "--scheduler must be"),
        "bad address": ([good], tmp_path / "r6", {"scheduler": "nonsense"},
                        "--scheduler nonsense: cannot connect"),
    }
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    cases["root is a file"] = ([good], in_the_way, {}, "exists and is not a directory")
    cases["below a file"] = ([good], in_the_way / "sub", {}, "is not a directory")
    jobs_file = tmp_path / "r7"
    jobs_file.mkdir()
    (jobs_file / "jobs").write_text("x")
    cases["jobs/ is a file"] = ([good], jobs_file, {}, "jobs exists and is not a directory")
    if os.geteuid() != 0:
        read_only = tmp_path / "ro"
        read_only.mkdir(mode=0o500)
        cases["read-only dir"] = ([good], read_only / "root", {}, "cannot create files in")
    elif Path("/sys/kernel").is_dir():    # root writes anywhere but in sysfs
        cases["read-only dir"] = ([good], Path("/sys/canna-sweep-test"), {},
                                  "cannot create files in /sys")
    for name, (jobs, root, options, expected) in cases.items():
        before = sorted(tmp_path.rglob("*"))
        with pytest.raises(SweepError) as e:
            run_sweep(jobs, root, log=lambda line: None, **options)
        message = str(e.value)
        assert expected in message and "\n" not in message, (name, message)
        if name == "bad address":   # checked after the root is made: it stays empty
            assert list(root.iterdir()) == []
            root.rmdir()
        assert sorted(tmp_path.rglob("*")) == before, name
    # a cycle (keys cannot form one by hashing; fake them)
    monkeypatch.setattr(Job, "key", property(lambda job: job.params["k"] * 64))
    cycle = [Job("probe", {"k": "a"}, ("b" * 64,), "x"), Job("probe", {"k": "b"}, ("c" * 64,), "y"),
             Job("probe", {"k": "c"}, ("b" * 64,), "z"), Job("probe", {"k": "d"}, (), "w")]
    with pytest.raises(SweepError) as e:
        run_sweep(cycle, tmp_path / "cycle")
    assert str(e.value) == "dependency cycle among jobs x, y, z", str(e.value)
    assert not (tmp_path / "cycle").exists()
    print(f"checked {len(cases) + 1} bad inputs: one-line SweepError each, nothing written")
