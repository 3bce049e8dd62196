"""Bounded loading (issue 15): compressed members, oversized declarations, memory, names.

Every hostile file is refused with one ir.IRError line before its members are inflated
or read whole; valid files never densify a sparse matrix while loading.
"""

from __future__ import annotations

import io
import json
import re
import struct
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdl import ir

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def small_model(name="fc0", thresholds=None) -> ir.Model:
    rng = np.random.default_rng(5)
    th = thresholds if thresholds is not None else np.array([[0], [1], [-2]], np.int64)
    return ir.Model(
        name="m", input=ir.InputSpec(shape=(2, 2, 1), bits=2, scale=1.0),
        layers=[ir.FC(name=name, out_features=3,
                      weights=ir.Weights.from_matrix(rng.choice([-1, 1], (3, 4)), "binary")),
                ir.Threshold(name="act0", bits=th.shape[1].bit_length(), thresholds=th),
                ir.FC(name="out", out_features=2,
                      weights=ir.Weights.from_matrix(rng.integers(-1, 2, (2, 3)), "ternary", sparse=True),
                      bias=np.array([1, -1], np.int64))],
        classes=["a", "b"])


@pytest.fixture
def saved(tmp_path):
    return ir.save(small_model(), tmp_path / "ok.npz")


def members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def write_zip(path, parts: dict[str, bytes], compression=zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, blob in parts.items():
            zf.writestr(name, blob)


def npy(arr) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def refused(path, pattern) -> str:
    with pytest.raises(ir.IRError) as info:
        ir.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    assert re.search(pattern, msg), msg
    return msg


# --- container: compression and declared sizes ----------------------------------------

@settings(max_examples=30, **SETTINGS)
@given(method=st.sampled_from([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]),
       which=st.integers(0, 10))
def test_compressed_members_are_refused(tmp_path, method, which):
    path = tmp_path / "ok.npz"
    ir.save(small_model(), path)
    parts = members(path)
    victim = sorted(parts)[which % len(parts)]
    bad = tmp_path / "z.npz"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, blob in parts.items():
            zf.writestr(name, blob, compress_type=method if name == victim else zipfile.ZIP_STORED)
    refused(bad, rf"member '{re.escape(victim[:-4])}' is compressed; model files must be uncompressed")


def test_deflate_bomb_is_refused_before_inflating(saved, tmp_path):
    """A small file whose extra DEFLATE member would inflate to 256 MiB: refused at once."""
    parts = members(saved)
    bomb = tmp_path / "bomb.npz"
    # A genuinely compressed 256 MiB member, written in chunks, never held whole.
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_STORED) as zf:
        for name, blob in parts.items():
            zf.writestr(name, blob)
        info = zipfile.ZipInfo("L1.bias.npy")
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(256):
                f.write(chunk)
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    started = time.monotonic()
    try:
        refused(bomb, r"member 'L1.bias' is compressed")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5 and peak < 8 << 20


def patch_central_size(data: bytes, member: str, size: int) -> bytes:
    """Make the central directory declare ``size`` bytes (stored and compressed) for ``member``."""
    at = 0
    while True:
        at = data.index(b"PK\x01\x02", at)
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_len].decode() == member:
            break
        at += 4
    return data[:at + 20] + struct.pack("<II", size, size) + data[at + 28:]


@pytest.mark.parametrize("size", [1 << 20, (1 << 32) - 1])
def test_declared_size_beyond_the_file_is_refused(saved, tmp_path, size):
    parts = members(saved)
    plain = tmp_path / "plain.npz"
    write_zip(plain, parts)
    bad = tmp_path / "big.npz"
    bad.write_bytes(patch_central_size(plain.read_bytes(), "L1.thresholds.npy", size))
    refused(bad, rf"member 'L1.thresholds' declares {size} bytes, more than the file holds")


def test_huge_header_member_is_refused_before_reading(saved, tmp_path):
    parts = members(saved)
    header = json.loads(np.load(saved)["header"].tobytes())
    text = json.dumps(header).replace("{", "{" + " " * (ir.MAX_HEADER_BYTES // 4), 4).encode()
    parts["header.npy"] = npy(np.frombuffer(text, np.uint8))
    bad = tmp_path / "pad.npz"
    write_zip(bad, parts)
    refused(bad, rf"member 'header' is \d+ bytes, more than the {ir.MAX_HEADER_BYTES} allowed")


@settings(max_examples=20, **SETTINGS)
@given(key=st.sampled_from(["L0.weights.dense", "L1.thresholds", "L2.bias", "L2.weights.colptr",
                            "L2.weights.values", "L2.weights.rows"]),
       n=st.integers(10_000, 200_000))
def test_array_larger_than_its_header_allows(tmp_path, key, n):
    """A member far bigger than its layer can be is refused before it is read."""
    path = tmp_path / "ok.npz"
    ir.save(small_model(), path)
    parts = members(path)
    parts[f"{key}.npy"] = npy(np.zeros(n, np.int64))
    bad = tmp_path / "fat.npz"
    write_zip(bad, parts)
    refused(bad, rf"array '{re.escape(key)}' is \d+ bytes, more than the \d+ its layer's header allows")


def test_shape_and_size_disagree(saved, tmp_path):
    parts = members(saved)
    arr = np.load(saved)["L1.thresholds"]
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": arr.dtype.str, "fortran_order": False,
                                                "shape": (1 << 40,)})
    parts["L1.thresholds.npy"] = head.getvalue() + arr.tobytes()
    bad = tmp_path / "shape.npz"
    write_zip(bad, parts)
    refused(bad, r"member 'L1.thresholds' declares shape \(1099511627776,\) of <i8")


# --- memory: ranges from the sparse form ---------------------------------------------------

def test_sparse_8192_square_loads_without_densifying(tmp_path):
    """An 8192 x 8192 CSC layer with a few entries loads in a few MB (dense would be 512 MB)."""
    n = 8192
    rows = np.array([0, 5, 8191, 17], np.int32)
    cols = np.array([0, 0, 3, 8191])
    colptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n))]).astype(np.int64)
    big = ir.Weights(kind="binary", bits=1, shape=(n, n), values=np.array([1, -1, 1, 1], np.int8),
                     rows=rows, colptr=colptr)
    model = ir.Model(name="s", input=ir.InputSpec(shape=(1, 1, n), bits=1, scale=1.0),
                     layers=[ir.FC(name="fc0", out_features=n, weights=big),
                             ir.Threshold(name="t0", bits=1, thresholds=np.zeros((n, 1), np.int64)),
                             ir.FC(name="fc1", out_features=2,
                                   weights=ir.Weights.from_matrix(np.ones((2, n), np.int64), "binary"))],
                     classes=["a", "b"])
    path = ir.save(model, tmp_path / "s.npz")
    assert path.stat().st_size < 300_000
    tracemalloc.start()
    try:
        loaded = ir.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, peak
    lo, hi = ir.layer_acc_range(loaded.layers[0], 1)
    assert (lo[0], hi[0], lo[5], hi[5], lo[1], hi[1], lo[17], hi[17]) == (-1, 1, -1, 1, 0, 0, -1, 1)
    assert loaded.specs()[1].acc_range == (-1, 1)


@settings(max_examples=60, **SETTINGS)
@given(data=st.data())
def test_acc_range_matches_the_dense_formula(data):
    """Chunked sparse/dense sums equal the docs' formula on the dense matrix."""
    kind, bits = data.draw(st.sampled_from([("binary", 1), ("ternary", 2), ("int", 4), ("pot", 4), ("pot", 5)]))
    r, c = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    if kind == "pot":
        vals = st.sampled_from([0, 1, -1, 2, -4, 64, -64] + ([16384, -16384] if bits == 5 else []))
    else:
        lo, hi = ir._weight_value_range(kind, bits)
        vals = st.integers(lo, hi).filter(lambda v: kind != "binary" or v != 0)
    m = np.array(data.draw(st.lists(vals, min_size=r * c, max_size=r * c))).reshape(r, c)
    sparse = data.draw(st.booleans())
    in_bits = data.draw(st.integers(1, 8))
    w = ir.Weights.from_matrix(m, kind, bits, sparse=sparse)
    bias = np.array(data.draw(st.lists(st.integers(-1000, 1000), min_size=r, max_size=r)), np.int64)
    amin, amax = (-1, 1) if in_bits == 1 else (0, (1 << in_bits) - 1)
    pos, neg = np.where(m > 0, m, 0).sum(1), np.where(m < 0, m, 0).sum(1)
    lo, hi = ir._acc_range(w, in_bits, bias)
    assert np.array_equal(lo, pos * amin + neg * amax + bias)
    assert np.array_equal(hi, pos * amax + neg * amin + bias)


def test_acc_range_in_chunks(monkeypatch):
    monkeypatch.setattr(ir, "_CHUNK", 3)
    rng = np.random.default_rng(2)
    m = rng.integers(-8, 8, (7, 5))
    for sparse in (False, True):
        lo, hi = ir._acc_range(ir.Weights.from_matrix(m, "int", 4, sparse=sparse), 2, None)
        assert np.array_equal(hi, np.where(m > 0, m, 0).sum(1) * 3)
        assert np.array_equal(lo, np.where(m < 0, m, 0).sum(1) * 3)


# --- thresholds spanning int64 -------------------------------------------------------------

@pytest.mark.parametrize("row", [[-1, 2**63 - 1, 2**63 - 1], [-(2**63), 0, 2**63 - 1],
                                 [-(2**63), -(2**63), -(2**63)]])
def test_threshold_rows_spanning_int64_are_sorted(tmp_path, row):
    th = np.array([row, [0, 1, 2], row], np.int64)
    model = small_model(thresholds=th)
    back = ir.load(ir.save(model, tmp_path / "t.npz"))
    assert np.array_equal(back.layers[1].thresholds, th)


def test_threshold_wrapping_difference_still_unsorted():
    th = np.array([[0, 1, 2], [2**63 - 1, -(2**63), 0], [0, 0, 0]], np.int64)
    with pytest.raises(ir.IRError, match="field 'thresholds' is not sorted in channel 1$"):
        small_model(thresholds=th).validate()


# --- layer names ---------------------------------------------------------------------------

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@settings(max_examples=200, **SETTINGS)
@given(name=st.text(max_size=70) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,70}", fullmatch=True))
def test_layer_names_are_identifiers(name):
    if name in ("act0", "out"):
        name += "_"
    model = small_model(name=name)
    if IDENT.fullmatch(name):
        assert model.validate() is model
        return
    with pytest.raises(ir.IRError) as info:
        model.validate()
    msg = str(info.value)
    assert msg.startswith("model: layer 0") and "\n" not in msg and "\r" not in msg
    assert "field 'name'" in msg


def test_injected_name_in_a_file_is_refused(saved, tmp_path):
    parts = members(saved)
    header = json.loads(np.load(saved)["header"].tobytes())
    header.pop("sha256")
    header["layers"][0]["name"] = "top; write_file injected.txt pwned; echo off"
    arrays = {k[:-4]: np.load(io.BytesIO(v)) for k, v in parts.items() if k != "header.npy"}
    header["sha256"] = ir._content_hash(header, arrays)
    parts["header.npy"] = npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
    bad = tmp_path / "inj.npz"
    write_zip(bad, parts)
    refused(bad, r"layer 0 'top; write_file injected.txt pwned; echo': field 'name' must be an identifier")


# --- atomic save ---------------------------------------------------------------------------

def test_concurrent_saves_leave_one_whole_file(tmp_path):
    models = [small_model(), small_model(name="other")]
    errors = []

    def writer(m):
        try:
            for _ in range(15):
                ir.save(m, tmp_path)
        except Exception as exc:          # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=writer, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
    assert ir.load(tmp_path).layers[0].name in ("fc0", "other")


def test_failed_save_leaves_no_temporary(tmp_path, monkeypatch):
    ir.save(small_model(), tmp_path)
    monkeypatch.setattr(np, "savez", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        ir.save(small_model(name="new"), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
    assert ir.load(tmp_path).layers[0].name == "fc0"
