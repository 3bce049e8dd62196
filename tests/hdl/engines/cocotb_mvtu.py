"""cocotb side of the Verilator tests of the MVTU (``tests/hdl/test_mvtu.py``).

Parameters: ``weights`` (int64 array, outputs x inputs, weight values), ``kind``,
``wbits``, ``in_bits``, ``pe``, ``simd``, ``thresholds`` (array, or absent for scores),
``bias`` (array or absent), ``out_bits`` and ``out_signed`` (the output lane shape),
``vectors`` (per seed). Every seed draws its own input vectors and its own gap and stall
probabilities; expected outputs come from the golden model (``sim.golden``). A second
test runs free-running and reports the cycles per vector. The bodies are in
``tests.hdl.engines.cocotb_common``.
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
    await common.stalls(dut, "mvtu", _run)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def free_running(dut):
    """Free-running source and sink: report the cycles between the first and last output."""
    await common.free_running(dut, _run)
