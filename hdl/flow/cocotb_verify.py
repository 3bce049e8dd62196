"""cocotb side of :func:`hdl.flow.verify.verify` (runs inside the simulator).

Parameters (``sim.harness.params()``): ``codes`` (N, elements), ``in_bits``, ``classes``,
``latency_bound``, ``timing_frames``, ``gap_prob``, ``stall_prob``, ``ident``. Reports
every frame's scores and label from the stalled run (the pytest side compares them with
the golden model, so that the build can name the first differing frame), and the cycles
between the ends of consecutive frames in a free-running run.
"""

import cocotb
import numpy as np

from hdl.host.driver import Geometry, pack_frame, unpack_output
from hdl.shell.regmap import REGISTERS
from sim.backend import SimBackend, cycle
from sim.harness import params, report, seed
from sim.streams import reset


async def _setup(dut, **backend_args) -> SimBackend:
    from cocotb.clock import Clock
    Clock(dut.clk, 10, unit="ns").start()
    backend = SimBackend(dut, **backend_args)
    await reset(dut)
    return backend


def _geometry(p, backend) -> Geometry:
    return Geometry(in_elements=p["codes"].shape[1], in_bits=int(p["in_bits"]),
                    classes=int(p["classes"]), in_width=8 * backend.in_bytes,
                    out_width=8 * backend.out_bytes)


@cocotb.test()
async def stalled_frames(dut):
    """Every frame through the AXI ports with random gaps and backpressure."""
    p, s = params(), seed()
    backend = await _setup(dut, seed=s, gap_prob=float(p["gap_prob"]),
                           stall_prob=float(p["stall_prob"]))
    assert await backend.read_reg_async(REGISTERS["ID"]) == int(p["ident"])
    g = _geometry(p, backend)
    codes = p["codes"]
    timeout = 20 * int(p["latency_bound"]) + 1000
    scores, labels = [], []
    window = 8                               # frames in flight, as a DMA queue would hold
    sent = 0
    for k in range(len(codes)):
        while sent < len(codes) and sent < k + window:
            await backend.send_frame_async(pack_frame(codes[sent], g))
            sent += 1
        sc, label = unpack_output(await backend.recv_frame_async(g.out_bytes,
                                                                 timeout_cycles=timeout), g)
        scores.append(sc.tolist())
        labels.append(label)
    backend.checker.check()
    status = await backend.read_reg_async(REGISTERS["STATUS"])
    done = await backend.read_reg_async(REGISTERS["FRAMES_DONE"])
    assert status == 0, f"STATUS {status:#x} after the frames"
    assert done == len(codes), f"FRAMES_DONE {done}, sent {len(codes)}"
    report(scores=scores, labels=labels)


@cocotb.test()
async def free_running(dut):
    """Back-to-back frames without stalls: cycles between the ends of frames."""
    p = params()
    backend = await _setup(dut, seed=seed())
    g = _geometry(p, backend)
    n = int(p["timing_frames"])
    start = cycle()
    for k in range(n):
        await backend.send_frame_async(pack_frame(p["codes"][k], g))
    for _ in range(n):
        await backend.recv_frame_async(g.out_bytes, timeout_cycles=4 * int(p["latency_bound"]) + 1000)
    ends = backend.checker.ends
    report(intervals=np.diff(ends).tolist(), latency=ends[0] - start)
