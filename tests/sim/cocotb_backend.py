"""cocotb side of tests/sim/test_backend.py: ``sim.backend.SimBackend`` (cocotbext-axi)
on ``AxiTop(ModSum)``. Parameters: ``codes`` (frames, elements), ``scores`` (frames,
classes) expected, ``in_bits``, ``classes``."""

import cocotb
import numpy as np
from cocotb.task import bridge
from cocotb.triggers import ClockCycles

from hdl.host.driver import Accelerator, Geometry, pack_frame, unpack_output
from hdl.shell.axi import CONTROL_CLEAR, CONTROL_SOFT_RESET, REGISTERS
from sim.backend import SimBackend
from sim.beats import compare
from sim.harness import params, report, seed
from sim.streams import reset, start_clock


async def setup(dut, s):
    p = params()
    start_clock(dut)
    backend = SimBackend(dut, seed=s, gap_prob=0.3, stall_prob=0.3, timeout_cycles=2000)
    await reset(dut)
    g = Geometry(in_elements=p["codes"].shape[1], in_bits=int(p["in_bits"]),
                 classes=int(p["classes"]))
    return p, g, backend


async def outputs(backend, g, n):
    got = []
    for _ in range(n):
        scores, label = unpack_output(await backend.recv_frame_async(g.out_bytes), g)
        assert label == int(np.argmax(scores)), (scores, label)
        got.append(scores)
    return got


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def frames(dut):
    """All frames queued back to back; scores bit-exact, registers read back."""
    s = seed()
    dut._log.info("seed %d (replay: QNN_SEED=%d)", s, s)
    p, g, backend = await setup(dut, s)
    assert await backend.read_reg_async(REGISTERS["IN_ELEMENTS"]) == g.in_elements
    assert await backend.read_reg_async(REGISTERS["CLASSES"]) == g.classes
    for frame in p["codes"]:
        await backend.send_frame_async(pack_frame(frame, g))
    compare(await outputs(backend, g, len(p["codes"])), p["scores"], seed=s, what="scores",
            label=lambda k: f"frame {k}")
    backend.checker.check()
    report(frames_done=await backend.read_reg_async(REGISTERS["FRAMES_DONE"]),
           ends=backend.checker.ends)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def cut_frame_and_soft_reset(dut):
    """Half a frame without TLAST, a soft reset over AXI4-Lite, then whole frames."""
    s = seed() + 10
    p, g, backend = await setup(dut, s)
    await backend.send_cut_async(pack_frame(p["codes"][0], g)[:4])
    await ClockCycles(backend.clock, 5)
    await backend.write_reg_async(REGISTERS["CONTROL"], CONTROL_SOFT_RESET | CONTROL_CLEAR)
    assert await backend.read_reg_async(REGISTERS["FRAMES_DONE"]) == 0
    for frame in p["codes"][1:4]:
        await backend.send_frame_async(pack_frame(frame, g))
    compare(await outputs(backend, g, 3), p["scores"][1:4], seed=s, what="after soft reset",
            label=lambda k: f"frame {k + 1}")
    assert await backend.read_reg_async(REGISTERS["FRAMES_DONE"]) == 3
    assert await backend.read_reg_async(REGISTERS["STATUS"]) == 0
    backend.checker.check()


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def host_driver(dut):
    """hdl.host.driver.Accelerator in a thread on the backend."""
    p, g, backend = await setup(dut, seed() + 20)

    def host():
        acc = Accelerator(backend)
        acc.reset()
        return acc.run(p["codes"][:3])

    labels, scores = await bridge(host)()
    compare(scores, p["scores"][:3], seed=seed(), what="driver scores")
    report(driver_labels=labels.tolist())
