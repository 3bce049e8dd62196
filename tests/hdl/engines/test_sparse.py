"""Sparse engine: bit-exact against the golden model over shapes, PE, SIMD, reach,
densities and pruning patterns, weight kinds, thresholds and scores, under random input
gaps and output backpressure (Amaranth simulator); the spec's cycle model against
measured cycles; word schedule and storage against plain loops; parameter errors on the
spec; one Verilator build."""


import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl import ir
from hdl.engines.sparse import SparseCSC, SparseSpec
from sim import amsim, golden
from sim.random_model import random_thresholds, random_weights


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


def make(w: ir.Weights, in_bits, pe, simd, reach, *, rng, tbits=None, bias=False):
    outputs = w.shape[0]
    b = rng.integers(-20, 21, size=outputs).astype(np.int64) if bias else None
    thresholds = None
    if tbits is not None:
        lo, hi = _bounds(w.matrix(), in_bits, b)
        spread = np.maximum((hi - lo) // 6, 1)
        mid = (lo + hi) // 2
        thresholds = random_thresholds(rng, mid - spread, mid + spread, tbits)
    dut = SparseCSC(w, kind=w.kind, in_bits=in_bits, pe=pe, simd=simd, reach=reach,
                    thresholds=thresholds, bias=b)
    return dut, thresholds, b


def check(w, in_bits, pe, simd, reach, *, seed, vectors=5, tbits=None, bias=False,
          gap=0.3, stall=0.3):
    rng = np.random.default_rng(seed)
    dut, thresholds, b = make(w, in_bits, pe, simd, reach, rng=rng, tbits=tbits, bias=bias)
    codes = rng.integers(0, 1 << in_bits, size=(vectors, w.shape[1]))
    codes[0] = (1 << in_bits) - 1                 # extreme vectors reach the range ends
    codes[1] = 0
    got, _ = simulate(dut, codes, seed=seed, gap=gap, stall=stall)
    want = reference(w, codes, in_bits, thresholds, b)
    assert np.array_equal(got, want), f"seed {seed}\n{got}\n!=\n{want}"
    return dut


# kind, wbits, in_bits, outputs, inputs, pe, simd, reach, pattern, tbits, bias
CASES = [
    ("ternary", None, 2, 8, 12, 2, 1, None, "random", 2, True),
    ("ternary", None, 1, 12, 10, 3, 2, 1, "random", None, False),   # ternary x bipolar
    ("ternary", None, 2, 16, 8, 2, 4, 2, "random", None, True),
    ("binary", None, 1, 8, 12, 4, 3, None, "random", 1, False),     # pruned binary x bipolar
    ("binary", None, 3, 6, 8, 1, 2, None, "rows", None, True),
    ("binary", None, 2, 8, 8, 2, 4, 4, "full", None, False),        # binary, nothing pruned
    ("int", 4, 2, 12, 12, 3, 3, None, "cols", 2, False),
    ("int", 3, 1, 6, 6, 6, 1, None, "full", None, True),            # PE = outputs, dense
    ("int", 8, 8, 4, 16, 2, 4, 1, "blocks", None, True),
    ("pot", 4, 2, 16, 12, 2, 2, None, "random", 2, True),
    ("pot", 5, 3, 8, 8, 4, 4, 2, "edges", None, False),
    ("pot", 4, 1, 24, 6, 3, 1, None, "edges", 1, False),            # pot x bipolar
    ("pot", 4, 4, 8, 16, 2, 8, 4, "random", 3, True),               # 4-bit activations
    ("ternary", None, 2, 8, 8, 2, 2, None, "empty", None, True),    # nothing stored
    ("ternary", None, 2, 32, 20, 1, 5, None, "cols", 2, False),     # empty columns
    ("int", 2, 4, 20, 9, 5, 9, 3, "random", 3, True),               # one beat per vector
]


@pytest.mark.parametrize("kind,wbits,in_bits,outputs,inputs,pe,simd,reach,pattern,tbits,bias", CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_exact(kind, wbits, in_bits, outputs, inputs, pe, simd, reach, pattern, tbits, bias, seed):
    rng = np.random.default_rng(100 + seed)
    w = pruned(rng, outputs, inputs, kind, wbits, pattern)
    check(w, in_bits, pe, simd, reach, seed=seed, tbits=tbits, bias=bias)


def test_spec_and_component():
    """The component builds from a spec or from the spec's parameters, and reads the
    spec's figures as its own; the spec alone builds no hardware."""
    rng = np.random.default_rng(3)
    w = pruned(rng, 8, 10, "ternary", None, "random")
    spec = SparseSpec(w, kind="ternary", in_bits=2, pe=2, simd=2)
    a = SparseCSC(w.matrix(), kind="ternary", in_bits=2, pe=2, simd=2)
    b = SparseCSC(spec=spec)
    assert a.storage_bits == spec.storage_bits and a.cycles_per_vector == b.cycles_per_vector
    assert a.signature == b.signature == spec.signature and b.spec is spec
    codes = rng.integers(0, 4, size=(4, 10))
    got, _ = simulate(b, codes, seed=4)
    assert np.array_equal(got, reference(w, codes, 2))
    got, _ = simulate(a, codes, seed=5)
    assert np.array_equal(got, reference(w, codes, 2))


def test_ram_style_reaches_the_entry_memories():
    """``ram_style`` is the ``rom_style`` attribute of the PEs' entry ROMs; the input
    banks are asked for LUT RAM."""
    from amaranth.back import verilog
    w = np.eye(4, dtype=np.int64)
    text = verilog.convert(SparseCSC(w, kind="ternary", in_bits=2, pe=2, simd=2, ram_style="block"),
                           name="top")
    assert text.count('(* rom_style = "block" *)') == 2                 # one per PE
    assert text.count('(* ram_style = "distributed" *)') == 2           # one per input bank
    auto = verilog.convert(SparseCSC(w, kind="ternary", in_bits=2, pe=2, simd=2), name="top")
    assert "rom_style" not in auto


def test_spec_refusals():
    w = np.eye(4, dtype=np.int64)
    spec = SparseSpec(w, kind="ternary", in_bits=2, pe=2)
    with pytest.raises(TypeError, match="give either a spec or the parameters of SparseCSC"):
        SparseCSC(w, spec=spec)
    with pytest.raises(TypeError, match="spec must be a SparseSpec"):
        SparseCSC(spec="spec")


def test_threshold_row_spanning_int64():
    """A threshold row reaching down to -(2**63)+1 with a bias is accepted (clipped into
    the accumulator's range by the shared domain), and the codes are exact."""
    rng = np.random.default_rng(6)
    w = pruned(rng, 4, 8, "pot", 4, "random", 0.5)
    t = np.array([[-(2 ** 63) + 1, 0, 5]] * 4, np.int64)
    b = np.full(4, 3, np.int64)
    dut = SparseCSC(w, kind="pot", in_bits=2, pe=2, simd=2, thresholds=t, bias=b)
    codes = rng.integers(0, 4, size=(6, 8))
    got, _ = simulate(dut, codes, seed=6)
    assert np.array_equal(got, reference(w, codes, 2, t, b))


# --- schedule, storage and the cycle model, from plain loops -------------------------

def loop_words(matrix, pe, simd, reach):
    """Words per PE by the rule in plain loops: per row, the largest group's
    ``ceil(non-zeros / reach)``, where column ``j`` is in group ``(j % simd) // reach``."""
    outputs, inputs = matrix.shape
    words = [0] * pe
    for c in range(outputs):
        counts = [0] * (simd // reach)
        for j in range(inputs):
            if matrix[c, j]:
                counts[(j % simd) // reach] += 1
        words[c % pe] += max(-(-n // reach) for n in counts)
    return words


@pytest.mark.parametrize("simd,reach", [(1, 1), (4, 4), (4, 1), (6, 2)])
def test_schedule_and_storage(simd, reach):
    rng = np.random.default_rng(11)
    w = pruned(rng, 32, 24, "pot", 4, "random", density=0.2)
    m = w.matrix()
    dut = SparseSpec(w, kind="pot", in_bits=2, pe=4, simd=simd, reach=reach)
    assert dut.pe_words == loop_words(m, 4, simd, reach)
    assert dut.compute_cycles == max(dut.pe_words)
    assert dut.bound_cycles == max(24 // simd, max(dut.pe_words), 32 // 4) <= dut.cycles_per_vector
    nnz = int(np.count_nonzero(m))
    vb, ib = dut.value_bits, dut.index_bits
    assert ib == (24 // simd - 1).bit_length() + (reach - 1).bit_length()
    assert dut.padding == sum(dut.pe_words) * simd - nnz
    assert dut.storage_bits == {"values": nnz * vb, "indices": nnz * ib, "padding": dut.padding * (vb + ib),
                                "pointers": sum(dut.pe_words) * ((8 - 1).bit_length() + 1),
                                "total": nnz * (vb + ib) + dut.padding * (vb + ib)
                                + sum(dut.pe_words) * 4}
    # every memory word decodes back to the matrix: lane l reads bank group(l) + sel
    lw, ab = dut.lane_width, dut.addr_bits
    back = np.zeros_like(m)
    for p, words in enumerate(dut.entry_words()):
        for word in words[:dut.pe_words[p]]:
            row = (word >> (simd * lw)) & 7
            for lane in range(simd):
                f = (word >> (lane * lw)) & ((1 << lw) - 1)
                code, addr, sel = f & ((1 << vb) - 1), (f >> vb) & ((1 << ab) - 1), f >> (vb + ab)
                if code:
                    mag, sign = code & ((1 << (vb - 1)) - 1), code >> (vb - 1)
                    col = addr * simd + lane // reach * reach + sel
                    back[row * 4 + p, col] += (-1 if sign else 1) * (1 << (mag - 1)) * dut.scale
    assert np.array_equal(back, m)


def loop_trace(spec, vectors: int) -> list[int]:
    """``SparseSpec.cycle_trace`` as a plain clock-by-clock loop over the engine's
    control: input banks, compute counter, accumulator banks (busy, full), drain."""
    b_, c_, d_, lat, nb = spec.beats, spec.compute_cycles, spec.local_rows, spec.latency, spec.acc_banks
    in_full, busy, full = [0, 0], [0] * nb, [0] * nb
    wbank = wbeat = rbank = cbank = dbank = fold = 0
    running, k, sent = False, 0, 0
    pipe = []                                   # (cycle the bank is full, bank)
    trace, cycle = [], 0
    while len(trace) < vectors * d_:
        nxt_in_full, nxt_busy, nxt_full = list(in_full), list(busy), list(full)
        # input
        if sent < vectors * b_ and not in_full[wbank]:
            sent += 1
            if wbeat == b_ - 1:
                nxt_in_full[wbank] = 1
                wbank ^= 1
                wbeat = 0
            else:
                wbeat += 1
        # compute
        start = not running and in_full[rbank] and not busy[cbank]
        if running or start:
            idx = k if running else 0
            if start:
                nxt_busy[cbank] = 1
            if idx == c_ - 1:
                nxt_in_full[rbank] = 0
                pipe.append((cycle + lat, cbank))
                rbank ^= 1
                cbank = (cbank + 1) % nb
                running = False
            else:
                running, k = True, idx + 1
        for when, bank in pipe:
            if when == cycle:
                nxt_full[bank] = 1
        # drain
        if full[dbank]:
            trace.append(cycle)
            if fold == d_ - 1:
                nxt_full[dbank] = nxt_busy[dbank] = 0
                dbank = (dbank + 1) % nb
                fold = 0
            else:
                fold += 1
        in_full, busy, full = nxt_in_full, nxt_busy, nxt_full
        cycle += 1
    return trace


@pytest.mark.parametrize("seed", range(6))
def test_cycle_trace_against_loop(seed):
    """The per-vector cycle model equals the clock-by-clock loop on random configurations."""
    rng = np.random.default_rng(300 + seed)
    pe, simd = int(rng.choice([1, 2, 4, 8])), int(rng.choice([1, 2, 3]))
    outputs, inputs = pe * int(rng.integers(1, 6)), simd * int(rng.integers(2, 12))
    pattern = str(rng.choice(["random", "rows", "cols", "edges", "empty", "full"]))
    w = pruned(rng, outputs, inputs, "ternary", None, pattern, float(rng.uniform(0.05, 0.6)))
    dut = SparseSpec(w, kind="ternary", in_bits=2, pe=pe, simd=simd, acc_banks=int(rng.choice([2, 3])))
    assert dut.cycle_trace(6) == loop_trace(dut, 6)


@pytest.mark.parametrize("outputs,inputs,pe,simd,reach,pattern,density,banks", [
    (16, 24, 4, 1, None, "random", 0.3, None),      # compute-bound
    (16, 24, 4, 2, 1, "random", 0.2, None),         # input and compute close
    (12, 16, 2, 4, 2, "cols", 0.4, 2),              # empty columns
    (24, 8, 1, 2, None, "random", 0.2, 2),          # drain-bound: outputs / pe > work
    (24, 8, 1, 2, None, "random", 0.2, 3),
    (12, 12, 1, 1, None, "empty", 0.0, None),       # nothing to compute
    (8, 16, 2, 2, None, "rows", 0.5, None),         # a PE without words
    (32, 144, 2, 8, None, "random", 0.08, 2),       # a conv: few rows, long columns
    (32, 144, 2, 8, None, "random", 0.08, 3),
])
def test_cycles_measured(outputs, inputs, pe, simd, reach, pattern, density, banks):
    """Free-running source and sink, back-to-back vectors: every output beat at the cycle
    the model predicts (up to a constant latency), so measured cycles per vector ==
    ``cycles_per_vector``."""
    rng = np.random.default_rng(17)
    w = pruned(rng, outputs, inputs, "ternary", None, pattern, density)
    dut = SparseCSC(w, kind="ternary", in_bits=2, pe=pe, simd=simd, reach=reach, acc_banks=banks)
    vectors = 2 * SparseSpec.PERIOD_VECTORS
    codes = rng.integers(0, 4, size=(vectors, inputs))
    got, cycles = simulate(dut, codes, seed=3, gap=0.0, stall=0.0)
    assert np.array_equal(got, reference(w, codes, 2))
    model = dut.cycle_trace(vectors)
    assert len(set(np.subtract(cycles, model).tolist())) == 1, (cycles, model)
    rows = dut.local_rows
    ends = cycles[rows - 1::rows]                   # each vector's last output beat
    n = SparseSpec.PERIOD_VECTORS
    assert -(-(ends[2 * n - 1] - ends[n - 1]) // n) == dut.cycles_per_vector
    assert dut.bound_cycles <= dut.cycles_per_vector


def test_auto_reach():
    """By default each lane reads the fewest input banks that cost no cycle."""
    rng = np.random.default_rng(8)
    w = pruned(rng, 32, 144, "pot", 4, "random", density=0.05)
    full = SparseSpec(w, kind="pot", in_bits=4, pe=4, simd=8, reach=8)
    auto = SparseSpec(w, kind="pot", in_bits=4, pe=4, simd=8)
    assert auto.cycles_per_vector == full.cycles_per_vector and auto.reach < 8
    smaller = [r for r in (1, 2, 4) if r < auto.reach]
    assert all(SparseSpec(w, kind="pot", in_bits=4, pe=4, simd=8, reach=r).cycles_per_vector
               > full.cycles_per_vector for r in smaller)
    assert auto.buffer_read_ports == 4 * 8 * auto.reach


def test_speedup_scales_with_density():
    """Fewer non-zeros, fewer cycles: the cycle model of the actual weights; whole rows
    pruned cost nothing."""
    rng = np.random.default_rng(5)
    base = rng.choice(np.array([-1, 1]), size=(64, 64))
    mask = rng.random((64, 64))
    cyc = [SparseSpec(np.where(mask < d, base, 0), kind="ternary", in_bits=2, pe=4, simd=4).cycles_per_vector
           for d in (1.0, 0.5, 0.1)]
    assert cyc[0] > cyc[1] > cyc[2]
    assert cyc[0] >= 16 * 16 and cyc[2] < 16 * 16 // 4
    rows = base.copy()
    rows[rng.random(64) < 0.75] = 0                  # whole output rows pruned
    spec = SparseSpec(rows, kind="ternary", in_bits=2, pe=4, simd=4)
    assert spec.compute_cycles == max(np.count_nonzero(rows[p::4].any(axis=1)) * 16 for p in range(4))


def test_from_layer():
    rng = np.random.default_rng(5)
    w = random_weights(rng, 6, 12, "ternary", density=0.4)
    layer = ir.FC(name="fc", out_features=6, weights=w, bias=rng.integers(-3, 4, 6).astype(np.int64))
    lo, hi = ir.layer_acc_range(layer, 2)
    thr = ir.Threshold(name="t", bits=2, thresholds=random_thresholds(rng, lo, hi, 2))
    dut = SparseCSC.from_layer(layer, thr, in_bits=2, pe=3, simd=4, reach=2)
    codes = rng.integers(0, 4, size=(5, 12))
    got, _ = simulate(dut, codes, seed=9)
    assert np.array_equal(got, reference(w, codes, 2, thr.thresholds, layer.bias))
    assert dut.mode == "sparse"
    # a conv layer is its im2col matrix; dense IR weights are converted to CSC
    conv = ir.Conv(name="c", out_channels=4, kernel=3, weights=random_weights(rng, 4, 18, "binary"))
    dut = SparseSpec.from_layer(conv, None, in_bits=1, pe=2, simd=9)
    assert dut.inputs == 18 and dut.nnz == 4 * 18
    with pytest.raises(TypeError, match="layer must be an ir.Conv or ir.FC"):
        SparseSpec.from_layer(thr, None, in_bits=2, pe=1)


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
    dut = SparseCSC(w, kind="ternary", in_bits=2, pe=2, simd=2)
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
    pot = SparseSpec(np.array([[4, -8, 0, 4]]), kind="pot", in_bits=2, pe=1, simd=2)
    assert (pot.emin, pot.emax) == (2, 3) and pot.value_bits == 1 + 2


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(simd=7), ValueError, "SIMD must divide the input width 288, not 7"),
    (dict(pe=5), ValueError, "PE must divide the output count 64, not 5"),
    (dict(pe=0), ValueError, "PE must be at least 1, not 0"),
    (dict(simd=2.0), TypeError, "SIMD must be an integer"),
    (dict(reach=3), ValueError, "reach must divide SIMD 16, not 3"),
    (dict(reach=0), ValueError, "reach must be at least 1, not 0"),
    (dict(reach="4"), TypeError, "reach must be an integer"),
    (dict(acc_banks=4), ValueError, "acc_banks must be in 2..3, not 4"),
    (dict(ram_style="ultra"), ValueError, "ram_style must be one of auto, block, distributed"),
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
        SparseSpec(w, **args)


def test_weight_errors():
    with pytest.raises(TypeError, match="weights must be an ir.Weights in CSC form or an integer matrix"):
        SparseSpec("w", kind="ternary", in_bits=2, pe=1)
    with pytest.raises(TypeError, match="weights must be an integer array"):
        SparseSpec(np.ones((2, 2)), kind="ternary", in_bits=2, pe=1)
    dense = ir.Weights.from_matrix(np.ones((2, 2), np.int64), "ternary")
    with pytest.raises(ValueError, match="weights must be an ir.Weights in CSC form or an integer matrix"):
        SparseSpec(dense, kind="ternary", in_bits=2, pe=1)
    with pytest.raises(ValueError, match="kind 'int' does not match the weights' kind 'ternary'"):
        SparseSpec(dense.to_csc(), kind="int", in_bits=2, pe=1)


# --- Verilator (cocotb): one build, many seeds -------------------------------------------

def test_cocotb():
    """pot4 weights x 2-bit activations, 25% random density, PE 4, SIMD 2, reach 1,
    thresholds with bias: 6 seeds of 30 vectors, then free-running cycles."""
    from sim.harness import run_cocotb

    rng = np.random.default_rng(21)
    w = pruned(rng, 32, 48, "pot", 4, "random", density=0.25)
    dut, thresholds, b = make(w, 2, 4, 2, 1, rng=rng, tbits=2, bias=True)
    assert dut.padding > 0
    p = dict(kind=w.kind, wbits=w.bits, shape=list(w.shape), values=w.values, rows=w.rows,
             colptr=w.colptr, in_bits=2, pe=4, simd=2, thresholds=thresholds, bias=b,
             out_bits=dut.out_shape.width, out_signed=dut.out_shape.signed, vectors=30,
             cycles_per_vector=dut.cycles_per_vector)
    result = run_cocotb(dut, name="sparse_pot4_pe4_simd2_r1", test_module="tests.hdl.engines.cocotb_sparse",
                        parameters=p, seeds=range(1, 7), timeout_s=300)
    assert "stalls" in " ".join(result.tests) and "free_running" in " ".join(result.tests)
    rep = result.reports[result.seeds[-1]]
    # Free-running: first and last output beat as the cycle model predicts.
    trace = dut.cycle_trace(rep["vectors"])
    assert rep["last_out"] - rep["first_out"] == trace[-1] - trace[0], (rep, trace[0], trace[-1])
