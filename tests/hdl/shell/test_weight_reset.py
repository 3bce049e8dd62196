"""Soft reset of a top whose weights stream from DDR, with read bursts in flight: the
shell stops new bursts, takes every outstanding R beat, only then resets the core
(STATUS busy meanwhile); the DDR model checks the AXI rules (ARVALID held until
ARREADY, addresses inside the image) and the frames after each reset are bit-exact
against ``sim.golden``."""

import random

import numpy as np
from amaranth.sim import Simulator

from hdl.shell.regmap import CONTROL_CLEAR, CONTROL_SOFT_RESET, REGISTERS, STATUS_BUSY
from sim import golden
from sim.ddr import DdrModel
from tests.hdl.shell.axibench import axis_recv, axis_send, lite_read, lite_write, pack_input
from tests.hdl.shell.test_weight_top import BASE, _Port, streamed_top

TRIALS = 5


def _beats(frames, bits):
    beats = []
    for f in frames:
        words = pack_input(f.reshape(-1), bits, 32)
        beats += [(w, int(k == len(words) - 1)) for k, w in enumerate(words)]
    return beats


def test_soft_reset_with_bursts_in_flight_then_bit_exact_frames():
    model, net, top = streamed_top()
    classes = len(model.classes)
    bits = model.input.bits
    rng = np.random.default_rng(11)
    frames = rng.integers(0, 1 << bits, size=(TRIALS, 2, *model.input.shape))
    junk = rng.integers(0, 1 << bits, size=(TRIALS, *model.input.shape))
    per_frame = len(_beats(frames[0][:1], bits))
    ddr = DdrModel(net.spec.weight_image(), base=BASE, latency=30, stall=0.2, seed=11)
    r = random.Random(11)
    got, outstanding, at_reset, busy_seen = [], [0], [], []

    async def monitor(ctx):
        async for _, _, arv, arr, rv, rr, rl in ctx.tick().sample(
                top.m_axi_w0_arvalid, top.m_axi_w0_arready, top.m_axi_w0_rvalid,
                top.m_axi_w0_rready, top.m_axi_w0_rlast):
            assert rr, "RREADY must stay high"
            outstanding[0] += int(arv and arr) - int(rv and rr and rl)

    async def host(ctx):
        await lite_write(ctx, top, REGISTERS["WEIGHT_BASE_HI"], BASE >> 32, r)
        await lite_write(ctx, top, REGISTERS["WEIGHT_BASE_LO"], BASE & 0xFFFF_FFFF, r)
        for t in range(TRIALS):
            # Part of a frame (the engines mid-pass), then a reset at a random cycle.
            await axis_send(ctx, top, [(w, 0) for w, _ in _beats(junk[t:t + 1], bits)]
                            [:r.randrange(per_frame)], r, prefix="s_axis_")
            # Again at a random cycle of the streamer's restart (its FIFO refilling).
            for wait in (r.randrange(1, 120), r.randrange(0, 60)):
                await ctx.tick().repeat(wait)
                await lite_write(ctx, top, REGISTERS["CONTROL"], CONTROL_SOFT_RESET | CONTROL_CLEAR, r)
                at_reset.append(outstanding[0])
                busy = 0
                while await lite_read(ctx, top, REGISTERS["STATUS"]) & STATUS_BUSY:
                    busy += 1
                    assert busy < 1000, "soft reset never completed"
                busy_seen.append(busy)
            want = (t + 1) * 2 * (classes + 1)
            await axis_send(ctx, top, _beats(frames[t], bits), r, prefix="s_axis_")
            while len(got) < want:
                await ctx.tick()
            assert len(got) == want
            assert await lite_read(ctx, top, REGISTERS["FRAMES_DONE"]) == 2

    async def sink(ctx):
        await axis_recv(ctx, top, 1 << 30, r, prefix="m_axis_", out=got)

    async def memory(ctx):
        await ddr.run(ctx, _Port(top, "m_axi_w0_"))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(sink, background=True)
    sim.add_testbench(memory, background=True)
    sim.add_process(monitor)
    sim.run()
    want = golden.run(model, frames.reshape(-1, *model.input.shape))
    for n in range(len(want)):
        scores = [b[0] for b in got[n * (classes + 1):n * (classes + 1) + classes]]
        scores = [s - (1 << 32) if s >> 31 else s for s in scores]
        assert scores == want[n].tolist(), f"frame {n}"
    # The resets did come with bursts in flight, and STATUS was busy while they drained.
    assert sum(1 for a in at_reset if a > 0) >= TRIALS, at_reset
    assert max(at_reset) >= 2 and any(busy_seen), (at_reset, busy_seen)
