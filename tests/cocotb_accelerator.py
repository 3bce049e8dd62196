"""cocotb side of tests/test_accelerator.py: the generated accelerator (``AxiTop`` around
``Network``) on digits images, through its AXI ports.

Parameters (``sim.harness.params()``): ``codes`` (N, elements) input codes, ``scores``
(N, classes) and ``labels`` (N,) of the golden model, ``in_bits``, ``classes``,
``cycles_per_frame`` (the cycle model), ``stalled`` (frames of the stalled run),
``timing_frames`` (frames of the free-running run), ``ident``, ``version``.

The tests run in this order on one simulation; each starts with a pin reset.
"""

import cocotb
import numpy as np
from cocotb.task import bridge
from cocotb.triggers import ClockCycles, FallingEdge

from hdl.shell.axi import CONTROL_CLEAR, CONTROL_SOFT_RESET, REGISTERS
from hdl.host.driver import Accelerator, Geometry, pack_frame, unpack_output
from sim.backend import SimBackend, cycle
from sim.beats import compare
from sim.harness import params, report, seed
from sim.streams import reset


async def setup(dut, **backend_args) -> SimBackend:
    """Clock (a test's tasks and clock end with it), a fresh backend, pin reset."""
    from cocotb.clock import Clock
    Clock(dut.clk, 10, unit="ns").start()
    backend = SimBackend(dut, **backend_args)
    await reset(dut)
    return backend


def geometry(p) -> Geometry:
    return Geometry(in_elements=p["codes"].shape[1], in_bits=int(p["in_bits"]),
                    classes=int(p["classes"]))


async def check_frames(backend, frames, p, g, what, *, timeout):
    """Send ``frames`` (indices) back to back; every output frame must match."""
    for k in frames:
        await backend.send_frame_async(pack_frame(p["codes"][k], g))
    got = []
    for _ in frames:
        scores, label = unpack_output(
            await backend.recv_frame_async(g.out_bytes, timeout_cycles=timeout), g)
        got.append(scores.tolist() + [label])
    want = [p["scores"][k].tolist() + [int(p["labels"][k])] for k in frames]
    compare(got, want, seed=seed(), what=f"{what} (scores and label)",
            label=lambda n: f"frame {n} (image {frames[n]})")


@cocotb.test()
async def frames_with_stalls(dut):
    """Random input gaps and output backpressure: every frame's scores and label equal
    the golden model's; the registers read back."""
    p, s = params(), seed()
    dut._log.info("seed %d (replay: QNN_SEED=%d)", s, s)
    g = geometry(p)
    backend = await setup(dut, seed=s, gap_prob=0.3, stall_prob=0.3)
    read = backend.read_reg_async
    assert await read(REGISTERS["ID"]) == p["ident"]
    assert await read(REGISTERS["VERSION"]) == p["version"]
    assert await read(REGISTERS["IN_ELEMENTS"]) == g.in_elements
    assert await read(REGISTERS["CLASSES"]) == g.classes
    assert await read(REGISTERS["IN_FORMAT"]) == g.in_format()
    assert await read(REGISTERS["FRAMES_DONE"]) == 0
    n = int(p["stalled"])
    await check_frames(backend, range(n), p, g, "stalled run",
                       timeout=20 * int(p["latency_bound"]))
    assert await read(REGISTERS["FRAMES_DONE"]) == n
    status = await read(REGISTERS["STATUS"])
    assert status == 0, f"STATUS {status:#x} after the frames (busy or frame errors)"
    backend.checker.check()


@cocotb.test()
async def cycles_per_frame(dut):
    """Free-running source and sink, back-to-back frames: the interval between the ends
    of consecutive frames in steady state is within 2% of the cycle model."""
    p = params()
    g = geometry(p)
    backend = await setup(dut, seed=seed(), gap_prob=0.0, stall_prob=0.0)
    n = int(p["timing_frames"])
    start = cycle()
    for k in range(n):
        await backend.send_frame_async(pack_frame(p["codes"][k], g))
    got = []
    for k in range(n):
        scores, _ = unpack_output(await backend.recv_frame_async(
            g.out_bytes, timeout_cycles=4 * int(p["latency_bound"])), g)
        got.append(scores)
    compare(got, p["scores"][:n], seed=seed(), what="free-running scores",
            label=lambda k: f"frame {k}")
    ends = backend.checker.ends
    intervals = np.diff(ends).tolist()
    steady = intervals[1:]               # the first frames fill the pipeline
    frames_done = await backend.read_reg_async(REGISTERS["FRAMES_DONE"])
    cycles = await backend.read_reg_async(REGISTERS["CYCLES"])
    report(intervals=intervals, latency=ends[0] - start, frames_done=frames_done,
           cycles_register=cycles, model=int(p["cycles_per_frame"]))
    want = int(p["cycles_per_frame"])
    assert frames_done == n
    for got in steady:
        assert abs(got - want) <= 0.02 * want, (
            f"steady-state cycles per frame {got}, model {want} (intervals {intervals})")


async def interrupted(backend, p, g, fraction=0.5):
    """One whole frame and half of the next (no TLAST), then wait until the network is
    busy with them."""
    first = pack_frame(p["codes"][0], g)
    half = pack_frame(p["codes"][1], g)[: (g.in_bytes // 8) * 4]
    await backend.send_frame_async(first)
    await backend.send_cut_async(half)
    await ClockCycles(backend.clock, int(fraction * int(p["cycles_per_frame"])))


@cocotb.test()
async def reset_between_frames(dut):
    """A pin reset, then a soft reset (CONTROL bit 0) with frames in flight: the frames
    sent after each reset all come out right, and nothing of the earlier ones."""
    p, s = params(), seed()
    g = geometry(p)
    n = int(p["after_reset"])
    timeout = 20 * int(p["latency_bound"])
    # Pin reset in the middle of a frame.
    backend = await setup(dut, seed=s + 10, gap_prob=0.2, stall_prob=0.2)
    await interrupted(backend, p, g)
    await reset(dut)
    backend.clear()                      # whatever came out before the reset
    read, write = backend.read_reg_async, backend.write_reg_async
    assert await read(REGISTERS["FRAMES_DONE"]) == 0
    await check_frames(backend, range(2, 2 + n), p, g, "after a pin reset", timeout=timeout)
    assert await read(REGISTERS["FRAMES_DONE"]) == n
    # Soft reset over AXI4-Lite in the middle of a frame (registers keep counting).
    await interrupted(backend, p, g, fraction=0.3)
    await write(REGISTERS["CONTROL"], CONTROL_SOFT_RESET)
    await FallingEdge(backend.clock)
    backend.clear()                      # an output frame may stop early, TVALID fall
    done = await read(REGISTERS["FRAMES_DONE"])
    assert done in (n, n + 1), done            # the whole first frame may have finished
    await check_frames(backend, range(2 + n, 2 + 2 * n), p, g, "after a soft reset",
                       timeout=timeout)
    assert await read(REGISTERS["FRAMES_DONE"]) == done + n
    await write(REGISTERS["CONTROL"], CONTROL_CLEAR)
    assert await read(REGISTERS["FRAMES_DONE"]) == 0
    assert await read(REGISTERS["STATUS"]) == 0
    backend.checker.check()


@cocotb.test()
async def host_driver(dut):
    """The host driver (hdl.host.driver.Accelerator, the class that runs on the board) in a
    thread, on SimBackend: labels and scores equal the golden model's."""
    p, s = params(), seed()
    n = int(p["driver_frames"])
    backend = await setup(dut, seed=s + 20, gap_prob=0.2, stall_prob=0.2)
    codes = p["codes"][:n].reshape(n, *p["input_shape"])

    def host():
        acc = Accelerator(backend, ident=int(p["ident"]))
        acc.reset()
        labels, scores = acc.run(codes)
        return acc, labels, scores, acc.frames_done(), acc.cycles(), acc.status()

    acc, labels, scores, frames_done, cycles, status = await bridge(host)()
    assert acc.version == p["version"]
    assert acc.geometry == geometry(p), acc.geometry
    assert np.array_equal(scores, p["scores"][:n]), (scores, p["scores"][:n])
    assert np.array_equal(labels, p["labels"][:n])
    assert frames_done == n
    assert cycles >= n * int(p["cycles_per_frame"]) // 2, cycles
    assert status == {"busy": False, "short_frame": False, "long_frame": False}
    report(driver_labels=labels.tolist(), driver_cycles=cycles)
