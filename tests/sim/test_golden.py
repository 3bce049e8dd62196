"""The golden model against the plain-loop reference, on random models of every kind.

Every layer's output must be equal, element for element, to ``reference_loops`` (which
shares no code with ``sim.golden``). Hypothesis draws small models with odd shapes:
one channel, non-square images, kernels larger than the stride, strides > 1, padding
with bipolar codes 0 and 1, all weight kinds, dense and CSC, bias, 1..8-bit activations.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hdl import ir
from sim import golden
from sim.random_model import LayerPlan, build_model

try:  # importable as a package from the repository root, or beside this file
    from tests.sim import reference_loops as ref
except ImportError:
    import reference_loops as ref

REPO = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_layers_equal(model, codes):
    got = golden.run(model, codes, all_layers=True)
    want = ref.run_all(model, codes)
    assert len(got) == len(want) == len(model.layers)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == np.int64
        assert g.shape == w.shape, f"layer {i} '{model.layers[i].name}': shape {g.shape} != {w.shape}"
        where = golden.compare_layers([w], [g])
        assert where is None, f"layer {i} '{model.layers[i].name}': {where}"
    scores = golden.run(model, codes)
    assert np.array_equal(scores, want[-1].reshape(len(codes), -1))
    assert golden.predict(model, codes).tolist() == ref.labels(scores)


# --- random models ---------------------------------------------------------------------

def _weight_kind(draw):
    kind = draw(st.sampled_from(["binary", "ternary", "int", "pot"]))
    wbits = draw(st.integers(2, 8)) if kind == "int" else draw(st.sampled_from([4, 5])) if kind == "pot" else None
    return kind, wbits


@st.composite
def random_models(draw):
    h, w, c = draw(st.integers(1, 7)), draw(st.integers(1, 7)), draw(st.integers(1, 4))
    in_bits = draw(st.sampled_from([1, 1, 2, 4, 8]))
    blocks = draw(st.integers(1, 3))
    plans, shape, bits = [], (h, w, c), in_bits
    for i in range(blocks):
        last = i == blocks - 1
        kind, wbits = _weight_kind(draw)
        density = draw(st.sampled_from([1.0, 1.0, 0.7, 0.3, 0.05]))
        act_bits = None if last else draw(st.sampled_from([1, 1, 2, 3, 4, 5, 8]))
        out = draw(st.integers(2 if last else 1, 5))
        common = dict(out=out, kind=kind, wbits=wbits, act_bits=act_bits, density=density,
                      bias=draw(st.booleans()))
        if draw(st.booleans()):  # conv
            k = draw(st.integers(1, 4))
            pad = draw(st.integers(0, k - 1))
            if shape[0] + 2 * pad < k or shape[1] + 2 * pad < k:
                k, pad = 1, 0
            stride = draw(st.integers(1, 3))
            oh = (shape[0] + 2 * pad - k) // stride + 1
            ow = (shape[1] + 2 * pad - k) // stride + 1
            plan = dict(op="conv", kernel=k, stride=stride, padding=pad,
                        pad_value=draw(st.integers(0, (1 << bits) - 1)))
            shape = (oh, ow, out)
        else:
            plan = dict(op="fc")
            shape = (1, 1, out)
        pool = 0
        if act_bits is not None and min(shape[:2]) >= 2 and draw(st.booleans()):
            pool = draw(st.integers(2, min(3, *shape[:2])))
            shape = ((shape[0] - pool) // pool + 1, (shape[1] - pool) // pool + 1, shape[2])
        plans.append(LayerPlan(**plan, **common, pool=pool))
        bits = act_bits
    model = build_model(plans, input_shape=(h, w, c), input_bits=in_bits,
                        seed=draw(st.integers(0, 2**16)))
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    codes = rng.integers(0, 1 << in_bits, size=(n, h, w, c))
    return model, codes


@SETTINGS
@given(random_models())
def test_random_models_match_loops(case):
    model, codes = case
    assert_layers_equal(model, codes)


@pytest.mark.parametrize("threads", [1, 2])
def test_chunking_and_threads_do_not_change_results(monkeypatch, threads):
    """Tiny chunks with odd boundaries, on one thread and on the pool."""
    monkeypatch.setattr(golden, "_CHUNK", 7)
    monkeypatch.setattr(golden, "_THREADS", threads)
    plans = [LayerPlan(op="conv", out=5, kind="binary", kernel=3, padding=1, pad_value=1, act_bits=2, bias=True),
             LayerPlan(op="conv", out=3, kind="int", wbits=3, kernel=2, stride=2, act_bits=1),
             LayerPlan(op="conv", out=4, kind="binary", kernel=2, act_bits=1, bias=True),
             LayerPlan(op="fc", out=6, kind="pot", wbits=4, density=0.4, act_bits=3),
             LayerPlan(op="fc", out=3, kind="ternary", act_bits=None)]
    model = build_model(plans, input_shape=(6, 7, 3), input_bits=1, seed=4)
    codes = np.random.default_rng(6).integers(0, 2, size=(5, 6, 7, 3))
    assert_layers_equal(model, codes)


# --- chosen cases ----------------------------------------------------------------------

@pytest.mark.parametrize("pad_value", [0, 1])
@pytest.mark.parametrize("channels", [64, 13])  # whole uint64 words per pixel, or bytes
def test_xnor_conv_bipolar_padding(pad_value, channels):
    plans = [LayerPlan(op="conv", out=3, kind="binary", kernel=3, stride=2, padding=2,
                       pad_value=pad_value, act_bits=1),
             LayerPlan(op="conv", out=2, kind="binary", kernel=2, padding=1, pad_value=1 - pad_value,
                       act_bits=None)]
    model = build_model(plans, input_shape=(5, 3, channels), input_bits=1, seed=channels)
    codes = np.random.default_rng(pad_value).integers(0, 2, size=(2, 5, 3, channels))
    assert_layers_equal(model, codes)
    # Padding really is the code: flipping pad_value changes the first layer's border.
    other = build_model([LayerPlan(**{**plans[0].__dict__, "pad_value": 1 - pad_value}), plans[1]],
                        input_shape=(5, 3, channels), input_bits=1, seed=channels)
    a = golden.run(model, codes, all_layers=True)[0]
    b = golden.run(other, codes, all_layers=True)[0]
    assert not np.array_equal(a[:, 0], b[:, 0])


@pytest.mark.parametrize("levels", [1, 3, 7, 15, 31])
@pytest.mark.parametrize("op", ["conv", "fc"])
def test_fused_threshold_equals_threshold_of_accumulators(levels, op):
    """run() turns XNOR popcounts straight into codes; check it on hard thresholds."""
    rng = np.random.default_rng(levels)
    c, o = 11, 6
    w = ir.Weights.from_matrix(rng.choice([-1, 1], size=(o, (9 if op == "conv" else 20) * c)), "binary")
    n = w.shape[1]
    bias = rng.integers(-n, n + 1, size=o)
    if op == "conv":
        layer = ir.Conv(name="c", out_channels=o, kernel=3, padding=1, pad_value=1, weights=w, bias=bias)
    else:
        layer = ir.FC(name="f", out_features=o, weights=w, bias=bias)
    spec = ir.TensorSpec(shape=(4, 5, c), bits=1)
    x = rng.integers(0, 2, size=(7, 4, 5, c)).astype(np.uint8)
    if op == "fc":  # frame 0 equals channel 0's weights: popcount 0, the top accumulator
        x[0] = (w.dense[0] > 0).reshape(4, 5, c)
    acc = golden.layer_forward(layer, x, spec)
    # Thresholds at, around and far beyond the reachable accumulators, with repeats.
    pool = np.concatenate([acc.ravel(), acc.ravel() + 1, [-(1 << 62), 1 << 62, -n - 9, n + 9]])
    thr = np.sort(rng.choice(pool, size=(o, levels)), axis=1).astype(np.int64)
    thr[:, -1] = np.maximum(thr[:, -1], acc.max(axis=(0, 1, 2)) + 1)  # one level is never reached
    fused = golden._dot_layer(layer, x, spec, thresholds=thr)
    assert fused.dtype == np.uint8
    assert np.array_equal(fused, golden.threshold(acc, thr))
    assert np.array_equal(fused, ref.threshold(ref.fc(x.tolist(), 1, layer) if op == "fc" else
                                               ref.conv(x.tolist(), 1, layer),
                                               ir.Threshold(name="t", bits=1, thresholds=thr)))


@pytest.mark.parametrize("exact32", [True, False])
@pytest.mark.parametrize("kind, wbits, in_bits", [("int", 5, 3), ("pot", 5, 8), ("binary", 1, 2),
                                                 ("ternary", 2, 1)])
def test_fused_threshold_dense_kernels(monkeypatch, kind, wbits, in_bits, exact32):
    """Dense BLAS layers compare float products with ``t - bias`` (float32 and float64)."""
    if not exact32:
        monkeypatch.setattr(golden, "_F32_EXACT", 1)
    rng = np.random.default_rng(wbits + in_bits)
    c, o = 3, 5
    plan = LayerPlan(op="conv", out=o, kind=kind, wbits=wbits, kernel=3, padding=1,
                     pad_value=(1 << in_bits) - 1, bias=True, act_bits=None)
    layer = build_model([plan], input_shape=(4, 5, c), input_bits=in_bits, seed=1).layers[0]
    spec = ir.TensorSpec(shape=(4, 5, c), bits=in_bits)
    x = rng.integers(0, 1 << in_bits, size=(6, 4, 5, c))
    x[0] = (1 << in_bits) - 1 if in_bits > 1 else 1        # extreme frames
    acc = golden.layer_forward(layer, x, spec)
    for levels in (1, 7, 31):
        pool = np.concatenate([acc.ravel(), acc.ravel() + 1, [-(1 << 62), 1 << 62]])
        thr = np.sort(rng.choice(pool, size=(o, levels)), axis=1).astype(np.int64)
        thr[:, -1] = np.maximum(thr[:, -1], acc.max(axis=(0, 1, 2)) + 1)
        fused = golden._dot_layer(layer, x, spec, thresholds=thr)
        assert fused.dtype == np.uint8
        assert np.array_equal(fused, golden.threshold(acc, thr))


def _model(layers, shape, bits, classes):
    return ir.Model(name="t", input=ir.InputSpec(shape=shape, bits=bits, scale=1.0),
                    layers=layers, classes=[str(k) for k in range(classes)]).validate()


def test_csc_empty_and_full_columns_and_pot_codes():
    m = np.zeros((4, 6), np.int64)
    m[:, 1] = [1, -2, 4, -8]          # full column
    m[2, 3] = 16                      # single entry
    m[[0, 3], 5] = [-1, 2]            # columns 0, 2, 4 empty; row 1 only in column 1
    for kind, bits in (("pot", 5), ("int", 6)):
        w = ir.Weights.from_matrix(m, kind, bits, sparse=True)
        assert w.sparse and np.diff(w.colptr).tolist() == [0, 4, 0, 1, 0, 2]
        layer = ir.FC(name="fc", out_features=4, weights=w, bias=np.array([0, 5, -5, 0]))
        model = _model([layer], (1, 2, 3), 3, 4)
        codes = np.random.default_rng(1).integers(0, 8, size=(5, 1, 2, 3))
        assert_layers_equal(model, codes)
        flat = codes.reshape(5, -1)
        assert np.array_equal(golden.run(model, codes), flat @ m.T + layer.bias)


def test_all_zero_csc_layer():
    w = ir.Weights.from_matrix(np.zeros((3, 8), np.int64), "ternary", sparse=True)
    model = _model([ir.FC(name="fc", out_features=3, weights=w)], (2, 2, 2), 1, 3)
    codes = np.ones((2, 2, 2, 2), np.uint8)
    assert golden.run(model, codes).tolist() == [[0, 0, 0], [0, 0, 0]]
    assert golden.predict(model, codes).tolist() == [0, 0]


def test_argmax_ties_go_to_lowest_index():
    rows = np.array([[1, -1, 1, 1], [1, 1, -1, -1], [1, 1, -1, -1], [-1, -1, -1, -1]])
    w = ir.Weights.from_matrix(rows, "binary")
    model = _model([ir.FC(name="fc", out_features=4, weights=w, bias=np.array([-10, 0, 0, 0]))],
                   (1, 1, 4), 1, 4)
    codes = np.array([[[[1, 1, 0, 0]]], [[[0, 0, 0, 0]]]])  # values (+1 +1 -1 -1), (-1 ...)
    scores = golden.run(model, codes)
    assert scores.tolist() == [[-12, 4, 4, 0], [-12, 0, 0, 4]]
    assert golden.predict(model, codes).tolist() == [1, 3]  # 1 and 2 tie: lowest wins
    assert ref.labels(scores) == [1, 3]


def test_overlapping_maxpool_and_large_kernel_stride():
    conv = ir.Conv(name="c", out_channels=2, kernel=4, stride=3, padding=3, pad_value=2,
                   weights=ir.Weights.from_matrix(
                       np.random.default_rng(0).integers(-8, 8, size=(2, 16)), "int", 4))
    lo, hi = ir.layer_acc_range(conv, 2)
    thr = np.sort(np.random.default_rng(1).integers(lo.min(), hi.max(), size=(2, 7)), axis=1)
    layers = [conv, ir.Threshold(name="a", bits=3, thresholds=thr),
              ir.MaxPool(name="p", kernel=3, stride=1),
              ir.FC(name="f", out_features=2, weights=ir.Weights.from_matrix(
                  np.random.default_rng(3).integers(-1, 2, size=(2, 2 * 2 * 2)), "ternary"))]
    model = _model(layers, (7, 7, 1), 2, 2)
    assert model.specs()[3].shape == (2, 2, 2)
    codes = np.random.default_rng(2).integers(0, 4, size=(3, 7, 7, 1))
    assert_layers_equal(model, codes)


@pytest.mark.parametrize("f32, f64", [(1 << 24, 1 << 53), (1, 1 << 53), (1, 1)])
def test_every_dense_method_is_exact(monkeypatch, f32, f64):
    """Force the float64 and int64 paths by lowering the exactness limits."""
    monkeypatch.setattr(golden, "_F32_EXACT", f32)
    monkeypatch.setattr(golden, "_F64_EXACT", f64)
    plans = [LayerPlan(op="conv", out=3, kind="pot", wbits=5, kernel=2, act_bits=4, bias=True),
             LayerPlan(op="fc", out=3, kind="int", wbits=8, act_bits=None)]
    model = build_model(plans, input_shape=(3, 4, 2), input_bits=16, seed=5)
    codes = np.random.default_rng(3).integers(0, 1 << 16, size=(2, 3, 4, 2))
    assert_layers_equal(model, codes)


def test_threshold_levels_and_extremes():
    rng = np.random.default_rng(4)
    for levels in (1, 3, 15, 255):
        thr = np.sort(rng.integers(-50, 50, size=(3, levels)), axis=1)
        acc = rng.integers(-60, 60, size=(2, 4, 3))
        want = (acc[..., None] >= thr).sum(-1)
        assert np.array_equal(golden.threshold(acc, thr), want)
    huge = np.array([[-(1 << 62)] * 8 + [1 << 61] * 8, list(range(16))], np.int64)
    acc = np.array([[[-(1 << 61), 5], [1 << 61, 1 << 62]]], np.int64)
    assert golden.threshold(acc, huge).tolist() == [[[8, 6], [16, 16]]]


def test_im2col_order_and_padding():
    x = np.arange(2 * 3 * 3 * 2).reshape(2, 3, 3, 2)
    cols = golden.im2col(x, 2, 2, 1, 99)
    assert cols.shape == (2, 2, 2, 8)
    # Window at output (1, 1) of frame 1 starts at input (1, 1): (ky, kx, c) order.
    assert cols[1, 1, 1].tolist() == [*x[1, 1, 1], *x[1, 1, 2], *x[1, 2, 1], *x[1, 2, 2]]
    assert cols[0, 0, 0].tolist() == [99] * 6 + [*x[0, 0, 0]]


def test_layer_forward_matches_run():
    model = build_model([LayerPlan(op="conv", out=4, kind="ternary", kernel=3, padding=1, pool=2),
                         LayerPlan(op="fc", out=3, act_bits=None)], input_shape=(6, 5, 2), seed=9)
    codes = np.random.default_rng(0).integers(0, 256, size=(3, 6, 5, 2))
    outs = golden.run(model, codes, all_layers=True)
    x = codes
    for layer, spec, want in zip(model.layers, model.specs(), outs):
        x = golden.layer_forward(layer, x, spec)
        assert x.dtype == np.int64 and np.array_equal(x, want)


def test_bad_inputs_are_rejected():
    model = build_model([LayerPlan(op="fc", out=2, act_bits=None)], input_shape=(2, 2, 1), input_bits=2)
    with pytest.raises(ValueError, match=r"shape \(N, 2, 2, 1\)"):
        golden.run(model, np.zeros((3, 2, 2), np.int64))
    with pytest.raises(ValueError, match="outside 0..3"):
        golden.run(model, np.full((1, 2, 2, 1), 4))
    with pytest.raises(TypeError, match="integer codes"):
        golden.run(model, np.zeros((1, 2, 2, 1), np.float32))


SHIPPED = sorted((REPO / "models").glob("*/model.npz"))


def test_models_are_shipped():
    assert {"w1a2", "pot4", "pot4-sparse"} <= {p.parent.name for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_shipped_models_reach_their_recorded_accuracy(path):
    metrics = json.loads((path.parent / "metrics.json").read_text())
    model = ir.load(path)
    from sim.data import load_dataset
    data = load_dataset(metrics.get("data", "digits"))
    labels = golden.predict(model, model.input.quantize(data.x_test))
    assert np.mean(labels == data.y_test) == pytest.approx(metrics["accuracy"], abs=1e-9)


# --- locating mismatches -----------------------------------------------------------------

def test_first_mismatch_reports_the_first_differing_element():
    model = build_model([LayerPlan(op="conv", out=3, kernel=2, act_bits=2),
                         LayerPlan(op="conv", out=4, kind="int", wbits=3, kernel=2, act_bits=None)],
                        input_shape=(5, 4, 2), input_bits=1, seed=2)
    codes = np.random.default_rng(5).integers(0, 2, size=(3, 5, 4, 2))
    outs = golden.run(model, codes, all_layers=True)
    assert golden.first_mismatch(model, codes, outs) is None
    hw = [o.copy() for o in outs]
    hw[1][2, 3, 1, 2] ^= 1          # threshold output, frame 2, y 3, x 1, channel 2
    hw[1][2, 3, 2, 0] ^= 1          # later in the same frame
    hw[2][0, 0, 0, 0] += 1          # a later layer differs too
    hw[2] = hw[2].reshape(3, -1)    # flat per-frame words are accepted
    where = golden.first_mismatch(model, codes, [None] + hw[1:])
    assert (where.layer, where.name, where.frame, where.y, where.x, where.channel) == (1, "act0", 2, 3, 1, 2)
    assert where.got == outs[1][2, 3, 1, 2] ^ 1 and where.expected == outs[1][2, 3, 1, 2]
    assert where.count == 2
    assert "layer 1 'act0', frame 2, pixel (y=3, x=1), channel 2" in str(where)
    with pytest.raises(ValueError, match="elements"):
        golden.first_mismatch(model, codes, [outs[0][:2]])


# --- command line --------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sim.golden", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_good_model(tmp_path):
    model = build_model([LayerPlan(op="conv", out=4, kernel=3, act_bits=2, pool=2),
                         LayerPlan(op="fc", out=10, kind="ternary", act_bits=None)],
                        input_shape=(8, 8, 1), input_bits=4, input_scale=15 / 16, seed=1)
    path = ir.save(model, tmp_path / "m")
    res = _cli(tmp_path / "m", "--json", "--reps", "1")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)                  # --json: nothing but JSON on stdout
    assert result["model"] == str(path) and result["frames"] == 450
    assert 0.0 <= result["accuracy"] <= 1.0 and result["frames_per_s"] > 0
    from sim.data import load_dataset
    data = load_dataset("digits")
    want = np.mean(golden.predict(model, model.input.quantize(data.x_test)) == data.y_test)
    assert result["accuracy"] == pytest.approx(want)


def test_cli_bad_model_and_help(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    res = _cli(bad)
    assert res.returncode == 3                       # bad input (2 is a usage error)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in res.stderr
    res = _cli(tmp_path / "missing.npz")
    assert res.returncode == 3 and "no such file" in res.stderr
    res = _cli("--help")
    assert res.returncode == 0 and "--data" in res.stdout and "exit codes:" in res.stdout
    res = _cli(tmp_path / "m.npz", "--reps")
    assert res.returncode == 2 and "expected one argument" in res.stderr
