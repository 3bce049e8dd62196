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
that the remaining ``outputs / pe - 1`` folds read back, so there are no bubbles.

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
from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl import ir
from hdl.engines import shiftadd
from hdl.engines._checks import check_bias, check_fc_layer, check_folds, check_int, check_thresholds
from hdl.engines.popcount import PRIMITIVES, Popcount
from hdl.engines.threshold import OUTPUT_LATENCY, OutputStage, range_shape

__all__ = ["MVTU", "KINDS", "MODES", "RAM_STYLES"]

KINDS = ("binary", "ternary", "int", "pot")
MODES = ("xnor", "binary", "int", "pot")

#: Adder-tree levels between two pipeline registers in the ``int`` mode.
#: Yosys merges an adder tree into one multi-operand adder and maps it as a full-adder
#: tree in LUTs (``synth_xilinx -family xcup``: 5 LUT levels for 8 operands, 7 for 16),
#: so a register after every 3 levels (8 operands) keeps each stage within 6 levels.
TREE_LEVELS = 3
#: Binary weights x k-bit codes: up to this SIMD the masked codes are added directly;
#: above it, bit-plane popcounts (about ``k`` LUTs per lane) are cheaper.
BINARY_ADD_MAX_SIMD = 8

#: Widest activation code the MVTU accepts (the IR's input limit).
MAX_IN_BITS = ir.MAX_INPUT_BITS


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """``hdl.engines._checks.check_int`` that also takes NumPy integers (sizes read off arrays)."""
    return check_int(name, value, lo, hi, numpy=True)


def _row_bounds(m: np.ndarray, lo_a: int, hi_a: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact (min, max) of ``m @ a`` along the last axis for ``a`` in ``[lo_a, hi_a]``."""
    pos = np.where(m > 0, m, 0).sum(axis=-1)
    neg = np.where(m < 0, m, 0).sum(axis=-1)
    return pos * lo_a + neg * hi_a, pos * hi_a + neg * lo_a


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


def _check_weights(weights, kind: str, wbits) -> tuple[np.ndarray, int]:
    """Validate a weight-value matrix for ``kind``; return it as int64 and the weight width."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    arr = np.asarray(weights)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"weights must be an integer array, not dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"weights must be a non-empty (outputs, inputs) matrix, not shape {arr.shape}")
    m = arr.astype(np.int64)
    if kind == "binary":
        if wbits not in (None, 1):
            raise ValueError(f"binary weights are 1 bit wide, not {wbits}")
        if np.any(np.abs(m) != 1):
            raise ValueError("binary weights must all be -1 or +1")
        return m, 1
    if kind == "ternary":
        if wbits not in (None, 2):
            raise ValueError(f"ternary weights are 2 bits wide, not {wbits}")
        if np.any(np.abs(m) > 1):
            raise ValueError("ternary weights must be -1, 0 or +1")
        return m, 2
    if kind == "int":
        if wbits is None:
            need = max(int(m.max()).bit_length(), int(-m.min() - 1).bit_length()) + 1
            wbits = max(2, need)
        wbits = _check_int("wbits", wbits, 2, 16)
        lo, hi = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
        if m.min() < lo or m.max() > hi:
            raise ValueError(f"int weights must be in {lo}..{hi} for wbits {wbits}, "
                             f"not {int(m.min())}..{int(m.max())}")
        return m, wbits
    # pot
    if wbits is None:
        wbits = 4
        try:
            ir.pot_encode(m, 4)
        except ValueError:
            wbits = 5
    wbits = _check_int("wbits", wbits, 4, 5)
    try:
        ir.pot_encode(m, wbits)
    except ValueError:
        raise ValueError(f"pot weights must be 0 or ±2**e with e <= {(1 << (wbits - 1)) - 2} "
                         f"for {wbits}-bit codes") from None
    return m, wbits


#: Weight-memory placements (``MVTU(ram_style=...)``), as FINN's MVAU ``ram_style``.
RAM_STYLES = ("auto", "block", "distributed")


def pot_field_bits(emin: int, emax: int) -> tuple[int, int]:
    """Stored magnitude bits and barrel-shifter control bits of power-of-two weights
    whose exponents span ``emin .. emax``: the magnitude field holds 0 for a zero weight
    and ``e - emin + 1`` otherwise; the shifter shifts by ``e - emin``."""
    return max(1, ceil_log2(emax - emin + 2)), ceil_log2(emax - emin + 1)


class MVTU(wiring.Component):
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
    ``datapath_stages`` datapath registers (1 for ``xnor``, 2 for ``binary``, for
    ``int`` 1 + one per started ``TREE_LEVELS`` levels of the adder tree, for ``pot``
    the bit heap's :func:`hdl.engines.shiftadd.plan`), accumulator register, and the two
    registers of the output stage: 6 cycles for ``xnor``, 7 for ``binary``, for ``int``
    7 up to SIMD 8 and 8 up to SIMD 64, for ``pot`` 6 with 4-bit activations and a
    7-exponent window up to SIMD 16 and 7 from SIMD 32 to 256.

    Logic depth: every register-to-register path stays at or below 6 LUT levels under
    Yosys ``synth_xilinx -family xcup`` (elaborated for a Xilinx platform, so that the
    popcounts are LUT/carry primitives) for SIMD up to 64, PE up to 16, activations and
    int/pot weights up to 4 bits and up to 15 thresholds per channel
    (``tests/hdl/test_logic_levels.py``). All registers load on one enable (the output
    stage can take a beat, or no finished fold is waiting), so a stalled sink stops the
    whole pipeline and a free-running one sees no bubble.

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
    """

    def __init__(self, weights, *, kind, wbits=None, in_bits, pe, simd, thresholds=None, bias=None,
                 primitives="auto", ram_style="auto"):
        if primitives not in PRIMITIVES:
            raise ValueError(f"primitives must be one of {', '.join(PRIMITIVES)}, not {primitives!r}")
        self.primitives = primitives
        if ram_style not in RAM_STYLES:
            raise ValueError(f"ram_style must be one of {', '.join(RAM_STYLES)}, not {ram_style!r}")
        self.ram_style = ram_style
        if not isinstance(kind, str):
            raise TypeError(f"kind must be a string, not {kind!r}")
        m, wbits = _check_weights(weights, kind, wbits)
        in_bits = _check_int("in_bits", in_bits, 1, MAX_IN_BITS)
        pe = _check_int("PE", pe, 1)
        simd = _check_int("SIMD", simd, 1)
        outputs, inputs = m.shape
        check_folds(outputs, inputs, pe, simd)
        bias = check_bias(bias, outputs)
        thresholds = check_thresholds(thresholds, outputs)

        self.weights = m
        self.kind, self.wbits, self.in_bits = kind, wbits, in_bits
        self.outputs, self.inputs, self.pe, self.simd = outputs, inputs, pe, simd
        self.neuron_folds = outputs // pe
        self.synapse_folds = inputs // simd
        self.cycles_per_vector = self.neuron_folds * self.synapse_folds
        self.thresholds, self.bias = thresholds, bias
        if kind == "binary":
            self.mode = "xnor" if in_bits == 1 else "binary"
        elif kind == "pot":
            self.mode = "pot"
        else:
            self.mode = "int"

        lo_a, hi_a = (-1, 1) if in_bits == 1 else (0, (1 << in_bits) - 1)
        # Internal accumulator domain: real acc = scale * internal + offset (bias excluded).
        self.scale, self.offset = 1, 0
        if self.mode == "xnor":
            self.scale, self.offset = 2, -inputs
            internal = (m > 0).astype(np.int64)             # popcount of matches, 0..1 per lane
            lo_i, hi_i = np.zeros(outputs, np.int64), np.full(outputs, inputs, np.int64)
            chunk_lo, chunk_hi = 0, simd
        else:
            if self.mode == "pot":
                nz = m != 0
                exps = np.log2(np.abs(m[nz])).round().astype(np.int64) if nz.any() else np.zeros(1, np.int64)
                self.emin, self.emax = int(exps.min()), int(exps.max())
                self.scale = 1 << self.emin
                internal = m >> self.emin                    # exact: every non-zero is a multiple
            else:
                internal = m
            lo_i, hi_i = _row_bounds(internal, lo_a, hi_a)
            chunks = internal.reshape(outputs, self.synapse_folds, simd)
            c_lo, c_hi = _row_bounds(chunks, lo_a, hi_a)
            chunk_lo, chunk_hi = int(c_lo.min()), int(c_hi.max())
        # Per-row part of ``offset`` (pot: the shift-add datapath sums in its heap domain,
        # internal + heap_offset; see hdl.engines.shiftadd).
        self.row_offset = None
        if self.mode == "pot":
            heap = shiftadd.heap_max(internal, in_bits)
            lo_i, hi_i = np.zeros(outputs, np.int64), heap.sum(axis=1)
            chunk_lo, chunk_hi = 0, int(heap.reshape(outputs, self.synapse_folds, simd).sum(axis=2).max())
            self.row_offset = -self.scale * shiftadd.heap_offset(internal, in_bits)
        self.internal = internal
        self.acc_shape = range_shape(int(lo_i.min()), int(hi_i.max()))
        self.partial_shape = range_shape(chunk_lo, chunk_hi)
        if self.mode == "pot":           # the heap domain is never negative: no sign bit
            self.acc_shape = unsigned(max(1, int(hi_i.max()).bit_length()))
            self.partial_shape = unsigned(max(1, chunk_hi.bit_length()))
        bias0 = np.zeros(outputs, np.int64) if bias is None else bias
        # Real acc = scale * internal + offset (+ row_offset[row]); bias is added on top.
        bias_row = bias0 if self.row_offset is None else bias0 + self.row_offset
        if thresholds is not None:
            # acc + b >= t  <=>  scale * internal >= t - b - offset
            #               <=>  internal >= ceil((t - b - offset) / scale)   (scale > 0)
            # First clip t into [lo + b, hi + b + 1] (always / never reached: same codes),
            # so that the conversion cannot overflow int64.
            real_lo = self.scale * lo_i + self.offset + bias_row
            real_hi = self.scale * hi_i + self.offset + bias_row
            t = np.clip(thresholds, real_lo[:, None], real_hi[:, None] + 1)
            self.stage_thresholds = -((self.offset + bias_row[:, None] - t) // self.scale)
            self.stage_bias = None
            self.stage_acc_shape = self.acc_shape
        else:
            self.stage_thresholds = None
            self.stage_bias = bias if self.row_offset is None else bias_row
            self.stage_acc_shape = range_shape(self.scale * int(lo_i.min()) + self.offset,
                                               self.scale * int(hi_i.max()) + self.offset)
        stage = self._output_stage()
        stage._MustUse__silence = True      # built only to learn the output shape
        self.out_shape = stage.out_shape
        self.out_bits = stage.bits
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(in_bits), simd))),
            "o": Out(stream.Signature(data.ArrayLayout(self.out_shape, pe))),
        })

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd, ram_style="auto"):
        """An MVTU for an IR ``Conv`` or ``FC`` layer, optionally fused with its ``Threshold``.

        ``in_bits`` is the code width of the layer's input tensor. Sparse (CSC) weights
        are expanded to a dense matrix.
        """
        check_fc_layer(layer, threshold)
        w = layer.weights
        return cls(w.matrix(), kind=w.kind, wbits=w.bits, in_bits=in_bits, pe=pe, simd=simd,
                   thresholds=None if threshold is None else threshold.thresholds, bias=layer.bias,
                   ram_style=ram_style)

    def _output_stage(self) -> OutputStage:
        return OutputStage(self.outputs, self.pe, self.stage_acc_shape,
                           thresholds=self.stage_thresholds, bias=self.stage_bias)

    # --- weight storage --------------------------------------------------------------

    @property
    def weight_bits(self) -> int:
        """Stored bits per weight in the weight memories."""
        if self.mode in ("xnor", "binary"):
            return 1
        if self.mode == "int":
            return self.wbits
        return 1 + self._mag_bits

    @property
    def _mag_bits(self) -> int:
        return pot_field_bits(self.emin, self.emax)[0]

    @property
    def _shift_bits(self) -> int:
        return pot_field_bits(self.emin, self.emax)[1]

    def _lane_codes(self) -> np.ndarray:
        """Per-weight stored code (unsigned int, ``weight_bits`` wide)."""
        m = self.weights
        if self.mode in ("xnor", "binary"):
            return (m > 0).astype(np.int64)
        if self.mode == "int":
            return m & ((1 << self.wbits) - 1)
        return shiftadd.lane_codes(self.internal, self.emax - self.emin + 1)

    def internal_exponents(self) -> np.ndarray:
        """``e - emin`` per weight (pot mode; 0 where the weight is 0)."""
        a = np.abs(self.internal)
        return np.where(a > 0, np.log2(np.maximum(a, 1)).round().astype(np.int64), 0)

    def weight_words(self) -> list[list[int]]:
        """Memory contents per PE: word ``f * SF + s`` holds row ``f*pe + p``, columns
        ``s*simd .. s*simd + simd - 1`` (lane ``j`` at bits ``j*weight_bits``)."""
        codes = self._lane_codes()
        wb, simd = self.weight_bits, self.simd
        words = []
        for p in range(self.pe):
            rows = codes[p::self.pe].reshape(self.neuron_folds * self.synapse_folds, simd)
            bits = (rows[:, :, None] >> np.arange(wb)) & 1            # lane-major, LSB first
            packed = np.packbits(bits.reshape(len(rows), simd * wb).astype(np.uint8),
                                 axis=1, bitorder="little")
            words.append([int.from_bytes(row.tobytes(), "little") for row in packed])
        return words

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

    @property
    def _tree_terms(self) -> int:
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
            return 1
        if self.mode == "binary":
            return 2
        if self.mode == "pot":
            return shiftadd.plan(self.simd, self.in_bits, self.emax - self.emin + 1)[0]
        return 1 + max(1, -(-ceil_log2(self._tree_terms) // TREE_LEVELS))

    @property
    def latency(self) -> int:
        """Cycles from the transfer of a fold's last step to that fold's valid output."""
        return 2 + self.datapath_stages + 1 + OUTPUT_LATENCY

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

    def _bitplane_counts(self, m: Module, mask, x, name: str) -> list:
        """Registered popcounts of the activation bit planes (under ``mask`` if given)."""
        counts = []
        for k in range(self.in_bits):
            plane = Cat(x[j][k] for j in range(self.simd))
            pc = Popcount(self.simd, mask=mask is not None, registered=False,
                          primitives=self.primitives)
            m.submodules[f"{name}_plane{k}"] = pc
            m.d.comb += pc.a.eq(plane)
            if mask is not None:
                m.d.comb += pc.b.eq(mask)
            counts.append(self._reg(m, pc.o, f"{name}_count{k}"))
        return counts

    def _partial(self, m: Module, p: int, w_word, x, shared: dict):
        """Dot product of one PE's ``simd`` weights with ``x`` (internal domain), through
        ``datapath_stages`` registers."""
        wb = self.weight_bits
        lanes = [w_word[j * wb:(j + 1) * wb] for j in range(self.simd)]
        if self.mode == "xnor":
            # x is simd bits (1-bit lanes); a match (XNOR = 1) counts one.
            pc = Popcount(self.simd, xnor=True, registered=False, primitives=self.primitives)
            m.submodules[f"popcount{p}"] = pc
            m.d.comb += [pc.a.eq(Cat(lanes[j][0] for j in range(self.simd))), pc.b.eq(x.as_value())]
            return self._reg(m, pc.o, f"popcount{p}_q")
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
            # Shift-add bit heap (hdl.engines.shiftadd), in the heap domain: row_offset
            # takes the rest to the thresholds or the bias.
            sa = shiftadd.ShiftAdd(self.simd, in_bits=self.in_bits, window=self.emax - self.emin + 1,
                                   primitives=self.primitives)
            m.submodules[f"shiftadd{p}"] = sa
            m.d.comb += [sa.w.eq(w_word), sa.x.eq(x), sa.en.eq(self._advance)]
            return sa.o
        terms = []
        for j in range(self.simd):
            a, w = x[j], lanes[j]
            ws = w.as_signed()
            if self.in_bits == 1:
                term = Mux(a, ws, -ws)
            elif self.kind == "ternary":
                term = Mux(w[0], Mux(w[1], -a, a), 0)
            else:
                term = ws * a
            terms.append(self._reg(m, term, f"pe{p}_term{j}"))
        return self._pipelined_sum(m, terms, f"pe{p}_tree")

    def _to_stage(self, internal):
        """Internal accumulator to what the output stage compares (see ``stage_thresholds``)."""
        if self.stage_thresholds is not None:
            return internal
        shift = ceil_log2(self.scale)                   # scale is a power of two
        return (internal << shift) + self.offset if self.offset else internal << shift

    def elaborate(self, platform):
        m = Module()
        m.submodules.output = stage = self._output_stage()
        nf_count, sf_count, pe, simd = self.neuron_folds, self.synapse_folds, self.pe, self.simd
        depth = nf_count * sf_count

        # Accumulator output register, handed to the output stage. Every pipeline
        # register of the MVTU loads on ``advance``: the pipeline moves as one, and stops
        # only while a finished fold is held for the output stage.
        out_valid = Signal()
        out_data = Signal(data.ArrayLayout(self.stage_acc_shape, pe))
        advance = self._advance = Signal()
        m.d.comb += [
            advance.eq(~out_valid | stage.i.ready),
            stage.i.valid.eq(out_valid),
            stage.i.payload.eq(out_data),
        ]
        wiring.connect(m, stage.o, wiring.flipped(self.o))

        # Issue: one (neuron fold, synapse fold) step per cycle.
        nf = Signal(range(nf_count))
        sf = Signal(range(sf_count))
        waddr = Signal(range(depth))
        from_stream = Signal()
        issue = Signal()
        m.d.comb += [
            from_stream.eq(nf == 0),
            self.i.ready.eq(advance & from_stream),
            issue.eq(advance & (~from_stream | self.i.valid)),
        ]
        with m.If(issue):
            m.d.sync += waddr.eq(Mux(waddr == depth - 1, 0, waddr + 1))
            with m.If(sf == sf_count - 1):
                m.d.sync += sf.eq(0)
                m.d.sync += nf.eq(Mux(nf == nf_count - 1, 0, nf + 1))
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
        if nf_count > 1:
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
        words = self.weight_words()
        w_data = []
        for p in range(pe):
            attrs = None if self.ram_style == "auto" else {"rom_style": self.ram_style}
            mem = Memory(shape=unsigned(simd * self.weight_bits), depth=depth, init=words[p],
                         attrs=attrs)
            m.submodules[f"weights{p}"] = mem
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(waddr1), port.en.eq(advance)]
            w_data.append(port.data)

        # Stages 3 .. 2 + datapath_stages: partial dot products per PE; the valid and
        # fold flags travel alongside.
        shared = {}
        partial = [self._partial(m, p, w_data[p], x2, shared) for p in range(pe)]
        vq, firstq, lastq = v2, first2, last2
        for k in range(self.datapath_stages):
            vq, firstq, lastq = (self._reg(m, sig, f"{sig.name}_d{k}") for sig in (vq, firstq, lastq))

        # Accumulate; at the end of a fold, hand the PE results to the output stage.
        acc = [Signal(self.acc_shape, name=f"acc{p}") for p in range(pe)]
        with m.If(stage.i.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(advance & vq):
            for p in range(pe):
                nxt = Signal(self.acc_shape, name=f"acc_next{p}")
                m.d.comb += nxt.eq(Mux(firstq, 0, acc[p]) + partial[p])
                m.d.sync += acc[p].eq(nxt)
                with m.If(lastq):
                    m.d.sync += out_data[p].eq(self._to_stage(nxt))
            with m.If(lastq):
                m.d.sync += out_valid.eq(1)
        return m
