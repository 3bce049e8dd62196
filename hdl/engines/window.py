"""Sliding-window generator (line buffer): im2col vectors of KxK windows on a stream.

A convolution engine (the MVTU) reads, for every output pixel, the window of input
pixels under the kernel as one vector in the order of the IR's conv weight columns,
``(ky, kx, c)`` with ``c`` fastest. :class:`SlidingWindow` turns the pixel stream of an
image into that stream of vectors, inserting the padding code where the window hangs
over the border, without ever holding more than a few rows of the image.
"""

import functools
import operator
from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ._checks import check_int as _check_int
from .described import Described
from .plumbing import RegisterSlice

__all__ = ["SlidingWindow", "SlidingWindowSpec", "window_output_shape"]


def window_output_shape(height, width, kernel, stride=1, padding=0):
    """Output size ``(H', W')`` of a KxK window sweep (floor mode), as in the IR."""
    return ((height + 2 * padding - kernel) // stride + 1,
            (width + 2 * padding - kernel) // stride + 1)


@dataclass(frozen=True, kw_only=True)
class SlidingWindowSpec:
    """The sliding window's description apart from its hardware: checked parameters
    (those of :class:`SlidingWindow`), output size, beats, line-buffer geometry, cycles
    and latency. Planners read it; :class:`SlidingWindow` is built from it."""

    height: int
    width: int
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pad_value: int = 0
    bits: int
    simd: int

    def __post_init__(self):
        for name in ("height", "width", "channels", "kernel", "stride"):
            _check_int(name, getattr(self, name), 1)
        _check_int("padding", self.padding, 0)
        _check_int("pad_value", self.pad_value, 0)
        _check_int("bits", self.bits, 1)
        _check_int("simd", self.simd, 1)
        k, p = self.kernel, self.padding
        if p >= k:
            raise ValueError(f"padding must be smaller than the kernel {k}, not {p}")
        if self.pad_value >= 1 << self.bits:
            raise ValueError(f"pad_value must fit in {self.bits} bits, not {self.pad_value}")
        if self.channels % self.simd:
            raise ValueError(f"SIMD must divide the channel count {self.channels}, not {self.simd}")
        if self.height + 2 * p < k or self.width + 2 * p < k:
            raise ValueError(f"kernel {k} is larger than the padded input "
                             f"{self.height + 2 * p}x{self.width + 2 * p}")

    @classmethod
    def for_conv(cls, layer, in_spec, simd):
        """The window in front of an IR ``Conv`` layer on input ``in_spec`` (an
        ``ir.TensorSpec`` of activation codes), ``simd`` elements per beat."""
        if in_spec.bits is None:
            raise ValueError(f"layer '{layer.name}' needs activation codes as input, "
                             "not accumulators")
        h, w, c = in_spec.shape
        return cls(height=h, width=w, channels=c, kernel=layer.kernel, stride=layer.stride,
                   padding=layer.padding, pad_value=layer.pad_value, bits=in_spec.bits,
                   simd=simd)

    @property
    def out_height(self) -> int:
        return window_output_shape(self.height, self.width, self.kernel, self.stride, self.padding)[0]

    @property
    def out_width(self) -> int:
        return window_output_shape(self.height, self.width, self.kernel, self.stride, self.padding)[1]

    @property
    def channel_folds(self) -> int:
        """Beats per pixel, ``C / simd``."""
        return self.channels // self.simd

    @property
    def in_beats(self) -> int:
        """Input beats per frame."""
        return self.height * self.width * self.channel_folds

    @property
    def window_beats(self) -> int:
        """Output beats per window (one im2col vector)."""
        return self.kernel * self.kernel * self.channel_folds

    @property
    def out_pixels(self) -> int:
        """Windows (im2col vectors) per frame."""
        return self.out_height * self.out_width

    @property
    def out_beats(self) -> int:
        """Output beats per frame."""
        return self.out_pixels * self.window_beats

    @property
    def depth(self) -> int:
        """Words (beats) in the circular line buffer."""
        cf = self.channel_folds
        return (self.kernel + self.stride - 2) * self.width * cf + 2 * self.kernel * cf + 1

    @property
    def line_buffer(self) -> tuple[int, int]:
        """``(width, depth)`` of the line-buffer memory."""
        return self.simd * self.bits, self.depth

    @property
    def cycles_per_frame(self) -> int:
        """Steady-state cycles per frame with a free-running source and sink: the busier
        side, ``max(in_beats, out_beats)`` (plus :attr:`startup` where documented)."""
        return max(self.in_beats, self.out_beats)

    @property
    def startup(self) -> int:
        """Input beats of a frame's first window, ``(K - 1 - padding) * W * CF + K * CF``."""
        cf = self.channel_folds
        return max(0, self.kernel - 1 - self.padding) * self.width * cf + self.kernel * cf

    #: Cycles from the transfer of an input beat to the valid output of an element
    #: that waited for it (memory read, output register, register slice).
    latency = 3

    @property
    def signature(self) -> wiring.Signature:
        layout = data.ArrayLayout(unsigned(self.bits), self.simd)
        return wiring.Signature({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})


class SlidingWindow(Described):
    """Emits the im2col vector of every KxK window of a streamed image.

    Input: the pixels of one image after another, elements in ``(y, x, c)`` order, ``c``
    fastest, ``simd`` consecutive channels per beat (``H*W*C/simd`` beats per frame).
    Output: for every output pixel ``(oy, ox)`` in raster order, the window's elements in
    ``(ky, kx, c)`` order (the column order of the IR's conv weight matrix), ``simd`` per
    beat: ``K*K*C/simd`` beats per output pixel, ``H'*W'*K*K*C/simd`` per frame, with
    ``H' = (H + 2*padding - K) // stride + 1`` (likewise ``W'``). Element
    ``(ky, kx, c)`` of window ``(oy, ox)`` is input pixel ``(oy*stride - padding + ky,
    ox*stride - padding + kx)``, or the code ``pad_value`` where that lies outside the
    image. Frames follow each other with no separator; the block counts.

    Built from a :class:`SlidingWindowSpec` (``SlidingWindow(spec=...)``), or from its
    parameters (``SlidingWindow(height=..., ...)``), which make the description first;
    the description's figures read as the component's own.

    Parameters
    ----------
    height, width, channels : int
        Input image size ``H x W x C``; any size, square or not.
    kernel : int
        Window size K, 1 or more; the padded input must be at least K in both directions.
    stride : int
        Step between windows, 1 or more (larger than K is allowed: pixels are skipped).
    padding : int
        Border of ``pad_value`` codes on every side, ``0 <= padding < kernel``.
    pad_value : int
        Code emitted at padding positions, ``0 <= pad_value < 2**bits`` (for 1-bit codes
        0 means -1 and 1 means +1).
    bits : int
        Width of a code.
    simd : int
        Elements per beat on both ports; must divide ``channels``.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(unsigned(bits), simd)))``
    o : ``Out(stream.Signature(ArrayLayout(unsigned(bits), simd)))``

    Storage
    -------
    One ``lib.memory.Memory`` of ``depth`` words of ``simd * bits`` bits, used as a
    circular buffer of the most recent input beats, with ``CF = C / simd``::

        depth = (K + stride - 2) * W * CF  +  2 * K * CF  +  1

    that is, for stride 1, ``K - 1`` rows plus ``2K`` pixels of ``C`` channels: the
    ``K - 1`` rows plus ``K`` pixels that one window spans, ``K`` pixels so that the input
    of the next windows streams in while the current window is emitted, and for
    ``stride > 1`` the ``stride - 1`` rows that the window jumps over, so that input
    keeps flowing at a row change; the last word is the one that a registered ``i.ready``
    keeps free (below). Yosys maps the memory to block RAM or LUT RAM
    by size. The read port is synchronous; nothing else scales with the image.

    Latency and throughput
    ----------------------
    The memory's read register and a padding flag (through one multiplexer) feed a
    :class:`~hdl.engines.plumbing.RegisterSlice`, so ``o.valid`` and ``o.payload`` come
    from registers, ``i.ready`` is a register, and ``o.ready`` reaches no
    further than the slice (the reader's address logic never waits on the consumer's
    ready path). An element that waits for its input beat is valid on ``o`` three cycles
    after the cycle in which that beat was transferred (if the output is free). Padding
    elements need no input, but nothing of a frame is emitted before its first input
    beat. The output side emits one beat per cycle whenever the input it needs is
    there; the input side accepts one beat per cycle whenever the buffer has room; the
    two overlap. With a free-running source and sink a frame takes about
    ``max(H*W*CF, H'*W'*K*K*CF)`` cycles, plus once a start-up of up to
    ``(K - 1 - padding) * W * CF + K * CF`` cycles (the first window's input). When
    the output side is the bottleneck, a window with ``padding < K - 1`` also loses
    part of that start-up at every frame change (the buffer cannot hold the next
    frame's first rows while the last windows still need the last rows);
    ``tests/hdl/engines/test_window.py`` holds back-to-back frames within 5% of the
    ideal plus that start-up. Frames may be sent back
    to back: the next frame's first rows are accepted while the previous frame's last
    windows are emitted (the input side runs at most one frame ahead), and nothing
    deadlocks under any pattern of input gaps and output stalls.
    """

    Spec = SlidingWindowSpec

    @classmethod
    def for_conv(cls, layer, in_spec, simd):
        """The window generator in front of an IR ``Conv`` layer (see
        :meth:`SlidingWindowSpec.for_conv`); its output is the conv's im2col vectors."""
        return cls(spec=SlidingWindowSpec.for_conv(layer, in_spec, simd))

    def elaborate(self, platform):
        m = Module()
        H, W, K, S, P = self.height, self.width, self.kernel, self.stride, self.padding
        CF = self.channels // self.simd
        WCF = W * CF
        HWCF = H * WCF
        D = self.depth
        OH, OW = self.out_height, self.out_width
        R0 = -P * WCF - P * CF          # linear index of the first window's top-left

        def add_mod(value, const):
            # value + const mod D, for value < D: the wrap is decided on the register
            # (value >= D - const), in parallel with both sums, not on the sum.
            const %= D
            if const == 0:
                return value
            return Mux(value >= D - const, value - (D - const), value + const)

        m.submodules.mem = mem = Memory(shape=unsigned(self.simd * self.bits), depth=D, init=[])
        # The output leaves through a register slice, so that the reader's issue logic
        # sees a registered ready and not the consumer's ready path.
        m.submodules.out = out = RegisterSlice(data.ArrayLayout(unsigned(self.bits), self.simd))
        wiring.connect(m, out.o, wiring.flipped(self.o))
        wr = mem.write_port()
        rd = mem.read_port(domain="sync")

        # Frame bookkeeping. The writer is at most one frame ahead of the reader
        # (``ahead``); ``rdone``: the reader has emitted every window of the frame the
        # writer is still filling (the rest of that frame is needed by nobody).
        ahead = Signal()
        rdone = Signal()

        # --- writer: input beats into the circular buffer --------------------------------
        n = Signal(range(HWCF))               # beat index within the writer's frame
        wr_addr = Signal(range(D))
        w_last = Signal(init=HWCF == 1)        # n == HWCF - 1, kept in a register
        w_started = Signal()                   # n != 0, kept in a register
        w_fire = Signal()

        # --- reader state: linear index (image extended beyond its border) and address ---
        idx_shape = range(R0, (H + P) * WCF + (W + P) * CF + 1)   # all window elements
        idx, line_idx, win_idx, row_idx = (Signal(idx_shape, init=R0, name=nm)
                                           for nm in ("idx", "line_idx", "win_idx", "row_idx"))
        addr, line_addr, win_addr, row_addr = (Signal(range(D), init=R0 % D, name=nm)
                                               for nm in ("addr", "line_addr", "win_addr", "row_addr"))
        base = Signal(range(D))               # address of the reader frame's beat 0
        oy, ox = Signal(range(OH)), Signal(range(OW))
        ky, kx, cf = Signal(range(K)), Signal(range(K)), Signal(range(CF))
        ty = Signal(range(-P, (OH - 1) * S - P + 1), init=-P)
        tx = Signal(range(-P, (OW - 1) * S - P + 1), init=-P)

        # Writing beat n overwrites beat n - D of the buffer; allowed when no current or
        # future window needs it: every element the reader still needs has a linear index
        # of at least ``win_idx`` (the current window's top-left, unclamped).
        # ``room`` is a register, so that ``i.ready`` is a flip-flop and not a subtract
        # and a compare in front of the producer's FIFO. It is decided one cycle early
        # for the worst next state: the writer one beat further (n + 1) and the reader no
        # further (the reader only ever frees room), at the cost of one buffer word
        # (the ``+ 1`` in the depth).
        room = Signal()
        lead = Signal(range(-((H + P) * WCF + (W + P) * CF) - 1, HWCF - R0 + 1))
        if HWCF > 1:
            # Not two frames ahead: blocked when the writer's next beat may be its last.
            may_end = ahead & (w_last | (n == HWCF - 2))
            m.d.comb += lead.eq(n - win_idx)
            m.d.sync += room.eq(rdone | (Mux(ahead, lead < D - 1 - HWCF, lead < D - 1) & ~may_end))
        else:
            # one beat per frame: the registered form would need the writer's next state
            m.d.comb += [
                lead.eq(n - win_idx),
                room.eq(rdone | (Mux(ahead, lead < D - HWCF, lead < D) & ~(ahead & w_last))),
            ]
        m.d.comb += [
            self.i.ready.eq(room),
            w_fire.eq(self.i.valid & room),
            wr.addr.eq(wr_addr),
            wr.data.eq(self.i.payload),
            wr.en.eq(w_fire),
        ]
        with m.If(w_fire):
            m.d.sync += [
                n.eq(Mux(w_last, 0, n + 1)),
                w_last.eq(n == HWCF - 2 if HWCF > 1 else 1),
                w_started.eq(~w_last),
                wr_addr.eq(add_mod(wr_addr, 1)),
            ]

        # --- reader: address generation (stage 0) ----------------------------------------
        # The input pixel (ty + ky, tx + kx) and the counters' "at their last value" flags
        # are kept in registers, updated with the counters, so that the reader's decision
        # (issue) and its next state start from registers rather than adders.
        iy = Signal(range(-P, (OH - 1) * S - P + K), init=-P)
        ix = Signal(range(-P, (OW - 1) * S - P + K), init=-P)
        last_cf, last_kx, last_ky, last_ox, last_oy = (
            Signal(init=count == 1, name=nm) for nm, count in
            (("last_cf", CF), ("last_kx", K), ("last_ky", K), ("last_ox", OW), ("last_oy", OH)))
        # Whether the input row iy / column ix lies inside the image, in registers
        # updated with iy and ix (below), so that ``pad`` is one LUT from flip-flops.
        row_in, col_in = Signal(init=P == 0), Signal(init=P == 0)
        pad = Signal()
        avail = Signal()
        issue = Signal()
        out_valid = Signal()
        out_pad = Signal()
        r_last = Signal()
        m.d.comb += [
            pad.eq(~(row_in & col_in)),
            # Padding needs no input, but a frame's output waits for its first input beat.
            avail.eq(~rdone & (ahead | Mux(pad, w_started, idx < n))),
            issue.eq(avail & (~out_valid | out.i.ready)),
            rd.addr.eq(addr),
            rd.en.eq(issue),
        ]

        # Which counter moves on an issue, one-hot (along a window row, next row of the
        # window, next window, next row of windows, next frame) and kept in registers
        # beside the "last" flags, so that each register's enable is one LUT from
        # ``issue`` and not a chain through the flags.
        def moves(l_cf, l_kx, l_ky, l_ox, l_oy):
            # flags as 1-bit values or Python bools; ``1 ^ x`` is "not" for both
            row_end = l_cf & l_kx
            return (1 ^ row_end, row_end & (1 ^ l_ky), row_end & l_ky & (1 ^ l_ox),
                    row_end & l_ky & l_ox & (1 ^ l_oy), row_end & l_ky & l_ox & l_oy)

        first_flags = (CF == 1, K == 1, K == 1, OW == 1, OH == 1)
        move = [Signal(init=bool(v), name=nm) for v, nm in zip(
            moves(*first_flags), ("along_row", "next_line", "next_window", "next_row", "next_frame"))]
        along_row, next_line, next_window, next_row, next_frame = move

        # Each register's next value is an AND-OR over the one-hot moves (not a chain of
        # priority multiplexers): ``updates[id(reg)]`` is ``(reg, [(move, value), ...])``.
        updates: dict = {}

        def on(sel, *pairs, flags):
            for reg, value in (*pairs, *zip(move, moves(*flags)),
                               *zip((last_cf, last_kx, last_ky, last_ox, last_oy), flags)):
                updates.setdefault(id(reg), (reg, []))[1].append((sel, value))

        def inside(value, offset, size):
            # 0 <= value + offset < size, compared on the register ``value``
            return (value >= -offset) & (value < size - offset)

        on(along_row,                                           # along a window row
           (cf, Mux(last_cf, 0, cf + 1)), (kx, Mux(last_cf, kx + 1, kx)),
           (ix, Mux(last_cf, ix + 1, ix)), (col_in, Mux(last_cf, inside(ix, 1, W), col_in)),
           (idx, idx + 1), (addr, add_mod(addr, 1)),
           flags=(Mux(last_cf, CF == 1, cf == CF - 2), Mux(last_cf, kx == K - 2, last_kx),
                  last_ky, last_ox, last_oy))
        line_addr_next = add_mod(line_addr, WCF)
        on(next_line,                                           # next row of the window
           (cf, 0), (kx, 0), (ky, ky + 1), (ix, tx), (iy, iy + 1),
           (col_in, inside(tx, 0, W)), (row_in, inside(iy, 1, H)),
           (line_idx, line_idx + WCF), (idx, line_idx + WCF),
           (line_addr, line_addr_next), (addr, line_addr_next),
           flags=(CF == 1, K == 1, ky == K - 2, last_ox, last_oy))
        win_addr_next = add_mod(win_addr, S * CF)
        on(next_window,                                         # next window in the row
           (cf, 0), (kx, 0), (ky, 0), (ox, ox + 1), (tx, tx + S), (ix, tx + S), (iy, ty),
           (col_in, inside(tx, S, W)), (row_in, inside(ty, 0, H)),
           (win_idx, win_idx + S * CF), (line_idx, win_idx + S * CF), (idx, win_idx + S * CF),
           (win_addr, win_addr_next), (line_addr, win_addr_next), (addr, win_addr_next),
           flags=(CF == 1, K == 1, K == 1, ox == OW - 2, last_oy))
        row_addr_next = add_mod(row_addr, S * WCF)
        on(next_row,                                            # next row of windows
           (cf, 0), (kx, 0), (ky, 0), (ox, 0), (tx, -P), (oy, oy + 1), (ty, ty + S),
           (ix, -P), (iy, ty + S), (col_in, P == 0), (row_in, inside(ty, S, H)),
           (row_idx, row_idx + S * WCF), (win_idx, row_idx + S * WCF),
           (line_idx, row_idx + S * WCF), (idx, row_idx + S * WCF),
           *((a, row_addr_next) for a in (row_addr, win_addr, line_addr, addr)),
           flags=(CF == 1, K == 1, K == 1, OW == 1, oy == OH - 2))
        frame_addr_next = add_mod(base, HWCF + R0)
        on(next_frame,                                          # next frame
           (cf, 0), (kx, 0), (ky, 0), (ox, 0), (tx, -P), (oy, 0), (ty, -P), (ix, -P), (iy, -P),
           (col_in, P == 0), (row_in, P == 0),
           *((a, R0) for a in (row_idx, win_idx, line_idx, idx)),
           (base, add_mod(base, HWCF)),
           *((a, frame_addr_next) for a in (row_addr, win_addr, line_addr, addr)),
           flags=first_flags)

        m.d.comb += r_last.eq(next_frame)
        with m.If(issue):
            for reg, cases in updates.values():
                sels = [sel for sel, _ in cases]
                if len(sels) < len(move):                       # held on the other moves
                    cases.append((~Cat(*sels).any(), reg))
                parts = []
                for k, (sel, value) in enumerate(cases):
                    part = Signal(reg.shape(), name=f"{reg.name}_next{k}")
                    m.d.comb += part.eq(Mux(sel, value, 0))
                    parts.append(part)
                m.d.sync += reg.eq(functools.reduce(operator.or_, parts))

        # Frame hand-over between writer and reader.
        r_fin = issue & r_last
        w_fin = w_fire & w_last
        with m.If(r_fin):
            with m.If(ahead):
                m.d.sync += ahead.eq(0)
            with m.Elif(~w_fin):
                m.d.sync += rdone.eq(1)
        with m.Elif(w_fin):
            with m.If(rdone):
                m.d.sync += rdone.eq(0)
            with m.Else():
                m.d.sync += ahead.eq(1)

        # --- output register (stage 1): memory data or the padding code ------------------
        with m.If(issue):
            m.d.sync += [out_valid.eq(1), out_pad.eq(pad)]
        with m.Elif(out.i.ready):
            m.d.sync += out_valid.eq(0)
        word = data.ArrayLayout(unsigned(self.bits), self.simd)(rd.data)
        m.d.comb += out.i.valid.eq(out_valid)
        for lane in range(self.simd):
            m.d.comb += out.i.payload[lane].eq(Mux(out_pad, self.pad_value, word[lane]))
        return m
