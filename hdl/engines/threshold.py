"""The output stage every compute engine ends in: thresholds, or bias-added scores.

MVTU, shift MAC and sparse engine all emit a stream of raw accumulators, ``pe`` channels
per beat; this stage turns them into activation codes (multi-threshold) or into the
last layer's integer scores (accumulator + bias). A layer therefore switches engine by
its weights alone: the output path is the same.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.engines.described import Described
from hdl.engines.rom import rom_counter

__all__ = ["OutputStage", "OutputStageSpec", "range_shape", "output_shape", "OUTPUT_LATENCY"]

#: Cycles from an input transfer to the valid output beat of :class:`OutputStage`.
OUTPUT_LATENCY = 2


def range_shape(lo: int, hi: int) -> Shape:
    """Smallest signed shape holding ``lo .. hi`` (always signed, for uniform streams)."""
    lo, hi = int(lo), int(hi)
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return signed(width)


def output_shape(acc_shape, thresholds=None, bias=None) -> Shape:
    """Lane shape of :class:`OutputStage`'s output: ``unsigned(k)`` for ``2**k - 1``
    thresholds per channel, else the narrowest signed shape of ``acc + bias``."""
    if thresholds is not None:
        return unsigned(ceil_log2(np.shape(thresholds)[1] + 1))
    lo, hi = _shape_bounds(Shape.cast(acc_shape))
    if bias is None:
        return range_shape(lo, hi)
    bias = np.asarray(bias)
    return range_shape(lo + min(0, int(bias.min())), hi + max(0, int(bias.max())))


def _shape_bounds(shape: Shape) -> tuple[int, int]:
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


class OutputStageSpec:
    """The output stage's description apart from its hardware: checked parameters (those
    of :class:`OutputStage`), the clipped thresholds with the bias folded in, the output
    shape, folds and latency."""

    latency = OUTPUT_LATENCY

    def __init__(self, channels: int, pe: int, acc_shape, *, thresholds=None, bias=None):
        for name, value in (("channels", channels), ("PE", pe)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if channels % pe:
            raise ValueError(f"PE must divide the output channel count {channels}, not {pe}")
        acc_shape = Shape.cast(acc_shape)
        bias = np.zeros(channels, dtype=np.int64) if bias is None else np.asarray(bias)
        if bias.shape != (channels,) or bias.dtype.kind not in "iu":
            raise ValueError(f"bias must be {channels} integers, not an array of shape {bias.shape} "
                             f"and dtype {bias.dtype}")
        bias = bias.astype(np.int64)
        lo, hi = _shape_bounds(acc_shape)
        self.channels, self.pe, self.acc_shape = channels, pe, acc_shape
        self.folds = channels // pe
        if thresholds is not None:
            thresholds = np.asarray(thresholds)
            n = thresholds.shape[1] if thresholds.ndim == 2 else 0
            if thresholds.ndim != 2 or thresholds.shape[0] != channels or n < 1 or (n + 1) & n:
                raise ValueError(f"thresholds must have shape ({channels}, 2**bits - 1), "
                                 f"not {thresholds.shape}")
            if thresholds.dtype.kind not in "iu":
                raise TypeError(f"thresholds must be integers, not {thresholds.dtype}")
            if np.any(np.diff(thresholds, axis=1) < 0):
                raise ValueError("thresholds must be non-decreasing in every channel")
            self.bits = ceil_log2(n + 1)
            # acc + b >= t  <=>  acc >= t - b; clip to [lo, hi + 1] (always/never reached).
            self.thresholds = np.clip(thresholds.astype(np.int64) - bias[:, None], lo, hi + 1)
            self.threshold_shape = range_shape(lo, hi + 1)
            out_shape = unsigned(self.bits)
        else:
            self.bits = None
            self.thresholds = None
            self.bias = bias
            out_shape = output_shape(acc_shape, None, bias)
        self.out_shape = out_shape

    @property
    def signature(self) -> wiring.Signature:
        return wiring.Signature({
            "i": In(stream.Signature(data.ArrayLayout(self.acc_shape, self.pe))),
            "o": Out(stream.Signature(data.ArrayLayout(self.out_shape, self.pe))),
        })


class OutputStage(Described):
    """Per-channel multi-threshold activation, or bias addition for scores.

    Input beats carry ``pe`` accumulators; beat ``f`` of each vector holds channels
    ``f*pe .. f*pe + pe - 1`` (lane ``p`` is channel ``f*pe + p``), and beats cycle
    through the ``channels // pe`` folds for every vector.

    With ``thresholds`` (int array ``(channels, 2**k - 1)``, non-decreasing per row), lane
    output is the code ``#{t : acc + bias >= t}`` as ``unsigned(k)``. Bias is folded into
    the thresholds (exact). Thresholds are clipped to the reachable range of
    ``acc_shape``, which changes no result and bounds the comparator width.
    Without thresholds the output is ``acc + bias`` as the narrowest signed shape that
    holds every possible sum.

    Parameters per fold are held in a register, loaded from a ROM (read at the next
    fold's address) as each input beat is taken, or are constants when there is one
    fold: the comparators see flip-flops, not the ROM's read path.

    Two register stages keep every path short: the first registers the ``2**k - 1`` compare
    results (or ``acc + bias``), the second turns the compare results into the code.
    As the thresholds of a channel are sorted, the compare results form a thermometer
    code (``acc >= t[j]`` implies ``acc >= t[j - 1]``), so the code is decoded from the
    edges of that thermometer (``count == c`` exactly when hit ``c - 1`` is set and hit
    ``c`` is not) rather than counted by an adder tree.

    Latency: ``OUTPUT_LATENCY`` = 2 cycles (input transfer to valid output). Throughput:
    one beat per cycle. The output register has a skid register beside it: when the sink
    stalls, the beat leaving the first stage waits there and both stages stop. So
    ``i.ready`` is a register output (no combinational path from ``o.ready`` to
    ``i.ready``, and none through the engine in front, whose registers load on this
    ``i.ready``): stalls do not chain through the layers of a network.

    Built from an :class:`OutputStageSpec` (``OutputStage(spec=...)``) or from its
    parameters.

    Parameters
    ----------
    channels : int
        Output channels of the layer; ``pe`` must divide it.
    pe : int
        Lanes per beat.
    acc_shape : Shape
        Shape of the incoming accumulators.
    thresholds : ndarray or None
    bias : ndarray or None
        Integer per-channel bias.
    """

    Spec = OutputStageSpec

    def _fold_params(self, m: Module, take, per_channel: np.ndarray, elem_shape: Shape,
                     name: str):
        """Per-lane parameter rows (``per_channel`` is ``(channels, n)``) of the current
        fold, from a register: the ROM is read at the next fold's address (a register
        too) and loaded on ``take``, so the comparators start from flip-flops."""
        n = per_channel.shape[1]
        layout = data.ArrayLayout(data.ArrayLayout(elem_shape, n), self.pe)
        rows = per_channel.reshape(self.folds, self.pe, n)
        words = [layout.const([[int(v) for v in lane] for lane in fold_rows]).as_value().value
                 for fold_rows in rows]
        if self.folds == 1:
            return layout(Const(words[0], layout.size))
        m.submodules[f"{name}_mem"] = mem = Memory(shape=layout.size, depth=self.folds, init=words)
        port = mem.read_port(domain="comb")
        current = Signal(layout.size, init=words[0], name=f"{name}_current")
        m.d.comb += port.addr.eq(rom_counter(m, self.folds, take, f"{name}_next_fold", start=1))
        with m.If(take):
            m.d.sync += current.eq(port.data)
        return layout(current)

    def elaborate(self, platform):
        m = Module()
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready)

        if self.thresholds is not None:
            params = self._fold_params(m, take, self.thresholds, self.threshold_shape, "thresholds")
        else:
            params = self._fold_params(m, take, self.bias[:, None], range_shape(
                min(0, int(self.bias.min())), max(0, int(self.bias.max()))), "bias")

        # Both stages move together unless the skid register holds a beat; ``i.ready`` is
        # therefore a register output, and ``o.ready`` reaches no logic but the output
        # and skid registers.
        skid_valid = Signal()
        skid = Signal(data.ArrayLayout(self.out_shape, self.pe))
        advance = Signal()
        m.d.comb += [advance.eq(~skid_valid), self.i.ready.eq(advance)]

        # Stage 1: compare results (thermometer code per lane), or acc + bias.
        valid1 = Signal()
        result = Signal(data.ArrayLayout(self.out_shape, self.pe))
        if self.thresholds is not None:
            n = self.thresholds.shape[1]
            hits = Signal(data.ArrayLayout(unsigned(n), self.pe))
            with m.If(advance):
                for p in range(self.pe):
                    acc = self.i.payload[p]
                    m.d.sync += hits[p].eq(Cat(acc >= params[p][j] for j in range(n)))
            for p in range(self.pe):
                m.d.comb += result[p].eq(_thermometer_to_binary(hits[p], self.bits))
        else:
            sums = Signal(data.ArrayLayout(self.out_shape, self.pe))
            with m.If(advance):
                for p in range(self.pe):
                    m.d.sync += sums[p].eq(self.i.payload[p] + params[p][0])
            m.d.comb += result.eq(sums)
        with m.If(advance):
            m.d.sync += valid1.eq(self.i.valid)

        # Stage 2: the output register, and the skid register that catches the beat
        # leaving stage 1 while the output register is held.
        with m.If(~self.o.valid | self.o.ready):
            with m.If(skid_valid):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(valid1), self.o.payload.eq(result)]
        with m.Elif(advance & valid1):
            m.d.sync += [skid_valid.eq(1), skid.eq(result)]
        return m


def _thermometer_to_binary(hits, bits: int):
    """Number of set bits of a thermometer code ``hits`` (bit ``j`` set implies every bit
    below it set), as ``bits`` bits: bit ``b`` of the count is the OR, over the counts
    ``c`` with bit ``b`` set, of the edge ``hits[c - 1] & ~hits[c]``."""
    n = len(hits)

    def edge(c):                            # count == c
        below = hits[c - 1] if c >= 1 else Const(1, 1)
        return below & ~hits[c] if c < n else below

    return Cat(_any(edge(c) for c in range(1, n + 1) if (c >> b) & 1) for b in range(bits))


def _any(terms):
    terms = list(terms)
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out
