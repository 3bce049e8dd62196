"""Corrupted model files: every one is refused with ir.IRError, or is a no-op.

A corrupted file must raise :class:`hdl.ir.IRError` (never another exception) or, when the
corruption touches bytes that nobody reads (zip timestamps, padding), load to a model
identical to the original. Edits made together with a recomputed, valid hash must be
caught by the validation rules; those that happen to describe a valid model must then
load, validate and round-trip. Examples are derandomized so CI sees the same files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hdl import ir

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --- the valid files ---------------------------------------------------------------------

def model_a() -> ir.Model:
    """conv (binary, dense, padded) -> threshold -> maxpool -> fc (ternary CSC, bias)."""
    rng = np.random.default_rng(11)
    fc_m = rng.integers(-1, 2, size=(3, 16))
    fc_m[:, 0] = [1, -1, 1]
    return ir.Model(
        name="a", input=ir.InputSpec(shape=(5, 5, 2), bits=2, scale=0.25, offset=0.5),
        layers=[
            ir.Conv(name="conv0", out_channels=4, kernel=3, padding=1, pad_value=2,
                    weights=ir.Weights.from_matrix(rng.choice([-1, 1], size=(4, 18)), "binary")),
            ir.Threshold(name="act0", bits=2,
                         thresholds=np.sort(rng.integers(-9, 9, (4, 3)), axis=1).astype(np.int64)),
            ir.MaxPool(name="pool0", kernel=2),
            ir.FC(name="fc1", out_features=3, weights=ir.Weights.from_matrix(fc_m, "ternary", sparse=True),
                  bias=np.array([3, -1, 0], np.int64)),
        ],
        classes=["x", "y", "z"], output_scale=0.5, metadata={"k": [1, "v"]},
    ).validate()


def model_b() -> ir.Model:
    """pot4 CSC conv with bias -> 1-bit threshold -> fc pot5 dense -> threshold -> fc int."""
    rng = np.random.default_rng(12)
    conv_m = (rng.choice([-1, 1], (3, 8)) << rng.integers(0, 7, (3, 8))) * (rng.random((3, 8)) < 0.6)
    fc_m = rng.choice([-1, 1], (4, 27)) << rng.integers(0, 15, (4, 27))
    return ir.Model(
        name="b", input=ir.InputSpec(shape=(4, 4, 2), bits=8, scale=1.0),
        layers=[
            ir.Conv(name="c", out_channels=3, kernel=2, stride=1, weights=ir.Weights.from_matrix(conv_m, "pot", 4, sparse=True),
                    bias=np.array([1, 2, 3], np.int64)),
            ir.Threshold(name="t", bits=1, thresholds=np.zeros((3, 1), np.int64)),
            ir.FC(name="f", out_features=4, weights=ir.Weights.from_matrix(fc_m, "pot", 5)),
            ir.Threshold(name="t2", bits=3, thresholds=np.tile(np.arange(7, dtype=np.int64), (4, 1))),
            ir.FC(name="out", out_features=2, weights=ir.Weights.from_matrix(rng.integers(-8, 8, (2, 4)), "int", 4)),
        ],
        classes=["no", "yes"],
    ).validate()


MODELS = {"a": model_a(), "b": model_b()}


def file_bytes(model) -> bytes:
    buf = io.BytesIO()
    header, arrays = ir._to_file_dicts(model)
    header["sha256"] = ir._content_hash(header, arrays)
    np.savez(buf, header=np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8), **arrays)
    return buf.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    for name, m in MODELS.items():
        ir.save(m, d / f"{name}.npz")
    return d


FILES = {}  # model name -> bytes of the file ir.save wrote


def original(workdir, name) -> bytes:
    if name not in FILES:
        FILES[name] = (workdir / f"{name}.npz").read_bytes()
    return FILES[name]


def same_model(a: ir.Model, b: ir.Model) -> bool:
    def norm(m):
        out = [m.name, tuple(m.input.shape), m.input.bits, m.input.scale, m.input.offset,
               tuple(m.classes), m.output_scale, json.dumps(m.metadata, sort_keys=True)]
        for layer in m.layers:
            out.append(type(layer).__name__)
            for f in dataclasses.fields(layer):
                v = getattr(layer, f.name)
                if isinstance(v, ir.Weights):
                    out.append((v.kind, v.bits, tuple(v.shape)))
                    out += [None if getattr(v, k) is None else (getattr(v, k).dtype.str, getattr(v, k).shape,
                                                                 getattr(v, k).tobytes())
                            for k in ("dense", "values", "rows", "colptr")]
                elif isinstance(v, np.ndarray):
                    out.append((v.dtype.str, v.shape, v.tobytes()))
                else:
                    out.append(v)
        return out
    return norm(a) == norm(b)


def load_bytes(workdir, data: bytes, tag: str = "c"):
    path = workdir / f"{tag}.npz"
    path.write_bytes(data)
    return ir.load(path)


def refused_or_same(workdir, data: bytes, name: str):
    """The property for blind corruption: IRError, or the original model unchanged."""
    try:
        model = load_bytes(workdir, data)
    except ir.IRError as exc:
        assert str(exc).startswith(str(workdir / "c.npz") + ": ")
        assert "\n" not in str(exc)
        return "refused"
    assert same_model(model, MODELS[name]), "a corrupted file loaded to a different model"
    return "same"


def refused(workdir, data: bytes):
    with pytest.raises(ir.IRError) as info:
        load_bytes(workdir, data)
    assert str(info.value).startswith(str(workdir / "c.npz") + ": ")
    return str(info.value)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def zip_of(parts: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, blob in parts.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def parts_of(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("header").tobytes())
    header.pop("sha256")
    return header, arrays


def rebuild(header, arrays, *, rehash=True, text=None) -> bytes:
    """A file from parts; with ``rehash`` the hash is valid for the (parsed) header."""
    text = text if text is not None else json.dumps(dict(header, sha256="@HASH@"))
    if rehash:
        parsed = json.loads(text)  # Python's json accepts NaN/Infinity: hash what a reader sees
        if isinstance(parsed, dict):
            parsed.pop("sha256", None)
            text = text.replace("@HASH@", ir._content_hash(parsed, arrays))
    parts = {"header.npy": npy(np.frombuffer(text.encode(), np.uint8))}
    parts.update({f"{k}.npy": npy(v) for k, v in arrays.items()})
    return zip_of(parts)


model_names = st.sampled_from(sorted(MODELS))


# --- sanity of the helpers ---------------------------------------------------------------

def test_helpers_rebuild_valid_files(workdir):
    for name, m in MODELS.items():
        data = original(workdir, name)
        assert same_model(load_bytes(workdir, data), m)
        assert same_model(load_bytes(workdir, file_bytes(m)), m)
        header, arrays = parts_of(data)
        assert same_model(load_bytes(workdir, rebuild(header, arrays)), m)
        assert same_model(load_bytes(workdir, zip_of(members(data))), m)
        assert not same_model(m, MODELS["b" if name == "a" else "a"])


# --- blind corruption of the bytes --------------------------------------------------------

@settings(max_examples=150, **SETTINGS)
@given(name=model_names, cut=st.floats(0, 1, exclude_max=True))
def test_truncated_file(workdir, name, cut):
    data = original(workdir, name)
    refused(workdir, data[:int(cut * len(data))])


@settings(max_examples=400, **SETTINGS)
@given(name=model_names, flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                                        min_size=1, max_size=3))
def test_flipped_bits(workdir, name, flips):
    data = bytearray(original(workdir, name))
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    refused_or_same(workdir, bytes(data), name)


@settings(max_examples=200, **SETTINGS)
@given(name=model_names, data=st.data())
def test_flipped_bits_in_each_member(workdir, name, data):
    """Flips aimed at one member's npy header or data, written back as a valid zip."""
    parts = members(original(workdir, name))
    member = data.draw(st.sampled_from(sorted(parts)))
    blob = bytearray(parts[member])
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    parts[member] = bytes(blob)
    refused_or_same(workdir, zip_of(parts), name)


@settings(max_examples=150, **SETTINGS)
@given(name=model_names, data=st.data())
def test_overwritten_bytes(workdir, name, data):
    raw = bytearray(original(workdir, name))
    start = data.draw(st.integers(0, len(raw) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=16))
    raw[start:start + len(junk)] = junk
    refused_or_same(workdir, bytes(raw[:len(original(workdir, name))]), name)


# --- members: truncated, deleted, extra, wrong dtype, huge shape ----------------------------

@settings(max_examples=150, **SETTINGS)
@given(name=model_names, data=st.data())
def test_truncated_member(workdir, name, data):
    parts = members(original(workdir, name))
    member = data.draw(st.sampled_from(sorted(parts)))
    cut = data.draw(st.integers(1, len(parts[member])))
    parts[member] = parts[member][:-cut]
    refused(workdir, zip_of(parts))


@settings(max_examples=60, **SETTINGS)
@given(name=model_names, data=st.data())
def test_member_with_trailing_bytes(workdir, name, data):
    """Bytes after an array's data: the member's size disagrees with its declared shape."""
    parts = members(original(workdir, name))
    member = data.draw(st.sampled_from(sorted(parts)))
    parts[member] += data.draw(st.binary(min_size=1, max_size=64))
    msg = refused(workdir, zip_of(parts))
    assert f"member '{member[:-4]}' declares shape" in msg


@pytest.mark.parametrize("name", sorted(MODELS))
def test_deleted_members(workdir, name):
    parts = members(original(workdir, name))
    for member in parts:
        rest = {k: v for k, v in parts.items() if k != member}
        msg = refused(workdir, zip_of(rest))
        if member == "header.npy":
            assert "no 'header' array" in msg
        else:
            assert "field 'sha256' does not match" in msg


@settings(max_examples=80, **SETTINGS)
@given(name=model_names, data=st.data())
def test_extra_members(workdir, name, data):
    parts = members(original(workdir, name))
    layer = data.draw(st.integers(0, 6))
    field = data.draw(st.sampled_from(["bias", "thresholds", "weights.dense", "weights.rows", "extra"]))
    member = data.draw(st.sampled_from([f"L{layer}.{field}.npy", "notes.txt", "header2.npy", "x"]))
    assume(member not in parts)
    content = data.draw(st.sampled_from([npy(np.zeros(3, np.int64)), npy(np.arange(4, dtype=np.int32)),
                                         b"", b"hello"]))
    parts[member] = content
    refused(workdir, zip_of(parts))
    # Even with a hash that covers the extra array, an array no layer reads is refused.
    header, arrays = parts_of(original(workdir, name))
    key = member[:-4] if member.endswith(".npy") else member
    assume(key not in arrays)
    arrays[key] = np.zeros(3, np.int64)
    msg = refused(workdir, rebuild(header, arrays))
    assert key in msg or "is missing" in msg or "has" in msg


DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", ">i8", ">i4",
          "float32", "float64", "bool", "complex64", "U4", "S4", "V8"]


@settings(max_examples=200, **SETTINGS)
@given(name=model_names, data=st.data())
def test_wrong_dtypes(workdir, name, data):
    """A member re-stored with another dtype, with and without a recomputed hash."""
    header, arrays = parts_of(original(workdir, name))
    key = data.draw(st.sampled_from(sorted(arrays) + ["header"]))
    dtype = np.dtype(data.draw(st.sampled_from(DTYPES)))
    rehash = data.draw(st.booleans())
    if key == "header":
        blob = np.frombuffer(json.dumps(dict(header, sha256="0")).encode(), np.uint8)
        assume(dtype != blob.dtype)
        parts = members(original(workdir, name))
        parts["header.npy"] = npy(blob.astype(dtype) if dtype.kind != "V" else blob.view("V1"))
        refused(workdir, zip_of(parts))
        return
    old = arrays[key]
    assume(dtype != old.dtype)
    arrays[key] = old.astype(dtype) if dtype.kind != "V" else np.zeros(old.shape, dtype)
    refused(workdir, rebuild(header, arrays, rehash=rehash))


@settings(max_examples=100, **SETTINGS)
@given(name=model_names, data=st.data())
def test_huge_shapes_in_npy_headers(workdir, name, data):
    """An npy member whose header claims a huge (or just wrong) shape."""
    parts = members(original(workdir, name))
    member = data.draw(st.sampled_from(sorted(parts)))
    with np.load(io.BytesIO(original(workdir, name)), allow_pickle=False) as z:
        arr = z[member[:-4]]
    shape = tuple(data.draw(st.lists(st.sampled_from([0, 1, 2, 7, 1 << 20, 1 << 31, 1 << 40, (1 << 62) - 1]),
                                     min_size=1, max_size=3)))
    assume(shape != arr.shape)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": arr.dtype.str, "fortran_order": False,
                                                "shape": shape})
    parts[member] = head.getvalue() + np.ascontiguousarray(arr).tobytes()
    refused(workdir, zip_of(parts))


# --- header edits: NaN, non-dicts, huge numbers ----------------------------------------------

@settings(max_examples=100, **SETTINGS)
@given(name=model_names, data=st.data())
def test_non_finite_numbers_in_header(workdir, name, data):
    header, arrays = parts_of(original(workdir, name))
    token = data.draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]))
    where = data.draw(st.sampled_from(["input.scale", "input.offset", "output_scale", "metadata.q",
                                       "layers.0.kernel", "version"]))
    rehash = data.draw(st.booleans())
    d = header
    *path, last = where.split(".")
    for k in path:
        d = d[int(k)] if k.isdigit() else d[k]
    d[last] = "@TOKEN@"
    text = json.dumps(dict(header, sha256="@HASH@")).replace('"@TOKEN@"', token)
    msg = refused(workdir, rebuild(header, arrays, rehash=rehash, text=text))
    assert any(s in msg for s in ("not valid JSON", "finite", "must be an integer", "version", "sha256"))


@settings(max_examples=60, **SETTINGS)
@given(name=model_names, value=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3), max_leaves=5))
def test_non_dict_header(workdir, name, value):
    _, arrays = parts_of(original(workdir, name))
    text = json.dumps(value)
    msg = refused(workdir, rebuild({}, arrays, text=text))
    assert "field 'header' must be a JSON object" in msg or "not valid JSON" in msg


@settings(max_examples=150, **SETTINGS)
@given(name=model_names, data=st.data())
def test_huge_numbers_in_header(workdir, name, data):
    """Shapes, sizes and counts replaced by huge or negative integers (hash recomputed)."""
    header, arrays = parts_of(original(workdir, name))
    big = data.draw(st.sampled_from([-1, 0, 1 << 14, (1 << 14) + 1, 1 << 26, 1 << 31, 1 << 63, 10**30, -(10**30)]))
    spots = [("input", "shape", 0), ("input", "shape", 2), ("input", "bits"),
             ("layers", 0, "kernel"), ("layers", 0, "out_channels"), ("layers", 0, "stride"),
             ("layers", 0, "weights", "shape", 1), ("layers", 0, "weights", "bits"),
             ("layers", 1, "bits"), ("layers", len(header["layers"]) - 1, "out_features")]
    spot = data.draw(st.sampled_from(spots))
    d = header
    for k in spot[:-1]:
        d = d[k]
    assume(d[spot[-1]] != big)
    d[spot[-1]] = big
    refused(workdir, rebuild(header, arrays))


# --- edits with a recomputed hash: the validation rules must catch them ------------------------

def json_leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from json_leaves(v, path + (i,))
    yield path


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-20, 20) | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
        ["conv", "fc", "threshold", "maxpool", "binary", "ternary", "int", "pot", "dense", "csc", ""])
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
    max_leaves=4)


@settings(max_examples=300, **SETTINGS)
@given(name=model_names, data=st.data())
def test_any_header_edit_with_valid_hash(workdir, name, data):
    """Replace or delete any part of the header: IRError, or a valid model that round-trips."""
    header, arrays = parts_of(original(workdir, name))
    paths = sorted(json_leaves(header), key=repr)
    path = data.draw(st.sampled_from(paths))
    if not path:
        header = data.draw(JSON_VALUES)
        assume(not isinstance(header, dict) or not header)
        text = json.dumps(header)
        refused(workdir, rebuild({}, arrays, text=text))
        return
    d = header
    for k in path[:-1]:
        d = d[k]
    if data.draw(st.booleans()):
        del d[path[-1]]
    else:
        d[path[-1]] = data.draw(JSON_VALUES)
    try:
        model = load_bytes(workdir, rebuild(header, arrays))
    except ir.IRError:
        return
    # A valid file after all (e.g. a renamed class): it validates and round-trips.
    assert model.validate() is model
    again = load_bytes(workdir, file_bytes(model), "again")
    assert same_model(model, again)


@settings(max_examples=150, **SETTINGS)
@given(name=model_names, data=st.data())
def test_array_edits_with_valid_hash(workdir, name, data):
    """Unsorted thresholds, rows out of range or repeated, shuffled pointers, bad codes."""
    header, arrays = parts_of(original(workdir, name))
    key = data.draw(st.sampled_from(sorted(k for k in arrays if not k.endswith("bias"))))
    arr = arrays[key].copy()
    field = key.split(".", 1)[1]
    if field == "thresholds":
        assume(arr.shape[1] > 1 and np.any(arr[:, 0] != arr[:, -1]))
        ch = int(np.argmax(arr[:, 0] != arr[:, -1]))
        arr[ch] = arr[ch][::-1]
        expect = "not sorted"
    elif field == "weights.colptr":
        perm = data.draw(st.permutations(list(range(len(arr)))))
        assume(not np.array_equal(arr[perm], arr))
        arr = arr[perm]
        expect = "colptr"
    elif field == "weights.rows":
        i = data.draw(st.integers(0, len(arr) - 1))
        arr[i] = data.draw(st.sampled_from([-1, -(1 << 31), 1000, (1 << 31) - 1]))
        expect = "rows"
    elif field in ("weights.values", "weights.dense"):
        flat = arr.reshape(-1)
        i = data.draw(st.integers(0, flat.size - 1))
        choices = [0, 2, -2, 100, -128] if arr.dtype == np.int8 else [0, 8, 16, 255]
        new = data.draw(st.sampled_from(choices))
        kind = next(lay["weights"]["kind"] for j, lay in enumerate(header["layers"]) if key.startswith(f"L{j}."))
        bits = next(lay["weights"]["bits"] for j, lay in enumerate(header["layers"]) if key.startswith(f"L{j}."))
        lo, hi = ir._weight_value_range(kind, bits)
        if kind != "pot":
            valid = new != 0 and lo <= new <= hi if (field == "weights.values" or kind == "binary") else lo <= new <= hi
        else:
            valid = (new < (1 << bits) and new != 1 << (bits - 1)) and (new != 0 or field == "weights.dense")
        assume(not valid)
        flat[i] = np.array(new).astype(arr.dtype)
        expect = "weights"
    else:
        assume(False)
    arrays[key] = arr
    msg = refused(workdir, rebuild(header, arrays))
    assert expect in msg and "field '" in msg
