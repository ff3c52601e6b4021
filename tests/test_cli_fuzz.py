"""Fuzzing the ``canna`` command line: ``canna mul``, ``canna workload``, ``canna train`` and
``canna infer`` with hostile option values (out of range, negative, huge, NaN/inf text, non-numbers,
empty strings, unknown choices and options) and hostile input files (truncated, bit-flipped,
empty, binary garbage, the wrong format, NaN/inf cells) made in a temporary directory, next to
small valid ones: a tiny trained digits / MNIST-format / HAR-format model and checkpoint, a
``canna mul`` vector file, four IDX files and HAR tables.

Every run must end as docs/reliability.md promises:

* exit 0; or exit 2 with exactly one line on stderr, ``canna ...: error: ...``, and nothing on
  stdout; or (``canna mul`` only) exit 1 with its mismatch report;
* no traceback, no exception escaping ``canna.cli.main``, no Python warning on stderr with an
  error;
* after a failing run no ``results.json`` / ``infer.json`` / ``model.npz`` in ``--out`` (and no
  ``--json`` / ``-o`` file) that was not there before; never a temporary file (``*.tmp``, the
  output probe) left anywhere; nothing written to the working directory, which no option names;
* a successful ``canna train`` / ``canna infer`` writes strict JSON, and the model it writes is
  one ``canna infer`` accepts.

Most cases run in-process through :func:`canna.cli.main` (fast); a few through a real process.
Sizes: ``CANNA_FUZZ_CASES`` (default 1000) in-process examples, ``CANNA_FUZZ_PROCESS_CASES``
(default 8) process examples. Hypothesis is derandomized (the same cases every run) unless
``CANNA_SEED`` is set, which seeds it instead. Each test prints how many cases it ran and how
they ended.
"""
from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

import canna.sim.workload
from canna.cli import main
from canna.sim import golden

from helpers import make_mnist, seed

FUZZ_CASES = int(os.environ.get("CANNA_FUZZ_CASES", "1000"))
PROCESS_CASES = int(os.environ.get("CANNA_FUZZ_PROCESS_CASES", "8"))
if FUZZ_CASES < 1 or PROCESS_CASES < 1:   # a fuzz test that runs no case checks nothing
    raise ValueError("CANNA_FUZZ_CASES and CANNA_FUZZ_PROCESS_CASES must be at least 1")

# The console script next to this interpreter (what `canna` runs); else the same entry point.
_SCRIPT = Path(sys.executable).with_name("canna")
CANNA = [str(_SCRIPT)] if _SCRIPT.is_file() else [
    sys.executable, "-c", "import sys; from canna.cli import main; sys.exit(main())"]

# A tiny training run: 2 iterations of a 64-8-10 network on digits.
TINY = {"--hidden": "8", "--epochs": "1", "--train-limit": "64"}
DATASETS = ("digits", "mnist", "har")
RESULT_FILES = ("results.json", "infer.json", "model.npz")
OUTPUT_OPTIONS = ("--out", "-o", "--json", "--vcd")


def _settings(n, salt=0):
    """Hypothesis settings of ``n`` examples: derandomized (or seeded from CANNA_SEED); ``salt``
    gives another fixed sequence (the process cases are not the in-process ones again)."""
    fixed = "CANNA_SEED" not in os.environ and salt == 0
    s = settings(max_examples=n, deadline=None, database=None, derandomize=fixed,
                 suppress_health_check=list(HealthCheck), print_blob=True)
    if fixed:
        return s
    return lambda f: hypothesis_seed(seed(0) + salt)(s(f))


# --------------------------------------------------------------------------------------------
# Valid inputs, made once
# --------------------------------------------------------------------------------------------

def _write_idx(d: Path, n_train=60, n_test=20):
    make_mnist(d, n_train, n_test, seed=1)


def _write_har(d: Path, n_features=6):
    rng = np.random.default_rng(2)
    for split, n in (("train", 48), ("test", 18)):
        (d / split).mkdir(parents=True)
        rows = rng.standard_normal((n, n_features))
        (d / split / f"X_{split}.txt").write_text(
            "\n".join(" ".join(f"{v: .6e}" for v in row) for row in rows) + "\n")
        (d / split / f"y_{split}.txt").write_text("\n".join(str(i % 6 + 1) for i in range(n)) + "\n")


def _write_vectors(path: Path):
    """40 f32_mul lines, their exact results by the golden model: with results and flags, with
    results only, and bare operand pairs."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal(40).astype(np.float32).view(np.uint32)
    b = (rng.standard_normal(40) * 1e3).astype(np.float32).view(np.uint32)
    a[:4] = [0x00000000, 0x7F800000, 0x7FC00000, 0x00000001]    # zero, inf, NaN, subnormal
    r = golden.mul_bits(a, b)
    lines = []
    for i in range(40):
        fields = [f"{a[i]:08X}", f"{b[i]:08X}", f"{r.bits[i]:08X}", f"{r.flags[i]:02X}"]
        lines.append(" ".join(fields[: 4 if i % 3 == 0 else 3 if i % 3 == 1 else 2]))
    path.write_text("\n".join(lines) + "\n")


class Assets:
    def __init__(self, root: Path):
        self.root = root
        self.data = {"digits": None, "mnist": root / "mnist", "har": root / "har"}
        self.data["mnist"].mkdir()
        _write_idx(self.data["mnist"])
        _write_har(self.data["har"])
        self.vectors = root / "vectors.txt"
        _write_vectors(self.vectors)
        self.runs = {}
        for name in DATASETS:
            run = root / f"run-{name}"
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
                rc = main(["train", *self.dataset_args(name), *_flat(TINY), "--quiet", "--out", str(run)])
            assert rc == 0, err.getvalue()
            self.runs[name] = run

    def dataset_args(self, name):
        return ["--dataset", name] + ([] if self.data[name] is None else ["--data-dir", str(self.data[name])])


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    t = time.monotonic()
    a = Assets(tmp_path_factory.mktemp("fuzz-assets"))
    a.seconds = time.monotonic() - t
    return a


@pytest.fixture
def fast_workload(monkeypatch):
    """`canna workload` retrains its scikit-learn MLP on every call (0.6 s): memoise it by seed
    (a pure function of the seed) so that the in-process cases stay fast."""
    monkeypatch.setattr(canna.sim.workload, "train_digits_mlp",
                        functools.lru_cache(maxsize=8)(canna.sim.workload.train_digits_mlp))


def _flat(opts: dict) -> list:
    out = []
    for k, v in opts.items():
        out += [k] if v is None else [k, v]
    return out


# --------------------------------------------------------------------------------------------
# What the fuzzer draws
# --------------------------------------------------------------------------------------------

# Generic hostile option values: tried on every option.
GENERIC = ["", " ", "nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "1e309", "-1e309", "-1",
           "-0", "0", "1e3", "0x10", "1_000", "abc", "-", "3.5", "9" * 30, "-" + "9" * 30,
           str(2 ** 64), "\u0663", "1,2", "\u00bd", "1e-320", "None", "true", "--", "8 8", "1e38"]

# Per command: option -> (valid values, hostile values special to it). None: a flag. Path
# values are placeholders ("@...") that the case resolves in its own directory.
MUL_OPTS = {
    "--tuning-bits": (["0", "3", "22"], ["23", "-1", "2.5", str(2 ** 31)]),
    "--exact": (None, []),
    "--policy": (["b", "dual"], ["a", "B", "dual ", "both"]),
    "--backend": (["golden"], ["verilog", "Golden", "amaranth+badvcd", "amaranth+badvcd+o"]),
    "--check-nans": (None, []),
    "--max-mismatches": (["0", "1", "3"], ["-1", "-5"]),
    "-o": (["@fresh", "-"], ["@dir", "@under-file", "@file", "@empty", "@nested"]),
    "--vcd": ([], ["@fresh", "@dir", "@under-file"]),
}
WORKLOAD_OPTS = {
    "--seed": (["0", "1", str(2 ** 32 - 1)], [str(2 ** 32), "-1"]),
    "--samples": (["1", "2", "5"], ["0", "-3"]),
    "--max-tuning-bits": (["0", "1"], ["23", "-1", "99"]),
    "--json": (["@fresh", "@nested", "@file"], ["@dir", "@under-file", "@empty"]),
}
COMMON_OPTS = {
    "--dataset": (list(DATASETS), ["nope", "MNIST", "isolet", "hyper"]),
    "--data-dir": (["@dataset"], ["@other-dataset", "@dir", "@file", "@missing", "@empty"]),
    "--split-seed": (["0", "7", str(2 ** 70)], ["-2"]),
    "--hyper-classes": (["9", "2"], ["-1"]),
    "--policy": (["b", "dual"], ["a", "B"]),
    "--backend": (["golden-fast", "native"], ["nope", "golden", "GOLDEN-FAST"]),
    "--checked": (["forward=weight", "gradient=delta,backward=delta"],
                  ["forward", "x=y", "forward=delta", "=", ",,,", "forward=weight=input"]),
    "--preset": (["default", "paper"], ["fast", "Default"]),
    "--hidden": (["8", "4,4", "3", "8,,4"], ["0", "-1", "4,0", "1e3", "9" * 12, f"{10 ** 9},{10 ** 9}", ","]),
    "--epochs": (["1", "2"], ["0", "-1", "9" * 20]),
    "--seed": (["0", "3", str(2 ** 64)], ["-5"]),
    "--lr": (["0.01", "0.1", "1e-30"], ["0", "-0.1", "1e308", "1e30"]),
    "--momentum": (["0.9", "0", "0.5"], ["1e30", "1e38", "-3"]),
    "--batch-size": (["16", "64", str(10 ** 6)], ["0", "-4"]),
    "--dropout": (["0", "0.5", "0.99"], ["1", "-0.1", "1.5"]),
    "--train-limit": (["64", "10", str(10 ** 9)], ["0", "-1"]),
    "--out": (["@fresh", "@nested", "@dir", "@prior-run"],
              ["@file", "@under-file", "@results-is-dir", "@empty"]),
}
TRAIN_OPTS = {
    **COMMON_OPTS,
    "--mode": (["exact", "uniform", "gta"], ["approx", "GTA", ""]),
    "--tuning-bits": (["2", "0", "22"], ["23", "-1"]),
    "--apx-min": (["3", "0", "22"], ["23", "-1"]),
    "--phases": (["forward", "forward,backward", ""], ["fwd", ",", "forward,backward,gradient,extra"]),
    "--gta-window": (["2", "10", "50"], ["1", "0", "-5"]),
    "--gta-thr": (["0", "0.002", "1e9"], ["-1", "nan", "inf"]),
    "--gta-reserve": (["0", "0.25", "0.9"], ["1", "-0.5", "nan", "inf"]),
    "--gta-patience": (["1", "3"], ["0", "-1"]),
    "--gta-no-stop": (None, []),
    "--baseline": (None, []),
    "--resume": (None, []),
}
INFER_OPTS = {
    **COMMON_OPTS,
    "--model": (["@model", "@checkpoint"], ["@other-model", "@vectors", "@missing", "@dir", "@empty"]),
    "--mode": (["layer", "uniform", "both"], ["gta", "Both", ""]),
    "--qos": (["1", "0", "100", "0.5"], ["-1", "nan", "inf", "-inf"]),
    "--metric": (["kl", "loss", "error"], ["KL", "mse"]),
    "--spread": (["3", "0", "22", "1.5"], ["23", "-1", "nan", "inf"]),
}
OPTS = {"mul": MUL_OPTS, "workload": WORKLOAD_OPTS, "train": TRAIN_OPTS, "infer": INFER_OPTS}
UNKNOWN = ["--bogus", "-x", "--tuning", "--out=", "extra-positional", "--quiet=1"]

DAMAGES = ["truncate", "bitflip", "empty", "garbage", "wrong-format", "nan-cells"]


def _text_values():
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)


@st.composite
def cases(draw):
    """One fuzz case, as plain data: the command, its dataset, the options (name, value) in
    order, extra tokens, and the damage done to the case's input file."""
    command = draw(st.sampled_from(sorted(OPTS)))
    spec = OPTS[command]
    dataset = draw(st.sampled_from(DATASETS)) if command in ("train", "infer") else None
    opts: dict = {}
    if command == "mul":
        inp = draw(st.sampled_from(["@vectors"] * 6 + ["-"] * 2 + ["@missing", "@dir", "@empty", "@model"]))
    else:
        inp = None
    if command == "mul" and draw(st.booleans()):
        opts["--tuning-bits"] = draw(st.sampled_from(["0", "3", "10"]))
    if command == "workload":
        opts.update({"--samples": "2", "--max-tuning-bits": "1"})
    if command in ("train", "infer"):
        opts["--dataset"] = dataset
        if dataset != "digits":
            opts["--data-dir"] = "@dataset"
        opts.update(TINY)
        opts["--out"] = draw(st.sampled_from(["@fresh", "@fresh", "@prior-run", None]))
    if command == "train":
        mode = draw(st.sampled_from(["exact", "uniform", "gta"]))
        opts["--mode"] = mode
        if mode == "uniform":
            opts["--tuning-bits"] = "2"
        if mode == "gta":
            opts.update({"--apx-min": "3", "--gta-window": "2"})
        if opts["--out"] == "@prior-run" and draw(st.booleans()):
            opts["--resume"] = None
    if command == "infer":
        opts["--model"] = draw(st.sampled_from(["@model", "@model", "@model", None]))
    # a few options set to other valid values, then 0..2 to hostile ones
    names = sorted(spec)
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        valid, _ = spec[name]
        if valid is None:
            opts[name] = None
        elif valid:
            opts[name] = draw(st.sampled_from(valid))
    n_hostile = draw(st.sampled_from([0, 1, 1, 2, 0]))
    hostile = draw(st.lists(st.sampled_from(names), min_size=n_hostile, max_size=n_hostile, unique=True))
    for name in hostile:
        valid, special = spec[name]
        if valid is None:          # a flag: given a value, or twice
            opts[name] = draw(st.sampled_from(["=1", "twice"]))
            continue
        which = draw(st.sampled_from(["special", "generic", "special", "text", "generic"]))
        if which == "special" and special:
            opts[name] = draw(st.sampled_from(special))
        elif which == "text":
            opts[name] = draw(_text_values())
        else:
            opts[name] = draw(st.sampled_from(GENERIC))
    if opts and draw(st.sampled_from([False] * 4 + [True, False])):
        drop = draw(st.sampled_from(sorted(opts)))
        opts.pop(drop)
    extra = [draw(st.sampled_from(UNKNOWN))] if draw(st.sampled_from([False] * 8 + [True, False])) else []
    targets = {"mul": ["input"], "workload": [],
               "train": (["data"] if dataset != "digits" else []) + (["checkpoint"] if "--resume" in opts else []),
               "infer": (["model"] if opts.get("--model") == "@model" else [])
                        + (["data"] if dataset != "digits" else [])}[command]
    damage = None
    if targets and draw(st.booleans()):
        damage = (draw(st.sampled_from(targets)), draw(st.sampled_from(DAMAGES)),
                  draw(st.integers(0, 10 ** 6)), draw(st.integers(1, 8)), draw(st.integers(0, 2 ** 31)))
    order = draw(st.permutations(range(len(opts)))) if len(opts) > 1 else list(range(len(opts)))
    items = list(opts.items())
    return {"command": command, "dataset": dataset, "input": inp,
            "options": [items[i] for i in order], "extra": extra, "damage": damage}


# --------------------------------------------------------------------------------------------
# Making a case's files and argv
# --------------------------------------------------------------------------------------------

def _rewrite_npz(src: Path, dst: Path, change):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(dst, "wb") as fh:
        np.savez(fh, **arrays)


def damage_file(path: Path, kind: str, where: int, count: int, s: int, vectors: Path, model: Path):
    """Damage ``path`` in place (kind: one of DAMAGES)."""
    rnd = random.Random(s)
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: where % max(len(data), 1)])
    elif kind == "bitflip":
        buf = bytearray(data)
        for _ in range(count):
            if buf:
                i = rnd.randrange(len(buf))
                buf[i] ^= 1 << rnd.randrange(8)
        path.write_bytes(bytes(buf))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(rnd.randbytes(1 + where % 3000))
    elif kind == "wrong-format":
        choice = where % 5
        if choice == 0:                        # numpy.save's single array
            with open(path, "wb") as fh:
                np.save(fh, np.arange(12, dtype=np.float32))
        elif choice == 1:
            path.write_bytes(vectors.read_bytes())
        elif choice == 2:
            path.write_bytes(model.read_bytes())
        elif choice == 3:
            path.write_bytes(gzip.compress(data))      # gzip bytes under a raw name
        else:
            path.write_text(json.dumps({"sizes": [64, 8, 10], "W0": [[1.0]]}))
    elif kind == "nan-cells":
        if data[:2] == b"PK":                  # an .npz model or checkpoint: a NaN/inf parameter
            def change(arrays):
                names = sorted(k for k in arrays if k[0] in "WbV" and arrays[k].dtype.kind == "f")
                name = names[where % len(names)]
                flat = arrays[name].reshape(-1)
                flat[count % flat.size] = [np.nan, np.inf, -np.inf][s % 3]
            _rewrite_npz(path, path, change)
        elif path.name.endswith("ubyte"):      # IDX: a header that lies about the size
            buf = bytearray(data)
            field = 4 + 4 * (where % max((buf[3] if len(buf) > 3 else 1), 1))
            buf[field:field + 4] = struct.pack(">I", [0, 1, 2 ** 32 - 1, 61][s % 4])
            path.write_bytes(bytes(buf))
        else:                                  # text: NaN/inf cells, other separators
            lines = data.decode("ascii", "replace").splitlines()
            i = where % max(len(lines), 1)
            if lines:
                cells = lines[i].split()
                j = count % max(len(cells), 1)
                token = ["nan", "inf", "-inf", "1e999", "NaN", "7FC00000,", "0x3F800000", "1_0"][s % 8]
                cells[j:j + 1] = [token]
                sep = [" ", "\t", ",", "\x1c", "\u3000", " "][s % 6]
                lines[i] = sep.join(cells)
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        raise AssertionError(kind)


class Case:
    """A drawn case made concrete in directory ``work``: files, argv, stdin."""

    def __init__(self, plan: dict, assets: Assets, work: Path):
        self.plan, self.assets, self.work = plan, assets, work
        self.cwd = work / "cwd"
        self.cwd.mkdir()
        self.stdin = None
        self.outputs = []            # (option, path) of the output locations named
        d = plan["dataset"]
        self.model = work / "model.npz"
        shutil.copy(assets.runs[d or "digits"] / "model.npz", self.model)
        self.data = None
        if d and assets.data[d] is not None:
            self.data = work / "data"
            shutil.copytree(assets.data[d], self.data)
        self.vectors = work / "vectors.txt"
        shutil.copy(assets.vectors, self.vectors)
        argv = [plan["command"]]
        options = plan["options"]
        rtl = dict(options).get("--backend", "").startswith("amaranth+")
        if rtl:      # the (slow) RTL backend is drawn only with a --vcd it cannot write
            drop = ("--vcd", "-o") if dict(options)["--backend"].endswith("+o") else ("--vcd",)
            options = [(k, v) for k, v in options if k not in drop]
        if plan["input"] is not None:
            argv.append(self.path(plan["input"], "input"))
        for name, value in options:
            if name == "--backend" and value.startswith("amaranth+"):
                argv += ["--backend", "amaranth", "--vcd", self.path(["@dir", "@under-file"][len(argv) % 2], "--vcd")]
                if value.endswith("+o"):
                    argv += ["-o", self.path("@fresh", "-o")]
            elif value is None:
                argv.append(name)
            elif value == "=1":
                argv.append(name + "=1")
            elif value == "twice":
                argv += [name, name]
            elif value.startswith("@"):
                argv += [name, self.path(value, name)]
            else:
                argv += [name, value]
                if name in OUTPUT_OPTIONS and value != "" and (name, value) != ("-o", "-"):  # in the cwd
                    self.outputs.append((name, self.cwd / value))
        if plan["command"] in ("train", "infer"):
            argv.append("--quiet")
        argv += plan["extra"]
        self.argv = argv
        if plan["damage"]:
            self.apply_damage(*plan["damage"])
        if plan["input"] == "-":
            self.stdin = self.vectors.read_bytes()

    def path(self, token: str, option: str) -> str:
        w, d = self.work, self.plan["dataset"] or "digits"
        other = {"digits": "mnist", "mnist": "har", "har": "mnist"}[d]
        p = {
            "@fresh": w / f"new{option.strip('-')}",
            "@nested": w / "a" / "b" / f"new{option.strip('-')}",
            "@dir": w / "somedir",
            "@file": w / "somefile.txt",
            "@under-file": w / "somefile.txt" / "x",
            "@missing": w / "missing" / "nope",
            "@dataset": self.data,
            "@other-dataset": self.assets.data[other],
            "@model": self.model,
            "@checkpoint": self.assets.runs[d] / "checkpoint.npz",
            "@other-model": self.assets.runs[other] / "model.npz",
            "@vectors": self.vectors,
            "@prior-run": w / "prior",
            "@results-is-dir": w / "rdir",
        }.get(token, token)
        if token == "@empty":
            p = ""
        if token in ("@dir",):
            p.mkdir(exist_ok=True)
        if token in ("@file", "@under-file"):
            (w / "somefile.txt").write_text("keep\n")
        if token == "@prior-run" and not p.exists():
            shutil.copytree(self.assets.runs[d], p)
        if token == "@results-is-dir":
            (p / "results.json").mkdir(parents=True, exist_ok=True)
            (p / "infer.json").mkdir(parents=True, exist_ok=True)
        if p is None:                          # @dataset of digits
            p = w / "nodata"
        if option in OUTPUT_OPTIONS:
            self.outputs.append((option, Path(p) if p != "" else None))
        return str(p)

    def apply_damage(self, target, kind, where, count, s):
        if target == "input":
            path = self.vectors
        elif target == "model":
            path = self.model
        elif target == "checkpoint":
            path = self.work / "prior" / "checkpoint.npz"
            if not path.exists():
                return
        else:
            files = sorted(p for p in self.data.rglob("*") if p.is_file())
            path = files[where % len(files)]
        damage_file(path, kind, where, count, s, self.assets.vectors, self.assets.runs["digits"] / "model.npz")


def snapshot(root: Path) -> dict:
    """Relative path -> (size, mtime_ns) of every file under ``root``."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() or p.is_symlink():
            st_ = p.lstat()
            out[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return out


# --------------------------------------------------------------------------------------------
# Running and judging
# --------------------------------------------------------------------------------------------

def run_inprocess(argv, cwd: Path, stdin: bytes | None):
    """(rc, stdout, stderr, escaped exception text) of ``canna ARGV`` run through main(). Python
    warnings are recorded as the lines an interpreter would print on stderr."""
    out, err = io.StringIO(), io.StringIO()
    old_cwd, old_stdin = os.getcwd(), sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="ascii", errors="surrogateescape")
    escaped = None
    os.chdir(cwd)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")          # what an interpreter shows by default
            for cat in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.filterwarnings("ignore", category=cat)
            warnings.filterwarnings("ignore", message=".*UnusedElaboratable.*")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = main(argv)
                except SystemExit as e:               # argparse
                    rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                except BaseException:                 # noqa: BLE001 - what must never happen
                    rc, escaped = None, traceback.format_exc()
    finally:
        os.chdir(old_cwd)
        sys.stdin = old_stdin
    text = err.getvalue() + "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n"
                                    for w in caught if w.category.__name__ != "UnusedElaboratable")
    return rc, out.getvalue(), text, escaped


def run_process(argv, cwd: Path, stdin: bytes | None):
    r = subprocess.run([*CANNA, *argv], cwd=cwd, input=stdin or b"", capture_output=True, timeout=300)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"), None


def _strict_json(path: Path):
    def bad(token):
        raise ValueError(f"{path}: non-standard JSON constant {token}")
    return json.loads(path.read_text(), parse_constant=bad)


def judge(case: Case, rc, out: str, err: str, escaped, before: dict) -> str:
    """Assert the promises of docs/reliability.md; return the outcome's name."""
    cmd = case.plan["command"]
    where = f"canna {' '.join(map(repr, case.argv))}\n(plan {case.plan})\nstderr: {err[-3000:]}"
    assert escaped is None, f"exception escaped main(): {escaped}\n{where}"
    assert "Traceback" not in err, where
    # lines as a terminal shows them (str.splitlines would also split at \x1c-\x1e, \x85, ...)
    lines = err.strip("\n").split("\n") if err.strip("\n") else []
    if rc == 0:
        outcome = "exit 0"
    elif rc == 2:
        # a message may echo a line break the user put in an argument; nothing else may add one
        echoed = sum(a.count("\n") for a in case.argv)
        assert 1 <= len(lines) <= 1 + echoed, f"exit 2 needs exactly one line on stderr\n{where}"
        assert lines[0].startswith("canna") and "error" in lines[0], where
        assert out == "", f"exit 2 but output on stdout: {out[:500]!r}\n{where}"
        outcome = "exit 2"
    elif rc == 1 and cmd == "mul":
        head = lines[0] if lines else ""
        assert head.startswith("canna mul: ") and head.endswith(" mismatches"), where
        nbad = int(head.rsplit(" ", 2)[-2])
        assert nbad > 0 and all(ln.startswith("  mismatch line ") for ln in lines[1:]), where
        outcome = "exit 1 (mismatches)"
    else:
        raise AssertionError(f"exit status {rc}\n{where}")
    after = snapshot(case.work)
    # nothing left behind: temporary files, output probes; nothing in the working directory
    stray = [p for p in after if p.endswith(".tmp") or ".canna-probe." in Path(p).name]
    assert not stray, f"temporary files left: {stray}\n{where}"
    named = [path for _, path in case.outputs if path is not None]
    cwd_files = [p for p in after if p.startswith("cwd/")
                 and not any(o == case.work / p or o in (case.work / p).parents for o in named)]
    assert not cwd_files, f"files written to the working directory: {cwd_files}\n{where}"
    failed = rc == 2
    new = [p for p in after if p not in before]
    if failed:
        for option, path in case.outputs:
            if path is None:
                continue
            rel = str(path.relative_to(case.work)) if path.is_relative_to(case.work) else None
            if option in ("--out",) and rel is not None:
                partial = [p for p in new if Path(p).parent == Path(rel) and Path(p).name in RESULT_FILES]
                assert not partial, f"a failing run left results files {partial}\n{where}"
            elif rel is not None:
                assert rel not in new, f"a failing run left its output file {rel}\n{where}"
                assert rel not in before or after.get(rel) == before[rel], \
                    f"a failing run changed the existing file {rel}\n{where}"
    elif rc == 0 and cmd in ("train", "infer"):
        for option, path in case.outputs:
            if option == "--out" and path is not None:
                for name in ("results.json", "infer.json"):
                    if (path / name).is_file() and f"{path.relative_to(case.work)}/{name}" in new:
                        _strict_json(path / name)
                if cmd == "train" and (path / "model.npz").is_file():
                    from canna.nn.train import load_model
                    load_model(path / "model.npz")     # what train writes, infer accepts
    return outcome


class Tally:
    def __init__(self):
        self.outcomes = Counter()
        self.slowest = (0.0, None)
        self.t0 = time.monotonic()

    def add(self, case, outcome, seconds):
        self.outcomes[(case.plan["command"], outcome)] += 1
        if seconds > self.slowest[0]:
            self.slowest = (seconds, " ".join(case.argv))

    def report(self, what):
        n = sum(self.outcomes.values())
        per = {}
        for (cmd, outcome), k in sorted(self.outcomes.items()):
            per.setdefault(cmd, Counter())[outcome] = k
        print(f"{what}: {n} cases in {time.monotonic() - self.t0:.1f} s; "
              + "; ".join(f"{cmd} {sum(c.values())} ({', '.join(f'{o}: {k}' for o, k in c.items())})"
                          for cmd, c in per.items()))
        print(f"{what}: slowest case {self.slowest[0]:.2f} s: canna {self.slowest[1]}")
        return n


def _fuzz(assets, n, runner, what, salt=0):
    tally = Tally()
    base = Path(tempfile.mkdtemp(prefix="canna-fuzz-", dir=assets.root))

    @_settings(n, salt)
    @given(plan=cases())
    def one(plan):
        work = Path(tempfile.mkdtemp(dir=base))
        try:
            case = Case(plan, assets, work)
            before = snapshot(work)
            t = time.monotonic()
            rc, out, err, escaped = runner(case.argv, case.cwd, case.stdin)
            seconds = time.monotonic() - t
            tally.add(case, judge(case, rc, out, err, escaped, before), seconds)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    one()
    shutil.rmtree(base, ignore_errors=True)
    return tally.report(what)


def test_cli_fuzz_in_process(assets, fast_workload):
    print(f"assets (3 tiny trained runs, vectors, IDX and HAR files) made in {assets.seconds:.1f} s")
    n = _fuzz(assets, FUZZ_CASES, run_inprocess, "in-process (canna.cli.main)")
    assert n >= min(FUZZ_CASES, 50)


def test_cli_fuzz_process(assets):
    n = _fuzz(assets, PROCESS_CASES, run_process, f"process ({' '.join(Path(c).name for c in CANNA[:1])})",
              salt=7919)
    assert n >= 1


def _plan(command, *options, dataset=None, inp=None, damage=None):
    return {"command": command, "dataset": dataset, "input": inp, "options": list(options), "extra": [],
            "damage": damage}


_TINY_DIGITS = [("--dataset", "digits"), *TINY.items(), ("--out", "@fresh")]
# What the fuzzer found (each failed before its fix), kept as fixed cases: a regression test
# should not depend on the fuzzer drawing them again.
FOUND = {
    "workload --json DIR: refused only after computing the table":
        _plan("workload", ("--samples", "1"), ("--max-tuning-bits", "0"), ("--json", "@dir")),
    "train --lr 1e38: NumPy overflow warnings beside the one-line error":
        _plan("train", *_TINY_DIGITS, ("--lr", "1e38"), dataset="digits"),
    "train --out '': checkpoint and model written to the working directory":
        _plan("train", *_TINY_DIGITS[:-1], ("--out", "@empty"), dataset="digits"),
    "mul --backend amaranth --vcd DIR -o F: F left empty (or truncated)":
        _plan("mul", ("--backend", "amaranth+badvcd+o"), inp="@vectors"),
    "train (exact) --gta-reserve nan: model written, then results.json refused":
        _plan("train", *_TINY_DIGITS, ("--gta-reserve", "nan"), dataset="digits"),
    "infer --model M --dropout nan: a traceback writing infer.json after the work":
        _plan("infer", *_TINY_DIGITS, ("--model", "@model"), ("--dropout", "nan"), dataset="digits"),
}


@pytest.mark.parametrize("name", list(FOUND))
def test_found_cases(assets, tmp_path, name):
    case = Case(FOUND[name], assets, tmp_path)
    before = snapshot(tmp_path)
    rc, out, err, escaped = run_inprocess(case.argv, case.cwd, case.stdin)
    outcome = judge(case, rc, out, err, escaped, before)
    print(f"now {outcome}: {err.strip()[:120]!r}")


def test_out_of_process_sanity(assets, tmp_path):
    """The process boundary itself: argparse errors, a damaged model and a mismatch report as the
    console script ends them (exit status and stderr as seen by a shell)."""
    bad_model = tmp_path / "model.npz"
    bad_model.write_bytes((assets.runs["digits"] / "model.npz").read_bytes()[:100])
    vec = tmp_path / "v.txt"
    vec.write_text("3F800000 40000000 40400000\n")          # 1 * 2 = 3? a mismatch
    checks = [
        (["train", "--epochs", "nan"], 2, "canna train: error: argument --epochs"),
        (["infer", "--model", str(bad_model), "--quiet"], 2, "canna infer: error: "),
        (["mul", str(vec)], 1, "canna mul: 1 vectors"),
        (["workload", "--samples", "0"], 2, "canna workload: error: --samples"),
    ]
    for argv, want, start in checks:
        rc, out, err, _ = run_process(argv, tmp_path, None)
        assert rc == want and err.startswith(start) and "Traceback" not in err, (argv, rc, err)
    print(f"process boundary: {len(checks)} fixed cases (argparse error, damaged model, mismatch, bad option)")
