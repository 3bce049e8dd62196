"""cocotb side of :func:`bench.networks.measure_top`: the generated top (``AxiTop`` around
``Network``) with a free-running source and sink, frames back to back.

Parameters (``sim.harness.params()``): ``codes`` (N, elements) input codes, ``scores``
(N, classes) of the golden model, ``in_bits``, ``classes``, ``axis_width`` (TDATA bits
in and out), ``timeout_cycles``; for weights streamed from DDR the parameters of
:mod:`hdl.flow.cocotb_verify` (its DDR model serves every ``m_axi_w{k}`` master, after
WEIGHT_BASE is written).
Reports ``ends`` (cycle of each frame's TLAST), ``start`` (cycle of the first send) and
``latency`` (first frame: start to TLAST).
"""

import cocotb
import numpy as np

from hdl.host.driver import Geometry, pack_frame, unpack_output
from hdl.flow.cocotb_verify import setup_top
from sim.backend import cycle
from sim.beats import compare
from sim.harness import params, report, seed


@cocotb.test()
async def frames(dut):
    """Every frame's scores equal the golden model's; the TLAST cycles are reported."""
    p, s = params(), seed()
    backend = await setup_top(dut, seed=s, gap_prob=0.0, stall_prob=0.0)
    width = int(p.get("axis_width", 32))
    g = Geometry(in_elements=p["codes"].shape[1], in_bits=int(p["in_bits"]),
                 classes=int(p["classes"]), in_width=width, out_width=width)
    n = len(p["codes"])
    start = cycle()
    for k in range(n):
        await backend.send_frame_async(pack_frame(p["codes"][k], g))
    got = []
    for _ in range(n):
        scores, _ = unpack_output(await backend.recv_frame_async(
            g.out_bytes, timeout_cycles=int(p["timeout_cycles"])), g)
        got.append(scores.tolist())
    compare(got, np.asarray(p["scores"]).tolist(), seed=s, what="scores of the generated top",
            label=lambda k: f"frame {k}")
    ends = list(backend.checker.ends)
    report(ends=ends, start=start, latency=ends[0] - start)
