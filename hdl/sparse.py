"""Sparse CSC engine: a pruned layer whose cycles scale with its non-zero weights.

One :class:`SparseCSC` computes ``W @ act_values(x)`` for every input vector ``x`` (the
flattened input of a fully connected layer, or the im2col vector of one output pixel of
a convolution), walking only the stored non-zeros of ``W``, and turns the accumulators
into activation codes or integer scores through the shared
:class:`hdl.threshold.OutputStage`, exactly like :class:`hdl.mvtu.MVTU`.

Storage (built from the IR's canonical CSC, columns = inputs), after EIE (Han et al.
2016):

* Output rows are interleaved across the ``pe`` processing elements: row ``r`` goes to
  PE ``r % pe`` as its local row ``r // pe``.
* Each PE keeps its own CSC over its ``outputs / pe`` local rows, in one entry memory,
  column after column. An entry is a weight code and a *relative* local row index
  ``delta`` of ``index_bits`` bits: the number of local rows skipped since the previous
  entry of the column (since row -1 for the first). A gap of more than
  ``2**index_bits - 1`` rows is bridged by padding entries: a zero weight at the row
  ``2**index_bits`` after the previous entry (``delta = 2**index_bits - 1``).
* Per-column pointers: each PE walks its entries in order with a running address, so
  a column's pointer is implicit and the column memory stores, per column, each PE's
  entry count (the difference of consecutive column pointers), the column's step count
  (the largest count over the PEs) and the next non-empty lane of the input beat.

Weight codes: ``binary`` and ``ternary`` as 2 bits (non-zero flag, sign: padding entries
need a zero); ``int`` as ``wbits``-bit two's complement (one multiplier per PE, or a
negation for 1-bit activations); ``pot`` as sign and ``mag = e - emin + 1`` over the
exponent window of the actual weights, multiplied by a barrel shift as in the MVTU's
``pot`` mode (accumulating ``acc / 2**emin``; thresholds divided, scores shifted back).
No multipliers for binary, ternary or pot weights.

Execution: for each input element ``j`` (column) all PEs step together for ``K_j`` cycles,
``K_j`` the largest per-PE entry count of column ``j`` including padding; PE ``p`` takes
one of its own entries per step while it has any left (EIE's lock-step variant, without
activation queues). Each entry updates one local accumulator: ``acc[row] += w * x_j``.
A missing weight contributes nothing, also for 1-bit bipolar activations (where a stored
weight contributes ``±w``).
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl import ir
from hdl.mvtu import KINDS, MAX_IN_BITS, _check_int, _check_weights, _row_bounds
from hdl.threshold import OutputStage, range_shape

__all__ = ["SparseCSC", "MAX_INDEX_BITS"]

#: Widest relative row index.
MAX_INDEX_BITS = 16


def _check_matrix(weights, kind: str, wbits) -> tuple[np.ndarray, int]:
    """Weight values (0 = pruned) validated for ``kind``; returns int64 matrix and width."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string, not {kind!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind != "binary":
        return _check_weights(weights, kind, wbits)
    # binary: pruned entries are 0, the others ±1
    arr = np.asarray(weights)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"weights must be an integer array, not dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"weights must be a non-empty (outputs, inputs) matrix, not shape {arr.shape}")
    if wbits not in (None, 1):
        raise ValueError(f"binary weights are 1 bit wide, not {wbits}")
    m = arr.astype(np.int64)
    if np.any(np.abs(m) > 1):
        raise ValueError("binary weights must be -1 or +1 (0 where pruned)")
    return m, 1


class SparseCSC(wiring.Component):
    """Pruned matrix-vector product over per-PE CSC storage, thresholds or scores out.

    Computes, for each input vector ``x`` of ``inputs`` activation codes, the ``outputs``
    accumulators ``acc = weights @ act_values(x, in_bits) (+ bias)`` exactly and emits
    ``#{t in thresholds[c] : acc[c] >= t}`` per channel (``thresholds`` given) or ``acc``
    itself as integer scores: the function of :class:`hdl.mvtu.MVTU`, with the same ports.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), simd)))``
        ``inputs / simd`` beats per vector, elements in order, lane 0 lowest index.
    o : ``Out(stream.Signature(ArrayLayout(out_shape, pe)))``
        ``outputs / pe`` beats per vector; beat ``f`` lane ``p`` is channel ``f*pe + p``
        (local row ``f`` of PE ``p``).

    Cycles (free-running source and sink, exact): an input beat holding columns
    ``J`` costs ``max(1, sum_{j in J} K_j)`` cycles, ``K_j`` the largest per-PE entry
    count of column ``j`` including padding entries. So a non-empty column costs no
    overhead, a beat whose columns are all empty costs 1 cycle, and empty columns next
    to non-empty ones in the same beat cost nothing (with ``simd == 1`` every empty
    column costs 1 cycle: the stream's own rate). ``compute_cycles`` is the sum over
    the beats of a vector. The accumulators are double-buffered: while one bank is
    drained to the output (``outputs / pe`` beats, one per cycle) the next vector
    accumulates into the other (a bank's last drain beat frees it for the vector after
    in the same cycle), so ``cycles_per_vector = max(compute_cycles, outputs / pe)``.

    Latency: 3 cycles from the transfer of a vector's last input beat to its first
    output beat (entry read, accumulate, hand-over of the bank), plus the output
    stage's register.

    Parameters
    ----------
    weights : ir.Weights (CSC) or int ndarray (outputs, inputs)
        The IR's canonical CSC weights, or a matrix of weight *values* (0 = pruned; pot
        values 0 or ±2**e).
    kind : str
        ``"binary"`` (±1), ``"ternary"``, ``"int"`` (signed ``wbits``) or ``"pot"``. Must
        match an ``ir.Weights``' kind.
    wbits : int or None
        As for the MVTU (taken from an ``ir.Weights``).
    in_bits : int
        Activation code width, 1..16; 1 means bipolar codes (0 = -1, 1 = +1).
    pe : int
        Processing elements (one weight per cycle each); must divide ``outputs``.
    simd : int
        Input elements per beat; must divide ``inputs``.
    index_bits : int
        Width of the relative row indices, 1..16 (4 as in EIE).
    thresholds : int ndarray (outputs, 2**k - 1) or None
        Non-decreasing per row; ``None`` emits scores.
    bias : int ndarray (outputs,) or None
        Added to the accumulator before thresholds or in the scores.

    Attributes
    ----------
    cycles_per_vector, compute_cycles : int
    storage_bits : dict
        On-chip weight storage in bits: ``values`` and ``indices`` of the non-zeros,
        ``padding`` (whole padding entries), ``pointers`` (the column memory),
        ``total``; ``dense_storage_bits`` is the MVTU's for the same weights.
    entries : list of ndarray
        Per PE, the stored ``(delta, value)`` entries; ``padding`` their padding count.
    """

    mode = "sparse"

    def __init__(self, weights, *, kind, wbits=None, in_bits, pe, simd=1, index_bits=4,
                 thresholds=None, bias=None):
        if isinstance(weights, ir.Weights):
            if not weights.sparse:
                raise ValueError("weights must be an ir.Weights in CSC form or an integer matrix, "
                                 "not dense ir.Weights (use .to_csc())")
            if kind != weights.kind:
                raise ValueError(f"kind {kind!r} does not match the weights' kind {weights.kind!r}")
            if wbits is not None and wbits != weights.bits:
                raise ValueError(f"wbits {wbits} does not match the weights' bits {weights.bits}")
            csc = weights
            wbits = None if kind in ("binary", "ternary") else weights.bits
            matrix = weights.matrix()
        elif isinstance(weights, (np.ndarray, list, tuple)):
            csc = None
            matrix = weights
        else:
            raise TypeError(f"weights must be an ir.Weights in CSC form or an integer matrix, "
                            f"not {type(weights).__name__}")
        m, wbits = _check_matrix(matrix, kind, wbits)
        if csc is None:
            csc = ir.Weights.from_matrix(m, kind, wbits, sparse=True)
        in_bits = _check_int("in_bits", in_bits, 1, MAX_IN_BITS)
        pe = _check_int("PE", pe, 1)
        simd = _check_int("SIMD", simd, 1)
        index_bits = _check_int("index_bits", index_bits, 1, MAX_INDEX_BITS)
        outputs, inputs = m.shape
        if inputs % simd:
            raise ValueError(f"SIMD must divide the input width {inputs}, not {simd}")
        if outputs % pe:
            raise ValueError(f"PE must divide the output count {outputs}, not {pe}")
        if bias is not None:
            bias = np.asarray(bias)
            if bias.dtype.kind not in "iu":
                raise TypeError(f"bias must be an integer array, not dtype {bias.dtype}")
            if bias.shape != (outputs,):
                raise ValueError(f"bias must have shape ({outputs},), not {bias.shape}")
            bias = bias.astype(np.int64)
        if thresholds is not None:
            thresholds = np.asarray(thresholds)
            if thresholds.dtype.kind not in "iu":
                raise TypeError(f"thresholds must be an integer array, not dtype {thresholds.dtype}")
            n = thresholds.shape[1] if thresholds.ndim == 2 else 0
            if thresholds.ndim != 2 or thresholds.shape[0] != outputs or n < 1 or (n + 1) & n:
                raise ValueError(f"thresholds must have shape ({outputs}, 2**bits - 1), "
                                 f"not {thresholds.shape}")
            if np.any(np.diff(thresholds, axis=1) < 0):
                raise ValueError("thresholds must be non-decreasing in every channel")
            thresholds = thresholds.astype(np.int64)

        self.weights = m
        self.kind, self.wbits, self.in_bits = kind, wbits, in_bits
        self.outputs, self.inputs, self.pe, self.simd = outputs, inputs, pe, simd
        self.index_bits = index_bits
        self.local_rows = outputs // pe
        self.beats = inputs // simd
        self.thresholds, self.bias = thresholds, bias

        # Internal accumulator domain: real acc = scale * internal (bias excluded).
        self.scale = 1
        if kind == "pot":
            nz = m != 0
            exps = np.log2(np.abs(m[nz])).round().astype(np.int64) if nz.any() else np.zeros(1, np.int64)
            self.emin, self.emax = int(exps.min()), int(exps.max())
            self.scale = 1 << self.emin
            self.internal = m >> self.emin
        else:
            self.internal = m
        lo_a, hi_a = (-1, 1) if in_bits == 1 else (0, (1 << in_bits) - 1)
        lo_i, hi_i = _row_bounds(self.internal, lo_a, hi_a)
        self.acc_shape = range_shape(int(lo_i.min()), int(hi_i.max()))
        bias0 = np.zeros(outputs, np.int64) if bias is None else bias
        if thresholds is not None:
            self.stage_thresholds = -((bias0[:, None] - thresholds) // self.scale)
            self.stage_bias = None
            self.stage_acc_shape = self.acc_shape
        else:
            self.stage_thresholds = None
            self.stage_bias = bias
            self.stage_acc_shape = range_shape(self.scale * int(lo_i.min()), self.scale * int(hi_i.max()))

        self._build_storage(csc)

        stage = self._output_stage()
        stage._MustUse__silence = True      # built only to learn the output shape
        self.out_shape = stage.out_shape
        self.out_bits = stage.bits
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(in_bits), simd))),
            "o": Out(stream.Signature(data.ArrayLayout(self.out_shape, pe))),
        })

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd=1, index_bits=4):
        """A sparse engine for an IR ``Conv`` or ``FC`` layer, optionally fused with its
        ``Threshold``. Dense weights are converted to CSC."""
        if not isinstance(layer, (ir.Conv, ir.FC)):
            raise TypeError(f"layer must be an ir.Conv or ir.FC, not {type(layer).__name__}")
        if threshold is not None and not isinstance(threshold, ir.Threshold):
            raise TypeError(f"threshold must be an ir.Threshold or None, not {type(threshold).__name__}")
        w = layer.weights if layer.weights.sparse else layer.weights.to_csc()
        return cls(w, kind=w.kind, in_bits=in_bits, pe=pe, simd=simd, index_bits=index_bits,
                   thresholds=None if threshold is None else threshold.thresholds, bias=layer.bias)

    def _output_stage(self) -> OutputStage:
        return OutputStage(self.outputs, self.pe, self.stage_acc_shape,
                           thresholds=self.stage_thresholds, bias=self.stage_bias)

    # --- storage --------------------------------------------------------------------

    @property
    def value_bits(self) -> int:
        """Stored bits per entry value."""
        if self.kind in ("binary", "ternary"):
            return 2
        if self.kind == "int":
            return self.wbits
        return 1 + self._mag_bits

    @property
    def _mag_bits(self) -> int:
        return max(1, ceil_log2(self.emax - self.emin + 2))

    @property
    def _shift_bits(self) -> int:
        return ceil_log2(self.emax - self.emin + 1)

    def _code(self, value: int) -> int:
        """Stored code of one internal-domain weight value (0 for padding)."""
        if self.kind in ("binary", "ternary"):
            return 0 if value == 0 else 1 | (2 if value < 0 else 0)
        if self.kind == "int":
            return value & ((1 << self.wbits) - 1)
        if value == 0:
            return 0
        mag = int(abs(value)).bit_length()          # e - emin + 1
        return mag | ((1 << self._mag_bits) if value < 0 else 0)

    def _build_storage(self, csc: ir.Weights):
        pe, b = self.pe, self.index_bits
        max_delta = (1 << b) - 1
        values = csc.decode(csc.values) // self.scale if self.kind == "pot" else csc.decode(csc.values)
        rows, colptr = csc.rows.astype(np.int64), csc.colptr
        entries = [[] for _ in range(pe)]           # (delta, internal value)
        counts = np.zeros((self.inputs, pe), np.int64)
        padding = 0
        for j in range(self.inputs):
            prev = [-1] * pe
            for r, v in zip(rows[colptr[j]:colptr[j + 1]], values[colptr[j]:colptr[j + 1]]):
                p, lr = int(r) % pe, int(r) // pe
                while lr - prev[p] - 1 > max_delta:
                    entries[p].append((max_delta, 0))
                    prev[p] += max_delta + 1
                    counts[j, p] += 1
                    padding += 1
                entries[p].append((lr - prev[p] - 1, int(v)))
                prev[p] = lr
                counts[j, p] += 1
        self.entries = [np.array(e, np.int64).reshape(-1, 2) for e in entries]
        self.padding = padding
        self.nnz = int(csc.nnz)
        self.column_counts = counts                     # (inputs, pe)
        self.column_steps = counts.max(axis=1)          # K_j
        steps = self.column_steps.reshape(self.beats, self.simd)
        self.compute_cycles = int(np.maximum(1, steps.sum(axis=1)).sum())
        self.cycles_per_vector = max(self.compute_cycles, self.local_rows)

        # Column memory fields.
        self.count_bits = max(1, ceil_log2(int(counts.max()) + 1))
        self.step_bits = self.count_bits
        self.lane_bits = max(1, ceil_log2(self.simd + 1))
        entry_bits = self.value_bits + b
        column_word = self.step_bits + self.lane_bits + pe * self.count_bits
        first_bits = self.lane_bits * self.beats if self.simd > 1 else 0
        self.storage_bits = {
            "values": self.nnz * self.value_bits,
            "indices": self.nnz * b,
            "padding": padding * entry_bits,
            "pointers": self.inputs * column_word + first_bits,
        }
        self.storage_bits["total"] = sum(self.storage_bits.values())
        dense_bits = {"binary": 1, "ternary": 2, "int": self.wbits}.get(
            self.kind, 1 + self._mag_bits if self.kind == "pot" else None)
        self.dense_storage_bits = self.outputs * self.inputs * dense_bits

    def _memory_contents(self):
        """(entry words per PE, column words, first non-empty lane per beat)."""
        vb = self.value_bits
        entry_words = []
        for e in self.entries:
            words = [self._code(int(v)) | (int(d) << vb) for d, v in e]
            entry_words.append(words or [0])
        simd, lb, cb = self.simd, self.lane_bits, self.count_bits
        steps = self.column_steps.reshape(self.beats, simd)
        col_words, first = [], []
        for beat in range(self.beats):
            nonempty = [s for s in range(simd) if steps[beat, s] > 0]
            first.append(nonempty[0] if nonempty else simd)
            for s in range(simd):
                j = beat * simd + s
                nxt = next((t for t in nonempty if t > s), simd)
                word = int(self.column_steps[j]) | (nxt << self.step_bits)
                for p in range(self.pe):
                    word |= int(self.column_counts[j, p]) << (self.step_bits + lb + p * cb)
                col_words.append(word)
        return entry_words, col_words, first

    # --- datapath ---------------------------------------------------------------------

    def _product(self, code, x):
        """Internal-domain product of a stored code with the activation code ``x``."""
        if self.in_bits == 1:
            xv = Mux(x[0], Const(1, signed(2)), Const(-1, signed(2)))
        else:
            xv = Cat(x, Const(0, 1)).as_signed()
        if self.kind in ("binary", "ternary"):
            return Mux(code[0], Mux(code[1], -xv, xv), 0)
        if self.kind == "int":
            w = code.as_signed()
            return Mux(x[0], w, -w) if self.in_bits == 1 else w * xv
        mag, sign = code[:self._mag_bits], code[self._mag_bits]
        sb = self._shift_bits
        shifted = (xv << (mag - 1)[:sb]) if sb else xv
        t = Mux(mag == 0, 0, shifted)
        return Mux(sign, -t, t)

    def _to_stage(self, internal):
        if self.stage_thresholds is not None or self.scale == 1:
            return internal
        return internal << self.emin

    def elaborate(self, platform):
        m = Module()
        m.submodules.output = stage = self._output_stage()
        wiring.connect(m, stage.o, wiring.flipped(self.o))
        pe, simd, rows_l, beats = self.pe, self.simd, self.local_rows, self.beats
        vb, cb, lb, sb = self.value_bits, self.count_bits, self.lane_bits, self.step_bits
        entry_words, col_words, first_words = self._memory_contents()

        # --- stage 0: column sequencer --------------------------------------------
        beat = Signal(range(beats))
        lane = Signal(range(simd + 1), init=first_words[0])
        step = Signal(range(1 << sb))
        bank = Signal()                             # accumulator bank being filled
        full = [Signal(name=f"full{k}") for k in range(2)]
        drain_bank = Signal()                       # accumulator bank being drained
        fold = Signal(range(rows_l))
        drain_valid, drain_take, drain_done = Signal(), Signal(), Signal()
        empty = Signal()
        m.d.comb += empty.eq(lane == simd)

        m.submodules.columns = colmem = Memory(shape=unsigned(sb + lb + pe * cb), depth=self.inputs,
                                               init=col_words)
        col = colmem.read_port(domain="comb")
        lane_c = Mux(empty, 0, lane)[:max(1, ceil_log2(simd))] if simd > 1 else Const(0, 1)
        m.d.comb += col.addr.eq(beat * simd + lane_c if simd > 1 else beat)
        k_steps = col.data[:sb]
        nxt = col.data[sb:sb + lb]
        counts = [col.data[sb + lb + p * cb:sb + lb + (p + 1) * cb] for p in range(pe)]

        beat_next = Signal.like(beat)
        m.d.comb += beat_next.eq(Mux(beat == beats - 1, 0, beat + 1))
        if simd > 1:
            m.submodules.first = firstmem = Memory(shape=unsigned(lb), depth=beats, init=first_words)
            fport = firstmem.read_port(domain="comb")
            m.d.comb += fport.addr.eq(beat_next)
            first_next = fport.data
        else:
            first_next = Const(first_words[0], lb) if beats == 1 else None
            if first_next is None:
                m.submodules.first = firstmem = Memory(shape=unsigned(lb), depth=beats, init=first_words)
                fport = firstmem.read_port(domain="comb")
                m.d.comb += fport.addr.eq(beat_next)
                first_next = fport.data

        issue, col_end, beat_end, vec_end = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            # A bank is free once drained; its last drain beat frees it in the same cycle.
            issue.eq(self.i.valid & (~Mux(bank, full[1], full[0]) | (drain_done & (drain_bank == bank)))),
            col_end.eq(empty | (step == k_steps - 1)),
            beat_end.eq(col_end & (empty | (nxt == simd))),
            vec_end.eq(beat_end & (beat == beats - 1)),
            self.i.ready.eq(issue & beat_end),
        ]
        x0 = Array(self.i.payload[s] for s in range(simd))[lane_c] if simd > 1 else self.i.payload[0]
        active = [Signal(name=f"active{p}") for p in range(pe)]
        for p in range(pe):
            m.d.comb += active[p].eq(~empty & (step < counts[p]))
        addr = []
        for p in range(pe):
            a = Signal(range(max(1, len(entry_words[p]) + 1)), name=f"addr{p}")
            addr.append(a)
        with m.If(issue):
            with m.If(col_end):
                m.d.sync += step.eq(0)
                with m.If(beat_end):
                    m.d.sync += [beat.eq(beat_next), lane.eq(first_next)]
                with m.Else():
                    m.d.sync += lane.eq(nxt)
            with m.Else():
                m.d.sync += step.eq(step + 1)
            for p in range(pe):
                with m.If(vec_end):
                    m.d.sync += addr[p].eq(0)
                with m.Elif(active[p]):
                    m.d.sync += addr[p].eq(addr[p] + 1)
            with m.If(vec_end):
                m.d.sync += bank.eq(~bank)

        # --- stage 1: entry read, accumulate --------------------------------------
        v1, first1, last1, bank1 = Signal(), Signal(), Signal(), Signal()
        x1 = Signal(unsigned(self.in_bits))
        act1 = [Signal(name=f"act1_{p}") for p in range(pe)]
        m.d.sync += [v1.eq(issue), first1.eq(step == 0), last1.eq(issue & vec_end),
                     bank1.eq(bank), x1.eq(x0)]
        for p in range(pe):
            m.d.sync += act1[p].eq(issue & active[p])

        # --- drain: one local row of every PE per beat into the output stage -----
        m.d.comb += [
            drain_valid.eq(Mux(drain_bank, full[1], full[0])),
            drain_take.eq(drain_valid & stage.i.ready),
            drain_done.eq(drain_take & (fold == rows_l - 1)),
            stage.i.valid.eq(drain_valid),
        ]
        with m.If(drain_take):
            m.d.sync += fold.eq(Mux(fold == rows_l - 1, 0, fold + 1))
        with m.If(drain_done):
            m.d.sync += drain_bank.eq(~drain_bank)
        for k in range(2):
            with m.If(last1 & (bank1 == k)):
                m.d.sync += full[k].eq(1)
            with m.If(drain_done & (drain_bank == k)):
                m.d.sync += full[k].eq(0)

        for p in range(pe):
            emem = Memory(shape=unsigned(vb + self.index_bits), depth=len(entry_words[p]),
                          init=entry_words[p])
            m.submodules[f"entries{p}"] = emem
            rd = emem.read_port(domain="sync")
            m.d.comb += rd.addr.eq(addr[p])
            code, delta = rd.data[:vb], rd.data[vb:]
            pos = Signal(range(rows_l), name=f"pos{p}")
            row = Signal(range(rows_l), name=f"row{p}")
            m.d.comb += row.eq(Mux(first1, 0, pos + 1) + delta)
            with m.If(act1[p]):
                m.d.sync += pos.eq(row)
            banks = []
            for k in range(2):
                amem = Memory(shape=self.acc_shape, depth=rows_l, init=[])
                m.submodules[f"acc{p}_{k}"] = amem
                ard = amem.read_port(domain="comb")
                awr = amem.write_port()
                compute = Signal(name=f"compute{p}_{k}")
                m.d.comb += compute.eq(v1 & (bank1 == k))
                m.d.comb += ard.addr.eq(Mux(compute, row, fold))
                banks.append((ard, awr, compute))
            cur = Mux(bank1, banks[1][0].data, banks[0][0].data)
            new = Signal(self.acc_shape, name=f"acc_next{p}")
            m.d.comb += new.eq(cur + self._product(code, x1))
            for k, (ard, awr, compute) in enumerate(banks):
                m.d.comb += [
                    awr.addr.eq(Mux(compute, row, fold)),
                    awr.data.eq(Mux(compute, new, 0)),
                    awr.en.eq((compute & act1[p]) | (drain_take & (drain_bank == k))),
                ]
            drained = Mux(drain_bank, banks[1][0].data, banks[0][0].data)
            m.d.comb += stage.i.payload[p].eq(self._to_stage(drained))
        return m
