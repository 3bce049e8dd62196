"""cocotb side of the Verilator test of the tile-skipping MVTU
(``tests/hdl/engines/test_tiles.py``).

Parameters as ``tests.hdl.engines.cocotb_mvtu``, with ``simd`` the *input* lanes
(``in_simd``); the bodies are in ``tests.hdl.engines.cocotb_common``.
"""

import cocotb

from hdl import ir
from tests.hdl.engines import cocotb_common as common


async def _run(dut, p, s, gap, stall, free):
    w = ir.Weights.from_matrix(p["weights"], p["kind"], p["wbits"])
    return await common.run_engine(
        dut, p, s, gap, stall, free, weights=w,
        timeout_cycles=lambda beats, folds, out: 20 * (beats * folds + out) + 200)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def stalls(dut):
    """Random input gaps and output stalls, probabilities drawn per seed."""
    await common.stalls(dut, "tiles", _run)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def free_running(dut):
    """Free-running source and sink: report the cycles between the first and last output."""
    await common.free_running(dut, _run)
