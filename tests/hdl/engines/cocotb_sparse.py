"""cocotb side of the Verilator test of the sparse engine (``tests/hdl/engines/test_sparse.py``).

Parameters: the IR's CSC weights (``kind``, ``wbits``, ``shape``, ``values``, ``rows``,
``colptr``), ``in_bits``, ``pe``, ``simd``, ``thresholds`` (array, or absent for scores),
``bias`` (array or absent), ``out_bits`` and ``out_signed`` (the output lane shape),
``vectors`` (per seed), ``cycles_per_vector``. Every seed draws its own input vectors and
its own gap and stall probabilities; expected outputs come from the golden model
(``sim.golden``) on an ``ir.FC`` with the same CSC weights. A second test runs
free-running and reports the cycles of the first and last output beats. The bodies are
in ``tests.hdl.engines.cocotb_common``.
"""

import cocotb

from hdl import ir
from tests.hdl.engines import cocotb_common as common


def _weights(p) -> ir.Weights:
    return ir.Weights(kind=p["kind"], bits=int(p["wbits"]), shape=tuple(int(v) for v in p["shape"]),
                      values=p["values"], rows=p["rows"], colptr=p["colptr"])


async def _run(dut, p, s, gap, stall, free):
    def timeout(beats, folds, out):
        return 20 * p["vectors"] * (p["cycles_per_vector"] + folds + beats) + 200
    return await common.run_engine(dut, p, s, gap, stall, free, weights=_weights(p),
                                   timeout_cycles=timeout)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def stalls(dut):
    """Random input gaps and output stalls, probabilities drawn per seed."""
    await common.stalls(dut, "sparse", _run)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def free_running(dut):
    """Free-running source and sink: report the cycles of the first and last output."""
    await common.free_running(dut, _run)
