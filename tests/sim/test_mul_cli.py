"""`canna mul`: TestFloat-format vectors in, results and a checked summary out."""
import numpy as np
import pytest

from canna.cli import main
from canna.sim import golden, softfloat_ref
from canna.spec.config import CFPUConfig
from canna.sim.vectors import pattern_cross


def write_vectors(path, a, b, r=None, f=None):
    with open(path, "w") as fh:
        for i in range(a.size):
            fields = [f"{a[i]:08X}", f"{b[i]:08X}"]
            if r is not None:
                fields.append(f"{r[i]:08X}")
            if f is not None:
                fields.append(f"{f[i]:02X}")
            fh.write(" ".join(fields) + "\n")


def parse_output(text):
    rows = [line.split() for line in text.splitlines()]
    assert all(len(r) == 5 for r in rows)
    return rows


def test_checks_softfloat_results_and_writes_every_line(tmp_path, capsys):
    a, b = pattern_cross()
    a, b = a[::5], b[::5]
    r, f = softfloat_ref.f32_mul(a, b)
    path = tmp_path / "vec.txt"
    write_vectors(path, a, b, r, f)
    assert main(["mul", str(path)]) == 0
    out, err = capsys.readouterr()
    rows = parse_output(out)
    assert len(rows) == a.size
    assert f"{a.size} checked, 0 mismatches" in err
    print(f"canna mul checked {a.size} SoftFloat vectors")


def test_mismatch_exits_1_and_names_the_vector(tmp_path, capsys):
    a = np.uint32([0x3F800000, 0x40000000])
    b = np.uint32([0x40000000, 0x40000000])
    path = tmp_path / "vec.txt"
    write_vectors(path, a, b, np.uint32([0x40000000, 0x40800001]), np.uint8([0, 0]))
    assert main(["mul", str(path)]) == 1
    err = capsys.readouterr().err
    assert "1 mismatches" in err and "40000000 * 40000000" in err and "expected 40800001" in err


def test_nan_matching(tmp_path, capsys):
    path = tmp_path / "vec.txt"
    path.write_text("7F800000 00000000 7FC00001 10\n")   # inf * 0: invalid, any NaN
    assert main(["mul", str(path)]) == 0
    assert main(["mul", "--check-nans", str(path)]) == 1
    capsys.readouterr()


def test_approximate_mode_hit_column(tmp_path, capsys):
    rng = np.random.default_rng(0)
    a = rng.integers(0x3E000000, 0x41000000, 2000, dtype=np.uint32)
    b = rng.integers(0x3E000000, 0x41000000, 2000, dtype=np.uint32)
    path = tmp_path / "vec.txt"
    write_vectors(path, a, b)
    assert main(["mul", "--tuning-bits", "2", "--policy", "dual", str(path)]) == 0
    rows = parse_output(capsys.readouterr().out)
    ref = golden.mul_bits(a, b, CFPUConfig.approx(2, "dual"))
    assert [int(r[4]) for r in rows] == ref.hit.astype(int).tolist()
    assert [int(r[2], 16) for r in rows] == ref.bits.tolist()
    assert ref.hit.any()
    print(f"hit column checked on {a.size} vectors")


@pytest.mark.parametrize("content, args, message", [
    ("3F80000 40000000\n", [], "exactly 8 hex digits"),
    ("3F800000\n", [], "expected 2 to 4 hex fields"),
    ("3F800000 4000000G\n", [], "not hexadecimal"),
    ("3F800000 40000000 40000000 00 1 2\n", [], "expected 2 to 4 hex fields"),
    ("3F800000 40000000 40000000 FF\n", [], "flags"),
    ("3F800000 40000000\n", ["--tuning-bits", "23"], "tuning_bits must be in 0..22"),
    ("3F800000 40000000\n", ["--tuning-bits", "3", "--policy", "a"], "unknown policy"),
    ("3F800000 40000000\n", ["--backend", "nope"], "unknown backend"),
    ("3F800000 40000000\n", ["--max-mismatches", "-1"], "--max-mismatches must be >= 0"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, content, args, message):
    path = tmp_path / "vec.txt"
    path.write_text(content)
    assert main(["mul", *args, str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_missing_file(capsys):
    assert main(["mul", "/nonexistent/vectors.txt"]) == 2
    assert "cannot read /nonexistent/vectors.txt" in capsys.readouterr().err


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["mul", "--tuning-bits", "x"])
    assert e.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", ["-0000001 3F800000\n", "0x3F8000 3F800000\n", "3F80_000 3F800000\n"])
def test_signs_prefixes_and_underscores_are_not_hex(tmp_path, capsys, content):
    path = tmp_path / "vec.txt"
    path.write_text(content)
    assert main(["mul", str(path)]) == 2
    assert "not hexadecimal" in capsys.readouterr().err


def test_mismatch_names_the_input_line(tmp_path, capsys):
    path = tmp_path / "vec.txt"
    path.write_text("\n\n3F800000 3F800000 40000000 00\n")
    assert main(["mul", str(path)]) == 1
    assert "mismatch line 3:" in capsys.readouterr().err


def test_unwritable_output_is_one_line(tmp_path, capsys):
    path = tmp_path / "vec.txt"
    path.write_text("3F800000 3F800000\n")
    assert main(["mul", "-o", str(tmp_path / "missing" / "out.txt"), str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0]
