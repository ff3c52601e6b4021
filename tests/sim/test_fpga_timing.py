"""canna.sim.fpga_timing: ``--exact-cycles`` as an integer (assumed) or ``measured`` (make fpga's
report), its one-line errors, and the source reaching every report header."""
import json

import pytest

from canna.cli import main
from canna.sim.fpga_timing import (ASSUMED, ExactCycles, fpga_report_path, measured_exact_cycles,
                                   resolve_exact_cycles, rtl_sources_digest)

SOURCE = "measured by make fpga, test report"


def write_report(build, cycles=3, source=SOURCE, rtl=None):
    path = build / "fpga" / "fpga.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"latency": {"exact_cycles": cycles, "source": source,
                                            "rtl_sources": rtl or rtl_sources_digest()}}))
    return path


def test_a_measurement_of_other_rtl_is_refused(tmp_path):
    """A report measured on other hw/ or spec/ sources (or a partial run mixing two) is stale."""
    for rtl in ("0" * 64, None):
        path = tmp_path / "fpga.json"
        path.write_text(json.dumps({"latency": {"exact_cycles": 7, "source": "old", "rtl_sources": rtl}}))
        with pytest.raises(ValueError, match=r"^--exact-cycles measured: .* was measured on other RTL "
                                             r"sources \(hw/ or spec/ changed since; run `make fpga` again\)$"):
            resolve_exact_cycles("measured", path=path)
    print("stale and mixed measurements: refused in one line")


def test_integers_are_assumed():
    for value in (1, 4, "4", " 7 "):
        assert resolve_exact_cycles(value) == ExactCycles(int(value), ASSUMED)
    print("1, 4, '4', ' 7 ': assumed")


def test_measured_reads_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("CANNA_BUILD_DIR", str(tmp_path))
    path = write_report(tmp_path, 5)
    assert fpga_report_path() == path
    assert resolve_exact_cycles("measured") == ExactCycles(5, SOURCE)
    assert measured_exact_cycles(path) == (5, SOURCE)
    print(f"measured: 5 cycles from {path}")


@pytest.mark.parametrize("value, message", [
    ("0", r"^--exact-cycles must be an integer >= 1 or 'measured', got 0$"),
    ("-2", r"^--exact-cycles must be an integer >= 1 or 'measured', got -2$"),
    ("x", r"^--exact-cycles must be an integer >= 1 or 'measured', got 'x'$"),
    (True, r"^--exact-cycles must be an integer >= 1 or 'measured', got True$"),
    (2.5, r"^--exact-cycles must be an integer >= 1 or 'measured', got 2.5$"),
])
def test_bad_values(value, message):
    with pytest.raises(ValueError, match=message):
        resolve_exact_cycles(value)


def test_report_errors(tmp_path):
    missing = tmp_path / "fpga.json"
    with pytest.raises(ValueError, match=r"^--exact-cycles measured: .*fpga\.json not found "
                                         r"\(run `make fpga` first\)$"):
        resolve_exact_cycles("measured", path=missing)
    cases = {"not json": "{", "no latency": "{}", "no value": '{"latency": {"source": "x"}}'}
    for name, text in cases.items():
        missing.write_text(text)
        with pytest.raises(ValueError, match=r"holds no exact_cycles measurement"):
            resolve_exact_cycles("measured", path=missing, option="--k")
    for bad in (0, "4", True):
        write_report(tmp_path, bad)
        with pytest.raises(ValueError, match=r"not an integer >= 1 \(run `make fpga` again\)$"):
            resolve_exact_cycles("measured", path=tmp_path / "fpga" / "fpga.json")
    print(f"missing report, {len(cases)} unreadable reports, 3 bad values: one-line errors")


@pytest.mark.parametrize("command", [["train"], ["main_job"]])
@pytest.mark.parametrize("value, message", [
    ("measured", "run `make fpga` first"), ("0", "must be an integer >= 1 or 'measured'")])
def test_cli_errors_are_one_line(command, value, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CANNA_BUILD_DIR", str(tmp_path))
    if command == ["main_job"]:
        from canna.nn.main_job import main as job
        with pytest.raises(SystemExit) as e:
            job(["--exact-cycles", value])
        code = e.value.code
    else:
        try:
            code = main(["train", "--quiet", "--exact-cycles", value])
        except SystemExit as e:
            code = e.code
    err = capsys.readouterr().err
    assert code == 2 and "--exact-cycles" in err and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    print(f"{command[0]} --exact-cycles {value}: one line, exit 2")


def test_measured_reaches_train_and_infer_headers(tmp_path, monkeypatch, capsys):
    """The measured value is the one accounted, and the header says where it came from; an
    integer says assumed."""
    monkeypatch.setenv("CANNA_BUILD_DIR", str(tmp_path / "build"))
    write_report(tmp_path / "build", 3)
    out = tmp_path / "run"
    assert main(["train", "--mode", "uniform", "--tuning-bits", "1", "--epochs", "1", "--hidden", "12",
                 "--train-limit", "96", "--quiet", "--exact-cycles", "measured", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["hardware"]["exact_cycles"] == 3 and res["config"]["exact_cycles"] == 3
    assert res["config"]["exact_cycles_source"] == SOURCE
    assert f"exact multiply 3 cycles, {SOURCE})" in text
    assert main(["infer", "--model", str(out / "model.npz"), "--mode", "uniform", "--quiet",
                 "--exact-cycles", "measured"]) == 0
    text = capsys.readouterr().out
    assert f"exact multiply 3 cycles, {SOURCE})" in text
    assert main(["infer", "--model", str(out / "model.npz"), "--mode", "uniform", "--quiet",
                 "--exact-cycles", "6"]) == 0
    assert "exact multiply 6 cycles, assumed)" in capsys.readouterr().out
    print("train and infer headers: measured 3 cycles with its source; 6 assumed")
