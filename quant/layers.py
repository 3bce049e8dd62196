"""Drop-in quantized PyTorch layers in the manner of Brevitas.

* :class:`WeightQuant`: binary (bipolar), ternary, signed int-k or power-of-two
  (4/5-bit codes of ``hdl.ir.pot_decode``) weights, each as ``scale * integer``.
* :class:`QuantConv2d`, :class:`QuantLinear`: convolution / linear layers whose weights
  go through a :class:`WeightQuant` and an optional pruning ``mask``. A convolution pads
  explicitly with ``pad_value`` (the *value* of the IR's padding code: -1.0 for bipolar
  inputs padded with code 0), never implicitly with 0.0.
* :class:`QuantAct`: unsigned k-bit activations (k = 2..8) with a fixed or learned
  (PACT) clip ``a``: ``value = step * code``, ``step = a / (2**k - 1)``,
  ``code = clamp(floor(y / step + 0.5), 0, 2**k - 1)``; ``k = 1`` is bipolar,
  ``value = +1 if y >= 0 else -1`` (code 1 / 0).

Every quantizer takes an ``estimator`` (see :mod:`quant.quantizers`). Setting
``enabled = False`` on a quantizer gives the float twin of the same network (weights
unquantized, activations only clipped), used for float pretraining and
``float_accuracy``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .quantizers import (check_estimator, grid_quant, pot_exponents, pot_levels,
                         pot_quant_int, sign_quant)

__all__ = ["WeightQuant", "QuantConv2d", "QuantLinear", "QuantAct", "WEIGHT_KINDS"]

WEIGHT_KINDS = ("binary", "ternary", "int", "pot")
TERNARY_DELTA = 0.7  # TWN: |w| > 0.7 mean|w| is non-zero


class WeightQuant(nn.Module):
    """Weight quantizer: ``w_q = scale * w_int`` with integer ``w_int`` of the IR kind.

    Parameters
    ----------
    kind : str
        ``binary`` (±1, scale = mean|w|), ``ternary`` (-1/0/+1, TWN threshold
        0.7 mean|w|), ``int`` (signed ``bits``-bit, symmetric, scale = max|w| /
        (2**(bits-1) - 1)) or ``pot`` (``bits`` = 4 or 5; ``±2**e`` on the INQ exponent
        window from max|w|: ``e_max = floor(log2(4/3 max|w|))``).
    bits : int
        Only for ``int`` (2..8) and ``pot`` (4 or 5).
    estimator : str
        Gradient estimator for binary / ternary / int weights; ``pot`` weights use the
        identity straight-through estimator (INQ retrains the unfrozen ones in float).
    per_channel : bool
        One scale per output channel (hidden layers) or one per tensor (a last layer,
        whose scores must map onto integers by one scale). ``pot`` is always per tensor.
    """

    def __init__(self, kind: str, bits: int | None = None, *, estimator: str = "ste",
                 per_channel: bool = True):
        if not isinstance(kind, str):
            raise TypeError(f"kind must be a str, not {type(kind).__name__}")
        if kind not in WEIGHT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(WEIGHT_KINDS)}, not {kind!r}")
        bits = {"binary": 1, "ternary": 2}.get(kind, bits)
        allowed = {"binary": (1,), "ternary": (2,), "int": tuple(range(2, 9)), "pot": (4, 5)}[kind]
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise TypeError(f"bits must be an int, not {type(bits).__name__}")
        if bits not in allowed:
            raise ValueError(f"{kind} weights take bits in {allowed}, not {bits}")
        check_estimator(estimator)
        super().__init__()
        self.kind, self.bits, self.estimator = kind, bits, estimator
        self.per_channel = per_channel and kind != "pot"
        self.enabled = True
        # INQ state: a fixed exponent window and the frozen (already quantized) weights.
        self.register_buffer("e_max", torch.tensor(float("nan")))
        self.inq_frozen: torch.Tensor | None = None

    def _rows(self, w):
        return w.flatten(1) if self.per_channel else w.reshape(1, -1)

    def _per_row(self, v, w):
        return v.reshape(-1, *([1] * (w.dim() - 1))) if self.per_channel else v.reshape(())

    def quantize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w_int, scale)``: integer-valued weights (with surrogate gradient) and scale.

        ``scale`` broadcasts against ``w`` (per output channel or a scalar).
        """
        rows = self._rows(w)
        if self.kind == "binary":
            scale = self._per_row(rows.abs().mean(1), w)
            return sign_quant(w, self.estimator), scale.clamp(min=1e-12)
        if self.kind == "ternary":
            delta = self._per_row(TERNARY_DELTA * rows.abs().mean(1), w).clamp(min=1e-12)
            w_int = grid_quant(w / (2 * delta), -1, 1, self.estimator)
            nz = w_int.detach().abs()
            num = self._rows(w.abs() * nz).sum(1)
            den = self._rows(nz).sum(1).clamp(min=1)
            return w_int, self._per_row(num / den, w).clamp(min=1e-12)
        if self.kind == "int":
            m = (1 << (self.bits - 1)) - 1
            scale = self._per_row(rows.abs().amax(1) / m, w).clamp(min=1e-12)
            return grid_quant(w / scale, -m, m, self.estimator), scale
        # pot
        if torch.isnan(self.e_max):
            e_max, e_min = pot_exponents(w.detach().abs().max(), self.bits)
        else:
            e_max = self.e_max
            e_min = e_max - (pot_levels(self.bits) - 1)
        scale = torch.exp2(e_min).to(w.dtype)
        w_int = pot_quant_int(w.detach(), e_min, self.bits)
        w_int = w / scale + (w_int - w.detach() / scale)  # straight-through
        return w_int, scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        w_int, scale = self.quantize(w)
        w_q = scale * w_int
        if self.kind == "pot" and self.inq_frozen is not None:
            # INQ: frozen weights are quantized, the rest stay float until their turn.
            w_q = torch.where(self.inq_frozen, w_q, w)
        return w_q

    @torch.no_grad()
    def integer(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact ``(w_int, scale)`` in float64 for export and the integer eval path."""
        w_int, scale = self.quantize(w.detach().double())
        w_int = torch.round(w_int)
        return w_int, torch.as_tensor(scale, dtype=torch.float64).reshape(-1)

    def extra_repr(self):
        return f"kind={self.kind}, bits={self.bits}, estimator={self.estimator}"


class _MaskedWeight:
    """Mixin: pruning mask buffer and the quantized, masked weight."""

    def _init_mask(self):
        self.register_buffer("mask", torch.ones_like(self.weight, dtype=torch.bool))

    def quant_weight(self) -> torch.Tensor:
        w = self.weight * self.mask
        if self.weight_quant is None:
            return w
        return self.weight_quant(w) * self.mask

    @torch.no_grad()
    def integer_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w_int, scale)`` float64; ``w_int`` has the pruned positions at 0."""
        w = (self.weight * self.mask).double()
        if self.weight_quant is None:
            raise ValueError("an unquantized layer has no integer weights")
        w_int, scale = self.weight_quant.integer(w)
        return w_int * self.mask, scale

    @torch.no_grad()
    def apply_mask(self):
        self.weight.mul_(self.mask)


class QuantConv2d(nn.Conv2d, _MaskedWeight):
    """``nn.Conv2d`` (no bias) with quantized weights and explicit padding by value.

    ``padding`` pixels on each side hold ``pad_value`` (a float *value*: for an IR
    padding code ``p`` it is ``p`` for unsigned inputs and ``2p - 1`` for bipolar).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, padding: int = 0, pad_value: float = 0.0,
                 weight_quant: WeightQuant | None = None):
        if not isinstance(padding, int) or padding < 0 or padding >= kernel_size:
            raise ValueError(f"padding must be in 0..{kernel_size - 1}, not {padding}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         bias=False)
        self.pad, self.pad_value = padding, float(pad_value)
        self.weight_quant = weight_quant
        self._init_mask()

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad
        return F.pad(x, (p, p, p, p), value=self.pad_value) if p else x

    def forward(self, x):
        return F.conv2d(self.pad_input(x), self.quant_weight(), None, self.stride)


class QuantLinear(nn.Linear, _MaskedWeight):
    """``nn.Linear`` with quantized weights; an optional bias quantized to integers.

    With ``bias_quant`` (a last layer) the bias is rounded to a multiple of the output
    scale ``weight scale * in_step`` (passed to ``forward``), so that
    ``score = out_scale * (integer accumulator + integer bias)`` exactly.
    """

    def __init__(self, in_features: int, out_features: int, *, bias: bool = False,
                 bias_quant: bool = False, weight_quant: WeightQuant | None = None):
        super().__init__(in_features, out_features, bias=bias)
        self.weight_quant = weight_quant
        self.bias_quant = bias_quant and bias
        self._init_mask()

    def out_scale(self, in_step) -> torch.Tensor:
        _, scale = self.weight_quant.quantize(self.weight * self.mask)
        return scale * in_step

    def forward(self, x, in_step=None):
        w = self.quant_weight()
        b = self.bias
        if b is not None and self.bias_quant and in_step is not None and self.weight_quant is not None \
                and self.weight_quant.enabled:
            s = self.out_scale(in_step).detach()
            b = s * (torch.round(b / s) - (b / s).detach()) + b  # straight-through rounding
        return F.linear(x, w, b)


class QuantAct(nn.Module):
    """Activation quantizer: unsigned ``bits``-bit codes, or bipolar for ``bits == 1``.

    Parameters
    ----------
    bits : int
        1..8. ``1``: ``value = ±1`` (code 1 for ``y >= 0``). ``k > 1``: ``value = step *
        code``, ``code = clamp(floor(y/step + 0.5), 0, 2**k - 1)``, ``step = clip /
        (2**k - 1)``.
    clip : float
        Initial clip ``a`` (ignored for ``bits == 1``).
    learn_clip : bool
        Learn ``a`` (PACT; the gradient w.r.t. ``a`` is 1 above the clip).
    estimator : str
        Gradient estimator (:mod:`quant.quantizers`).
    """

    def __init__(self, bits: int, *, clip: float = 2.0, learn_clip: bool = False,
                 estimator: str = "ste"):
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise TypeError(f"bits must be an int, not {type(bits).__name__}")
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, not {bits}")
        if not clip > 0:
            raise ValueError(f"clip must be positive, not {clip}")
        check_estimator(estimator)
        super().__init__()
        self.bits, self.estimator = bits, estimator
        self.levels = (1 << bits) - 1
        self.enabled = True
        clip_t = torch.tensor(float(clip))
        if learn_clip and bits > 1:
            self.clip = nn.Parameter(clip_t)
        else:
            self.register_buffer("clip", clip_t)

    @property
    def bipolar(self) -> bool:
        return self.bits == 1

    def step(self) -> torch.Tensor:
        """Value of one code step (1 for bipolar, whose values are ±1)."""
        if self.bipolar:
            return torch.ones((), dtype=self.clip.dtype, device=self.clip.device)
        return self.clip.abs() / self.levels

    def forward(self, y):
        if self.bipolar:
            if not self.enabled:
                return torch.clamp(y, -1, 1)
            return sign_quant(y, self.estimator)
        a = self.clip.abs()
        if not self.enabled:
            return torch.minimum(F.relu(y), a)
        step = a / self.levels
        return step * grid_quant(y / step, 0, self.levels, self.estimator)

    @torch.no_grad()
    def codes(self, y: torch.Tensor) -> torch.Tensor:
        """Exact codes of ``y`` (float tensor of integers), the same rule as forward."""
        if self.bipolar:
            return (y >= 0).to(y.dtype)
        step = self.clip.detach().abs().to(y.dtype) / self.levels
        return torch.clamp(torch.floor(y / step + 0.5), 0, self.levels)

    def values(self, codes: torch.Tensor) -> torch.Tensor:
        """Values of codes in the integer domain (``code``, or ``2 code - 1`` bipolar)."""
        return 2 * codes - 1 if self.bipolar else codes

    def extra_repr(self):
        return f"bits={self.bits}, estimator={self.estimator}"
