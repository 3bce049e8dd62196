"""Weights from DDR: an AXI4 read master that streams an engine's weight beats.

A stage whose weights do not stay on chip takes them on its ``w`` stream
(``MVTU(weight_source="stream")``) from a :class:`WeightStream`. The host writes the
layer's *weight image* (:func:`weight_image`) into one contiguous DDR buffer and gives
its address; the streamer reads the image from start to end with INCR bursts, over and
over (one pass per input vector of the engine), and unpacks the data words into beats.

Image layout (``data_width`` D bits per word, words little-endian in memory):

* a beat of up to D bits occupies a *slot* of the next power of two bits, ``D / slot``
  beats per word, beat ``k`` in word ``k // (D/slot)`` at bit ``(k % (D/slot)) * slot``;
* a wider beat occupies ``ceil(bits / D)`` whole words, its low bits first.

The last word of a pass may be partly used; the image is padded with zero words to a
whole number of bursts, and those are not read. The buffer must start on a 4 KiB
boundary and a burst is at most 4 KiB, so no burst crosses one (AXI rule).

Double buffering: the data FIFO holds ``max(2, outstanding)`` bursts; a burst is
requested only when the FIFO has room reserved for all of it, so the read data channel
is never stalled (``rready`` is always high) and the next bursts arrive while the engine
consumes the current one. Throughput: one data word per cycle at most; a beat wider than
a word takes ``ceil(bits / D)`` cycles.

Reset: AXI4 has no way to cancel a read burst, so resetting the streamer while bursts
are outstanding would drop ARVALID before ARREADY and write the late R beats into the
emptied FIFO. Reset it only when no burst is outstanding and ARVALID is low; take
``enable`` low first and wait (``rready`` stays high, the FIFO has room for every
requested burst). :class:`hdl.shell.axi.AxiTop` does this on a soft reset.
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.engines._checks import check_int
from hdl.engines.described import Described

__all__ = ["AxiReadSignature", "WeightStream", "WeightStreamSpec", "weight_image",
           "image_beats", "AXI_BOUNDARY", "BURST_INCR"]

#: AXI bursts must not cross this many bytes; the image buffer is aligned to it.
AXI_BOUNDARY = 4096
#: ``ARBURST`` of an incrementing burst.
BURST_INCR = 1


def AxiReadSignature(addr_width: int, data_width: int) -> wiring.Signature:
    """The read half of an AXI4 master (``Out`` members driven by the master), named as
    Xilinx names them after a prefix (``m_axi_araddr``): no IDs, one outstanding order."""
    return wiring.Signature({
        "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_width), "rresp": In(2), "rlast": In(1), "rvalid": In(1),
        "rready": Out(1),
    })


class WeightStreamSpec:
    """The streamer's description: beat geometry, image layout, AXI parameters.

    Parameters
    ----------
    beat_shape : shape-castable
        The payload of the output stream (an engine's ``weight_beat_layout``).
    beats : int
        Beats per pass (per input vector of the engine).
    data_width : int
        AXI data width in bits, a power of two from 32 to 1024 (a Zynq HP port: 64 or 128).
    burst_len : int
        Words per burst, a power of two from 1 to 256, at most 4 KiB per burst.
    outstanding : int
        Bursts requested and not yet fully received, 1..16.
    addr_width : int
        AXI address width, 32..64 (Zynq-7000 HP: 32, Zynq UltraScale+ HP: 49).
    """

    def __init__(self, beat_shape, beats: int, *, data_width: int = 128, burst_len: int = 16,
                 outstanding: int = 2, addr_width: int = 40):
        self.beat_shape = beat_shape
        self.beat_bits = Shape.cast(beat_shape).width
        if self.beat_bits < 1:
            raise ValueError(f"beat_shape must be at least 1 bit wide, not {self.beat_bits}")
        self.beats = check_int("beats", beats, 1)
        self.data_width = check_int("data_width", data_width, 32, 1024)
        if data_width & (data_width - 1):
            raise ValueError(f"data_width must be a power of two, not {data_width}")
        self.burst_len = check_int("burst_len", burst_len, 1, 256)
        if burst_len & (burst_len - 1):
            raise ValueError(f"burst_len must be a power of two, not {burst_len}")
        if burst_len * data_width // 8 > AXI_BOUNDARY:
            raise ValueError(f"burst_len must keep a burst within {AXI_BOUNDARY} bytes, "
                             f"not {burst_len} x {data_width // 8} bytes")
        self.outstanding = check_int("outstanding", outstanding, 1, 16)
        self.addr_width = check_int("addr_width", addr_width, 32, 64)
        d = data_width
        if self.beat_bits <= d:
            self.slot = 1 << ceil_log2(self.beat_bits)
            self.beats_per_word, self.words_per_beat = d // self.slot, 1
            self.words = -(-self.beats // self.beats_per_word)
        else:
            self.words_per_beat = -(-self.beat_bits // d)
            self.slot, self.beats_per_word = self.words_per_beat * d, 1
            self.words = self.beats * self.words_per_beat
        self.word_bytes = d // 8
        #: Bytes read per pass, and the image size (padded to whole bursts).
        self.pass_bytes = self.words * self.word_bytes
        self.bursts = -(-self.words // burst_len)
        self.image_bytes = self.bursts * burst_len * self.word_bytes
        self.fifo_depth = max(2, outstanding) * burst_len
        self.signature = wiring.Signature({
            "base": In(addr_width),
            "enable": In(1),
            "error": Out(1),
            "axi": Out(AxiReadSignature(addr_width, d)),
            "o": Out(stream.Signature(beat_shape)),
        })

    @property
    def cycles_per_pass(self) -> int:
        """Lower bound on the cycles of one pass: one data word per cycle."""
        return max(self.words, self.beats)


def weight_image(beats, spec: WeightStreamSpec) -> bytes:
    """The DDR image of one pass of ``beats`` (ints of ``spec.beat_bits`` bits), laid out
    as the module docstring says; ``spec.image_bytes`` long."""
    beats = [int(b) for b in beats]
    if len(beats) != spec.beats:
        raise ValueError(f"beats must hold {spec.beats} beats, not {len(beats)}")
    limit = 1 << spec.beat_bits
    for k, b in enumerate(beats):
        if not 0 <= b < limit:
            raise ValueError(f"beat {k} must fit in {spec.beat_bits} bits, not {b:#x}")
    out = bytearray(spec.image_bytes)
    if spec.words_per_beat == 1:
        n = spec.beats_per_word
        for w in range(spec.words):
            word = 0
            for j, b in enumerate(beats[w * n:(w + 1) * n]):
                word |= b << (j * spec.slot)
            out[w * spec.word_bytes:(w + 1) * spec.word_bytes] = word.to_bytes(spec.word_bytes, "little")
    else:
        size = spec.words_per_beat * spec.word_bytes
        for k, b in enumerate(beats):
            out[k * size:(k + 1) * size] = b.to_bytes(size, "little")
    return bytes(out)


def image_beats(image: bytes, spec: WeightStreamSpec) -> list[int]:
    """The beats of one pass read back from an image (the inverse of :func:`weight_image`)."""
    mask = (1 << spec.beat_bits) - 1
    if spec.words_per_beat == 1:
        got = []
        for w in range(spec.words):
            word = int.from_bytes(image[w * spec.word_bytes:(w + 1) * spec.word_bytes], "little")
            got += [(word >> (j * spec.slot)) & mask for j in range(spec.beats_per_word)]
        return got[:spec.beats]
    size = spec.words_per_beat * spec.word_bytes
    return [int.from_bytes(image[k * size:(k + 1) * size], "little") & mask for k in range(spec.beats)]


class WeightStream(Described):
    """Streams a weight image from DDR as beats, one pass after another.

    Ports
    -----
    base : ``In(addr_width)``
        Byte address of the image (4 KiB aligned; the low 12 bits are ignored). Read when
        a pass starts.
    enable : ``In(1)``
        Bursts are requested only while high (data of requested bursts still arrives).
    error : ``Out(1)``
        Sticky: a read response was SLVERR or DECERR.
    axi : ``Out(AxiReadSignature(addr_width, data_width))``
        The AXI4 read master (INCR bursts of ``burst_len`` words, the last of a pass
        shorter; ``rready`` always high).
    o : ``Out(stream.Signature(beat_shape))``
        ``beats`` beats per pass, in image order.
    """

    Spec = WeightStreamSpec

    def elaborate(self, platform):
        m = Module()
        s = self.spec
        axi = self.axi
        m.submodules.fifo = buf = fifo.SyncFIFOBuffered(width=s.data_width, depth=s.fifo_depth)

        # --- read address channel ---------------------------------------------------
        # ``free`` counts FIFO words not yet promised to a requested burst.
        free = Signal(range(s.fifo_depth + 1), init=s.fifo_depth)
        inflight = Signal(range(s.outstanding + 1))
        word = Signal(range(max(2, s.words)))            # first word of the next burst
        last_len = s.words - (s.bursts - 1) * s.burst_len
        length = Signal(range(s.burst_len + 1))
        m.d.comb += length.eq(Mux(word == (s.bursts - 1) * s.burst_len, last_len, s.burst_len))
        request = Signal()
        pop = Signal()
        burst_done = Signal()
        m.d.comb += [
            request.eq(~axi.arvalid & self.enable & (free >= length) & (inflight < s.outstanding)),
            axi.arsize.eq(ceil_log2(s.word_bytes)),
            axi.arburst.eq(BURST_INCR),
            axi.rready.eq(1),
            burst_done.eq(axi.rvalid & axi.rlast),
        ]
        aligned = Cat(Const(0, 12), self.base[12:])
        with m.If(request):
            m.d.sync += [
                axi.arvalid.eq(1),
                axi.araddr.eq(aligned + word * s.word_bytes),
                axi.arlen.eq(length - 1),
                word.eq(Mux(word == (s.bursts - 1) * s.burst_len, 0, word + s.burst_len)),
            ]
        with m.If(axi.arvalid & axi.arready):
            m.d.sync += axi.arvalid.eq(0)
        m.d.sync += [
            free.eq(free + pop - Mux(request, length, 0)),
            inflight.eq(inflight + request - burst_done),
        ]

        # --- read data channel ------------------------------------------------------
        m.d.comb += [buf.w_data.eq(axi.rdata), buf.w_en.eq(axi.rvalid)]
        with m.If(axi.rvalid & axi.rresp[1]):
            m.d.sync += self.error.eq(1)

        # --- words to beats ---------------------------------------------------------
        beat = Signal(range(s.beats))
        take = Signal()
        m.d.comb += take.eq(self.o.valid & self.o.ready)
        with m.If(take):
            m.d.sync += beat.eq(Mux(beat == s.beats - 1, 0, beat + 1))
        if s.words_per_beat == 1:
            n = s.beats_per_word
            slot = Signal(range(max(2, n)))
            slots = Array(buf.r_data[j * s.slot:j * s.slot + s.beat_bits] for j in range(n))
            word_end = Signal()
            m.d.comb += [
                self.o.valid.eq(buf.r_rdy),
                self.o.payload.eq(slots[slot] if n > 1 else buf.r_data[:s.beat_bits]),
                word_end.eq((slot == n - 1) | (beat == s.beats - 1)),
                pop.eq(take & word_end),
                buf.r_en.eq(pop),
            ]
            if n > 1:
                with m.If(take):
                    m.d.sync += slot.eq(Mux(word_end, 0, slot + 1))
        else:
            k = s.words_per_beat
            acc = Signal(k * s.data_width)
            have = Signal(range(k + 1))
            m.d.comb += [
                self.o.valid.eq(have == k),
                self.o.payload.eq(acc[:s.beat_bits]),
                pop.eq(buf.r_rdy & ((have < k) | self.o.ready)),
                buf.r_en.eq(pop),
            ]
            with m.If(pop):
                m.d.sync += acc.eq(Cat(acc[s.data_width:], buf.r_data))
            m.d.sync += have.eq(have + pop - Mux(take, k, 0))
        return m
