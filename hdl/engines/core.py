"""The engine core shared by the dense, shift and sparse engines.

Every compute engine computes ``acc = W @ act_values(x) (+ bias)`` exactly and hands it
to :class:`hdl.engines.threshold.OutputStage`. What they share lives here, once:

* :func:`check_weights`: the weight-value matrix checked for its kind;
* :class:`WeightCodes`: how a weight value is stored (per kind) and the per-lane product
  of a stored code with an activation code;
* :class:`AccumulatorDomain`: the engine's internal accumulator (``acc = scale *
  internal + offset``), its exact range, and the conversion of thresholds and bias into
  that domain (clipped first, so that no legal threshold row can overflow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Mux, Shape, signed, unsigned
from amaranth.utils import ceil_log2

from hdl import ir
from hdl.engines._checks import check_int
from hdl.engines.threshold import range_shape

__all__ = ["KINDS", "MAX_IN_BITS", "check_weights", "act_bounds", "row_bounds", "pot_window",
           "pot_field_bits", "WeightCodes", "AccumulatorDomain"]

KINDS = ("binary", "ternary", "int", "pot")
#: Widest activation code an engine accepts (the model file's input limit).
MAX_IN_BITS = ir.MAX_INPUT_BITS


def check_weights(weights, kind, wbits, *, pruned: bool = False) -> tuple[np.ndarray, int]:
    """Validate a weight-value matrix for ``kind``; return it as int64 and the weight width.

    ``pruned`` allows 0 among binary weights (a pruned weight of a sparse layer).
    """
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string, not {kind!r}")
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
        if pruned and np.any(np.abs(m) > 1):
            raise ValueError("binary weights must be -1 or +1 (0 where pruned)")
        if not pruned and np.any(np.abs(m) != 1):
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
        wbits = check_int("wbits", wbits, 2, 16, numpy=True)
        lo, hi = -(1 << (wbits - 1)), (1 << (wbits - 1)) - 1
        if m.min() < lo or m.max() > hi:
            raise ValueError(f"int weights must be in {lo}..{hi} for wbits {wbits}, "
                             f"not {int(m.min())}..{int(m.max())}")
        return m, wbits
    if wbits is None:
        wbits = 4
        try:
            ir.pot_encode(m, 4)
        except ValueError:
            wbits = 5
    wbits = check_int("wbits", wbits, 4, 5, numpy=True)
    try:
        ir.pot_encode(m, wbits)
    except ValueError:
        raise ValueError(f"pot weights must be 0 or ±2**e with e <= {(1 << (wbits - 1)) - 2} "
                         f"for {wbits}-bit codes") from None
    return m, wbits


def act_bounds(in_bits: int) -> tuple[int, int]:
    """Range of the activation *values* of ``in_bits``-bit codes (1 bit: bipolar ±1)."""
    return (-1, 1) if in_bits == 1 else (0, (1 << in_bits) - 1)


def row_bounds(m: np.ndarray, lo_a: int, hi_a: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact (min, max) of ``m @ a`` along the last axis for ``a`` in ``[lo_a, hi_a]``."""
    pos = np.where(m > 0, m, 0).sum(axis=-1)
    neg = np.where(m < 0, m, 0).sum(axis=-1)
    return pos * lo_a + neg * hi_a, pos * hi_a + neg * lo_a


def pot_window(m: np.ndarray) -> tuple[int, int]:
    """Exponent window ``(emin, emax)`` of the non-zero power-of-two weights (0, 0 if none)."""
    nz = m[m != 0]
    if not nz.size:
        return 0, 0
    exps = np.log2(np.abs(nz)).round().astype(np.int64)
    return int(exps.min()), int(exps.max())


def pot_field_bits(emin: int, emax: int) -> tuple[int, int]:
    """Stored magnitude bits and barrel-shifter control bits of power-of-two weights
    whose exponents span ``emin .. emax``: the magnitude field holds 0 for a zero weight
    and ``e - emin + 1`` otherwise; the shifter shifts by ``e - emin``."""
    return max(1, ceil_log2(emax - emin + 2)), ceil_log2(emax - emin + 1)


@dataclass(frozen=True, kw_only=True)
class WeightCodes:
    """How the weights of one engine are stored, and the product of a stored code.

    Codes by ``style``:

    ``"sign"``   binary weights, 1 bit: 1 for +1, 0 for -1 (no zero);
    ``"ternary"`` 2 bits, non-zero flag and sign: +1 = ``0b01``, -1 = ``0b11``, 0 = ``0b00``
                 (ternary weights, and binary weights that may be pruned);
    ``"int"``    ``wbits``-bit two's complement;
    ``"pot"``    magnitude ``e - emin + 1`` (0 for a zero weight) in ``mag_bits`` bits and
                 the sign above it; the product is ``x << (mag - 1)``, sign applied.

    Products are in the *internal* domain: for pot weights the weight divided by
    ``2**emin`` (see :class:`AccumulatorDomain`).
    """
    style: str
    in_bits: int
    wbits: int = 1
    emin: int = 0
    emax: int = 0

    @classmethod
    def for_weights(cls, m: np.ndarray, kind: str, wbits: int, in_bits: int, *,
                    zero: bool = False) -> "WeightCodes":
        """Codes for the value matrix ``m`` of ``kind``; ``zero``: binary weights need a
        zero code (pruned)."""
        if kind == "binary":
            return cls(style="ternary" if zero else "sign", in_bits=in_bits, wbits=2 if zero else 1)
        if kind == "ternary":
            return cls(style="ternary", in_bits=in_bits, wbits=2)
        if kind == "int":
            return cls(style="int", in_bits=in_bits, wbits=wbits)
        emin, emax = pot_window(m)
        return cls(style="pot", in_bits=in_bits, wbits=wbits, emin=emin, emax=emax)

    @property
    def scale(self) -> int:
        """Internal weight = weight / scale (exact)."""
        return 1 << self.emin if self.style == "pot" else 1

    @property
    def mag_bits(self) -> int:
        return pot_field_bits(self.emin, self.emax)[0]

    @property
    def shift_bits(self) -> int:
        return pot_field_bits(self.emin, self.emax)[1]

    @property
    def bits(self) -> int:
        """Stored bits per weight."""
        if self.style == "sign":
            return 1
        if self.style == "ternary":
            return 2
        if self.style == "int":
            return self.wbits
        return 1 + self.mag_bits

    def encode(self, internal) -> np.ndarray:
        """Stored codes (non-negative int64) of internal-domain weight values."""
        v = np.asarray(internal, np.int64)
        if self.style == "sign":
            return (v > 0).astype(np.int64)
        if self.style == "ternary":
            return np.where(v == 0, 0, 1 | np.where(v < 0, 2, 0))
        if self.style == "int":
            return v & ((1 << self.wbits) - 1)
        a = np.abs(v)
        mag = np.where(a > 0, np.log2(np.maximum(a, 1)).round().astype(np.int64) + 1, 0)
        return mag | np.where(v < 0, 1 << self.mag_bits, 0)

    def _value(self, x):
        """The activation value of code ``x`` as a signed expression."""
        if self.in_bits == 1:
            return Mux(x[0], Const(1, signed(2)), Const(-1, signed(2)))
        return Cat(x, Const(0, 1)).as_signed()

    def terms(self, code, x) -> tuple:
        """``(term, carry)`` with ``term + carry == weight * value(x)`` (internal domain);
        ``carry`` is a 1-bit value or None. A negative pot product is the one's complement
        of the shifted value, so its ``+1`` can enter an adder tree as a spare operand
        instead of costing a carry chain per lane."""
        if self.style == "sign":
            raise ValueError("sign-coded binary weights have no per-lane product "
                             "(XNOR/popcount datapath)")
        if self.style == "int" or (self.style == "ternary" and self.in_bits == 1):
            w = code.as_signed()                    # ternary codes are 2-bit two's complement
            if self.in_bits == 1:
                return Mux(x[0], w, -w), None
            return w * x, None
        if self.style == "ternary":
            return Mux(code[0], Mux(code[1], -x, x), 0), None
        mag, sign = code[:self.mag_bits], code[self.mag_bits]
        xv = self._value(x)
        sb = self.shift_bits
        shifted = (xv << (mag - 1)[:sb]) if sb else xv
        masked = Mux(mag == 0, 0, shifted)
        return Mux(sign, ~masked, masked), sign

    def product(self, code, x):
        """``weight * value(x)`` (internal domain) as one expression."""
        term, carry = self.terms(code, x)
        return term if carry is None else term + carry


@dataclass(frozen=True, kw_only=True, eq=False)
class AccumulatorDomain:
    """An engine's internal accumulator: ``acc = scale * internal + offset (+ row_offset)``
    (bias apart).

    ``lo``/``hi`` are the exact per-channel bounds of ``internal``. Thresholds and bias
    are converted into this domain by :meth:`stage_params`.
    """
    scale: int
    offset: int
    lo: np.ndarray
    hi: np.ndarray
    #: Per-channel part of the offset (a datapath that sums in a shifted domain, such
    #: as the shift-add bit heap); it travels to the thresholds or the bias.
    row_offset: np.ndarray | None = None
    #: The internal accumulator may be unsigned (``lo >= 0``): one bit fewer.
    signed: bool = True

    @classmethod
    def of(cls, internal: np.ndarray, in_bits: int, *, scale: int = 1, offset: int = 0,
           bounds: tuple | None = None, row_offset=None, signed: bool = True) -> "AccumulatorDomain":
        """The domain of ``internal @ act_values(x)``, or of the given per-row ``bounds``."""
        lo, hi = bounds if bounds is not None else row_bounds(internal, *act_bounds(in_bits))
        lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        if not signed and lo.min() < 0:
            raise ValueError("an unsigned accumulator domain needs non-negative bounds")
        return cls(scale=scale, offset=offset, lo=lo, hi=hi, signed=signed,
                   row_offset=None if row_offset is None else np.asarray(row_offset, np.int64))

    @property
    def acc_shape(self) -> Shape:
        """Shape of the internal accumulator."""
        if not self.signed:
            return unsigned(max(1, int(self.hi.max()).bit_length()))
        return range_shape(int(self.lo.min()), int(self.hi.max()))

    def stage_params(self, thresholds, bias) -> tuple:
        """``(thresholds, bias, acc_shape)`` for the output stage, which sees the internal
        accumulator when there are thresholds and the real one otherwise.

        ``acc + b >= t`` exactly when ``internal >= ceil((t - b - offset) / scale)``.
        Thresholds are first clipped into ``[lo + b, hi + b + 1]`` in the real domain
        (always / never reached: the same codes), so the conversion cannot overflow int64.
        """
        outputs = len(self.lo)
        bias0 = np.zeros(outputs, np.int64) if bias is None else np.asarray(bias, np.int64)
        if self.row_offset is not None:
            bias0 = bias0 + self.row_offset
            bias = bias0
        if thresholds is not None:
            real_lo = self.scale * self.lo + self.offset + bias0
            real_hi = self.scale * self.hi + self.offset + bias0
            t = np.clip(thresholds, real_lo[:, None], real_hi[:, None] + 1)
            return -((self.offset + bias0[:, None] - t) // self.scale), None, self.acc_shape
        real = range_shape(self.scale * int(self.lo.min()) + self.offset,
                           self.scale * int(self.hi.max()) + self.offset)
        return None, bias, real

    def to_real(self, internal):
        """The real accumulator (bias apart) of an internal one, as an expression
        (``scale`` is a power of two)."""
        shifted = internal << ceil_log2(self.scale) if self.scale > 1 else internal
        return shifted + self.offset if self.offset else shifted
