"""`canna reproduce` end to end on the smoke profile: the report's tables recomputed from the
jobs' own results, the claims' rule, resume, and its one-line errors."""
from __future__ import annotations

import json

import pytest

from canna.cli import main
from canna.repro.experiments import plan
from canna.repro.jobs import JobStore
from canna.repro.report import Stat, claims, collect, tables


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "out"
    assert main(["reproduce", "--dataset", "digits", "--profile", "smoke", "--out", str(out), "--quiet"]) == 0
    return out


def test_report_files_and_tables(smoke, capsys):
    report = (smoke / "report.md").read_text()
    for section in ("Table I", "Table IV and Fig. 5", "Tables II and V", "Fig. 6", "The paper's claims",
                    "The paper's Table V (MNIST)", "Code version"):
        assert section in report, section
    pngs = sorted(p.name for p in smoke.glob("*.png"))
    assert pngs == ["digits-fig3.png", "digits-fig5.png", "digits-fig6.png", "digits-table1.png"]
    assert all((smoke / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    numbers = json.loads((smoke / "results.json").read_text())          # strict JSON
    # the tables from the jobs' own result files, recomputed here
    p = plan("digits", "smoke")
    store = JobStore(smoke / "sweep")
    results = {j.key: store.result(j) for j in p.jobs}
    data = collect(p, results)
    assert json.loads(json.dumps(data)) == numbers["datasets"]["digits"]
    tabs = tables(data)
    row0 = next(r for r in tabs["I"] if r["bits"] == 0)
    want = [100 * (results[p.train["uniform", 0, s].key]["test_error"]
                   - results[p.train["exact", None, s].key]["test_error"]) for s in p.seeds]
    assert row0["quality_loss_pp"].values == pytest.approx(want)
    want = [results[p.train["uniform", 0, s].key]["hardware"]["speedup"]["plain"]["lockstep"] for s in p.seeds]
    assert row0["speedup_plain_lockstep"].values == pytest.approx(want)
    assert [r["bits"] for r in tabs["I"]] == [None, 2, 0]
    assert len(tabs["IV"]) == 4 and len(tabs["6"]) == 2 and set(tabs["V"]) == {"kl", "loss", "error"}
    verdicts = claims(data, tabs)
    assert [c["claim"] for c in verdicts] == ["a", "b", "c", "d"]
    assert all(c["verdict"] in ("reproduced", "partly reproduced", "not reproduced", "not decided")
               for c in verdicts)
    assert next(c for c in verdicts if c["claim"] == "c")["verdict"] == "not decided"   # 2 weight layers
    print(f"smoke reproduction: {len(p.jobs)} jobs, 4 figures, report sections and Table I recomputed from "
          f"the job results ({len(want)} seeds); verdicts {[c['verdict'] for c in verdicts]}")


def test_rerun_reuses_every_job(smoke, capsys):
    before = (smoke / "results.json").read_text()
    assert main(["reproduce", "--dataset", "digits", "--profile", "smoke", "--out", str(smoke), "--quiet"]) == 0
    out = capsys.readouterr().out
    n = len(plan("digits", "smoke").jobs)
    assert f"{n} jobs ({n} finished before)" in out
    after = json.loads((smoke / "results.json").read_text())
    assert after == json.loads(before)
    print(f"rerun: all {n} jobs reused, results.json identical")


def test_claims_hold_only_on_every_seed():
    assert not Stat([]).minus(Stat([1])).positive and not Stat([]).minus(Stat([1])).negative
    # paired by seed: overlapping ranges, but the difference has one sign on every seed
    a, b = Stat([1.0, 3.0, 5.0], [0, 1, 2]), Stat([0.5, 2.5, 4.0], [0, 1, 2])
    assert a.lo <= b.hi and b.lo <= a.hi                      # the ranges overlap
    assert a.minus(b).positive and not b.minus(a).positive and b.minus(a).negative
    assert Stat([1.0, 9.0], [0, 1]).minus(Stat([2.0, 1.0], [0, 1])).values == [-1.0, 8.0]
    assert Stat([1.0, None], [0, 1]).minus(Stat([0.0, 5.0], [0, 1])).values == [1.0]   # seed 1 lacks one side

    def data_with(sens_per_seed):
        seeds = list(range(len(sens_per_seed)))
        return {"train": {}, "levels": [], "infer": {}}, {
            "IV": [], "6": [], "V": {"kl": [Stat(v, seeds) for v in zip(*sens_per_seed)]}}

    def verdict_c(sens):
        return next(c for c in claims(*data_with(sens)) if c["claim"] == "c")["verdict"]

    assert verdict_c([[1.0, 0.4, 0.9], [0.45, 0.3, 1.0]]) == "reproduced"       # ranges overlap, seeds agree
    assert verdict_c([[1.0, 0.4, 0.3], [0.95, 0.5, 0.6]]) == "partly reproduced"
    assert verdict_c([[1.0, 0.9, 0.3], [0.8, 1.0, 0.6]]) == "not reproduced"
    print("claims: per-seed differences of one sign hold, overlapping ranges do not matter; "
          "claim (c) reproduced / partly / not on hand-made sensitivities")


@pytest.mark.parametrize("args, message", [
    (["--dataset", "nope"], "--dataset: unknown dataset nope"),
    (["--dataset", "mnist"], "mnist: --data-dir is required"),
    (["--profile", "huge"], "--profile"), (["--seeds", "0"], "--seeds"),
    (["--jobs", "0"], "--jobs")])
def test_bad_options_are_one_line(tmp_path, capsys, args, message):
    try:
        rc = main(["reproduce", "--out", str(tmp_path / "o"), "--quiet", *args])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o" / "sweep").exists()
    print(f"{' '.join(args)}: one line, exit 2, no job run")


def test_an_output_file_in_the_way_is_refused(tmp_path, capsys):
    (tmp_path / "o").write_text("a file")
    assert main(["reproduce", "--out", str(tmp_path / "o"), "--profile", "smoke", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and len(err.strip().splitlines()) == 1
    print("--out naming a file: one line, exit 2")


def test_unreachable_scheduler_is_one_line(tmp_path, capsys):
    assert main(["reproduce", "--profile", "smoke", "--scheduler", "tcp://127.0.0.1:1", "--quiet",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "tcp://127.0.0.1:1" in err and "cannot connect" in err and len(err.strip().splitlines()) == 1, err
    assert not list((tmp_path / "o").glob("*.md"))
    print("--scheduler tcp://127.0.0.1:1: one line naming it, exit 2, no report written")


def test_a_dataset_from_data_dir_is_set_beside_its_own_paper_row(tmp_path, capsys):
    """--dataset mnist --data-dir: the user's files (a tiny MNIST here), the paper's MNIST beside."""
    from helpers import make_mnist
    (tmp_path / "mnist").mkdir()
    make_mnist(tmp_path / "mnist", n_train=240, n_test=60)
    out = tmp_path / "o"
    assert main(["reproduce", "--dataset", "mnist", "--data-dir", str(tmp_path / "mnist"), "--profile", "smoke",
                 "--seeds", "1", "--quiet", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## mnist (smoke profile, seeds [0]; set beside the paper's MNIST)" in report
    assert "| 0 | 4 | 33% | 2.26 / 1.62 | 5 | 56% | 3.86 / 2.62 |" in report      # Table IV, MNIST 0%
    numbers = json.loads((out / "results.json").read_text())["datasets"]["mnist"]
    assert numbers["train"]["exact:None"]["seeds"][0]["test_accuracy"] >= 0
    print("mnist from --data-dir (240 training images): report beside the paper's MNIST row")


def test_the_paper_preset_makes_other_jobs():
    """--preset paper: the paper's hyper-parameters in every training job, so every key differs."""
    from canna.nn.train import PRESETS
    ours, theirs = plan("digits", "smoke"), plan("digits", "smoke", preset="paper")
    assert not {j.key for j in ours.jobs} & {j.key for j in theirs.jobs}
    cfg = theirs.train["exact", None, 0].params["config"]
    assert {k: cfg[k] for k in PRESETS["paper"]} == PRESETS["paper"] and cfg["preset"] == "paper"
    print(f"--preset paper: {len(theirs.jobs)} jobs, none shared with the default preset's; {PRESETS['paper']}")
