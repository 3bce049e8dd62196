"""Shift-add bit heap of power-of-two weights: the heap-domain sum against NumPy under a
random enable (Amaranth simulator), for random weights across the exponent window,
negative weights, zeros, bipolar and up to 8-bit activations; the Xilinx-primitive form
proved equal to its generic twin (Yosys, with Yosys's own cell models); codes, offsets,
parameter errors."""

import re

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from hdl.engines.shiftadd import MAX_LEVELS, ShiftAdd, code_fields, heap_max, heap_offset, lane_codes, plan

try:
    from tests.hdl.engines.test_popcount import _prove_equiv
except ImportError:                      # pytest's default rootdir-less import mode
    from test_popcount import _prove_equiv


def pot_values(rng, n, lanes, window, zero_prob=0.2):
    """Internal weights ``0`` or ``±2**e``, ``e`` uniform over the window; the window's ends used."""
    e = rng.integers(0, window, size=(n, lanes))
    e[0, 0], e[-1, -1] = 0, window - 1
    v = rng.choice(np.array([-1, 1]), size=(n, lanes)) << e
    v = np.where(rng.random((n, lanes)) < zero_prob, 0, v)
    v[0, 0], v[-1, -1] = 1, -(1 << (window - 1))
    return v


def run(dut: ShiftAdd, codes: np.ndarray, x: np.ndarray, *, seed: int, idle=0.3) -> np.ndarray:
    """Feed one (codes, x) pair per enabled cycle, ``en`` low with probability ``idle``;
    after every clock edge the output is the sum of the pair ``latency`` enabled cycles back."""
    rng = np.random.default_rng(seed)
    n = len(codes)
    words = [sum(int(c) << (j * dut.code_bits) for j, c in enumerate(row)) for row in codes]
    got = [None] * n

    async def bench(ctx):
        taken = 0
        while taken < n + dut.latency:
            en = int(rng.random() >= idle)
            k = min(taken, n - 1)
            ctx.set(dut.w, words[k])
            ctx.set(dut.x, [int(a) for a in x[k]])
            ctx.set(dut.en, en)
            await ctx.tick()
            taken += en
            done = taken - dut.latency          # the pair whose sum the register holds
            if 0 <= done < n and en:
                got[done] = ctx.get(dut.o)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got, dtype=np.int64)


def expected(v, x, in_bits):
    xv = 2 * x - 1 if in_bits == 1 else x
    return (v * xv).sum(axis=1) + heap_offset(v, in_bits)


# lanes, in_bits, window
CASES = [
    (16, 4, 7),          # the pot4 lane of the benchmark
    (1, 4, 7), (3, 4, 7),
    (5, 1, 7),           # bipolar activations
    (4, 1, 1), (6, 1, 16),
    (8, 2, 3), (7, 3, 4), (6, 8, 15),   # up to 8-bit activations, pot5's full window
    (4, 5, 2), (3, 6, 1), (5, 4, 8), (4, 7, 9), (2, 8, 16),
    (64, 2, 7),          # columns of 64: a register inside the heap
]


@pytest.mark.parametrize("lanes,in_bits,window", CASES)
def test_heap_sum(lanes, in_bits, window):
    seed = lanes * 1000 + in_bits * 100 + window
    rng = np.random.default_rng(seed)
    n = 24
    v = pot_values(rng, n, lanes, window)
    x = rng.integers(0, 1 << in_bits, size=(n, lanes))
    x[1] = (1 << in_bits) - 1
    x[2] = 0
    dut = ShiftAdd(lanes, in_bits=in_bits, window=window, primitives="generic")
    got = run(dut, lane_codes(v, window), x, seed=seed)
    want = expected(v, x, in_bits)
    assert np.array_equal(got, want), f"seed {seed}\n{got}\n!=\n{want}"
    assert 0 <= want.min() and want.max() <= dut.max_sum < 1 << dut.sum_bits
    assert np.all(want <= heap_max(v, in_bits).sum(axis=1))


def test_codes_and_offsets():
    # window 7: e in 3 bits, zero = 7; window 8: a zero flag above the 3 exponent bits.
    assert code_fields(7) == (3, 3, False) and code_fields(8) == (4, 3, True)
    assert code_fields(1) == (1, 0, True) and code_fields(3) == (2, 2, False)
    v = np.array([[1, -2, 0, 64, -64]])
    assert lane_codes(v, 7).tolist() == [[0, 8 | 1, 7, 6, 8 | 6]]
    assert lane_codes(v, 8).tolist() == [[0, 16 | 1, 15, 6, 16 | 6]]
    # 4-bit: a negative weight adds 15 * |v| in the heap; bipolar: every non-zero |v|.
    assert heap_offset(v, 4).tolist() == [15 * (2 + 64)]
    assert heap_offset(v, 1).tolist() == [1 + 2 + 64 + 64]


def test_plan_and_levels():
    """Registers where the LUT levels run out: one stage at SIMD 16, two for taller heaps."""
    assert plan(16, 4, 7)[0] == 1 and plan(64, 4, 7)[0] == 2 and plan(256, 4, 7)[0] >= 2
    assert MAX_LEVELS == 6
    # The primitive form of the benchmark's lane: a handful of LUTs per lane, not ~45.
    assert plan(16, 4, 7)[1] <= 16 * 16


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(lanes=0), ValueError, "lanes must be at least 1, not 0"),
    (dict(lanes=2.0), TypeError, "lanes must be an integer, not 2.0"),
    (dict(in_bits=17), ValueError, "in_bits must be in 1..16, not 17"),
    (dict(window=0), ValueError, "window must be in 1..64, not 0"),
    (dict(primitives="altera"), ValueError, "primitives must be one of auto, generic, xilinx"),
    (dict(family="virtex"), ValueError, "family must be one of ultrascale, 7series"),
])
def test_bad_parameters(kwargs, exc, match):
    args = dict(lanes=4, in_bits=4, window=7) | kwargs
    with pytest.raises(exc, match=match):
        ShiftAdd(args.pop("lanes"), **args)


def _verilog(lanes, in_bits, window, primitives, family="ultrascale"):
    return verilog.convert(ShiftAdd(lanes, in_bits=in_bits, window=window, primitives=primitives,
                                    family=family), name="top")


@pytest.mark.parametrize("lanes,in_bits,window,family", [
    (6, 4, 7, "ultrascale"), (6, 1, 7, "ultrascale"), (5, 3, 8, "7series"), (4, 8, 15, "ultrascale"),
    (5, 2, 3, "ultrascale"),
    pytest.param(16, 4, 7, "ultrascale", marks=pytest.mark.slow),     # the benchmark's lane: 2.5 min
])
def test_primitives_equal_twin(tmp_path, lanes, in_bits, window, family):
    gate = _verilog(lanes, in_bits, window, "xilinx", family)
    assert "LUT6_2" in gate and ("CARRY8" if family == "ultrascale" else "CARRY4") in gate
    log = _prove_equiv(tmp_path, _verilog(lanes, in_bits, window, "generic"), gate)
    proven = re.search(r"Of those cells (\d+) are proven and 0 are unproven", log)
    assert proven and int(proven.group(1)) > 2 * lanes, log[-2000:]


def test_broken_primitive_is_caught(tmp_path):
    """The proof is not vacuous: one flipped INIT bit of a shifter LUT makes it fail."""
    gate = _verilog(4, 4, 7, "xilinx")
    match = re.search(r"\.INIT\(64'h([0-9a-f]{16})\)", gate)
    assert match
    flipped = f"{int(match.group(1), 16) ^ (1 << 33):016x}"
    gate = gate[:match.start(1)] + flipped + gate[match.end(1):]
    with pytest.raises(RuntimeError, match="Yosys failed"):
        _prove_equiv(tmp_path, _verilog(4, 4, 7, "generic"), gate)
