"""Quantizer functions and their gradient estimators.

Every quantizer here is a staircase: a sum of unit steps ``H(u - t_j)`` at thresholds
``t_j`` on a normalized input ``u``. Its forward pass is exact (deterministic
rounding, ties decided as ``floor(u + 0.5)``, i.e. upwards; a sign is ``+1`` at 0). Its
backward pass replaces the derivative of every step, a Dirac pulse, by a *kernel*
``K((u - t_j) / w) / w`` of unit area and half-width ``w`` (``w = 0.5`` on the unit
grid, so neighbouring kernels tile the clip range). The estimator chooses ``K``:

``ste``
    Clipped straight-through (BNN, Courbariaux et al.): a box, ``K(v) = 1/2`` on
    ``|v| <= 1``. Summed over the grid it is 1 inside the clip range and 0 outside.
``approx``
    ApproxSign (Bi-Real Net, Liu et al. 2018): a triangle ``K(v) = max(0, 1 - |v|)``,
    the derivative of Bi-Real's piecewise quadratic sign.
``swish``
    SwishSign (BNN+, Darabi et al. 2018): the derivative of
    ``2 sigmoid(b v)(1 + b v (1 - sigmoid(b v))) - 1``, halved to unit area, ``b = 5``.
``expect``
    The estimator of seed 000 (the expected gradient of a stochastic quantizer does not
    vanish): forward is the deterministic quantizer, backward is the exact gradient of
    the *expectation* of the stochastic quantizer ``Q(u + n)`` with logistic noise
    ``n ~ Logistic(0, s w)``, ``s = 0.5``. ``E[H(u + n - t)] = sigmoid((u - t)/(s w))``,
    whose derivative, the logistic density, is non-zero everywhere: units far outside
    the clip range still receive gradient.

To keep the cost independent of the bit width, the backward pass sums the kernels of
the three thresholds nearest to ``u`` (the box and triangle have no support beyond
them; the tails dropped from ``swish`` and ``expect`` are below 1e-3 of the peak).
"""

from __future__ import annotations

import math

import torch

__all__ = ["ESTIMATORS", "kernel", "grid_quant", "sign_quant", "pot_levels"]

ESTIMATORS = ("ste", "approx", "swish", "expect")

#: SwishSign sharpness (BNN+ default) and logistic noise scale of ``expect`` (in units of w).
SWISH_BETA = 5.0
EXPECT_SCALE = 0.5


def kernel(v: torch.Tensor, estimator: str) -> torch.Tensor:
    """Unit-area surrogate of a step's derivative at offset ``v`` (in half-widths)."""
    if estimator == "ste":
        return (v.abs() <= 1).to(v.dtype) * 0.5
    if estimator == "approx":
        return (1 - v.abs()).clamp(min=0)
    if estimator == "swish":
        b = SWISH_BETA
        bv = b * v
        return 0.5 * b * (2 - bv * torch.tanh(bv / 2)) / (1 + torch.cosh(bv.clamp(-80, 80)))
    if estimator == "expect":
        s = EXPECT_SCALE
        sg = torch.sigmoid(v / s)
        return sg * (1 - sg) / s
    raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}")


def check_estimator(estimator: str) -> str:
    if not isinstance(estimator, str):
        raise TypeError(f"estimator must be a str, not {type(estimator).__name__}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}")
    return estimator


class _GridQuant(torch.autograd.Function):
    """code = clamp(floor(u + 0.5), lo, hi); steps at j - 0.5 for j in lo+1..hi."""

    @staticmethod
    def forward(ctx, u, lo, hi, estimator):
        ctx.save_for_backward(u)
        ctx.lo, ctx.hi, ctx.estimator = lo, hi, estimator
        return torch.clamp(torch.floor(u + 0.5), lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (u,) = ctx.saved_tensors
        lo, hi = ctx.lo, ctx.hi
        # Nearest step index: j with threshold j - 0.5 closest to u, kept in lo+1..hi.
        c = torch.clamp(torch.floor(u + 1.0), lo + 1, hi)
        total = torch.zeros_like(u)
        for d in (-1, 0, 1):
            j = c + d
            valid = ((j >= lo + 1) & (j <= hi)).to(u.dtype)
            total = total + valid * kernel((u - (j - 0.5)) / 0.5, ctx.estimator) / 0.5
        return grad * total, None, None, None


class _SignQuant(torch.autograd.Function):
    """±1 with +1 at 0; one step of height 2 at 0, kernel half-width 1."""

    @staticmethod
    def forward(ctx, x, estimator):
        ctx.save_for_backward(x)
        ctx.estimator = estimator
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2 * kernel(x, ctx.estimator), None


def grid_quant(u: torch.Tensor, lo: int, hi: int, estimator: str = "ste") -> torch.Tensor:
    """Round ``u`` to the nearest integer code in ``lo..hi`` (ties up), surrogate gradient."""
    return _GridQuant.apply(u, lo, hi, estimator)


def sign_quant(x: torch.Tensor, estimator: str = "ste") -> torch.Tensor:
    """Bipolar sign (``+1`` at 0) with the estimator's surrogate gradient (clip range ±1)."""
    return _SignQuant.apply(x, estimator)


def pot_levels(bits: int) -> int:
    """Number of non-zero magnitudes of a ``bits``-bit power-of-two code (7 or 15)."""
    return (1 << (bits - 1)) - 1


def pot_exponents(max_abs: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """INQ exponent window from ``max|W|``: ``e_max = floor(log2(4/3 max|W|))``.

    Returns ``(e_max, e_min)`` with ``e_min = e_max - (levels - 1)``; the weight
    ``±2**e`` has the integer value ``±2**(e - e_min)`` and the code magnitude
    ``e - e_min + 1`` (see ``hdl.ir.pot_decode``).
    """
    e_max = torch.floor(torch.log2(max_abs.clamp(min=1e-30) * (4.0 / 3.0)))
    return e_max, e_max - (pot_levels(bits) - 1)


def pot_quant_int(w: torch.Tensor, e_min: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer power-of-two values of ``w`` in units of ``2**e_min`` (INQ rounding).

    ``|w|`` becomes ``2**e`` with ``e = floor(log2(4/3 |w|))`` (so ``3/4 2**e <= |w| <
    3/2 2**e``), clipped to the window top, and 0 below ``3/4 2**e_min``.
    """
    levels = pot_levels(bits)
    a = w.abs() / torch.exp2(e_min)
    e = torch.floor(torch.log2(a.clamp(min=1e-30) * (4.0 / 3.0)))
    e = e.clamp(max=levels - 1)
    mag = torch.where(e >= 0, torch.exp2(e), torch.zeros_like(e))
    return torch.sign(w) * mag


def log2_int(x: float) -> int:
    return int(math.floor(math.log2(x)))
