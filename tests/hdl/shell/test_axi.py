"""AXI register block, AXI-Stream adapters and the AXI top, in Amaranth's simulator."""

import random
import re

import numpy as np
import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.shell import axi
from hdl.shell.axi import REGISTERS


# ----------------------------------------------------------------- helpers

async def axis_send(ctx, port, beats, rng, gap_prob=0.3, prefix=""):
    """Send ``beats`` (list of (tdata, tlast)) on a slave AXI-Stream (flat or bundle)."""
    g = (lambda n: getattr(port, prefix + n))
    for tdata, tlast in beats:
        while rng.random() < gap_prob:
            ctx.set(g("tvalid"), 0)
            await ctx.tick()
        ctx.set(g("tvalid"), 1)
        ctx.set(g("tdata"), tdata)
        ctx.set(g("tlast"), tlast)
        while True:
            _, _, ready = await ctx.tick().sample(g("tready"))
            if ready:
                break
    ctx.set(g("tvalid"), 0)


async def axis_recv(ctx, port, n, rng, stall_prob=0.3, prefix="", out=None):
    """Receive ``n`` beats from a master AXI-Stream; returns list of (tdata, tlast)."""
    g = (lambda name: getattr(port, prefix + name))
    got = [] if out is None else out
    while len(got) < n:
        ready = rng.random() >= stall_prob
        ctx.set(g("tready"), ready)
        _, _, valid, tdata, tlast = await ctx.tick().sample(g("tvalid"), g("tdata"), g("tlast"))
        if valid and ready:
            got.append((tdata, tlast))
    ctx.set(g("tready"), 0)
    return got


async def stream_send(ctx, port, payloads, rng, gap_prob=0.3):
    for p in payloads:
        while rng.random() < gap_prob:
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.valid, 1)
        ctx.set(port.payload.as_value(), p)
        while True:
            _, _, ready = await ctx.tick().sample(port.ready)
            if ready:
                break
    ctx.set(port.valid, 0)


async def stream_recv(ctx, port, n, rng, stall_prob=0.3, out=None):
    got = [] if out is None else out
    while len(got) < n:
        ready = rng.random() >= stall_prob
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload.as_value())
        if valid and ready:
            got.append(payload)
    ctx.set(port.ready, 0)
    return got


async def lite_write(ctx, dut, addr, value, rng, prefix="s_axi_", strb=0xF):
    g = (lambda n: getattr(dut, prefix + n))
    ctx.set(g("bready"), 0)
    aw_first = rng.random() < 0.5
    # address and data channels in either order, with a gap between them
    order = [("aw", addr), ("w", value)] if aw_first else [("w", value), ("aw", addr)]
    for ch, v in order:
        if ch == "aw":
            ctx.set(g("awaddr"), v)
            ctx.set(g("awvalid"), 1)
            while True:
                _, _, ready = await ctx.tick().sample(g("awready"))
                if ready:
                    break
            ctx.set(g("awvalid"), 0)
        else:
            ctx.set(g("wdata"), v)
            ctx.set(g("wstrb"), strb)
            ctx.set(g("wvalid"), 1)
            while True:
                _, _, ready = await ctx.tick().sample(g("wready"))
                if ready:
                    break
            ctx.set(g("wvalid"), 0)
        for _ in range(rng.randrange(3)):
            await ctx.tick()
    ctx.set(g("bready"), 1)
    while True:
        _, _, valid, resp = await ctx.tick().sample(g("bvalid"), g("bresp"))
        if valid:
            break
    ctx.set(g("bready"), 0)
    assert resp == 0


async def lite_read(ctx, dut, addr, prefix="s_axi_"):
    g = (lambda n: getattr(dut, prefix + n))
    ctx.set(g("araddr"), addr)
    ctx.set(g("arvalid"), 1)
    while True:
        _, _, ready = await ctx.tick().sample(g("arready"))
        if ready:
            break
    ctx.set(g("arvalid"), 0)
    ctx.set(g("rready"), 1)
    while True:
        _, _, valid, rdata, rresp = await ctx.tick().sample(g("rvalid"), g("rdata"), g("rresp"))
        if valid:
            break
    ctx.set(g("rready"), 0)
    assert rresp == 0
    return rdata


def pack_input(codes, bits, data_width):
    slot = axi.code_slot_bits(bits)
    per = data_width // slot
    beats = []
    for k in range(0, len(codes), per):
        word = 0
        for j, c in enumerate(codes[k:k + per]):
            word |= int(c) << (j * slot)
        beats.append(word)
    return beats


# ----------------------------------------------------------------- registers

class _Bus:
    """Flat s_axi_* view of the register block's ``bus`` port."""

    def __init__(self, regs):
        self.regs = regs

    def __getattr__(self, name):
        return getattr(self.regs.bus, name[len("s_axi_"):])


def test_registers_read_write_and_counters():
    regs = axi.AXI4LiteRegisters(ident=0x12345678, version=0x00020003, in_elements=64,
                                 classes=10, in_format=0x04040108)
    bus = _Bus(regs)
    rng = random.Random(1)
    seen = {}

    async def bench(ctx):
        assert await lite_read(ctx, bus, REGISTERS["ID"]) == 0x12345678
        assert await lite_read(ctx, bus, REGISTERS["VERSION"]) == 0x00020003
        assert await lite_read(ctx, bus, REGISTERS["IN_ELEMENTS"]) == 64
        assert await lite_read(ctx, bus, REGISTERS["CLASSES"]) == 10
        assert await lite_read(ctx, bus, REGISTERS["IN_FORMAT"]) == 0x04040108
        assert await lite_read(ctx, bus, 0x3C) == 0                  # unmapped
        assert await lite_read(ctx, bus, REGISTERS["STATUS"]) == 0
        # 5 busy cycles, 3 frames, one error of each kind
        ctx.set(regs.busy, 1)
        await ctx.tick().repeat(5)
        ctx.set(regs.busy, 0)
        for sig in (regs.frame_done, regs.frame_done, regs.frame_done, regs.err_short,
                    regs.err_long):
            ctx.set(sig, 1)
            await ctx.tick()
            ctx.set(sig, 0)
        assert await lite_read(ctx, bus, REGISTERS["CYCLES"]) == 5
        assert await lite_read(ctx, bus, REGISTERS["FRAMES_DONE"]) == 3
        assert await lite_read(ctx, bus, REGISTERS["STATUS"]) == 0b110
        ctx.set(regs.busy, 1)
        assert await lite_read(ctx, bus, REGISTERS["STATUS"]) & 1 == 1
        ctx.set(regs.busy, 0)
        # writes to read-only registers are ignored
        await lite_write(ctx, bus, REGISTERS["ID"], 0, rng)
        assert await lite_read(ctx, bus, REGISTERS["ID"]) == 0x12345678
        # a CONTROL write with byte 0 disabled does nothing
        await lite_write(ctx, bus, REGISTERS["CONTROL"], axi.CONTROL_CLEAR, rng, strb=0b1110)
        assert await lite_read(ctx, bus, REGISTERS["FRAMES_DONE"]) == 3
        await lite_write(ctx, bus, REGISTERS["CONTROL"], axi.CONTROL_CLEAR, rng)
        for name in ("FRAMES_DONE", "CYCLES", "STATUS", "CONTROL"):
            assert await lite_read(ctx, bus, REGISTERS[name]) == 0, name
        seen["done"] = True

    async def watch_reset(ctx):
        async for _, _, pulse in ctx.tick().sample(regs.soft_reset):
            if pulse:
                seen["reset"] = seen.get("reset", 0) + 1

    async def reset_bench(ctx):
        while "done" not in seen:
            await ctx.tick()
        await lite_write(ctx, bus, REGISTERS["CONTROL"], axi.CONTROL_SOFT_RESET, rng)
        await ctx.tick().repeat(3)
        seen["after"] = True

    sim = Simulator(regs)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(reset_bench)
    sim.add_testbench(watch_reset, background=True)
    sim.run()
    assert seen.get("after") and seen.get("reset") == 1


# ----------------------------------------------------------------- AxisInput

@pytest.mark.parametrize("bits, lanes, elements, width", [
    (8, 1, 64, 32), (2, 2, 30, 32), (1, 8, 72, 64), (12, 2, 10, 32), (4, 4, 4, 32),
    # gearbox: lanes not dividing the codes per beat
    (8, 3, 27, 32), (8, 8, 24, 32), (2, 6, 30, 64), (12, 3, 9, 32), (8, 5, 5, 64),
])
def test_axis_input_packing(bits, lanes, elements, width):
    dut = axi.AxisInput(bits, lanes, elements, data_width=width)
    seed = 7 + bits + lanes
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 1 << bits, size=elements) for _ in range(3)]
    beats = []
    slot = axi.code_slot_bits(bits)
    used = (elements - (dut.beats_per_frame - 1) * dut.codes_per_beat) * slot
    garbage = ((1 << width) - 1) ^ ((1 << used) - 1)      # padding slots of the last beat
    for f in frames:
        words = pack_input(f, bits, width)
        assert len(words) == dut.beats_per_frame
        words[-1] |= garbage                                 # must be ignored
        beats += [(w, int(k == len(words) - 1)) for k, w in enumerate(words)]
    expect = [int(x) for f in frames for x in f]
    got = []
    errors = []
    r = random.Random(seed)

    async def src(ctx):
        await axis_send(ctx, dut.s_axis, beats, r)

    async def sink(ctx):
        await stream_recv(ctx, dut.o, len(expect) // lanes, r, out=got)

    async def watch(ctx):
        async for _, _, s, l, st in ctx.tick().sample(dut.err_short, dut.err_long,
                                                       dut.frame_start):
            if s or l:
                errors.append((s, l))
            if st:
                errors.append("start")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(sink)
    sim.add_testbench(watch, background=True)
    sim.run()
    flat = [(int(p) >> (j * bits)) & ((1 << bits) - 1) for p in got for j in range(lanes)]
    assert flat == expect, f"seed {seed}"
    assert errors == ["start"] * 3, f"seed {seed}"


@pytest.mark.parametrize("lanes, frame, cycles_per_beat", [
    (1, 16, 1),          # 4 codes per input beat, 1 per output beat: no bubble
    (3, 24, 1),          # gearbox, input faster than output: an output beat every cycle
    (8, 24, 2),          # gearbox, two input beats per output beat
])
def test_axis_input_full_rate(lanes, frame, cycles_per_beat):
    dut = axi.AxisInput(8, lanes, frame)
    n_out = 3 * frame // lanes
    times = []

    async def src(ctx):
        ctx.set(dut.s_axis.tvalid, 1)
        ctx.set(dut.o.ready, 1)
        t = 0
        while len(times) < n_out:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            t += 1
            if valid:
                times.append(t)

    async def tlast(ctx):
        # TLAST on every frame's last beat, counted from accepted beats
        beats = 0
        async for _, _, v, r in ctx.tick().sample(dut.s_axis.tvalid, dut.s_axis.tready):
            if v and r:
                beats += 1
            ctx.set(dut.s_axis.tlast, beats % dut.beats_per_frame == dut.beats_per_frame - 1)

    errors = []

    async def watch(ctx):
        async for _, _, e1, e2 in ctx.tick().sample(dut.err_short, dut.err_long):
            if e1 or e2:
                errors.append(1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(tlast, background=True)
    sim.add_testbench(watch, background=True)
    sim.run()
    gaps = {b - a for a, b in zip(times, times[1:])}
    assert gaps == {cycles_per_beat}
    assert not errors


@pytest.mark.parametrize("lanes", [2, 3])        # 3: the gearbox
def test_axis_input_resynchronises_after_short_and_long_frames(lanes):
    bits, elements = 8, 12                          # 3 beats of 4 codes
    dut = axi.AxisInput(bits, lanes, elements)
    rng = np.random.default_rng(3)
    good = [rng.integers(1, 256, size=elements) for _ in range(3)]
    w = [pack_input(f, bits, 32) for f in good]
    beats = [(w[0][0], 0), (w[0][1], 1)]            # short: TLAST on beat 2 of 3
    beats += [(x, 0) for x in w[1]] + [(0xDEAD, 0), (0xBEEF, 1)]   # long: 2 extra beats
    beats += [(x, int(k == 2)) for k, x in enumerate(w[2])]        # a good frame
    expect = list(good[0][:8]) + [0] * 4 + list(good[1]) + list(good[2])
    got, events = [], []
    r = random.Random(3)

    async def src(ctx):
        await axis_send(ctx, dut.s_axis, beats, r)

    async def sink(ctx):
        await stream_recv(ctx, dut.o, len(expect) // lanes, r, out=got)
        await ctx.tick().repeat(20)

    async def watch(ctx):
        async for _, _, s, l in ctx.tick().sample(dut.err_short, dut.err_long):
            if s:
                events.append("short")
            if l:
                events.append("long")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(sink)
    sim.add_testbench(watch, background=True)
    sim.run()
    flat = [(int(p) >> (j * bits)) & 0xFF for p in got for j in range(lanes)]
    assert flat == [int(x) for x in expect]
    assert events == ["short", "long"]


def test_axis_input_checks():
    with pytest.raises(ValueError, match="lanes must divide the frame length 10, not 4"):
        axi.AxisInput(8, 4, 10)
    with pytest.raises(ValueError, match="data width must be 32 or 64, not 16"):
        axi.AxisInput(8, 1, 10, data_width=16)
    with pytest.raises(ValueError, match="input code bits must be at most 16, not 17"):
        axi.AxisInput(17, 1, 10)
    with pytest.raises(TypeError, match="lanes must be an int"):
        axi.AxisInput(8, 1.0, 10)


# ----------------------------------------------------------------- AxisOutput

@pytest.mark.parametrize("score_width, lanes, classes, width", [
    (12, 1, 10, 32), (20, 2, 10, 64), (32, 5, 5, 64), (3, 3, 3, 32),
])
def test_axis_output_words_and_label(score_width, lanes, classes, width):
    dut = axi.AxisOutput(score_width, lanes, classes, data_width=width)
    seed = score_width * 7 + classes
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (score_width - 1)), (1 << (score_width - 1))
    frames = [rng.integers(lo, hi, size=classes) for _ in range(4)]
    frames[1][:] = frames[1][0]                     # all tied: label 0
    frames[2][-1] = hi - 1                          # maximum in the last class
    frames[2][0] = hi - 1                           # ... tied with class 0
    mask = (1 << score_width) - 1
    payloads = []
    for f in frames:
        for k in range(0, classes, lanes):
            v = 0
            for j, s in enumerate(f[k:k + lanes]):
                v |= (int(s) & mask) << (j * score_width)
            payloads.append(v)
    got, done = [], []
    r = random.Random(seed)

    async def src(ctx):
        await stream_send(ctx, dut.i, payloads, r)

    async def sink(ctx):
        await axis_recv(ctx, dut.m_axis, dut.beats_per_frame * len(frames), r, out=got)

    async def watch(ctx):
        async for _, _, d in ctx.tick().sample(dut.frame_done):
            if d:
                done.append(1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(sink)
    sim.add_testbench(watch, background=True)
    sim.run()
    wpb = width // 32
    for n, f in enumerate(frames):
        beats = got[n * dut.beats_per_frame:(n + 1) * dut.beats_per_frame]
        assert [b[1] for b in beats] == [0] * (len(beats) - 1) + [1], f"seed {seed}"
        words = [(b[0] >> (32 * k)) & 0xFFFFFFFF for b in beats for k in range(wpb)]
        scores = [w - (1 << 32) if w >> 31 else w for w in words[:classes]]
        assert scores == [int(s) for s in f], f"seed {seed}"
        assert words[classes] == int(np.argmax(f)), f"seed {seed}"
        assert all(w == 0 for w in words[classes + 1:])
    assert len(done) == len(frames)


@pytest.mark.parametrize("width", [32, 64])
def test_axis_output_rate(width):
    """Free-running source and sink: classes + 2 cycles per frame."""
    classes = 10
    dut = axi.AxisOutput(16, 1, classes, data_width=width)
    done_at = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.m_axis.tready, 1)
        t = 0
        async for _, _, d in ctx.tick().sample(dut.frame_done):
            t += 1
            if d:
                done_at.append(t)
            if len(done_at) == 5:
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    gaps = {b - a for a, b in zip(done_at, done_at[1:])}
    assert gaps == {classes + 2}


def test_axis_output_checks():
    with pytest.raises(ValueError, match="score width must be at most 32, not 33"):
        axi.AxisOutput(33, 1, 10)
    with pytest.raises(ValueError, match="lanes must divide the number of classes 10, not 3"):
        axi.AxisOutput(16, 3, 10)


# ----------------------------------------------------------------- AxiTop

class SumCore(wiring.Component):
    """Test core: score k of a frame = sum of the codes at positions j with j % classes == k,
    emitted ``out_lanes`` per beat after the frame's last code."""

    def __init__(self, frame, classes, out_lanes=1, bits=8):
        self.frame, self.classes, self.out_lanes = frame, classes, out_lanes
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(bits), 1))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(16), out_lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        acc = [Signal(signed(16), name=f"acc{k}") for k in range(self.classes)]
        pos = Signal(range(self.frame))
        cls = Signal(range(self.classes))
        beat = Signal(range(self.classes // self.out_lanes + 1))
        emitting = Signal()
        m.d.comb += self.i.ready.eq(~emitting)
        with m.If(self.i.valid & self.i.ready):
            with m.Switch(cls):
                for k in range(self.classes):
                    with m.Case(k):
                        m.d.sync += acc[k].eq(acc[k] + self.i.payload[0])
            m.d.sync += [pos.eq(pos + 1), cls.eq(cls + 1)]
            with m.If(cls == self.classes - 1):
                m.d.sync += cls.eq(0)
            with m.If(pos == self.frame - 1):
                m.d.sync += [pos.eq(0), cls.eq(0), emitting.eq(1)]
        m.d.comb += self.o.valid.eq(emitting)
        with m.Switch(beat):
            for b in range(self.classes // self.out_lanes):
                with m.Case(b):
                    for j in range(self.out_lanes):
                        m.d.comb += self.o.payload[j].eq(acc[b * self.out_lanes + j])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += beat.eq(beat + 1)
            with m.If(beat == self.classes // self.out_lanes - 1):
                m.d.sync += [beat.eq(0), emitting.eq(0)] + [a.eq(0) for a in acc]
        return m


def test_axi_top_end_to_end():
    frame, classes = 10, 4
    top = axi.AxiTop(SumCore(frame, classes, out_lanes=2), frame_elements=frame,
                     classes=classes, ident=0xC0FFEE01)
    rng = np.random.default_rng(11)
    frames = [rng.integers(0, 256, size=frame) for _ in range(3)]
    frames[2][:] = 0
    frames[2][3] = 5                                # argmax = class 3
    expect_scores = [[int(f[k::classes].sum()) for k in range(classes)] for f in frames]
    beats = []
    for f in frames:
        words = pack_input(f, 8, 32)
        beats += [(w, int(k == len(words) - 1)) for k, w in enumerate(words)]
    got = []
    regs = {}
    r = random.Random(11)

    async def src(ctx):
        await axis_send(ctx, top, beats, r, prefix="s_axis_")

    async def sink(ctx):
        await axis_recv(ctx, top, (classes + 1) * len(frames), r, prefix="m_axis_", out=got)
        regs["frames"] = await lite_read(ctx, top, REGISTERS["FRAMES_DONE"])
        regs["cycles"] = await lite_read(ctx, top, REGISTERS["CYCLES"])
        regs["status"] = await lite_read(ctx, top, REGISTERS["STATUS"])
        regs["id"] = await lite_read(ctx, top, REGISTERS["ID"])
        regs["elements"] = await lite_read(ctx, top, REGISTERS["IN_ELEMENTS"])
        regs["format"] = await lite_read(ctx, top, REGISTERS["IN_FORMAT"])
        # a short frame: error flag, then a soft reset and a clean frame
        await axis_send(ctx, top, [(1, 1)], r, prefix="s_axis_")
        await ctx.tick().repeat(30)
        regs["status_err"] = await lite_read(ctx, top, REGISTERS["STATUS"])
        await lite_write(ctx, top, REGISTERS["CONTROL"],
                         axi.CONTROL_SOFT_RESET | axi.CONTROL_CLEAR, r)
        regs["status_clear"] = await lite_read(ctx, top, REGISTERS["STATUS"])
        words = pack_input(frames[0], 8, 32)
        after = []
        await axis_send(ctx, top, [(w, int(k == len(words) - 1)) for k, w in enumerate(words)],
                        r, prefix="s_axis_")
        await axis_recv(ctx, top, classes + 1, r, prefix="m_axis_", out=after)
        regs["after"] = after
        regs["frames_after"] = await lite_read(ctx, top, REGISTERS["FRAMES_DONE"])

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(sink)
    sim.run()
    for n, scores in enumerate(expect_scores):
        beats_n = got[n * (classes + 1):(n + 1) * (classes + 1)]
        assert [b[0] for b in beats_n[:classes]] == scores
        assert beats_n[classes] == (int(np.argmax(scores)), 1)
        assert all(b[1] == 0 for b in beats_n[:classes])
    assert regs["frames"] == 3 and regs["id"] == 0xC0FFEE01 and regs["elements"] == frame
    assert regs["format"] == 8 | 1 << 8 | 4 << 16 | 4 << 24
    assert 3 * (frame + classes) <= regs["cycles"] < 2000
    assert regs["status"] == 0
    assert regs["status_err"] & axi.STATUS_ERR_SHORT
    assert regs["status_clear"] == 0
    assert [b[0] for b in regs["after"][:classes]] == expect_scores[0]
    assert regs["frames_after"] == 1


def test_axi_top_ports_and_wrapper():
    top = axi.AxiTop(SumCore(10, 4), frame_elements=10, classes=4)
    text = verilog.convert(top, name="qnn_core")
    for port in ("s_axi_awaddr", "s_axi_rdata", "s_axis_tdata", "s_axis_tready",
                 "m_axis_tdata", "m_axis_tlast", "m_axis_tkeep"):
        assert f" {port}" in text, port
    wrapper = axi.verilog_wrapper(top, name="qnn_accel", inner="qnn_core")
    assert "module qnn_accel (" in wrapper and "qnn_core core (" in wrapper
    assert ".rst(~aresetn)" in wrapper
    assert 'X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 m_axis TLAST"' in wrapper
    assert "ASSOCIATED_BUSIF s_axi:s_axis:m_axis" in wrapper
    assert "input wire [11:0] s_axi_awaddr" in wrapper
    assert "output wire [31:0] m_axis_tdata" in wrapper
    # every port of the inner module is connected exactly once
    inner_ports = {p for p in top.signature.members}
    for p in inner_ports:
        assert wrapper.count(f".{p}({p})") == 1, p
    with pytest.raises(ValueError, match="name must be a Verilog identifier"):
        axi.verilog_wrapper(top, name="bad name", inner="qnn_core")
    with pytest.raises(TypeError, match="core must be a wiring.Component"):
        axi.AxiTop(object(), frame_elements=10, classes=4)


def test_build_sources():
    files = axi.build_sources(SumCore(10, 4), frame_elements=10, classes=4, name="net")
    assert sorted(files) == ["net.v", "net_core.v"]
    assert "module net (" in files["net.v"] and "net_core core (" in files["net.v"]
    assert re.search(r"module net_core\s*\(", files["net_core.v"])
