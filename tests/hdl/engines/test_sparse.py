"""Sparse CSC engine: bit-exact against the golden model over shapes, PE, index widths,
densities and pruning patterns, weight kinds, thresholds and scores, under random input
gaps and output backpressure (Amaranth simulator); cycle model against measured cycles;
storage; parameter errors; one Verilator build."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl import ir
from hdl.engines.sparse import SparseCSC
from sim import amsim, golden
from sim.random_model import random_thresholds, random_weights

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def reference(w: ir.Weights, codes, in_bits, thresholds=None, bias=None):
    """``sim.golden.layer_forward`` on an ``ir.FC`` with the same CSC weights, cross-checked
    with the IR rule in NumPy."""
    outputs, inputs = w.shape
    layer = ir.FC(name="fc", out_features=outputs, weights=w,
                  bias=None if bias is None else np.asarray(bias, np.int64))
    spec = ir.TensorSpec(shape=(1, 1, inputs), bits=in_bits)
    acc = np.asarray(golden.layer_forward(layer, codes.reshape(len(codes), 1, 1, -1), spec))
    acc = acc.reshape(len(codes), outputs)
    plain = ir.act_values(codes, in_bits) @ w.matrix().T + (0 if bias is None else bias)
    assert np.array_equal(acc, plain), "golden model disagrees with NumPy"
    if thresholds is None:
        return acc
    return np.asarray(golden.threshold(acc, thresholds), np.int64)


def simulate(dut: SparseCSC, codes: np.ndarray, *, seed: int, gap=0.3, stall=0.3):
    """Drive ``codes`` (vectors, inputs) through ``dut``; return (outputs, output cycles).

    The source idles before a beat with probability ``gap``; the sink drops ready with
    probability ``stall`` and checks that a held output beat does not change.
    """
    beats = codes.reshape(-1, dut.simd)
    n_out = len(codes) * dut.local_rows
    limit = 20 * len(codes) * (dut.cycles_per_vector + dut.local_rows + len(beats)) + 200
    got, cycles = amsim.simulate(dut, beats, n_out, seed=seed, gap=gap, stall=stall,
                                 max_cycles=limit)
    return np.array(got).reshape(len(codes), dut.outputs), cycles


def pruned(rng, outputs, inputs, kind, wbits, pattern, density=0.3) -> ir.Weights:
    """Random CSC weights of ``kind`` pruned by ``pattern``."""
    dense = random_weights(rng, outputs, inputs, kind, wbits).matrix()
    if kind == "pot":
        dense = np.where(dense == 0, 1, dense)          # pruning alone decides the zeros
    keep = np.ones(dense.shape, bool)
    if pattern == "random":
        keep = rng.random(dense.shape) < density
    elif pattern == "rows":                              # whole output neurons pruned
        keep[rng.random(outputs) >= density] = False
    elif pattern == "cols":                              # whole inputs pruned
        keep[:, rng.random(inputs) >= density] = False
    elif pattern == "blocks":                            # 2x2 blocks
        blocks = rng.random((-(-outputs // 2), -(-inputs // 2))) < density
        keep = np.kron(blocks, np.ones((2, 2), bool))[:outputs, :inputs]
    elif pattern == "edges":                             # first and last row only: longest gaps
        keep[1:-1] = False
    elif pattern == "empty":
        keep[:] = False
    elif pattern != "full":
        raise ValueError(pattern)
    return ir.Weights.from_matrix(np.where(keep, dense, 0), kind, wbits, sparse=True)


def _bounds(matrix, in_bits, bias):
    lo_a, hi_a = (-1, 1) if in_bits == 1 else (0, (1 << in_bits) - 1)
    pos = np.where(matrix > 0, matrix, 0).sum(1)
    neg = np.where(matrix < 0, matrix, 0).sum(1)
    lo, hi = pos * lo_a + neg * hi_a, pos * hi_a + neg * lo_a
    if bias is not None:
        lo, hi = lo + bias, hi + bias
    return lo, hi


def make(w: ir.Weights, in_bits, pe, simd, index_bits, *, rng, tbits=None, bias=False):
    outputs = w.shape[0]
    b = rng.integers(-20, 21, size=outputs).astype(np.int64) if bias else None
    thresholds = None
    if tbits is not None:
        lo, hi = _bounds(w.matrix(), in_bits, b)
        spread = np.maximum((hi - lo) // 6, 1)
        mid = (lo + hi) // 2
        thresholds = random_thresholds(rng, mid - spread, mid + spread, tbits)
    dut = SparseCSC(w, kind=w.kind, in_bits=in_bits, pe=pe, simd=simd, index_bits=index_bits,
                    thresholds=thresholds, bias=b)
    return dut, thresholds, b


def check(w, in_bits, pe, simd, index_bits, *, seed, vectors=5, tbits=None, bias=False,
          gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    dut, thresholds, b = make(w, in_bits, pe, simd, index_bits, rng=rng, tbits=tbits, bias=bias)
    codes = rng.integers(0, 1 << in_bits, size=(vectors, w.shape[1]))
    codes[0] = (1 << in_bits) - 1                 # extreme vectors reach the range ends
    codes[1] = 0
    got, _ = simulate(dut, codes, seed=seed, gap=gap, stall=stall)
    want = reference(w, codes, in_bits, thresholds, b)
    assert np.array_equal(got, want), f"seed {seed}\n{got}\n!=\n{want}"
    return dut


# kind, wbits, in_bits, outputs, inputs, pe, simd, index_bits, pattern, tbits, bias
CASES = [
    ("ternary", None, 2, 8, 12, 2, 1, 4, "random", 2, True),
    ("ternary", None, 1, 12, 10, 3, 2, 2, "random", None, False),   # ternary x bipolar
    ("ternary", None, 2, 16, 8, 2, 4, 1, "random", None, True),     # index_bits 1: padding
    ("binary", None, 1, 8, 12, 4, 3, 2, "random", 1, False),        # binary x bipolar
    ("binary", None, 3, 6, 8, 1, 2, 4, "rows", None, True),
    ("int", 4, 2, 12, 12, 3, 3, 2, "cols", 2, False),
    ("int", 3, 1, 6, 6, 6, 1, 1, "full", None, True),               # PE = outputs, dense
    ("int", 8, 8, 4, 16, 2, 4, 3, "blocks", None, True),
    ("pot", 4, 2, 16, 12, 2, 2, 2, "random", 2, True),
    ("pot", 5, 3, 8, 8, 4, 4, 4, "edges", None, False),
    ("pot", 4, 1, 24, 6, 3, 1, 1, "edges", 1, False),               # pot x bipolar, padding
    ("ternary", None, 2, 8, 8, 2, 2, 4, "empty", None, True),       # nothing stored
    ("ternary", None, 2, 32, 20, 1, 5, 2, "cols", 2, False),        # empty lanes skipped
    ("int", 2, 4, 20, 9, 5, 9, 1, "random", 3, True),               # one beat per vector
]


@pytest.mark.parametrize("kind,wbits,in_bits,outputs,inputs,pe,simd,index_bits,pattern,tbits,bias",
                         CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_exact(kind, wbits, in_bits, outputs, inputs, pe, simd, index_bits, pattern, tbits, bias, seed):
    rng = np.random.default_rng(100 + seed)
    w = pruned(rng, outputs, inputs, kind, wbits, pattern)
    dut = check(w, in_bits, pe, simd, index_bits, seed=seed, tbits=tbits, bias=bias)
    if pattern == "edges" and index_bits == 1:
        assert dut.padding > 0


def test_dense_matrix_input():
    """An integer matrix of values is converted to CSC by the engine itself."""
    rng = np.random.default_rng(3)
    w = pruned(rng, 8, 10, "ternary", None, "random")
    a = SparseCSC(w.matrix(), kind="ternary", in_bits=2, pe=2, simd=2, index_bits=2)
    b = SparseCSC(w, kind="ternary", in_bits=2, pe=2, simd=2, index_bits=2)
    b._MustUse__silence = True                      # built only for its figures
    assert a.storage_bits == b.storage_bits and a.cycles_per_vector == b.cycles_per_vector
    codes = rng.integers(0, 4, size=(4, 10))
    got, _ = simulate(a, codes, seed=4)
    assert np.array_equal(got, reference(w, codes, 2))


# --- storage and the cycle model, from plain loops -----------------------------------

def loop_storage(matrix, pe, index_bits):
    """Per PE and column: entry count including padding, by the EIE rule in plain loops."""
    outputs, inputs = matrix.shape
    counts = np.zeros((inputs, pe), np.int64)
    padding = 0
    for j in range(inputs):
        for p in range(pe):
            prev = -1
            for lr in range(outputs // pe):
                if matrix[lr * pe + p, j] == 0:
                    continue
                gap = lr - prev - 1
                pads = gap // (1 << index_bits)           # one pad per 2**b rows skipped
                counts[j, p] += pads + 1
                padding += pads
                prev = lr
    return counts, padding


@pytest.mark.parametrize("index_bits", [1, 2, 4])
@pytest.mark.parametrize("simd", [1, 4])
def test_cycle_model_and_storage(index_bits, simd):
    rng = np.random.default_rng(11)
    w = pruned(rng, 32, 24, "pot", 4, "random", density=0.2)
    m = w.matrix()
    dut = SparseCSC(w, kind="pot", in_bits=2, pe=4, simd=simd, index_bits=index_bits)
    counts, padding = loop_storage(m, 4, index_bits)
    assert np.array_equal(dut.column_counts, counts) and dut.padding == padding
    lockstep = sequencer = 0
    for beat in range(24 // simd):
        lockstep += max(1, sum(counts[j].max() for j in range(beat * simd, (beat + 1) * simd)))
        sequencer += max(1, sum(counts[j].max() > 0 for j in range(beat * simd, (beat + 1) * simd)))
    assert dut.lockstep_cycles == lockstep and dut.sequencer_cycles == sequencer
    bound = max(sequencer, max(max(1, counts[:, p].sum()) for p in range(4)), 32 // 4)
    assert dut.bound_cycles == bound <= dut.cycles_per_vector
    nnz = int(np.count_nonzero(m))
    vbits = dut.value_bits
    assert dut.storage_bits["values"] == nnz * vbits
    assert dut.storage_bits["indices"] == nnz * index_bits
    assert dut.storage_bits["padding"] == padding * (vbits + index_bits)
    assert dut.storage_bits["total"] == sum(v for k, v in dut.storage_bits.items() if k != "total")
    # every stored entry decodes back to the matrix
    for p in range(4):
        e = dut.entries[p]
        k = 0
        for j in range(24):
            prev = -1
            for _ in range(counts[j, p]):
                delta, value = e[k]
                prev += delta + 1
                assert value * dut.scale == m[prev * 4 + p, j] or value == 0
                k += 1
        assert k == len(e)


def loop_trace(self, vectors: int) -> list[int]:
    """``SparseCSC.cycle_trace`` written as a plain clock-by-clock loop: sequencer,
    activation queues, PEs, bank flags and drain (``self`` is the engine)."""
    pe, simd, depth, rows_l = self.pe, self.simd, self.queue_depth, self.local_rows
    counts, last_columns = self.column_counts, self.last_columns
    steps = self.column_steps.reshape(self.beats, simd)
    nonempty = [[s for s in range(simd) if steps[b, s] > 0] for b in range(self.beats)]
    first = [ne[0] if ne else simd for ne in nonempty]
    queues = [[] for _ in range(pe)]
    k, bank = [0] * pe, [0] * pe
    done = [[0, 0] for _ in range(pe)]
    end1 = [None] * pe                      # stage-1 end-of-vector flag: its bank
    beat, lane, left = 0, first[0], vectors * self.beats
    drain_bank, fold = 0, 0
    trace, cycle = [], 0
    while len(trace) < vectors * rows_l:
        full = [all(d[b] for d in done) for b in range(2)]
        drain_valid = full[drain_bank]
        drain_done = drain_valid and fold == rows_l - 1
        pops, new_end1 = [False] * pe, [None] * pe
        for p in range(pe):
            q = queues[p]
            freed = drain_done and drain_bank == bank[p]
            if q and not (done[p][bank[p]] and not freed):
                c, end = q[0]
                last = c == 0 or k[p] == c - 1
                k[p] = 0 if last else k[p] + 1
                pops[p] = last
                if last and end:
                    new_end1[p] = bank[p]
                    bank[p] ^= 1
        pushes = [None] * pe
        if left:
            empty = lane == simd
            j = beat * simd + (0 if empty else lane)
            beat_end = empty or next((t for t in nonempty[beat] if t > lane), simd) == simd
            vec_end = beat_end and beat == self.beats - 1
            for p in range(pe):
                c = 0 if empty else int(counts[j, p])
                if c:
                    pushes[p] = (c, j == last_columns[p])
                elif vec_end and last_columns[p] < 0:
                    pushes[p] = (0, True)
            if not any(pushes[p] is not None and len(queues[p]) == depth for p in range(pe)):
                if beat_end:
                    beat = 0 if beat == self.beats - 1 else beat + 1
                    lane = first[beat]
                    left -= 1
                else:
                    lane = next(t for t in nonempty[beat] if t > lane)
            else:
                pushes = [None] * pe
        for p in range(pe):
            if end1[p] is not None:
                done[p][end1[p]] = 1
            if drain_done:
                done[p][drain_bank] = 0
            if pops[p]:
                queues[p].pop(0)
            if pushes[p] is not None:
                queues[p].append(pushes[p])
        end1 = new_end1
        if drain_valid:
            trace.append(cycle)
            fold = 0 if drain_done else fold + 1
        if drain_done:
            drain_bank ^= 1
        cycle += 1
        if cycle > 1000 * vectors * (self.bound_cycles + 2):
            raise RuntimeError("sparse cycle model did not terminate")   # a bug
    return trace


@pytest.mark.parametrize("seed", range(6))
def test_cycle_trace_against_loop(seed):
    """The per-item cycle model equals the clock-by-clock loop on random configurations."""
    rng = np.random.default_rng(300 + seed)
    pe, simd = int(rng.choice([1, 2, 4, 8])), int(rng.choice([1, 2, 3]))
    outputs, inputs = pe * int(rng.integers(1, 6)), simd * int(rng.integers(2, 12))
    pattern = str(rng.choice(["random", "rows", "cols", "edges", "empty", "full"]))
    w = pruned(rng, outputs, inputs, "ternary", None, pattern, float(rng.uniform(0.05, 0.6)))
    dut = SparseCSC(w, kind="ternary", in_bits=2, pe=pe, simd=simd,
                    index_bits=int(rng.integers(1, 4)), queue_depth=int(rng.integers(1, 5)))
    assert dut.cycle_trace(6) == loop_trace(dut, 6)


@pytest.mark.parametrize("outputs,inputs,pe,simd,index_bits,pattern,density,depth", [
    (16, 24, 4, 1, 2, "random", 0.3, 8),      # PE-bound
    (32, 24, 8, 1, 2, "random", 0.3, 1),      # queue-full stalls (depth 1: an item per 2 cycles)
    (16, 24, 4, 2, 4, "random", 0.2, 2),      # sequencer and PEs close
    (12, 16, 2, 4, 1, "cols", 0.4, 4),        # empty lanes, padding
    (24, 8, 1, 2, 4, "random", 0.2, 8),       # drain-bound: outputs / pe > work
    (12, 12, 1, 1, 4, "empty", 0.0, 8),       # only end-of-vector items
    (8, 16, 2, 2, 2, "rows", 0.5, 3),         # a PE without entries
])
def test_cycles_measured(outputs, inputs, pe, simd, index_bits, pattern, density, depth):
    """Free-running source and sink: every output beat at the cycle the model predicts
    (up to a constant latency), so measured cycles per vector == ``cycles_per_vector``."""
    rng = np.random.default_rng(17)
    w = pruned(rng, outputs, inputs, "ternary", None, pattern, density)
    dut = SparseCSC(w, kind="ternary", in_bits=2, pe=pe, simd=simd, index_bits=index_bits,
                    queue_depth=depth)
    vectors = 8
    codes = rng.integers(0, 4, size=(vectors, inputs))
    got, cycles = simulate(dut, codes, seed=3, gap=0.0, stall=0.0)
    assert np.array_equal(got, reference(w, codes, 2))
    model = dut.cycle_trace(vectors)
    assert len(set(np.subtract(cycles, model).tolist())) == 1, (cycles, model)
    rows = dut.local_rows
    ends = cycles[rows - 1::rows]                   # each vector's last output beat
    assert -(-(ends[3] - ends[1]) // 2) == dut.cycles_per_vector
    assert dut.bound_cycles <= dut.cycles_per_vector
    if depth >= 2:
        assert dut.cycles_per_vector <= max(dut.lockstep_cycles, rows)


def test_speedup_scales_with_density():
    """Fewer non-zeros, fewer cycles: the cycle model of the actual weights."""
    rng = np.random.default_rng(5)
    base = rng.choice(np.array([-1, 1]), size=(64, 64))
    mask = rng.random((64, 64))
    cyc = [SparseCSC(np.where(mask < d, base, 0), kind="ternary", in_bits=2, pe=4).cycles_per_vector
           for d in (1.0, 0.5, 0.1)]
    assert cyc[0] > cyc[1] > cyc[2]
    assert cyc[0] >= 64 * 16 and cyc[2] < 64 * 16 // 4


def test_from_layer():
    rng = np.random.default_rng(5)
    w = random_weights(rng, 6, 12, "ternary", density=0.4)
    layer = ir.FC(name="fc", out_features=6, weights=w, bias=rng.integers(-3, 4, 6).astype(np.int64))
    lo, hi = ir.layer_acc_range(layer, 2)
    thr = ir.Threshold(name="t", bits=2, thresholds=random_thresholds(rng, lo, hi, 2))
    dut = SparseCSC.from_layer(layer, thr, in_bits=2, pe=3, simd=4, index_bits=2)
    codes = rng.integers(0, 4, size=(5, 12))
    got, _ = simulate(dut, codes, seed=9)
    assert np.array_equal(got, reference(w, codes, 2, thr.thresholds, layer.bias))
    assert dut.mode == "sparse"
    # a conv layer is its im2col matrix; dense IR weights are converted to CSC
    conv = ir.Conv(name="c", out_channels=4, kernel=3, weights=random_weights(rng, 4, 18, "binary"))
    dut = SparseCSC.from_layer(conv, None, in_bits=1, pe=2, simd=9)
    assert dut.inputs == 18 and dut.nnz == 4 * 18
    with pytest.raises(TypeError, match="layer must be an ir.Conv or ir.FC"):
        SparseCSC.from_layer(thr, None, in_bits=2, pe=1)


def test_conv_windows():
    """A pruned conv: im2col vectors from the golden model, one per output pixel."""
    rng = np.random.default_rng(8)
    w = random_weights(rng, 4, 3 * 3 * 2, "pot", 4, density=0.3)
    conv = ir.Conv(name="c", out_channels=4, kernel=3, padding=1, weights=w)
    x = rng.integers(0, 4, size=(1, 4, 4, 2))
    spec = ir.TensorSpec(shape=(4, 4, 2), bits=2)
    want = np.asarray(golden.layer_forward(conv, x, spec)).reshape(-1, 4)
    cols = np.asarray(golden.im2col(x, 3, 1, 1, 0)).reshape(-1, 18)
    dut = SparseCSC.from_layer(conv, None, in_bits=2, pe=2, simd=2)
    got, _ = simulate(dut, cols, seed=2)
    assert np.array_equal(got, want)


def test_reset_mid_vector():
    """A reset in the middle of a vector leaves no partial sums behind: the accumulator
    memories (which a reset does not clear) are zeroed before the next vector."""
    from amaranth.hdl import ClockDomain, Module

    rng = np.random.default_rng(12)
    w = pruned(rng, 8, 12, "ternary", None, "random", 0.6)
    dut = SparseCSC(w, kind="ternary", in_bits=2, pe=2, simd=2, index_bits=2)
    top = Module()
    top.domains.sync = cd = ClockDomain()
    top.submodules.dut = dut
    codes = rng.integers(0, 4, size=(3, 12))
    got = []

    async def source(ctx):
        ctx.set(dut.i.payload, [3, 3])               # most of a vector of large codes
        ctx.set(dut.i.valid, 1)
        taken = 0
        while taken < 4:
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            taken += ready
        for _ in range(3):
            await ctx.tick()                         # let the PEs accumulate
        ctx.set(dut.i.valid, 0)
        ctx.set(cd.rst, 1)
        await ctx.tick()
        ctx.set(cd.rst, 0)
        for beat in codes.reshape(-1, 2):
            ctx.set(dut.i.payload, [int(v) for v in beat])
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(400):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append([int(v) for v in payload])

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert np.array_equal(np.array(got).reshape(3, 8), reference(w, codes, 2))


def test_accumulator_width_from_weights():
    w = np.zeros((2, 64), np.int64)
    w[0, ::2] = 7
    w[1, 1::2] = -8
    dut = SparseCSC(w, kind="int", wbits=4, in_bits=4, pe=1)
    assert dut.acc_shape.width == (32 * 8 * 15).bit_length() + 1
    codes = np.array([[15] * 64, [0] * 64])
    got, _ = simulate(dut, codes, seed=1)
    assert np.array_equal(got, reference(ir.Weights.from_matrix(w, "int", 4, sparse=True), codes, 4))
    pot = SparseCSC(np.array([[4, -8, 0, 4]]), kind="pot", in_bits=2, pe=1, simd=2)
    assert (pot.emin, pot.emax) == (2, 3) and pot.value_bits == 1 + 2


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(simd=7), ValueError, "SIMD must divide the input width 288, not 7"),
    (dict(pe=5), ValueError, "PE must divide the output count 64, not 5"),
    (dict(pe=0), ValueError, "PE must be at least 1, not 0"),
    (dict(simd=2.0), TypeError, "SIMD must be an integer"),
    (dict(index_bits=0), ValueError, "index_bits must be in 1..16, not 0"),
    (dict(index_bits=17), ValueError, "index_bits must be in 1..16, not 17"),
    (dict(index_bits="4"), TypeError, "index_bits must be an integer"),
    (dict(queue_depth=0), ValueError, "queue_depth must be in 1..64, not 0"),
    (dict(in_bits=0), ValueError, "in_bits must be in 1..16, not 0"),
    (dict(kind="float"), ValueError, "kind must be one of binary, ternary, int, pot"),
    (dict(kind="binary", wbits=None), ValueError, "binary weights must be -1 or \\+1 \\(0 where pruned\\)"),
    (dict(kind="ternary", wbits=None), ValueError, "ternary weights must be -1, 0 or \\+1"),
    (dict(kind="int", wbits=2), ValueError, "int weights must be in -2..1 for wbits 2"),
    (dict(kind="pot", wbits=None), ValueError, "pot weights must be 0 or"),
    (dict(thresholds=np.zeros((64, 2), np.int64)), ValueError, "thresholds must have shape \\(64, 2\\*\\*bits - 1\\)"),
    (dict(thresholds=np.array([[2, 1, 0]] * 64)), ValueError, "non-decreasing"),
    (dict(bias=np.zeros(3, np.int64)), ValueError, "bias must have shape \\(64,\\)"),
])
def test_parameter_errors(kwargs, exc, match):
    w = np.zeros((64, 288), np.int64)
    w[::3, ::5] = 3
    args = dict(kind="int", wbits=4, in_bits=2, pe=4, simd=16) | kwargs
    with pytest.raises(exc, match=match):
        SparseCSC(w, **args)


def test_weight_errors():
    with pytest.raises(TypeError, match="weights must be an ir.Weights in CSC form or an integer matrix"):
        SparseCSC("w", kind="ternary", in_bits=2, pe=1)
    with pytest.raises(TypeError, match="weights must be an integer array"):
        SparseCSC(np.ones((2, 2)), kind="ternary", in_bits=2, pe=1)
    dense = ir.Weights.from_matrix(np.ones((2, 2), np.int64), "ternary")
    with pytest.raises(ValueError, match="weights must be an ir.Weights in CSC form or an integer matrix"):
        SparseCSC(dense, kind="ternary", in_bits=2, pe=1)
    with pytest.raises(ValueError, match="kind 'int' does not match the weights' kind 'ternary'"):
        SparseCSC(dense.to_csc(), kind="int", in_bits=2, pe=1)


# --- Verilator (cocotb): one build, many seeds -------------------------------------------

def test_cocotb():
    """pot4 weights x 2-bit activations, 25% random density, index_bits 2 (padding entries),
    PE 4, SIMD 2, thresholds with bias: 6 seeds of 30 vectors, then free-running cycles."""
    from sim.harness import run_cocotb

    rng = np.random.default_rng(21)
    w = pruned(rng, 32, 48, "pot", 4, "random", density=0.25)
    dut, thresholds, b = make(w, 2, 4, 2, 2, rng=rng, tbits=2, bias=True)
    assert dut.padding > 0
    p = dict(kind=w.kind, wbits=w.bits, shape=list(w.shape), values=w.values, rows=w.rows,
             colptr=w.colptr, in_bits=2, pe=4, simd=2, thresholds=thresholds, bias=b,
             out_bits=dut.out_shape.width, out_signed=dut.out_shape.signed, vectors=30,
             cycles_per_vector=dut.cycles_per_vector)
    result = run_cocotb(dut, name="sparse_pot4_pe4_simd2_ib2", test_module="tests.hdl.engines.cocotb_sparse",
                        parameters=p, seeds=range(1, 7), timeout_s=300)
    assert "stalls" in " ".join(result.tests) and "free_running" in " ".join(result.tests)
    rep = result.reports[result.seeds[-1]]
    # Free-running: first and last output beat as the cycle model predicts.
    trace = dut.cycle_trace(rep["vectors"])
    assert rep["last_out"] - rep["first_out"] == trace[-1] - trace[0], (rep, trace[0], trace[-1])
