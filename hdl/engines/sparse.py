"""Sparse CSC engine: a pruned layer whose cycles scale with its non-zero weights.

One :class:`SparseCSC` computes ``W @ act_values(x)`` for every input vector ``x`` (the
flattened input of a fully connected layer, or the im2col vector of one output pixel of
a convolution), walking only the stored non-zeros of ``W``, and turns the accumulators
into activation codes or integer scores through the shared
:class:`hdl.engines.threshold.OutputStage`, exactly like :class:`hdl.engines.mvtu.MVTU`.

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
  entry count (the difference of consecutive column pointers) and a flag marking the
  PE's last non-empty column, and the next non-empty lane of the input beat.

Weight codes: ``binary`` and ``ternary`` as 2 bits (non-zero flag, sign: padding entries
need a zero); ``int`` as ``wbits``-bit two's complement (one multiplier per PE, or a
negation for 1-bit activations); ``pot`` as sign and ``mag = e - emin + 1`` over the
exponent window of the actual weights, multiplied by a barrel shift as in the MVTU's
``pot`` mode (accumulating ``acc / 2**emin``; thresholds divided, scores shifted back).
No multipliers for binary, ternary or pot weights.

Execution, as in EIE: a column sequencer takes the input elements in order and, for each
non-empty column ``j``, pushes ``(x_j, count)`` into the activation queue of every PE that
has entries in column ``j`` (one column per cycle; empty columns are skipped). Each PE
pops its own queue and walks its own entries, one per cycle, so the PEs run
independently and the load imbalance of one column is evened out over the next ones
(bounded by the queue depth). Each entry updates one local accumulator:
``acc[row] += w * x_j``. A missing weight contributes nothing, also for 1-bit bipolar
activations (where a stored weight contributes ``±w``). Without the queues (PEs in
lock step) a vector would take ``lockstep_cycles``, the sum over the columns of the
largest per-PE count.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl import ir
from hdl.engines._checks import check_bias, check_fc_layer, check_folds, check_int, check_thresholds
from hdl.engines.core import MAX_IN_BITS, AccumulatorDomain, WeightCodes, check_weights
from hdl.engines.threshold import OutputStage, output_shape

__all__ = ["SparseCSC", "MAX_INDEX_BITS", "MAX_QUEUE_DEPTH"]

#: Widest relative row index.
MAX_INDEX_BITS = 16
#: Deepest activation queue.
MAX_QUEUE_DEPTH = 64


class SparseCSC(wiring.Component):
    """Pruned matrix-vector product over per-PE CSC storage, thresholds or scores out.

    Computes, for each input vector ``x`` of ``inputs`` activation codes, the ``outputs``
    accumulators ``acc = weights @ act_values(x, in_bits) (+ bias)`` exactly and emits
    ``#{t in thresholds[c] : acc[c] >= t}`` per channel (``thresholds`` given) or ``acc``
    itself as integer scores: the function of :class:`hdl.engines.mvtu.MVTU`, with the same ports.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), simd)))``
        ``inputs / simd`` beats per vector, elements in order, lane 0 lowest index.
    o : ``Out(stream.Signature(ArrayLayout(out_shape, pe)))``
        ``outputs / pe`` beats per vector; beat ``f`` lane ``p`` is channel ``f*pe + p``
        (local row ``f`` of PE ``p``).

    Cycles: the sequencer spends one cycle per non-empty column, and one per input beat
    whose columns are all empty (``sequencer_cycles`` per vector; with ``simd == 1`` an
    empty column costs the one cycle of its beat, the stream's own rate). PE ``p``
    spends one cycle per entry it stores, padding included, plus one cycle per vector
    if it stores none. The accumulators are double-buffered: while one bank is drained
    to the output (``outputs / pe`` beats, one per cycle) the PEs accumulate the next
    vector into the other (a bank's last drain beat frees it in the same cycle). So a
    vector takes at least ``bound_cycles = max(sequencer_cycles, max_p entries_p,
    outputs / pe)`` cycles; queue-full stalls add to it. ``cycles_per_vector`` is the
    exact steady-state figure with a free-running source and sink, from a cycle-exact
    model of the engine run on these weights (``cycle_trace``), checked against
    simulation by the tests.

    Per column, then: a non-empty column costs its largest per-PE entry count only in
    the PE that has that many (no overhead cycle: its sequencer cycle overlaps the PEs'
    work), and the queues let the other PEs run ahead, so ``cycles_per_vector`` is
    usually well below ``lockstep_cycles`` (sum over the columns of the largest per-PE
    count, with a queue depth of 2 or more). An empty column costs nothing unless its
    whole input beat is empty (1 cycle per beat).

    Latency: 4 cycles from the transfer of a vector's last input beat to its first
    output beat when the PEs are idle (queue, entry read, accumulate, output-stage
    register); a PE's backlog of queued work adds to it. After a reset the engine
    spends ``outputs / pe`` cycles zeroing its accumulator banks before it takes input
    (memories keep their contents through a reset).

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
    queue_depth : int
        Entries of each PE's activation queue, 1..64 (EIE: 8).
    thresholds : int ndarray (outputs, 2**k - 1) or None
        Non-decreasing per row; ``None`` emits scores.
    bias : int ndarray (outputs,) or None
        Added to the accumulator before thresholds or in the scores.

    Attributes
    ----------
    cycles_per_vector, sequencer_cycles, bound_cycles, lockstep_cycles : int
    storage_bits : dict
        On-chip weight storage in bits: ``values`` and ``indices`` of the non-zeros,
        ``padding`` (whole padding entries), ``pointers`` (the column memory),
        ``total``; ``dense_storage_bits`` is the MVTU's for the same weights.
    entries : list of ndarray
        Per PE, the stored ``(delta, value)`` entries; ``padding`` their padding count.
    """

    mode = "sparse"

    def __init__(self, weights, *, kind, wbits=None, in_bits, pe, simd=1, index_bits=4,
                 thresholds=None, bias=None, queue_depth=8):
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
        m, wbits = check_weights(matrix, kind, wbits, pruned=True)
        if csc is None:
            csc = ir.Weights.from_matrix(m, kind, wbits, sparse=True)
        in_bits = check_int("in_bits", in_bits, 1, MAX_IN_BITS, numpy=True)
        pe = check_int("PE", pe, 1)
        simd = check_int("SIMD", simd, 1)
        index_bits = check_int("index_bits", index_bits, 1, MAX_INDEX_BITS)
        queue_depth = check_int("queue_depth", queue_depth, 1, MAX_QUEUE_DEPTH)
        outputs, inputs = m.shape
        check_folds(outputs, inputs, pe, simd)
        bias = check_bias(bias, outputs)
        thresholds = check_thresholds(thresholds, outputs)

        self.weights = m
        self.kind, self.wbits, self.in_bits = kind, wbits, in_bits
        self.outputs, self.inputs, self.pe, self.simd = outputs, inputs, pe, simd
        self.index_bits = index_bits
        self.queue_depth = queue_depth
        self._cycles = None
        self.local_rows = outputs // pe
        self.beats = inputs // simd
        self.thresholds, self.bias = thresholds, bias

        self.codes = WeightCodes.for_weights(m, kind, wbits, in_bits, zero=True)
        self.scale = self.codes.scale
        self.internal = m >> self.codes.emin if kind == "pot" else m        # exact
        self.domain = AccumulatorDomain.of(self.internal, in_bits, scale=self.scale)
        self.acc_shape = self.domain.acc_shape
        self.stage_thresholds, self.stage_bias, self.stage_acc_shape = \
            self.domain.stage_params(thresholds, bias)

        self._build_storage(csc)

        self.out_shape = output_shape(self.stage_acc_shape, self.stage_thresholds, self.stage_bias)
        self.out_bits = None if thresholds is None else self.out_shape.width
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(in_bits), simd))),
            "o": Out(stream.Signature(data.ArrayLayout(self.out_shape, pe))),
        })

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd=1, index_bits=4):
        """A sparse engine for an IR ``Conv`` or ``FC`` layer, optionally fused with its
        ``Threshold``. Dense weights are converted to CSC."""
        check_fc_layer(layer, threshold)
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
        return self.codes.bits

    @property
    def emin(self) -> int:
        return self.codes.emin

    @property
    def emax(self) -> int:
        return self.codes.emax

    def _build_storage(self, csc: ir.Weights):
        pe, b = self.pe, self.index_bits
        max_delta = (1 << b) - 1
        values = csc.decode(csc.values) // self.scale if self.kind == "pot" else csc.decode(csc.values)
        rows = csc.rows.astype(np.int64)
        cols = np.repeat(np.arange(self.inputs), np.diff(csc.colptr))
        # Entries of one PE in column order; rows ascend within a column (canonical CSC).
        order = np.lexsort((rows, cols, rows % pe))
        rows, cols, values = rows[order], cols[order], values[order]
        pes, local = rows % pe, rows // pe
        start = np.ones(len(rows), bool)                # first entry of its (PE, column)
        start[1:] = (pes[1:] != pes[:-1]) | (cols[1:] != cols[:-1])
        prev = np.where(start, -1, np.roll(local, 1))
        gap = local - prev - 1
        pads = gap >> b                                 # one padding entry per 2**b rows skipped
        # Expand: each non-zero becomes its padding entries followed by itself.
        owner = np.repeat(np.arange(len(rows)), pads + 1)
        first = np.cumsum(pads + 1) - (pads + 1)
        k = np.arange(len(owner)) - first[owner]
        real = k == pads[owner]
        delta = np.where(real, (gap - (pads << b))[owner], max_delta)
        value = np.where(real, values[owner], 0)
        counts = np.zeros((self.inputs, pe), np.int64)
        np.add.at(counts, (cols, pes), pads + 1)
        e_pe = pes[owner]
        self.entries = [np.stack([delta[e_pe == p], value[e_pe == p]], axis=1) for p in range(pe)]
        self.padding = int(pads.sum())
        self.nnz = int(csc.nnz)
        self.column_counts = counts                     # (inputs, pe)
        self.column_steps = counts.max(axis=1)          # K_j
        steps = self.column_steps.reshape(self.beats, self.simd)
        self.lockstep_cycles = int(np.maximum(1, steps.sum(axis=1)).sum())
        nonempty = (steps > 0).sum(axis=1)
        self.sequencer_cycles = int(np.maximum(1, nonempty).sum())
        per_pe = counts.sum(axis=0)
        self.pe_cycles = np.where(per_pe > 0, per_pe, 1)
        self.bound_cycles = max(self.sequencer_cycles, int(self.pe_cycles.max()), self.local_rows)

        # Column memory fields.
        self.count_bits = max(1, ceil_log2(int(counts.max()) + 1))
        self.lane_bits = max(1, ceil_log2(self.simd + 1))
        entry_bits = self.value_bits + b
        column_word = self.lane_bits + pe * (self.count_bits + 1)
        first_bits = self.lane_bits * self.beats if self.beats > 1 else 0
        self.storage_bits = {
            "values": self.nnz * self.value_bits,
            "indices": self.nnz * b,
            "padding": self.padding * entry_bits,
            "pointers": self.inputs * column_word + first_bits,
        }
        self.storage_bits["total"] = sum(self.storage_bits.values())
        # Per PE its last non-empty column (-1: none, it gets an empty end-of-vector item).
        self.last_columns = [int(np.nonzero(counts[:, p])[0][-1]) if per_pe[p] else -1
                             for p in range(pe)]
        dense_bits = 1 if self.kind == "binary" else self.codes.bits
        self.dense_storage_bits = self.outputs * self.inputs * dense_bits

    def _memory_contents(self):
        """(entry words per PE, column words, first non-empty lane per beat)."""
        vb = self.value_bits
        entry_words = []
        for e in self.entries:
            words = self.codes.encode(e[:, 1]) | (e[:, 0] << vb)
            entry_words.append([int(w) for w in words] or [0])
        simd, lb, cb = self.simd, self.lane_bits, self.count_bits
        steps = self.column_steps.reshape(self.beats, simd)
        col_words, first = [], []
        for beat in range(self.beats):
            nonempty = [s for s in range(simd) if steps[beat, s] > 0]
            first.append(nonempty[0] if nonempty else simd)
            for s in range(simd):
                j = beat * simd + s
                nxt = next((t for t in nonempty if t > s), simd)
                word = nxt
                for p in range(self.pe):
                    c = int(self.column_counts[j, p])
                    last = int(c > 0 and j == self.last_columns[p])
                    word |= (c | last << cb) << (lb + p * (cb + 1))
                col_words.append(word)
        return entry_words, col_words, first

    # --- datapath ---------------------------------------------------------------------

    def _to_stage(self, internal):
        return internal if self.stage_thresholds is not None else self.domain.to_real(internal)

    # --- cycle model ------------------------------------------------------------------

    def _steps(self) -> list[list[tuple[int, int, bool]]]:
        """The sequencer's steps of one vector: per step, the ``(pe, count, end)`` items
        it queues (one step per non-empty column, one per all-empty beat)."""
        simd, counts = self.simd, self.column_counts
        steps_k = self.column_steps.reshape(self.beats, simd)
        empty_pes = [p for p in range(self.pe) if self.last_columns[p] < 0]
        steps = []
        for beat in range(self.beats):
            lanes = np.nonzero(steps_k[beat])[0]
            if not len(lanes):
                steps.append([])
            for lane in lanes:
                j = beat * simd + int(lane)
                pes = np.nonzero(counts[j])[0]
                steps.append([(int(p), int(counts[j, p]), j == self.last_columns[p]) for p in pes])
        steps[-1] = steps[-1] + [(p, 0, True) for p in empty_pes]
        return steps

    def cycle_trace(self, vectors: int) -> list[int]:
        """Cycle (from the first input beat) at which each output beat of ``vectors``
        back-to-back vectors enters the output stage, free-running source and sink.

        An exact model of :meth:`elaborate`, evaluated per queued item rather than per
        clock: the sequencer queues step ``n`` at ``t_n = max(t_{n-1} + 1, pop cycle of
        the item queue_depth places earlier in every queue it writes + 1)``; a PE starts
        an item ``max(1, count)`` cycles long at ``max(queued + 1, previous item's end +
        1)``, and its first item of vector ``v >= 2`` no earlier than the cycle the drain
        of vector ``v - 2`` ends (that bank is then free); the drain of a vector starts
        2 cycles after its last PE ends (one cycle after the previous drain at the
        earliest) and takes ``outputs / pe`` cycles.
        """
        depth, rows_l = self.queue_depth, self.local_rows
        steps = self._steps()
        ends = [[] for _ in range(self.pe)]             # per PE: last cycle of each item
        t = -1
        drain_end = []
        trace = []
        for v in range(vectors):
            fresh = [True] * self.pe                    # next item is the PE's first of v
            vector_end = -1
            for items in steps:
                t += 1
                for p, _, _ in items:
                    q = ends[p]
                    if len(q) >= depth:
                        t = max(t, q[len(q) - depth] + 1)
                for p, count, end in items:
                    q = ends[p]
                    a = max(t + 1, q[-1] + 1 if q else 0)
                    if fresh[p] and v >= 2:
                        a = max(a, drain_end[v - 2])
                    fresh[p] = False
                    q.append(a + max(count, 1) - 1)
                    if end:
                        vector_end = max(vector_end, q[-1])
            start = vector_end + 2
            if drain_end:
                start = max(start, drain_end[-1] + 1)
            drain_end.append(start + rows_l - 1)
            trace.extend(range(start, start + rows_l))
        return trace

    @property
    def cycles_per_vector(self) -> int:
        """Steady-state cycles per vector (free-running): from :meth:`cycle_trace`, the
        mean period of vectors 2 and 3 of four back-to-back vectors, rounded up."""
        if self._cycles is None:
            rows_l = self.local_rows
            trace = self.cycle_trace(4)
            ends = trace[rows_l - 1::rows_l]
            self._cycles = -(-(ends[3] - ends[1]) // 2)
        return self._cycles

    # --- hardware ---------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        m.submodules.output = stage = self._output_stage()
        wiring.connect(m, stage.o, wiring.flipped(self.o))
        pe, simd, rows_l, beats = self.pe, self.simd, self.local_rows, self.beats
        vb, cb, lb = self.value_bits, self.count_bits, self.lane_bits
        entry_words, col_words, first_words = self._memory_contents()

        # --- drain: one local row of every PE per beat into the output stage -----
        done = [[Signal(name=f"done{p}_{k}") for k in range(2)] for p in range(pe)]
        full = [Signal(name=f"full{k}") for k in range(2)]
        drain_bank = Signal()                       # accumulator bank being drained
        fold = Signal(range(rows_l))
        drain_valid, drain_take, drain_done = Signal(), Signal(), Signal()
        for k in range(2):
            m.d.comb += full[k].eq(Cat(done[p][k] for p in range(pe)).all())
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

        # --- after reset: zero both accumulator banks (memories keep their contents
        # through a reset, and a vector cut short by one leaves partial sums behind) ---
        clearing = Signal(init=1)
        clear_row = Signal(range(rows_l))
        with m.If(clearing):
            m.d.sync += clear_row.eq(clear_row + 1)
            with m.If(clear_row == rows_l - 1):
                m.d.sync += clearing.eq(0)

        # --- column sequencer: one non-empty column per cycle into the queues -------
        beat = Signal(range(beats))
        lane = Signal(range(simd + 1), init=first_words[0])
        empty = Signal()
        m.d.comb += empty.eq(lane == simd)
        m.submodules.columns = colmem = Memory(shape=unsigned(lb + pe * (cb + 1)), depth=self.inputs,
                                               init=col_words)
        col = colmem.read_port(domain="comb")
        lane_c = Mux(empty, 0, lane)[:ceil_log2(simd)] if simd > 1 else Const(0, 1)
        m.d.comb += col.addr.eq(beat * simd + lane_c if simd > 1 else beat)
        nxt = col.data[:lb]
        beat_next = Signal.like(beat)
        m.d.comb += beat_next.eq(Mux(beat == beats - 1, 0, beat + 1))
        if beats == 1:
            first_next = Const(first_words[0], lb)
        else:
            m.submodules.first = firstmem = Memory(shape=unsigned(lb), depth=beats, init=first_words)
            fport = firstmem.read_port(domain="comb")
            m.d.comb += fport.addr.eq(beat_next)
            first_next = fport.data
        beat_end, vec_end, issue = Signal(), Signal(), Signal()
        m.d.comb += [
            beat_end.eq(empty | (nxt == simd)),
            vec_end.eq(beat_end & (beat == beats - 1)),
        ]
        x0 = Array(self.i.payload[s] for s in range(simd))[lane_c] if simd > 1 else self.i.payload[0]

        item = data.StructLayout({"x": unsigned(self.in_bits), "count": unsigned(cb), "end": 1})
        queues, push, stall = [], [], []
        for p in range(pe):
            field = col.data[lb + p * (cb + 1):lb + (p + 1) * (cb + 1)]
            count, last_col = field[:cb], field[cb]
            q = SyncFIFO(width=item.size, depth=self.queue_depth)
            m.submodules[f"queue{p}"] = q
            queues.append(q)
            want = Signal(name=f"push{p}")
            w_item = Signal(item, name=f"item{p}")
            if self.last_columns[p] < 0:            # no entries: an empty end-of-vector item
                m.d.comb += [want.eq(vec_end), w_item.end.eq(1)]
            else:
                m.d.comb += [want.eq(~empty & (count != 0)), w_item.end.eq(last_col)]
                m.d.comb += w_item.count.eq(count)
            m.d.comb += [w_item.x.eq(x0), q.w_data.eq(w_item), q.w_en.eq(issue & want)]
            push.append(want)
            stall.append(want & ~q.w_rdy)
        m.d.comb += [
            issue.eq(self.i.valid & ~Cat(stall).any() & ~clearing),
            self.i.ready.eq(issue & beat_end),
        ]
        with m.If(issue):
            with m.If(beat_end):
                m.d.sync += [beat.eq(beat_next), lane.eq(first_next)]
            with m.Else():
                m.d.sync += lane.eq(nxt)

        # --- PEs: pop the own queue, walk the own entries, accumulate -------------
        for p in range(pe):
            q = queues[p]
            head = item(q.r_data)
            step = Signal(range(1 << cb), name=f"step{p}")
            bank = Signal(name=f"bank{p}")
            addr = Signal(range(len(entry_words[p]) + 1), name=f"addr{p}")
            go, act, last = Signal(name=f"go{p}"), Signal(name=f"act{p}"), Signal(name=f"last{p}")
            blocked = Mux(bank, done[p][1], done[p][0]) & ~(drain_done & (drain_bank == bank))
            m.d.comb += [
                go.eq(q.r_rdy & ~blocked & ~clearing),
                act.eq(go & (head.count != 0)),
                last.eq((head.count == 0) | (step == head.count - 1)),
                q.r_en.eq(go & last),
            ]
            with m.If(go):
                m.d.sync += step.eq(Mux(last, 0, step + 1))
                with m.If(last & head.end):
                    m.d.sync += [bank.eq(~bank), addr.eq(0)]
                with m.Elif(act):
                    m.d.sync += addr.eq(addr + 1)

            # stage 1: entry word, row, accumulate
            act1, first1, end1, bank1 = (Signal(name=f"{n}1_{p}") for n in ("act", "first", "end", "bank"))
            x1 = Signal(unsigned(self.in_bits), name=f"x1_{p}")
            m.d.sync += [act1.eq(act), first1.eq(step == 0), end1.eq(go & last & head.end),
                         bank1.eq(bank), x1.eq(head.x)]
            for k in range(2):
                with m.If(end1 & (bank1 == k)):
                    m.d.sync += done[p][k].eq(1)
                with m.If(drain_done & (drain_bank == k)):
                    m.d.sync += done[p][k].eq(0)

            emem = Memory(shape=unsigned(vb + self.index_bits), depth=len(entry_words[p]),
                          init=entry_words[p])
            m.submodules[f"entries{p}"] = emem
            rd = emem.read_port(domain="sync")
            m.d.comb += rd.addr.eq(addr)
            code, delta = rd.data[:vb], rd.data[vb:]
            pos = Signal(range(rows_l), name=f"pos{p}")
            row = Signal(range(rows_l), name=f"row{p}")
            m.d.comb += row.eq(Mux(first1, 0, pos + 1) + delta)
            with m.If(act1):
                m.d.sync += pos.eq(row)
            banks = []
            for k in range(2):
                amem = Memory(shape=self.acc_shape, depth=rows_l, init=[])
                m.submodules[f"acc{p}_{k}"] = amem
                ard = amem.read_port(domain="comb")
                awr = amem.write_port()
                compute = Signal(name=f"compute{p}_{k}")
                m.d.comb += [compute.eq(act1 & (bank1 == k)), ard.addr.eq(Mux(compute, row, fold))]
                banks.append((ard, awr, compute))
            cur = Mux(bank1, banks[1][0].data, banks[0][0].data)
            new = Signal(self.acc_shape, name=f"acc_next{p}")
            m.d.comb += new.eq(cur + self.codes.product(code, x1))
            for k, (ard, awr, compute) in enumerate(banks):
                m.d.comb += [
                    awr.addr.eq(Mux(clearing, clear_row, Mux(compute, row, fold))),
                    awr.data.eq(Mux(compute, new, 0)),
                    awr.en.eq(clearing | compute | (drain_take & (drain_bank == k))),
                ]
            drained = Mux(drain_bank, banks[1][0].data, banks[0][0].data)
            m.d.comb += stage.i.payload[p].eq(self._to_stage(drained))
        return m
