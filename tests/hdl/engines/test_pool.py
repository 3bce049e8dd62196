"""MaxPool and LabelSelect: bit-exact under random input gaps and output stalls."""

import gc

import numpy as np
import pytest

from hdl.engines.pool import LabelSelect, LabelSelectSpec, MaxPool, MaxPoolSpec
from sim import amsim, golden
from sim.streams import unpack

@pytest.fixture(autouse=True)
def _collect_unused():
    """Components refused in ``__init__`` or only inspected are never elaborated; collect
    them inside the test, where the warning filter above applies."""
    yield
    gc.collect()


def maxpool_reference(codes, kernel, stride):
    """Plain-loop max-pool of (N, H, W, C) codes, floor mode."""
    n, h, w, c = codes.shape
    oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    out = np.zeros((n, oh, ow, c), dtype=np.int64)
    for f in range(n):
        for oy in range(oh):
            for ox in range(ow):
                win = codes[f, oy * stride:oy * stride + kernel, ox * stride:ox * stride + kernel]
                out[f, oy, ox] = win.reshape(-1, c).max(axis=0)
    return out


def golden_maxpool(codes, kernel, stride):
    return np.asarray(golden.maxpool(codes, kernel, stride))


@pytest.mark.parametrize("k,s", [(1, 1), (2, None), (3, 2), (2, 3)])
def test_golden_maxpool_matches_plain_loops(k, s):
    x = np.random.default_rng(k).integers(0, 4, size=(2, 7, 6, 3))
    assert np.array_equal(golden_maxpool(x, k, s), maxpool_reference(x, k, s or k))


def run_stream(dut, in_beats, n_out, seed, gap=0.3, stall=0.3):
    """``sim.amsim.simulate`` with raw payloads; returns (payloads, cycle of the last
    output transfer)."""
    got, cycles = amsim.simulate(dut, in_beats, n_out, seed=seed, gap=gap, stall=stall, raw=True)
    return got, cycles[-1]


def check_maxpool(h, w, c, k, s, bits, lanes, frames, seed, gap=0.3, stall=0.3):
    dut = MaxPool(height=h, width=w, channels=c, kernel=k, stride=s, bits=bits, lanes=lanes)
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << bits, size=(frames, h, w, c))
    want = golden_maxpool(codes, k, s or k).reshape(-1, lanes)
    got, cycles = run_stream(dut, codes.reshape(-1, lanes).tolist(), len(want), seed, gap, stall)
    got = np.array([unpack(v, bits, lanes) for v in got])
    bad = np.argwhere(got != want)
    assert not len(bad), (f"seed {seed}: first mismatch at beat {bad[0][0]} "
                          f"(got {got[bad[0][0]]}, want {want[bad[0][0]]})")
    return dut, cycles


def test_reference_matches_numpy():
    x = np.random.default_rng(0).integers(0, 8, size=(2, 6, 4, 3))
    want = x.reshape(2, 3, 2, 2, 2, 3).max(axis=(2, 4))
    assert np.array_equal(maxpool_reference(x, 2, 2), want)


# (h, w, c, k, stride, bits, lanes)
POOL_CASES = [
    (4, 4, 2, 2, None, 2, 1),
    (5, 7, 3, 2, None, 2, 3),
    (6, 4, 4, 3, None, 1, 2),
    (5, 5, 2, 3, 1, 2, 2),
    (6, 5, 1, 2, 1, 3, 1),
    (7, 6, 2, 3, 2, 1, 1),
    (5, 6, 2, 1, 2, 2, 2),
    (4, 5, 4, 4, 3, 2, 4),
    (2, 3, 1, 2, 3, 1, 1),
]


@pytest.mark.parametrize("h,w,c,k,s,bits,lanes", POOL_CASES)
def test_maxpool_exact(h, w, c, k, s, bits, lanes):
    check_maxpool(h, w, c, k, s, bits, lanes, frames=3, seed=h * 100 + w * 10 + k)


@pytest.mark.parametrize("k", [2, 3])
def test_maxpool_throughput(k):
    """Non-overlapping pool, free-running: about one input beat per cycle."""
    frames = 4
    dut, cycles = check_maxpool(6 * k, 4 * k, 4, k, None, 2, 2, frames, seed=9, gap=0, stall=0)
    ideal = frames * dut.in_beats
    print(f"maxpool K={k}: {cycles} cycles for {frames} frames, ideal {ideal}")
    assert cycles <= 1.05 * ideal + 2 * 4 * k * 2, f"{cycles} cycles, ideal {ideal}"


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(lanes=3), ValueError, "lanes must divide the channel count 4, not 3"),
    (dict(kernel=5), ValueError, "kernel 5 is larger than the input 4x6"),
    (dict(stride=0), ValueError, "stride must be at least 1, not 0"),
    (dict(bits=0), ValueError, "bits must be at least 1, not 0"),
    (dict(height="4"), TypeError, "height must be an integer, not '4'"),
])
@pytest.mark.parametrize("cls", [MaxPoolSpec, MaxPool])
def test_maxpool_bad_parameters(cls, kwargs, exc, msg):
    params = dict(height=4, width=6, channels=4, kernel=2, bits=2, lanes=2)
    params.update(kwargs)
    with pytest.raises(exc, match=msg):
        cls(**params)


def test_maxpool_description():
    """Output size, beats and cycles per frame of the description (stride defaults to
    the kernel); the component reads them from it."""
    spec = MaxPoolSpec(height=7, width=6, channels=4, kernel=2, bits=2, lanes=2)
    assert spec.stride == 2 and (spec.out_height, spec.out_width) == (3, 3)
    assert (spec.in_beats, spec.out_beats) == (7 * 6 * 2, 3 * 3 * 2)
    assert spec.cycles_per_frame == max(7 * 6, 3 * 3 * 2 * 2) * 4 // 2
    assert spec.window.padding == 0 and spec.window.simd == 2
    dut = MaxPool(spec=spec)
    assert dut.signature == spec.signature and dut.out_beats == spec.out_beats
    from amaranth.back import rtlil
    rtlil.convert(dut)


# --- label select --------------------------------------------------------------------

def check_labels(n, width, lanes, scores, seed, gap=0.3, stall=0.3):
    """Every beat comes out unchanged, ``last`` on each frame's final beat, and there
    ``label`` = numpy's argmax (the first maximum); ``label`` on the other beats is the
    argmax of the frame's scores so far."""
    dut = LabelSelect(n, width=width, lanes=lanes)
    in_beats = scores.reshape(-1, lanes).tolist()
    got, cycles = run_stream(dut, in_beats, len(in_beats), seed, gap, stall)
    lb, sw = dut.label_bits, width * lanes
    beats_per_frame = n // lanes
    for k, v in enumerate(got):
        frame, beat = divmod(k, beats_per_frame)
        seen = scores[frame][:(beat + 1) * lanes]
        assert unpack(v & ((1 << sw) - 1), width, lanes, signed=True) == in_beats[k], \
            f"seed {seed}: beat {k} scores not forwarded"
        assert (v >> sw) & ((1 << lb) - 1) == int(np.argmax(seen)), f"seed {seed}: beat {k}"
        assert v >> (sw + lb) == int(beat == beats_per_frame - 1), f"seed {seed}: beat {k}"
    return dut, cycles


@pytest.mark.parametrize("n,lanes", [(10, 1), (10, 2), (10, 5), (10, 10), (2, 1), (7, 7),
                                     (12, 4), (1, 1)])
@pytest.mark.parametrize("seed", [1, 2])
def test_label_select(n, lanes, seed):
    rng = np.random.default_rng(seed)
    width = 6
    frames = 12
    # Few distinct values: many ties, including ties across beats and within a beat.
    scores = rng.integers(-4, 4, size=(frames, n))
    scores[0] = -32                     # all equal, all minimal -> label 0
    scores[1] = 31
    scores[2, -1] = 31                  # maximum in the last class
    check_labels(n, width, lanes, scores, seed)


def test_label_select_throughput():
    """Wired through: one beat per cycle when neither side waits."""
    n, lanes, frames = 12, 3, 10
    scores = np.random.default_rng(3).integers(-100, 100, size=(frames, n))
    _, cycles = check_labels(n, 8, lanes, scores, seed=3, gap=0, stall=0)
    assert cycles <= frames * n // lanes + 2, cycles


def test_label_select_layout():
    dut = LabelSelectSpec(10, width=9, lanes=2)
    assert dut.label_bits == 4
    assert dut.payload_layout.size == 2 * 9 + 4 + 1
    assert dut.payload_layout["label"].offset == 18
    assert dut.payload_layout["last"].offset == 22


@pytest.mark.parametrize("args,kwargs,exc,msg", [
    ((10,), dict(width=8, lanes=3), ValueError, "lanes must divide the class count 10, not 3"),
    ((0,), dict(width=8, lanes=1), ValueError, "n_classes must be at least 1, not 0"),
    ((10,), dict(width=0, lanes=1), ValueError, "width must be at least 1, not 0"),
    ((10.0,), dict(width=8, lanes=1), TypeError, "n_classes must be an integer, not 10.0"),
])
@pytest.mark.parametrize("cls", [LabelSelectSpec, LabelSelect])
def test_label_select_bad_parameters(args, kwargs, exc, msg, cls):
    with pytest.raises(exc, match=msg):
        cls(*args, **kwargs)


def test_maxpool_verilator():
    """One Verilator build (2x2 pool, 1-bit codes: OR), many seeds with their own data and
    gap/stall probabilities, plus a free-running run at about one input beat per cycle."""
    from sim.harness import run_cocotb

    p = dict(kind="maxpool", height=6, width=9, channels=4, kernel=2, stride=2, padding=0,
             bits=1, lanes=2, frames=6)
    dut = MaxPool(height=p["height"], width=p["width"], channels=p["channels"],
                  kernel=p["kernel"], stride=p["stride"], bits=p["bits"], lanes=p["lanes"])
    result = run_cocotb(dut, name="maxpool_k2", test_module="tests.hdl.engines.cocotb_window", parameters=p,
                        seeds=range(1, 5), testcase="stalls", timeout_s=300)
    assert result.tests == ["stalls"] and len(result.seeds) >= 1
    result = run_cocotb(dut, name="maxpool_k2", test_module="tests.hdl.engines.cocotb_window", parameters=p,
                        seeds=[1], testcase="free_running", timeout_s=300)
    rep = result.reports[result.seeds[-1]]
    assert rep["out_beats"] == p["frames"] * dut.out_beats
    assert rep["cycles"] <= 1.05 * p["frames"] * dut.in_beats + 20, rep


def test_maxpool_for_layer_matches_the_model():
    """End to end with the IR: the MaxPool of a model's pool layer, fed the golden model's
    input to that layer, gives the golden model's output of that layer."""
    from hdl import ir
    from sim.random_model import LayerPlan, build_model

    model = build_model([
        LayerPlan(op="conv", out=4, kind="binary", act_bits=2, kernel=3, padding=1, pool=2),
        LayerPlan(op="fc", out=3, kind="binary", act_bits=None),
    ], input_shape=(7, 6, 1), input_bits=2, seed=5)
    specs = model.specs()
    index = next(i for i, layer in enumerate(model.layers) if isinstance(layer, ir.MaxPool))
    x = np.random.default_rng(5).integers(0, 4, size=(3, *model.input.shape))
    outs = golden.run(model, x, all_layers=True)
    dut = MaxPool.for_layer(model.layers[index], specs[index], lanes=2)
    got, _ = run_stream(dut, outs[index - 1].reshape(-1, 2).tolist(),
                        dut.out_beats * len(x), seed=5)
    got = np.array([unpack(v, dut.bits, 2) for v in got]).reshape(outs[index].shape)
    assert np.array_equal(got, outs[index])
