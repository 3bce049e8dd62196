"""Sparse engine: a pruned layer whose cycles scale with its non-zero weights.

One :class:`SparseCSC` computes ``W @ act_values(x)`` for every input vector ``x`` (the
flattened input of a fully connected layer, or the im2col vector of one output pixel of
a convolution), walking only the non-zero weights of ``W``, and turns the accumulators
into activation codes or integer scores through the shared
:class:`hdl.engines.threshold.OutputStage`, exactly like :class:`hdl.engines.mvtu.MVTU`.

Row-parallel execution (each PE walks its own output rows, several non-zeros per cycle):

* The input vector is double-buffered (vector ``n + 1`` streams in while vector ``n``
  is computed) in ``simd`` banks, bank ``s`` holding lane ``s`` of every input beat,
  with asynchronous read ports (LUT RAM for the short vectors of these layers): every
  MAC lane reads the activation of its own entry's column each cycle from the ``reach``
  banks of its group.
* PE ``p`` owns the output channels ``c`` with ``c % pe == p`` (local row ``c // pe``, the
  MVTU's interleaving, so the drain keeps the output order). It stores its non-empty
  rows' non-zeros as *words* of ``simd`` entries (weight code and absolute column, as
  buffer word and bank), a row's entries in consecutive words, its last word padded
  with zero-weight entries and flagged, each word tagged with its local row. Empty rows
  cost no word (their accumulator stays 0; bias and thresholds still apply).
* Every cycle each PE reads one word, multiplies its ``simd`` entries with the
  activations (the shared lane products of :class:`hdl.engines.core.WeightCodes`: no
  multipliers for binary, ternary and pot weights), sums them in an adder tree and
  accumulates per row; a row's last word writes the sum to the PE's accumulator bank.
* PEs run in lock step over ``compute_cycles = max(1, max_p words_p)`` cycles per
  vector. Accumulator banks (two, or three where that saves cycles) are drained
  (``outputs / pe`` beats) into the output stage while the next vector is computed.

With ``weight_source="stream"`` the words come from DDR instead of entry ROMs: one beat
of every PE's word per compute cycle on the ``w`` port (:meth:`SparseSpec.weight_beats`,
e.g. from a :class:`hdl.engines.weightstream.WeightStream`). Streamed words drop the row
tag (rows are counted by last flags; an empty row takes a zero word) and, at ``simd = 1``,
hold the column relative to the row's previous entry (``delta_bits``, zero-weight fillers
bridge larger gaps): about 16 bits per non-zero for 4-bit weights.

So a vector costs about ``max(inputs / simd, compute_cycles, outputs / pe)`` cycles:
the input beats, the busiest PE's words, or the output beats (``cycles_per_vector`` is
the exact figure from the spec's cycle model).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl import ir
from hdl.engines._checks import check_bias, check_fc_layer, check_folds, check_int, check_thresholds
from hdl.engines.described import Described
from hdl.engines.core import MAX_IN_BITS, AccumulatorDomain, WeightCodes, check_weights
from hdl.engines.mvtu import RAM_STYLES, TREE_LEVELS, WEIGHT_SOURCES
from hdl.engines.rom import rom_counter
from hdl.engines.threshold import OutputStage, OutputStageSpec

__all__ = ["SparseCSC", "SparseSpec"]


class SparseSpec:
    """The sparse engine's description apart from its hardware: validated parameters,
    weight codes and word schedule per PE, memory geometry, storage bits, accumulator
    domain, ports, cycle model and latency. The compiler and benches read it;
    :class:`SparseCSC` builds from it.

    Parameters
    ----------
    weights : ir.Weights (CSC) or int ndarray (outputs, inputs)
        The IR's canonical CSC weights, or a matrix of weight *values* (0 = pruned; pot
        values 0 or ±2**e).
    kind : str
        ``"binary"`` (±1, 0 where pruned), ``"ternary"``, ``"int"`` (signed ``wbits``) or
        ``"pot"``. Must match an ``ir.Weights``' kind.
    wbits : int or None
        As for the MVTU (taken from an ``ir.Weights``).
    in_bits : int
        Activation code width, 1..16; 1 means bipolar codes (0 = -1, 1 = +1).
    pe : int
        Processing elements (rows in parallel); must divide ``outputs``.
    simd : int
        Entries per PE per cycle, and input elements per beat; must divide ``inputs``.
    reach : int or None
        Input banks (beat lanes) each MAC lane can read, dividing ``simd`` (``simd``: any
        lane reads any column). A smaller reach costs fewer buffer read ports
        (``pe * simd * reach``) and may cost words where a row's non-zeros crowd into one
        group of banks; default: the smallest reach whose ``compute_cycles`` equal those
        of ``reach = simd``.
    acc_banks : int or None
        Accumulator banks per PE, 2 or 3 (computed, drained, and a spare that lets the
        next vector start before the drain of the one two back ends); default: 3 where
        that saves cycles, else 2.
    ram_style : "auto" | "block" | "distributed"
        Where the entry ROMs go (``entry_memory``), as the MVTU's ``ram_style``: written
        as the memories' ``rom_style`` attribute.
    weight_source : "rom" | "stream"
        ``"stream"`` drops the entry ROMs and adds the port ``w``: compute cycle ``t`` of
        every vector takes beat ``t`` of :meth:`weight_beats` (word ``t`` of every PE), as
        the MVTU's ``weight_source`` (e.g. from a
        :class:`hdl.engines.weightstream.WeightStream` reading the CSC words from DDR).
    thresholds : int ndarray (outputs, 2**k - 1) or None
        Non-decreasing per row; ``None`` emits scores.
    bias : int ndarray (outputs,) or None
        Added to the accumulator before thresholds or in the scores.
    """

    mode = "sparse"

    def __init__(self, weights, *, kind, wbits=None, in_bits, pe, simd=1, reach=None, acc_banks=None,
                 thresholds=None, bias=None, ram_style="auto", weight_source="rom"):
        if ram_style not in RAM_STYLES:
            raise ValueError(f"ram_style must be one of {', '.join(RAM_STYLES)}, not {ram_style!r}")
        if weight_source not in WEIGHT_SOURCES:
            raise ValueError(f"weight_source must be one of {', '.join(WEIGHT_SOURCES)}, "
                             f"not {weight_source!r}")
        self.ram_style, self.weight_source = ram_style, weight_source
        if isinstance(weights, ir.Weights):
            if not weights.sparse:
                raise ValueError("weights must be an ir.Weights in CSC form or an integer matrix, "
                                 "not dense ir.Weights (use .to_csc())")
            if kind != weights.kind:
                raise ValueError(f"kind {kind!r} does not match the weights' kind {weights.kind!r}")
            if wbits is not None and wbits != weights.bits:
                raise ValueError(f"wbits {wbits} does not match the weights' bits {weights.bits}")
            wbits = None if kind in ("binary", "ternary") else weights.bits
            matrix = weights.matrix()
        elif isinstance(weights, (np.ndarray, list, tuple)):
            matrix = weights
        else:
            raise TypeError(f"weights must be an ir.Weights in CSC form or an integer matrix, "
                            f"not {type(weights).__name__}")
        m, wbits = check_weights(matrix, kind, wbits, pruned=True)
        in_bits = check_int("in_bits", in_bits, 1, MAX_IN_BITS, numpy=True)
        pe = check_int("PE", pe, 1, numpy=True)
        simd = check_int("SIMD", simd, 1, numpy=True)
        outputs, inputs = m.shape
        check_folds(outputs, inputs, pe, simd)
        auto_reach = reach is None
        reach = simd if auto_reach else check_int("reach", reach, 1, numpy=True)
        if simd % reach:
            raise ValueError(f"reach must divide SIMD {simd}, not {reach}")
        if acc_banks is not None:
            acc_banks = check_int("acc_banks", acc_banks, 2, 3, numpy=True)
        bias = check_bias(bias, outputs)
        thresholds = check_thresholds(thresholds, outputs)

        self.weights = m
        self.kind, self.wbits, self.in_bits = kind, wbits, in_bits
        self.outputs, self.inputs, self.pe, self.simd = outputs, inputs, pe, simd
        self.reach = reach
        self.local_rows = outputs // pe
        self.beats = inputs // simd
        self.thresholds, self.bias = thresholds, bias
        self.nnz = int(np.count_nonzero(m))

        self.codes = WeightCodes.for_weights(m, kind, wbits, in_bits, zero=True)
        self.scale = self.codes.scale
        self.internal = m >> self.codes.emin if kind == "pot" else m        # exact
        self.domain = AccumulatorDomain.of(self.internal, in_bits, scale=self.scale)
        self.acc_shape = self.domain.acc_shape
        self.stage_thresholds, self.stage_bias, self.stage_acc_shape = \
            self.domain.stage_params(thresholds, bias)
        #: The output stage's description.
        self.output = OutputStageSpec(outputs, pe, self.stage_acc_shape,
                                      thresholds=self.stage_thresholds, bias=self.stage_bias)
        self.out_shape = self.output.out_shape
        self.out_bits = None if thresholds is None else self.out_shape.width
        self._settle(acc_banks)
        if auto_reach:
            # the fewest banks per lane that cost no cycle
            full = self.cycles_per_vector
            for r in range(1, simd):
                if simd % r == 0:
                    self.reach = r
                    self._settle(acc_banks)
                    if self.cycles_per_vector == full:
                        break
            else:
                self.reach = simd
                self._settle(acc_banks)
        ports = {
            "i": In(stream.Signature(data.ArrayLayout(unsigned(in_bits), simd))),
            "o": Out(stream.Signature(data.ArrayLayout(self.out_shape, pe))),
        }
        if weight_source == "stream":
            ports["w"] = In(stream.Signature(self.weight_beat_layout))
        self.signature = wiring.Signature(ports)

    def _settle(self, acc_banks):
        """Word schedule for ``self.reach``, then the accumulator banks."""
        self._schedule()
        self._cycles = None
        if acc_banks is None:
            # a third bank where two cost cycles (compute and drain both close to the period)
            self.acc_banks = 2
            two = self.cycles_per_vector
            self.acc_banks, self._cycles = 3, None
            if self.cycles_per_vector >= two:
                self.acc_banks, self._cycles = 2, two
        else:
            self.acc_banks = acc_banks

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd=1, reach=None, acc_banks=None,
                   ram_style="auto", weight_source="rom"):
        """The description for an IR ``Conv`` or ``FC`` layer, optionally fused with its
        ``Threshold``. Dense weights are converted to CSC."""
        check_fc_layer(layer, threshold)
        w = layer.weights if layer.weights.sparse else layer.weights.to_csc()
        return cls(w, kind=w.kind, in_bits=in_bits, pe=pe, simd=simd, reach=reach, acc_banks=acc_banks,
                   thresholds=None if threshold is None else threshold.thresholds, bias=layer.bias,
                   ram_style=ram_style, weight_source=weight_source)

    # --- storage ----------------------------------------------------------------------

    @property
    def value_bits(self) -> int:
        """Stored bits per entry value."""
        return self.codes.bits

    @property
    def emin(self) -> int:
        return self.codes.emin

    @property
    def emax(self) -> int:
        return self.codes.emax

    def _schedule(self):
        """Per PE its words: rows ``c % pe == p`` in local-row order; a non-empty row's
        non-zeros (ascending column) fill consecutive words. Column ``j`` sits in input
        bank ``j % simd`` (its lane in the input beat); lane ``l`` reads the ``reach`` banks
        of its group ``l // reach``, so a row takes ``max`` over the groups of
        ``ceil(non-zeros in the group's banks / reach)`` words (``reach == simd``: any lane
        reads any column, ``ceil(nnz / simd)`` words)."""
        pe, simd, reach = self.pe, self.simd, self.reach
        groups = simd // reach
        self.addr_bits = ceil_log2(self.beats)           # buffer word of a column
        self.sel_bits = ceil_log2(reach)                  # bank within the lane's group
        self.index_bits = self.addr_bits + self.sel_bits
        self.row_bits = ceil_log2(self.local_rows)
        nz = self.internal != 0
        streamed = self.weight_source == "stream"
        # streamed words carry no row tag (the engine counts rows: empty rows take a word)
        self.tag_bits = 0 if streamed else self.row_bits
        self.delta_bits = None
        if streamed and simd == 1 and self.addr_bits:
            return self._schedule_relative(nz)
        self.words = []                                   # per PE: (row, last, [(lane, col, value)])
        for p in range(pe):
            words = []
            for r in range(self.local_rows):
                c = r * pe + p
                cols = np.nonzero(nz[c])[0]
                if not len(cols):
                    if streamed:
                        words.append((r, True, []))
                    continue
                by_group = [cols[(cols % simd) // reach == g] for g in range(groups)]
                n = max(-(-len(gc) // reach) for gc in by_group)
                for w in range(n):
                    lanes = []
                    for g, gc in enumerate(by_group):
                        for q, col in enumerate(gc[w * reach:(w + 1) * reach].tolist()):
                            lanes.append((g * reach + q, col, int(self.internal[c, col])))
                    words.append((r, w == n - 1, lanes))
            self.words.append(words)
        self._geometry(self.index_bits)

    def _schedule_relative(self, nz):
        """Streamed words of one entry (``simd == 1``) with the column relative to the
        row's previous entry (the first to column 0) in ``delta_bits`` bits; a larger gap
        takes zero-weight filler entries of the largest delta, an empty row one zero word.
        ``delta_bits`` is the one that streams the fewest bits per vector among those that
        make a PE's word a power of two wide and ``addr_bits`` (no filler)."""
        pe, rows_l, vb = self.pe, self.local_rows, self.value_bits
        rows, cols = np.nonzero(nz)                                  # row-major
        first = np.ones(len(rows), bool)
        first[1:] = rows[1:] != rows[:-1]
        gap = cols - np.where(first, 0, np.concatenate([[0], cols[:-1]]))

        def fillers(d):
            return np.maximum(0, -(-gap // ((1 << d) - 1)) - 1)

        def cycles(d):
            per_row = np.maximum(1, np.bincount(rows, weights=1 + fillers(d), minlength=self.outputs))
            return max(1, int(per_row.reshape(rows_l, pe).sum(axis=0).max()))

        options = {self.addr_bits} | {(1 << k) - vb - 1 for k in range(1, 7)
                                      if 1 <= (1 << k) - vb - 1 < self.addr_bits}
        d = min(sorted(options), key=lambda d: (cycles(d) * (vb + d + 1), -d))
        self.delta_bits = d
        fill = fillers(d)
        step = (1 << d) - 1
        self.words = [[] for _ in range(pe)]
        k = 0
        internal = self.internal
        for c in range(self.outputs):
            p, r = c % pe, c // pe
            words = self.words[p]
            start = len(words)
            base = 0
            while k < len(rows) and rows[k] == c:
                col = int(cols[k])
                for _ in range(int(fill[k])):
                    base += step
                    words.append((r, False, [(0, base, 0)]))
                words.append((r, False, [(0, col, int(internal[c, col]))]))
                base = col
                k += 1
            if len(words) == start:
                words.append((r, True, []))
            else:
                words[-1] = (r, True, words[-1][2])
        self._geometry(d)

    def _geometry(self, index_bits):
        """Word counts, widths and storage from ``self.words``."""
        simd = self.simd
        self.pe_words = [len(w) for w in self.words]
        self.compute_cycles = max(1, max(self.pe_words))
        slots = sum(self.pe_words) * simd
        self.padding = slots - self.nnz
        vb, ib = self.value_bits, index_bits
        self.lane_width = vb + ib
        self.word_width = simd * self.lane_width + self.tag_bits + 1
        self.storage_bits = {
            "values": self.nnz * vb,
            "indices": self.nnz * ib,
            "padding": self.padding * (vb + ib),
            "pointers": sum(self.pe_words) * (self.tag_bits + 1),
        }
        self.storage_bits["total"] = sum(self.storage_bits.values())
        dense_bits = 1 if self.kind == "binary" else self.codes.bits
        self.dense_storage_bits = self.outputs * self.inputs * dense_bits
        #: Input buffer bits (two vectors), and the asynchronous read ports on them.
        self.buffer_bits = 2 * self.inputs * self.in_bits
        self.buffer_read_ports = self.pe * simd * self.reach

    @property
    def entry_memory(self) -> tuple[int, int, int]:
        """``(memories, width, depth)`` of the entry ROMs (one per PE, the deepest)."""
        return self.pe, self.word_width, max(1, max(self.pe_words))

    def entry_words(self) -> list[list[int]]:
        """Words per PE (ROM contents, or the streamed words): lane ``l`` at bits
        ``l * lane_width`` (code, then buffer word ``col // simd`` and bank within the
        group, or with ``delta_bits`` the column minus the row's previous entry's), then
        the local row (ROM words only), then the last flag; unused lanes hold a zero code."""
        lw, ab, vb, simd, reach = self.lane_width, self.addr_bits, self.value_bits, self.simd, self.reach
        tb, relative = self.tag_bits, self.delta_bits is not None
        values = sorted({v for words in self.words for _, _, lanes in words for _, _, v in lanes})
        code_of = dict(zip(values, (int(c) for c in self.codes.encode(np.array(values, np.int64))))) \
            if values else {}
        out = []
        for words in self.words:
            mem = []
            prev = 0                                      # column of the row's previous entry
            for row, last, lanes in words:
                w = 0
                for lane, col, value in lanes:
                    if relative:
                        field = code_of[value] | (col - prev) << vb
                        prev = col
                    else:
                        field = code_of[value] | (col // simd) << vb | (col % simd % reach) << (vb + ab)
                    w |= field << (lane * lw)
                if tb:
                    w |= row << (simd * lw)
                w |= int(last) << (simd * lw + tb)
                if last:
                    prev = 0
                mem.append(w)
            out.append(mem or [0])
        return out

    # --- streamed weights (``weight_source="stream"``) -------------------------------

    @property
    def weight_bits(self) -> int:
        """Bits of one PE's word on the ``w`` stream (``word_width``: ``simd`` entries of
        ``lane_width`` bits and the last flag)."""
        return self.word_width

    @property
    def weight_steps(self) -> int:
        """Beats of the ``w`` stream per vector: ``compute_cycles``."""
        return self.compute_cycles

    @property
    def weight_beat_layout(self) -> data.ArrayLayout:
        """One compute cycle's words on the ``w`` stream: lane ``p`` is PE ``p``'s word."""
        return data.ArrayLayout(unsigned(self.word_width), self.pe)

    def weight_beats(self) -> list[int]:
        """The ``w`` stream of one vector, as integers of the beat layout: beat ``t`` holds
        word ``t`` of every PE (:meth:`entry_words`, PE ``p`` at bits ``p * word_width``;
        a PE with fewer words sends zeros, which it ignores). The ``weight_source="stream"``
        engine takes this sequence once per input vector."""
        words, width = self.entry_words(), self.word_width
        return [sum(words[p][t] << (p * width) for p in range(self.pe) if t < self.pe_words[p])
                for t in range(self.compute_cycles)]

    # --- cycle model ------------------------------------------------------------------

    @property
    def tree_terms(self) -> int:
        """Operands of a PE's adder tree (pot adds the lanes' sign bits)."""
        return self.simd * (2 if self.codes.style == "pot" else 1)

    @property
    def tree_stages(self) -> int:
        """Registers through the adder tree (one per ``TREE_LEVELS`` levels, at least one)."""
        return max(1, -(-ceil_log2(self.tree_terms) // TREE_LEVELS))

    @property
    def latency(self) -> int:
        """Cycles from a word's issue to its accumulator write: entry read, buffer read,
        lane products, ``tree_stages`` adder-tree registers."""
        return 3 + self.tree_stages

    def cycle_trace(self, vectors: int) -> list[int]:
        """Cycle (from the first input beat) at which each drain beat of ``vectors``
        back-to-back vectors enters the output stage, free-running source and sink.

        An exact model of :meth:`SparseCSC.elaborate`: vector ``n``'s ``B = inputs / simd``
        beats start when the previous vector's beats are in and the input bank of
        vector ``n - 2`` is released (after its last issue); its compute starts the cycle
        after its last beat, after vector ``n - 1``'s last issue and after the drain of
        vector ``n - acc_banks`` (its accumulator bank) ends, and issues ``compute_cycles``
        words; the bank is full ``latency + 1`` cycles after the last issue; the drain
        (``outputs / pe`` beats) starts then, after the previous drain.
        """
        b, c, d, lat, nb = self.beats, self.compute_cycles, self.local_rows, self.latency, self.acc_banks
        a, te, de = [], [], []
        trace = []
        for n in range(vectors):
            start_in = 0 if n == 0 else a[-1] + b
            if n >= 2:
                start_in = max(start_in, te[n - 2] + 1)
            a.append(start_in)
            s = start_in + b
            if n >= 1:
                s = max(s, te[n - 1] + 1)
            if n >= nb:
                s = max(s, de[n - nb] + 1)
            te.append(s + c - 1)
            ds = te[-1] + lat + 1
            if n >= 1:
                ds = max(ds, de[n - 1] + 1)
            de.append(ds + d - 1)
            trace.extend(range(ds, ds + d))
        return trace

    #: Vectors the steady-state period is taken over (after as many warm-up vectors).
    PERIOD_VECTORS = 8

    @property
    def cycles_per_vector(self) -> int:
        """Steady-state cycles per vector (free-running source and sink): the mean period
        of vectors ``8 .. 16`` of :meth:`cycle_trace`, rounded up."""
        if self._cycles is None:
            n, d = self.PERIOD_VECTORS, self.local_rows
            ends = self.cycle_trace(2 * n)[d - 1::d]
            self._cycles = -(-(ends[2 * n - 1] - ends[n - 1]) // n)
        return self._cycles

    @property
    def bound_cycles(self) -> int:
        """``max(input beats, compute_cycles, output beats)``: no vector is faster."""
        return max(self.beats, self.compute_cycles, self.local_rows)


class SparseCSC(Described):
    """Pruned matrix-vector product, row-parallel over the non-zeros; thresholds or scores.

    Computes, for each input vector ``x`` of ``inputs`` activation codes, the ``outputs``
    accumulators ``acc = weights @ act_values(x, in_bits) (+ bias)`` exactly and emits
    ``#{t in thresholds[c] : acc[c] >= t}`` per channel (``thresholds`` given) or ``acc``
    itself as integer scores: the function of :class:`hdl.engines.mvtu.MVTU`, with the
    same ports.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), simd)))``
        ``inputs / simd`` beats per vector, elements in order, lane 0 lowest index.
    o : ``Out(stream.Signature(ArrayLayout(out_shape, pe)))``
        ``outputs / pe`` beats per vector; beat ``f`` lane ``p`` is channel ``f*pe + p``.
    w : ``In(stream.Signature(weight_beat_layout))``, with ``weight_source="stream"`` only
        ``compute_cycles`` beats per vector (:meth:`SparseSpec.weight_beats`), one per
        compute cycle; the engine waits for a missing beat (a bubble in the word
        pipeline), results and latency are those of the ROM version.

    Throughput: ``cycles_per_vector`` in steady state (free-running source and sink),
    at least ``bound_cycles = max(inputs / simd, compute_cycles, outputs / pe)`` where
    ``compute_cycles`` is the busiest PE's word count (``sum ceil(nnz_row / simd)`` over
    its rows). The input takes a beat every cycle while an input bank is free.
    Latency: ``latency + 1`` cycles from a vector's last issued word to its first drain
    beat, plus the output stage's 2. After a reset the engine spends ``outputs / pe``
    cycles zeroing its accumulator banks before it takes input.

    Build from a :class:`SparseSpec` (``SparseCSC(spec=...)``) or from the spec's
    parameters (``SparseCSC(weights, kind=..., ...)``); the description's figures read as
    the engine's own (``engine.cycles_per_vector``).
    """

    Spec = SparseSpec

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd=1, reach=None, acc_banks=None,
                   ram_style="auto", weight_source="rom"):
        """A sparse engine for an IR ``Conv`` or ``FC`` layer, optionally fused with its
        ``Threshold``. Dense weights are converted to CSC."""
        return cls(spec=SparseSpec.from_layer(layer, threshold, in_bits=in_bits, pe=pe, simd=simd,
                                              reach=reach, acc_banks=acc_banks, ram_style=ram_style,
                                              weight_source=weight_source))

    def _to_stage(self, internal):
        return internal if self.stage_thresholds is not None else self.domain.to_real(internal)

    def elaborate(self, platform):
        s = self.spec
        m = Module()
        m.submodules.output = stage = OutputStage(spec=s.output)
        wiring.connect(m, stage.o, wiring.flipped(self.o))
        pe, simd, rows_l, beats, cyc = s.pe, s.simd, s.local_rows, s.beats, s.compute_cycles
        vb, ab, lw, rb = s.value_bits, s.addr_bits, s.lane_width, s.row_bits

        # --- after reset: zero both accumulator banks (memories keep their contents) --
        clearing = Signal(init=1)
        clear_row = Signal(range(rows_l))
        with m.If(clearing):
            m.d.sync += clear_row.eq(clear_row + 1)
            with m.If(clear_row == rows_l - 1):
                m.d.sync += clearing.eq(0)

        # --- input: beats into the free input bank ----------------------------------
        in_full = [Signal(name=f"in_full{k}") for k in range(2)]
        wbank = Signal()
        wbeat = Signal(range(beats))
        banks = []
        for lane in range(simd):
            bank = Memory(shape=unsigned(s.in_bits), depth=2 * beats, init=[],
                          attrs={"ram_style": "distributed"})
            m.submodules[f"inbuf{lane}"] = bank
            wr = bank.write_port()
            m.d.comb += [wr.addr.eq(Cat(wbank, wbeat)), wr.data.eq(self.i.payload[lane]),
                         wr.en.eq(self.i.valid & self.i.ready)]
            banks.append(bank)
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(~Mux(wbank, in_full[1], in_full[0]) & ~clearing),
            take.eq(self.i.valid & self.i.ready),
        ]
        with m.If(take):
            m.d.sync += wbeat.eq(Mux(wbeat == beats - 1, 0, wbeat + 1))
            with m.If(wbeat == beats - 1):
                m.d.sync += wbank.eq(~wbank)
                for k in range(2):
                    with m.If(wbank == k):
                        m.d.sync += in_full[k].eq(1)

        # --- compute control: compute_cycles issues per vector, all PEs in lock step ---
        nb = s.acc_banks
        busy = Array(Signal(name=f"busy{k}") for k in range(nb))      # accumulator bank in use
        full = Array(Signal(name=f"full{k}") for k in range(nb))      # accumulator bank complete

        def step(bank):
            return Mux(bank == nb - 1, 0, bank + 1)

        # With streamed weights a cycle issues only with its weight beat (taken on
        # ``issue``); without one the pipeline carries a bubble.
        streamed = s.weight_source == "stream"
        w_ok = self.w.valid if streamed else Const(1, 1)
        running = Signal()
        rbank, cbank = Signal(), Signal(range(nb))
        # idx: the word a cycle issues (0 between vectors); a rom_counter, so that the
        # entry ROMs are decoded from flip-flops.
        start, issue, last_issue = Signal(), Signal(), Signal()
        idx = rom_counter(m, cyc, issue, "idx")
        m.d.comb += [
            start.eq(~running & Mux(rbank, in_full[1], in_full[0])
                     & ~busy[cbank] & ~clearing & w_ok),
            issue.eq((running & w_ok) | start),
            last_issue.eq(issue & (idx == cyc - 1)),
        ]
        with m.If(issue):
            m.d.sync += running.eq(~last_issue)
        if streamed:
            m.d.comb += self.w.ready.eq(issue)
        for k in range(nb):
            with m.If(start & (cbank == k)):
                m.d.sync += busy[k].eq(1)
        for k in range(2):
            with m.If(last_issue & (rbank == k)):
                m.d.sync += in_full[k].eq(0)
        with m.If(last_issue):
            m.d.sync += [rbank.eq(~rbank), cbank.eq(step(cbank))]

        # --- drain: one local row of every PE per beat into the output stage -----------
        dbank = Signal(range(nb))
        fold = Signal(range(rows_l))
        drain_take, drain_done = Signal(), Signal()
        m.d.comb += [
            stage.i.valid.eq(full[dbank]),
            drain_take.eq(stage.i.valid & stage.i.ready),
            drain_done.eq(drain_take & (fold == rows_l - 1)),
        ]
        with m.If(drain_take):
            m.d.sync += fold.eq(Mux(fold == rows_l - 1, 0, fold + 1))
        with m.If(drain_done):
            m.d.sync += dbank.eq(step(dbank))

        # --- the word pipeline: issue, stage 1 (entry word), stage 2 (codes and
        # activations), stage 3 (lane products), adder tree, accumulate ---------------
        def delay(sig, n, name):
            for j in range(n):
                nxt = Signal.like(sig, name=f"{name}_d{j}")
                m.d.sync += nxt.eq(sig)
                sig = nxt
            return sig

        lat = s.latency
        vend_a = delay(last_issue, lat, "vend")
        bank_a = delay(cbank, lat, "cbank")
        for k in range(nb):
            with m.If(vend_a & (bank_a == k)):
                m.d.sync += full[k].eq(1)
            with m.If(drain_done & (dbank == k)):
                m.d.sync += [full[k].eq(0), busy[k].eq(0)]
        rbank1 = delay(rbank, 1, "rbank")

        words = None if streamed else s.entry_words()
        for p in range(pe):
            n_words = s.pe_words[p]
            v1 = Signal(name=f"v1_{p}")
            m.d.sync += v1.eq(issue & (idx < n_words) if n_words else 0)
            if streamed:
                # stage 1: the beat's word in place of the ROM's read data
                word = Signal(s.word_width, name=f"word1_{p}")
                m.d.sync += word.eq(self.w.payload[p])
            else:
                attrs = None if s.ram_style == "auto" else {"rom_style": s.ram_style}
                emem = Memory(shape=unsigned(s.word_width), depth=len(words[p]), init=words[p],
                              attrs=attrs)
                m.submodules[f"entries{p}"] = emem
                erd = emem.read_port(domain="sync")
                m.d.comb += erd.addr.eq(idx)
                word = erd.data
            # stage 2: codes, activations, row and flags
            v2, row2, last2 = Signal(name=f"v2_{p}"), Signal(range(rows_l), name=f"row2_{p}"), Signal(name=f"last2_{p}")
            tb = s.tag_bits
            last1 = word[simd * lw + tb]
            m.d.sync += [v2.eq(v1), last2.eq(last1)]
            if tb or rows_l == 1:
                m.d.sync += row2.eq(word[simd * lw:simd * lw + rb])
            else:
                # untagged (streamed) words: every local row ends with one last word
                row1 = Signal(range(rows_l), name=f"row1_{p}")
                m.d.sync += row2.eq(row1)
                with m.If(v1 & last1):
                    m.d.sync += row1.eq(Mux(row1 == rows_l - 1, 0, row1 + 1))
            col1 = None
            if s.delta_bits is not None:
                # relative columns (simd 1): the previous entry's column plus the delta
                base = Signal(ab, name=f"base1_{p}")
                fresh = Signal(init=1, name=f"fresh1_{p}")
                col1 = Signal(ab, name=f"col1_{p}")
                m.d.comb += col1.eq(Mux(fresh, 0, base) + word[vb:vb + s.delta_bits])
                with m.If(v1):
                    m.d.sync += [base.eq(col1), fresh.eq(last1)]
            codes2, xs2 = [], []
            sb, reach = s.sel_bits, s.reach
            for lane in range(simd):
                f = word[lane * lw:(lane + 1) * lw]
                code = Signal(vb, name=f"code2_{p}_{lane}")
                x = Signal(s.in_bits, name=f"x2_{p}_{lane}")
                group = lane // reach * reach
                reads = []
                for t in range(reach):
                    port = banks[group + t].read_port(domain="comb")
                    m.d.comb += port.addr.eq(Cat(rbank1, f[vb:vb + ab] if col1 is None else col1))
                    reads.append(port.data)
                sel = Array(reads)[f[vb + ab:vb + ab + sb]] if reach > 1 else reads[0]
                m.d.sync += [code.eq(f[:vb]), x.eq(sel)]
                codes2.append(code)
                xs2.append(x)
            # stage 3: lane products (the pot carries enter the tree as operands)
            terms = []
            for lane in range(simd):
                term, carry = s.codes.terms(codes2[lane], xs2[lane])
                t = Signal(term.shape(), name=f"term3_{p}_{lane}")
                m.d.sync += t.eq(term)
                terms.append(t)
                if carry is not None:
                    c = Signal(name=f"carry3_{p}_{lane}")
                    m.d.sync += c.eq(carry)
                    terms.append(c)
            total = self._pipelined_sum(m, terms, f"tree{p}")
            ts = s.tree_stages
            va = delay(v2, 1 + ts, f"v_{p}")
            row_a = delay(row2, 1 + ts, f"row_{p}")
            last_a = delay(last2, 1 + ts, f"last_{p}")
            # accumulate
            acc = Signal(s.acc_shape, name=f"acc{p}")
            open_ = Signal(name=f"open{p}")
            new = Signal(s.acc_shape, name=f"acc_next{p}")
            m.d.comb += new.eq(Mux(open_, acc, 0) + total)
            with m.If(va):
                m.d.sync += [acc.eq(new), open_.eq(~last_a)]
            reads = []
            for k in range(nb):
                amem = Memory(shape=s.acc_shape, depth=rows_l, init=[])
                m.submodules[f"acc{p}_{k}"] = amem
                ard = amem.read_port(domain="comb")
                awr = amem.write_port()
                compute = Signal(name=f"write{p}_{k}")
                m.d.comb += [
                    compute.eq(va & last_a & (bank_a == k)),
                    ard.addr.eq(fold),
                    awr.addr.eq(Mux(clearing, clear_row, Mux(compute, row_a, fold))),
                    awr.data.eq(Mux(compute, new, 0)),
                    awr.en.eq(clearing | compute | (drain_take & (dbank == k))),
                ]
                reads.append(ard.data)
            m.d.comb += stage.i.payload[p].eq(self._to_stage(Array(reads)[dbank]))
        return m

    @staticmethod
    def _pipelined_sum(m: Module, terms: list, name: str):
        """Balanced adder tree with a register after every ``TREE_LEVELS`` levels and at
        the end (``SparseSpec.tree_stages`` registers)."""
        terms = list(terms)
        level = 0
        while len(terms) > 1:
            nxt = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
            if len(terms) % 2:
                nxt.append(terms[-1])
            terms = nxt
            level += 1
            if level % TREE_LEVELS == 0 and len(terms) > 1:
                regs = []
                for j, t in enumerate(terms):
                    r = Signal(t.shape(), name=f"{name}_l{level}_{j}")
                    m.d.sync += r.eq(t)
                    regs.append(r)
                terms = regs
        out = Signal(terms[0].shape(), name=f"{name}_sum")
        m.d.sync += out.eq(terms[0])
        return out
