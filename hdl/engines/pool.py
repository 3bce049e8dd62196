"""Max-pooling on a code stream, and label select (argmax) at the end of a network."""

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ._checks import check_int as _check_int
from .described import Described
from .window import SlidingWindow, SlidingWindowSpec, window_output_shape

__all__ = ["LabelSelectSpec", "MaxPool", "MaxPoolSpec", "LabelSelect"]


@dataclass(frozen=True, kw_only=True)
class MaxPoolSpec:
    """The max-pool's description apart from its hardware: checked parameters (those of
    :class:`MaxPool`; ``stride`` None becomes ``kernel``), output size, beats, its sliding
    window's description, cycles and latency."""

    height: int
    width: int
    channels: int
    kernel: int
    stride: int | None = None
    bits: int
    lanes: int

    def __post_init__(self):
        for name in ("height", "width", "channels", "kernel", "bits", "lanes"):
            _check_int(name, getattr(self, name), 1)
        if self.stride is None:
            object.__setattr__(self, "stride", self.kernel)
        _check_int("stride", self.stride, 1)
        if self.channels % self.lanes:
            raise ValueError(f"lanes must divide the channel count {self.channels}, not {self.lanes}")
        if self.kernel > self.height or self.kernel > self.width:
            raise ValueError(f"kernel {self.kernel} is larger than the input {self.height}x{self.width}")

    @classmethod
    def for_layer(cls, layer, in_spec, lanes):
        """The max-pool of an IR ``MaxPool`` layer on input ``in_spec`` (an
        ``ir.TensorSpec`` of codes), ``lanes`` channels per beat."""
        if in_spec.bits is None:
            raise ValueError(f"layer '{layer.name}' needs activation codes as input, "
                             "not accumulators")
        h, w, c = in_spec.shape
        return cls(height=h, width=w, channels=c, kernel=layer.kernel, stride=layer.step,
                   bits=in_spec.bits, lanes=lanes)

    @property
    def window(self) -> SlidingWindowSpec:
        """The sliding window (no padding) that feeds the reducer."""
        return SlidingWindowSpec(height=self.height, width=self.width, channels=self.channels,
                                 kernel=self.kernel, stride=self.stride, bits=self.bits,
                                 simd=self.lanes)

    @property
    def out_height(self) -> int:
        return window_output_shape(self.height, self.width, self.kernel, self.stride)[0]

    @property
    def out_width(self) -> int:
        return window_output_shape(self.height, self.width, self.kernel, self.stride)[1]

    @property
    def in_beats(self) -> int:
        """Input beats per frame."""
        return self.height * self.width * self.channels // self.lanes

    @property
    def out_beats(self) -> int:
        """Output beats per frame."""
        return self.out_height * self.out_width * self.channels // self.lanes

    @property
    def cycles_per_frame(self) -> int:
        """Cycles per frame with a free-running source and sink: the window's,
        ``max(H*W, H'*W'*K*K) * C/lanes`` (the reducer takes a window beat per cycle)."""
        return self.window.cycles_per_frame

    @property
    def latency(self) -> int:
        """Cycles from the last input beat an output depends on to that output: the
        window's (the reducer adds no register)."""
        return self.window.latency

    @property
    def signature(self) -> wiring.Signature:
        layout = data.ArrayLayout(unsigned(self.bits), self.lanes)
        return wiring.Signature({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})


class MaxPool(Described):
    """Max of codes over KxK windows, per channel (the IR's ``maxpool``).

    Input: the ``(H, W, C)`` code tensor of one frame after another in ``(y, x, c)``
    order, ``lanes`` channels per beat. Output: the ``(H', W', C)`` maxima in the same
    order and lane width, ``H' = (H - K) // stride + 1`` (floor mode, no padding), likewise
    ``W'``. Codes compare as unsigned integers, which for 1-bit (bipolar) codes is OR.

    Built from a :class:`MaxPoolSpec` (``MaxPool(spec=...)``) or from its parameters.

    Parameters
    ----------
    height, width, channels : int
        Input size; ``kernel`` must not exceed ``height`` or ``width``.
    kernel : int
        Window size K.
    stride : int or None
        Step between windows; ``None`` means ``kernel`` (the IR's default).
    bits : int
        Code width.
    lanes : int
        Channels per beat on both ports; must divide ``channels``.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(unsigned(bits), lanes)))``
    o : ``Out(stream.Signature(ArrayLayout(unsigned(bits), lanes)))``

    Implementation, storage, latency and throughput
    -----------------------------------------------
    A :class:`~hdl.engines.window.SlidingWindow` (padding 0) feeds a reducer that keeps the
    running maxima of one output pixel's ``C/lanes`` beats in a shift register
    (``C * bits`` flip-flops); a finished beat is the max of the window's last beat
    (from the window's output register) and the shift register's head, so ``o.valid``
    and ``o.payload`` come from registers through one level of logic.
    Storage is the window's line buffer, ``(K + stride - 2) * W + 2K`` pixels of ``C``
    codes. The reducer takes one window beat per cycle, so with a free-running
    source and sink a frame takes about ``max(H*W, H'*W'*K*K) * C/lanes`` cycles: for
    non-overlapping pools (``stride >= kernel``) that is the input rate, one beat per
    cycle. Latency: an output beat is valid in the cycle the window generator emits
    the last beat of its window (two cycles after the last input it depends on).
    """

    Spec = MaxPoolSpec

    @classmethod
    def for_layer(cls, layer, in_spec, lanes):
        """The max-pool of an IR ``MaxPool`` layer (see :meth:`MaxPoolSpec.for_layer`)."""
        return cls(spec=MaxPoolSpec.for_layer(layer, in_spec, lanes))

    def elaborate(self, platform):
        m = Module()
        K = self.kernel
        CF = self.channels // self.lanes
        layout = data.ArrayLayout(unsigned(self.bits), self.lanes)
        m.submodules.window = window = SlidingWindow(spec=self.spec.window)
        wiring.connect(m, wiring.flipped(self.i), window.i)
        win = window.o

        # Running maxima of the current output pixel: CF beats, rotating.
        partial = [Signal(layout, name=f"partial{j}") for j in range(CF)]
        head = partial[-1]
        kk = Signal(range(K * K))             # window position (ky*K + kx) of this beat
        cf = Signal(range(CF))
        first, last = kk == 0, kk == K * K - 1
        merged = Signal(layout)
        for lane in range(self.lanes):
            a, b = win.payload[lane], head[lane]
            best = (a | b) if self.bits == 1 else Mux(a > b, a, b)
            m.d.comb += merged[lane].eq(Mux(first, a, best))

        # The finished maxima leave straight from the window's output register and the
        # running maxima (both hold while stalled): no extra register stage.
        take = Signal()
        m.d.comb += [
            self.o.valid.eq(win.valid & last),
            self.o.payload.eq(merged),
            win.ready.eq(~last | self.o.ready),
            take.eq(win.valid & win.ready),
        ]
        with m.If(take):
            m.d.sync += partial[0].eq(merged)
            for j in range(1, CF):
                m.d.sync += partial[j].eq(partial[j - 1])
            m.d.sync += cf.eq(Mux(cf == CF - 1, 0, cf + 1))
            with m.If(cf == CF - 1):
                m.d.sync += kk.eq(Mux(last, 0, kk + 1))
        return m


class LabelSelectSpec:
    """The label select's description: checked parameters (those of
    :class:`LabelSelect`), payload layouts and ports."""

    def __init__(self, n_classes, *, width, lanes):
        _check_int("n_classes", n_classes, 1)
        _check_int("width", width, 1)
        _check_int("lanes", lanes, 1)
        if n_classes % lanes:
            raise ValueError(f"lanes must divide the class count {n_classes}, not {lanes}")
        self.n_classes, self.width, self.lanes = n_classes, width, lanes
        self.label_bits = max(1, ceil_log2(n_classes))
        self.scores_layout = data.ArrayLayout(signed(width), lanes)
        self.payload_layout = data.StructLayout({
            "scores": self.scores_layout,
            "label": unsigned(self.label_bits),
            "last": 1,
        })

    @property
    def signature(self) -> wiring.Signature:
        return wiring.Signature({
            "i": In(stream.Signature(self.scores_layout)),
            "o": Out(stream.Signature(self.payload_layout)),
        })


class LabelSelect(Described):
    """Argmax of a frame's scores (ties to the lowest index), found as the scores pass.

    Input: the ``n_classes`` signed scores of a frame, ``lanes`` per beat, class
    ``f*lanes + p`` in lane ``p`` of beat ``f`` (the output order of the last layer's
    :class:`~hdl.engines.threshold.OutputStage`), ``n_classes / lanes`` beats per frame.
    Output: the same beats, each with payload ::

        StructLayout({"scores": ArrayLayout(signed(width), lanes),
                      "label": unsigned(max(1, ceil_log2(n_classes))), "last": 1})

    ``last`` marks a frame's final beat, whose ``label`` is the frame's label; on the
    other beats ``label`` is the argmax of the frame's scores so far. The board shell
    (:class:`hdl.shell.adapters.AxisOutput`) sends the scores and then that label.

    Parameters
    ----------
    n_classes : int
        Number of scores per frame.
    width : int
        Width of a signed score.
    lanes : int
        Scores per beat; must divide ``n_classes``.

    Latency and throughput
    ----------------------
    None added: ``valid``, ``ready`` and the scores are wired through, so a beat leaves
    in the cycle it arrives and the consumer sets the pace. Storage is the running
    maximum and its class. The beat's argmax is a comparison tree of depth
    ``ceil_log2(lanes)``, then one comparison with the running maximum, on the
    combinational path to ``label``.
    """

    Spec = LabelSelectSpec

    def elaborate(self, platform):
        m = Module()
        n, L = self.n_classes, self.lanes
        beats = n // L
        beat = Signal(range(beats))
        first, last = beat == 0, beat == beats - 1

        # Argmax within the beat: a tree; on equal scores the lower lane wins.
        nodes = [(self.i.payload[p], p) for p in range(L)]
        while len(nodes) > 1:
            merged = []
            for j in range(0, len(nodes) - 1, 2):
                (va, ia), (vb, ib) = nodes[j], nodes[j + 1]
                take_b = vb > va
                v = Signal(signed(self.width), name=f"tree_v{len(nodes)}_{j}")
                i = Signal(range(L), name=f"tree_i{len(nodes)}_{j}")
                m.d.comb += [v.eq(Mux(take_b, vb, va)), i.eq(Mux(take_b, ib, ia))]
                merged.append((v, i))
            if len(nodes) % 2:
                merged.append(nodes[-1])
            nodes = merged
        beat_best, beat_lane = nodes[0]

        best = Signal(signed(self.width))
        best_label = Signal(range(n))
        replace = Signal()
        label_now = Signal(range(n))
        take = Signal()
        m.d.comb += [
            replace.eq(first | (beat_best > best)),
            label_now.eq(Mux(replace, beat * L + beat_lane, best_label)),
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready),
            self.o.payload.scores.eq(self.i.payload),
            self.o.payload.label.eq(label_now),
            self.o.payload.last.eq(last),
            take.eq(self.i.valid & self.i.ready),
        ]
        with m.If(take):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
            with m.If(replace):
                m.d.sync += [best.eq(beat_best), best_label.eq(label_now)]
        return m
