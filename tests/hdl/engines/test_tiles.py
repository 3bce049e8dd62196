"""TileMVTU: bit-exact against the golden model on random block-sparse matrices (empty
neuron folds, an all-zero layer, in_simd > simd, every weight kind) under random input
gaps and output backpressure; measured cycles per vector equal to the model; errors."""

import numpy as np
import pytest

from hdl import ir
from hdl.engines.mvtu import MVTU
from hdl.engines.tiles import TileMVTU, TileSpec, tile_mask, tile_steps
from sim import amsim
from sim.random_model import block_prune, random_thresholds, random_weights
from tests.hdl.engines.test_mvtu import _bounds, reference


def simulate(dut, codes, *, seed, gap=0.3, stall=0.3):
    beats = codes.reshape(-1, dut.in_simd)
    n_out = len(codes) * dut.neuron_folds
    got, cycles = amsim.simulate(dut, beats, n_out, seed=seed, gap=gap, stall=stall,
                                 max_cycles=50 * (len(beats) + n_out + len(codes) * dut.steps) + 200)
    return np.array(got).reshape(len(codes), dut.outputs), cycles


def block_matrix(rng, outputs, inputs, kind, wbits, block, density):
    m = random_weights(rng, outputs, inputs, "ternary" if kind == "binary" else kind, wbits).matrix()
    if kind == "binary":
        m = np.where(m == 0, 1, m)
    return block_prune(rng, m, block, density)


def check(weights, kind, wbits, in_bits, pe, simd, in_simd, *, seed, vectors=5, tbits=None,
          bias=False, gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    outputs, inputs = weights.shape
    b = rng.integers(-20, 21, size=outputs).astype(np.int64) if bias else None
    thresholds = None
    if tbits is not None:
        lo, hi = _bounds(weights, in_bits, b)
        spread = np.maximum((hi - lo) // 6, 1)
        mid = (lo + hi) // 2
        thresholds = random_thresholds(rng, mid - spread, mid + spread, tbits)
    dut = TileMVTU(weights, kind=kind, wbits=wbits, in_bits=in_bits, pe=pe, simd=simd,
                   in_simd=in_simd, thresholds=thresholds, bias=b)
    codes = rng.integers(0, 1 << in_bits, size=(vectors, inputs))
    codes[0] = (1 << in_bits) - 1
    codes[1] = 0
    got, _ = simulate(dut, codes, seed=seed, gap=gap, stall=stall)
    gold_kind = "ternary" if kind == "binary" else kind
    want = reference(weights, codes, in_bits, thresholds, b, kind=gold_kind,
                     wbits=dut.wbits if kind in ("int", "pot") else None)
    assert np.array_equal(got, want), f"seed {seed}: mode {dut.mode}\n{got}\n!=\n{want}"
    return dut


# kind, wbits, in_bits, outputs, inputs, pe, simd, in_simd, block, density, tbits, bias
CASES = [
    ("pot", 4, 4, 8, 32, 2, 4, 4, (2, 4), 0.3, 3, True),      # empty neuron folds likely
    ("pot", 4, 2, 6, 24, 3, 4, 12, (3, 4), 0.5, None, True),  # in_simd > simd, scores
    ("pot", 5, 3, 4, 16, 4, 8, 16, (4, 8), 0.5, 2, False),    # NF = 1, in_simd = inputs
    ("int", 4, 4, 8, 24, 4, 4, 8, (4, 4), 0.4, 2, True),
    ("int", 3, 1, 4, 12, 2, 3, 6, (2, 3), 0.5, 1, False),     # int x bipolar
    ("ternary", None, 2, 6, 16, 2, 4, 8, (2, 4), 0.4, 2, True),
    ("binary", None, 1, 8, 16, 2, 4, 4, (2, 4), 0.4, 1, False),   # pruned binary -> ternary lanes
    ("binary", None, 2, 4, 32, 2, 8, 16, (2, 8), 0.5, None, True),
    ("pot", 4, 4, 4, 64, 2, 32, 64, (2, 32), 0.5, 3, True),   # wide SIMD (bit-heap registers)
]


@pytest.mark.parametrize("kind,wbits,in_bits,outputs,inputs,pe,simd,in_simd,block,density,tbits,bias",
                         CASES)
def test_exact(kind, wbits, in_bits, outputs, inputs, pe, simd, in_simd, block, density, tbits, bias):
    rng = np.random.default_rng(11)
    weights = block_matrix(rng, outputs, inputs, kind, wbits, block, density)
    dut = check(weights, kind, wbits, in_bits, pe, simd, in_simd, seed=3, tbits=tbits, bias=bias)
    assert dut.steps == tile_steps(weights, pe, simd) <= dut.neuron_folds * dut.synapse_folds


def test_empty_folds_and_zero_layer():
    """Neuron folds without a non-zero tile still emit their outputs (one step each);
    an all-zero layer emits thresholds of zero plus bias."""
    rng = np.random.default_rng(5)
    w = block_matrix(rng, 8, 16, "pot", 4, (2, 4), 1.0)
    w[2:6] = 0                                               # neuron folds 1 and 2 empty
    dut = check(w, "pot", 4, 3, 2, 4, 8, seed=4, tbits=2, bias=True)
    assert dut.schedule[4:6] == [(1, 0), (2, 0)] and dut.steps == 10
    zero = np.zeros((4, 8), np.int64)
    dut = check(zero, "int", 4, 2, 2, 4, 4, seed=5, tbits=2, bias=True)
    assert dut.steps == dut.neuron_folds == 2 and dut.tiles == 0


@pytest.mark.parametrize("in_simd,keep", [(4, 0.25), (16, 0.25), (16, 1.0)])
def test_throughput(in_simd, keep):
    """Free-running: steady-state cycles per vector = max(inputs / in_simd, steps)."""
    rng = np.random.default_rng(9)
    w = block_matrix(rng, 8, 32, "pot", 4, (2, 4), keep)
    dut = TileMVTU(w, kind="pot", in_bits=4, pe=2, simd=4, in_simd=in_simd)
    vectors = 16
    codes = rng.integers(0, 16, size=(vectors, 32))
    got, cycles = simulate(dut, codes, seed=3, gap=0.0, stall=0.0)
    assert np.array_equal(got, reference(w, codes, 4, kind="pot", wbits=4))
    nf = dut.neuron_folds
    last = cycles[nf - 1::nf]
    measured = (last[-1] - last[3]) / (len(last) - 1 - 3)
    assert dut.cycles_per_vector == max(32 // in_simd, tile_steps(w, 2, 4))
    assert measured == dut.cycles_per_vector, (measured, dut.steps, dut.in_beats)


def test_dense_matrix_same_cycles_as_mvtu():
    rng = np.random.default_rng(2)
    w = random_weights(rng, 8, 24, "int", 4).matrix()
    w[w == 0] = 1
    spec = TileSpec(w, kind="int", in_bits=2, pe=2, simd=4)
    assert spec.tiles == spec.steps == 4 * 6 and tile_mask(w, 2, 4).all()
    assert spec.cycles_per_vector == MVTU.Spec(w, kind="int", in_bits=2, pe=2, simd=4).cycles_per_vector
    assert spec.weight_memory == (2, 16, 24) and spec.input_buffer == (8, 12)


@pytest.mark.parametrize("kwargs,match", [
    (dict(in_simd=6), "in_simd must be a multiple of SIMD 4, not 6"),
    (dict(in_simd=24), "in_simd must divide the input width 16, not 24"),
    (dict(in_simd=0), "in_simd"),
])
def test_parameter_errors(kwargs, match):
    w = np.ones((4, 16), np.int64)
    with pytest.raises(ValueError, match=match):
        TileMVTU(w, kind="int", in_bits=2, pe=2, simd=4, **kwargs)


def test_from_layer_binary_pruned():
    rng = np.random.default_rng(1)
    m = block_matrix(rng, 4, 8, "binary", None, (2, 4), 1.0)
    m[:2, 4:] = 0
    layer = ir.FC(name="fc", out_features=4, weights=ir.Weights.from_matrix(m, "binary", sparse=True))
    spec = TileSpec.from_layer(layer, in_bits=1, pe=2, simd=4, in_simd=8)
    assert (spec.kind, spec.mode, spec.in_simd, spec.in_beats) == ("ternary", "int", 8, 1)
    assert spec.schedule == [(0, 0), (1, 0), (1, 1)] and spec.cycles_per_vector == 3


@pytest.mark.slow
def test_cocotb():
    """Verilator: pot4 weights in 2 x 8 blocks (empty neuron folds), in_simd 16 > simd 8,
    thresholds with bias; many seeds of gaps and stalls, and the free-running rate."""
    from sim.harness import run_cocotb

    rng = np.random.default_rng(23)
    w = block_matrix(rng, 12, 48, "pot", 4, (2, 8), 0.35)
    w[4:6] = 0
    bias = rng.integers(-9, 10, size=12).astype(np.int64)
    lo, hi = _bounds(w, 3, bias)
    spread = np.maximum((hi - lo) // 6, 1)
    thresholds = random_thresholds(rng, (lo + hi) // 2 - spread, (lo + hi) // 2 + spread, 2)
    dut = TileMVTU(w, kind="pot", wbits=4, in_bits=3, pe=2, simd=8, in_simd=16,
                   thresholds=thresholds, bias=bias)
    p = dict(weights=w, kind="pot", wbits=4, in_bits=3, pe=2, simd=16, out_bits=dut.out_shape.width,
             out_signed=dut.out_shape.signed, vectors=30, bias=bias, thresholds=thresholds)
    result = run_cocotb(dut, name="tiles_pot", test_module="tests.hdl.engines.cocotb_tiles",
                        parameters=p, seeds=range(1, 7), timeout_s=300)
    assert "stalls" in " ".join(result.tests) and "free_running" in " ".join(result.tests)
    rep = result.reports[result.seeds[-1]]
    # Free-running: from the first output (vector 0, fold 0) to the last, vectors - 1 periods
    # plus the steps of vector 0 after its first fold.
    first_fold = sum(1 for f, _ in dut.schedule if f == 0)
    span = rep["last_out"] - rep["first_out"] - (dut.steps - first_fold)
    assert span == (rep["vectors"] - 1) * dut.cycles_per_vector, (rep, dut.steps, dut.in_beats)
