"""Matrix-vector-threshold unit (MVTU): a folded dense layer on a stream of vectors.

One MVTU computes ``W @ act_values(x)`` for every input vector ``x`` (the im2col vector
of one output pixel of a convolution, or the flattened input of a fully connected
layer), then turns the accumulators into activation codes or integer scores through the
shared :class:`hdl.engines.threshold.OutputStage`.

Folding follows FINN's MVAU: ``pe`` output channels and ``simd`` input elements are
processed per cycle, so a vector takes ``(outputs / pe) * (inputs / simd)`` cycles.
PE ``p`` holds weight rows ``f * pe + p`` for neuron fold ``f`` (FINN's interleaving) in
its own memory, one ``simd``-weight word per address, read once per cycle. The input
vector is taken from the stream during the first neuron fold and written to a buffer
that the remaining ``outputs / pe - 1`` folds read back, so there are no bubbles (with
one synapse fold the input register itself holds the vector, and there is no buffer).

Datapaths (``mode``), chosen from the weight kind and the activation width:

``"xnor"``
    binary weights x 1-bit (bipolar) activations: XNOR and popcount. The hardware
    accumulates the popcount ``p``; the IR's accumulator is ``2 * p - n``. Thresholds are
    converted to the popcount domain at build time: ``2*p - n + b >= t`` exactly when
    ``p >= ceil((t - b + n) / 2)``; scores are converted back (a shift and a constant)
    before the output stage.
``"binary"``
    binary weights x k-bit activations: with ``b = (w + 1) / 2`` the dot product is
    ``2 * sum(b * x) - sum(x)``, each sum as popcounts of the activation bit planes
    (``sum_k 2**k * popcount(b & x_bit_k)``), or up to SIMD :data:`BINARY_ADD_MAX_SIMD`
    as an adder tree of the masked codes; ``sum(x)`` is shared by all PEs.
``"int"``
    ternary or signed int-k weights x k-bit or bipolar activations: a product per lane
    (a multiplexer for ternary and bipolar operands) and an adder tree.
``"pot"``
    power-of-two weights ``±2**e`` or 0: the shift-add bit heap of
    :mod:`hdl.engines.shiftadd` (each lane's activation, XORed with the weight's sign,
    placed at columns ``e - emin ..`` by a two-level LUT shifter; the columns compressed
    by the popcount's counters). ``emin .. emax`` is the exponent window of the actual
    weights, so it bounds the shifter and the accumulator; the common factor
    ``2**emin`` is folded into the thresholds (or re-applied to scores as a constant
    shift), and so is the heap's per-row offset (:func:`hdl.engines.shiftadd.heap_offset`,
    into the thresholds or the bias). No multipliers.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.engines import shiftadd
from hdl.engines._checks import check_bias, check_fc_layer, check_folds, check_int, check_thresholds
from hdl.engines.core import (KINDS, MAX_IN_BITS, AccumulatorDomain, WeightCodes, act_bounds,
                              check_weights, row_bounds)
from hdl.engines.popcount import PRIMITIVES, Popcount, tree_stages
from hdl.engines.described import Described
from hdl.engines.threshold import OutputStage, OutputStageSpec, range_shape

__all__ = ["MVTU", "MVTUSpec", "KINDS", "MODES", "RAM_STYLES", "WEIGHT_SOURCES"]

MODES = ("xnor", "binary", "int", "pot")

#: Adder-tree levels between two pipeline registers in the ``int`` mode.
#: Yosys merges an adder tree into one multi-operand adder and maps it as a full-adder
#: tree in LUTs, so a register after every 3 levels (8 operands) keeps each stage within
#: the 6-level budget (``tests/hdl/engines/test_logic_levels.py``).
TREE_LEVELS = 3
#: LUT levels allowed between two datapath registers (the shift-add heap's budget).
MAX_LEVELS = shiftadd.MAX_LEVELS
#: Deepest weight ROM taken to be read from block RAM without a multiplexer after its
#: output register (a BRAM36 as 512 x 72); deeper ROMs are cascaded in depth, and the
#: LUTs that select among the banks count against the popcount's level budget.
BRAM_DEPTH = 512
#: Binary weights x k-bit codes: up to this SIMD the masked codes are added directly;
#: above it, bit-plane popcounts (about ``k`` LUTs per lane) are cheaper.
BINARY_ADD_MAX_SIMD = 8

#: Weight-memory placements (``MVTU(ram_style=...)``), as FINN's MVAU ``ram_style``.
RAM_STYLES = ("auto", "block", "distributed")
#: Where the weights come from (``MVTU(weight_source=...)``): the on-chip ROMs, or the
#: ``w`` stream port (one beat of ``pe`` words per step, e.g. from
#: :class:`hdl.engines.weightstream.WeightStream` reading DDR).
WEIGHT_SOURCES = ("rom", "stream")


def _tree_sum(terms: list):
    """Balanced adder tree (each level widens by one bit; Amaranth sizes the sums)."""
    if not terms:
        return Const(0, 1)
    terms = list(terms)
    while len(terms) > 1:
        nxt = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return terms[0]


class MVTUSpec:
    """The MVTU's description apart from its hardware: validated parameters, datapath
    mode, weight codes and memory contents, accumulator domain, ports, cycles and
    latency. The compiler, benches and reports read it; :class:`MVTU` builds from it.

    Parameters are those of :class:`MVTU` except ``primitives``.
    """

    def __init__(self, weights, *, kind, wbits=None, in_bits, pe, simd, thresholds=None, bias=None,
                 ram_style="auto", weight_source="rom"):
        if ram_style not in RAM_STYLES:
            raise ValueError(f"ram_style must be one of {', '.join(RAM_STYLES)}, not {ram_style!r}")
        if weight_source not in WEIGHT_SOURCES:
            raise ValueError(f"weight_source must be one of {', '.join(WEIGHT_SOURCES)}, "
                             f"not {weight_source!r}")
        self.ram_style, self.weight_source = ram_style, weight_source
        m, wbits = check_weights(weights, kind, wbits)
        in_bits = check_int("in_bits", in_bits, 1, MAX_IN_BITS, numpy=True)
        pe = check_int("PE", pe, 1, numpy=True)
        simd = check_int("SIMD", simd, 1, numpy=True)
        outputs, inputs = m.shape
        check_folds(outputs, inputs, pe, simd)
        bias = check_bias(bias, outputs)
        thresholds = check_thresholds(thresholds, outputs)

        self.weights = m
        self.kind, self.wbits, self.in_bits = kind, wbits, in_bits
        self.outputs, self.inputs, self.pe, self.simd = outputs, inputs, pe, simd
        self.neuron_folds = outputs // pe
        self.synapse_folds = inputs // simd
        self.cycles_per_vector = self.vector_cycles(outputs, inputs, pe, simd)
        self.thresholds, self.bias = thresholds, bias
        if kind == "binary":
            self.mode = "xnor" if in_bits == 1 else "binary"
        elif kind == "pot":
            self.mode = "pot"
        else:
            self.mode = "int"
        self.codes = WeightCodes.for_weights(m, kind, wbits, in_bits)

        lo_a, hi_a = act_bounds(in_bits)
        if self.mode == "xnor":
            # The popcount of matches: real acc = 2 * internal - inputs.
            self.internal = (m > 0).astype(np.int64)
            self.domain = AccumulatorDomain.of(self.internal, in_bits, scale=2, offset=-inputs, bounds=(
                np.zeros(outputs, np.int64), np.full(outputs, inputs, np.int64)))
            chunk_lo, chunk_hi = 0, simd
        elif self.mode == "pot":
            # The shift-add bit heap sums in its heap domain (never negative):
            # internal = heap - heap_offset per row, the offset taken by thresholds or bias.
            self.internal = m >> self.codes.emin                            # exact
            heap = shiftadd.heap_max(self.internal, in_bits)
            self.domain = AccumulatorDomain.of(
                self.internal, in_bits, scale=self.codes.scale, signed=False,
                bounds=(np.zeros(outputs, np.int64), heap.sum(axis=1)),
                row_offset=-self.codes.scale * shiftadd.heap_offset(self.internal, in_bits))
            chunk_hi = int(heap.reshape(outputs, self.synapse_folds, simd).sum(axis=2).max())
        else:
            self.internal = m
            self.domain = AccumulatorDomain.of(self.internal, in_bits)
            c_lo, c_hi = row_bounds(self.internal.reshape(outputs, self.synapse_folds, simd), lo_a, hi_a)
            chunk_lo, chunk_hi = int(c_lo.min()), int(c_hi.max())
        self.scale, self.offset = self.domain.scale, self.domain.offset
        self.row_offset = self.domain.row_offset
        self.acc_shape = self.domain.acc_shape
        self.partial_shape = (unsigned(max(1, chunk_hi.bit_length())) if self.mode == "pot"
                              else range_shape(chunk_lo, chunk_hi))
        self.stage_thresholds, self.stage_bias, self.stage_acc_shape = \
            self.domain.stage_params(thresholds, bias)
        #: The output stage's description.
        self.output = OutputStageSpec(outputs, pe, self.stage_acc_shape,
                                      thresholds=self.stage_thresholds, bias=self.stage_bias)
        self.out_shape = self.output.out_shape
        self.out_bits = None if thresholds is None else self.out_shape.width
        ports = {
            "i": In(stream.Signature(data.ArrayLayout(unsigned(in_bits), simd))),
            "o": Out(stream.Signature(data.ArrayLayout(self.out_shape, pe))),
        }
        if weight_source == "stream":
            ports["w"] = In(stream.Signature(self.weight_beat_layout))
        self.signature = wiring.Signature(ports)

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd, ram_style="auto",
                   weight_source="rom"):
        """The description for an IR ``Conv`` or ``FC`` layer, optionally fused with its
        ``Threshold``. Sparse (CSC) weights are expanded to a dense matrix."""
        check_fc_layer(layer, threshold)
        w = layer.weights
        return cls(w.matrix(), kind=w.kind, wbits=w.bits, in_bits=in_bits, pe=pe, simd=simd,
                   thresholds=None if threshold is None else threshold.thresholds, bias=layer.bias,
                   ram_style=ram_style, weight_source=weight_source)

    @staticmethod
    def vector_cycles(outputs: int, inputs: int, pe: int, simd: int) -> int:
        """Cycles per vector at a folding, ``(outputs / pe) * (inputs / simd)``, for
        planners that compare foldings without describing each."""
        return (outputs // pe) * (inputs // simd)

    @property
    def emin(self) -> int:
        return self.codes.emin

    @property
    def emax(self) -> int:
        return self.codes.emax

    @property
    def window(self) -> int:
        """Exponents of the pot weights, ``emax - emin + 1``."""
        return self.emax - self.emin + 1

    @property
    def weight_bits(self) -> int:
        """Stored bits per weight in the weight memories."""
        if self.mode == "pot":
            return 1 + shiftadd.code_fields(self.window)[0]
        return self.codes.bits

    @property
    def weight_memory(self) -> tuple[int, int, int]:
        """``(memories, width, depth)`` of the weight ROMs (one per PE)."""
        return self.pe, self.simd * self.weight_bits, self.neuron_folds * self.synapse_folds

    @property
    def weight_beat_layout(self) -> data.ArrayLayout:
        """One step's weights on the ``w`` stream: lane ``p`` is PE ``p``'s word."""
        return data.ArrayLayout(unsigned(self.simd * self.weight_bits), self.pe)

    def weight_beats(self) -> list[int]:
        """The ``w`` stream of one vector, as integers of the beat layout: beat
        ``f * SF + s`` holds word ``f * SF + s`` of every PE (PE ``p`` at bits
        ``p * simd * weight_bits``). The ``weight_source="stream"`` MVTU takes this
        sequence once per input vector."""
        words, width = self.weight_words(), self.simd * self.weight_bits
        return [sum(words[p][k] << (p * width) for p in range(self.pe))
                for k in range(self.neuron_folds * self.synapse_folds)]

    def weight_words(self) -> list[list[int]]:
        """Memory contents per PE: word ``f * SF + s`` holds row ``f*pe + p``, columns
        ``s*simd .. s*simd + simd - 1`` (lane ``j`` at bits ``j*weight_bits``)."""
        if self.mode == "pot":
            codes = shiftadd.lane_codes(self.internal, self.window)
        else:
            codes = self.codes.encode(self.weights)
        wb, simd = self.weight_bits, self.simd
        words = []
        for p in range(self.pe):
            rows = codes[p::self.pe].reshape(self.neuron_folds * self.synapse_folds, simd)
            bits = (rows[:, :, None] >> np.arange(wb)) & 1            # lane-major, LSB first
            packed = np.packbits(bits.reshape(len(rows), simd * wb).astype(np.uint8),
                                 axis=1, bitorder="little")
            words.append([int.from_bytes(row.tobytes(), "little") for row in packed])
        return words

    @property
    def tree_terms(self) -> int:
        """Terms of the adder tree of the ``int`` mode."""
        return self.simd

    @property
    def datapath_stages(self) -> int:
        """Register stages from the weight/input registers to the partial sum of a PE.

        ``xnor``: the popcount (1). ``binary``: the bit-plane popcounts, then the
        combination ``2 * sum(b * x) - sum(x)`` (2). ``int``: the lane products, then the
        adder tree with a register after every ``TREE_LEVELS`` levels. ``pot``: the
        shift-add bit heap, a register wherever its LUT levels reach
        :data:`hdl.engines.shiftadd.MAX_LEVELS` and after the sum.
        """
        if self.mode == "xnor":
            return 1 + self.popcount_stages
        if self.mode == "binary":
            return 2 + self.popcount_stages
        if self.mode == "pot":
            return shiftadd.plan(self.simd, self.in_bits, self.window)[0]
        return 1 + max(1, -(-ceil_log2(self.tree_terms) // TREE_LEVELS))

    @property
    def weight_read_levels(self) -> int:
        """LUT levels a weight word may pass after its read register: the multiplexer
        (four banks per level) after block RAMs cascaded in depth, :data:`BRAM_DEPTH`
        words each; none for distributed ROMs and streamed weights."""
        if self.weight_source == "stream" or self.ram_style == "distributed":
            return 0
        banks, levels = -(-self.weight_memory[2] // BRAM_DEPTH), 0
        while banks > 1:
            banks, levels = -(-banks // 4), levels + 1
        return levels

    @property
    def popcount_stages(self) -> int:
        """Registers inside the popcounts of the ``xnor`` and ``binary`` modes, so that a
        path from the weight read register stays within :data:`MAX_LEVELS` LUT levels."""
        if self.mode == "xnor":
            return tree_stages(self.simd, pair=True, max_levels=self.popcount_levels)
        if self.mode == "binary" and self.simd > BINARY_ADD_MAX_SIMD:   # masked and plain
            return max(tree_stages(self.simd, pair=pair, max_levels=self.popcount_levels)
                       for pair in (True, False))
        return 0

    @property
    def popcount_levels(self) -> int:
        """LUT levels left to the popcount tree after the weight read."""
        return max(3, MAX_LEVELS - self.weight_read_levels)

    @property
    def latency(self) -> int:
        """Cycles from the transfer of a fold's last step to that fold's valid output."""
        return 2 + self.datapath_stages + 1 + self.output.latency


class MVTU(Described):
    """Folded matrix-vector product with multi-threshold activation or score output.

    Computes, for each input vector ``x`` of ``inputs`` activation codes, the ``outputs``
    accumulators ``acc = weights @ act_values(x, in_bits) (+ bias)`` exactly, and emits
    ``#{t in thresholds[c] : acc[c] >= t}`` per channel (``thresholds`` given) or
    ``acc`` itself as integer scores.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(unsigned(in_bits), simd)))``
        ``inputs / simd`` beats per vector, elements in order, lane 0 lowest index.
    o : ``Out(stream.Signature(ArrayLayout(out_shape, pe)))``
        ``outputs / pe`` beats per vector; beat ``f`` lane ``p`` is channel ``f*pe + p``.
        ``out_shape`` is ``unsigned(k)`` for ``2**k - 1`` thresholds per channel, else
        the narrowest signed shape of ``acc + bias``.

    Throughput: one ``pe`` x ``simd`` step per cycle, ``cycles_per_vector =
    (outputs / pe) * (inputs / simd)`` in steady state with a free-running source and
    sink. Input beats are accepted only during the first neuron fold of a vector.
    Latency: ``latency`` cycles from the transfer of the step that completes a fold (the
    last input beat when ``outputs == pe``) to the valid output beat of that fold:
    input and weight-address register, input and weight-word registers,
    ``datapath_stages`` datapath registers (1 for ``xnor``, 2 for ``binary``, each plus
    the registers a wide popcount needs (``popcount_stages``), for
    ``int`` 1 + one per started ``TREE_LEVELS`` levels of the adder tree, for ``pot``
    the bit heap's :func:`hdl.engines.shiftadd.plan`), accumulator register, and the two
    registers of the output stage: 6 cycles for ``xnor``, 7 for ``binary`` (one more per
    popcount register, e.g. from SIMD 256, or 128 read from 2 or more cascaded block
    RAMs), for ``int``
    7 up to SIMD 8 and 8 up to SIMD 64, for ``pot`` 6 with 4-bit activations and a
    7-exponent window up to SIMD 16 and 7 from SIMD 32 to 256.

    Logic depth: every register-to-register path stays at or below 6 LUT levels under
    Yosys ``synth_xilinx -family xcup`` (elaborated for a Xilinx platform, so that the
    popcounts are LUT/carry primitives) for SIMD up to 64, PE up to 16, activations and
    int/pot weights up to 4 bits and up to 15 thresholds per channel
    (``tests/hdl/engines/test_logic_levels.py``). All registers load on one enable (the output
    stage can take a beat, or no finished fold is waiting), so a stalled sink stops the
    whole pipeline and a free-running one sees no bubble.

    Built from an :class:`MVTUSpec` (``MVTU(spec=..., primitives=...)``), or from the
    parameters below (every one but ``primitives`` goes to the description, made first);
    the description's figures read as the MVTU's own.

    Parameters
    ----------
    weights : int ndarray, shape (outputs, inputs)
        Weight *values* (for ``pot``: 0 or ±2**e).
    kind : str
        ``"binary"`` (±1), ``"ternary"``, ``"int"`` (signed ``wbits``) or ``"pot"``.
    wbits : int or None
        Weight width: fixed for binary (1) and ternary (2); for int 2..16 (default: the
        narrowest holding the weights); for pot the code width 4 or 5 (default: 4 if the
        weights fit).
    in_bits : int
        Activation code width, 1..16; 1 means bipolar codes (0 = -1, 1 = +1).
    pe, simd : int
        Folding; ``pe`` must divide ``outputs`` and ``simd`` must divide ``inputs``.
    thresholds : int ndarray (outputs, 2**k - 1) or None
        Non-decreasing per row; ``None`` emits scores.
    bias : int ndarray (outputs,) or None
        Added to the accumulator before thresholds or in the scores.
    primitives : "auto" | "generic" | "xilinx"
        How the popcounts of the ``xnor`` and ``binary`` modes and the bit heap of the
        ``pot`` mode are built (:class:`hdl.engines.popcount.Popcount`,
        :class:`hdl.engines.shiftadd.ShiftAdd`): ``"auto"`` uses Xilinx LUT/carry
        primitives when elaborated for a Xilinx platform and generic logic otherwise
        (simulation).
    ram_style : "auto" | "block" | "distributed"
        Where the weight memories go, as FINN's MVAU ``ram_style``: ``"auto"`` leaves it
        to synthesis, ``"block"`` asks for block RAM, ``"distributed"`` for LUTs. Written
        as the memories' ``rom_style`` attribute (Vivado; :mod:`hdl.flow.synth` maps it for
        Yosys).
    weight_source : "rom" | "stream"
        ``"stream"`` drops the ROMs and adds the port ``w`` (``In(stream.Signature(
        weight_beat_layout))``): one beat per step, the sequence :meth:`MVTUSpec.weight_beats`
        once per input vector. A step waits for its beat; latency is unchanged.
    """

    Spec = MVTUSpec

    @classmethod
    def describe(cls, weights=None, *, spec: MVTUSpec | None = None, primitives="auto", **params):
        if primitives not in PRIMITIVES:
            raise ValueError(f"primitives must be one of {', '.join(PRIMITIVES)}, not {primitives!r}")
        args = () if weights is None else (weights,)
        spec, _ = super().describe(*args, spec=spec, **params)
        return spec, {"primitives": primitives}

    def __init__(self, spec: MVTUSpec, *, primitives="auto"):
        self.primitives = primitives
        super().__init__(spec)

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd, ram_style="auto",
                   weight_source="rom", **kwargs):
        """An MVTU for an IR ``Conv`` or ``FC`` layer, optionally fused with its ``Threshold``."""
        return cls(spec=MVTUSpec.from_layer(layer, threshold, in_bits=in_bits, pe=pe, simd=simd,
                                            ram_style=ram_style, weight_source=weight_source),
                   **kwargs)

    # --- datapath ---------------------------------------------------------------------
    #
    # Every datapath is a pipeline of registers that all load on the MVTU's single
    # enable ``advance`` (see ``elaborate``); ``_reg`` makes one such register. The
    # number of register stages a mode needs is ``datapath_stages``.

    def _reg(self, m: Module, value, name: str):
        r = Signal(value.shape(), name=name)
        with m.If(self._advance):
            m.d.sync += r.eq(value)
        return r

    def _pipelined_sum(self, m: Module, terms: list, name: str):
        """Balanced adder tree with a register after every ``TREE_LEVELS`` levels and at
        the end; returns the registered sum."""
        terms = list(terms)
        level = 0
        while len(terms) > 1:
            nxt = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
            if len(terms) % 2:
                nxt.append(terms[-1])
            terms = nxt
            level += 1
            if level % TREE_LEVELS == 0 and len(terms) > 1:
                terms = [self._reg(m, t, f"{name}_l{level}_{k}") for k, t in enumerate(terms)]
        return self._reg(m, terms[0], f"{name}_sum")

    def _popcount(self, m: Module, name: str, **kwargs) -> tuple[Popcount, Value]:
        """A popcount of ``simd`` lanes whose registers load on ``advance``, and its count
        after ``popcount_stages`` registers (a tree with fewer is padded)."""
        pc = Popcount(self.simd, registered=False, primitives=self.primitives,
                      max_levels=self.popcount_levels, **kwargs)
        m.submodules[name] = pc
        m.d.comb += pc.en.eq(self._advance)
        out = pc.o
        for k in range(self.popcount_stages - pc.stages):
            out = self._reg(m, out, f"{name}_pad{k}")
        return pc, out

    def _bitplane_counts(self, m: Module, mask, x, name: str) -> list:
        """Registered popcounts of the activation bit planes (under ``mask`` if given)."""
        counts = []
        for k in range(self.in_bits):
            plane = Cat(x[j][k] for j in range(self.simd))
            pc, out = self._popcount(m, f"{name}_plane{k}", mask=mask is not None)
            m.d.comb += pc.a.eq(plane)
            if mask is not None:
                m.d.comb += pc.b.eq(mask)
            counts.append(self._reg(m, out, f"{name}_count{k}"))
        return counts

    def _partial(self, m: Module, p: int, w_word, x, shared: dict):
        """Dot product of one PE's ``simd`` weights with ``x`` (internal domain), through
        ``datapath_stages`` registers."""
        wb = self.weight_bits
        lanes = [w_word[j * wb:(j + 1) * wb] for j in range(self.simd)]
        if self.mode == "xnor":
            # x is simd bits (1-bit lanes); a match (XNOR = 1) counts one.
            pc, out = self._popcount(m, f"popcount{p}", xnor=True)
            m.d.comb += [pc.a.eq(Cat(lanes[j][0] for j in range(self.simd))), pc.b.eq(x.as_value())]
            return self._reg(m, out, f"popcount{p}_q")
        if self.mode == "binary" and self.simd <= BINARY_ADD_MAX_SIMD:
            # Few lanes: the bit-plane counts' weighting would cost more than adding the
            # codes. Stage 1 registers sum(b * x) and sum(x), stage 2 the combination.
            if "total" not in shared:
                shared["total"] = self._reg(m, _tree_sum([x[j] for j in range(self.simd)]), "total_sum")
            plus = _tree_sum([Mux(lanes[j][0], x[j], 0) for j in range(self.simd)])
            plus = self._reg(m, plus, f"plus{p}_sum")
            return self._reg(m, (plus << 1) - shared["total"], f"combine{p}")
        if self.mode == "binary":
            # sum(b * x) bit plane by bit plane: sum_k 2**k * popcount(b & x_bit_k);
            # the total sum(x) likewise, once for all PEs. Stage 1 registers the plane
            # counts, stage 2 the weighted combination.
            b = Cat(lanes[j][0] for j in range(self.simd))
            if "total" not in shared:
                counts = self._bitplane_counts(m, None, x, "total")
                shared["total"] = _tree_sum([c << k for k, c in enumerate(counts)])
            counts = self._bitplane_counts(m, b, x, f"plus{p}")
            plus = _tree_sum([c << k for k, c in enumerate(counts)])
            return self._reg(m, (plus << 1) - shared["total"], f"combine{p}")
        if self.mode == "pot":
            # Shift-add bit heap (hdl.engines.shiftadd) in the heap domain; the domain's
            # row_offset takes the rest to the thresholds or the bias.
            sa = shiftadd.ShiftAdd(self.simd, in_bits=self.in_bits, window=self.window,
                                   primitives=self.primitives)
            m.submodules[f"shiftadd{p}"] = sa
            m.d.comb += [sa.w.eq(w_word), sa.x.eq(x), sa.en.eq(self._advance)]
            return sa.o
        terms = [self._reg(m, self.codes.product(lanes[j], x[j]), f"pe{p}_term{j}")
                 for j in range(self.simd)]
        return self._pipelined_sum(m, terms, f"pe{p}_tree")

    def _to_stage(self, internal):
        """Internal accumulator to what the output stage compares (see ``stage_thresholds``)."""
        return internal if self.stage_thresholds is not None else self.domain.to_real(internal)

    def elaborate(self, platform):
        m = Module()
        m.submodules.output = stage = OutputStage(spec=self.output)
        nf_count, sf_count, pe, simd = self.neuron_folds, self.synapse_folds, self.pe, self.simd
        depth = nf_count * sf_count

        # Accumulator output register, handed to the output stage. Every pipeline
        # register of the MVTU loads on ``advance``: the pipeline moves as one, and stops
        # only while a finished fold is held for the output stage.
        out_valid, out_data, advance = self._output_handoff(m, stage)

        # Issue: one (neuron fold, synapse fold) step per cycle.
        nf = Signal(range(nf_count))
        sf = Signal(range(sf_count))
        waddr = Signal(range(depth))
        from_stream = Signal(init=1)         # nf == 0, as a register: i.ready is one LUT deep
        issue = Signal()
        # With streamed weights a step also needs its weight beat (taken on ``issue``).
        streamed = self.weight_source == "stream"
        w_ok = self.w.valid if streamed else Const(1, 1)
        m.d.comb += [
            self.i.ready.eq(advance & from_stream & w_ok),
            issue.eq(advance & w_ok & (~from_stream | self.i.valid)),
        ]
        if streamed:
            m.d.comb += self.w.ready.eq(issue)
        with m.If(issue):
            m.d.sync += waddr.eq(Mux(waddr == depth - 1, 0, waddr + 1))
            with m.If(sf == sf_count - 1):
                m.d.sync += sf.eq(0)
                m.d.sync += [nf.eq(Mux(nf == nf_count - 1, 0, nf + 1)),
                             from_stream.eq(nf == nf_count - 1)]
            with m.Else():
                m.d.sync += sf.eq(sf + 1)

        # Stage 1: the input word (from the stream, or read back from the buffer), and
        # the weight address.
        x_layout = data.ArrayLayout(unsigned(self.in_bits), simd)
        x_reg = Signal(x_layout)
        src1 = Signal()
        waddr1 = Signal.like(waddr)
        v1, first1, last1 = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [v1.eq(issue), first1.eq(sf == 0), last1.eq(sf == sf_count - 1),
                         src1.eq(from_stream), waddr1.eq(waddr)]
            with m.If(from_stream):
                m.d.sync += x_reg.eq(self.i.payload)
        # With one synapse fold ``x_reg`` keeps the whole vector through the later neuron
        # folds (it loads only while ``from_stream``); more folds need the buffer.
        if nf_count > 1 and sf_count > 1:
            m.submodules.inbuf = buf = Memory(shape=x_layout, depth=sf_count, init=[])
            wr = buf.write_port()
            rd = buf.read_port(domain="sync")
            m.d.comb += [
                wr.addr.eq(sf), wr.data.eq(self.i.payload), wr.en.eq(issue & from_stream),
                rd.addr.eq(sf), rd.en.eq(advance),
            ]
            x1 = Signal(x_layout)
            m.d.comb += x1.eq(Mux(src1, x_reg, rd.data))
        else:
            x1 = x_reg

        # Stage 2: the input word registered (no multiplexer in front of the datapath),
        # the weight words read from the memories (a synchronous read of ``waddr1``).
        x2 = Signal(x_layout)
        v2, first2, last2 = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [x2.eq(x1), v2.eq(v1), first2.eq(first1), last2.eq(last1)]
        if streamed:
            # The weight beat takes the place of the ROM's address (stage 1) and read
            # data (stage 2) registers: same latency as the ROM.
            w1 = Signal(self.weight_beat_layout)
            w2 = Signal(self.weight_beat_layout)
            with m.If(advance):
                m.d.sync += [w1.eq(self.w.payload), w2.eq(w1)]
            w_data = [w2[p] for p in range(pe)]
        else:
            w_data = self._weight_roms(m, self.weight_words(), depth, waddr1, advance)
        self._accumulate(m, stage, w_data, x2, (v2, first2, last2), advance, out_data, out_valid)
        return m

    def _output_handoff(self, m: Module, stage):
        """The accumulator output register in front of the output stage ``stage``:
        ``(out_valid, out_data, advance)``; ``advance`` moves the whole pipeline, which
        stops only while a finished fold waits for the output stage."""
        out_valid = Signal()
        out_data = Signal(data.ArrayLayout(self.stage_acc_shape, self.pe))
        advance = self._advance = Signal()
        m.d.comb += [
            advance.eq(~out_valid | stage.i.ready),
            stage.i.valid.eq(out_valid),
            stage.i.payload.eq(out_data),
        ]
        wiring.connect(m, stage.o, wiring.flipped(self.o))
        return out_valid, out_data, advance

    def _weight_roms(self, m: Module, words, depth: int, addr, advance) -> list:
        """One weight ROM per PE (``words[p]``, ``depth`` words of SIMD weights), read at
        ``addr`` when ``advance``; returns the PEs' registered read data."""
        w_data = []
        for p in range(self.pe):
            attrs = None if self.ram_style == "auto" else {"rom_style": self.ram_style}
            mem = Memory(shape=unsigned(self.simd * self.weight_bits), depth=depth, init=words[p],
                         attrs=attrs)
            m.submodules[f"weights{p}"] = mem
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(addr), port.en.eq(advance)]
            w_data.append(port.data)
        return w_data

    def _accumulate(self, m: Module, stage, w_data, x, flags, advance, out_data, out_valid):
        """Partial dot products per PE (``datapath_stages`` deep; the ``(valid, first,
        last)`` fold flags travel alongside), accumulated; at the end of a fold the PE
        results go to the output stage."""
        shared = {}
        partial = [self._partial(m, p, w_data[p], x, shared) for p in range(self.pe)]
        vq, firstq, lastq = flags
        for k in range(self.datapath_stages):
            vq, firstq, lastq = (self._reg(m, sig, f"{sig.name}_d{k}") for sig in (vq, firstq, lastq))
        acc = [Signal(self.acc_shape, name=f"acc{p}") for p in range(self.pe)]
        with m.If(stage.i.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(advance & vq):
            for p in range(self.pe):
                nxt = Signal(self.acc_shape, name=f"acc_next{p}")
                m.d.comb += nxt.eq(Mux(firstq, 0, acc[p]) + partial[p])
                m.d.sync += acc[p].eq(nxt)
                with m.If(lastq):
                    m.d.sync += out_data[p].eq(self._to_stage(nxt))
            with m.If(lastq):
                m.d.sync += out_valid.eq(1)
