"""`canna mul` and `canna workload` as Unix tools (issue 15): a closed pipe ends quietly, a full
disk is one line and exit 2, and only ASCII whitespace separates the fields of a vector line."""
import subprocess
import sys

import pytest

from canna.cli import main

from helpers import REPO_ROOT

# The `canna` console script, as the installed entry point runs it (not `python -m canna.cli`,
# whose known __main__ double import is marked in tests/sim/test_workload.py).
CANNA = [sys.executable, "-c", "import sys; from canna.cli import main; sys.exit(main())"]


@pytest.fixture
def big(tmp_path):
    """20 000 vector lines: their results (580 kB) do not fit in a pipe's buffer."""
    path = tmp_path / "big.txt"
    path.write_text("".join(f"{0x3F800000 + i:08X} 40000000\n" for i in range(20000)))
    return path


def test_closed_pipe_ends_quietly(big):
    proc = subprocess.Popen([*CANNA, "mul", str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO_ROOT)
    first = proc.stdout.readline()
    proc.stdout.close()                                   # `| head -1`
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert first.split()[:2] == [b"3F800000", b"40000000"]
    assert rc == 141 and err == "", (rc, err)
    print("canna mul big.txt | head -1: first line read, exit 141, nothing on stderr")


@pytest.mark.parametrize("how", ["stdout", "-o", "stdout-small"])
def test_full_disk_is_one_line(big, tmp_path, how):
    args = [*CANNA, "mul", str(big)]
    if how == "stdout-small":             # fits in the stdout buffer: fails only at the final flush
        small = tmp_path / "small.txt"
        small.write_text("3F800000 40000000\n")
        args = [*CANNA, "mul", str(small)]
    with open("/dev/full", "w") as full:
        if how == "-o":
            r = subprocess.run([*args, "-o", "/dev/full"], stderr=subprocess.PIPE, cwd=REPO_ROOT)
        else:
            r = subprocess.run(args, stdout=full, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    err = r.stderr.decode()
    assert r.returncode == 2 and len(err.strip().splitlines()) == 1, (r.returncode, err)
    assert err.startswith("canna mul: error: ") and err.strip().endswith(": No space left on device"), err
    print(f"canna mul {how} to /dev/full: {err.strip()!r}, exit 2")


@pytest.mark.parametrize("sep", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u2028", "\u3000", "\x00", "\x7f"])
def test_only_ascii_whitespace_separates_fields(tmp_path, capsys, sep):
    path = tmp_path / "vec.txt"
    path.write_text(f"3F800000 40000000\n3F800000{sep}40000000\n", encoding="utf-8")
    rc = main(["mul", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and f"{path}:2:" in err, err
    print(f"separator {sep!r} rejected naming line 2")


def test_ascii_whitespace_still_separates_fields(tmp_path, capsys):
    path = tmp_path / "vec.txt"
    path.write_text("3F800000 \t40000000\x0b40000000\x0c00\r\n", encoding="ascii")
    assert main(["mul", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.split() == ["3F800000", "40000000", "40000000", "00", "0"] and "1 checked, 0 mismatches" in err
    print("space, tab, VT, FF and CRLF separate fields as before: 1 vector checked")


EMPTY_PATHS = [["infer", "--model", ""], ["workload", "--json", ""], ["mul", "-o", "", "x"],
               ["mul", "--vcd", "", "x"], ["train", "--dataset", "mnist", "--data-dir", ""],
               ["train", "--out", ""]]


def test_empty_paths_are_one_line_errors(capsys, tmp_path, monkeypatch):
    """An empty file or directory path is refused (it would silently mean "not given" or the
    current directory: `canna infer --model ''` used to train a network instead)."""
    monkeypatch.chdir(tmp_path)
    for argv in EMPTY_PATHS:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and "expected a path" in err, (argv, err)
    from canna.nn import main_job
    with pytest.raises(SystemExit) as e:
        main_job.main(["--out", ""])
    assert e.value.code == 2 and "expected a path" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    print(f"empty paths: {len(EMPTY_PATHS) + 1} options refused in one line, nothing written")
