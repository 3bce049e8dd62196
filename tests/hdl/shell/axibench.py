"""Amaranth-simulator drivers for the shell's tests: AXI-Stream on flat Xilinx-named ports
(``prefix + "tdata"``, ...), ``lib.stream`` ports, AXI4-Lite transactions, input packing,
and a small test core."""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.shell.regmap import code_slot_bits

__all__ = ["axis_send", "axis_recv", "stream_send", "stream_recv", "lite_write", "lite_read",
           "pack_input", "axis_payloads", "SumCore"]


async def axis_send(ctx, port, beats, rng, gap_prob=0.3, prefix=""):
    """Send ``beats`` (list of (tdata, tlast)) on the flat AXI-Stream slave ports
    ``prefix + "tvalid"``, ... of ``port``, with random gaps."""
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
    """Receive ``n`` beats from flat AXI-Stream master ports; returns list of (tdata, tlast)."""
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
    """Send raw payload values on a ``lib.stream`` port, with random gaps."""
    for p in payloads:
        while rng.random() < gap_prob:
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.valid, 1)
        ctx.set(getattr(port.payload, "as_value", lambda: port.payload)(), p)
        while True:
            _, _, ready = await ctx.tick().sample(port.ready)
            if ready:
                break
    ctx.set(port.valid, 0)


async def stream_recv(ctx, port, n, rng, stall_prob=0.3, out=None):
    """Receive ``n`` raw payload values from a ``lib.stream`` port, with random stalls."""
    got = [] if out is None else out
    while len(got) < n:
        ready = rng.random() >= stall_prob
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload.as_value())
        if valid and ready:
            got.append(payload)
    ctx.set(port.ready, 0)
    return got


def axis_payloads(beats, data_width):
    """(tdata, tlast) beats -> raw payloads of ``axis_layout(data_width)``."""
    return [tdata | tlast << data_width for tdata, tlast in beats]


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
    """Input codes -> TDATA words, as docs/hardware.md packs them (written independently
    of the driver's NumPy packing)."""
    slot = code_slot_bits(bits)
    per = data_width // slot
    beats = []
    for k in range(0, len(codes), per):
        word = 0
        for j, c in enumerate(codes[k:k + per]):
            word |= int(c) << (j * slot)
        beats.append(word)
    return beats


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
