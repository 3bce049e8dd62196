"""Data sets: the embedded digits set and a user's own ``.npz``. Nothing is downloaded.

Images are float64 arrays ``(N, H, W, C)`` of raw pixel values (channel-last, as in the
model file); labels are int64 class indices.

* ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (values 0..16, 10
  classes), split once and for all: stratified, 25% test, ``random_state=0``
  (1,347 train, 450 test images).
* A path to an ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (images
  ``(N, H, W)`` or ``(N, H, W, C)``) and optionally ``classes`` (strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_dataset", "DataError"]


class DataError(ValueError):
    """A data set cannot be read; the message names the file and the field."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]
    max_value: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = digits.images.astype(np.float64)[..., None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return Dataset(name="digits", x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te,
                   classes=tuple(str(k) for k in range(10)), max_value=16.0)


#: Largest label without a ``classes`` field (class names are then "0", "1", ...).
MAX_CLASSES = 1 << 16


def _npz(path: Path) -> Dataset:
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (a directory, FIFO or device); "
                        "expected an .npz data set")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as exc:      # OSError, ValueError, zipfile.BadZipFile, zlib.error, ...
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "allow_pickle" in detail:
            detail = "it holds Python objects (pickles are never loaded)"
        raise DataError(f"{path}: unreadable data set; expected an .npz with x_train, "
                        f"y_train, x_test, y_test ({detail})") from None
    for key in ("x_train", "y_train", "x_test", "y_test"):
        if key not in arrays:
            raise DataError(f"{path}: field '{key}' is missing")
    xs = []
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.dtype.kind not in "biuf":
            raise DataError(f"{path}: field '{key}' must hold numbers, not {x.dtype}")
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise DataError(f"{path}: field '{key}' must be (N, H, W) or (N, H, W, C), not {x.shape}")
        if len(x) == 0:
            raise DataError(f"{path}: field '{key}' holds no images (shape {x.shape})")
        if 0 in x.shape[1:]:
            raise DataError(f"{path}: field '{key}' has zero-size images (shape {x.shape})")
        x = x.astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise DataError(f"{path}: field '{key}' holds non-finite values")
        xs.append(x)
    if xs[0].shape[1:] != xs[1].shape[1:]:
        raise DataError(f"{path}: x_train and x_test image shapes differ")
    classes = None
    if "classes" in arrays:
        names = arrays["classes"]
        if names.ndim != 1 or len(names) < 2 or len(names) > MAX_CLASSES:
            raise DataError(f"{path}: field 'classes' must list 2..{MAX_CLASSES} class names, "
                            f"not shape {names.shape}")
        classes = tuple(str(c) for c in names)
    limit = len(classes) if classes is not None else MAX_CLASSES
    ys = []
    for key, x in (("y_train", xs[0]), ("y_test", xs[1])):
        y = arrays[key]
        if y.dtype.kind not in "iu" or y.shape != (len(x),):
            raise DataError(f"{path}: field '{key}' must be {len(x)} integer labels")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= limit:
            bad = lo if lo < 0 else hi
            hint = "" if classes is not None else " (give a 'classes' field for more)"
            raise DataError(f"{path}: field '{key}' holds label {bad}, outside 0..{limit - 1}{hint}")
        ys.append(y.astype(np.int64))
    if classes is None:
        n_classes = max(int(ys[0].max()), int(ys[1].max())) + 1
        classes = tuple(str(k) for k in range(max(2, n_classes)))
    return Dataset(name=path.stem, x_train=xs[0], y_train=ys[0], x_test=xs[1], y_test=ys[1],
                   classes=classes, max_value=float(max(xs[0].max(), xs[1].max(), 1e-9)))


def load_dataset(name: str = "digits") -> Dataset:
    """``digits`` or the path of an ``.npz`` data set."""
    if name == "digits":
        return _digits()
    path = Path(name)
    if not path.exists():
        raise DataError(f"{name}: no such data set (use 'digits' or an .npz path)")
    return _npz(path)
