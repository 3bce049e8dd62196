"""Stream plumbing: a FIFO, a register slice and a lane-width converter for
``amaranth.lib.stream`` ports.

Both blocks are payload-agnostic about meaning: they move elements in order and never
reorder, drop or invent any.
"""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ._checks import check_int as _check_int
from .described import Described

__all__ = ["StreamFIFO", "StreamFIFOSpec", "fifo_slots", "RegisterSlice", "RegisterSliceSpec", "WidthConverter",
           "WidthConverterSpec"]


class _PassSpec:
    """A block with one input and one output stream of the same payload."""

    def __init__(self, payload_shape):
        try:
            Shape.cast(payload_shape)
        except TypeError as exc:
            raise TypeError(f"payload_shape must be shape-castable, not {payload_shape!r}") from exc
        self.payload_shape = payload_shape

    @property
    def signature(self) -> wiring.Signature:
        return wiring.Signature({
            "i": In(stream.Signature(self.payload_shape)),
            "o": Out(stream.Signature(self.payload_shape)),
        })


def fifo_slots(depth: int) -> int:
    """Beats of storage in a :class:`StreamFIFO` of ``depth``."""
    return max(depth + 1, 3)


class StreamFIFOSpec(_PassSpec):
    """The FIFO's description: checked parameters (those of :class:`StreamFIFO`), ports
    and latency."""

    #: Cycles from a write into an empty FIFO to the valid output.
    latency = 2

    def __init__(self, payload_shape, depth):
        super().__init__(payload_shape)
        _check_int("depth", depth, 1)
        self.depth = depth
        #: Beats of storage built: ``depth`` and the one that may arrive while ``i.ready``
        #: (a register) catches up with the level (two at depth 1).
        self.slots = fifo_slots(depth)


class StreamFIFO(Described):
    """A first-in first-out buffer between two streams of the same payload.

    Parameters
    ----------
    payload_shape : shape-castable
        Shape or layout of the payload (for example ``data.ArrayLayout(unsigned(2), 4)``).
    depth : int
        Number of beats it holds, at least 1.

    Ports
    -----
    i : ``In(stream.Signature(payload_shape))``
    o : ``Out(stream.Signature(payload_shape))``

    Latency and throughput
    ----------------------
    One beat per cycle in and out. A beat written into an empty FIFO appears on ``o``
    two cycles later (``SyncFIFOBuffered``: the read data is registered). ``i.ready``
    and ``o.valid`` are registers: ``i.ready`` says the level was below ``depth`` a
    cycle ago, so the buffer has a slot more (:func:`fifo_slots`) for the beat that may
    arrive meanwhile; the producer's control never waits on the level compare. Full rate
    from depth 3 on; depth 2 passes a beat every other cycle, depth 1 every third.
    """

    Spec = StreamFIFOSpec

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self.payload_shape).width
        # A write when the level was below depth a cycle ago finds the inner FIFO
        # (SyncFIFOBuffered's depth - 1 entries) not full, given the slots of fifo_slots.
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=width, depth=fifo_slots(self.depth))
        ready = Signal()
        m.d.sync += ready.eq(fifo.level < self.depth)
        m.d.comb += [
            fifo.w_data.eq(self.i.payload),
            fifo.w_en.eq(self.i.valid & ready),
            self.i.ready.eq(ready),
            self.o.payload.eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
        ]
        return m


class RegisterSliceSpec(_PassSpec):
    """The register slice's description: its payload shape, ports and latency."""

    #: Cycles from a transfer on ``i`` to the beat's valid on ``o`` (when ``o`` is free).
    latency = 1


class RegisterSlice(Described):
    """A two-beat skid buffer that cuts the ready path: ``i.ready`` comes from a register,
    so the producer's logic never sees the consumer's ``o.ready`` in the same cycle.

    Parameters
    ----------
    payload_shape : shape-castable

    Ports
    -----
    i : ``In(stream.Signature(payload_shape))``
    o : ``Out(stream.Signature(payload_shape))``

    Latency and throughput
    ----------------------
    One beat per cycle in and out; a beat taken on ``i`` is valid on ``o`` in the next
    cycle. ``o.valid``, ``o.payload`` and ``i.ready`` come from registers; ``o.ready``
    only loads the output register (from the skid register or ``i``).
    """

    Spec = RegisterSliceSpec

    def elaborate(self, platform):
        m = Module()
        main = Signal(self.payload_shape)
        main_valid = Signal()
        skid = Signal(self.payload_shape)
        skid_valid = Signal()
        take = Signal()                     # a beat enters from ``i``
        load = Signal()                     # the output register takes a new beat (or none)
        m.d.comb += [
            self.i.ready.eq(~skid_valid),
            take.eq(self.i.valid & ~skid_valid),
            load.eq(~main_valid | self.o.ready),
            self.o.valid.eq(main_valid),
            self.o.payload.eq(main),
        ]
        with m.If(load):
            with m.If(skid_valid):
                m.d.sync += [main.eq(skid), main_valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [main.eq(self.i.payload), main_valid.eq(take)]
        with m.Elif(take):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


class WidthConverterSpec:
    """The width converter's description: checked parameters (those of
    :class:`WidthConverter`), element shape, buffer capacity and ports."""

    def __init__(self, bits, in_lanes, out_lanes, *, signed=False, frame=None):
        _check_int("bits", bits, 1)
        _check_int("in_lanes", in_lanes, 1)
        _check_int("out_lanes", out_lanes, 1)
        if not isinstance(signed, bool):
            raise TypeError(f"signed must be a bool, not {signed!r}")
        if frame is not None:
            _check_int("frame", frame, 1)
        self.bits = bits
        self.in_lanes = in_lanes
        self.out_lanes = out_lanes
        self.signed = signed
        self.frame = frame
        self.element_shape = Shape(bits, signed)
        #: Elements the shift buffer holds, ``in_lanes + out_lanes - 1``.
        self.capacity = in_lanes + out_lanes - 1

    @property
    def signature(self) -> wiring.Signature:
        return wiring.Signature({
            "i": In(stream.Signature(data.ArrayLayout(self.element_shape, self.in_lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(self.element_shape, self.out_lanes))),
        })


class WidthConverter(Described):
    """Repacks a stream of ``in_lanes`` elements per beat into ``out_lanes`` per beat.

    Element order is preserved: lane 0 of the first input beat is lane 0 of the first
    output beat, and so on. Any ratio works (``in_lanes`` dividing ``out_lanes``, the
    reverse, or neither, e.g. 3 -> 4). Output beats do not respect frame boundaries, so
    for a frame of ``n`` elements ``out_lanes`` should divide ``n`` (else the last output
    beat waits for elements of the next frame).

    Parameters
    ----------
    bits : int
        Width of one element.
    in_lanes, out_lanes : int
        Elements per input beat and per output beat.
    signed : bool
        Elements are ``signed(bits)`` instead of ``unsigned(bits)``.
    frame : int or None
        Elements per input frame, when ``in_lanes`` need not divide it: a frame is then
        ``ceil(frame / in_lanes)`` input beats and its last beat holds the remaining
        ``frame - (beats - 1) * in_lanes`` elements in its lowest lanes; its other lanes
        are dropped (for example the padding of a bus word). ``None``: every lane counts.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(shape, in_lanes)))``
    o : ``Out(stream.Signature(ArrayLayout(shape, out_lanes)))``

    Implementation, latency and throughput
    --------------------------------------
    Four datapaths, chosen by the ratio, so that the common ones stay shallow (a few
    LUT levels from any register, whatever the lane counts):

    * ``out_lanes`` divides ``in_lanes`` (and ``frame``, if given): one input beat is
      held and shifted down by ``out_lanes`` per output beat;
    * ``in_lanes`` divides ``out_lanes`` (and ``frame``): input beats are written into
      the slots of one output beat in turn;
    * ``frame`` is a multiple of ``out_lanes`` and no input beat of a frame spans two
      output beats (a bus word's codes into a whole-frame vector, 64 -> 784): likewise,
      each beat's slots fixed by its position in the frame;
    * otherwise a shift buffer of ``in_lanes + out_lanes - 1`` elements (the least that
      never deadlocks) with a fill count.

    ``o.valid`` comes from registers only; ``i.ready`` is set when an input beat fits
    after this cycle's output transfer (a whole one, ``in_lanes`` elements, for the shift
    buffer), so it depends combinationally on ``o.ready``, one LUT deep.
    An element entering an empty converter can leave one cycle later. Every cycle it
    accepts an input beat unless that could overflow the buffer and emits an output
    beat whenever one is complete, so with a free-running source and sink it sustains
    one input beat per cycle when ``in_lanes <= out_lanes`` and one output beat per
    cycle when ``in_lanes >= out_lanes`` (the ideal rate of the narrower side).
    """

    Spec = WidthConverterSpec

    def elaborate(self, platform):
        m = Module()
        n_in, n_out = self.in_lanes, self.out_lanes
        whole_frames = self.frame is None
        if n_in % n_out == 0 and (whole_frames or self.frame % n_out == 0):
            self._narrow(m)
        elif n_out % n_in == 0 and (whole_frames or self.frame % n_in == 0):
            self._widen(m)
        elif self._beats_fit_slots():
            self._frame_slots(m)
        else:
            self._shift_buffer(m)
        return m

    def _beats_fit_slots(self) -> bool:
        """Every input beat of a frame lands within one output beat (frame given and a
        multiple of ``out_lanes``)."""
        n_in, n_out, frame = self.in_lanes, self.out_lanes, self.frame
        if frame is None or frame % n_out:
            return False
        return all(first // n_out == (min(first + n_in, frame) - 1) // n_out
                   for first in range(0, frame, n_in))

    def _last_beat(self, m, in_fire):
        """A signal set on a frame's last input beat (None when every beat is whole)."""
        n_in = self.in_lanes
        if self.frame is None or self.frame % n_in == 0:
            return None
        beats = -(-self.frame // n_in)
        beat = Signal(range(beats))
        last = Signal()
        m.d.comb += last.eq(beat == beats - 1)
        with m.If(in_fire):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        return last

    def _narrow(self, m):
        """``out_lanes`` divides ``in_lanes``: hold a beat, shift it out a chunk at a time."""
        n_in, n_out = self.in_lanes, self.out_lanes
        chunks = n_in // n_out
        buf = [Signal(self.element_shape, name=f"buf{j}") for j in range(n_in)]
        left = Signal(range(chunks + 1))            # output beats still held
        # left != 0 and left == 1 as registers: i.ready is one LUT from them and o.ready
        held, one = Signal(), Signal()
        out_fire, in_fire = Signal(), Signal()
        m.d.comb += [
            self.o.valid.eq(held),
            out_fire.eq(self.o.valid & self.o.ready),
            self.i.ready.eq(~held | (one & self.o.ready)),
            in_fire.eq(self.i.valid & self.i.ready),
        ]
        for lane in range(n_out):
            m.d.comb += self.o.payload[lane].eq(buf[lane])
        last = self._last_beat(m, in_fire)
        n_chunks = chunks if last is None else \
            Mux(last, (self.frame - (-(-self.frame // n_in) - 1) * n_in) // n_out, chunks)
        with m.If(in_fire):
            m.d.sync += [left.eq(n_chunks), held.eq(n_chunks != 0), one.eq(n_chunks == 1)]
            m.d.sync += [buf[j].eq(self.i.payload[j]) for j in range(n_in)]
        with m.Elif(out_fire):
            m.d.sync += [left.eq(left - 1), held.eq(~one), one.eq(left == 2)]
            m.d.sync += [buf[j].eq(buf[j + n_out]) for j in range(n_in - n_out)]

    def _output_beat(self, m):
        """The output beat being filled, ``buf``, presented while ``full``; an input beat
        is taken while it is not full or leaves this cycle. ``(buf, full, in_fire,
        out_fire)``."""
        buf = [Signal(self.element_shape, name=f"buf{j}") for j in range(self.out_lanes)]
        full = Signal()
        out_fire, in_fire = Signal(), Signal()
        m.d.comb += [
            self.o.valid.eq(full),
            out_fire.eq(self.o.valid & self.o.ready),
            self.i.ready.eq(~full | self.o.ready),
            in_fire.eq(self.i.valid & self.i.ready),
        ]
        for lane in range(self.out_lanes):
            m.d.comb += self.o.payload[lane].eq(buf[lane])
        return buf, full, in_fire, out_fire

    def _widen(self, m):
        """``in_lanes`` divides ``out_lanes``: fill the slots of one output beat in turn."""
        n_in, n_out = self.in_lanes, self.out_lanes
        slots = n_out // n_in
        slot = Signal(range(slots))                 # the slot the next input beat fills
        buf, full, in_fire, out_fire = self._output_beat(m)
        with m.If(in_fire):
            m.d.sync += [slot.eq(Mux(slot == slots - 1, 0, slot + 1)), full.eq(slot == slots - 1)]
            for s in range(slots):
                with m.If(slot == s):
                    m.d.sync += [buf[s * n_in + j].eq(self.i.payload[j]) for j in range(n_in)]
        with m.Elif(out_fire):
            m.d.sync += full.eq(0)

    def _frame_slots(self, m):
        """``frame`` is a multiple of ``out_lanes`` and no input beat of a frame spans two
        output beats (say 64 -> 784 lanes for a 784-element frame): each beat writes its
        lanes into fixed slots, chosen by its position in the frame."""
        n_in, n_out, frame = self.in_lanes, self.out_lanes, self.frame
        beats = -(-frame // n_in)
        beat = Signal(range(beats))                 # position of the next input beat
        buf, full, in_fire, out_fire = self._output_beat(m)
        with m.If(in_fire):
            m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))
            with m.Switch(beat):
                for k in range(beats):
                    first, count = k * n_in, min(n_in, frame - k * n_in)
                    with m.Case(k):
                        m.d.sync += [buf[(first + j) % n_out].eq(self.i.payload[j])
                                     for j in range(count)]
                        m.d.sync += full.eq((first + count) % n_out == 0)
        with m.Elif(out_fire):
            m.d.sync += full.eq(0)

    def _shift_buffer(self, m):
        """Any ratio: a shift buffer with a fill count.

        ``count >= out_lanes`` (``full``) and ``count < 2 * out_lanes`` are registers, so
        ``o.valid`` is one and ``i.ready`` one LUT from them and ``o.ready``. An input
        beat fits when the buffer is not full (``count + in_lanes <= capacity``) or an
        output beat leaves and at most ``2 * out_lanes - 1`` elements were held. The next
        count and flags are chosen among four candidates (input or not, output or not)
        computed from registers, and element ``j`` takes input lane ``j - count`` (or
        ``j + out_lanes - count`` when an output beat leaves) through a multiplexer on
        the count register, so no path runs through an adder after ``o.ready``.
        """
        n_in, n_out, cap = self.in_lanes, self.out_lanes, self.capacity
        buf = [Signal(self.element_shape, name=f"buf{j}") for j in range(cap)]
        count = Signal(range(cap + 1))
        full = Signal()                     # count >= n_out
        room = Signal()                     # count < 2 * n_out
        out_fire = Signal()
        in_fire = Signal()
        m.d.comb += [
            self.o.valid.eq(full),
            out_fire.eq(full & self.o.ready),
            self.i.ready.eq(~full | (self.o.ready & room)),
            in_fire.eq(self.i.valid & self.i.ready),
        ]
        for lane in range(n_out):
            m.d.comb += self.o.payload[lane].eq(buf[lane])

        # Elements the input beat brings: n_in, or fewer on a frame's last beat.
        last = self._last_beat(m, in_fire)
        if last is None:
            n_beat = n_in
        else:
            n_beat = Mux(last, self.frame - (-(-self.frame // n_in) - 1) * n_in, n_in)
        with m.Switch(Cat(out_fire, in_fire)):
            for case, nxt in ((0b00, count), (0b01, count - n_out), (0b10, count + n_beat),
                              (0b11, count + n_beat - n_out)):
                with m.Case(case):
                    m.d.sync += [count.eq(nxt), full.eq(nxt >= n_out), room.eq(nxt < 2 * n_out)]

        # lane_at[j]: the input lane that lands at element j of a buffer holding ``count``
        # elements (valid with ``lands[j]``); j runs past the buffer for the shifted case.
        lane_at, lands = [], []
        for j in range(cap + n_out):
            value = Signal(self.element_shape, name=f"in_at{j}")
            hit = Signal(name=f"lands{j}")
            with m.Switch(count):
                for c in range(max(0, j - n_in + 1), min(j, cap) + 1):
                    with m.Case(c):
                        m.d.comb += [value.eq(self.i.payload[j - c]), hit.eq(1)]
            lane_at.append(value)
            lands.append(hit)
        for j in range(cap):
            with m.If(out_fire):
                with m.If(in_fire & lands[j + n_out]):
                    m.d.sync += buf[j].eq(lane_at[j + n_out])
                if j + n_out < cap:
                    with m.Else():
                        m.d.sync += buf[j].eq(buf[j + n_out])
            with m.Elif(in_fire & lands[j]):
                m.d.sync += buf[j].eq(lane_at[j])
