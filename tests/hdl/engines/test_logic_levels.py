"""Logic depth of the dense engines under Yosys ``synth_xilinx -family xcup``: at most 6
LUT levels between registers (GitHub issue 7: 200 MHz on UltraScale+).

Each MVTU is elaborated for the ZCU102 platform, so that its popcounts are the LUT/carry
primitives of :mod:`hdl.engines.popcount`, and synthesised without the result cache. A few
widest-case configurations only: each run takes 10 to 30 s of Yosys.
"""

import numpy as np
import pytest
from amaranth.back import verilog

import boards
from hdl.engines.mvtu import MVTU
from hdl.flow.synth import synthesize
from sim.random_model import random_thresholds, random_weights

#: The budget of issue 7.
MAX_LEVELS = 6


def _mvtu(kind, wbits, in_bits, simd, pe, tbits, *, seed=0):
    """An MVTU with ``pe`` outputs (one neuron fold) over ``2 * simd`` inputs."""
    rng = np.random.default_rng(seed)
    outputs, inputs = pe, 2 * simd
    weights = random_weights(rng, outputs, inputs, kind, wbits).matrix()
    thresholds = bias = None
    if tbits is None:
        bias = rng.integers(-20, 21, size=outputs).astype(np.int64)
    else:
        span = np.abs(weights).sum(axis=1) * ((1 << in_bits) - 1)
        thresholds = random_thresholds(rng, -span // 2, span // 2, tbits)
    return MVTU(weights, kind=kind, wbits=wbits, in_bits=in_bits, pe=pe, simd=simd,
                thresholds=thresholds, bias=bias)


@pytest.mark.parametrize("kind,wbits,in_bits,simd,pe,tbits,mode", [
    ("binary", None, 1, 64, 2, 1, "xnor"),
    ("binary", None, 2, 32, 2, 3, "binary"),     # 7 thresholds per channel
    ("int", 4, 4, 16, 1, None, "int"),           # scores with bias
    ("pot", 4, 4, 16, 1, 2, "pot"),
    ("pot", 4, 4, 64, 1, 2, "pot"),              # shift-add heap with a register inside
])
def test_logic_levels(tmp_path, kind, wbits, in_bits, simd, pe, tbits, mode):
    dut = _mvtu(kind, wbits, in_bits, simd, pe, tbits)
    assert dut.mode == mode
    text = verilog.convert(dut, name="top", platform=boards.get("zcu102")())
    if mode in ("xnor", "binary"):
        assert "CARRY8" in text and "LUT6_2" in text      # the popcount primitives
    result = synthesize(text, "top", "xcup", cache_dir=tmp_path, use_cache=False)
    print(f"{mode} SIMD {simd} PE {pe}: {result.logic_levels} LUT levels, {result.lut} LUT, "
          f"{result.ff} FF; path {' | '.join(result.critical_path)}")
    assert 1 <= result.logic_levels <= MAX_LEVELS, result.critical_path


def test_logic_levels_deep_rom(tmp_path):
    """A 128-lane XNOR popcount behind block RAMs cascaded in depth (2,304 words): the
    bank multiplexer's LUT levels are taken from the tree, which registers inside."""
    rng = np.random.default_rng(0)
    weights = random_weights(rng, 64, 4608, "binary", None).matrix()
    span = np.abs(weights).sum(axis=1)
    dut = MVTU(weights, kind="binary", in_bits=1, pe=1, simd=128,
               thresholds=random_thresholds(rng, -span // 2, span // 2, 1))
    assert dut.weight_read_levels == 2 and dut.popcount_stages == 1
    text = verilog.convert(dut, name="top", platform=boards.get("zcu102")())
    result = synthesize(text, "top", "xcup", cache_dir=tmp_path, use_cache=False)
    assert result.bram18 > 0
    assert 1 <= result.logic_levels <= MAX_LEVELS, result.critical_path


def test_logic_levels_tiles(tmp_path):
    """The tile-skipping MVTU (step ROM, two-bank input buffer, 4:1 slice multiplexer)
    adds no path deeper than the datapath's."""
    from hdl.engines.tiles import TileMVTU
    from sim.random_model import block_prune

    rng = np.random.default_rng(0)
    w = block_prune(rng, random_weights(rng, 16, 512, "pot", 4).matrix(), (2, 16), 0.25)
    span = np.abs(w).sum(axis=1) * 15
    dut = TileMVTU(w, kind="pot", wbits=4, in_bits=4, pe=2, simd=16, in_simd=64,
                   thresholds=random_thresholds(rng, -span // 2, span // 2, 2))
    text = verilog.convert(dut, name="top", platform=boards.get("zcu102")())
    result = synthesize(text, "top", "xcup", cache_dir=tmp_path, use_cache=False)
    assert 1 <= result.logic_levels <= MAX_LEVELS, result.critical_path


def test_logic_levels_threshold_table(tmp_path):
    """256 neuron folds of one threshold behind a 128-lane XNOR popcount (CNV's conv5):
    the fold's thresholds come from a register loaded from the table, not through its
    read path into the comparators."""
    rng = np.random.default_rng(1)
    weights = random_weights(rng, 256, 256, "binary", None).matrix()
    span = np.abs(weights).sum(axis=1)
    dut = MVTU(weights, kind="binary", in_bits=1, pe=1, simd=128,
               thresholds=random_thresholds(rng, -span // 2, span // 2, 1))
    assert dut.neuron_folds == 256
    text = verilog.convert(dut, name="top", platform=boards.get("pynq-z2")())
    result = synthesize(text, "top", "xc7", cache_dir=tmp_path, use_cache=False)
    assert 1 <= result.logic_levels <= MAX_LEVELS, result.critical_path


@pytest.mark.parametrize("block", ["input", "output"])
def test_logic_levels_shell_adapters(tmp_path, block):
    """The AXI-Stream adapters of a CNV-like top: 8-bit codes, 8 per 64-bit beat, into
    3 lanes (the shift-buffer converter), and 10 scores in one beat out (the label is a
    running compare behind a converter, not a tree across the lanes)."""
    from hdl.shell.adapters import AxisInput, AxisOutput, InputFormat, OutputFormat
    if block == "input":
        dut = AxisInput(InputFormat(bits=8, lanes=3, frame_elements=3072, data_width=64))
    else:
        dut = AxisOutput(OutputFormat(score_width=24, lanes=10, classes=10, data_width=64))
    text = verilog.convert(dut, name="top")
    result = synthesize(text, "top", "xc7", cache_dir=tmp_path, use_cache=False)
    assert 1 <= result.logic_levels <= MAX_LEVELS, result.critical_path
