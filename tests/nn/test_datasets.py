"""Dataset loaders: the embedded digits split and tiny files in every supported format."""

import numpy as np
import pytest

from fractions import Fraction

from helpers import make_mnist, write_idx

from canna.nn.datasets import (INPUT_SCALES, DatasetError, load_dataset, load_digits, load_har,
                               load_hyper, load_idx, load_isolet, read_idx)


def test_digits_split_is_fixed_and_standardised():
    a, b = load_digits(), load_digits()
    s = a.summary()
    print(f"digits: {s['n_train']} train / {s['n_val']} val / {s['n_test']} test, {s['n_features']} features")
    assert s["n_train"] + s["n_val"] + s["n_test"] == 1797
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int64
    assert np.allclose(a.x_train.mean(axis=0), 0, atol=1e-5)
    assert set(np.unique(a.y_train)) == set(range(10))
    assert not np.array_equal(load_digits(split_seed=1).y_test, a.y_test)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    make_mnist(tmp_path, gz=gz)
    d = load_idx(tmp_path)
    print(f"IDX (gz={gz}): {d.summary()}")
    assert d.n_features == 16 and d.n_classes == 10
    assert len(d.y_train) + len(d.y_val) == 60 and len(d.y_test) == 20
    assert load_dataset("fashion-mnist", tmp_path).name == "fashion-mnist"


def test_idx_errors(tmp_path):
    make_mnist(tmp_path)
    p = tmp_path / "train-labels-idx1-ubyte"
    data = bytearray(p.read_bytes())
    p.write_bytes(b"\x00\x00\x08\x02" + data[4:])
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(p, 0x801)
    p.write_bytes(bytes(data[:-3]))
    with pytest.raises(DatasetError, match="size mismatch"):
        read_idx(p, 0x801)
    write_idx(p, np.full(60, 10), 0x801)
    with pytest.raises(DatasetError, match="label out of range"):
        load_idx(tmp_path)
    write_idx(p, np.zeros(59), 0x801)
    with pytest.raises(DatasetError, match="59 labels"):
        load_idx(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="none of train-images"):
        load_idx(empty)
    with pytest.raises(DatasetError, match="does not exist"):
        load_idx(tmp_path / "nope")
    with pytest.raises(DatasetError, match="--data-dir is required"):
        load_dataset("mnist", None)
    print("IDX: bad magic, truncated data, label 10, count mismatch, missing files all rejected")


def write_isolet(path, n, rng, bad=None):
    lines = []
    for i in range(n):
        vals = [f"{v:.4f}" for v in rng.standard_normal(617)]
        label = f"{(i % 26) + 1}."
        if bad == "nan" and i == 3:
            vals[5] = "nan"
        if bad == "label" and i == 2:
            label = "27."
        if bad == "cols" and i == 1:
            vals = vals[:-1]
        lines.append(", ".join(vals + [label]))
    path.write_text("\n".join(lines) + "\n")


def test_isolet(tmp_path):
    rng = np.random.default_rng(1)
    write_isolet(tmp_path / "isolet1+2+3+4.data", 80, rng)
    write_isolet(tmp_path / "isolet5.data", 30, rng)
    d = load_isolet(tmp_path)
    print(f"ISOLET: {d.summary()}")
    assert d.n_features == 617 and d.n_classes == 26 and len(d.y_test) == 30
    for bad, msg in (("nan", "NaN"), ("label", "label out of range"), ("cols", "expected 618 columns")):
        write_isolet(tmp_path / "isolet5.data", 30, rng, bad)
        with pytest.raises(DatasetError, match=msg):
            load_isolet(tmp_path)


@pytest.mark.parametrize("name,classes,sub", [("har", 6, "train"), ("hapt", 12, "Train")])
def test_har(tmp_path, name, classes, sub):
    rng = np.random.default_rng(2)
    for split, n in (("train", 40), ("test", 15)):
        folder = tmp_path / (sub if split == "train" else sub.replace("rain", "est").replace("Tr", "T"))
        folder.mkdir(exist_ok=True)
        np.savetxt(folder / f"X_{split}.txt", rng.standard_normal((n, 561)), fmt="%.6e")
        np.savetxt(folder / f"y_{split}.txt", (np.arange(n) % classes) + 1, fmt="%d")
    d = load_har(tmp_path, name=name)
    print(f"{name}: {d.summary()}")
    assert d.n_features == 561 and d.n_classes == classes and len(d.y_test) == 15
    test_dir = [p for p in tmp_path.iterdir() if p.name.lower() == "test"][0]
    np.savetxt(test_dir / "y_test.txt", np.arange(14) % classes + 1, fmt="%d")
    with pytest.raises(DatasetError, match="14 labels"):
        load_har(tmp_path, name=name)
    np.savetxt(test_dir / "y_test.txt", np.full(15, classes + 1), fmt="%d")
    with pytest.raises(DatasetError, match="label out of range"):
        load_har(tmp_path, name=name)


def test_hyper(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(3)
    cube = rng.standard_normal((12, 10, 200)).astype(np.float32)
    gt = rng.integers(0, 12, (12, 10)).astype(np.uint8)
    savemat(tmp_path / "Indian_pines_corrected.mat", {"indian_pines_corrected": cube})
    savemat(tmp_path / "Indian_pines_gt.mat", {"indian_pines_gt": gt})
    d = load_hyper(tmp_path)
    print(f"hyper: {d.summary()}")
    assert d.n_features == 200 and d.n_classes == 9
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == int(np.isin(gt, d.notes["original_classes"]).sum())
    savemat(tmp_path / "Indian_pines_gt.mat", {"indian_pines_gt": gt[:5]})
    with pytest.raises(DatasetError, match="ground truth"):
        load_hyper(tmp_path)
    cube[0, 0, 0] = np.nan
    savemat(tmp_path / "Indian_pines_gt.mat", {"indian_pines_gt": gt})
    savemat(tmp_path / "Indian_pines_corrected.mat", {"indian_pines_corrected": cube})
    with pytest.raises(DatasetError, match="NaN"):
        load_hyper(tmp_path)


# --------------------------------------------------------------------------------------------
# input_scale
# --------------------------------------------------------------------------------------------

def _rows(*xs):
    """All rows of the splits, sorted lexicographically (a split-independent multiset)."""
    x = np.concatenate(xs)
    return x[np.lexsort(x.T[::-1])]


def _bits(x):
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def test_unit_digits_is_raw_over_16():
    from sklearn.datasets import load_digits as sk_digits
    raw = sk_digits().data
    u, s = load_digits(input_scale="unit"), load_digits()
    assert u.x_train.dtype == np.float32
    for a, b in ((u.y_train, s.y_train), (u.y_val, s.y_val), (u.y_test, s.y_test)):
        assert np.array_equal(a, b)                       # same split, only the scale differs
    got = _rows(u.x_train, u.x_val, u.x_test)
    want = _rows((raw / 16).astype(np.float32))
    assert np.array_equal(_bits(got), _bits(want))
    assert got.min() == 0.0 and got.max() == 1.0
    assert np.array_equal(got * 16, np.round(got * 16))   # k/16 is exact in binary
    # standard == today's standardisation of the raw pixels (recovered exactly from unit * 16)
    tr = u.x_train.astype(np.float64) * 16
    mean, std = tr.mean(axis=0), tr.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    for xu, xs in ((u.x_train, s.x_train), (u.x_val, s.x_val), (u.x_test, s.x_test)):
        assert np.array_equal(_bits(((xu.astype(np.float64) * 16 - mean) / std).astype(np.float32)), _bits(xs))
    assert u.summary()["input_scale"] == "unit" and u.summary()["unit_scaling"] == "k/16"
    assert s.summary()["input_scale"] == "standard" and "unit_scaling" not in s.summary()
    print(f"unit digits: {got.size} values == raw/16 in float32 bit for bit, in [0, 1]; "
          f"standard == standardised raw for {s.x_train.size + s.x_val.size + s.x_test.size} values")


def _nearest_f32(k: int, n: int) -> bool:
    """float32(k/n via float64) is the float32 nearest to the exact k/n."""
    f = np.float32(k / n)
    exact = Fraction(k, n)
    err = abs(Fraction(float(f)) - exact)
    return all(err <= abs(Fraction(float(np.nextafter(f, d))) - exact) for d in (np.float32(-1), np.float32(2)))


def test_unit_idx_is_k_over_255(tmp_path):
    rng = np.random.default_rng(4)
    make_mnist(tmp_path, n_train=60, n_test=16, rng=rng)
    test_images = np.arange(256).reshape(16, 4, 4)       # every pixel value once, in order
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test_images, 0x803)
    u = load_dataset("mnist", tmp_path, input_scale="unit")
    want = (test_images.reshape(16, 16).astype(np.float64) / 255).astype(np.float32)
    assert u.x_test.dtype == np.float32
    assert np.array_equal(_bits(u.x_test), _bits(want))
    assert u.x_test[0, 0] == 0.0 and u.x_test[-1, -1] == 1.0
    assert all(_nearest_f32(k, 255) for k in range(256))   # float64 then float32 is correctly rounded
    train = read_idx(tmp_path / "train-images-idx3-ubyte", 0x803).reshape(60, 16)
    assert np.array_equal(_bits(_rows(u.x_train, u.x_val)),
                          _bits(_rows((train.astype(np.float64) / 255).astype(np.float32))))
    s = load_idx(tmp_path)
    assert np.array_equal(s.y_train, u.y_train) and np.array_equal(s.y_test, u.y_test)
    assert abs(float(s.x_train.mean())) < 1e-5                  # standard is still standardised
    assert u.summary()["input_scale"] == "unit" and u.summary()["unit_scaling"] == "k/255"
    f = load_dataset("fashion-mnist", tmp_path, input_scale="unit")
    assert f.name == "fashion-mnist" and np.array_equal(_bits(f.x_test), _bits(want))
    print(f"unit IDX: 256 pixel values k/255 bit for bit (correctly rounded), "
          f"{u.x_train.size + u.x_val.size} train/val values")


def _check_min_max(d, x_train_raw, const):
    """Unit features of ``d``: the training split spans [0, 1] per feature, constants are 0."""
    assert d.x_train.dtype == np.float32
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    varying = np.setdiff1d(np.arange(d.n_features), const)
    assert np.all(d.x_train[:, varying].min(axis=0) == 0) and np.all(d.x_train[:, varying].max(axis=0) == 1)
    for x in (d.x_train, d.x_val, d.x_test):
        assert np.all(x[:, const] == 0)
    lo, hi = x_train_raw.min(axis=0), x_train_raw.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    want = ((x_train_raw - lo) / span).astype(np.float32)
    want[:, const] = 0
    assert np.array_equal(_bits(_rows(d.x_train)), _bits(_rows(want)))
    assert d.summary()["input_scale"] == "unit"
    assert d.summary()["unit_scaling"] == "min-max of the training split"
    return int(((d.x_val < 0) | (d.x_val > 1)).sum() + ((d.x_test < 0) | (d.x_test > 1)).sum())


def test_unit_isolet_min_max(tmp_path):
    rng = np.random.default_rng(5)
    write_isolet(tmp_path / "isolet1+2+3+4.data", 80, rng)
    write_isolet(tmp_path / "isolet5.data", 30, rng)
    p = tmp_path / "isolet1+2+3+4.data"
    rows = [line.split(", ") for line in p.read_text().splitlines()]
    for r in rows:
        r[7] = "0.2500"                                   # a constant feature in training
    p.write_text("\n".join(", ".join(r) for r in rows) + "\n")
    u = load_isolet(tmp_path, input_scale="unit")
    s = load_isolet(tmp_path)
    raw = np.array([[float(v) for v in r[:-1]] for r in rows])
    # the training rows: load_isolet's seeded holdout (split seed 0, 20% validation)
    assert np.array_equal(u.y_train, s.y_train) and np.array_equal(u.y_val, s.y_val)
    tr = raw[np.sort(np.random.default_rng(0).permutation(80)[int(round(0.2 * 80)):])]
    outside = _check_min_max(u, tr, [7])
    assert outside > 0                                    # val/test are not clipped
    print(f"unit ISOLET: {u.x_train.size} train values in [0, 1], constant feature -> 0, "
          f"{outside} val/test values outside [0, 1] (not clipped)")


def test_unit_har_min_max(tmp_path):
    rng = np.random.default_rng(6)
    x = {"train": rng.standard_normal((40, 561)) * 3 + 7, "test": rng.standard_normal((15, 561)) * 3 + 7}
    x["train"][:, 0] = -1.5                                # constant in training, not in test
    for split, n in (("train", 40), ("test", 15)):
        (tmp_path / split).mkdir()
        np.savetxt(tmp_path / split / f"X_{split}.txt", x[split], fmt="%.6e")
        np.savetxt(tmp_path / split / f"y_{split}.txt", (np.arange(n) % 6) + 1, fmt="%d")
    u = load_dataset("har", tmp_path, input_scale="unit")
    raw = np.loadtxt(tmp_path / "train" / "X_train.txt")
    tr = raw[np.sort(np.random.default_rng(0).permutation(40)[int(round(0.2 * 40)):])]
    outside = _check_min_max(u, tr, [0])
    lim = u.limited(10)
    assert lim.notes["input_scale"] == "unit" and lim.summary()["unit_scaling"] == u.notes["unit_scaling"]
    assert lim.summary()["train_limit"] == 10
    print(f"unit HAR: {u.x_train.size} train values in [0, 1], constant feature -> 0 in all splits, "
          f"{outside} val/test values outside [0, 1]; limited() keeps the scale notes")


def test_unit_hyper_min_max(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(7)
    cube = (rng.integers(1000, 9000, (12, 10, 20))).astype(np.float64)
    cube[..., 3] = 4242.0
    gt = rng.integers(0, 4, (12, 10)).astype(np.uint8)
    savemat(tmp_path / "scene.mat", {"cube": cube})
    savemat(tmp_path / "scene_gt.mat", {"gt": gt})
    u = load_hyper(tmp_path, input_scale="unit")
    assert u.x_train.min() == 0.0 and u.x_train.max() == 1.0 and np.all(u.x_test[:, 3] == 0)
    assert np.all(u.x_train[:, 3] == 0)
    assert u.summary()["input_scale"] == "unit" and u.notes["bands"] == 20
    print(f"unit hyper: {u.x_train.size} train values in [0, 1], constant band -> 0")


def test_input_scale_unknown_and_default(tmp_path):
    assert INPUT_SCALES == ("standard", "unit")
    make_mnist(tmp_path)
    calls = [lambda: load_dataset("digits", input_scale="raw"), lambda: load_digits(input_scale="raw"),
             lambda: load_idx(tmp_path, input_scale="raw"), lambda: load_isolet(tmp_path, input_scale="raw"),
             lambda: load_har(tmp_path, input_scale="raw"), lambda: load_hyper(tmp_path, input_scale="raw"),
             lambda: load_dataset("mnist", tmp_path, input_scale="Unit")]
    for call in calls:
        with pytest.raises(ValueError, match=r"--input-scale must be one of standard, unit, got '(raw|Unit)'") as e:
            call()
        assert "\n" not in str(e.value) and not isinstance(e.value, DatasetError)
    a, b = load_dataset("digits"), load_dataset("digits", input_scale="standard")
    for xa, xb in ((a.x_train, b.x_train), (a.x_val, b.x_val), (a.x_test, b.x_test)):
        assert np.array_equal(_bits(xa), _bits(xb))
    s = load_idx(tmp_path)
    assert s.summary()["input_scale"] == "standard" and s.limited(5).notes["input_scale"] == "standard"
    print(f"unknown input scale rejected by {len(calls)} entry points; standard is the default")
