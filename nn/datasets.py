"""Datasets for the NN driver: the embedded digits set and loaders for the paper's data files.

Every loader returns a :class:`Dataset` with float32 features, int64 labels
``0 .. n_classes-1`` and fixed train / validation / test splits. The features' scale is chosen by
``input_scale`` (:data:`INPUT_SCALES`, CLI ``--input-scale``): ``"standard"`` (the default)
standardises them with the training split's mean and standard deviation; ``"unit"`` keeps them
on the dataset's own raw scale mapped to [0, 1] -- raw pixels divided by the pixel range's
maximum for the image sets (MNIST / Fashion-MNIST ``k/255``, digits ``k/16``: one float64
division, rounded to float32 once), per-feature min-max of the training split for the others
(validation / test values may fall slightly outside [0, 1]; not clipped). The scale changes which
inputs qualify for approximation (their leading fraction bits), see docs/datasets.md.
Whatever is read from disk is validated (magic numbers, sizes,
label ranges, NaNs) and a bad file raises :class:`DatasetError` naming the file and the problem,
a damaged or truncated ``.gz`` included (:data:`READ_ERRORS`). ``digits`` reads no files: a
``data_dir`` given with it is an error.

=================  ==============================================================================
name               source
=================  ==============================================================================
``digits``         scikit-learn's bundled 8x8 digits (1797 samples, 64 features, 10 classes);
                   stratified 60/20/20 split fixed by ``split_seed``. No file or network needed.
``mnist``          IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``fashion-mnist``  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (raw or ``.gz``) in
                   ``data_dir``; validation = a seeded 1/6 of the training set (10 000 of 60 000).
                   Fashion-MNIST defaults to ``/usr/share/datasets/fashion-mnist`` when it exists.
``isolet``         UCI ``isolet1+2+3+4.data`` (train) and ``isolet5.data`` (test); 617 features,
                   labels 1..26 in the last column.
``har``            UCI HAR layout: ``train/X_train.txt``, ``train/y_train.txt``,
``hapt``           ``test/X_test.txt``, ``test/y_test.txt`` (HAPT: ``Train/`` and ``Test/``);
                   561 features, labels 1..6 (HAR) or 1..12 (HAPT, the paper's 12-class setup).
``hyper``          A hyperspectral ``.mat`` cube (H x W x bands) and its ground-truth ``.mat``
                   (H x W, 0 = unlabelled), e.g. Indian Pines (corrected, 200 bands), Salinas,
                   Pavia. Pixel classification on the ``max_classes`` most populous classes
                   (paper: 9); stratified 60/20/20 split.
=================  ==============================================================================
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "DatasetError", "DATASETS", "INPUT_SCALES", "load_dataset", "load_digits",
           "load_idx", "read_idx", "load_isolet", "load_har", "load_hyper", "FASHION_DEFAULT_DIR"]

FASHION_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

#: Feature scales a loader can return (``input_scale=``, CLI ``--input-scale``).
INPUT_SCALES = ("standard", "unit")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


@dataclass
class Dataset:
    """Float32 features (scaled as ``notes["input_scale"]`` says) and int64 labels, split three ways.

    Members
    -------
    name : dataset name (``digits``, ``mnist``, ...).
    x_train, y_train, x_val, y_val, x_test, y_test : the splits.
    n_classes : number of classes; labels are ``0 .. n_classes-1``.
    source : where the data came from (a path, or "scikit-learn bundled digits").
    notes : extra facts for :meth:`summary`: always ``input_scale`` (``"standard"`` or
        ``"unit"``) and, for unit, ``unit_scaling`` (how: ``"k/255"``, ``"k/16"`` or
        ``"min-max of the training split"``); ``split_seed`` and loader-specific keys.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    source: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def summary(self) -> dict:
        return {"name": self.name, "source": self.source, "n_features": self.n_features,
                "n_classes": self.n_classes, "n_train": int(len(self.y_train)),
                "n_val": int(len(self.y_val)), "n_test": int(len(self.y_test)), **self.notes}

    def limited(self, train_limit: int | None, seed: int = 0) -> "Dataset":
        """A copy keeping a seeded random ``train_limit`` training samples (None: all)."""
        if train_limit is None or train_limit >= len(self.y_train):
            return self
        if train_limit <= 0:
            raise ValueError(f"train_limit must be positive, got {train_limit}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(self.y_train))[:train_limit])
        return Dataset(self.name, self.x_train[idx], self.y_train[idx], self.x_val, self.y_val,
                       self.x_test, self.y_test, self.n_classes, self.source,
                       {**self.notes, "train_limit": int(train_limit)})


# --------------------------------------------------------------------------------------------
# Common helpers
# --------------------------------------------------------------------------------------------

def _check_features(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DatasetError(f"{what}: expected a non-empty 2-D feature matrix, got shape {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DatasetError(f"{what}: {int(bad.sum())} NaN/infinite feature values (first in sample {row})")
    return x


def _check_labels(y, n_classes: int, what: str, *, first: int = 0) -> np.ndarray:
    """Labels as int64 ``0 .. n_classes-1``; the file stores them from ``first``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DatasetError(f"{what}: expected a 1-D label vector, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DatasetError(f"{what}: labels must be integers")
    y = y.astype(np.int64) - first
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        lo, hi = int(y.min()) + first, int(y.max()) + first
        raise DatasetError(
            f"{what}: label out of range: found {lo}..{hi}, expected {first}..{first + n_classes - 1}")
    return y


def _check_scale(input_scale) -> str:
    if input_scale not in INPUT_SCALES:
        raise ValueError(f"--input-scale must be one of {', '.join(INPUT_SCALES)}, got {input_scale!r}")
    return input_scale


def _standardise(x_train, *others):
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return [((x - mean) / std).astype(np.float32) for x in (x_train, *others)]


MIN_MAX = "min-max of the training split"


def _to_unit(x_train, *others, value_range=None):
    """Features in [0, 1] as float32 and a note saying how. ``value_range = (lo, hi, how)``: the
    known range of the features as given (e.g. ``(0, 16, "k/16")``), mapped by one float64
    ``(x - lo) / (hi - lo)`` rounded to float32 once. None: per-feature min-max of ``x_train``
    (float64, then float32 once); a feature constant in training is 0 in every split, and
    validation / test values outside the training range fall outside [0, 1] (not clipped)."""
    if value_range is not None:
        lo, hi, how = value_range
        for x in (x_train, *others):
            if x.size and (x.min() < lo or x.max() > hi):
                raise DatasetError(f"feature values {x.min():g}..{x.max():g} outside the known range {lo:g}..{hi:g}")
        return [((x - lo) / (hi - lo)).astype(np.float32) for x in (x_train, *others)], how
    lo = x_train.min(axis=0)
    span = x_train.max(axis=0) - lo
    const = span == 0
    span = np.where(const, 1.0, span)
    out = []
    for x in (x_train, *others):
        u = ((x - lo) / span).astype(np.float32)
        u[:, const] = 0.0
        if not np.all(np.isfinite(u)):
            col = int(np.argwhere(~np.isfinite(u))[0][1])
            raise DatasetError(f"feature {col}: min-max scaling overflows float32 (training range {span[col]:g})")
        out.append(u)
    return out, MIN_MAX


def _stratified_split(x, y, fractions, seed: int):
    """Split into len(fractions) parts, stratified by class, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fractions]
    cum = np.cumsum(fractions) / np.sum(fractions)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        bounds = np.round(cum * len(idx)).astype(int)
        start = 0
        for p, stop in enumerate(bounds):
            parts[p].append(idx[start:stop])
            start = stop
    out = []
    for p in parts:
        idx = np.sort(np.concatenate(p))
        out.append((x[idx], y[idx]))
    return out


def _holdout(x, y, fraction: float, seed: int):
    """(train, val) with a seeded ``fraction`` of the samples as validation."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    n_val = int(round(fraction * len(y)))
    val, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return x[tr], y[tr], x[val], y[val]


def _make(name, x_tr, y_tr, x_va, y_va, x_te, y_te, n_classes, source, *,
          input_scale: str = "standard", value_range=None, **notes) -> Dataset:
    """The :class:`Dataset`, features scaled per ``input_scale``; ``value_range = (lo, hi, how)``
    is the features' known range (used by ``"unit"``; None: min-max of the training split)."""
    if _check_scale(input_scale) == "standard":
        x_tr, x_va, x_te = _standardise(x_tr, x_va, x_te)
        scale_notes = {"input_scale": "standard"}
    else:
        try:
            (x_tr, x_va, x_te), how = _to_unit(x_tr, x_va, x_te, value_range=value_range)
        except DatasetError as e:
            raise DatasetError(f"{name} (--input-scale unit): {e}") from None
        scale_notes = {"input_scale": "unit", "unit_scaling": how}
    for what, yy in (("training", y_tr), ("validation", y_va), ("test", y_te)):
        if len(yy) == 0:
            raise DatasetError(f"{name}: the {what} split is empty")
    return Dataset(name, x_tr, y_tr.astype(np.int64), x_va, y_va.astype(np.int64), x_te,
                   y_te.astype(np.int64), int(n_classes), str(source), {**scale_notes, **notes})


def _find(data_dir: Path, names: list[str], what: str) -> Path:
    """The first of ``names`` (each also tried with ``.gz``) that exists in ``data_dir``."""
    for n in names:
        for cand in (data_dir / n, data_dir / (n + ".gz")):
            if cand.is_file():
                return cand
    raise DatasetError(f"{what}: none of {', '.join(names)} (or .gz) found in {data_dir}")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


#: What reading a damaged file raises: I/O and gzip header / CRC errors (OSError), a truncated
#: gzip stream (EOFError), a damaged deflate block (zlib.error), undecodable text.
READ_ERRORS = (OSError, EOFError, zlib.error, UnicodeDecodeError)


def _cannot_read(path: Path, e: BaseException) -> DatasetError:
    gz = path.suffix == ".gz" and not isinstance(e, FileNotFoundError)
    hint = " (damaged or truncated gzip file?)" if gz else ""
    return DatasetError(f"{path}: cannot read{hint}: {' '.join(str(e).split()) or type(e).__name__}")


def _data_dir(data_dir, name: str) -> Path:
    if data_dir is None:
        raise DatasetError(f"{name}: --data-dir is required (the directory holding the data files)")
    p = Path(data_dir)
    if not p.is_dir():
        raise DatasetError(f"{name}: data directory {p} does not exist")
    return p


# --------------------------------------------------------------------------------------------
# digits (embedded)
# --------------------------------------------------------------------------------------------

def load_digits(*, split_seed: int = 0, input_scale: str = "standard") -> Dataset:
    """scikit-learn's bundled 8x8 digits (pixels 0..16), stratified 60/20/20 split fixed by
    ``split_seed``; ``input_scale="unit"``: pixels k/16."""
    _check_scale(input_scale)
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x = _check_features(d.data, "digits")
    y = _check_labels(d.target, 10, "digits")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _stratified_split(x, y, (0.6, 0.2, 0.2), split_seed)
    return _make("digits", x_tr, y_tr, x_va, y_va, x_te, y_te, 10,
                 "scikit-learn bundled digits (8x8)", input_scale=input_scale,
                 value_range=(0.0, 16.0, "k/16"), split_seed=split_seed)


# --------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX)
# --------------------------------------------------------------------------------------------

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


def read_idx(path, expected_magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (raw or gzipped), checking magic number and size."""
    path = Path(path)
    try:
        with _open(path) as fh:
            data = fh.read()
    except READ_ERRORS as e:
        raise _cannot_read(path, e) from None
    if len(data) < 4:
        raise DatasetError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expected_magic:
        raise DatasetError(f"{path}: bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    n = int(np.prod(dims))
    if len(data) - header != n:
        raise DatasetError(
            f"{path}: size mismatch: header says {'x'.join(map(str, dims))} = {n} bytes of data, "
            f"file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(data_dir, *, name: str = "mnist", split_seed: int = 0,
             val_fraction: float = 1 / 6, input_scale: str = "standard") -> Dataset:
    """MNIST-format IDX files in ``data_dir``; pixels k/255 (one float64 division), then
    standardised (``input_scale="standard"``) or rounded to float32 as they are (``"unit"``)."""
    _check_scale(input_scale)
    d = _data_dir(data_dir, name)
    parts = {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        ip = _find(d, [f"{stem}-images-idx3-ubyte", f"{stem}-images.idx3-ubyte"], f"{name} {split} images")
        lp = _find(d, [f"{stem}-labels-idx1-ubyte", f"{stem}-labels.idx1-ubyte"], f"{name} {split} labels")
        images = read_idx(ip, IDX_IMAGES_MAGIC)
        if images.shape[0] == 0 or images[0].size == 0:
            raise DatasetError(f"{ip}: no images (its header says {'x'.join(map(str, images.shape))})")
        labels = read_idx(lp, IDX_LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise DatasetError(f"{ip}: {images.shape[0]} images but {lp} holds {labels.shape[0]} labels")
        x = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
        y = _check_labels(labels, 10, str(lp))
        parts[split] = (x, y)
    if parts["train"][0].shape[1] != parts["test"][0].shape[1]:
        raise DatasetError(f"{name}: train images are {parts['train'][0].shape[1]} pixels, "
                           f"test images {parts['test'][0].shape[1]}")
    x_tr, y_tr, x_va, y_va = _holdout(*parts["train"], val_fraction, split_seed)
    # x is already k/255 in float64; (x - 0) / 1 leaves it exact, so "unit" rounds it to float32 once.
    return _make(name, x_tr, y_tr, x_va, y_va, *parts["test"], 10, d, input_scale=input_scale,
                 value_range=(0.0, 1.0, "k/255"), split_seed=split_seed)


# --------------------------------------------------------------------------------------------
# ISOLET
# --------------------------------------------------------------------------------------------

def _read_table(path: Path, delimiter, n_cols: int | None, what: str) -> np.ndarray:
    rows = []
    try:
        with _open(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.decode("ascii", errors="replace").strip()
                if not line:
                    continue
                fields = line.split(delimiter) if delimiter else line.split()
                try:
                    if any("_" in f for f in fields):   # float() takes "1_000"; a data file does not
                        raise ValueError
                    vals = [float(f) for f in fields]
                except ValueError:
                    raise DatasetError(f"{path}:{lineno}: non-numeric field in {what}") from None
                if n_cols is not None and len(vals) != n_cols:
                    raise DatasetError(f"{path}:{lineno}: expected {n_cols} columns, found {len(vals)}")
                if rows and len(vals) != len(rows[0]):
                    raise DatasetError(f"{path}:{lineno}: {len(vals)} columns, earlier lines have {len(rows[0])}")
                rows.append(vals)
    except READ_ERRORS as e:
        raise _cannot_read(path, e) from None
    if not rows:
        raise DatasetError(f"{path}: no data")
    return np.array(rows, dtype=np.float64)


def load_isolet(data_dir, *, split_seed: int = 0, val_fraction: float = 0.2,
                input_scale: str = "standard") -> Dataset:
    """UCI ISOLET: 617 features and a label 1..26 per comma-separated line."""
    _check_scale(input_scale)
    d = _data_dir(data_dir, "isolet")
    tables = {}
    for split, fname in (("train", "isolet1+2+3+4.data"), ("test", "isolet5.data")):
        p = _find(d, [fname], f"isolet {split}")
        t = _read_table(p, ",", 618, "isolet")
        tables[split] = (_check_features(t[:, :-1], str(p)), _check_labels(t[:, -1], 26, str(p), first=1))
    x_tr, y_tr, x_va, y_va = _holdout(*tables["train"], val_fraction, split_seed)
    return _make("isolet", x_tr, y_tr, x_va, y_va, *tables["test"], 26, d, input_scale=input_scale,
                 split_seed=split_seed)


# --------------------------------------------------------------------------------------------
# HAR / HAPT
# --------------------------------------------------------------------------------------------

def load_har(data_dir, *, name: str = "har", split_seed: int = 0, val_fraction: float = 0.2,
             input_scale: str = "standard") -> Dataset:
    """UCI HAR (6 classes) or HAPT (12 classes): ``X_*.txt`` whitespace-separated features and
    ``y_*.txt`` labels from 1, in ``train/`` and ``test/`` (or ``Train/``/``Test/``, or flat)."""
    _check_scale(input_scale)
    d = _data_dir(data_dir, name)
    n_classes = 12 if name == "hapt" else 6
    tables = {}
    for split in ("train", "test"):
        dirs = [d / split, d / split.capitalize(), d]
        sub = next((s for s in dirs if (s / f"X_{split}.txt").is_file() or (s / f"X_{split}.txt.gz").is_file()), d)
        xp = _find(sub, [f"X_{split}.txt"], f"{name} {split} features")
        yp = _find(sub, [f"y_{split}.txt"], f"{name} {split} labels")
        x = _check_features(_read_table(xp, None, None, "features"), str(xp))
        yt = _read_table(yp, None, 1, "labels")[:, 0]
        if len(yt) != len(x):
            raise DatasetError(f"{yp}: {len(yt)} labels but {xp} holds {len(x)} samples")
        tables[split] = (x, _check_labels(yt, n_classes, str(yp), first=1))
    if tables["train"][0].shape[1] != tables["test"][0].shape[1]:
        raise DatasetError(f"{name}: train has {tables['train'][0].shape[1]} features, "
                           f"test {tables['test'][0].shape[1]}")
    x_tr, y_tr, x_va, y_va = _holdout(*tables["train"], val_fraction, split_seed)
    return _make(name, x_tr, y_tr, x_va, y_va, *tables["test"], n_classes, d, input_scale=input_scale,
                 split_seed=split_seed)


# --------------------------------------------------------------------------------------------
# Hyperspectral scene
# --------------------------------------------------------------------------------------------

def _load_mat_arrays(path: Path) -> dict:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError
    try:
        m = loadmat(path)
    except NotImplementedError:
        raise DatasetError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; re-save with -v7") from None
    except (*READ_ERRORS, MatReadError, ValueError, TypeError, KeyError, IndexError) as e:
        raise DatasetError(f"{path}: not a readable .mat file: {' '.join(str(e).split())}") from None
    return {k: v for k, v in m.items() if not k.startswith("__") and isinstance(v, np.ndarray)}


def load_hyper(data_dir, *, split_seed: int = 0, max_classes: int | None = 9,
               min_class_samples: int = 5, input_scale: str = "standard") -> Dataset:
    """Pixel classification on a hyperspectral cube: ``data_dir`` holds a ``.mat`` with a 3-D
    cube (H x W x bands) and a ``.mat`` (file name containing ``gt``) with the H x W
    ground truth (0 = unlabelled). Keeps the ``max_classes`` most populous classes (None: all)."""
    _check_scale(input_scale)
    d = _data_dir(data_dir, "hyper")
    mats = sorted(d.glob("*.mat"))
    gt_files = [p for p in mats if "gt" in p.stem.lower()]
    cube_files = [p for p in mats if "gt" not in p.stem.lower()]
    if not gt_files or not cube_files:
        raise DatasetError(f"hyper: need a cube .mat and a ground-truth .mat (name containing 'gt') in {d}; "
                           f"found {[p.name for p in mats]}")
    if len(cube_files) > 1 or len(gt_files) > 1:
        raise DatasetError(f"hyper: several candidate .mat files in {d}: {[p.name for p in mats]}; keep one scene")
    cube_p, gt_p = cube_files[0], gt_files[0]
    cubes = [v for v in _load_mat_arrays(cube_p).values() if v.ndim == 3]
    gts = [v for v in _load_mat_arrays(gt_p).values() if v.ndim == 2]
    if len(cubes) != 1:
        raise DatasetError(f"{cube_p}: expected exactly one 3-D array (H x W x bands), found {len(cubes)}")
    if len(gts) != 1:
        raise DatasetError(f"{gt_p}: expected exactly one 2-D ground-truth array, found {len(gts)}")
    cube, gt = cubes[0], gts[0]
    if cube.shape[:2] != gt.shape:
        raise DatasetError(f"hyper: cube is {cube.shape[0]}x{cube.shape[1]} pixels, ground truth {gt.shape[0]}x{gt.shape[1]}")
    if gt.dtype.kind == "f" and np.any(gt != np.round(gt)):
        raise DatasetError(f"{gt_p}: ground-truth labels must be integers")
    gt = gt.astype(np.int64)
    if gt.min() < 0:
        raise DatasetError(f"{gt_p}: negative label {int(gt.min())}")
    x = _check_features(cube.reshape(-1, cube.shape[2]), str(cube_p))
    labels = gt.reshape(-1)
    classes, counts = np.unique(labels[labels > 0], return_counts=True)
    keep = classes[counts >= min_class_samples]
    if max_classes is not None:
        order = np.argsort(-counts[counts >= min_class_samples], kind="stable")
        keep = np.sort(keep[order][:max_classes])
    if len(keep) < 2:
        raise DatasetError(f"{gt_p}: fewer than 2 classes with >= {min_class_samples} labelled pixels")
    mask = np.isin(labels, keep)
    x, y = x[mask], np.searchsorted(keep, labels[mask])
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _stratified_split(x, y, (0.6, 0.2, 0.2), split_seed)
    return _make("hyper", x_tr, y_tr, x_va, y_va, x_te, y_te, len(keep), d, input_scale=input_scale,
                 split_seed=split_seed,
                 bands=int(cube.shape[2]), original_classes=[int(c) for c in keep])


# --------------------------------------------------------------------------------------------

DATASETS = ("digits", "mnist", "fashion-mnist", "isolet", "har", "hapt", "hyper")


def load_dataset(name: str, data_dir=None, *, split_seed: int = 0, max_classes: int | None = 9,
                 input_scale: str = "standard") -> Dataset:
    """Load dataset ``name`` (see the module docstring); ``data_dir`` for all but digits;
    ``input_scale`` one of :data:`INPUT_SCALES`."""
    _check_scale(input_scale)
    kw = dict(split_seed=split_seed, input_scale=input_scale)
    if name == "digits":
        if data_dir is not None:
            raise DatasetError("--data-dir: the digits dataset is embedded and reads no files; "
                               "drop --data-dir or choose another --dataset")
        return load_digits(**kw)
    if name == "mnist":
        return load_idx(data_dir, name="mnist", **kw)
    if name == "fashion-mnist":
        if data_dir is None and os.path.isdir(FASHION_DEFAULT_DIR):
            data_dir = FASHION_DEFAULT_DIR
        return load_idx(data_dir, name="fashion-mnist", **kw)
    if name == "isolet":
        return load_isolet(data_dir, **kw)
    if name in ("har", "hapt"):
        return load_har(data_dir, name=name, **kw)
    if name == "hyper":
        return load_hyper(data_dir, max_classes=max_classes, **kw)
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
