"""Hostile input to `canna train` / `canna infer` (issue 15): corrupt model and checkpoint files,
corrupt dataset files, bad output locations, non-finite models, huge topologies, closed pipes,
file modes and the small one-line errors. Every error is one line naming the option or the file,
exit status 2, and no traceback; valid input keeps its results."""
import gzip
import json
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import canna.nn.layerwise
import canna.nn.train
from canna.cli import main
from canna.nn.checkpoint import CheckpointError, load_npz, write_json
from canna.nn.datasets import DatasetError, load_dataset, load_har, load_idx, load_isolet

from helpers import REPO_ROOT, make_mnist

SMALL = ["--hidden", "16,8", "--epochs", "1", "--quiet"]


def one_line_error(capsys, args, *needles):
    """Run ``canna ARGS``; assert exit 2 and one stderr line holding every needle."""
    try:
        rc = main(args)
    except SystemExit as e:       # argparse errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert str(n) in err, (n, err)
    return err


def strict_json(text):
    """json.loads that rejects the NaN / Infinity tokens Python writes by default."""
    def bad(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=bad)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained run (64-16-8-10 on digits): model.npz and checkpoint.npz."""
    d = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *SMALL, "--out", str(d)]) == 0
    return d


def _rewrite(src, dst, drop=(), meta=None, change=None, compressed=False):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files if k not in drop}
    if meta is not None:
        arrays["meta"] = np.frombuffer(meta, dtype=np.uint8)
    for k, fn in (change or {}).items():
        arrays[k] = fn(arrays[k].copy())
    (np.savez_compressed if compressed else np.savez)(dst, **arrays)
    return dst


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _deflate_offset(path, member):
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    header = path.read_bytes()[info.header_offset:info.header_offset + 30]
    name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_len + extra_len


# -- 1. corrupt .npz files ---------------------------------------------------------------------

def test_corrupt_model_files_are_one_line_errors(trained, tmp_path, capsys):
    model = trained / "model.npz"
    cases = {}
    (tmp_path / "truncated.npz").write_bytes(model.read_bytes()[:3000])
    cases["truncated.npz"] = ()
    (tmp_path / "empty.npz").write_bytes(b"")
    cases["empty.npz"] = ()
    shutil.copy(model, tmp_path / "flipped.npz")
    _flip(tmp_path / "flipped.npz", 1000)                      # inside W0's data: Bad CRC-32
    cases["flipped.npz"] = ()
    z = _rewrite(model, tmp_path / "deflate.npz", compressed=True)
    _flip(z, _deflate_offset(z, "W0.npy") + 1)                  # a damaged deflate stream
    cases["deflate.npz"] = ()
    _rewrite(model, tmp_path / "noW2.npz", drop=("W2",))
    cases["noW2.npz"] = ("'W2'",)
    _rewrite(model, tmp_path / "metalist.npz", meta=b"[1, 2]")
    cases["metalist.npz"] = ("meta",)
    _rewrite(model, tmp_path / "metaint.npz", meta=b"7")
    cases["metaint.npz"] = ("meta",)
    _rewrite(model, tmp_path / "metajunk.npz", meta=b"\xff{")
    cases["metajunk.npz"] = ("meta",)
    np.save(tmp_path / "array.npy", np.zeros(3))
    cases["array.npy"] = ("not a .npz",)
    for name, needles in cases.items():
        one_line_error(capsys, ["infer", "--model", str(tmp_path / name), "--quiet"], tmp_path / name, *needles)
    print(f"{len(cases)} corrupt model files: one line naming the file, exit 2")


def test_corrupt_checkpoint_on_resume(trained, tmp_path, capsys):
    cases = 0
    for name, damage in (("noV0", lambda p: _rewrite(trained / "checkpoint.npz", p, drop=("V0",))),
                         ("truncated", lambda p: p.write_bytes((trained / "checkpoint.npz").read_bytes()[:5000])),
                         ("empty", lambda p: p.write_bytes(b"")),
                         ("nan", lambda p: _rewrite(trained / "checkpoint.npz", p,
                                                    change={"V1": lambda a: a * np.nan}))):
        run = tmp_path / name
        shutil.copytree(trained, run)
        ckpt = run / "checkpoint.npz"
        ckpt.unlink()
        damage(ckpt)
        needles = {"noV0": ("'V0'",), "nan": ("'V1'", "non-finite")}.get(name, ())
        one_line_error(capsys, ["train", *SMALL, "--out", str(run), "--resume"], ckpt, *needles)
        cases += 1
    print(f"{cases} corrupt checkpoints (missing V0, truncated, empty, NaN velocity) on --resume: one line, exit 2")


def test_load_npz_names_missing_arrays(trained):
    arrays, _ = load_npz(trained / "model.npz")
    with pytest.raises(CheckpointError, match=r"model\.npz: no array 'W7'"):
        arrays["W7"]
    print("a missing array is a CheckpointError naming the file and the array")


# -- 2. --baseline runs resume whichever run was interrupted ----------------------------------

GTA = ["train", "--mode", "gta", "--apx-min", "2", "--gta-window", "10", "--epochs", "2",
       "--hidden", "16,8", "--baseline", "--quiet"]
TIMING = ("seconds",)


def _results(path):
    res = json.loads(path.read_text())
    for k in TIMING:
        res.pop(k, None)
    res.get("baseline", {}).pop("seconds", None)
    return res


def _npz(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k != "meta"}


@pytest.mark.parametrize("run_cut, after", [(1, 7), (1, 40), (2, 7), (2, 50)])
def test_baseline_run_resumes_whichever_run_was_interrupted(tmp_path, monkeypatch, capsys, run_cut, after):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main([*GTA, "--out", str(full)]) == 0
    real = canna.nn.train.train
    calls = []

    def interrupting(data, cfg, **kw):
        calls.append(cfg.mode)
        if len(calls) == run_cut:
            kw["interrupt_after"] = after
        return real(data, cfg, **kw)

    monkeypatch.setattr(canna.nn.train, "train", interrupting)
    assert main([*GTA, "--out", str(cut)]) == 130
    monkeypatch.setattr(canna.nn.train, "train", real)
    assert calls == ["exact", "gta"][:run_cut]
    assert main([*GTA, "--out", str(cut), "--resume"]) == 0
    capsys.readouterr()
    files = 0
    for sub in ("", "baseline"):
        for name in ("model.npz", "iterations.npz"):
            a, b = _npz(full / sub / name), _npz(cut / sub / name)
            assert a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k])
                                                for k in a), (sub, name)
            files += 1
        assert _results(full / sub / "results.json") == _results(cut / sub / "results.json"), sub
        files += 1
    print(f"{['baseline', 'main'][run_cut - 1]} run interrupted after {after} iterations, resumed: "
          f"{files} files identical to the uninterrupted run's (results.json minus timing)")


def test_resume_with_no_checkpoint_at_all(tmp_path, capsys):
    one_line_error(capsys, [*GTA, "--out", str(tmp_path / "none"), "--resume"], "--resume", "checkpoint")
    print("--baseline --resume without any checkpoint: one line, exit 2")


# -- 3. corrupt gzip dataset files -------------------------------------------------------------

def _gz(path, text_or_bytes):
    data = text_or_bytes.encode() if isinstance(text_or_bytes, str) else text_or_bytes
    with gzip.open(path, "wb") as fh:
        fh.write(data)
    return path


def _bad_deflate(path):
    data = bytearray(path.read_bytes())
    start = 10
    if data[3] & 0x08:               # FNAME: gzip.open stores the file name, NUL-terminated
        start = data.index(0, start) + 1
    data[start] = 0xFF               # first deflate block header: BTYPE 11, invalid
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def _isolet_text(n, rng, first_value=None):
    lines = []
    for i in range(n):
        vals = [f"{v:.4f}" for v in rng.standard_normal(617)]
        if first_value is not None and i == 1:
            vals[0] = first_value
        lines.append(", ".join(vals + [f"{i % 26 + 1}."]))
    return "\n".join(lines) + "\n"


def _write_idx(d, n_train=60, n_test=20):
    make_mnist(d, n_train, n_test, gz=True)


def _write_har(d, rng):
    for split, n in (("train", 40), ("test", 15)):
        (d / split).mkdir(parents=True, exist_ok=True)
        x = "\n".join(" ".join(f"{v:.5e}" for v in row) for row in rng.standard_normal((n, 561))) + "\n"
        _gz(d / split / f"X_{split}.txt.gz", x)
        _gz(d / split / f"y_{split}.txt.gz", "\n".join(str(i % 6 + 1) for i in range(n)) + "\n")


def test_corrupt_gzip_dataset_files(tmp_path, capsys):
    rng = np.random.default_rng(5)
    cases = []
    for damage in (_bad_deflate, _truncate):
        d = tmp_path / f"idx-{damage.__name__}"
        d.mkdir()
        _write_idx(d)
        cases.append((lambda d=d: load_idx(d), d / "train-images-idx3-ubyte.gz", damage))
        d = tmp_path / f"isolet-{damage.__name__}"
        d.mkdir()
        _gz(d / "isolet1+2+3+4.data.gz", _isolet_text(60, rng))
        _gz(d / "isolet5.data.gz", _isolet_text(20, rng))
        cases.append((lambda d=d: load_isolet(d), d / "isolet1+2+3+4.data.gz", damage))
        d = tmp_path / f"har-{damage.__name__}"
        _write_har(d, rng)
        cases.append((lambda d=d: load_har(d), d / "train" / "X_train.txt.gz", damage))
    for load, victim, damage in cases:
        load()                                   # valid before the damage
        damage(victim)
        with pytest.raises(DatasetError) as e:
            load()
        assert str(victim) in str(e.value) and "\n" not in str(e.value), str(e.value)
    d = tmp_path / "isolet-_bad_deflate"
    one_line_error(capsys, ["train", "--dataset", "isolet", "--data-dir", str(d), *SMALL], "isolet1+2+3+4.data.gz")
    print(f"{len(cases)} damaged gzip files (bad deflate block, truncated) of IDX, ISOLET, HAR: "
          f"DatasetError naming the file")


# -- 4. output locations are checked before any work ------------------------------------------

def test_output_locations_checked_before_any_work(trained, tmp_path, monkeypatch, capsys):
    work = []
    monkeypatch.setattr(canna.nn.train, "train", lambda *a, **k: work.append("train"))
    monkeypatch.setattr(canna.nn.layerwise, "run_inference", lambda *a, **k: work.append("infer"))
    monkeypatch.setattr(canna.nn.datasets, "load_digits", lambda *a, **k: work.append("load"))
    afile = tmp_path / "afile"
    afile.write_text("x")
    dir_results = tmp_path / "r1"
    (dir_results / "results.json").mkdir(parents=True)
    dir_infer = tmp_path / "r2"
    (dir_infer / "infer.json").mkdir(parents=True)
    base_file = tmp_path / "r3"
    base_file.mkdir()
    (base_file / "baseline").write_text("x")
    model = ["--model", str(trained / "model.npz")]
    cases = [
        (["train", *SMALL, "--out", str(afile)], afile),
        (["train", *SMALL, "--out", str(afile / "sub")], afile),
        (["train", *SMALL, "--out", str(dir_results)], dir_results / "results.json"),
        (["train", *SMALL, "--mode", "uniform", "--tuning-bits", "3", "--baseline", "--out", str(base_file)],
         base_file / "baseline"),
        (["infer", *model, "--quiet", "--out", str(afile)], afile),
        (["infer", *model, "--quiet", "--out", str(afile / "x" / "y")], afile),
        (["infer", *model, "--quiet", "--out", str(dir_infer)], dir_infer / "infer.json"),
        (["infer", "--quiet", "--out", str(base_file / "baseline")], base_file / "baseline"),
    ]
    for args, named in cases:
        one_line_error(capsys, args, "--out", named)
    assert work == [], work
    from canna.nn.main_job import main as main_job
    with pytest.raises(SystemExit) as e:
        main_job(["--epochs", "1", "--out", str(afile)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--out" in err and str(afile) in err and len(err.strip().splitlines()) == 1
    assert work == [], work
    print(f"{len(cases) + 1} bad --out locations (a file, under a file, an output that is a directory): "
          f"one line before any loading or training")


# -- 5. non-finite models and strict JSON ------------------------------------------------------

def test_non_finite_models_are_rejected(trained, tmp_path, capsys):
    model = trained / "model.npz"
    cases = 0
    for name, array, value in (("nan.npz", "W0", np.nan), ("inf.npz", "b1", np.inf), ("ninf.npz", "W2", -np.inf)):
        def poison(a, value=value):
            a.flat[a.size // 2] = value
            return a
        bad = _rewrite(model, tmp_path / name, change={array: poison})
        one_line_error(capsys, ["infer", "--model", str(bad), "--quiet", "--out", str(tmp_path / "o")],
                       bad, f"'{array}'", "non-finite")
        cases += 1
    assert not (tmp_path / "o" / "infer.json").exists()
    print(f"{cases} models with NaN/inf arrays rejected, naming the file and the array")


def test_results_files_are_strict_json(trained, tmp_path, capsys):
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"v": float("nan")})
    assert not (tmp_path / "x.json").exists()
    # Finite weights whose products overflow float32: logits +-inf, loss and KL not finite.
    big = _rewrite(trained / "model.npz", tmp_path / "overflow.npz",
                   change={"W2": lambda a: np.where(a > 0, 3e38, -3e38).astype(np.float32)})
    assert main(["infer", "--model", str(big), "--quiet", "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    res = strict_json((tmp_path / "o" / "infer.json").read_text())
    nulls = []

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if v is None and f"{k}_note" in node:
                    nulls.append(f"{where}.{k}")
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")
    walk(res, "")
    assert nulls, "expected null values with a note where the loss / KL are not finite"
    assert res["sensitivity"]["base"]["loss"] is None
    print(f"write_json refuses NaN; an overflowing model's infer.json is strict JSON with {len(nulls)} "
          f"nulls explained by a note")


# -- 6. closed pipes ---------------------------------------------------------------------------

def test_train_into_a_closed_pipe_is_quiet(tmp_path):
    canna = [sys.executable, "-c", "import sys; from canna.cli import main; sys.exit(main())"]
    proc = subprocess.Popen([*canna, "train", "--hidden", "8", "--epochs", "1", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    proc.stdout.close()                          # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert rc == 141 and err == "", (rc, err)
    print("canna train | (closed pipe): exit 141, nothing on stderr")


# -- 7. memory ---------------------------------------------------------------------------------

def test_huge_topologies_are_refused_before_allocating(trained, tmp_path, capsys):
    one_line_error(capsys, ["train", "--hidden", "99999999999999", "--quiet"], "--hidden", "memory")
    one_line_error(capsys, ["train", "--hidden", "100000,100000,100000", "--quiet"], "--hidden", "memory")
    one_line_error(capsys, ["train", "--hidden", "8", "--epochs", "99999999999", "--quiet"], "--epochs", "memory")
    with np.load(trained / "model.npz") as z:
        meta = json.loads(z["meta"].tobytes())
    meta["sizes"] = [64, 10**12, 8, 10]
    huge = _rewrite(trained / "model.npz", tmp_path / "huge.npz", meta=json.dumps(meta).encode())
    one_line_error(capsys, ["infer", "--model", str(huge), "--quiet"], huge)
    print("--hidden 1e14, --hidden 3 x 1e5, --epochs 1e11 and a model naming 1e12 units: one line, exit 2")


# -- 8. the smaller ones -----------------------------------------------------------------------

def test_output_files_honour_the_umask(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert main(["train", "--hidden", "8", "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")]) == 0
        assert main(["infer", "--model", str(tmp_path / "r" / "model.npz"), "--quiet", "--mode", "uniform",
                     "--out", str(tmp_path / "r")]) == 0
        os.umask(0o077)
        write_json(tmp_path / "private.json", {})
    finally:
        os.umask(old)
    capsys.readouterr()
    files = sorted(p for p in (tmp_path / "r").iterdir())
    modes = {p.name: p.stat().st_mode & 0o777 for p in files}
    assert len(modes) == 5 and set(modes.values()) == {0o644}, modes
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    print(f"{len(modes)} output files 0644 under umask 022, 0600 under umask 077")


def test_small_errors_name_the_option_or_file(tmp_path, capsys):
    import struct
    one_line_error(capsys, ["train", "--seed", "-1", "--quiet"], "--seed")
    one_line_error(capsys, ["train", "--split-seed", "-1", "--quiet"], "--split-seed")
    one_line_error(capsys, ["train", "--data-dir", str(tmp_path), "--quiet"], "--data-dir", "digits")
    idx = tmp_path / "idx"
    idx.mkdir()
    _write_idx(idx)
    (idx / "train-images-idx3-ubyte.gz").unlink()
    (idx / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, 0, 4, 4))
    (idx / "train-labels-idx1-ubyte.gz").unlink()
    (idx / "train-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, 0))
    one_line_error(capsys, ["train", "--dataset", "mnist", "--data-dir", str(idx), "--quiet"],
                   idx / "train-images-idx3-ubyte", "no images")
    rng = np.random.default_rng(6)
    iso = tmp_path / "iso"
    iso.mkdir()
    (iso / "isolet1+2+3+4.data").write_text(_isolet_text(60, rng, first_value="1_000"))
    (iso / "isolet5.data").write_text(_isolet_text(20, rng))
    with pytest.raises(DatasetError, match=r"isolet1\+2\+3\+4\.data:2: non-numeric field"):
        load_isolet(iso)
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("digits", tmp_path)
    print("--seed -1, --split-seed -1, --data-dir with digits, an IDX file of 0 images, '1_000' in ISOLET: "
          "each names its option or file")
