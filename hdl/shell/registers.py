"""The AXI4-Lite register block, its address decode built from :data:`regmap.REGISTER_MAP`."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .regmap import ADDR_WIDTH, MAX_BATCH, REGISTER_MAP, REGISTERS, WORD, RegisterValues

__all__ = ["AXI4LiteSignature", "AXI4LiteRegisters"]


class AXI4LiteSignature(wiring.Signature):
    """AXI4-Lite, from the master's side (``In(AXI4LiteSignature(...))`` for a slave).

    Members use the AXI names in lower case (``awaddr``, ``wdata``, ``bresp``, ...).
    """

    def __init__(self, addr_width: int = ADDR_WIDTH, data_width: int = WORD):
        if data_width not in (32, 64):
            raise ValueError(f"AXI4-Lite data width must be 32 or 64, not {data_width}")
        if not isinstance(addr_width, int) or addr_width < 3:
            raise ValueError(f"AXI4-Lite address width must be at least 3, not {addr_width!r}")
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })


class AXI4LiteRegisters(wiring.Component):
    """AXI4-Lite slave holding the accelerator's registers (:mod:`hdl.shell.regmap`).

    Parameters
    ----------
    values : RegisterValues
        What ID, VERSION, IN_ELEMENTS, CLASSES and IN_FORMAT read.

    Ports
    -----
    bus : ``In(AXI4LiteSignature())``
    busy : In(1)
        A frame is in flight: CYCLES counts, STATUS bit 0.
    frame_done, err_short, err_long : In(1)
        One-cycle pulses: FRAMES_DONE counts, the STATUS error flags are set.
    soft_reset : Out(1)
        One-cycle pulse when CONTROL bit 0 is written with 1.
    batch : Out(16)
        The BATCH register: frames per transfer, 1..65535 (a write of 0 stores 1; the
        pin reset sets 1, the soft reset leaves it).
    weight_base : Out(64), weight_enable : Out(1)
        WEIGHT_BASE_HI/LO as written; enable rises with the first WEIGHT_BASE_LO write.

    Timing
    ------
    A write completes (BVALID) one cycle after both its address and data were accepted;
    a read answers (RVALID) the cycle after ARVALID & ARREADY. One outstanding
    transaction per direction: AWREADY/WREADY fall while a write waits for BREADY, and
    ARREADY while RVALID waits for RREADY. Only WSTRB bit 0 of a CONTROL write counts; a
    BATCH write needs WSTRB bits 0 and 1 and takes WDATA bits 15:0.
    """

    def __init__(self, values: RegisterValues = RegisterValues()):
        if not isinstance(values, RegisterValues):
            raise TypeError(f"values must be a RegisterValues, not {type(values).__name__}")
        self.values = values
        super().__init__({
            "bus": In(AXI4LiteSignature(ADDR_WIDTH, WORD)),
            "busy": In(1), "frame_done": In(1), "err_short": In(1), "err_long": In(1),
            "soft_reset": Out(1), "batch": Out(range(MAX_BATCH + 1), init=1),
            "weight_base": Out(64), "weight_enable": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        frames = Signal(WORD)
        cycles = Signal(WORD)
        err_short = Signal()
        err_long = Signal()
        clear = Signal()
        # busy comes from the shell's frame counters across the hierarchy; registered, its
        # logic does not add to the read-data mux's depth (STATUS and CYCLES lag a cycle)
        busy = Signal()
        m.d.sync += busy.eq(self.busy)

        with m.If(clear):
            m.d.sync += [frames.eq(0), cycles.eq(0), err_short.eq(0), err_long.eq(0)]
        with m.Else():
            with m.If(self.frame_done):
                m.d.sync += frames.eq(frames + 1)
            with m.If(busy):
                m.d.sync += cycles.eq(cycles + 1)
            with m.If(self.err_short):
                m.d.sync += err_short.eq(1)
            with m.If(self.err_long):
                m.d.sync += err_long.eq(1)

        # Write channel: latch address and data independently, answer when both are in.
        aw_full = Signal()
        w_full = Signal()
        aw_addr = Signal(ADDR_WIDTH)
        w_data = Signal(WORD)
        w_strb = Signal(WORD // 8)
        bvalid = Signal()
        m.d.comb += [
            bus.awready.eq(~aw_full),
            bus.wready.eq(~w_full),
            bus.bvalid.eq(bvalid),
            bus.bresp.eq(0),
        ]
        with m.If(bus.awvalid & bus.awready):
            m.d.sync += [aw_full.eq(1), aw_addr.eq(bus.awaddr)]
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += [w_full.eq(1), w_data.eq(bus.wdata), w_strb.eq(bus.wstrb)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        do_write = Signal()
        m.d.comb += do_write.eq(aw_full & w_full & ~bvalid)
        with m.If(do_write):
            m.d.sync += [aw_full.eq(0), w_full.eq(0), bvalid.eq(1)]
        write_control = Signal()
        m.d.comb += write_control.eq(do_write & (aw_addr[2:] == REGISTERS["CONTROL"] >> 2)
                                     & w_strb[0])
        m.d.comb += [
            self.soft_reset.eq(write_control & w_data[0]),
            clear.eq(write_control & w_data[1]),
        ]
        batch = Signal(range(MAX_BATCH + 1), init=1)
        m.d.comb += self.batch.eq(batch)
        with m.If(do_write & (aw_addr[2:] == REGISTERS["BATCH"] >> 2) & (w_strb[:2] == 0b11)):
            m.d.sync += batch.eq(Mux(w_data[:16] == 0, 1, w_data[:16]))
        # WEIGHT_BASE_HI/LO: the weight buffer's address; a LO write enables the streamers.
        for name, lo in (("WEIGHT_BASE_LO", 0), ("WEIGHT_BASE_HI", 32)):
            with m.If(do_write & (aw_addr[2:] == REGISTERS[name] >> 2)):
                m.d.sync += self.weight_base[lo:lo + 32].eq(w_data)
                if not lo:
                    m.d.sync += self.weight_enable.eq(1)

        # Read channel: one case per readable register of the table.
        live = {"frames_done": frames, "cycles": cycles,
                "status": Cat(busy, err_short, err_long), "batch": batch}
        rvalid = Signal()
        rdata = Signal(WORD)
        m.d.comb += [
            bus.arready.eq(~rvalid),
            bus.rvalid.eq(rvalid),
            bus.rdata.eq(rdata),
            bus.rresp.eq(0),
        ]
        with m.If(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += rvalid.eq(1)
            with m.Switch(bus.araddr[2:]):
                for reg in REGISTER_MAP:
                    if "R" not in reg.access:
                        continue
                    value = live[reg.source] if reg.source in live else getattr(self.values, reg.source)
                    with m.Case(reg.offset >> 2):
                        m.d.sync += rdata.eq(value)
                with m.Default():
                    m.d.sync += rdata.eq(0)
        return m
