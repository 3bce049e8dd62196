"""AXI-Stream beats <-> the network's streams, as Amaranth streams.

An AXI-Stream beat is a ``stream.Signature(axis_layout(width))``: payload ``data``
(TDATA) and ``last`` (TLAST), with ``valid``/``ready`` as TVALID/TREADY. TKEEP is
neither looked at nor produced here; :class:`hdl.shell.axi.AxiTop` names the ports the
Xilinx way. Beat packing (docs/hardware.md, :mod:`hdl.shell.regmap`): input codes in
tensor order, ``floor(TDATA / bits)`` per beat in ``bits``-wide slots, lowest index in
the lowest bits; output 32-bit score words, class 0 first, then the label word.

Batches: a DMA transfer carries ``batch`` frames (the BATCH register), TLAST on its last
beat. :class:`AxisInput` frames by count and tells :class:`AxisOutput`, through the
``ends`` stream (a small FIFO in between), which frames end a batch, so that the output
transfer ends with the same frame even when TLAST came at the wrong place.

:class:`InputFormat` and :class:`OutputFormat` are the adapters' parameters, checked
before any hardware is built.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.engines.plumbing import RegisterSlice, WidthConverter
from hdl.engines.pool import LabelSelect

from .regmap import (MAX_BATCH, MAX_CODE_BITS, WORD, check_tdata_width, code_slot_bits,
                     input_beats_per_frame, output_beats_per_frame, output_cycles_per_frame,
                     output_words_per_frame)

__all__ = ["axis_layout", "InputFormat", "OutputFormat", "AxisInput", "AxisOutput"]


def axis_layout(data_width: int) -> data.StructLayout:
    """Payload of an AXI-Stream beat: TDATA and TLAST."""
    return data.StructLayout({"data": unsigned(data_width), "last": 1})


def _check_int(name, value, minimum=1):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


@dataclass(frozen=True, kw_only=True)
class InputFormat:
    """Input frames: ``frame_elements`` codes of ``bits`` bits (1..16) in TDATA of
    ``data_width`` bits (:data:`~hdl.shell.regmap.TDATA_WIDTHS`), delivered ``lanes``
    per beat to the network; ``lanes`` must divide ``frame_elements``. ``serial``: the
    codes are repacked one per cycle (a cheaper converter, for a network whose frame
    interval leaves the time), else up to one TDATA beat per cycle."""

    bits: int
    lanes: int
    frame_elements: int
    data_width: int = 32
    serial: bool = False

    def __post_init__(self):
        for name in ("bits", "lanes", "frame_elements"):
            _check_int(name, getattr(self, name))
        if self.bits > MAX_CODE_BITS:
            raise ValueError(f"input code bits must be at most {MAX_CODE_BITS}, not {self.bits}")
        check_tdata_width("data width", self.data_width)
        if self.frame_elements % self.lanes:
            raise ValueError(f"lanes must divide the frame length {self.frame_elements}, "
                             f"not {self.lanes}")

    @property
    def slot(self) -> int:
        """Bits of TDATA per code (the code's width: dense)."""
        return code_slot_bits(self.bits)

    @property
    def codes_per_beat(self) -> int:
        return self.data_width // self.slot

    @property
    def beats_per_frame(self) -> int:
        return input_beats_per_frame(self.frame_elements, self.bits, self.data_width)

    @property
    def cycles_per_frame(self) -> int:
        """The input adapter's floor: one beat per cycle, or one code per cycle if serial."""
        return max(self.beats_per_frame, self.frame_elements if self.serial else 0)


@dataclass(frozen=True, kw_only=True)
class OutputFormat:
    """Output frames: ``classes`` signed scores of ``score_width`` bits (at most 32),
    ``lanes`` per beat from the network (``lanes`` divides ``classes``), sent as 32-bit
    words in TDATA of ``data_width`` bits (:data:`~hdl.shell.regmap.TDATA_WIDTHS`)
    followed by the label word."""

    score_width: int
    lanes: int
    classes: int
    data_width: int = 32

    def __post_init__(self):
        for name in ("score_width", "lanes", "classes"):
            _check_int(name, getattr(self, name))
        if self.score_width > WORD:
            raise ValueError(f"score width must be at most 32, not {self.score_width}")
        if self.classes % self.lanes:
            raise ValueError(f"lanes must divide the number of classes {self.classes}, "
                             f"not {self.lanes}")
        check_tdata_width("data width", self.data_width)

    @property
    def words_per_beat(self) -> int:
        return self.data_width // WORD

    @property
    def words_per_frame(self) -> int:
        """The scores and the label."""
        return output_words_per_frame(self.classes)

    @property
    def beats_per_frame(self) -> int:
        return output_beats_per_frame(self.classes, self.data_width)

    @property
    def cycles_per_frame(self) -> int:
        """The adapter's floor: one word per cycle and one cycle to close the frame."""
        return output_cycles_per_frame(self.classes)


class AxisInput(wiring.Component):
    """AXI-Stream beats of packed input codes -> the network's code stream.

    A frame is ``beats_per_frame`` beats and a batch ``batch`` frames (the BATCH
    register, read live: change it between transfers only); TLAST is expected on the
    batch's last beat. The codes past the frame's end in its last beat are dropped
    whatever they hold. A :class:`~hdl.engines.plumbing.WidthConverter`
    (``frame=frame_elements``) repacks ``codes_per_beat`` codes per beat into ``lanes``,
    which leave through a :class:`~hdl.engines.plumbing.RegisterSlice`. A ``serial``
    format repacks through one lane instead (``codes_per_beat`` -> 1 -> ``lanes``): two
    converters that only split and gather, far smaller than a shift buffer between
    widths that do not divide each other (8 -> 3).

    For every frame, ``ends`` carries one flag, taken with the frame's last beat: 1 when
    the frame ends its batch. Its ``valid`` depends on the converter's ``ready``:
    connect a FIFO, whose ``ready`` does not depend on ``valid``. The frame's last beat
    waits for ``ends.ready``.

    Errors: TLAST before the batch's last beat (short) pulses ``err_short``; a frame cut
    in the middle is completed with zero codes so that the network stays aligned (its
    result is garbage), and the frame ends the batch; the next beat starts a new batch.
    The batch's last beat without TLAST (long) pulses ``err_long``; the batch ends
    normally and beats are dropped up to and including the next TLAST.
    ``frame_start`` pulses when the first beat of a frame is accepted.

    Ports
    -----
    i : ``In(stream.Signature(axis_layout(data_width)))``
    o : ``Out(stream.Signature(ArrayLayout(unsigned(bits), lanes)))``
    ends : ``Out(stream.Signature(1))``
    batch : ``In(16)``, frames per batch (at least 1)
    frame_start, err_short, err_long : ``Out(1)``

    Latency and throughput
    ----------------------
    Two cycles (the converter's register, the slice's). No bubble between frames or batches: one
    input beat per cycle when ``lanes >= codes_per_beat``, else one output beat per
    cycle, i.e. ``min(lanes, codes_per_beat)`` codes per cycle. Serial: one code per
    cycle, so a frame takes at least ``frame_elements`` cycles.
    """

    def __init__(self, fmt: InputFormat):
        if not isinstance(fmt, InputFormat):
            raise TypeError(f"fmt must be an InputFormat, not {type(fmt).__name__}")
        self.format = fmt
        super().__init__({
            "i": In(stream.Signature(axis_layout(fmt.data_width))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(fmt.bits), fmt.lanes))),
            "ends": Out(stream.Signature(1)),
            "batch": In(range(MAX_BATCH + 1), init=1),
            "frame_start": Out(1), "err_short": Out(1), "err_long": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, i, ends = self.format, self.i, self.ends
        serial = fmt.serial and fmt.codes_per_beat > 1 and fmt.lanes > 1
        m.submodules.convert = conv = WidthConverter(fmt.bits, fmt.codes_per_beat,
                                                     1 if serial else fmt.lanes,
                                                     frame=fmt.frame_elements)
        converted = conv.o
        if serial:
            m.submodules.gather = gather = WidthConverter(fmt.bits, 1, fmt.lanes)
            wiring.connect(m, conv.o, gather.i)
            converted = gather.o
        # The network's first stage may have no FIFO in front: the slice keeps its ready
        # path out of the converter's and the TLAST logic.
        m.submodules.slice = out_slice = RegisterSlice(data.ArrayLayout(unsigned(fmt.bits), fmt.lanes))
        wiring.connect(m, converted, out_slice.i)
        wiring.connect(m, out_slice.o, wiring.flipped(self.o))

        beat = Signal(range(fmt.beats_per_frame))  # position of the next beat in its frame
        frame = Signal(range(MAX_BATCH + 1))       # position of the frame in its batch
        last_beat = Signal(init=fmt.beats_per_frame == 1)   # beat == beats - 1, a register
        last_frame = Signal()
        pad = Signal()                             # completing a short frame with zeros
        drop = Signal()                            # discarding the tail of a long batch
        m.d.comb += last_frame.eq(frame + 1 >= self.batch)

        # A frame's last beat goes only with its flag into ``ends``.
        flag_ok = Signal()
        m.d.comb += flag_ok.eq(~last_beat | ends.ready)
        codes = [i.payload.data.bit_select(j * fmt.slot, fmt.bits)
                 for j in range(fmt.codes_per_beat)]
        with m.If(pad):
            m.d.comb += [
                conv.i.valid.eq(flag_ok),          # payload 0: a beat of zero codes
                ends.payload.eq(1),
            ]
        with m.Elif(drop):
            m.d.comb += i.ready.eq(1)
        with m.Else():
            m.d.comb += [
                conv.i.valid.eq(i.valid & flag_ok),
                conv.i.payload.eq(Cat(*codes)),
                i.ready.eq(conv.i.ready & flag_ok),
                ends.payload.eq(last_frame | i.payload.last),
            ]
        moved = Signal()                           # a beat enters the converter
        m.d.comb += [
            moved.eq(conv.i.valid & conv.i.ready),
            ends.valid.eq(moved & last_beat),
        ]

        with m.If(moved):
            m.d.sync += [beat.eq(Mux(last_beat, 0, beat + 1)),
                         last_beat.eq(Mux(last_beat, fmt.beats_per_frame == 1,
                                          beat == fmt.beats_per_frame - 2
                                          if fmt.beats_per_frame > 1 else 1))]
            with m.If(last_beat):
                m.d.sync += [pad.eq(0), frame.eq(Mux(ends.payload, 0, frame + 1))]
        with m.If(drop & i.valid & i.payload.last):
            m.d.sync += drop.eq(0)
        with m.If(~pad & ~drop & i.valid & i.ready):
            m.d.comb += self.frame_start.eq(beat == 0)
            with m.If(i.payload.last & ~(last_beat & last_frame)):
                m.d.comb += self.err_short.eq(1)
                with m.If(~last_beat):
                    m.d.sync += pad.eq(1)
            with m.If(~i.payload.last & last_beat & last_frame):
                m.d.comb += self.err_long.eq(1)
                m.d.sync += drop.eq(1)
        return m


class AxisOutput(wiring.Component):
    """The network's score stream -> AXI-Stream beats of 32-bit words: scores, label.

    ``i`` carries a frame's ``classes`` scores, ``lanes`` per beat (class ``f*lanes + p``
    in lane ``p`` of beat ``f``). Each score is sign-extended to a 32-bit word; the word
    after the last score holds the label, found by a
    :class:`~hdl.engines.pool.LabelSelect` as the scores pass one per cycle behind a
    :class:`~hdl.engines.plumbing.WidthConverter` (the first class with the largest
    score). Words fill ``data_width / 32`` slots per beat, lowest first; a
    frame's last beat holds its label and zeros after it, and the next frame starts a
    new beat. The label word waits for the frame's flag on ``ends`` (from
    :class:`AxisInput`): the frame's last beat has ``last`` (TLAST) set when the flag is
    1, so that TLAST ends the batch. ``frame_done`` pulses when a label beat is taken.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(signed(score_width), lanes)))``
    ends : ``In(stream.Signature(1))``
    o : ``Out(stream.Signature(axis_layout(data_width)))``
    frame_done : ``Out(1)``

    Latency and throughput
    ----------------------
    One word per cycle (a beat leaves while the next one fills), with no bubble between
    frames: ``classes + 1`` cycles per frame with no backpressure. A score's word
    reaches ``o`` two cycles after its beat is taken (the converter's register, then
    the slot).
    """

    def __init__(self, fmt: OutputFormat):
        if not isinstance(fmt, OutputFormat):
            raise TypeError(f"fmt must be an OutputFormat, not {type(fmt).__name__}")
        self.format = fmt
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(fmt.score_width), fmt.lanes))),
            "ends": In(stream.Signature(1)),
            "o": Out(stream.Signature(axis_layout(fmt.data_width))),
            "frame_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, o, ends = self.format, self.o, self.ends
        wpb, lanes = fmt.words_per_beat, fmt.lanes
        # One score per cycle (the rate of the words): the label is a running compare
        # of one score at a time, not a comparison tree across the lanes.
        m.submodules.serial = serial = WidthConverter(fmt.score_width, lanes, 1, signed=True)
        m.submodules.select = select = LabelSelect(fmt.classes, width=fmt.score_width, lanes=1)
        wiring.connect(m, wiring.flipped(self.i), serial.i)
        wiring.connect(m, serial.o, select.i)
        src = select.o

        # A slot holds a word's low bits: a score, or the label with a 0 sign bit; the
        # bits above are its sign, wired out (no logic, no flip-flops).
        slot_shape = signed(max(fmt.score_width, (fmt.classes - 1).bit_length() + 1))
        slots = [Signal(slot_shape, name=f"slot{k}") for k in range(wpb)]
        slot = Signal(range(wpb))                # next slot to write
        word = Signal(range(fmt.words_per_frame))
        full = Signal()                          # the beat in ``slots`` is presented
        frame_end = Signal()                     # ... and it holds a label
        last = Signal()                          # ... and it ends the batch (TLAST)
        label = Signal(range(fmt.classes))

        is_label = Signal()
        m.d.comb += is_label.eq(word == fmt.classes)
        transfer = Signal()                      # the presented beat is taken now
        m.d.comb += transfer.eq(o.valid & o.ready)
        can_write = Signal()                     # a word may be written this cycle
        m.d.comb += can_write.eq(~full | transfer)
        take = Signal()                          # a word is written this cycle
        m.d.comb += [
            take.eq(can_write & Mux(is_label, ends.valid, src.valid)),
            src.ready.eq(can_write & ~is_label),
            ends.ready.eq(can_write & is_label),
        ]
        with m.If(src.valid & src.ready & src.payload.last):
            m.d.sync += label.eq(src.payload.label)
        score = Signal(signed(fmt.score_width))
        m.d.comb += score.eq(src.payload.scores[0])
        value = Signal(slot_shape)
        with m.If(is_label):
            m.d.comb += value.eq(label)
        with m.Else():
            m.d.comb += value.eq(score)
        wslot = Signal(range(wpb))               # a beat taken now frees every slot
        m.d.comb += wslot.eq(Mux(full, 0, slot))

        m.d.comb += [
            o.valid.eq(full),
            o.payload.data.eq(Cat(*(Cat(s, s[-1].replicate(WORD - len(s))) for s in slots))),
            o.payload.last.eq(last),
        ]
        # The beat leaves first; a word written in the same cycle starts the next beat
        # (statements below override these).
        with m.If(transfer):
            m.d.sync += [full.eq(0), slot.eq(0), last.eq(0), frame_end.eq(0)]
            m.d.sync += [s.eq(0) for s in slots]
            m.d.comb += self.frame_done.eq(frame_end)
        with m.If(take):
            with m.Switch(wslot):
                for k in range(wpb):
                    with m.Case(k):
                        m.d.sync += slots[k].eq(value)
            with m.If(is_label):
                m.d.sync += [full.eq(1), frame_end.eq(1), last.eq(ends.payload),
                             word.eq(0), slot.eq(0)]
            with m.Else():
                m.d.sync += [word.eq(word + 1), slot.eq(Mux(wslot == wpb - 1, 0, wslot + 1))]
                with m.If(wslot == wpb - 1):
                    m.d.sync += full.eq(1)
        return m
