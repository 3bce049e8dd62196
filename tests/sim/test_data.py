"""``--data`` files (issue 15): every defect is one DataError naming the file and field,
before anything big is built."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.data import MAX_CLASSES, DataError, load_dataset


def good(**over):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 9, (6, 4, 4)), y_train=np.array([0, 1, 2, 0, 1, 2]),
                  x_test=rng.integers(0, 9, (3, 4, 4)), y_test=np.array([2, 1, 0]))
    arrays.update(over)
    return {k: v for k, v in arrays.items() if v is not None}


def write(tmp_path, name="d.npz", **over):
    path = tmp_path / name
    np.savez(path, **good(**over))
    return path


def refused(path, pattern):
    with pytest.raises(DataError) as info:
        load_dataset(str(path))
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and pattern in msg, msg
    return msg


def test_good_file_loads(tmp_path):
    ds = load_dataset(str(write(tmp_path)))
    assert ds.shape == (4, 4, 1) and ds.classes == ("0", "1", "2") and len(ds.y_test) == 3


@settings(max_examples=40, deadline=None, derandomize=True)
@given(label=st.sampled_from([10**12, 2**62, MAX_CLASSES, -1, -(2**40)]),
       split=st.sampled_from(["y_train", "y_test"]))
def test_huge_or_negative_labels_are_refused_at_once(tmp_path_factory, label, split):
    tmp = tmp_path_factory.mktemp("labels")
    y = good()[split].copy()
    y[0] = label
    path = write(tmp, **{split: y.astype(np.int64)})
    started = time.monotonic()
    refused(path, f"field '{split}' holds label {label}, outside 0..{MAX_CLASSES - 1}")
    assert time.monotonic() - started < 2


def test_labels_beyond_the_named_classes(tmp_path):
    path = write(tmp_path, classes=np.array(["a", "b"]))
    refused(path, "field 'y_train' holds label 2, outside 0..1")
    ok = load_dataset(str(write(tmp_path, "ok.npz", classes=np.array(["a", "b", "c"]))))
    assert ok.classes == ("a", "b", "c")
    refused(write(tmp_path, "one.npz", classes=np.array(["a"])), "field 'classes' must list 2..")


@pytest.mark.parametrize("over, pattern", [
    (dict(x_train=np.zeros((0, 4, 4)), y_train=np.zeros(0, np.int64)), "field 'x_train' holds no images"),
    (dict(x_test=np.zeros((0, 4, 4)), y_test=np.zeros(0, np.int64)), "field 'x_test' holds no images"),
    (dict(x_train=np.zeros((6, 0, 4))), "field 'x_train' has zero-size images"),
    (dict(x_test=np.zeros((3, 4, 4, 0))), "field 'x_test' has zero-size images"),
    (dict(x_train=np.array([["a"] * 4] * 6)), "field 'x_train' must hold numbers"),
    (dict(x_train=np.full((6, 4, 4), np.nan)), "field 'x_train' holds non-finite values"),
    (dict(y_test=np.array([1.0, 2.0, 0.0])), "field 'y_test' must be 3 integer labels"),
    (dict(y_test=None), "field 'y_test' is missing"),
    (dict(x_test=np.zeros((3, 5, 4))), "x_train and x_test image shapes differ"),
])
def test_bad_fields_name_the_field(tmp_path, over, pattern):
    refused(write(tmp_path, **over), pattern)


def test_not_a_data_file(tmp_path):
    (tmp_path / "t.npz").write_text("hello")
    refused(tmp_path / "t.npz", "unreadable data set")
    (tmp_path / "zip.npz").write_bytes(b"PK\x03\x04" + bytes(40))
    refused(tmp_path / "zip.npz", "unreadable data set")
    np.savez(tmp_path / "obj.npz", x_train=np.array([{"a": 1}], dtype=object))
    msg = refused(tmp_path / "obj.npz", "pickles are never loaded")
    assert "allow_pickle" not in msg
    (tmp_path / "dir.npz").mkdir()
    refused(tmp_path / "dir.npz", "not a regular file")
    os.mkfifo(tmp_path / "fifo.npz")
    refused(tmp_path / "fifo.npz", "not a regular file")
