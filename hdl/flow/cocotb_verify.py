"""cocotb side of :func:`hdl.flow.verify.verify` (runs inside the simulator).

Parameters (``sim.harness.params()``): ``codes`` (N, elements), ``in_bits``, ``classes``,
``latency_bound``, ``timing_frames``, ``gap_prob``, ``stall_prob``, ``ident``, and for a
top whose weights stream from DDR ``weight_image`` (uint8), ``weight_base``,
``weight_ports`` (data width of each ``m_axi_w{k}`` master), ``ddr_latency``,
``ddr_bytes_per_cycle``: every master is then served by :class:`CocotbDdr` (the timing
and the checks of :class:`sim.ddr.DdrModel`, random stalls in the stalled run) after
WEIGHT_BASE is written. Reports every frame's scores and label from the stalled run (the
pytest side compares them with the golden model, so that the build can name the first
differing frame), and the cycles between the ends of consecutive frames in a
free-running run.
"""

import cocotb
import numpy as np

from hdl.host.driver import Geometry, pack_frame, unpack_output
from hdl.shell.regmap import REGISTERS
from sim.backend import SimBackend, cycle
from sim.harness import params, report, seed
from sim.streams import reset


class CocotbDdr:
    """AXI4 read slave on the ``m_axi_w{k}_*`` ports of the top, over ``image`` at byte
    address ``base``: a burst's first beat ``latency`` cycles after its address, at most
    ``bytes_per_cycle`` on average, ``stall`` the chance of ARREADY or a beat held back
    in a cycle; as :class:`sim.ddr.DdrModel` (which serves Amaranth's simulator), with
    the same checks (INCR bursts of the port's word, no 4 KiB crossing, inside the
    image, AR held until accepted). Drives after the falling edge, samples in the
    read-only phase (as :mod:`sim.streams`)."""

    def __init__(self, dut, prefix, image, *, base, data_width, latency, bytes_per_cycle,
                 stall=0.0, seed=0):
        from sim.ddr import DdrModel
        self.dut, self.prefix = dut, prefix
        # the burst checks of the Amaranth model
        self.model = DdrModel(bytes(image), base=base, data_width=data_width, latency=latency,
                              bytes_per_cycle=bytes_per_cycle, stall=stall, seed=seed)
        self.task = cocotb.start_soon(self._run())

    def _sig(self, name):
        return getattr(self.dut, self.prefix + name)

    async def _run(self):
        from cocotb.triggers import FallingEdge, ReadOnly
        ch = self.model.channel(self.prefix.rstrip("_"))
        arready, rvalid, rdata, rlast, rresp = (self._sig(n) for n in
                                                ("arready", "rvalid", "rdata", "rlast", "rresp"))
        arvalid, araddr, arlen, arsize, arburst, rready = (
            self._sig(n) for n in ("arvalid", "araddr", "arlen", "arsize", "arburst", "rready"))
        falling, read_only = FallingEdge(self.dut.clk), ReadOnly()
        rresp.value = 0
        while True:
            await falling
            ready, beat = ch.drive()
            arready.value = int(ready)
            rvalid.value = int(beat is not None)
            if beat is not None:
                rdata.value, rlast.value = beat[0], int(beat[1])
            await read_only
            if int(self.dut.rst.value):
                ch.sample(None, False)
                continue
            ar = None
            if int(arvalid.value):
                ar = (int(araddr.value), int(arlen.value) + 1, int(arsize.value), int(arburst.value))
            ch.sample(ar, bool(int(rready.value)))


async def setup_top(dut, *, ddr_stall=0.0, **backend_args) -> SimBackend:
    """Clock, :class:`sim.backend.SimBackend` (``backend_args``), a :class:`CocotbDdr` on
    every weight master when the parameters carry a ``weight_image``, reset, and
    WEIGHT_BASE written; the DDR models are ``backend.ddrs``."""
    from cocotb.clock import Clock
    Clock(dut.clk, 10, unit="ns").start()
    backend = SimBackend(dut, **backend_args)
    p = params()
    ddrs = []
    if "weight_image" in p:
        image = np.asarray(p["weight_image"], dtype=np.uint8).tobytes()
        base = int(p["weight_base"])
        for k, width in enumerate(p["weight_ports"]):
            ddrs.append(CocotbDdr(dut, f"m_axi_w{k}_", image, base=base, data_width=int(width),
                                  latency=int(p["ddr_latency"]),
                                  bytes_per_cycle=float(p["ddr_bytes_per_cycle"]),
                                  stall=ddr_stall, seed=seed() + 10 * (k + 1)))
    await reset(dut)
    if ddrs:
        await backend.write_reg_async(REGISTERS["WEIGHT_BASE_HI"], base >> 32)
        await backend.write_reg_async(REGISTERS["WEIGHT_BASE_LO"], base & 0xFFFF_FFFF)
    backend.ddrs = ddrs
    return backend


def _geometry(p, backend) -> Geometry:
    return Geometry(in_elements=p["codes"].shape[1], in_bits=int(p["in_bits"]),
                    classes=int(p["classes"]), in_width=8 * backend.in_bytes,
                    out_width=8 * backend.out_bytes)


@cocotb.test()
async def stalled_frames(dut):
    """Every frame through the AXI ports with random gaps and backpressure."""
    p, s = params(), seed()
    backend = await setup_top(dut, seed=s, gap_prob=float(p["gap_prob"]),
                           stall_prob=float(p["stall_prob"]), ddr_stall=float(p["stall_prob"]))
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
    report(scores=scores, labels=labels,
           ddr_bytes_read=[d.model.bytes_read for d in backend.ddrs])


@cocotb.test()
async def free_running(dut):
    """Back-to-back frames without stalls: cycles between the ends of frames."""
    p = params()
    backend = await setup_top(dut, seed=seed())
    g = _geometry(p, backend)
    n = int(p["timing_frames"])
    start = cycle()
    for k in range(n):
        await backend.send_frame_async(pack_frame(p["codes"][k], g))
    for _ in range(n):
        await backend.recv_frame_async(g.out_bytes, timeout_cycles=4 * int(p["latency_bound"]) + 1000)
    ends = backend.checker.ends
    report(intervals=np.diff(ends).tolist(), latency=ends[0] - start)
