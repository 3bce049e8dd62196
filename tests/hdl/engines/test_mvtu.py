"""MVTU: bit-exact against the golden model in every mode and folding, under random input
gaps and output backpressure (Amaranth simulator); throughput; parameter errors."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl import ir
from hdl.engines.mvtu import MVTU, MVTUSpec
from sim import amsim
from sim.random_model import random_thresholds, random_weights

def reference(weights, codes, in_bits, thresholds=None, bias=None, *, kind="int", wbits=8):
    """The IR rule in NumPy, cross-checked with ``sim.golden.layer_forward`` on an ``ir.FC``."""
    acc = ir.act_values(codes, in_bits) @ weights.T.astype(np.int64)
    if bias is not None:
        acc = acc + bias
    try:
        from sim import golden
    except ImportError:
        golden = None
    if golden is not None:
        layer = ir.FC(name="fc", out_features=weights.shape[0],
                      weights=ir.Weights.from_matrix(weights, kind, wbits),
                      bias=None if bias is None else np.asarray(bias, np.int64))
        spec = ir.TensorSpec(shape=(1, 1, weights.shape[1]), bits=in_bits)
        gold = np.asarray(golden.layer_forward(layer, codes.reshape(len(codes), 1, 1, -1), spec))
        assert np.array_equal(gold.reshape(acc.shape), acc), "golden model disagrees with NumPy"
    if thresholds is None:
        return acc
    return (acc[:, :, None] >= thresholds[None]).sum(axis=2)


def simulate(dut: MVTU, codes: np.ndarray, *, seed: int, gap=0.3, stall=0.3):
    """Drive ``codes`` (vectors, inputs) through ``dut``; return (outputs, output cycles).

    The source idles before a beat with probability ``gap``; the sink drops ready with
    probability ``stall`` and checks that a held output beat does not change.
    """
    beats = codes.reshape(-1, dut.simd)
    n_out = len(codes) * dut.neuron_folds
    got, cycles = amsim.simulate(dut, beats, n_out, seed=seed, gap=gap, stall=stall,
                                 max_cycles=50 * (len(beats) + n_out) * dut.neuron_folds + 200)
    return np.array(got).reshape(len(codes), dut.outputs), cycles


def random_matrix(rng, outputs, inputs, kind, wbits=None):
    return random_weights(rng, outputs, inputs, kind, wbits).matrix()


def check(weights, kind, wbits, in_bits, pe, simd, *, seed, vectors=6, tbits=None, bias=False,
          gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    outputs, inputs = weights.shape
    b = rng.integers(-20, 21, size=outputs).astype(np.int64) if bias else None
    thresholds = None
    if tbits is not None:
        lo, hi = _bounds(weights, in_bits, b)
        spread = np.maximum((hi - lo) // 6, 1)
        mid = (lo + hi) // 2
        thresholds = random_thresholds(rng, mid - spread, mid + spread, tbits)
    dut = MVTU(weights, kind=kind, wbits=wbits, in_bits=in_bits, pe=pe, simd=simd,
               thresholds=thresholds, bias=b)
    codes = rng.integers(0, 1 << in_bits, size=(vectors, inputs))
    codes[0] = (1 << in_bits) - 1                 # extreme vectors reach the range ends
    if vectors > 1:
        codes[1] = 0
    got, _ = simulate(dut, codes, seed=seed, gap=gap, stall=stall)
    want = reference(weights, codes, in_bits, thresholds, b, kind=kind,
                     wbits=dut.wbits if kind in ("int", "pot") else None)
    assert np.array_equal(got, want), f"seed {seed}: mode {dut.mode}\n{got}\n!=\n{want}"
    return dut


def _bounds(weights, in_bits, bias):
    lo_a, hi_a = (-1, 1) if in_bits == 1 else (0, (1 << in_bits) - 1)
    pos = np.where(weights > 0, weights, 0).sum(1)
    neg = np.where(weights < 0, weights, 0).sum(1)
    lo, hi = pos * lo_a + neg * hi_a, pos * hi_a + neg * lo_a
    if bias is not None:
        lo, hi = lo + bias, hi + bias
    return lo, hi


# kind, wbits, in_bits, outputs, inputs, pe, simd, tbits, bias
CASES = [
    ("binary", None, 1, 8, 12, 2, 4, 1, False),       # xnor
    ("binary", None, 1, 6, 10, 6, 10, 2, True),       # xnor, PE = outputs, SIMD = inputs
    ("binary", None, 1, 4, 6, 1, 1, None, True),      # xnor scores, PE = SIMD = 1
    ("binary", None, 2, 6, 8, 3, 4, 2, False),        # binary weights x 2-bit
    ("binary", None, 3, 4, 9, 2, 3, None, True),      # binary weights x 3-bit scores
    ("ternary", None, 2, 6, 8, 2, 2, 3, True),
    ("ternary", None, 1, 4, 8, 4, 4, 1, False),       # ternary x bipolar
    ("int", 4, 2, 4, 12, 2, 6, 2, False),
    ("int", 3, 1, 6, 6, 3, 2, 2, True),               # int x bipolar
    ("int", 8, 8, 3, 4, 1, 2, None, True),            # first-layer style int8 x 8-bit scores
    ("int", 2, 4, 4, 8, 4, 8, 3, False),
    ("pot", 4, 2, 6, 8, 2, 4, 2, True),
    ("pot", 5, 3, 4, 6, 4, 3, None, False),
    ("pot", 4, 1, 4, 8, 2, 2, 1, False),              # pot x bipolar
    ("pot", 5, 4, 3, 5, 1, 5, 3, True),
    # one synapse fold, several neuron folds: the input register holds the vector
    ("binary", None, 1, 8, 16, 2, 16, 1, False),
    ("pot", 4, 2, 6, 8, 2, 8, 2, True),
    # wide SIMD: a pipeline register inside the adder tree, 64-lane popcounts
    ("int", 4, 4, 4, 64, 2, 32, 3, True),
    ("pot", 4, 2, 4, 48, 2, 24, None, True),
    ("binary", None, 4, 4, 128, 2, 64, 3, False),
    ("binary", None, 1, 4, 128, 2, 64, None, True),
    # 256-lane popcounts: a register inside the tree
    ("binary", None, 1, 4, 512, 2, 256, 1, False),
    ("binary", None, 2, 2, 512, 1, 256, 2, True),
]


@pytest.mark.parametrize("kind,wbits,in_bits,outputs,inputs,pe,simd,tbits,bias", CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_exact(kind, wbits, in_bits, outputs, inputs, pe, simd, tbits, bias, seed):
    rng = np.random.default_rng(100 + seed)
    weights = random_matrix(rng, outputs, inputs, kind, wbits)
    check(weights, kind, wbits, in_bits, pe, simd, seed=seed, tbits=tbits, bias=bias)


def test_modes():
    w = np.ones((2, 2), np.int64)
    assert MVTUSpec(w, kind="binary", in_bits=1, pe=1, simd=1).mode == "xnor"
    assert MVTUSpec(w, kind="binary", in_bits=2, pe=1, simd=1).mode == "binary"
    assert MVTUSpec(w, kind="ternary", in_bits=2, pe=1, simd=1).mode == "int"
    assert MVTUSpec(w, kind="int", wbits=4, in_bits=2, pe=1, simd=1).mode == "int"
    assert MVTUSpec(w, kind="pot", in_bits=2, pe=1, simd=1).mode == "pot"


def test_built_from_the_description():
    """The MVTU's ports and figures are its description's; a spec and parameters
    together, or something else as spec, are refused before any component exists."""
    w = np.arange(-4, 4, dtype=np.int64).reshape(2, 4)
    spec = MVTUSpec(w, kind="int", wbits=4, in_bits=2, pe=2, simd=2, ram_style="block")
    dut = MVTU(spec=spec, primitives="generic")
    assert dut.spec is spec and dut.signature == spec.signature and dut.primitives == "generic"
    assert (dut.cycles_per_vector, dut.latency, dut.weight_memory) == (2, spec.latency, (2, 8, 2))
    assert spec.output.out_shape == spec.out_shape
    from amaranth.back import rtlil
    assert rtlil.convert(dut).count('"block"') == 2         # the weight memory per PE
    with pytest.raises(TypeError, match="give either a spec or the parameters of MVTU, not both"):
        MVTU(w, spec=spec)
    with pytest.raises(TypeError, match="spec must be a MVTUSpec, not dict"):
        MVTU(spec={})
    with pytest.raises(ValueError, match="primitives must be one of auto, generic, xilinx"):
        MVTU(spec=spec, primitives="lattice")


@pytest.mark.parametrize("kind,in_bits,outputs,inputs,pe,simd", [
    ("binary", 1, 8, 16, 2, 4),
    ("int", 4, 4, 6, 4, 2),
    ("pot", 2, 4, 8, 4, 8),          # one step per vector
    ("binary", 1, 8, 16, 2, 16),     # one synapse fold, four neuron folds
])
def test_throughput(kind, in_bits, outputs, inputs, pe, simd):
    """Free-running source and sink: steady-state cycles per vector = NF * SF."""
    rng = np.random.default_rng(7)
    weights = random_matrix(rng, outputs, inputs, kind, 4 if kind != "binary" else None)
    dut = MVTU(weights, kind=kind, in_bits=in_bits, pe=pe, simd=simd)
    vectors = 24
    codes = rng.integers(0, 1 << in_bits, size=(vectors, inputs))
    got, cycles = simulate(dut, codes, seed=3, gap=0.0, stall=0.0)
    assert np.array_equal(got, reference(weights, codes, in_bits))
    nf = dut.neuron_folds
    last = cycles[nf - 1::nf]                      # cycle of each vector's last output beat
    steady = (last[-1] - last[3]) / (len(last) - 1 - 3)
    assert dut.cycles_per_vector == (outputs // pe) * (inputs // simd)
    assert abs(steady - dut.cycles_per_vector) <= 0.02 * dut.cycles_per_vector, steady


def test_from_layer():
    rng = np.random.default_rng(5)
    w = random_weights(rng, 6, 12, "ternary")
    layer = ir.FC(name="fc", out_features=6, weights=w, bias=rng.integers(-3, 4, 6).astype(np.int64))
    lo, hi = ir.layer_acc_range(layer, 2)
    thr = ir.Threshold(name="t", bits=2, thresholds=random_thresholds(rng, lo, hi, 2))
    dut = MVTU.from_layer(layer, thr, in_bits=2, pe=3, simd=4)
    codes = rng.integers(0, 4, size=(5, 12))
    got, _ = simulate(dut, codes, seed=9)
    assert np.array_equal(got, reference(w.matrix(), codes, 2, thr.thresholds, layer.bias))
    conv = ir.Conv(name="c", out_channels=4, kernel=3, weights=random_weights(rng, 4, 18, "binary"))
    spec = MVTUSpec.from_layer(conv, None, in_bits=1, pe=2, simd=9)
    assert spec.mode == "xnor" and spec.cycles_per_vector == 4


def test_accumulator_width_from_weights():
    """Widths come from the actual weights: the extreme vectors give the extreme sums."""
    w = np.full((2, 64), 7, np.int64)
    w[1] = -8
    dut = MVTU(w, kind="int", wbits=4, in_bits=4, pe=2, simd=8)
    assert dut.acc_shape.width == (64 * 8 * 15).bit_length() + 1
    codes = np.array([[15] * 64, [0] * 64])
    got, _ = simulate(dut, codes, seed=1)
    assert np.array_equal(got, reference(w, codes, 4))
    pot = MVTUSpec(np.array([[4, -8, 0, 4]]), kind="pot", in_bits=2, pe=1, simd=2)
    assert (pot.emin, pot.emax) == (2, 3) and pot.weight_bits == 1 + 2


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(simd=7), ValueError, "SIMD must divide the input width 288, not 7"),
    (dict(pe=5), ValueError, "PE must divide the output count 64, not 5"),
    (dict(pe=0), ValueError, "PE must be at least 1, not 0"),
    (dict(simd=2.0), TypeError, "SIMD must be an integer"),
    (dict(in_bits=0), ValueError, "in_bits must be in 1..16, not 0"),
    (dict(kind="float"), ValueError, "kind must be one of binary, ternary, int, pot"),
    (dict(kind="ternary", wbits=None), ValueError, "ternary weights must be -1, 0 or \\+1"),
    (dict(kind="int", wbits=2), ValueError, "int weights must be in -2..1 for wbits 2"),
    (dict(kind="pot", wbits=None), ValueError, "pot weights must be 0 or"),
    (dict(thresholds=np.zeros((64, 2), np.int64)), ValueError, "thresholds must have shape \\(64, 2\\*\\*bits - 1\\)"),
    (dict(thresholds=np.array([[2, 1, 0]] * 64)), ValueError, "non-decreasing"),
    (dict(bias=np.zeros(3, np.int64)), ValueError, "bias must have shape \\(64,\\)"),
])
@pytest.mark.parametrize("cls", [MVTUSpec, MVTU])
def test_parameter_errors(cls, kwargs, exc, match):
    """The description refuses bad parameters; the MVTU's constructor, which makes the
    description first, with the same message."""
    w = np.full((64, 288), 3, np.int64)
    args = dict(kind="int", wbits=4, in_bits=2, pe=4, simd=16) | kwargs
    with pytest.raises(exc, match=match):
        cls(w, **args)


@pytest.mark.parametrize("cls", [MVTUSpec, MVTU])
def test_binary_weight_errors(cls):
    with pytest.raises(ValueError, match="binary weights must all be -1 or \\+1"):
        cls(np.zeros((2, 2), np.int64), kind="binary", in_bits=1, pe=1, simd=1)
    with pytest.raises(TypeError, match="weights must be an integer array"):
        cls(np.ones((2, 2)), kind="binary", in_bits=1, pe=1, simd=1)


# --- Verilator (cocotb): two builds, many seeds -----------------------------------------

COCOTB = {
    # XNOR on hdl.engines.popcount's tree, thresholds (2-bit codes) with bias folded in.
    "xnor": dict(kind="binary", wbits=None, in_bits=1, outputs=16, inputs=64, pe=4, simd=16,
                 tbits=2, bias=True),
    # Power-of-two 5-bit codes x 3-bit activations, integer scores with bias.
    "pot": dict(kind="pot", wbits=5, in_bits=3, outputs=12, inputs=24, pe=3, simd=8,
                tbits=None, bias=True),
}


@pytest.mark.parametrize("config", sorted(COCOTB))
def test_cocotb(config):
    from sim.harness import run_cocotb

    c = COCOTB[config]
    rng = np.random.default_rng(21)
    weights = random_matrix(rng, c["outputs"], c["inputs"], c["kind"], c["wbits"])
    bias = rng.integers(-9, 10, size=c["outputs"]).astype(np.int64) if c["bias"] else None
    thresholds = None
    if c["tbits"]:
        lo, hi = _bounds(weights, c["in_bits"], bias)
        spread = np.maximum((hi - lo) // 6, 1)
        thresholds = random_thresholds(rng, (lo + hi) // 2 - spread, (lo + hi) // 2 + spread, c["tbits"])
    dut = MVTU(weights, kind=c["kind"], wbits=c["wbits"], in_bits=c["in_bits"], pe=c["pe"],
               simd=c["simd"], thresholds=thresholds, bias=bias)
    p = dict(weights=weights, kind=c["kind"], wbits=dut.wbits, in_bits=c["in_bits"], pe=c["pe"],
             simd=c["simd"], out_bits=dut.out_shape.width, out_signed=dut.out_shape.signed,
             vectors=30)
    if bias is not None:
        p["bias"] = bias
    if thresholds is not None:
        p["thresholds"] = thresholds
    result = run_cocotb(dut, name=f"mvtu_{config}", test_module="tests.hdl.engines.cocotb_mvtu",
                        parameters=p, seeds=range(1, 7), timeout_s=300)
    assert "stalls" in " ".join(result.tests) and "free_running" in " ".join(result.tests)
    rep = result.reports[result.seeds[-1]]
    # Free-running: first output = fold 0 of vector 0, last = last fold of the last vector.
    span = rep["last_out"] - rep["first_out"] - (dut.neuron_folds - 1) * dut.synapse_folds
    steady = span / (rep["vectors"] - 1)
    assert abs(steady - dut.cycles_per_vector) <= 0.02 * dut.cycles_per_vector, rep


@pytest.mark.parametrize("kind,in_bits", [("binary", 1), ("pot", 2)])
def test_extreme_thresholds(kind, in_bits):
    """Thresholds far outside the reachable range (never / always reached) stay exact."""
    rng = np.random.default_rng(8)
    w = random_matrix(rng, 4, 8, kind, 4 if kind == "pot" else None)
    big = np.iinfo(np.int64).max // 2
    t = np.array([[-big, -big, 0], [0, big, big], [-big, 0, big], [-3, -1, 2]], np.int64)
    dut = MVTU(w, kind=kind, in_bits=in_bits, pe=2, simd=4, thresholds=t, bias=np.arange(4))
    codes = rng.integers(0, 1 << in_bits, size=(6, 8))
    got, _ = simulate(dut, codes, seed=4)
    assert np.array_equal(got, reference(w, codes, in_bits, t, np.arange(4), kind=kind,
                                         wbits=4 if kind == "pot" else None))


@pytest.mark.parametrize("kind,wbits,in_bits,simd,tbits,stages", [
    ("binary", None, 1, 64, 1, 1),
    ("binary", None, 2, 32, None, 2),
    ("int", 4, 4, 8, 2, 2),               # adder tree of 3 levels
    ("int", 4, 4, 32, None, 3),           # adder tree of 5 levels: one register inside
    ("pot", 4, 2, 16, 2, 1),              # shift-add bit heap: shifter, counters, adder
    ("pot", 4, 2, 64, None, 2),           # taller columns: one register inside the heap
    ("binary", None, 1, 256, 1, 2),       # 256-lane popcount: one register inside
])
def test_latency(kind, wbits, in_bits, simd, tbits, stages):
    """Measured cycles from the last input beat of a vector (``outputs == pe``) to the
    valid output equal the documented ``latency``; ``datapath_stages`` as documented."""
    rng = np.random.default_rng(7)
    weights = random_matrix(rng, 2, 2 * simd, kind, wbits)
    thresholds = None if tbits is None else random_thresholds(rng, np.full(2, -5), np.full(2, 5), tbits)
    dut = MVTU(weights, kind=kind, wbits=wbits, in_bits=in_bits, pe=2, simd=simd,
               thresholds=thresholds)
    assert dut.datapath_stages == stages
    assert dut.latency == 2 + stages + 1 + 2
    measured = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        sent, cycle, last = 0, 0, None
        while True:
            if sent < dut.synapse_folds and ctx.get(dut.i.ready):
                sent += 1
                if sent == dut.synapse_folds:
                    last = cycle
            if ctx.get(dut.o.valid):
                measured.append(cycle - last)
                return
            await ctx.tick()
            cycle += 1
            if sent == dut.synapse_folds:
                ctx.set(dut.i.valid, 0)
            assert cycle < 100

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert measured == [dut.latency], (measured, dut.latency)


@pytest.mark.parametrize("outputs, ram_style, weight_source, read_levels, stages", [
    (8, "auto", "rom", 0, 0),                 # 64 words: one block RAM deep
    (72, "auto", "rom", 2, 1),                # 2,304 words: 5 banks, 2 levels of multiplexer
    (72, "distributed", "rom", 0, 0),         # LUT ROM: registered after the read
    (72, "auto", "stream", 0, 0),             # weight beats arrive registered
])
def test_weight_read_levels(outputs, ram_style, weight_source, read_levels, stages):
    """The multiplexer after block RAMs cascaded in depth takes LUT levels from the
    popcount, which registers inside its tree to stay within the budget."""
    rng = np.random.default_rng(3)
    spec = MVTUSpec(random_matrix(rng, outputs, 1024, "binary", None), kind="binary", in_bits=1,
                    pe=1, simd=32, ram_style=ram_style, weight_source=weight_source)
    assert spec.weight_read_levels == read_levels
    assert spec.popcount_stages == stages and spec.datapath_stages == 1 + stages
