"""Fault injection into `canna train` (docs/reliability.md, "Interruption and resume"): a real
process training a tiny digits network (``--hidden 16,16``, 3 epochs, default batch,
``--quiet``) in every mode (exact, uniform ``--tuning-bits 2``, gta ``--apx-min 3``), with and
without ``--baseline``, is killed with SIGKILL or interrupted with SIGINT at a random point, then
run again with ``--resume`` until it completes. The final ``model.npz``, ``iterations.npz`` and
``results.json`` (timing fields aside), those of ``baseline/`` and the checkpoint's arrays must
equal an uninterrupted run's bit for bit, and no temporary file may be left under ``--out``.

What the code documents and this test holds it to (nn/cli.py ``_resume_plan``, nn/train.py
``train``):

* SIGINT: the current iteration finishes, a checkpoint is written (when training had started),
  ``canna train: interrupted``, exit status 130.
* ``--resume`` continues from the checkpoint; with ``--baseline`` from whichever of
  ``baseline/checkpoint.npz`` and ``checkpoint.npz`` exist (the main run starts fresh when only
  the baseline has one).
* ``--resume`` with no checkpoint at all is an error (exit 2, one line ``--resume: no
  checkpoint ... to resume from``) that writes nothing; the command without ``--resume`` then
  starts cleanly.

When the signal lands is drawn from a seeded generator (``CANNA_SEED``): a time after the start
(0.3 s up to 90% of the uninterrupted run's duration), or a moment after a checkpoint (the baseline's
or the main run's) first appears. A second kind of fault kills the process with SIGKILL in the
middle of an atomic write (its ``fsync`` stalled), which leaves a half-written temporary file.

Cases: ``CANNA_FAULT_CASES`` signal cases (default 6: per mode, one draw of {baseline, not} x
{SIGINT, SIGKILL} and its opposite; 12 runs all; exact mode with ``--baseline`` trains no
baseline, as documented, and must still resume), ``CANNA_FAULT_WRITE_CASES`` mid-write kills
(default 1, at most 6), and one Ctrl-C during start-up. Each case prints what it did.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import seed

_SCRIPT = Path(sys.executable).with_name("canna")
CANNA = [str(_SCRIPT)] if _SCRIPT.is_file() else [
    sys.executable, "-c", "import sys; from canna.cli import main; sys.exit(main())"]

# `canna train`, with os.fsync stalled at its Nth call (N = $CANNA_TEST_STALL_FSYNC): the Nth
# atomic write stops after writing its temporary file (and creates $CANNA_TEST_STALL_MARK), for
# the test to kill it there.
STALLED = [sys.executable, "-c", """
import os, sys, time
calls, real = [0], os.fsync
def fsync(fd):
    calls[0] += 1
    if calls[0] == int(os.environ["CANNA_TEST_STALL_FSYNC"]):
        open(os.environ["CANNA_TEST_STALL_MARK"], "w").close()
        time.sleep(120)
    real(fd)
os.fsync = fsync
from canna.cli import main
sys.exit(main())
"""]

MODES = {"exact": [], "uniform": ["--mode", "uniform", "--tuning-bits", "2"],
         "gta": ["--mode", "gta", "--apx-min", "3"]}
TRAIN = ["train", "--hidden", "16,16", "--epochs", "3", "--quiet"]
TIMEOUT = 300
# Ctrl-C ends every command with one line: "canna train: interrupted" once the command runs,
# "canna: interrupted" while `canna` is still importing the subcommands' modules.
INTERRUPTED = ("canna train: interrupted", "canna: interrupted")
SEED = seed(20240611)


def _cases():
    rng = np.random.default_rng(SEED)
    n = min(int(os.environ.get("CANNA_FAULT_CASES", "6")), 12)
    combos = [(b, s) for b in (False, True) for s in ("SIGINT", "SIGKILL")]
    everything = [(m, b, s) for m in MODES for b, s in combos]
    pairs = []
    for m in MODES:                # per mode a draw and its opposite: both signals, both settings
        b, s = combos[rng.integers(4)]
        pairs += [(m, b, s), (m, not b, "SIGKILL" if s == "SIGINT" else "SIGINT")]
    rest = [c for c in everything if c not in pairs]
    if n <= len(pairs):
        picked = [pairs[i] for i in sorted(rng.choice(len(pairs), size=n, replace=False))]
    else:
        extra = sorted(rng.choice(len(rest), size=n - len(pairs), replace=False))
        picked = sorted(pairs + [rest[i] for i in extra], key=everything.index)
    out = []
    first = int(rng.integers(2))
    for i, (m, b, s) in enumerate(picked):     # time and checkpoint triggers alternate
        if (i + first) % 2 == 0:
            trigger = ("time", float(rng.uniform(0.3, 1.0)))
        else:
            ckpt = str(rng.choice(["baseline/checkpoint.npz", "checkpoint.npz"])) if b and m != "exact" \
                else "checkpoint.npz"
            trigger = ("checkpoint", ckpt, float(rng.uniform(0.0, 0.05)))
        out.append((m, b, s, trigger))
    return out


def _write_cases():
    rng = np.random.default_rng(SEED + 1)
    n = min(int(os.environ.get("CANNA_FAULT_WRITE_CASES", "1")), 6)
    all_ = [(m, b) for m in MODES for b in (False, True)]
    picked = [all_[i] for i in sorted(rng.choice(len(all_), size=n, replace=False))]
    # a run's writes: a checkpoint per epoch (GTA may stop after the first), then the final
    # checkpoint, model, iterations and results: the first 5 exist in every run
    return [(m, b, int(rng.integers(1, 6))) for m, b in picked]


def _argv(mode, baseline, out):
    return [*TRAIN, *MODES[mode], *(["--baseline"] if baseline else []), "--out", str(out)]


def _run(argv, **kw):
    r = subprocess.run([*CANNA, *argv], capture_output=True, text=True, timeout=TIMEOUT, **kw)
    return r.returncode, r.stdout, r.stderr


def _files(out: Path) -> list:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def _strip_timing(obj):
    if isinstance(obj, dict):
        return {k: _strip_timing(v) for k, v in obj.items()
                if not any(t in k for t in ("seconds", "elapsed", "time"))}
    if isinstance(obj, list):
        return [_strip_timing(v) for v in obj]
    return obj


def _npz(path: Path, skip_meta=False) -> dict:
    with np.load(path) as z:
        out = {}
        for k in z.files:
            a = z[k]
            if k == "meta":
                meta = json.loads(a.tobytes())
                out[k] = _strip_timing(meta) if skip_meta else a.tobytes()
            else:
                out[k] = (a.dtype.str, a.shape, a.tobytes())
        return out


def assert_same_run(out: Path, ref: Path, what: str):
    assert _files(out) == _files(ref), f"{what}: files {_files(out)} vs uninterrupted {_files(ref)}"
    for rel in _files(ref):
        a, b = out / rel, ref / rel
        if rel.endswith("results.json"):
            assert _strip_timing(json.loads(a.read_text())) == _strip_timing(json.loads(b.read_text())), \
                f"{what}: {rel} differs from the uninterrupted run's"
        elif rel.endswith(".npz"):
            # model and iterations: arrays and meta bit for bit; the checkpoint's meta holds elapsed
            ckpt = rel.endswith("checkpoint.npz")
            x, y = _npz(a, skip_meta=ckpt), _npz(b, skip_meta=ckpt)
            assert x.keys() == y.keys(), f"{what}: {rel} arrays {sorted(x)} vs {sorted(y)}"
            bad = [k for k in x if x[k] != y[k]]
            assert not bad, f"{what}: {rel}: {bad} differ from the uninterrupted run's"


def assert_no_temporaries(out: Path, what: str):
    stray = [str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith(".tmp")
             or ".canna-probe." in p.name]
    assert not stray, f"{what}: temporary files left under --out: {stray}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of each configuration (made on first use): (directory, seconds)."""
    cache = {}

    def get(mode, baseline):
        if (mode, baseline) not in cache:
            out = tmp_path_factory.mktemp(f"ref-{mode}-{int(baseline)}") / "run"
            t = time.monotonic()
            rc, _, err = _run(_argv(mode, baseline, out))
            assert rc == 0, err
            cache[mode, baseline] = (out, time.monotonic() - t)
        return cache[mode, baseline]
    return get


def resume_until_done(argv, out: Path, what: str) -> list:
    """Run ``argv --resume`` until it completes; returns what each attempt did."""
    log = []
    for _ in range(3):
        had = [p for p in ("checkpoint.npz", "baseline/checkpoint.npz") if (out / p).is_file()]
        before = _files(out) if out.exists() else []
        rc, _, err = _run([*argv, "--resume"])
        assert "Traceback" not in err, f"{what}: --resume: {err}"
        if had:
            assert rc == 0, f"{what}: --resume with {had} ended {rc}: {err}"
            log.append(f"--resume from {', '.join(had)}: exit 0")
            return log
        # documented: --resume with no checkpoint is one line, exit 2, and writes nothing
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "--resume: no checkpoint" in lines[0], \
            f"{what}: --resume without a checkpoint ended {rc}: {err}"
        assert (_files(out) if out.exists() else []) == before, f"{what}: a refused --resume wrote files"
        log.append("--resume: no checkpoint (exit 2, one line)")
        rc, _, err = _run(argv)
        assert rc == 0 and "Traceback" not in err, f"{what}: fresh rerun ended {rc}: {err}"
        log.append("rerun without --resume: exit 0")
        return log
    raise AssertionError(f"{what}: did not complete")


def _trigger_name(trigger):
    if trigger[0] == "time":
        return f"{trigger[1]:.2f} s after start"
    return f"{1000 * trigger[2]:.0f} ms after {trigger[1]} appears"


@pytest.mark.parametrize("mode, baseline, sig, trigger", _cases(),
                         ids=lambda v: v if isinstance(v, str) else None)
def test_kill_and_resume(tmp_path, reference, mode, baseline, sig, trigger):
    ref, ref_seconds = reference(mode, baseline)
    out = tmp_path / "run"
    argv = _argv(mode, baseline, out)
    what = f"{mode}{' --baseline' if baseline else ''}, {sig} {_trigger_name(trigger)}"
    t0 = time.monotonic()
    proc = subprocess.Popen([*CANNA, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # time triggers scale to this machine: up to 90% of the uninterrupted run's duration
    at = t0 + (0.3 + (trigger[1] - 0.3) / 0.7 * max(0.9 * ref_seconds - 0.3, 0.0) if trigger[0] == "time" else 0)
    seen = None
    while proc.poll() is None:
        now = time.monotonic()
        if trigger[0] == "time" and now >= at:
            break
        if trigger[0] == "checkpoint":
            if seen is None and (out / trigger[1]).is_file():
                seen = now
            if seen is not None and now >= seen + trigger[2]:
                break
        assert now - t0 < TIMEOUT, f"{what}: no trigger"
        time.sleep(0.001)
    signalled = proc.poll() is None
    if signalled:
        proc.send_signal(signal.SIGKILL if sig == "SIGKILL" else signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    t_kill = time.monotonic() - t0
    rc = proc.returncode
    assert "Traceback" not in err, f"{what}: {err}"
    if not signalled or rc == 0:
        landed = "the run had finished"
        assert rc == 0, f"{what}: {rc} {err}"
    elif sig == "SIGKILL":
        assert rc == -signal.SIGKILL, f"{what}: exit {rc}: {err}"
        landed = "killed"
    elif rc == -signal.SIGINT:
        # the signal came while the interpreter was starting or, its work done, shutting down
        # (Python's default action then: the process ends by SIGINT, 130 to a shell): silent
        assert err.strip() == "", f"{what}: ended by SIGINT, stderr {err}"
        landed = "ended by SIGINT outside canna's code"
    else:
        assert rc == 130 and err.strip().splitlines()[-1] in INTERRUPTED, f"{what}: {rc} {err}"
        landed = "exit 130"
    state = [p for p in ("baseline/checkpoint.npz", "checkpoint.npz") if (out / p).is_file()]
    log = resume_until_done(argv, out, what)
    assert_no_temporaries(out, what)
    assert_same_run(out, ref, what)
    print(f"{what}: signal at {t_kill:.2f} s ({landed}; checkpoints then: {', '.join(state) or 'none'}); "
          f"{'; '.join(log)}; files equal the uninterrupted run's")


@pytest.mark.parametrize("mode, baseline, write", _write_cases())
def test_kill_during_atomic_write(tmp_path, reference, mode, baseline, write):
    """SIGKILL while an atomic write has its temporary file open (fsync stalled): the
    destination keeps its last complete version, and the next run leaves no temporary file."""
    ref, _ = reference(mode, baseline)
    out = tmp_path / "run"
    argv = _argv(mode, baseline, out)
    what = f"{mode}{' --baseline' if baseline else ''}, SIGKILL in atomic write #{write}"
    mark = tmp_path / "stalled"
    proc = subprocess.Popen([*STALLED, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CANNA_TEST_STALL_FSYNC": str(write),
                                 "CANNA_TEST_STALL_MARK": str(mark)})
    t0 = time.monotonic()
    while proc.poll() is None and not mark.exists():
        assert time.monotonic() - t0 < TIMEOUT, f"{what}: write #{write} never came"
        time.sleep(0.002)
    assert proc.poll() is None, f"{what}: the run ended before write #{write}: {proc.communicate()}"
    stalled = [str(p.relative_to(out)) for p in out.rglob(".*.tmp")]
    proc.kill()
    proc.communicate(timeout=TIMEOUT)
    assert stalled, f"{what}: no temporary file while write #{write} stalled"
    log = resume_until_done(argv, out, what)
    assert_no_temporaries(out, what)
    assert_same_run(out, ref, what)
    print(f"{what}: killed with {stalled} open; {'; '.join(log)}; no temporary file left, "
          f"files equal the uninterrupted run's")


def _startup_case():
    rng = np.random.default_rng(SEED + 2)
    return [(str(rng.choice(list(MODES))), float(rng.uniform(0.12, 0.25)))]


@pytest.mark.parametrize("mode, at", _startup_case())
def test_sigint_during_startup(tmp_path, reference, mode, at):
    """Ctrl-C while `canna train` is still starting (importing NumPy, Amaranth, scikit-learn):
    one line, exit 130, no traceback; nothing to resume, so the run starts cleanly."""
    ref, _ = reference(mode, False)
    out = tmp_path / "run"
    argv = _argv(mode, False, out)
    what = f"{mode}, SIGINT {at:.2f} s after start"
    proc = subprocess.Popen([*CANNA, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(at)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert "Traceback" not in err, f"{what}: {err}"
    assert proc.returncode == 130 and err.strip().splitlines() and err.strip().splitlines()[-1] in INTERRUPTED, \
        f"{what}: exit {proc.returncode}: {err}"
    log = resume_until_done(argv, out, what)
    assert_no_temporaries(out, what)
    assert_same_run(out, ref, what)
    print(f"{what}: {err.strip()!r}, exit 130; {'; '.join(log)}; files equal the uninterrupted run's")
