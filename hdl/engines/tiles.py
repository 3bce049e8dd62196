"""Tile-skipping MVTU: the dense engine that stores and computes only the non-zero tiles.

A weight matrix folded by ``pe`` x ``simd`` is a grid of tiles: neuron fold ``f`` (rows
``f*pe .. f*pe + pe - 1``, FINN's interleaving: PE ``p`` takes row ``f*pe + p``) by
synapse fold ``s`` (columns ``s*simd .. s*simd + simd - 1``). A block-pruned matrix has
whole tiles of zeros; :class:`TileMVTU` keeps the dense datapaths of
:class:`hdl.engines.mvtu.MVTU` (xnor/binary/int/pot, the shift-add bit heap included)
and steps only through the *scheduled* tiles: the non-zero tiles in (neuron fold,
synapse fold) order, and tile ``(f, 0)`` (all zero) for a neuron fold that has none, so
that every fold still emits its outputs (thresholds of a zero dot product plus bias).

Input width is decoupled from compute width: the input stream carries ``in_simd``
elements per beat (a multiple of ``simd`` dividing the vector length), written into a
two-bank input buffer at the upstream's rate; compute reads the ``simd``-wide slice of a
scheduled tile's synapse fold from the other bank. Per vector the engine therefore
needs ``max(inputs / in_simd, steps)`` cycles in steady state (``steps`` the scheduled
tiles), see :attr:`TileSpec.cycles_per_vector`.

Binary weights with pruned (zero) tiles cannot use the XNOR datapath (no zero code):
they run as ternary weights on the ``int`` datapath.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.engines._checks import check_fc_layer, check_int
from hdl.engines.core import check_weights
from hdl.engines.mvtu import MVTU, MVTUSpec
from hdl.engines.threshold import OutputStage

__all__ = ["TileMVTU", "TileSpec", "tile_mask", "tile_steps"]


def tile_mask(weights, pe: int, simd: int) -> np.ndarray:
    """``(outputs / pe, inputs / simd)`` booleans: which ``pe`` x ``simd`` tiles hold a
    non-zero weight."""
    m = np.asarray(weights)
    outputs, inputs = m.shape
    return (m.reshape(outputs // pe, pe, inputs // simd, simd) != 0).any(axis=(1, 3))


def tile_steps(weights, pe: int, simd: int) -> int:
    """Scheduled tiles per vector: the non-zero tiles, at least one per neuron fold."""
    return int(np.maximum(tile_mask(weights, pe, simd).sum(axis=1), 1).sum())


class TileSpec(MVTUSpec):
    """The :class:`TileMVTU`'s description: the :class:`hdl.engines.mvtu.MVTUSpec` of the
    whole matrix, plus the tile schedule, ``in_simd`` and the input port at that width.

    Parameters are those of :class:`hdl.engines.mvtu.MVTU` and ``in_simd`` (default
    ``simd``): input elements per beat, a multiple of ``simd`` that divides ``inputs``.
    """

    def __init__(self, weights, *, kind, wbits=None, in_bits, pe, simd, in_simd=None,
                 thresholds=None, bias=None, ram_style="auto"):
        arr = np.asarray(weights)
        if isinstance(kind, str) and kind == "binary" and arr.dtype.kind in "iu" \
                and arr.size and np.any(arr == 0):
            check_weights(arr, kind, wbits, pruned=True)
            kind, wbits = "ternary", None                  # a zero needs a code: ternary lanes
        super().__init__(weights, kind=kind, wbits=wbits, in_bits=in_bits, pe=pe, simd=simd,
                         thresholds=thresholds, bias=bias, ram_style=ram_style)
        in_simd = simd if in_simd is None else check_int("in_simd", in_simd, 1, numpy=True)
        if in_simd % simd:
            raise ValueError(f"in_simd must be a multiple of SIMD {simd}, not {in_simd}")
        if self.inputs % in_simd:
            raise ValueError(f"in_simd must divide the input width {self.inputs}, not {in_simd}")
        self.in_simd = in_simd
        self.in_beats = self.inputs // in_simd
        mask = tile_mask(self.weights, pe, simd)
        #: Non-zero tiles per vector.
        self.tiles = int(mask.sum())
        #: Scheduled ``(neuron fold, synapse fold)`` steps, in order.
        self.schedule = []
        for f in range(self.neuron_folds):
            cols = [int(s) for s in np.flatnonzero(mask[f])] or [0]
            self.schedule += [(f, s) for s in cols]
        self.steps = len(self.schedule)
        self.cycles_per_vector = max(self.in_beats, self.steps)
        self.signature = wiring.Signature({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(in_bits), in_simd))),
            "o": Out(stream.Signature(data.ArrayLayout(self.out_shape, pe))),
        })

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd, in_simd=None, ram_style="auto"):
        """The description for an IR ``Conv`` or ``FC`` layer (CSC weights expanded),
        optionally fused with its ``Threshold``."""
        check_fc_layer(layer, threshold)
        w = layer.weights
        return cls(w.matrix(), kind=w.kind, wbits=w.bits, in_bits=in_bits, pe=pe, simd=simd,
                   in_simd=in_simd, thresholds=None if threshold is None else threshold.thresholds,
                   bias=layer.bias, ram_style=ram_style)

    @staticmethod
    def tile_cycles(weights, pe: int, simd: int, in_simd: int | None = None) -> int:
        """Cycles per vector at a folding, ``max(inputs / in_simd, scheduled tiles)``,
        for planners that compare foldings without describing each."""
        inputs = np.asarray(weights).shape[1]
        return max(inputs // (in_simd or simd), tile_steps(weights, pe, simd))

    @property
    def slices(self) -> int:
        """``simd``-wide slices per input beat, ``in_simd / simd``."""
        return self.in_simd // self.simd

    @property
    def weight_memory(self) -> tuple[int, int, int]:
        """``(memories, width, depth)`` of the weight ROMs: one per PE, a word per step."""
        return self.pe, self.simd * self.weight_bits, self.steps

    @property
    def input_buffer(self) -> tuple[int, int]:
        """``(width, depth)`` of the two-bank input buffer."""
        return self.in_simd * self.in_bits, 2 * self.in_beats

    def weight_words(self) -> list[list[int]]:
        """Memory contents per PE: word ``k`` holds scheduled tile ``k``'s row of PE ``p``
        (lane ``j`` at bits ``j*weight_bits``)."""
        dense = super().weight_words()
        sf = self.synapse_folds
        return [[words[f * sf + s] for f, s in self.schedule] for words in dense]

    @property
    def step_fields(self) -> tuple[int, int]:
        """Bits of the step ROM's beat index and slice index fields."""
        return max(1, ceil_log2(self.in_beats)), max(1, ceil_log2(self.slices))

    def step_words(self) -> list[int]:
        """Step ROM: per step the input beat (``s // slices``), the slice in it
        (``s % slices``), the first-tile and last-tile-of-fold flags, LSB first."""
        wb, sb = self.step_fields
        words = []
        for k, (f, s) in enumerate(self.schedule):
            first = k == 0 or self.schedule[k - 1][0] != f
            last = k == self.steps - 1 or self.schedule[k + 1][0] != f
            words.append((s // self.slices) | (s % self.slices) << wb | first << (wb + sb)
                         | last << (wb + sb + 1))
        return words


class TileMVTU(MVTU):
    """Folded matrix-vector product that skips all-zero ``pe`` x ``simd`` weight tiles.

    Computes exactly what :class:`hdl.engines.mvtu.MVTU` computes (same datapaths, output
    stage and ports, but ``in_simd`` input lanes).

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), in_simd)))``
        ``inputs / in_simd`` beats per vector, elements in order.
    o : as :class:`hdl.engines.mvtu.MVTU`: ``outputs / pe`` beats per vector.

    Hardware: input beats go into a two-bank buffer (``2 * inputs / in_simd`` words of
    ``in_simd`` codes); a bank is taken by the stream while it is free and handed to
    compute when its vector is complete; compute steps through the step ROM (input beat,
    slice, first and last flags per scheduled tile) on the full bank and frees it at the
    vector's last step. Throughput: ``cycles_per_vector = max(inputs / in_simd, steps)``
    with a free-running source and sink (ingest and compute overlap on the two banks,
    no bubble at the hand-over). Latency from the issue of a fold's last step to its
    output beat: :attr:`latency`, as the MVTU's (the step ROM is read combinationally, the
    slice multiplexer sits before the input register).

    Parameters: those of :class:`hdl.engines.mvtu.MVTU`, and ``in_simd``.
    """

    Spec = TileSpec

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd, in_simd=None, ram_style="auto",
                   **kwargs):
        """A TileMVTU for an IR ``Conv`` or ``FC`` layer, optionally fused with its ``Threshold``."""
        return cls(spec=TileSpec.from_layer(layer, threshold, in_bits=in_bits, pe=pe, simd=simd,
                                            in_simd=in_simd, ram_style=ram_style), **kwargs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.output = stage = OutputStage(spec=self.output)
        pe, simd, steps, beats = self.pe, self.simd, self.steps, self.in_beats

        out_valid, out_data, advance = self._output_handoff(m, stage)

        # Two-bank input buffer: the stream fills bank ``wbank`` while it is not full;
        # compute works on bank ``rbank`` while it is full.
        width, depth = self.input_buffer
        m.submodules.inbuf = buf = Memory(shape=unsigned(width), depth=depth, init=[])
        wr = buf.write_port()
        rd = buf.read_port(domain="sync")
        full = Signal(2)
        wbank, rbank = Signal(), Signal()
        wbeat = Signal(range(beats))
        take = Signal()
        set_full, clr_full = Signal(2), Signal(2)
        m.d.comb += [
            self.i.ready.eq(~Mux(wbank, full[1], full[0])),
            take.eq(self.i.valid & self.i.ready),
            wr.addr.eq(Mux(wbank, beats + wbeat, wbeat)),
            wr.data.eq(self.i.payload.as_value()),
            wr.en.eq(take),
        ]
        with m.If(take):
            with m.If(wbeat == beats - 1):
                m.d.sync += [wbeat.eq(0), wbank.eq(~wbank)]
                m.d.comb += set_full.eq(Mux(wbank, 0b10, 0b01))
            with m.Else():
                m.d.sync += wbeat.eq(wbeat + 1)

        # Issue: one scheduled tile per cycle on the full bank; the step ROM gives the
        # input beat and slice of its synapse fold and the fold flags.
        step = Signal(range(steps))
        wb, sb = self.step_fields
        m.submodules.steps = rom = Memory(shape=unsigned(wb + sb + 2), depth=steps,
                                          init=self.step_words())
        sp = rom.read_port(domain="comb")
        m.d.comb += sp.addr.eq(step)
        beat, slice_, first, last = (sp.data[:wb], sp.data[wb:wb + sb], sp.data[wb + sb],
                                     sp.data[wb + sb + 1])
        issue = Signal()
        m.d.comb += [
            issue.eq(advance & Mux(rbank, full[1], full[0])),
            rd.addr.eq(Mux(rbank, beats + beat, beat)),
            rd.en.eq(advance),
        ]
        with m.If(issue):
            with m.If(step == steps - 1):
                m.d.sync += [step.eq(0), rbank.eq(~rbank)]
                m.d.comb += clr_full.eq(Mux(rbank, 0b10, 0b01))
            with m.Else():
                m.d.sync += step.eq(step + 1)
        m.d.sync += full.eq((full | set_full) & ~clr_full)

        # Stage 1: the buffer word read, its slice selected; the weight address.
        x_layout = data.ArrayLayout(unsigned(self.in_bits), simd)
        v1, first1, last1 = Signal(), Signal(), Signal()
        slice1 = Signal(sb)
        waddr1 = Signal.like(step)
        with m.If(advance):
            m.d.sync += [v1.eq(issue), first1.eq(first), last1.eq(last), slice1.eq(slice_),
                         waddr1.eq(step)]
        x1 = rd.data.word_select(slice1, simd * self.in_bits) if self.slices > 1 else rd.data

        # Stage 2: the input slice registered, the weight words read.
        x2 = Signal(x_layout)
        v2, first2, last2 = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [x2.eq(x1), v2.eq(v1), first2.eq(first1), last2.eq(last1)]
        w_data = self._weight_roms(m, self.weight_words(), steps, waddr1, advance)
        self._accumulate(m, stage, w_data, x2, (v2, first2, last2), advance, out_data, out_valid)
        return m
