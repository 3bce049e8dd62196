"""AXI side of the accelerator: register block, AXI-Stream adapters, board top.

* :class:`AXI4LiteRegisters`: an AXI4-Lite slave with the register map below.
* :class:`AxisInput`: AXI-Stream beats of packed input codes -> the network's code stream,
  with frame checking (TLAST early or late sets an error flag and resynchronises).
* :class:`AxisOutput`: the network's score stream -> AXI-Stream beats of 32-bit scores
  and the label (argmax, ties to the lowest class), TLAST on the frame's last beat.
* :class:`AxiTop`: a network core wrapped with the three, plus frame/cycle counters,
  with flat ports named the Xilinx way (``s_axi_awaddr``, ``s_axis_tdata``,
  ``m_axis_tlast``, ...), and :func:`verilog_wrapper`, the Verilog top that the Vivado
  block design instantiates as a module reference (``aclk``/``aresetn`` and
  ``X_INTERFACE_INFO`` attributes, so that Vivado sees one AXI4-Lite and two AXI-Stream
  interfaces on one clock).

Register map (32-bit registers, byte addresses; reads of other addresses return 0,
writes to them are ignored; every response is OKAY):

=======  ==============  ===  =========================================================
offset   name            R/W  meaning
=======  ==============  ===  =========================================================
0x00     ID              R    ``ident`` (default 0x514E4E41, ASCII "QNNA")
0x04     VERSION         R    ``version`` (default 0x00010000: major 1, minor 0)
0x08     FRAMES_DONE     R    output frames completed (TLAST beats sent), wraps
0x0C     CYCLES          R    clock cycles during which a frame was in flight, wraps
0x10     STATUS          R    bit 0 busy (a frame in flight), bit 1 short-frame error,
                              bit 2 long-frame error (both sticky until cleared)
0x14     CONTROL         W    bit 0: soft reset of the datapath (core, adapters, the
                              in-flight count); bit 1: clear FRAMES_DONE, CYCLES and
                              the error flags. Self-clearing; reads 0
0x18     IN_ELEMENTS     R    input codes per frame (H * W * C of the model input)
0x1C     CLASSES         R    scores per frame (number of classes)
0x20     IN_FORMAT       R    bits 7:0 input code bits, 15:8 bytes per input code slot,
                              23:16 input TDATA bytes, 31:24 output TDATA bytes
=======  ==============  ===  =========================================================

Beat packing (see docs/hardware.md): input codes travel in tensor order (y, x, c), one
code per byte (codes of more than 8 bits: per 16-bit half-word), the lowest-index code
in the lowest byte of TDATA (the byte order of a NumPy ``uint8``/``uint16`` array in
memory, which the DMA copies as is); the last beat of a frame carries TLAST and zero
padding after the frame's last code. Output: every score a 32-bit two's-complement word,
class 0 first, then one word holding the label, zero padding to the end of the beat;
TLAST on the last beat.
"""

from __future__ import annotations

import functools

from amaranth import Cat, Const, Module, Mux, ResetInserter, Shape, Signal, signed, unsigned
from amaranth.hdl import ShapeCastable
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["AXI4LiteSignature", "AXIStreamSignature", "AXI4LiteRegisters", "AxisInput",
           "AxisOutput", "AxiTop", "verilog_wrapper", "build_sources", "code_slot_bits", "REGISTERS",
           "DEFAULT_IDENT", "DEFAULT_VERSION", "ADDR_WIDTH", "STATUS_BUSY",
           "STATUS_ERR_SHORT", "STATUS_ERR_LONG", "CONTROL_SOFT_RESET",
           "CONTROL_CLEAR"]

#: Register byte offsets.
REGISTERS = {"ID": 0x00, "VERSION": 0x04, "FRAMES_DONE": 0x08, "CYCLES": 0x0C,
             "STATUS": 0x10, "CONTROL": 0x14, "IN_ELEMENTS": 0x18, "CLASSES": 0x1C,
             "IN_FORMAT": 0x20}
STATUS_BUSY, STATUS_ERR_SHORT, STATUS_ERR_LONG = 1, 2, 4
CONTROL_SOFT_RESET, CONTROL_CLEAR = 1, 2
DEFAULT_IDENT = 0x514E4E41          # "QNNA"
DEFAULT_VERSION = 0x00010000
#: AXI4-Lite address width: a 4 KiB window, the smallest a Vivado address map assigns.
ADDR_WIDTH = 12
#: Width of every register and of each output word.
WORD = 32


def code_slot_bits(bits: int) -> int:
    """Bits an input code occupies in TDATA: 8 for codes of up to 8 bits, else 16."""
    return 8 if bits <= 8 else 16


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


class AXIStreamSignature(wiring.Signature):
    """AXI-Stream with TDATA, TKEEP, TLAST, TVALID, TREADY, from the master's side."""

    def __init__(self, data_width: int):
        if data_width not in (32, 64):
            raise ValueError(f"AXI-Stream data width must be 32 or 64, not {data_width}")
        self.data_width = data_width
        super().__init__({
            "tdata": Out(data_width), "tkeep": Out(data_width // 8), "tlast": Out(1),
            "tvalid": Out(1), "tready": In(1),
        })


def _quiet_on_error(init):
    """A component whose parameters are refused is not "created but never used"."""
    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except Exception:
            self._MustUse__silence = True
            raise
    return wrapper


def _check_int(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


class AXI4LiteRegisters(wiring.Component):
    """AXI4-Lite slave holding the accelerator's registers (map in the module docstring).

    Ports besides ``bus``: ``busy`` (a frame is in flight: CYCLES counts), ``frame_done``,
    ``err_short``, ``err_long`` (one-cycle pulses) in; ``soft_reset`` (one-cycle pulse
    when CONTROL bit 0 is written with 1) out.

    Timing: a write completes (BVALID) one cycle after both its address and data were
    accepted; a read answers (RVALID) the cycle after ARVALID & ARREADY. One outstanding
    transaction per direction: AWREADY/WREADY fall while a write waits for BREADY, and
    ARREADY while RVALID waits for RREADY.
    """

    @_quiet_on_error
    def __init__(self, *, ident: int = DEFAULT_IDENT, version: int = DEFAULT_VERSION,
                 in_elements: int = 0, classes: int = 0, in_format: int = 0):
        for name, value in (("ident", ident), ("version", version),
                            ("in_elements", in_elements), ("classes", classes),
                            ("in_format", in_format)):
            _check_int(name, value, 0)
            if value >= 1 << WORD:
                raise ValueError(f"{name} must fit in 32 bits, not {value:#x}")
        self.ident, self.version = ident, version
        self.in_elements, self.classes, self.in_format = in_elements, classes, in_format
        super().__init__({
            "bus": In(AXI4LiteSignature(ADDR_WIDTH, WORD)),
            "busy": In(1), "frame_done": In(1), "err_short": In(1), "err_long": In(1),
            "soft_reset": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        frames = Signal(WORD)
        cycles = Signal(WORD)
        err_short = Signal()
        err_long = Signal()
        clear = Signal()

        with m.If(clear):
            m.d.sync += [frames.eq(0), cycles.eq(0), err_short.eq(0), err_long.eq(0)]
        with m.Else():
            with m.If(self.frame_done):
                m.d.sync += frames.eq(frames + 1)
            with m.If(self.busy):
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

        # Read channel.
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
            status = Cat(self.busy, err_short, err_long)
            with m.Switch(bus.araddr[2:]):
                for name, value in (("ID", self.ident), ("VERSION", self.version),
                                    ("FRAMES_DONE", frames), ("CYCLES", cycles),
                                    ("STATUS", status), ("IN_ELEMENTS", self.in_elements),
                                    ("CLASSES", self.classes),
                                    ("IN_FORMAT", self.in_format)):
                    with m.Case(REGISTERS[name] >> 2):
                        m.d.sync += rdata.eq(value)
                with m.Default():
                    m.d.sync += rdata.eq(0)
        return m


class AxisInput(wiring.Component):
    """AXI-Stream slave of packed input codes -> a code stream of ``lanes`` codes per beat.

    A frame is ``frame_elements`` codes in tensor order, packed ``data_width /
    code_slot_bits(bits)`` per beat (lowest index in the lowest slot); it takes
    ``ceil(frame_elements / codes_per_beat)`` beats and the last one carries TLAST.
    TKEEP is not looked at: the frame length is fixed, so the element count says which
    slots of the last beat hold codes.

    Frame errors: TLAST on an earlier beat (short frame) pulses ``err_short``; the frame
    is completed with zero codes so that the network stays aligned (its result is
    garbage), then the next beat starts a new frame. The last expected beat without
    TLAST (long frame) pulses ``err_long``; the frame goes on normally and beats are
    dropped up to and including the next TLAST. ``frame_start`` pulses when the first
    beat of a frame is accepted.

    Throughput: one output beat (``lanes`` codes) per cycle, no bubble between input
    beats; ``codes_per_beat / lanes`` cycles per input beat when ``lanes`` divides
    ``codes_per_beat``. Other ``lanes`` (e.g. 3 RGB channels, or more lanes than codes
    per beat) go through a code-level gearbox (a buffer of ``codes_per_beat + lanes - 1``
    codes with a variable shift), which sustains ``min(lanes, codes_per_beat)`` codes
    per cycle. Latency: one cycle.

    Parameters: ``bits`` in 1..16; ``lanes`` must divide ``frame_elements``;
    ``data_width`` 32 or 64.
    """

    @_quiet_on_error
    def __init__(self, bits: int, lanes: int, frame_elements: int, *, data_width: int = 32):
        _check_int("bits", bits)
        _check_int("lanes", lanes)
        _check_int("frame_elements", frame_elements)
        if bits > 16:
            raise ValueError(f"input code bits must be at most 16, not {bits}")
        if data_width not in (32, 64):
            raise ValueError(f"data width must be 32 or 64, not {data_width}")
        slot = code_slot_bits(bits)
        per_beat = data_width // slot
        if frame_elements % lanes:
            raise ValueError(f"lanes must divide the frame length {frame_elements}, "
                             f"not {lanes}")
        self.bits, self.lanes, self.frame_elements = bits, lanes, frame_elements
        self.data_width, self.slot, self.codes_per_beat = data_width, slot, per_beat
        self.beats_per_frame = -(-frame_elements // per_beat)
        super().__init__({
            "s_axis": In(AXIStreamSignature(data_width)),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(bits), lanes))),
            "frame_start": Out(1), "err_short": Out(1), "err_long": Out(1),
        })

    def elaborate(self, platform):
        if self.codes_per_beat % self.lanes:
            return self._elaborate_gearbox()
        m = Module()
        axis, o = self.s_axis, self.o
        groups_per_beat = self.codes_per_beat // self.lanes
        last_group = self.frame_elements // self.lanes - 1

        buf = Signal(self.data_width)
        have = Signal()                           # buf holds codes still to emit
        sub = Signal(range(groups_per_beat))      # next group within buf
        group = Signal(range(last_group + 1))     # next group within the frame
        beat = Signal(range(self.beats_per_frame))
        pad = Signal()                            # completing a short frame with zeros
        drop = Signal()                           # discarding the tail of a long frame
        pad_after = Signal()
        drop_after = Signal()

        emit = Signal()
        m.d.comb += emit.eq(o.valid & o.ready)
        beat_done = Signal()                      # the group emitted now ends buf
        m.d.comb += beat_done.eq(emit & ~pad & ((sub == groups_per_beat - 1) |
                                                (group == last_group)))
        frame_done = Signal()
        m.d.comb += frame_done.eq(emit & (group == last_group))

        # Output side.
        lanes_out = [buf.bit_select(j * self.slot, self.bits) for j in range(self.lanes)]
        m.d.comb += [
            o.valid.eq(have | pad),
            o.payload.eq(Cat(*lanes_out)),
        ]
        with m.If(pad):
            m.d.comb += o.payload.eq(0)
        with m.If(emit):
            m.d.sync += [
                buf.eq(buf >> (self.lanes * self.slot)),
                sub.eq(sub + 1),
                group.eq(group + 1),
            ]
            with m.If(frame_done):
                m.d.sync += group.eq(0)
        with m.If(beat_done):
            m.d.sync += [have.eq(0), sub.eq(0)]
            with m.If(pad_after & ~frame_done):
                m.d.sync += pad.eq(1)
            with m.If(drop_after):
                m.d.sync += drop.eq(1)
            m.d.sync += [pad_after.eq(0), drop_after.eq(0)]
        with m.If(pad & frame_done):
            m.d.sync += pad.eq(0)

        # Input side: accept into an empty buffer, or into one whose last group leaves now.
        accept = Signal()
        m.d.comb += [
            axis.tready.eq(drop | (~pad & (~have | (beat_done & ~pad_after & ~drop_after)))),
            accept.eq(axis.tvalid & axis.tready),
        ]
        with m.If(accept & drop):
            with m.If(axis.tlast):
                m.d.sync += drop.eq(0)
        with m.Elif(accept):
            m.d.sync += [buf.eq(axis.tdata), have.eq(1), sub.eq(0)]
            m.d.comb += self.frame_start.eq(beat == 0)
            last_beat = beat == self.beats_per_frame - 1
            with m.If(last_beat | axis.tlast):
                m.d.sync += beat.eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
            with m.If(axis.tlast & ~last_beat):
                m.d.comb += self.err_short.eq(1)
                m.d.sync += pad_after.eq(1)
            with m.If(~axis.tlast & last_beat):
                m.d.comb += self.err_long.eq(1)
                m.d.sync += drop_after.eq(1)
        return m


    def _elaborate_gearbox(self):
        m = Module()
        axis, o = self.s_axis, self.o
        cpb, lanes, slot, n_frame = self.codes_per_beat, self.lanes, self.slot, self.frame_elements
        cap = cpb + lanes - 1                      # codes the buffer holds
        last_n = n_frame - (self.beats_per_frame - 1) * cpb   # codes in a frame's last beat

        # Invariant: bits of ``buf`` above ``count`` codes are zero.
        buf = Signal(cap * slot)
        count = Signal(range(cap + 1))
        appended = Signal(range(n_frame + 1))      # codes of the current frame taken in
        pad = Signal()
        drop = Signal()

        emit = Signal()
        m.d.comb += [
            o.valid.eq(count >= lanes),
            o.payload.eq(Cat(*[buf.bit_select(j * slot, self.bits) for j in range(lanes)])),
            emit.eq(o.valid & o.ready),
        ]
        after = Signal(range(cap + 1))             # codes left once this cycle's emit is out
        m.d.comb += after.eq(Mux(emit, count - lanes, count))
        last_beat = Signal()                       # the next beat ends the frame
        m.d.comb += last_beat.eq(appended + cpb >= n_frame)
        n = Signal(range(cpb + 1))                 # codes the next beat brings
        m.d.comb += n.eq(Mux(last_beat, last_n, cpb))
        room = Signal()
        m.d.comb += room.eq(after + n <= cap)

        incoming = Signal(self.data_width)         # the appended codes (zeros when padding)
        append = Signal()
        accept = Signal()
        m.d.comb += [
            axis.tready.eq(drop | (~pad & room)),
            accept.eq(axis.tvalid & axis.tready),
        ]
        with m.If(drop):
            with m.If(accept & axis.tlast):
                m.d.sync += drop.eq(0)
        with m.Elif(pad):
            m.d.comb += append.eq(room)            # zeros, as if beats of zero codes came
        with m.Else():
            m.d.comb += append.eq(accept)
            m.d.comb += incoming.eq(Mux(last_beat, axis.tdata & ((1 << (last_n * slot)) - 1),
                                        axis.tdata))
            with m.If(accept):
                m.d.comb += self.frame_start.eq(appended == 0)
                with m.If(axis.tlast & ~last_beat):
                    m.d.comb += self.err_short.eq(1)
                    m.d.sync += pad.eq(1)
                with m.If(~axis.tlast & last_beat):
                    m.d.comb += self.err_long.eq(1)
                    m.d.sync += drop.eq(1)

        shifted = Signal(cap * slot)
        m.d.comb += shifted.eq(Mux(emit, buf >> (lanes * slot), buf))
        with m.If(append):
            m.d.sync += [
                buf.eq(shifted | (incoming << (after * slot))),
                count.eq(after + n),
                appended.eq(appended + n),
            ]
            with m.If(last_beat):
                m.d.sync += [appended.eq(0), pad.eq(0)]
        with m.Else():
            m.d.sync += [buf.eq(shifted), count.eq(after)]
        return m


class AxisOutput(wiring.Component):
    """Score stream -> AXI-Stream master of 32-bit words: ``classes`` scores, the label.

    ``i`` carries a frame's ``classes`` scores, ``lanes`` per beat (class ``f*lanes + p``
    in lane ``p`` of beat ``f``). Each score is sign-extended to a 32-bit word; the word
    after the last score holds the label (the first class with the largest score).
    Words fill ``data_width / 32`` slots per beat, lowest first; the beat holding the
    label carries TLAST and zeros after it. ``frame_done`` pulses when that beat is
    taken. TKEEP is all ones.

    Throughput: one word per cycle (a beat leaves while the next one fills), plus one
    cycle per frame after its label beat: ``classes + 2`` cycles per frame with 32-bit
    TDATA and no backpressure. Latency: one cycle. Scores must fit in 32 bits
    (``score_width`` <= 32).
    """

    @_quiet_on_error
    def __init__(self, score_width: int, lanes: int, classes: int, *, data_width: int = 32):
        _check_int("score_width", score_width)
        _check_int("lanes", lanes)
        _check_int("classes", classes)
        if score_width > WORD:
            raise ValueError(f"score width must be at most 32, not {score_width}")
        if classes % lanes:
            raise ValueError(f"lanes must divide the number of classes {classes}, not {lanes}")
        if data_width not in (32, 64):
            raise ValueError(f"data width must be 32 or 64, not {data_width}")
        self.score_width, self.lanes, self.classes = score_width, lanes, classes
        self.data_width = data_width
        self.words_per_beat = data_width // WORD
        self.words_per_frame = classes + 1
        self.beats_per_frame = -(-self.words_per_frame // self.words_per_beat)
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(score_width), lanes))),
            "m_axis": Out(AXIStreamSignature(data_width)),
            "frame_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        i, axis = self.i, self.m_axis
        wpb = self.words_per_beat

        slots = [Signal(WORD, name=f"slot{k}") for k in range(wpb)]
        slot = Signal(range(wpb))
        word = Signal(range(self.words_per_frame))
        lane = Signal(range(self.lanes))
        full = Signal()
        last = Signal()
        best = Signal(signed(self.score_width))
        label = Signal(range(self.classes))

        score = Signal(signed(self.score_width))
        m.d.comb += score.eq(i.payload[lane])

        is_label = Signal()
        m.d.comb += is_label.eq(word == self.classes)
        transfer = Signal()                      # the presented beat is taken now
        m.d.comb += transfer.eq(axis.tvalid & axis.tready)
        can_write = Signal()                     # a word may be written this cycle
        m.d.comb += can_write.eq(~full | (transfer & ~last))
        take = Signal()                          # a word is written this cycle
        m.d.comb += [
            take.eq(can_write & (is_label | i.valid)),
            i.ready.eq(can_write & ~is_label & (lane == self.lanes - 1)),
        ]
        value = Signal(WORD)
        with m.If(is_label):
            m.d.comb += value.eq(label)
        with m.Else():
            m.d.comb += value.eq(score.as_signed())    # sign-extends to 32 bits
        wslot = Signal(range(wpb))               # a beat taken now frees every slot
        m.d.comb += wslot.eq(Mux(full, 0, slot))

        m.d.comb += [
            axis.tvalid.eq(full),
            axis.tdata.eq(Cat(*slots)),
            axis.tlast.eq(last),
            axis.tkeep.eq(Const(-1, self.data_width // 8)),
        ]
        # The beat leaves first; a word written in the same cycle starts the next beat
        # (statements below override these).
        with m.If(transfer):
            m.d.sync += [full.eq(0), slot.eq(0), last.eq(0)]
            m.d.sync += [s.eq(0) for s in slots]
            with m.If(last):
                m.d.sync += word.eq(0)
                m.d.comb += self.frame_done.eq(1)
        with m.If(take):
            with m.Switch(wslot):
                for k in range(wpb):
                    with m.Case(k):
                        m.d.sync += slots[k].eq(value)
            with m.If(is_label):
                m.d.sync += [full.eq(1), last.eq(1)]
            with m.Else():
                m.d.sync += [word.eq(word + 1), lane.eq(lane + 1)]
                with m.If(lane == self.lanes - 1):
                    m.d.sync += lane.eq(0)
                with m.If((word == 0) | (score > best)):
                    m.d.sync += [best.eq(score), label.eq(word)]
                with m.If(wslot == wpb - 1):
                    m.d.sync += full.eq(1)
            with m.If(wslot == wpb - 1):
                m.d.sync += slot.eq(0)
            with m.Else():
                m.d.sync += slot.eq(wslot + 1)
        return m


def _flat_members(prefix: str, signature: wiring.Signature, flip: bool) -> dict:
    members = {}
    for name, member in signature.members.items():
        if flip:
            member = member.flip()
        members[f"{prefix}_{name}"] = member
    return members


class AxiTop(wiring.Component):
    """A network core with AXI ports: the module the block design instantiates.

    ``core`` is a ``wiring.Component`` with ``i: In(stream.Signature(ArrayLayout(
    unsigned(bits), in_lanes)))`` (input codes, tensor order) and ``o:
    Out(stream.Signature(ArrayLayout(signed(w), out_lanes)))`` (the ``classes`` scores
    of a frame). Ports (flat, Xilinx names): ``s_axi_*`` (AXI4-Lite slave, register map
    of this module), ``s_axis_*`` (input codes), ``m_axis_*`` (scores and label). Clock
    and reset are Amaranth's ``clk``/``rst`` (reset active high); :func:`verilog_wrapper`
    turns them into ``aclk``/``aresetn``.

    A soft reset (CONTROL bit 0) resets the core, both adapters and the in-flight count.
    """

    @_quiet_on_error
    def __init__(self, core: wiring.Component, *, frame_elements: int, classes: int,
                 in_width: int = 32, out_width: int = 32, ident: int = DEFAULT_IDENT,
                 version: int = DEFAULT_VERSION):
        if not isinstance(core, wiring.Component):
            raise TypeError(f"core must be a wiring.Component, not {type(core).__name__}")
        for port in ("i", "o"):
            if port not in core.signature.members:
                raise ValueError(f"core must have stream ports 'i' and 'o', missing '{port}'")
        in_layout = core.signature.members["i"].signature.members["payload"].shape
        out_layout = core.signature.members["o"].signature.members["payload"].shape
        if not isinstance(in_layout, data.ArrayLayout) or not isinstance(out_layout, data.ArrayLayout):
            raise TypeError("core payloads must be data.ArrayLayout")
        in_shape = in_layout.elem_shape
        out_shape = out_layout.elem_shape
        if isinstance(in_shape, ShapeCastable):
            in_shape = in_shape.as_shape()
        if isinstance(out_shape, ShapeCastable):
            out_shape = out_shape.as_shape()
        if in_shape.signed:
            raise ValueError("core input codes must be unsigned")
        self.core = core
        self.inp = AxisInput(in_shape.width, in_layout.length, frame_elements,
                             data_width=in_width)
        self.out = AxisOutput(out_shape.width, out_layout.length, classes,
                              data_width=out_width)
        self.frame_elements, self.classes = frame_elements, classes
        in_format = (in_shape.width | (self.inp.slot // 8) << 8 | (in_width // 8) << 16
                     | (out_width // 8) << 24)
        self.regs = AXI4LiteRegisters(ident=ident, version=version,
                                      in_elements=frame_elements, classes=classes,
                                      in_format=in_format)
        members = {}
        members.update(_flat_members("s_axi", AXI4LiteSignature(ADDR_WIDTH, WORD), flip=True))
        members.update(_flat_members("s_axis", AXIStreamSignature(in_width), flip=True))
        members.update(_flat_members("m_axis", AXIStreamSignature(out_width), flip=False))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        soft_reset = Signal()
        m.submodules.regs = regs = self.regs
        m.submodules.core = ResetInserter(soft_reset)(self.core)
        m.submodules.inp = ResetInserter(soft_reset)(self.inp)
        m.submodules.out = ResetInserter(soft_reset)(self.out)
        m.d.comb += soft_reset.eq(regs.soft_reset)

        for prefix, inner in (("s_axi", regs.bus), ("s_axis", self.inp.s_axis),
                              ("m_axis", self.out.m_axis)):
            for name in inner.signature.members:
                outer = getattr(self, f"{prefix}_{name}")
                inner_port = getattr(inner, name)
                if self.signature.members[f"{prefix}_{name}"].flow == wiring.In:
                    m.d.comb += inner_port.eq(outer)
                else:
                    m.d.comb += outer.eq(inner_port)

        wiring.connect(m, self.inp.o, self.core.i)
        wiring.connect(m, self.core.o, self.out.i)

        # Frames in flight: started (first input beat) minus finished (TLAST out).
        in_flight = Signal(16)
        with m.If(soft_reset):
            m.d.sync += in_flight.eq(0)
        with m.Elif(self.inp.frame_start & ~self.out.frame_done):
            m.d.sync += in_flight.eq(in_flight + 1)
        with m.Elif(~self.inp.frame_start & self.out.frame_done & (in_flight != 0)):
            m.d.sync += in_flight.eq(in_flight - 1)
        m.d.comb += [
            regs.busy.eq((in_flight != 0) | self.inp.frame_start),
            regs.frame_done.eq(self.out.frame_done),
            regs.err_short.eq(self.inp.err_short),
            regs.err_long.eq(self.inp.err_long),
        ]
        return m


_AXI_LITE_PORTS = ["awaddr", "awprot", "awvalid", "awready", "wdata", "wstrb", "wvalid",
                   "wready", "bresp", "bvalid", "bready", "araddr", "arprot", "arvalid",
                   "arready", "rdata", "rresp", "rvalid", "rready"]
_AXIS_PORTS = ["tdata", "tkeep", "tlast", "tvalid", "tready"]


def verilog_wrapper(top: AxiTop, *, name: str, inner: str) -> str:
    """Verilog of module ``name``: ``aclk``/``aresetn`` and the AXI ports of ``top``,
    with ``X_INTERFACE_INFO`` attributes, instantiating ``inner`` (``top`` converted by
    ``amaranth.back.verilog.convert(top, name=inner)``, ports ``clk``, ``rst``, ...).
    """
    if not isinstance(top, AxiTop):
        raise TypeError(f"top must be an AxiTop, not {type(top).__name__}")
    for label, value in (("name", name), ("inner", inner)):
        if not isinstance(value, str) or not value.isidentifier():
            raise ValueError(f"{label} must be a Verilog identifier, not {value!r}")
    decls = [
        '  (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)',
        '  (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF s_axi:s_axis:m_axis, '
        'ASSOCIATED_RESET aresetn" *)',
        "  input wire aclk,",
        '  (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)',
        '  (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)',
        "  input wire aresetn,",
    ]
    conns = ["    .clk(aclk),", "    .rst(~aresetn),"]
    groups = (("s_axi", "xilinx.com:interface:aximm:1.0", _AXI_LITE_PORTS),
              ("s_axis", "xilinx.com:interface:axis:1.0", _AXIS_PORTS),
              ("m_axis", "xilinx.com:interface:axis:1.0", _AXIS_PORTS))
    ports = []
    for prefix, vlnv, names in groups:
        for k, port in enumerate(names):
            full = f"{prefix}_{port}"
            member = top.signature.members[full]
            direction = "input" if member.flow == wiring.In else "output"
            width = Shape.cast(member.shape).width
            rng = f"[{width - 1}:0] " if width > 1 else ""
            attrs = [f'  (* X_INTERFACE_INFO = "{vlnv} {prefix} {port.upper()}" *)']
            if k == 0 and prefix == "s_axi":
                attrs.append('  (* X_INTERFACE_PARAMETER = "PROTOCOL AXI4LITE, '
                             f'ADDR_WIDTH {ADDR_WIDTH}, DATA_WIDTH {WORD}" *)')
            ports.append((attrs, f"  {direction} wire {rng}{full}"))
            conns.append(f"    .{full}({full}),")
    lines = [f"// Generated by hdl.shell.axi.verilog_wrapper: the block design's module reference.",
             f"module {name} ("]
    lines += decls
    for n, (attrs, decl) in enumerate(ports):
        lines += attrs
        lines.append(decl + ("," if n < len(ports) - 1 else ""))
    lines.append(");")
    conns[-1] = conns[-1].rstrip(",")
    lines.append(f"  {inner} core (")
    lines += conns
    lines.append("  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def build_sources(core: wiring.Component, *, frame_elements: int, classes: int,
                  name: str = "qnn_accel", in_width: int = 32, out_width: int = 32,
                  ident: int = DEFAULT_IDENT, version: int = DEFAULT_VERSION) -> dict:
    """The Verilog files of a board build: ``{f"{name}_core.v": ..., f"{name}.v": ...}``.

    ``{name}_core.v`` is :class:`AxiTop` around ``core`` (module ``{name}_core``) and
    ``{name}.v`` the :func:`verilog_wrapper` (module ``name``), the module the Vivado
    block design references (``hdl.flow.vivado.write_project(..., top=name, sources=...)``).
    """
    from amaranth.back import verilog as amaranth_verilog
    top = AxiTop(core, frame_elements=frame_elements, classes=classes, in_width=in_width,
                 out_width=out_width, ident=ident, version=version)
    inner = f"{name}_core"
    return {f"{inner}.v": amaranth_verilog.convert(top, name=inner),
            f"{name}.v": verilog_wrapper(top, name=name, inner=inner)}
