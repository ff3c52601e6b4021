"""Dataset loaders: the embedded digits split and tiny files in every supported format."""
import gzip
import struct

import numpy as np
import pytest

from canna.nn.datasets import (DatasetError, load_dataset, load_digits, load_har, load_hyper,
                               load_idx, load_isolet, read_idx)


def write_idx(path, arr, magic, gz=False):
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def make_mnist(d, n_train=60, n_test=20, gz=False, rng=None):
    rng = rng or np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(d / f"{stem}-images-idx3-ubyte", rng.integers(0, 256, (n, 4, 4)), 0x803, gz)
        write_idx(d / f"{stem}-labels-idx1-ubyte", np.arange(n) % 10, 0x801, gz)


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
