"""cocotb side of tests/sim/test_backend_batch.py. Parameters: ``codes`` (N, 16),
``scores`` (N, classes) of the golden model, ``in_bits``, ``classes``, ``model_cycles``."""

import cocotb
import numpy as np
from cocotb.task import bridge
from cocotb.triggers import ClockCycles

from hdl.host.driver import Accelerator, Geometry, pack_frames, unpack_outputs
from hdl.shell.axi import REGISTERS, STATUS_ERR_LONG, STATUS_ERR_SHORT
from sim.backend import SimBackend, cycle
from sim.beats import compare
from sim.harness import params, report, seed
from sim.streams import reset, start_clock


async def setup(dut, **kwargs):
    start_clock(dut)
    backend = SimBackend(dut, timeout_cycles=200_000, **kwargs)
    await reset(dut)
    return backend


@cocotb.test()
async def stalls_and_errors(dut):
    """The driver with batches of 8 (then 4 for the rest) under random gaps and
    backpressure: every score bit-exact. Then a transfer with TLAST one frame early and
    one with TLAST one frame late: the STATUS flags say so, the output transfers end
    where the input's did, and the next batch is right."""
    p, s = params(), seed()
    dut._log.info("seed %d (replay: QNN_SEED=%d)", s, s)
    backend = await setup(dut, seed=s, gap_prob=0.3, stall_prob=0.3)
    n = 44

    def host():
        acc = Accelerator(backend, batch=8)
        acc.reset()
        return acc.run(p["codes"][:n]), acc.status(), acc.frames_done()

    (labels, scores), status, done = await bridge(host)()
    compare(scores, p["scores"][:n], seed=s, what="driver scores, batches of 8",
            label=lambda k: f"frame {k}")
    assert status == {"busy": False, "short_frame": False, "long_frame": False}, status
    assert done == n
    g = Geometry(in_elements=16, in_bits=8, classes=4)
    write, read = backend.write_reg_async, backend.read_reg_async
    await write(REGISTERS["BATCH"], 3)
    # short: two frames with TLAST: the output transfer ends after them
    await backend.send_frame_async(pack_frames(p["codes"][:2], g))
    out, _ = unpack_outputs(await backend.recv_frame_async(2 * g.out_bytes), g, 2)
    compare(out, p["scores"][:2], seed=s, what="short batch")
    assert await read(REGISTERS["STATUS"]) & STATUS_ERR_SHORT
    # long: four frames, TLAST on the fourth: three come out, the fourth is dropped
    await backend.send_frame_async(pack_frames(p["codes"][2:6], g))
    out, _ = unpack_outputs(await backend.recv_frame_async(3 * g.out_bytes), g, 3)
    compare(out, p["scores"][2:5], seed=s, what="long batch")
    assert await read(REGISTERS["STATUS"]) & STATUS_ERR_LONG
    # and the next good batch
    await backend.send_frame_async(pack_frames(p["codes"][6:9], g))
    out, _ = unpack_outputs(await backend.recv_frame_async(3 * g.out_bytes), g, 3)
    compare(out, p["scores"][6:9], seed=s, what="after the errors")
    await ClockCycles(backend.clock, 10)
    assert backend.sink.empty()
    backend.checker.check()


@cocotb.test()
async def rate_with_batches_of_64(dut):
    """The driver with batches of 64 on a free-running DMA: scores bit-exact; the cycles
    of every batch and the registers are reported for the frame rate."""
    p = params()
    backend = await setup(dut, seed=seed())
    start = cycle()

    def host():
        acc = Accelerator(backend, batch=64)
        acc.clear()
        labels, scores = acc.run(p["codes"])
        return scores, acc.frames_done(), acc.cycles()

    scores, done, cycles = await bridge(host)()
    compare(scores, p["scores"], seed=seed(), what="driver scores, batches of 64",
            label=lambda k: f"frame {k}")
    ends = backend.checker.ends
    model = int(p["model_cycles"])
    per_frame = [d / 64 for d in np.diff(ends)]
    dut._log.info("batch ends %s; cycles per frame between them %s (model %d); first batch "
                  "%d cycles from the first call; CYCLES %d for %d frames", ends, per_frame,
                  model, ends[0] - start, cycles, done)
    report(batch_ends=ends, frames_done=done, cycles_register=cycles, model=model,
           first_batch_cycles=ends[0] - start)
    backend.checker.check()
