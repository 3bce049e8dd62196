"""Shift MAC: the MVTU datapath for power-of-two weights, with no multipliers.

A power-of-two weight is ``0`` or ``±2**e``. Its product with an activation is a shift,
so a lane needs no multiplier (and synthesis maps no DSP slice). :class:`ShiftMAC` is
the :class:`hdl.engines.mvtu.MVTU` in ``"pot"`` mode under its own name; it refuses weights
that are not powers of two.

Datapath (:mod:`hdl.engines.shiftadd`), for the activation code ``x`` and the stored
weight code ``(sign, e - emin)``:

1. ``emin .. emax`` is the exponent window of the *actual* non-zero weights of the
   layer. The memory stores ``e - emin`` in ``ceil_log2(emax - emin + 1)`` bits (a zero
   weight as the all-ones field, with one more bit when the window leaves no spare
   code) and the sign in one more bit.
2. No negation: a lane contributes ``(x ^ S) << (e - emin)`` (``S`` the sign bit copied
   to every activation bit) to a bit heap; ``-x = (x ^ S) - (2**k - 1)`` for a negative
   weight, and the sum of those constants over a row (``heap_offset``) depends on the
   weights only, so it is folded into the thresholds or the bias at build time.
3. Two LUT levels place the bits (XOR and shift by the exponent's lowest bit, then
   select by the next two), dual-output LUTs where their inputs allow; the
   popcount's generalised parallel counters compress the columns and its ternary
   carry-chain adder sums them, with a register wherever the LUT levels since the last
   one would exceed six, into the partial sum that the PE accumulates over the
   ``inputs / simd`` synapse folds.

The accumulator therefore holds ``acc / 2**emin`` plus the row's heap offset; its width
is the exact worst case of that sum. Thresholds are divided by ``2**emin`` at build time
(rounded up, which is exact for integer comparisons), and scores are shifted back by
the constant ``emin`` before the bias (which takes the offset) is added. Folding,
memories, stream ports and throughput are those of :class:`hdl.engines.mvtu.MVTU`.
"""

from __future__ import annotations

import numpy as np

from hdl import ir
from hdl.engines.mvtu import MVTU, MVTUSpec

__all__ = ["ShiftMAC"]


class ShiftMAC(MVTU):
    """MVTU for power-of-two weights: a shift-add bit heap, no multiplier; 0 DSP.

    Parameters are those of :class:`hdl.engines.mvtu.MVTU` without ``kind`` (always ``"pot"``).

    weights : int ndarray (outputs, inputs)
        Weight values, each 0 or ``±2**e`` with ``e <= 2**(wbits - 1) - 2``.
    wbits : int or None
        The IR's code width, 4 (``e <= 6``) or 5 (``e <= 14``); default the narrowest that
        holds the weights. The hardware stores only the exponent window actually used.
    in_bits, pe, simd, thresholds, bias :
        As for :class:`hdl.engines.mvtu.MVTU`.

    Attributes
    ----------
    emin, emax : int
        The exponent window of the non-zero weights.
    shift_bits : int
        Control bits of each lane's barrel shifter, ``ceil_log2(emax - emin + 1)``.
    """

    @classmethod
    def describe(cls, weights=None, *, spec: MVTUSpec | None = None, kind="pot", **params):
        if spec is None:
            if kind != "pot":
                raise ValueError(f"ShiftMAC takes power-of-two weights (kind 'pot'), not {kind!r}")
            arr = np.asarray(weights)
            if arr.dtype.kind in "iu" and arr.size:
                mag = np.abs(arr.astype(np.int64))
                if np.any((mag & (mag - 1)) != 0):
                    bad = int(arr.flat[int(np.argmax((mag & (mag - 1)) != 0))])
                    raise ValueError(f"ShiftMAC weights must be 0 or ±2**e, not {bad}")
            return super().describe(weights, kind="pot", **params)
        if isinstance(spec, MVTUSpec) and spec.kind != "pot":
            raise ValueError(f"ShiftMAC takes power-of-two weights (kind 'pot'), not {spec.kind!r}")
        return super().describe(weights, spec=spec, **params)

    @classmethod
    def from_layer(cls, layer, threshold=None, *, in_bits, pe, simd, ram_style="auto"):
        """A ShiftMAC for an IR ``Conv``/``FC`` layer with ``pot`` weights."""
        if isinstance(layer, (ir.Conv, ir.FC)) and layer.weights.kind != "pot":
            raise ValueError(f"ShiftMAC needs a layer with pot weights; layer '{layer.name}' has "
                             f"{layer.weights.kind} weights")
        return super().from_layer(layer, threshold, in_bits=in_bits, pe=pe, simd=simd,
                                  ram_style=ram_style)

    @property
    def shift_bits(self) -> int:
        return self.codes.shift_bits
