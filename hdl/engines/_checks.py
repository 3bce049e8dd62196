"""Parameter checks shared by the hardware generators (private).

Every generator checks its parameters in its description (``MVTUSpec``, ...), before any
component exists: ``TypeError`` for a wrong type, ``ValueError`` for a bad value, with the
messages the tests assert.
"""

from __future__ import annotations

import numpy as np

from hdl import ir

__all__ = ["check_int", "check_folds", "check_bias", "check_thresholds", "check_fc_layer"]


def check_int(name: str, value, lo: int, hi: int | None = None, *, numpy: bool = False) -> int:
    """Check that ``value`` is an integer in ``lo..hi`` (no upper bound if ``hi`` is None).

    ``bool`` is rejected; NumPy integers are accepted (and returned as ``int``) only if
    ``numpy`` is true. Returns the value.
    """
    allowed = (int, np.integer) if numpy else int
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {bound}, not {value}")
    return value


def check_bias(bias, outputs: int):
    """``None``, or ``bias`` as an int64 array of shape ``(outputs,)``."""
    if bias is None:
        return None
    bias = np.asarray(bias)
    if bias.dtype.kind not in "iu":
        raise TypeError(f"bias must be an integer array, not dtype {bias.dtype}")
    if bias.shape != (outputs,):
        raise ValueError(f"bias must have shape ({outputs},), not {bias.shape}")
    return bias.astype(np.int64)


def check_thresholds(thresholds, outputs: int):
    """``None``, or ``thresholds`` as an int64 array of shape ``(outputs, 2**bits - 1)``,
    non-decreasing in every channel (row)."""
    if thresholds is None:
        return None
    thresholds = np.asarray(thresholds)
    if thresholds.dtype.kind not in "iu":
        raise TypeError(f"thresholds must be an integer array, not dtype {thresholds.dtype}")
    n = thresholds.shape[1] if thresholds.ndim == 2 else 0
    if thresholds.ndim != 2 or thresholds.shape[0] != outputs or n < 1 or (n + 1) & n:
        raise ValueError(f"thresholds must have shape ({outputs}, 2**bits - 1), "
                         f"not {thresholds.shape}")
    if np.any(np.diff(thresholds, axis=1) < 0):
        raise ValueError("thresholds must be non-decreasing in every channel")
    return thresholds.astype(np.int64)


def check_folds(outputs: int, inputs: int, pe: int, simd: int) -> None:
    """SIMD must divide the input width and PE the output count."""
    if inputs % simd:
        raise ValueError(f"SIMD must divide the input width {inputs}, not {simd}")
    if outputs % pe:
        raise ValueError(f"PE must divide the output count {outputs}, not {pe}")


def check_fc_layer(layer, threshold) -> None:
    """``layer`` an IR ``Conv`` or ``FC``, ``threshold`` an IR ``Threshold`` or None."""
    if not isinstance(layer, (ir.Conv, ir.FC)):
        raise TypeError(f"layer must be an ir.Conv or ir.FC, not {type(layer).__name__}")
    if threshold is not None and not isinstance(threshold, ir.Threshold):
        raise TypeError(f"threshold must be an ir.Threshold or None, not {type(threshold).__name__}")
