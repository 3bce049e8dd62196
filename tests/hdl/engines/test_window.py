"""SlidingWindow: bit-exact im2col under random input gaps and output stalls."""

import gc
import random

import numpy as np
import pytest

from hdl.engines.window import SlidingWindow, SlidingWindowSpec, window_output_shape
from sim import amsim, golden

# Components refused by __init__ (or only inspected) are never elaborated.
@pytest.fixture(autouse=True)
def _collect_unused():
    """Components refused in ``__init__`` or only inspected are never elaborated; collect
    them inside the test, where the warning filter above applies."""
    yield
    gc.collect()


def im2col_reference(codes, kernel, stride, padding, pad_value):
    """Plain-loop im2col: (N, H, W, C) -> (N, H', W', K*K*C) in (ky, kx, c) order."""
    n, h, w, c = codes.shape
    oh, ow = window_output_shape(h, w, kernel, stride, padding)
    out = np.full((n, oh, ow, kernel * kernel * c), pad_value, dtype=np.int64)
    for f in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for ky in range(kernel):
                    for kx in range(kernel):
                        y, x = oy * stride - padding + ky, ox * stride - padding + kx
                        if 0 <= y < h and 0 <= x < w:
                            col = (ky * kernel + kx) * c
                            out[f, oy, ox, col:col + c] = codes[f, y, x]
    return out


def golden_im2col(codes, kernel, stride, padding, pad_value):
    return np.asarray(golden.im2col(codes, kernel, stride, padding, pad_value))


def run_stream(dut, in_beats, n_out, seed, gap=0.3, stall=0.3, max_cycles=None):
    """``sim.amsim.simulate`` with lane-list payloads; returns (output beats, cycle of
    the last output transfer)."""
    got, cycles = amsim.simulate(dut, in_beats, n_out, seed=seed, gap=gap, stall=stall,
                                 max_cycles=max_cycles)
    return got, cycles[-1]


def check_window(h, w, c, k, s, p, pad_value, bits, simd, frames, seed, gap=0.3, stall=0.3):
    dut = SlidingWindow(height=h, width=w, channels=c, kernel=k, stride=s, padding=p,
                        pad_value=pad_value, bits=bits, simd=simd)
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << bits, size=(frames, h, w, c))
    want = golden_im2col(codes, k, s, p, pad_value).reshape(-1, simd)
    in_beats = codes.reshape(-1, simd).tolist()
    got, _ = run_stream(dut, in_beats, len(want), seed, gap, stall)
    got = np.array(got)
    bad = np.argwhere(got != want)
    assert not len(bad), (f"seed {seed}: first mismatch at beat {bad[0][0]} "
                          f"(got {got[bad[0][0]]}, want {want[bad[0][0]]})")


@pytest.mark.parametrize("k,s,p,pad_value", [(1, 1, 0, 0), (3, 1, 1, 1), (2, 3, 1, 2), (4, 2, 3, 3)])
def test_golden_im2col_matches_plain_loops(k, s, p, pad_value):
    x = np.random.default_rng(k * 10 + s).integers(0, 4, size=(2, 5, 6, 3))
    assert np.array_equal(golden_im2col(x, k, s, p, pad_value),
                          im2col_reference(x, k, s, p, pad_value))


def test_reference_matches_numpy_sliding():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(2, 5, 4, 3))
    cols = im2col_reference(x, 3, 1, 1, 2)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=2)
    view = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    # view: (N, H', W', C, ky, kx) -> (N, H', W', ky, kx, C)
    assert np.array_equal(cols, view.transpose(0, 1, 2, 4, 5, 3).reshape(cols.shape))


# (h, w, c, k, s, p, pad_value, bits, simd)
CASES = [
    (4, 4, 1, 1, 1, 0, 0, 1, 1),
    (5, 3, 2, 1, 2, 0, 0, 2, 1),
    (4, 5, 2, 2, 1, 0, 0, 2, 2),
    (5, 4, 2, 2, 2, 1, 1, 2, 1),
    (5, 6, 3, 3, 1, 1, 0, 1, 3),
    (5, 6, 3, 3, 1, 1, 1, 1, 1),
    (6, 5, 4, 3, 2, 2, 3, 2, 2),
    (7, 5, 1, 3, 3, 0, 0, 3, 1),
    (6, 7, 2, 2, 3, 1, 2, 2, 2),
    (5, 5, 2, 4, 1, 3, 1, 1, 1),
    (6, 6, 2, 4, 2, 2, 0, 2, 2),
    (4, 7, 1, 4, 3, 1, 1, 1, 1),
    (2, 2, 2, 3, 1, 2, 1, 2, 1),
    (3, 1, 2, 3, 1, 1, 0, 2, 2),
    (1, 6, 1, 2, 1, 1, 1, 1, 1),
    (1, 1, 2, 3, 1, 2, 1, 2, 1),
    (2, 1, 1, 3, 2, 2, 0, 1, 1),
    (1, 1, 1, 1, 1, 0, 0, 1, 1),
    (6, 6, 2, 1, 3, 0, 0, 2, 1),
]


@pytest.mark.parametrize("h,w,c,k,s,p,pad_value,bits,simd", CASES)
def test_window_exact(h, w, c, k, s, p, pad_value, bits, simd):
    seed = 1000 + h * 97 + w * 31 + k * 7 + s * 3 + p
    check_window(h, w, c, k, s, p, pad_value, bits, simd, frames=3, seed=seed)


@pytest.mark.parametrize("seed", range(4))
def test_window_random_shapes(seed):
    rng = random.Random(seed)
    k = rng.randint(1, 4)
    s = rng.randint(1, 3)
    p = rng.randint(0, k - 1)
    h = rng.randint(max(1, k - 2 * p), 6)
    w = rng.randint(max(1, k - 2 * p), 6)
    simd = rng.choice([1, 2])
    c = simd * rng.randint(1, 2)
    bits = rng.randint(1, 3)
    check_window(h, w, c, k, s, p, rng.randrange(1 << bits), bits, simd, frames=2,
                 seed=seed, gap=rng.choice([0, 0.5]), stall=rng.choice([0, 0.5]))


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (2, 2, 0), (1, 1, 0), (3, 2, 0)])
def test_window_throughput(k, s, p):
    """Free-running source and sink: cycles per frame within 5% + start-up of ideal."""
    h, w, c, simd, frames = 8, 8, 2, 2, 4
    dut = SlidingWindow(height=h, width=w, channels=c, kernel=k, stride=s, padding=p,
                        bits=2, simd=simd)
    codes = np.random.default_rng(5).integers(0, 4, size=(frames, h, w, c))
    want = im2col_reference(codes, k, s, p, 0).reshape(-1, simd)
    got, cycles = run_stream(dut, codes.reshape(-1, simd).tolist(), len(want), seed=1,
                             gap=0, stall=0)
    assert np.array_equal(np.array(got), want)
    ideal = frames * max(dut.in_beats, dut.out_beats)
    startup = (k - p) * w * (c // simd) + 4
    print(f"K={k} S={s} P={p}: {cycles} cycles for {frames} frames, ideal {ideal}")
    assert cycles <= 1.05 * ideal + startup, f"{cycles} cycles, ideal {ideal}"


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(simd=3), ValueError, "SIMD must divide the channel count 4, not 3"),
    (dict(padding=3), ValueError, "padding must be smaller than the kernel 3, not 3"),
    (dict(pad_value=4), ValueError, "pad_value must fit in 2 bits, not 4"),
    (dict(height=1, padding=0), ValueError, r"kernel 3 is larger than the padded input 1x5"),
    (dict(stride=0), ValueError, "stride must be at least 1, not 0"),
    (dict(kernel=2.0), TypeError, "kernel must be an integer, not 2.0"),
    (dict(bits=True), TypeError, "bits must be an integer, not True"),
])
@pytest.mark.parametrize("cls", [SlidingWindowSpec, SlidingWindow])
def test_window_bad_parameters(cls, kwargs, exc, msg):
    """The description refuses bad parameters; the component's constructor, which makes
    the description first, refuses them with the same message."""
    params = dict(height=4, width=5, channels=4, kernel=3, stride=1, padding=1, pad_value=0,
                  bits=2, simd=2)
    params.update(kwargs)
    with pytest.raises(exc, match=msg):
        cls(**params)


def test_window_depth_is_documented_size():
    spec = SlidingWindowSpec(height=10, width=12, channels=8, kernel=3, stride=1, padding=1,
                             bits=1, simd=4)
    cf = 2
    assert spec.depth == 2 * 12 * cf + 2 * 3 * cf + 1
    assert spec.line_buffer == (4 * 1, spec.depth)
    assert (spec.out_height, spec.out_width) == (10, 12)
    assert spec.out_beats == 10 * 12 * 9 * cf
    assert spec.cycles_per_frame == max(10 * 12 * cf, spec.out_beats)
    assert spec.startup == (3 - 1 - 1) * 12 * cf + 3 * cf


def test_window_is_built_from_its_description():
    """The component's figures and ports are its description's, and its line buffer is
    the description's memory."""
    spec = SlidingWindowSpec(height=5, width=4, channels=2, kernel=3, stride=2, bits=2, simd=2)
    dut = SlidingWindow(spec=spec)
    assert dut.spec is spec and dut.signature == spec.signature
    assert (dut.depth, dut.out_beats) == (spec.depth, spec.out_beats)
    from amaranth.hdl import Fragment, Shape
    m = dut.elaborate(None)
    assert (Shape.cast(m.submodules.mem.shape).width, m.submodules.mem.depth) == spec.line_buffer
    Fragment.get(m, None)                  # elaborate what was built
    Fragment.get(dut, None)
    with pytest.raises(TypeError, match="give either a spec or the parameters of SlidingWindow"):
        SlidingWindow(spec=spec, height=5)
    with pytest.raises(TypeError, match="spec must be a SlidingWindowSpec, not dict"):
        SlidingWindow(spec={})


def test_window_verilator():
    """One Verilator build (K=3, stride 2, padding 1, non-square, 2 channel folds), many
    seeds, each with its own data and gap/stall probabilities; plus a free-running run."""
    from sim.harness import run_cocotb

    p = dict(kind="window", height=7, width=6, channels=4, kernel=3, stride=2, padding=1,
             pad_value=2, bits=2, lanes=2, frames=6)
    dut = SlidingWindow(height=p["height"], width=p["width"], channels=p["channels"],
                        kernel=p["kernel"], stride=p["stride"], padding=p["padding"],
                        pad_value=p["pad_value"], bits=p["bits"], simd=p["lanes"])
    result = run_cocotb(dut, name="window_k3s2p1", test_module="tests.hdl.engines.cocotb_window", parameters=p,
                        seeds=range(1, 5), testcase="stalls", timeout_s=300)
    assert result.tests == ["stalls"] and len(result.seeds) >= 1
    result = run_cocotb(dut, name="window_k3s2p1", test_module="tests.hdl.engines.cocotb_window", parameters=p,
                        seeds=[1], testcase="free_running", timeout_s=300)
    rep = result.reports[result.seeds[-1]]
    ideal = p["frames"] * max(dut.in_beats, dut.out_beats)
    startup = p["kernel"] * p["width"] * 2 + 8
    assert rep["out_beats"] == p["frames"] * dut.out_beats
    assert rep["cycles"] <= 1.10 * ideal + startup, rep


def test_window_for_conv_feeds_the_model_conv():
    """End to end with the IR: the window of a model's padded, strided conv layer, times
    the layer's weight matrix, gives the golden model's accumulators of that layer."""
    from hdl import ir
    from sim.random_model import LayerPlan, build_model

    model = build_model([
        LayerPlan(op="conv", out=4, kind="int", wbits=3, act_bits=2, kernel=3),
        LayerPlan(op="conv", out=3, kind="ternary", act_bits=2, kernel=3, stride=2,
                  padding=1, pad_value=3, bias=True),
        LayerPlan(op="fc", out=3, kind="binary", act_bits=None),
    ], input_shape=(7, 8, 2), input_bits=2, seed=4)
    specs = model.specs()
    index = next(i for i, layer in enumerate(model.layers)
                 if isinstance(layer, ir.Conv) and layer.padding)
    layer, in_spec = model.layers[index], specs[index]
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=(2, *model.input.shape))
    outs = golden.run(model, x, all_layers=True)
    layer_in = outs[index - 1]
    dut = SlidingWindow.for_conv(layer, in_spec, simd=in_spec.shape[2])
    assert (dut.out_height, dut.out_width) == specs[index + 1].shape[:2]
    want_beats = dut.out_beats * len(x)
    got, _ = run_stream(dut, layer_in.reshape(-1, dut.simd).tolist(), want_beats, seed=4)
    cols = np.array(got).reshape(len(x), dut.out_height, dut.out_width, -1)
    acc = ir.act_values(cols, in_spec.bits) @ layer.weights.matrix().T
    if layer.bias is not None:
        acc = acc + layer.bias
    assert np.array_equal(acc, outs[index])


def test_window_for_conv_refuses_accumulators():
    from hdl import ir
    layer = ir.Conv(name="c", out_channels=1, kernel=1, weights=None)
    with pytest.raises(ValueError, match="layer 'c' needs activation codes as input"):
        SlidingWindowSpec.for_conv(layer, ir.TensorSpec(shape=(2, 2, 1), bits=None), simd=1)
    with pytest.raises(ValueError, match="layer 'c' needs activation codes as input"):
        SlidingWindow.for_conv(layer, ir.TensorSpec(shape=(2, 2, 1), bits=None), simd=1)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 160))
def test_window_sweep_slow(seed):
    """Wide sweep (pytest -m slow): random shapes up to 9x9, K 1..5, channel folds 1..3."""
    rng = random.Random(seed)
    k = rng.randint(1, 5)
    s = rng.randint(1, 4)
    p = rng.randint(0, k - 1)
    h = rng.randint(max(1, k - 2 * p), 9)
    w = rng.randint(max(1, k - 2 * p), 9)
    simd = rng.choice([1, 2, 3])
    c = simd * rng.randint(1, 3)
    bits = rng.randint(1, 4)
    check_window(h, w, c, k, s, p, rng.randrange(1 << bits), bits, simd, frames=3,
                 seed=seed, gap=rng.choice([0, 0.3, 0.7]), stall=rng.choice([0, 0.3, 0.7]))
