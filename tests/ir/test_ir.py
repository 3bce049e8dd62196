"""The model file (hdl/ir.py): round trips, weight storage, value domains, and one test
per validation rule (docs/ir.md, "Validation")."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import zipfile

import numpy as np
import pytest

from hdl import ir
from sim.random_model import LayerPlan, build_model

F = "bad.npz"  # the "file" named by validation messages of in-memory models


# --- helpers ---------------------------------------------------------------------------

def base_model() -> ir.Model:
    """conv (binary, dense, padded) -> threshold -> maxpool -> fc (ternary, CSC, bias)."""
    rng = np.random.default_rng(1)
    conv_w = ir.Weights.from_matrix(rng.choice([-1, 1], size=(4, 18)), "binary")
    thr = np.sort(rng.integers(-6, 7, size=(4, 3)), axis=1).astype(np.int64)
    fc_m = rng.integers(-1, 2, size=(3, 16))
    fc_m[0, 0], fc_m[1, 0], fc_m[2, 0] = 1, -1, 1  # column 0 full, column 1 below varies
    fc_m[:, 1] = 0
    fc_w = ir.Weights.from_matrix(fc_m, "ternary", sparse=True)
    return ir.Model(
        name="base",
        input=ir.InputSpec(shape=(5, 5, 2), bits=2, scale=0.25),
        layers=[
            ir.Conv(name="conv0", out_channels=4, kernel=3, padding=1, pad_value=0, weights=conv_w),
            ir.Threshold(name="act0", bits=2, thresholds=thr),
            ir.MaxPool(name="pool0", kernel=2),
            ir.FC(name="fc1", out_features=3, weights=fc_w, bias=np.array([1, -2, 3], np.int64)),
        ],
        classes=["a", "b", "c"],
        metadata={"note": "base"},
    ).validate()


def replace_layer(model: ir.Model, index: int, **changes) -> ir.Model:
    layers = list(model.layers)
    layers[index] = dataclasses.replace(layers[index], **changes)
    return dataclasses.replace(model, layers=layers)


def replace_weights(model: ir.Model, index: int, **changes) -> ir.Model:
    w = dataclasses.replace(model.layers[index].weights, **changes)
    return replace_layer(model, index, weights=w)


def invalid(model: ir.Model, pattern: str):
    """Validation of ``model`` as file F fails with a message matching ``pattern``."""
    with pytest.raises(ir.IRError, match="^" + re.escape(F) + ": " + pattern):
        model.validate(F)


def assert_same_model(a: ir.Model, b: ir.Model):
    assert a.name == b.name and a.classes == b.classes and a.metadata == b.metadata
    assert a.output_scale == b.output_scale
    for f in ("shape", "bits", "scale", "offset"):
        assert getattr(a.input, f) == getattr(b.input, f), f
    assert tuple(b.input.shape) == tuple(a.input.shape)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert type(la) is type(lb)
        for f in dataclasses.fields(la):
            va, vb = getattr(la, f.name), getattr(lb, f.name)
            if isinstance(va, ir.Weights):
                assert (va.kind, va.bits, tuple(va.shape)) == (vb.kind, vb.bits, tuple(vb.shape))
                for name in ("dense", "values", "rows", "colptr"):
                    xa, xb = getattr(va, name), getattr(vb, name)
                    assert (xa is None) == (xb is None), name
                    if xa is not None:
                        assert xa.dtype == xb.dtype and xa.shape == xb.shape, name
                        assert np.array_equal(xa, xb), name
            elif isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                assert va.dtype == vb.dtype and np.array_equal(va, vb), f.name
            else:
                assert va == vb, f.name


def file_parts(path):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("header").tobytes())
    return header, arrays


def write_file(path, header: dict, arrays: dict, *, rehash: bool = True, raw=None):
    """Write a model file from parts; with ``rehash`` the sha256 is made valid again.

    ``raw`` = (old, new) replaces text in the JSON (for numbers json.dumps cannot write).
    """
    header = dict(header)
    old_hash = header.pop("sha256", None)
    text = json.dumps(dict(header, sha256="@HASH@"))
    if raw:
        text = text.replace(*raw)
    if rehash:
        parsed = json.loads(text)
        parsed.pop("sha256")
        text = text.replace("@HASH@", ir._content_hash(parsed, arrays))
    else:
        text = text.replace('"@HASH@"', json.dumps(old_hash))
    blob = np.frombuffer(text.encode(), dtype=np.uint8)
    np.savez(path, header=blob, **arrays)
    return path


@pytest.fixture
def saved(tmp_path):
    model = base_model()
    path = ir.save(model, tmp_path / "m.npz")
    return path


def edited(saved, header_edit=None, arrays_edit=None, *, rehash=True, raw=None):
    header, arrays = file_parts(saved)
    if header_edit:
        header_edit(header)
    if arrays_edit:
        arrays_edit(arrays)
    return write_file(saved.parent / "edited.npz", header, arrays, rehash=rehash, raw=raw)


def load_fails(path, pattern):
    with pytest.raises(ir.IRError, match="^" + re.escape(str(path)) + ": " + pattern):
        ir.load(path)


# --- round trip ------------------------------------------------------------------------

ROUND_TRIP_PLANS = {
    "binary-dense-w1a1": [LayerPlan(op="conv", out=4, act_bits=1, pool=2),
                          LayerPlan(op="fc", out=3, act_bits=None)],
    "binary-csc-a2": [LayerPlan(op="conv", out=4, act_bits=2, density=0.5, padding=1, pad_value=1),
                      LayerPlan(op="fc", out=3, act_bits=None, density=0.4)],
    "ternary": [LayerPlan(op="conv", out=3, kind="ternary", kernel=2, stride=2, act_bits=4),
                LayerPlan(op="fc", out=3, kind="ternary", density=0.3, act_bits=None, bias=True)],
    "int2-int8": [LayerPlan(op="conv", out=3, kind="int", wbits=2, act_bits=8, bias=True),
                  LayerPlan(op="fc", out=3, kind="int", wbits=8, act_bits=None, bias=True)],
    "int5-csc": [LayerPlan(op="fc", out=6, kind="int", wbits=5, density=0.5, act_bits=3),
                 LayerPlan(op="fc", out=3, kind="int", wbits=3, act_bits=None)],
    "pot4": [LayerPlan(op="conv", out=4, kind="pot", wbits=4, act_bits=2, pool=2),
             LayerPlan(op="fc", out=3, kind="pot", wbits=4, density=0.5, act_bits=None, bias=True)],
    "pot5": [LayerPlan(op="conv", out=4, kind="pot", wbits=5, density=0.6, act_bits=1, padding=1),
             LayerPlan(op="fc", out=3, kind="pot", wbits=5, act_bits=None)],
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP_PLANS))
@pytest.mark.parametrize("input_bits", [1, 8, 16])
def test_round_trip(tmp_path, name, input_bits):
    model = build_model(ROUND_TRIP_PLANS[name], input_shape=(6, 6, 2), input_bits=input_bits,
                        seed=3, name=name, input_scale=0.5)
    model = dataclasses.replace(model, output_scale=0.125, metadata={"a": [1, 2.5, "x"], "b": {"c": None}})
    path = ir.save(model, tmp_path / "m.npz")
    loaded = ir.load(path)
    assert_same_model(model, loaded)
    assert loaded.specs() == model.specs()


def test_round_trip_every_op_and_option(tmp_path):
    """Base model plus a maxpool with explicit stride and a conv after the pool."""
    m = base_model()
    rng = np.random.default_rng(0)
    conv2 = ir.Conv(name="conv2", out_channels=2, kernel=1, stride=1, padding=0, pad_value=0,
                    weights=ir.Weights.from_matrix(rng.integers(-8, 8, (2, 4)), "int", 4),
                    bias=np.array([5, -5], np.int64))
    layers = list(m.layers[:3]) + [
        ir.MaxPool(name="pool1", kernel=2, stride=1),  # (2,2,4) -> (1,1,4)
        conv2,
    ]
    m2 = dataclasses.replace(m, layers=layers, classes=["x", "y"]).validate()
    assert_same_model(m2, ir.load(ir.save(m2, tmp_path / "m.npz")))
    assert_same_model(m, ir.load(ir.save(m, tmp_path)))  # a directory gets model.npz
    assert (tmp_path / "model.npz").exists() and ir.model_path(tmp_path) == tmp_path / "model.npz"


def test_save_accepts_numpy_scalars(tmp_path):
    m = replace_layer(base_model(), 0, kernel=np.int64(3), padding=np.int32(1))
    loaded = ir.load(ir.save(m, tmp_path / "m.npz"))
    assert loaded.layers[0].kernel == 3 and type(loaded.layers[0].kernel) is int


def test_file_container(saved):
    """Uncompressed zip of .npy members: header (uint8 JSON) and L{i}.field arrays."""
    with zipfile.ZipFile(saved) as zf:
        infos = zf.infolist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
        names = sorted(i.filename for i in infos)
    assert names == sorted(["header.npy", "L0.weights.dense.npy", "L1.thresholds.npy",
                            "L3.weights.values.npy", "L3.weights.rows.npy",
                            "L3.weights.colptr.npy", "L3.bias.npy"])
    with np.load(saved, allow_pickle=False) as z:
        assert z["header"].dtype == np.uint8 and z["header"].ndim == 1
        header = json.loads(z["header"].tobytes().decode("utf-8"))
    assert header["format"] == "qnn-fpga-model" and header["version"] == ir.FORMAT_VERSION == 1
    assert set(header) == {"format", "version", "name", "input", "classes", "output_scale",
                           "metadata", "layers", "sha256"}
    assert header["layers"][2] == {"op": "maxpool", "name": "pool0", "kernel": 2, "stride": 0}
    assert header["layers"][3]["weights"] == {"kind": "ternary", "bits": 2, "shape": [3, 16],
                                              "format": "csc"}


def test_content_hash_as_documented(saved):
    """Recompute the SHA-256 from the rule in docs/ir.md, independently of ir._content_hash."""
    header, arrays = file_parts(saved)
    stored = header.pop("sha256")
    h = hashlib.sha256(json.dumps(header, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=True).encode("ascii"))
    for name in sorted(arrays):
        a = arrays[name]
        shape = "(" + "".join(f"{d}, " for d in a.shape)[:-2] + ("," if a.ndim == 1 else "") + ")"
        h.update(b"\0" + name.encode() + b"\0" + a.dtype.str.encode() + b"\0" + shape.encode() + b"\0")
        h.update(np.ascontiguousarray(a).tobytes())
    assert h.hexdigest() == stored
    # The hash is of the parsed header: re-serialising the JSON differently changes nothing.
    blob_header = dict(header, sha256=stored)
    blob = np.frombuffer(json.dumps(blob_header, indent=3).encode(), dtype=np.uint8)
    np.savez(saved, header=blob, **arrays)
    assert_same_model(base_model(), ir.load(saved))


# --- weights ---------------------------------------------------------------------------

def random_matrix(rng, kind, bits, shape, density):
    if kind == "binary":
        m = rng.choice([-1, 1], size=shape)
    elif kind == "ternary":
        m = rng.integers(-1, 2, size=shape)
    elif kind == "int":
        m = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape)
    else:
        emax = (1 << (bits - 1)) - 2
        m = rng.choice([-1, 1], size=shape) << rng.integers(0, emax + 1, size=shape)
    return np.where(rng.random(shape) < density, m, 0)


KINDS = [("binary", 1), ("ternary", 2), ("int", 2), ("int", 4), ("int", 8), ("pot", 4), ("pot", 5)]


@pytest.mark.parametrize("kind,bits", KINDS)
@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (16, 3), (3, 40)])
def test_weights_storage_agree(kind, bits, shape):
    rng = np.random.default_rng(hash((kind, bits, shape)) % 2**32)
    for density in (0.0, 0.3, 1.0):
        m = random_matrix(rng, kind, bits, shape, density)
        csc = ir.Weights.from_matrix(m, kind, bits, sparse=True)
        assert csc.sparse and csc.dense is None
        assert np.array_equal(csc.matrix(), m) and csc.matrix().dtype == np.int64
        assert csc.nnz == np.count_nonzero(m)
        # Canonical CSC, built independently: columns in order, rows ascending.
        rows, cols = np.nonzero(m.T)[1], np.nonzero(m.T)[0]
        assert np.array_equal(csc.rows, rows) and csc.rows.dtype == np.int32
        assert np.array_equal(csc.colptr, np.searchsorted(cols, np.arange(shape[1] + 1)))
        assert csc.colptr.dtype == np.int64
        assert np.array_equal(csc.decode(csc.values), m.T[m.T != 0])
        assert csc.values.dtype == (np.uint8 if kind == "pot" else np.int8)
        dense = csc.to_dense()
        assert not dense.sparse and np.array_equal(dense.matrix(), m)
        assert dense.dense.dtype == csc.values.dtype and dense.nnz == csc.nnz
        back = dense.to_csc()
        for name in ("values", "rows", "colptr"):
            assert np.array_equal(getattr(back, name), getattr(csc, name))
        if kind == "binary" and density < 1.0:
            continue  # a dense binary matrix holds no zeros; CSC may leave entries out
        for w in (csc, dense):
            ir._check_weights("w", w, *shape)
        assert dense.value_range() == ir._weight_value_range(kind, bits)


def test_weight_value_ranges():
    assert ir.Weights.from_matrix([[1]], "binary").value_range() == (-1, 1)
    assert ir.Weights.from_matrix([[1]], "ternary").value_range() == (-1, 1)
    assert ir.Weights.from_matrix([[1]], "int", 5).value_range() == (-16, 15)
    assert ir.Weights.from_matrix([[1]], "pot", 4).value_range() == (-64, 64)
    assert ir.Weights.from_matrix([[1]], "pot", 5).value_range() == (-(1 << 14), 1 << 14)


@pytest.mark.parametrize("bits", [4, 5])
def test_pot_codes(bits):
    half = 1 << (bits - 1)
    codes = np.array([c for c in range(1 << bits) if c != half])  # half is negative zero
    values = ir.pot_decode(codes, bits)
    expected = [0] + [1 << (m - 1) for m in range(1, half)]
    expected += [0] + [-(1 << (m - 1)) for m in range(1, half)]
    expected.pop(half)  # the code `half` is left out above
    assert values.tolist() == expected
    assert len(set(values.tolist())) == len(codes)  # one code per value
    assert np.array_equal(ir.pot_encode(values, bits), codes)
    assert ir.pot_encode(values, bits).dtype == np.uint8
    assert ir.pot_decode([half], bits).tolist() == [0]  # decodes, but validation refuses it
    for bad in (3, -3, 6, 1 << (half - 1), -(1 << (half - 1)), -(1 << 63)):
        with pytest.raises(ValueError, match=f"not {bits}-bit power-of-two"):
            ir.pot_encode([bad], bits)


def test_act_values():
    assert ir.act_values([0, 1], 1).tolist() == [-1, 1]
    assert ir.act_values([0, 1, 2, 3], 2).tolist() == [0, 1, 2, 3]
    assert ir.act_values(np.array([255], np.uint8), 8).tolist() == [255]
    assert ir.act_values([0, 1], 1).dtype == np.int64


def test_input_quantize():
    spec = ir.InputSpec(shape=(1, 1, 4), bits=4, scale=15 / 16, offset=0.5)
    raw = np.array([[[[0, 8, 16, -3]]], [[[0.52, 1.6, 100, 15.99]]]])
    expect = np.clip(np.floor(raw * (15 / 16) + 0.5), 0, 15)
    codes = spec.quantize(raw)
    assert codes.dtype == np.uint8 and np.array_equal(codes, expect)
    assert codes[0].ravel().tolist() == [0, 8, 15, 0]
    wide = ir.InputSpec(shape=(1, 1, 1), bits=12, scale=1.0, offset=0.0)
    assert wide.quantize([[[[4095.9, 5000]]]]).dtype == np.uint16
    assert wide.quantize([[[[4095.9, 5000]]]]).ravel().tolist() == [4095, 4095]


# --- shapes and accumulator ranges -----------------------------------------------------

def test_specs_shapes():
    m = base_model()
    specs = m.specs()
    assert [s.shape for s in specs] == [(5, 5, 2), (5, 5, 4), (5, 5, 4), (2, 2, 4), (1, 1, 3)]
    assert [s.bits for s in specs] == [2, None, 2, 2, None]
    w = m.layers[0].weights.matrix()  # binary weights, 2-bit input values 0..3
    assert specs[1].acc_range == (3 * np.minimum(w, 0).sum(axis=1).min(), 3 * np.maximum(w, 0).sum(axis=1).max())
    f = m.layers[3].weights.matrix()
    assert specs[4].acc_range == ((3 * np.minimum(f, 0).sum(axis=1) + [1, -2, 3]).min(),
                                  (3 * np.maximum(f, 0).sum(axis=1) + [1, -2, 3]).max())


@pytest.mark.parametrize("size,kernel,stride,padding", [(7, 3, 2, 1), (8, 3, 3, 0), (5, 5, 1, 2),
                                                        (6, 2, 2, 0), (9, 4, 3, 1)])
def test_conv_output_size(size, kernel, stride, padding):
    w = ir.Weights.from_matrix(np.ones((2, kernel * kernel)), "binary")
    m = ir.Model(name="c", input=ir.InputSpec(shape=(size, size + 1, 1), bits=1, scale=1.0),
                 layers=[ir.Conv(name="c", out_channels=2, kernel=kernel, stride=stride,
                                 padding=padding, weights=w)], classes=["a", "b"])
    oh = (size + 2 * padding - kernel) // stride + 1
    ow = (size + 1 + 2 * padding - kernel) // stride + 1
    layers = m.layers
    if oh * ow * 2 != 2:
        layers = layers + (ir.Threshold(name="t", bits=1, thresholds=np.zeros((2, 1), np.int64)),
                           ir.FC(name="f", out_features=2,
                                 weights=ir.Weights.from_matrix(np.ones((2, oh * ow * 2)), "binary")))
    m = dataclasses.replace(m, layers=layers)
    assert m.specs()[1].shape == (oh, ow, 2)


@pytest.mark.parametrize("size,kernel,stride", [(5, 2, 0), (5, 3, 2), (4, 3, 1), (7, 2, 3)])
def test_maxpool_floor_mode(size, kernel, stride):
    step = stride or kernel
    o = (size - kernel) // step + 1
    m = ir.Model(name="p", input=ir.InputSpec(shape=(size, size, 1), bits=2, scale=1.0),
                 layers=[ir.MaxPool(name="p", kernel=kernel, stride=stride),
                         ir.FC(name="f", out_features=2,
                               weights=ir.Weights.from_matrix(np.ones((2, o * o)), "binary"))],
                 classes=["a", "b"])
    assert m.specs()[1] == ir.TensorSpec(shape=(o, o, 1), bits=2)


@pytest.mark.parametrize("kind,bits", KINDS)
@pytest.mark.parametrize("in_bits", [1, 2])
def test_acc_range_attained_fc(kind, bits, in_bits):
    """Brute force over every input: the bounds are the true min and max."""
    rng = np.random.default_rng(bits * 10 + in_bits)
    m = random_matrix(rng, kind, bits, (4, 4), 1.0 if kind == "binary" else 0.8)
    bias = rng.integers(-5, 6, 4).astype(np.int64)
    layer = ir.FC(name="f", out_features=4, weights=ir.Weights.from_matrix(m, kind, bits), bias=bias)
    codes = np.array(list(itertools.product(range(1 << in_bits), repeat=4)))
    acc = ir.act_values(codes, in_bits) @ m.T + bias
    lo, hi = ir.layer_acc_range(layer, in_bits)
    assert np.array_equal(lo, acc.min(axis=0)) and np.array_equal(hi, acc.max(axis=0))
    lo0, hi0 = ir.layer_acc_range(dataclasses.replace(layer, bias=None), in_bits)
    assert np.array_equal(lo0 + bias, lo) and np.array_equal(hi0 + bias, hi)


def test_acc_range_attained_conv():
    """A padded conv whose interior window is free: the bounds are attained there."""
    rng = np.random.default_rng(5)
    m = rng.integers(-2, 2, size=(3, 9 * 1))
    layer = ir.Conv(name="c", out_channels=3, kernel=3, padding=1, pad_value=1,
                    weights=ir.Weights.from_matrix(m, "int", 2))
    lo, hi = ir.layer_acc_range(layer, 2)
    # All 4**9 inputs of a 3x3 image; the centre output sees the whole image.
    codes = np.array(list(itertools.product(range(4), repeat=9)))
    acc = codes @ m.T
    assert np.array_equal(lo, acc.min(axis=0)) and np.array_equal(hi, acc.max(axis=0))


# --- validation: in-memory model rules (_check_chain, _check_weights) -------------------

def test_base_model_is_valid():
    m = base_model()
    assert m.validate(F) is m
    assert m.layer("pool0").kernel == 2
    with pytest.raises(KeyError):
        m.layer("nope")


@pytest.mark.parametrize("change,pattern", [
    (dict(name=5), "field 'name' must be a string"),
    (dict(input=None), "field 'input' is missing"),
    (dict(input=ir.InputSpec(shape=[5, 5, 2], bits=2, scale=1.0)), r"field 'input.shape' must be \(H, W, C\)"),
    (dict(input=ir.InputSpec(shape=(5, 5), bits=2, scale=1.0)), r"field 'input.shape' must be \(H, W, C\)"),
    (dict(input=ir.InputSpec(shape=(5, 0, 2), bits=2, scale=1.0)), r"field 'input.shape\[1\]' must be in 1..16384, not 0"),
    (dict(input=ir.InputSpec(shape=(5, 5, ir.MAX_DIM + 1), bits=2, scale=1.0)), r"field 'input.shape\[2\]' must be in"),
    (dict(input=ir.InputSpec(shape=(5, 5.0, 2), bits=2, scale=1.0)), r"field 'input.shape\[1\]' must be an integer"),
    (dict(input=ir.InputSpec(shape=(4096, 4096, 8), bits=2, scale=1.0)), "field 'input.shape' .* is too large"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=0, scale=1.0)), "field 'input.bits' must be in 1..16, not 0"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=17, scale=1.0)), "field 'input.bits' must be in 1..16, not 17"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=True, scale=1.0)), "field 'input.bits' must be an integer"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=2, scale=float("nan"))), "field 'input.scale' must be a finite number"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=2, scale=float("inf"))), "field 'input.scale' must be a finite number"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=2, scale=10**400)), "field 'input.scale' must be a finite number"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=2, scale="1")), "field 'input.scale' must be a finite number"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=2, scale=1.0, offset=-float("inf"))), "field 'input.offset' must be a finite number"),
    (dict(input=ir.InputSpec(shape=(5, 5, 2), bits=2, scale=1.0, offset=True)), "field 'input.offset' must be a finite number"),
    (dict(output_scale=0.0), "field 'output_scale' must be a finite positive number"),
    (dict(output_scale=-1), "field 'output_scale' must be a finite positive number"),
    (dict(output_scale=float("nan")), "field 'output_scale' must be a finite positive number"),
    (dict(output_scale=None), "field 'output_scale' must be a finite positive number"),
    (dict(layers=[]), "field 'layers' is empty"),
    (dict(classes=["a"]), "field 'classes' must list at least two class names"),
    (dict(classes=["a", "b", 3]), "field 'classes' must list at least two class names"),
    (dict(classes=["a", "b"]), "field 'classes': lists 2 classes but the last layer emits 3 scores"),
    (dict(metadata=[1]), "field 'metadata' must be a dict, not list"),
    (dict(metadata={"x": float("nan")}), "field 'metadata' is not plain JSON"),
    (dict(metadata={"x": np.int64(3)}), "field 'metadata' is not plain JSON"),
    (dict(metadata={"x": object()}), "field 'metadata' is not plain JSON"),
    (dict(metadata={1: "a", "b": 2}), "field 'metadata' is not plain JSON"),  # keys cannot be sorted
])
def test_model_rules(change, pattern):
    invalid(dataclasses.replace(base_model(), **change), pattern)


def test_layer_identity_rules():
    m = base_model()
    layers = list(m.layers)
    invalid(dataclasses.replace(m, layers=[layers[0], "act"] + layers[2:]),
            r"layer 1 'None': field 'op': unknown layer type str")
    invalid(replace_layer(m, 1, name=""), "layer 1: field 'name' must be a non-empty string")
    invalid(replace_layer(m, 1, name=7), "layer 1: field 'name' must be a non-empty string")
    invalid(replace_layer(m, 2, name="conv0"), "layer 2 'conv0': field 'name' repeats an earlier layer's name")


def test_chain_rules():
    m = base_model()
    c0, t1, p2, f3 = m.layers
    two_fc = ir.FC(name="fc2", out_features=3, weights=f3.weights)
    invalid(dataclasses.replace(m, layers=[c0, two_fc]),
            "layer 1 'fc2': field 'op': fc needs activation codes as input, but the previous layer emits accumulators")
    conv_again = dataclasses.replace(c0, name="conv1")
    invalid(dataclasses.replace(m, layers=[c0, conv_again]), "layer 1 'conv1': field 'op': conv needs activation codes")
    invalid(dataclasses.replace(m, layers=[t1, c0]),
            "layer 0 'act0': field 'op': threshold needs an accumulator input, but the previous layer emits codes")
    invalid(dataclasses.replace(m, layers=[c0, p2]),
            "layer 1 'pool0': field 'op': maxpool needs activation codes as input")
    invalid(dataclasses.replace(m, layers=[c0, t1, p2]),
            "layer 2 'pool0': field 'op': the last layer must emit integer scores")
    invalid(dataclasses.replace(m, layers=[c0, t1]),
            "layer 1 'act0': field 'op': the last layer must emit integer scores")


@pytest.mark.parametrize("index,change,pattern", [
    (0, dict(kernel=0), "field 'kernel' must be in 1..16384, not 0"),
    (0, dict(kernel=3.0), "field 'kernel' must be an integer, not float"),
    (0, dict(kernel=True), "field 'kernel' must be an integer, not bool"),
    (0, dict(kernel=7, padding=0), "field 'kernel' 7 is larger than the padded input 5x5\\+0"),
    (0, dict(stride=0), "field 'stride' must be in 1..16384, not 0"),
    (0, dict(stride="1"), "field 'stride' must be an integer, not str"),
    (0, dict(padding=3), "field 'padding' must be in 0..2, not 3"),
    (0, dict(padding=-1), "field 'padding' must be in 0..2, not -1"),
    (0, dict(pad_value=4), "field 'pad_value' must be in 0..3, not 4"),
    (0, dict(pad_value=-1), "field 'pad_value' must be in 0..3, not -1"),
    (0, dict(out_channels=0), "field 'out_channels' must be in 1..16384, not 0"),
    (0, dict(bias=np.zeros(4, np.int32)), "field 'bias' has dtype int32, expected int64"),
    (0, dict(bias=np.zeros(5, np.int64)), r"field 'bias' has shape \(5,\), expected \(4,\)"),
    (0, dict(bias=[0, 0, 0, 0]), "field 'bias' must be a NumPy array, not list"),
    (3, dict(bias=np.array([0, 1 << 40, (1 << 40) + 1], np.int64)), r"field 'bias' exceeds ±2\*\*40"),
    (3, dict(bias=np.array([0, -(1 << 63), 0], np.int64)), r"field 'bias' exceeds ±2\*\*40"),
    (3, dict(out_features=0), "field 'out_features' must be in 1..67108864, not 0"),
    (3, dict(out_features=4), r"field 'weights.shape' is \(3, 16\), expected \(4, 16\)"),
    (1, dict(bits=0), "field 'bits' must be in 1..8, not 0"),
    (1, dict(bits=9), "field 'bits' must be in 1..8, not 9"),
    (1, dict(thresholds=np.zeros((4, 3), np.int32)), "field 'thresholds' has dtype int32, expected int64"),
    (1, dict(thresholds=np.zeros((4, 7), np.int64)), r"field 'thresholds' has shape \(4, 7\), expected \(4, 3\)"),
    (1, dict(thresholds=np.zeros((3, 3), np.int64)), r"field 'thresholds' has shape \(3, 3\), expected \(4, 3\)"),
    (1, dict(thresholds=np.array([[0, 1, 2]] * 2 + [[0, 2, 1]] + [[5, 5, 5]], np.int64)),
     "field 'thresholds' is not sorted in channel 2"),
    (1, dict(thresholds=np.zeros((4, 3))), "field 'thresholds' has dtype float64, expected int64"),
    (2, dict(kernel=0), "field 'kernel' must be in 1..16384, not 0"),
    (2, dict(kernel=6), "field 'kernel' 6 is larger than the input 5x5"),
    (2, dict(stride=-1), "field 'stride' must be in 0..16384, not -1"),
    (2, dict(stride=2.0), "field 'stride' must be an integer, not float"),
])
def test_layer_field_rules(index, change, pattern):
    m = base_model()
    name = m.layers[index].name
    invalid(replace_layer(m, index, **change), f"layer {index} '{name}': {pattern}")


def test_size_limits():
    big = ir.Model(name="big", input=ir.InputSpec(shape=(1, 1, 8), bits=1, scale=1.0),
                   layers=[ir.FC(name="f", out_features=ir.MAX_ELEMENTS // 4,
                                 weights=ir.Weights(kind="binary", bits=1, shape=(1, 1),
                                                    dense=np.ones((1, 1), np.int8)))],
                   classes=["a", "b"])
    invalid(big, r"layer 0 'f': field 'weights.shape' 16777216x8 is too large")
    wide = ir.Model(name="wide", input=ir.InputSpec(shape=(8192, 8192, 1), bits=1, scale=1.0),
                    layers=[ir.Conv(name="c", out_channels=2, kernel=1,
                                    weights=ir.Weights.from_matrix([[1], [1]], "binary"))],
                    classes=["a", "b"])
    invalid(wide, r"layer 0 'c': field 'out_channels' gives an output tensor \(8192, 8192, 2\) of more than")


W = "layer 3 'fc1': "   # the CSC ternary fc
D = "layer 0 'conv0': "  # the dense binary conv


@pytest.mark.parametrize("index,change,pattern", [
    (3, None, "field 'weights' is missing"),
    (3, dict(kind="quaternary"), "field 'weights.kind' must be one of binary, ternary, int, pot, not 'quaternary'"),
    (3, dict(bits=1), "field 'weights.bits' must be in 2..2, not 1"),
    (0, dict(bits=2), "field 'weights.bits' must be in 1..1, not 2"),
    (0, dict(kind="int", bits=9), "field 'weights.bits' must be in 2..8, not 9"),
    (0, dict(kind="int", bits=1), "field 'weights.bits' must be in 2..8, not 1"),
    (0, dict(kind="pot", bits=3), "field 'weights.bits' must be in 4..5, not 3"),
    (0, dict(kind="pot", bits=6), "field 'weights.bits' must be in 4..5, not 6"),
    (0, dict(shape=(4, 17)), r"field 'weights.shape' is \(4, 17\), expected \(4, 18\)"),
    (0, dict(dense=np.ones((4, 18), np.int16)), "field 'weights.dense' has dtype int16, expected int8"),
    (0, dict(dense=np.ones((4, 18), np.uint8)), "field 'weights.dense' has dtype uint8, expected int8"),
    (0, dict(kind="pot", bits=4), "field 'weights.dense' has dtype int8, expected uint8"),
    (0, dict(dense=np.ones((18, 4), np.int8)), r"field 'weights.dense' has shape \(18, 4\), expected \(4, 18\)"),
    (0, dict(dense=[[1] * 18] * 4), "field 'weights.dense' must be a NumPy array, not list"),
    (0, dict(dense=np.full((4, 18), 2, np.int8)), "field 'weights' holds values outside -1..1 for kind binary"),
    (0, dict(dense=np.zeros((4, 18), np.int8)), r"field 'weights' holds 0 in a dense binary matrix"),
    (0, dict(kind="ternary", bits=2, dense=np.full((4, 18), -2, np.int8)),
     "field 'weights' holds values outside -1..1 for kind ternary"),
    (0, dict(kind="int", bits=3, dense=np.full((4, 18), 4, np.int8)), "field 'weights' holds values outside -4..3 for kind int"),
    (0, dict(kind="int", bits=3, dense=np.full((4, 18), -5, np.int8)), "field 'weights' holds values outside -4..3 for kind int"),
    (0, dict(kind="pot", bits=4, dense=np.full((4, 18), 8, np.uint8)), "field 'weights' holds invalid 4-bit power-of-two code 8"),
    (0, dict(kind="pot", bits=4, dense=np.full((4, 18), 16, np.uint8)), "field 'weights' holds invalid 4-bit power-of-two code 16"),
    (0, dict(kind="pot", bits=5, dense=np.full((4, 18), 16, np.uint8)), "field 'weights' holds invalid 5-bit power-of-two code 16"),
    (0, dict(kind="pot", bits=5, dense=np.full((4, 18), 32, np.uint8)), "field 'weights' holds invalid 5-bit power-of-two code 32"),
    (3, dict(rows=None), r"field 'weights.rows' is missing \(weights are neither dense nor CSC\)"),
    (3, dict(values=None), "field 'weights.values' is missing"),
    (3, dict(colptr=None), "field 'weights.colptr' is missing"),
    (3, dict(dense=np.zeros((3, 16), np.int8)), r"field 'weights' holds both a dense matrix and CSC arrays"),
])
def test_weight_rules(index, change, pattern):
    m = base_model()
    where = W if index == 3 else D
    if change is None:
        bad = replace_layer(m, index, weights=None)
    else:
        bad = replace_weights(m, index, **change)
    invalid(bad, where + pattern)


def csc_case(values=None, rows=None, colptr=None, kind="ternary", bits=2):
    """The fc1 weights of base_model (3 x 16) with some CSC arrays replaced."""
    w = base_model().layers[3].weights
    changes = {k: v for k, v in dict(values=values, rows=rows, colptr=colptr).items() if v is not None}
    return replace_weights(base_model(), 3, kind=kind, bits=bits, **changes), w


def test_csc_rules():
    m, w = csc_case()
    nnz = w.nnz
    assert w.colptr[1] == 3 and w.colptr[2] == 3  # column 0 full (3 rows), column 1 empty
    invalid(csc_case(colptr=w.colptr.astype(np.int32))[0], W + "field 'weights.colptr' has dtype int32, expected int64")
    invalid(csc_case(colptr=w.colptr[:-1])[0], W + r"field 'weights.colptr' has shape \(16,\), expected \(17,\)")
    invalid(csc_case(values=w.values.astype(np.int16))[0], W + "field 'weights.values' has dtype int16, expected int8")
    invalid(csc_case(values=w.values[:, None])[0], W + r"field 'weights.values' has shape \(\d+, 1\), expected \(nnz,\)")
    invalid(csc_case(values=np.array(1, np.int8))[0], W + r"field 'weights.values' has shape \(\), expected \(nnz,\)")
    invalid(csc_case(values=list(w.values))[0], W + "field 'weights.values' must be a NumPy array, not list")
    invalid(csc_case(rows=w.rows.astype(np.int64))[0], W + "field 'weights.rows' has dtype int64, expected int32")
    invalid(csc_case(rows=w.rows[:-1])[0], W + rf"field 'weights.rows' has shape \({nnz - 1},\), expected \({nnz},\)")
    ptr = w.colptr.copy(); ptr[0] = 1
    invalid(csc_case(colptr=ptr)[0], W + f"field 'weights.colptr' must start at 0 and end at nnz {nnz}, not 1 and {nnz}")
    ptr = w.colptr.copy(); ptr[-1] = nnz - 1
    invalid(csc_case(colptr=ptr)[0], W + f"field 'weights.colptr' must start at 0 and end at nnz {nnz}, not 0 and {nnz - 1}")
    ptr = w.colptr.copy(); ptr[2] = 2  # 0, 3, 2, ...: column 1 decreases
    invalid(csc_case(colptr=ptr)[0], W + "field 'weights.colptr' decreases at column 1")
    ptr = w.colptr.copy(); ptr[1] = 4; ptr[2] = 4  # column 0 claims 4 entries in 3 rows
    invalid(csc_case(colptr=ptr)[0], W + "field 'weights.colptr' gives a column more than 3 entries")
    rows = w.rows.copy(); rows[-1] = 3
    invalid(csc_case(rows=rows)[0], W + r"field 'weights.rows' has an index outside 0..2")
    rows = w.rows.copy(); rows[0] = -1
    invalid(csc_case(rows=rows)[0], W + r"field 'weights.rows' has an index outside 0..2")
    rows = w.rows.copy(); rows[1] = 0  # column 0: 0, 0, 2
    invalid(csc_case(rows=rows)[0], W + "field 'weights.rows' is not strictly increasing in column 0")
    rows = w.rows.copy(); rows[:3] = [2, 1, 0]
    invalid(csc_case(rows=rows)[0], W + "field 'weights.rows' is not strictly increasing in column 0")
    vals = w.values.copy(); vals[4] = 0
    invalid(csc_case(values=vals)[0], W + r"field 'weights.values' stores an explicit zero \(CSC keeps non-zeros only\)")
    vals = w.values.copy(); vals[0] = 2
    invalid(csc_case(values=vals)[0], W + "field 'weights' holds values outside -1..1 for kind ternary")
    # pot CSC: codes are uint8; a stored code 0 is an explicit zero, code 8 negative zero
    pot_vals = ir.pot_encode(w.decode(w.values), 4)
    ok, _ = csc_case(values=pot_vals, kind="pot", bits=4)
    ok.validate(F)
    for code, msg in ((0, r"field 'weights.values' stores an explicit zero"),
                      (8, "field 'weights' holds invalid 4-bit power-of-two code 8")):
        bad = pot_vals.copy(); bad[1] = code
        invalid(csc_case(values=bad, kind="pot", bits=4)[0], W + msg)
    # binary CSC: entries not stored are 0, stored ones must be ±1
    binary, _ = csc_case(kind="binary", bits=1)
    binary.validate(F)


# --- validation: file rules (load, _from_file_dicts) -------------------------------------

def test_load_missing_and_unreadable(tmp_path):
    load_fails(tmp_path / "none.npz", "no such file")
    (tmp_path / "d").mkdir()
    load_fails(tmp_path / "d" / "model.npz", "no such file")
    load_fails(tmp_path / "d", "is a directory without model.npz$")
    (tmp_path / "d" / "model.npz").mkdir()
    # d/model.npz is a directory: named once, never as d/model.npz/model.npz
    load_fails(tmp_path / "d" / "model.npz", "is a directory without model.npz$")
    with pytest.raises(ir.IRError, match="^" + re.escape(str(tmp_path / "d" / "model.npz"))
                       + ": is a directory, not a model file$"):
        ir.load(tmp_path / "d")
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    load_fails(garbage, "not a model file: not a ZIP archive; expected an uncompressed NumPy .npz")
    empty = tmp_path / "e.npz"
    empty.write_bytes(b"")
    load_fails(empty, "not a model file: an empty file")
    single = tmp_path / "single.npz"
    with open(single, "wb") as fh:
        np.save(fh, np.arange(3))
    load_fails(single, "not a model file: a single NumPy .npy array")
    pickled = tmp_path / "p.npz"
    np.savez(pickled, header=np.array([{"a": 1}], dtype=object))
    load_fails(pickled, r"member 'header' holds Python objects \(a pickle\); refused$")


def test_load_non_zip_says_what_it_is(tmp_path):
    """A JSON file or a raw pickle: named as such, never with NumPy's allow_pickle advice."""
    import pickle
    cases = {"j.npz": (b'  {"format": "qnn-fpga-model"}', "JSON text"),
             "pk.npz": (pickle.dumps({"a": 1}), "a Python pickle"),
             "pk0.npz": (pickle.dumps([1], protocol=0), "a Python pickle"),
             "txt.npz": (b"hello", "not a ZIP archive")}
    for fname, (data, what) in cases.items():
        (tmp_path / fname).write_bytes(data)
        with pytest.raises(ir.IRError) as info:
            ir.load(tmp_path / fname)
        msg = str(info.value)
        assert msg == f"{tmp_path / fname}: not a model file: {what}" + (
            " (never loaded: pickles can run code)" if what == "a Python pickle" else "") + \
            "; expected an uncompressed NumPy .npz (ZIP) archive"
        assert "allow_pickle" not in msg


def test_load_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "f.npz"
    os.mkfifo(fifo)
    load_fails(fifo, r"is not a regular file \(a FIFO, device or socket\), not a model file$")
    (tmp_path / "m").mkdir()
    os.mkfifo(tmp_path / "m" / "model.npz")
    with pytest.raises(ir.IRError, match="is not a regular file"):
        ir.load(tmp_path / "m")


def test_load_container_rules(saved, tmp_path):
    header, arrays = file_parts(saved)
    np.savez(tmp_path / "nohdr.npz", **arrays)
    load_fails(tmp_path / "nohdr.npz", "no 'header' array: not a model file")
    extra = tmp_path / "extra.npz"
    write_file(extra, header, arrays)
    with zipfile.ZipFile(extra, "a") as zf:
        zf.writestr("notes.txt", b"hello")
    load_fails(extra, "member 'notes.txt' is not a NumPy .npy array")
    blob = json.dumps(header).encode()
    np.savez(tmp_path / "h16.npz", header=np.frombuffer(blob, np.uint8).astype(np.uint16), **arrays)
    load_fails(tmp_path / "h16.npz", "field 'header' must be a 1-D uint8 array of JSON")
    np.savez(tmp_path / "h2d.npz", header=np.frombuffer(blob, np.uint8)[None, :], **arrays)
    load_fails(tmp_path / "h2d.npz", "field 'header' must be a 1-D uint8 array of JSON")
    for name, text in (("js", b"{not json"), ("utf", b"\xff\xfe{}"), ("nan", b'{"a": NaN}'),
                       ("inf", b'{"a": -Infinity}'), ("deep", b"[" * 100000 + b"]" * 100000),
                       ("bigint", b'{"a": ' + b"9" * 5000 + b"}")):
        np.savez(tmp_path / f"{name}.npz", header=np.frombuffer(text, np.uint8), **arrays)
        load_fails(tmp_path / f"{name}.npz", r"field 'header' is not valid JSON \(")
    for name, text in (("list", b"[1, 2]"), ("str", b'"x"'), ("null", b"null")):
        np.savez(tmp_path / f"{name}.npz", header=np.frombuffer(text, np.uint8), **arrays)
        load_fails(tmp_path / f"{name}.npz", "field 'header' must be a JSON object")


@pytest.mark.parametrize("edit,pattern", [
    (lambda h: h.__setitem__("format", "other"), "field 'format' is 'other', not 'qnn-fpga-model'"),
    (lambda h: h.pop("format"), "field 'format' is None, not 'qnn-fpga-model'"),
    (lambda h: h.__setitem__("version", 2), "field 'version' is 2; this tool reads version 1"),
    (lambda h: h.__setitem__("version", True), "field 'version' is True; this tool reads version 1"),
    (lambda h: h.__setitem__("version", 1.0), "field 'version' is 1.0; this tool reads version 1"),
    (lambda h: h.__setitem__("version", "1"), "field 'version' is '1'; this tool reads version 1"),
    (lambda h: h.pop("version"), "field 'version' is None"),
])
def test_load_format_and_version(saved, edit, pattern):
    load_fails(edited(saved, edit), pattern)


def test_load_hash_and_dtypes(saved):
    load_fails(edited(saved, lambda h: h.__setitem__("name", "renamed"), rehash=False),
               "field 'sha256' does not match the content: the file is corrupted or was edited")
    load_fails(edited(saved, lambda h: h.__setitem__("sha256", None), rehash=False),
               "field 'sha256' does not match")
    load_fails(edited(saved, arrays_edit=lambda a: a["L1.thresholds"].__setitem__((0, 0), -99), rehash=False),
               "field 'sha256' does not match")
    load_fails(edited(saved, arrays_edit=lambda a: a.__setitem__("L3.bias", a["L3.bias"].astype(">i8")),
                      rehash=False), "field 'sha256' does not match")
    load_fails(edited(saved, arrays_edit=lambda a: a.__setitem__("L3.bias", a["L3.bias"].astype(float))),
               "array 'L3.bias' has dtype float64, expected an integer type")
    load_fails(edited(saved, arrays_edit=lambda a: a.__setitem__("L3.bias", a["L3.bias"].astype("U3"))),
               "array 'L3.bias' has dtype <U3, expected an integer type")
    # Integer arrays of the wrong width pass the container check, then the field rule names them.
    load_fails(edited(saved, arrays_edit=lambda a: a.__setitem__("L3.bias", a["L3.bias"].astype(np.int32))),
               "layer 3 'fc1': field 'bias' has dtype int32, expected int64")
    load_fails(edited(saved, arrays_edit=lambda a: a.__setitem__("L3.bias", a["L3.bias"].astype(">i8"))),
               "layer 3 'fc1': field 'bias' has dtype >i8, expected int64")


def test_load_wraps_unexpected_errors(saved, monkeypatch):
    def boom(*args):
        raise KeyError("surprise")
    monkeypatch.setattr(ir, "_from_file_dicts", boom)
    load_fails(saved, r"malformed header \(KeyError: 'surprise'\)")


def set_in(path, value):
    def edit(h):
        d = h
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


def drop(path):
    def edit(h):
        d = h
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return edit


L3 = "layer 3 'fc1': "


def test_header_big_numbers(saved):
    """JSON numbers that overflow float64 parse as inf: refused where they matter."""
    load_fails(edited(saved, set_in(["metadata", "x"], "@BIG@"), raw=('"@BIG@"', "1e999")),
               "field 'metadata' is not plain JSON with finite numbers")
    load_fails(edited(saved, set_in(["input", "offset"], "@BIG@"), raw=('"@BIG@"', "-1e999")),
               "field 'input.offset' must be a finite number, not -inf")
    load_fails(edited(saved, set_in(["output_scale"], "@BIG@"), raw=('"@BIG@"', "1" + "0" * 400)),
               "field 'output_scale' must be a finite positive number")


@pytest.mark.parametrize("edit,pattern", [
    (set_in(["extra"], 1), r"unknown field\(s\) extra"),
    (drop(["input"]), "field 'input' is missing"),
    (set_in(["input"], [5, 5, 2]), "field 'input' has the wrong type list"),
    (set_in(["input", "zoom"], 2), r"unknown field\(s\) input.zoom"),
    (drop(["input", "shape"]), "field 'input.shape' is missing"),
    (set_in(["input", "shape"], "5x5x2"), "field 'input.shape' has the wrong type str"),
    (set_in(["input", "shape"], [5, 5]), r"field 'input.shape' must be three integers, not \[5, 5\]"),
    (set_in(["input", "shape"], [5, 5, 2.0]), "field 'input.shape' must be three integers"),
    (set_in(["input", "shape"], [5, True, 2]), "field 'input.shape' must be three integers"),
    (set_in(["input", "shape"], [5, 5, 1 << 20]), r"field 'input.shape\[2\]' must be in 1..16384"),
    (drop(["input", "bits"]), "field 'input.bits' is missing"),
    (set_in(["input", "bits"], True), "field 'input.bits' has the wrong type bool"),
    (set_in(["input", "bits"], 2.0), "field 'input.bits' has the wrong type float"),
    (set_in(["input", "bits"], 99), "field 'input.bits' must be in 1..16, not 99"),
    (drop(["input", "scale"]), "field 'input.scale' is missing"),
    (set_in(["input", "scale"], "1"), "field 'input.scale' has the wrong type str"),
    (set_in(["input", "scale"], 10**400), "field 'input.scale' must be a finite number"),
    (set_in(["input", "offset"], None), "field 'input.offset' has the wrong type NoneType"),
    (drop(["layers"]), "field 'layers' is missing"),
    (set_in(["layers"], {}), "field 'layers' has the wrong type dict"),
    (drop(["classes"]), "field 'classes' is missing"),
    (set_in(["classes"], "abc"), "field 'classes' has the wrong type str"),
    (set_in(["classes"], ["a", "b", None]), "field 'classes' must list at least two class names"),
    (drop(["name"]), "field 'name' is missing"),
    (set_in(["name"], 3), "field 'name' has the wrong type int"),
    (drop(["output_scale"]), "field 'output_scale' is missing"),
    (set_in(["output_scale"], "2"), "field 'output_scale' has the wrong type str"),
    (set_in(["output_scale"], -2.0), "field 'output_scale' must be a finite positive number"),
    (set_in(["metadata"], [1]), "field 'metadata' must be a JSON object"),
    (set_in(["layers", 0], 5), "layer 0: field 'op' is missing"),
    (drop(["layers", 0, "op"]), "layer 0 'conv0': field 'op' is missing"),
    (set_in(["layers", 0, "op"], "deconv"), "layer 0 'conv0': field 'op' is 'deconv', expected one of conv, fc, threshold, maxpool"),
    (set_in(["layers", 0, "op"], 1), "layer 0 'conv0': field 'op' has the wrong type int"),
    (set_in(["layers", 0, "op"], "fc"), r"layer 0 'conv0': unknown field\(s\) kernel, out_channels, pad_value, padding, stride for op fc"),
    (set_in(["layers", 0, "dilation"], 2), r"layer 0 'conv0': unknown field\(s\) dilation for op conv"),
    (drop(["layers", 0, "kernel"]), "layer 0 'conv0': field 'kernel' is missing"),
    (drop(["layers", 0, "name"]), "layer 0: field 'name' is missing"),
    (set_in(["layers", 0, "name"], ""), "layer 0: field 'name' must be a non-empty string"),
    (set_in(["layers", 0, "name"], None), "layer 0: field 'name' must be a non-empty string"),
    (set_in(["layers", 2, "name"], "act0"), "layer 2 'act0': field 'name' repeats an earlier layer's name"),
    (set_in(["layers", 0, "kernel"], 3.0), "layer 0 'conv0': field 'kernel' must be an integer, not float"),
    (set_in(["layers", 0, "kernel"], [3]), "layer 0 'conv0': field 'kernel' must be an integer, not list"),
    (set_in(["layers", 0, "stride"], None), "layer 0 'conv0': field 'stride' must be an integer, not NoneType"),
    (set_in(["layers", 0, "pad_value"], 9), "layer 0 'conv0': field 'pad_value' must be in 0..3, not 9"),
    (set_in(["layers", 1, "bits"], 3), r"layer 1 'act0': field 'thresholds' has shape \(4, 3\), expected \(4, 7\)"),
    (set_in(["layers", 2, "stride"], 0.5), "layer 2 'pool0': field 'stride' must be an integer, not float"),
    (set_in(["layers", 3, "out_features"], 5), r"layer 3 'fc1': field 'weights.shape' is \(3, 16\), expected \(5, 16\)"),
    (set_in(["layers", 3, "bias"], [1, 2, 3]), "layer 3 'fc1': field 'bias' belongs in array 'L3.bias', not in the header"),
    (set_in(["layers", 1, "thresholds"], []), "layer 1 'act0': field 'thresholds' belongs in array 'L1.thresholds'"),
    (drop(["layers", 3, "weights"]), "layer 3 'fc1': field 'weights' is missing"),
    (set_in(["layers", 3, "weights"], "csc"), "layer 3 'fc1': field 'weights' has the wrong type str"),
    (set_in(["layers", 3, "weights", "order"], "C"), r"layer 3 'fc1': unknown field\(s\) weights.order"),
    (drop(["layers", 3, "weights", "shape"]), "layer 3 'fc1': field 'weights.shape' is missing"),
    (set_in(["layers", 3, "weights", "shape"], [3]), r"layer 3 'fc1': field 'weights.shape' must be two integers, not \[3\]"),
    (set_in(["layers", 3, "weights", "shape"], [3, True]), "layer 3 'fc1': field 'weights.shape' must be two integers"),
    (set_in(["layers", 3, "weights", "shape"], [3, 15]), r"layer 3 'fc1': field 'weights.shape' is \(3, 15\), expected \(3, 16\)"),
    (drop(["layers", 3, "weights", "format"]), "layer 3 'fc1': field 'weights.format' is missing"),
    (set_in(["layers", 3, "weights", "format"], "csr"), "layer 3 'fc1': field 'weights.format' is 'csr', expected dense or csc"),
    (set_in(["layers", 3, "weights", "format"], "dense"), "layer 3 'fc1': array 'weights.dense' is missing"),
    (set_in(["layers", 0, "weights", "format"], "csc"), "layer 0 'conv0': array 'weights.values' is missing"),
    (drop(["layers", 3, "weights", "kind"]), "layer 3 'fc1': field 'weights.kind' is missing"),
    (set_in(["layers", 3, "weights", "kind"], "pot"), "layer 3 'fc1': field 'weights.bits' must be in 4..5, not 2"),
    (set_in(["layers", 3, "weights", "kind"], "int"), None),  # int2 holds -1..1: a valid edit
    (set_in(["layers", 3, "weights", "bits"], "2"), "layer 3 'fc1': field 'weights.bits' has the wrong type str"),
    (drop(["layers", 3, "weights", "bits"]), "layer 3 'fc1': field 'weights.bits' is missing"),
    (set_in(["layers", 2, "kernel"], 9), "layer 2 'pool0': field 'kernel' 9 is larger than the input 5x5"),
])
def test_header_rules(saved, edit, pattern):
    path = edited(saved, edit)
    if pattern is None:
        assert ir.load(path).layers[3].weights.kind == "int"
    else:
        load_fails(path, pattern)


@pytest.mark.parametrize("edit,pattern", [
    (lambda a: a.pop("L1.thresholds"), "layer 1 'act0': array 'thresholds' is missing"),
    (lambda a: a.pop("L3.weights.rows"), "layer 3 'fc1': array 'weights.rows' is missing"),
    (lambda a: a.pop("L0.weights.dense"), "layer 0 'conv0': array 'weights.dense' is missing"),
    (lambda a: a.pop("L3.bias"), None),  # bias is optional: a model without it
    (lambda a: a.__setitem__("L9.bias", np.zeros(3, np.int64)), r"array\(s\) L9.bias belong to no layer"),
    (lambda a: a.__setitem__("L0.bias", np.zeros(4, np.int64)), None),  # a conv bias is allowed
    (lambda a: a.__setitem__("L2.bias", np.zeros(4, np.int64)), r"array\(s\) L2.bias belong to no layer"),
    (lambda a: a.__setitem__("L0.weights.rows", np.zeros(4, np.int32)), r"array\(s\) L0.weights.rows belong to no layer"),
    (lambda a: a.__setitem__("L3.weights.values", a["L3.weights.values"].reshape(1, -1)),
     r"layer 3 'fc1': field 'weights.values' has shape \(1, \d+\), expected \(nnz,\)"),
    (lambda a: a.__setitem__("L3.weights.colptr", a["L3.weights.colptr"][::-1].copy()),
     "layer 3 'fc1': field 'weights.colptr' must start at 0"),
    (lambda a: a.__setitem__("L1.thresholds", a["L1.thresholds"][:, ::-1].copy()),
     "layer 1 'act0': field 'thresholds' is not sorted in channel"),
    (lambda a: a.__setitem__("L0.weights.dense", a["L0.weights.dense"].reshape(-1)),
     r"layer 0 'conv0': field 'weights.dense' has shape \(72,\), expected \(4, 18\)"),
])
def test_array_rules(saved, edit, pattern):
    path = edited(saved, arrays_edit=edit)
    if pattern is None:
        ir.load(path)
    else:
        load_fails(path, pattern)


def test_cli_style_message_is_one_line(saved):
    path = edited(saved, set_in(["layers", 0, "kernel"], 0))
    with pytest.raises(ir.IRError) as info:
        ir.load(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path) + ": layer 0 'conv0': field 'kernel'")
    assert isinstance(info.value, ValueError)


# --- docs/ir.md ------------------------------------------------------------------------

DOCS = __import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "ir.md"


def docs_example_model() -> ir.Model:
    return ir.Model(
        name="tiny", input=ir.InputSpec(shape=(2, 2, 1), bits=2, scale=0.1875, offset=0.5),
        layers=[
            ir.FC(name="fc0", out_features=3, weights=ir.Weights.from_matrix(
                [[1, -1, 1, 1], [-1, -1, 1, -1], [1, 1, 1, 1]], "binary")),
            ir.Threshold(name="act0", bits=1, thresholds=np.array([[0], [1], [3]], np.int64)),
            ir.FC(name="fc1", out_features=2, weights=ir.Weights.from_matrix(
                [[1, 0, -1], [0, 1, 1]], "ternary", sparse=True), bias=np.array([1, -1], np.int64)),
        ],
        classes=["no", "yes"], output_scale=0.5, metadata={"source": "docs/ir.md example"})


def test_docs_example(tmp_path):
    """The worked example of docs/ir.md: its header JSON, arrays and arithmetic."""
    text = DOCS.read_text()
    block = re.search(r"```json\n(.*?)```", text, re.S)[1]
    m = docs_example_model()
    path = ir.save(m, tmp_path / "tiny.npz")
    header, arrays = file_parts(path)
    assert json.loads(block) == header
    assert sorted(arrays) == sorted(["L0.weights.dense", "L1.thresholds", "L2.weights.values",
                                     "L2.weights.rows", "L2.weights.colptr", "L2.bias"])
    assert arrays["L2.weights.values"].tolist() == [1, 1, -1, 1]
    assert arrays["L2.weights.rows"].tolist() == [0, 1, 0, 1]
    assert arrays["L2.weights.colptr"].tolist() == [0, 1, 2, 4]
    codes = m.input.quantize(np.array([[0, 8], [16, 4]], float)[..., None])
    assert codes.reshape(-1).tolist() == [0, 2, 3, 1]
    acc0 = m.layers[0].weights.matrix() @ ir.act_values(codes.reshape(-1), 2)
    assert acc0.tolist() == [2, 0, 6] and m.specs()[1].acc_range == (-9, 12)
    act = (acc0[:, None] >= m.layers[1].thresholds).sum(axis=1)
    assert act.tolist() == [1, 0, 1]
    scores = m.layers[2].weights.matrix() @ ir.act_values(act, 1) + m.layers[2].bias
    assert scores.tolist() == [1, -1] and int(np.argmax(scores)) == 0
    assert (m.output_scale * scores).tolist() == [0.5, -0.5]


def test_docs_popcount_threshold_rule():
    """acc >= t  <=>  popcount >= ceil((t - b + n) / 2) for the bipolar sum acc = 2p - n + b."""
    for n in range(1, 12):
        for b in (-3, 0, 2):
            for t in range(-n - 6, n + 7):
                pt = -((-(t - b + n)) // 2)
                for p in range(n + 1):
                    assert (2 * p - n + b >= t) == (p >= pt), (n, b, t, p)


def test_docs_name_every_limit_and_rule():
    text = DOCS.read_text()
    for needle in ("MAX_DIM", "MAX_ELEMENTS", "MAX_INPUT_BITS", "MAX_ACT_BITS", "16384", "2**26",
                   "ZIP_STORED", "MAX_HEADER_BYTES", "4 MiB", "identifier of at most 64",
                   "no pickle", "L{i}.weights.colptr", "negative", "ties", "floor",
                   "(ky, kx, c)", "(y, x, c)", "pad_value", "ceil((t - b + n) / 2)", "sha256"):
        assert needle in text, needle
    assert (ir.MAX_DIM, ir.MAX_ELEMENTS, ir.MAX_INPUT_BITS, ir.MAX_ACT_BITS) == (16384, 1 << 26, 16, 8)
    assert (ir.MAX_HEADER_BYTES, ir.MAX_NAME) == (4 << 20, 64)
