"""The model file: the one contract between training, golden model and hardware.

Torch-free; depends on NumPy only. Every rule is stated in ``docs/ir.md``; this module
is its executable form. In short:

* Tensors are channel-last, ``(H, W, C)``; a fully connected layer reads its input
  flattened in ``(y, x, c)`` order (``c`` fastest).
* An activation tensor holds unsigned ``bits``-bit *codes*. Its *value* is the code,
  except for ``bits == 1``, where code 0 means -1 and code 1 means +1 (bipolar).
* ``conv`` and ``fc`` compute the exact integer dot product of weight values and
  activation values (the *accumulator*, always in the value domain: a binary layer's
  accumulator is the bipolar sum ``2 * popcount(xnor) - n``), plus an optional integer
  bias. Their output is an *accumulator tensor*.
* ``threshold`` turns an accumulator tensor into ``bits``-bit codes: the code is the
  number of the channel's ``2**bits - 1`` non-decreasing thresholds ``t`` with
  ``acc >= t``.
* ``maxpool`` takes the maximum of codes over a window (no padding, floor mode).
* The last layer emits an accumulator vector, the integer *scores*; the label is their
  argmax, ties to the lowest index. ``float score = output_scale * integer score``.
* im2col order of a convolution window is ``(ky, kx, c)`` with ``c`` fastest; the
  weight matrix of a convolution is ``(out_channels, K*K*C_in)`` in that column order.

A file is an uncompressed NumPy ``.npz`` holding a JSON header (as a ``uint8`` array
named ``header``) and the layers' arrays, read by a bounded reader (stored members only,
sizes checked before reading, never a pickle) and checked by a SHA-256 content hash and
the validation rules of ``docs/ir.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

__all__ = [
    "FORMAT_VERSION", "IRError",
    "InputSpec", "Weights", "Conv", "FC", "Threshold", "MaxPool", "Model",
    "TensorSpec", "Layer",
    "act_values", "pot_decode", "pot_encode", "load", "save", "model_path",
]

#: Version of the file format; bump it (and regenerate ``models/``) on any change of rule.
FORMAT_VERSION = 1

#: Limits that keep a hostile header from asking for absurd allocations.
MAX_DIM = 1 << 14
MAX_ELEMENTS = 1 << 26
MAX_ACT_BITS = 8
MAX_INPUT_BITS = 16

WEIGHT_KINDS = ("binary", "ternary", "int", "pot")

#: Longest layer name; names are ASCII identifiers since they become Verilog/Yosys names.
MAX_NAME = 64
_LAYER_NAME = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{MAX_NAME - 1}}}")


class IRError(ValueError):
    """A model is malformed. The message is one line naming file, layer and field."""


def _fail(where: str, msg: str):
    raise IRError(f"{where}: {msg}")


# --- value domain -------------------------------------------------------------------

def act_values(codes, bits: int) -> np.ndarray:
    """Values of activation codes: the code itself, or -1/+1 for 1-bit codes."""
    codes = np.asarray(codes, dtype=np.int64)
    return 2 * codes - 1 if bits == 1 else codes


def pot_decode(codes, bits: int) -> np.ndarray:
    """Integer values of power-of-two weight codes.

    A ``bits``-bit code is ``sign << (bits-1) | mag``; ``mag == 0`` is the weight 0
    (only with sign 0), and ``mag`` in ``1 .. 2**(bits-1)-1`` is ``±2**(mag-1)``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    half = 1 << (bits - 1)
    sign = codes >> (bits - 1)
    mag = codes & (half - 1)
    mag_val = np.where(mag > 0, np.left_shift(1, np.maximum(mag - 1, 0)), 0)
    return np.where(sign == 1, -mag_val, mag_val)


def pot_encode(values, bits: int) -> np.ndarray:
    """Inverse of :func:`pot_decode`; values must be 0 or ±2**m, m < 2**(bits-1)-1."""
    values = np.asarray(values, dtype=np.int64)
    mag = np.abs(values)
    exp = np.zeros_like(mag)
    nz = mag > 0
    exp[nz] = np.log2(mag[nz]).round().astype(np.int64)
    if np.any(mag < 0) or np.any(nz & (np.left_shift(1, exp) != mag)) \
            or np.any(exp[nz] > (1 << (bits - 1)) - 2):
        raise ValueError(f"values are not {bits}-bit power-of-two weights")
    code = np.where(nz, exp + 1, 0)
    return (np.where(values < 0, 1 << (bits - 1), 0) | code).astype(np.uint8)


def _weight_value_range(kind: str, bits: int) -> tuple[int, int]:
    """(min, max) of the integer values a weight kind can take."""
    if kind == "binary":
        return -1, 1
    if kind == "ternary":
        return -1, 1
    if kind == "int":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    big = 1 << ((1 << (bits - 1)) - 2)
    return -big, big


# --- structure ----------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """Shape and kind of a tensor between layers.

    ``bits`` is the code width of an activation tensor, or ``None`` for an accumulator
    tensor, whose exact integer range is ``acc_range``.
    """
    shape: tuple[int, int, int]
    bits: int | None
    acc_range: tuple[int, int] | None = None

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def is_codes(self) -> bool:
        return self.bits is not None


@dataclass(frozen=True, kw_only=True, eq=False)
class InputSpec:
    """The input image and how raw pixels become input codes.

    ``code = clip(floor(raw * scale + offset), 0, 2**bits - 1)`` computed in float64.
    """
    shape: tuple[int, int, int]
    bits: int
    scale: float
    offset: float = 0.5

    def quantize(self, raw) -> np.ndarray:
        """Raw pixels (any leading batch axes, then H, W, C) to uint8/uint16 codes."""
        raw = np.asarray(raw, dtype=np.float64)
        codes = np.clip(np.floor(raw * self.scale + self.offset), 0, (1 << self.bits) - 1)
        return codes.astype(np.uint8 if self.bits <= 8 else np.uint16)


@dataclass(frozen=True, kw_only=True, eq=False)
class Weights:
    """A weight matrix of shape ``(rows, cols)`` = (outputs, inputs), dense or CSC.

    ``kind`` is ``binary`` (values ±1), ``ternary`` (-1, 0, +1), ``int`` (signed
    ``bits``-bit two's complement values) or ``pot`` (``bits`` = 4 or 5 power-of-two
    codes, see :func:`pot_decode`). Dense and CSC ``values`` hold values (int8) for
    the first three kinds and codes (uint8) for ``pot``.

    CSC is canonical: ``colptr`` (int64, ``cols + 1`` entries, from 0, non-decreasing,
    ending at nnz), ``rows`` (int32 absolute row indices, strictly increasing within a
    column), ``values`` (no zeros). Entries not stored are zero, whatever the kind.
    """
    kind: str
    bits: int
    shape: tuple[int, int]
    dense: np.ndarray | None = None
    values: np.ndarray | None = None
    rows: np.ndarray | None = None
    colptr: np.ndarray | None = None

    @property
    def sparse(self) -> bool:
        return self.dense is None

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.dense)) if self.dense is not None else len(self.values)

    def decode(self, stored) -> np.ndarray:
        """Stored values/codes to int64 weight values."""
        if self.kind == "pot":
            return pot_decode(stored, self.bits)
        return np.asarray(stored, dtype=np.int64)

    def matrix(self) -> np.ndarray:
        """The dense ``(rows, cols)`` int64 matrix of weight values."""
        if self.dense is not None:
            return self.decode(self.dense)
        out = np.zeros(self.shape, dtype=np.int64)
        cols = np.repeat(np.arange(self.shape[1]), np.diff(self.colptr))
        out[self.rows.astype(np.int64), cols] = self.decode(self.values)
        return out

    def value_range(self) -> tuple[int, int]:
        return _weight_value_range(self.kind, self.bits)

    @staticmethod
    def from_matrix(matrix, kind: str, bits: int | None = None, *, sparse: bool = False) -> "Weights":
        """Build from a matrix of weight *values* (pot values are encoded to codes)."""
        bits = {"binary": 1, "ternary": 2}.get(kind, bits)
        matrix = np.asarray(matrix, dtype=np.int64)
        stored = pot_encode(matrix, bits) if kind == "pot" else matrix.astype(np.int8)
        if not sparse:
            return Weights(kind=kind, bits=bits, shape=matrix.shape, dense=stored)
        colmajor_rows, colmajor_cols = np.nonzero(matrix.T)
        counts = np.bincount(colmajor_rows, minlength=matrix.shape[1])
        colptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return Weights(kind=kind, bits=bits, shape=matrix.shape,
                       values=stored.T[colmajor_rows, colmajor_cols],
                       rows=colmajor_cols.astype(np.int32), colptr=colptr)

    def to_csc(self) -> "Weights":
        return Weights.from_matrix(self.matrix(), self.kind, self.bits, sparse=True)

    def to_dense(self) -> "Weights":
        return Weights.from_matrix(self.matrix(), self.kind, self.bits, sparse=False)

    def storage_bits(self, pointer_bits: int | None = None) -> int:
        """Bits to store the weights as the IR holds them (values; rows and pointers for CSC)."""
        vbits = self.bits
        if not self.sparse:
            return self.shape[0] * self.shape[1] * vbits
        rbits = max(1, math.ceil(math.log2(max(2, self.shape[0]))))
        pbits = pointer_bits or max(1, math.ceil(math.log2(self.nnz + 1)))
        return self.nnz * (vbits + rbits) + (self.shape[1] + 1) * pbits


@dataclass(frozen=True, kw_only=True, eq=False)
class Conv:
    """KxK convolution with stride and symmetric padding by the code ``pad_value``.

    Padding positions hold the activation code ``pad_value`` (for 1-bit inputs 0 means
    -1 and 1 means +1). Output size is ``(H + 2*padding - kernel) // stride + 1``.
    Emits the accumulator tensor ``(H', W', out_channels)`` (plus ``bias`` if given).
    """
    name: str
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    pad_value: int = 0
    weights: Weights
    bias: np.ndarray | None = None
    op = "conv"


@dataclass(frozen=True, kw_only=True, eq=False)
class FC:
    """Fully connected layer on the input flattened in (y, x, c) order."""
    name: str
    out_features: int
    weights: Weights
    bias: np.ndarray | None = None
    op = "fc"


@dataclass(frozen=True, kw_only=True, eq=False)
class Threshold:
    """Multi-threshold activation: code = #{t in thresholds[c] : acc >= t}.

    ``thresholds`` is int64 of shape ``(C, 2**bits - 1)``, non-decreasing along axis 1.
    """
    name: str
    bits: int
    thresholds: np.ndarray
    op = "threshold"


@dataclass(frozen=True, kw_only=True, eq=False)
class MaxPool:
    """Max over ``kernel`` x ``kernel`` windows of codes, ``stride`` (default kernel), no padding."""
    name: str
    kernel: int
    stride: int = 0
    op = "maxpool"

    @property
    def step(self) -> int:
        return self.stride or self.kernel


Layer = Union[Conv, FC, Threshold, MaxPool]
_LAYER_TYPES = {"conv": Conv, "fc": FC, "threshold": Threshold, "maxpool": MaxPool}


@dataclass(frozen=True, kw_only=True, eq=False)
class Model:
    """A quantized network: input spec, layers, class names and score scale."""
    name: str
    input: InputSpec
    layers: tuple[Layer, ...]
    classes: tuple[str, ...]
    output_scale: float = 1.0
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "classes", tuple(self.classes))

    def specs(self) -> list[TensorSpec]:
        """Tensor specs: the input's, then each layer's output (validates the chain)."""
        return _check_chain(self, "model")

    def validate(self, where: str = "model") -> "Model":
        _check_chain(self, where)
        return self

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


# --- validation ----------------------------------------------------------------------

def _int_field(where, value, name, lo, hi):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(where, f"field '{name}' must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        _fail(where, f"field '{name}' must be in {lo}..{hi}, not {value}")
    return int(value)


def _array_field(where, arr, name, dtypes, shape=None):
    if not isinstance(arr, np.ndarray):
        _fail(where, f"field '{name}' must be a NumPy array, not {type(arr).__name__}")
    if arr.dtype not in [np.dtype(d) for d in dtypes]:
        _fail(where, f"field '{name}' has dtype {arr.dtype}, expected {' or '.join(dtypes)}")
    if shape is not None and arr.shape != tuple(shape):
        _fail(where, f"field '{name}' has shape {arr.shape}, expected {tuple(shape)}")


def _finite_number(v) -> bool:
    """A real int or float (not bool) that is finite as a float64."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond float64
        return False


def _check_weights(where, w: Weights, rows: int, cols: int):
    if not isinstance(w, Weights):
        _fail(where, "field 'weights' is missing")
    if w.kind not in WEIGHT_KINDS:
        _fail(where, f"field 'weights.kind' must be one of {', '.join(WEIGHT_KINDS)}, not {w.kind!r}")
    expect_bits = {"binary": (1, 1), "ternary": (2, 2), "int": (2, 8), "pot": (4, 5)}[w.kind]
    _int_field(where, w.bits, "weights.bits", *expect_bits)
    if tuple(w.shape) != (rows, cols):
        _fail(where, f"field 'weights.shape' is {tuple(w.shape)}, expected {(rows, cols)}")
    stored_dtype = "uint8" if w.kind == "pot" else "int8"
    if w.dense is not None and any(getattr(w, a) is not None for a in ("values", "rows", "colptr")):
        _fail(where, "field 'weights' holds both a dense matrix and CSC arrays (give one form)")
    if w.dense is not None:
        _array_field(where, w.dense, "weights.dense", [stored_dtype], (rows, cols))
        stored = w.dense
    else:
        for arr_name in ("values", "rows", "colptr"):
            if getattr(w, arr_name) is None:
                _fail(where, f"field 'weights.{arr_name}' is missing (weights are neither dense nor CSC)")
        _array_field(where, w.colptr, "weights.colptr", ["int64"], (cols + 1,))
        _array_field(where, w.values, "weights.values", [stored_dtype])
        if w.values.ndim != 1:
            _fail(where, f"field 'weights.values' has shape {w.values.shape}, expected (nnz,)")
        nnz = len(w.values)
        _array_field(where, w.values, "weights.values", [stored_dtype], (nnz,))
        _array_field(where, w.rows, "weights.rows", ["int32"], (nnz,))
        ptr = w.colptr
        if ptr[0] != 0 or ptr[-1] != nnz:
            _fail(where, f"field 'weights.colptr' must start at 0 and end at nnz {nnz}, "
                  f"not {ptr[0]} and {ptr[-1]}")
        steps = np.diff(ptr)
        if np.any(steps < 0):
            col = int(np.argmax(steps < 0))
            _fail(where, f"field 'weights.colptr' decreases at column {col}")
        if np.any(steps > rows):
            _fail(where, f"field 'weights.colptr' gives a column more than {rows} entries")
        if nnz and (w.rows.min() < 0 or w.rows.max() >= rows):
            _fail(where, f"field 'weights.rows' has an index outside 0..{rows - 1}")
        col_of = np.repeat(np.arange(cols), steps)
        same_col = col_of[1:] == col_of[:-1]
        if np.any(same_col & (np.diff(w.rows.astype(np.int64)) <= 0)):
            col = int(col_of[1:][same_col & (np.diff(w.rows.astype(np.int64)) <= 0)][0])
            _fail(where, f"field 'weights.rows' is not strictly increasing in column {col}")
        stored = w.values
    # Value checks on the stored codes.
    if w.kind == "pot":
        half = 1 << (w.bits - 1)
        bad = (stored >= 2 * half) | (stored == half)
        if np.any(bad):
            _fail(where, f"field 'weights' holds invalid {w.bits}-bit power-of-two code "
                  f"{int(stored[bad].flat[0])}")
    else:
        lo, hi = w.value_range()
        if stored.size and (stored.min() < lo or stored.max() > hi):
            _fail(where, f"field 'weights' holds values outside {lo}..{hi} for kind {w.kind}")
        if w.kind == "binary" and w.dense is not None and np.any(stored == 0):
            _fail(where, "field 'weights' holds 0 in a dense binary matrix (binary is ±1)")
    if w.dense is None and np.any(stored == 0):
        _fail(where, "field 'weights.values' stores an explicit zero (CSC keeps non-zeros only)")


#: Elements decoded at a time when summing weights (bounds the memory of range checks).
_CHUNK = 1 << 20


def _acc_range(w: Weights, in_bits: int, bias: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-output exact min and max of the accumulator over all inputs (and padding).

    Sums the positive and negative weights of each row from the stored form (dense rows
    or CSC entries) a chunk at a time, never building the dense int64 matrix.
    """
    rows = w.shape[0]
    pos = np.zeros(rows, dtype=np.int64)
    neg = np.zeros(rows, dtype=np.int64)
    if w.dense is not None:
        step = max(1, _CHUNK // max(1, w.shape[1]))
        for r0 in range(0, rows, step):
            m = w.decode(w.dense[r0:r0 + step])
            pos[r0:r0 + step] = np.where(m > 0, m, 0).sum(axis=1)
            neg[r0:r0 + step] = np.where(m < 0, m, 0).sum(axis=1)
    else:
        for k0 in range(0, len(w.values), _CHUNK):
            v = w.decode(w.values[k0:k0 + _CHUNK])
            r = w.rows[k0:k0 + _CHUNK]
            np.add.at(pos, r[v > 0], v[v > 0])
            np.add.at(neg, r[v < 0], v[v < 0])
    lo_a, hi_a = (-1, 1) if in_bits == 1 else (0, (1 << in_bits) - 1)
    lo = pos * lo_a + neg * hi_a
    hi = pos * hi_a + neg * lo_a
    if bias is not None:
        lo, hi = lo + bias, hi + bias
    return lo, hi


def layer_acc_range(layer: Conv | FC, in_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-output-channel accumulator bounds of a conv/fc layer (bias included).

    Hardware sizes accumulators, comparators and score ports from these.
    """
    return _acc_range(layer.weights, in_bits, layer.bias)


def _check_chain(model: Model, file: str) -> list[TensorSpec]:
    where = f"{file}"
    if not isinstance(model.name, str):
        _fail(where, "field 'name' must be a string")
    inp = model.input
    if not isinstance(inp, InputSpec):
        _fail(where, "field 'input' is missing")
    if not (isinstance(inp.shape, tuple) and len(inp.shape) == 3):
        _fail(where, f"field 'input.shape' must be (H, W, C), not {inp.shape!r}")
    for i, d in enumerate(inp.shape):
        _int_field(where, d, f"input.shape[{i}]", 1, MAX_DIM)
    if math.prod(inp.shape) > MAX_ELEMENTS:
        _fail(where, f"field 'input.shape' {inp.shape} is too large")
    _int_field(where, inp.bits, "input.bits", 1, MAX_INPUT_BITS)
    for name in ("scale", "offset"):
        v = getattr(inp, name)
        if not _finite_number(v):
            _fail(where, f"field 'input.{name}' must be a finite number, not {v!r}")
    if not _finite_number(model.output_scale) or model.output_scale <= 0:
        _fail(where, f"field 'output_scale' must be a finite positive number, not {model.output_scale!r}")
    if not model.layers:
        _fail(where, "field 'layers' is empty")
    if not all(isinstance(c, str) for c in model.classes) or len(model.classes) < 2:
        _fail(where, "field 'classes' must list at least two class names")
    if not isinstance(model.metadata, dict):
        _fail(where, f"field 'metadata' must be a dict, not {type(model.metadata).__name__}")
    try:
        json.dumps(model.metadata, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError, RecursionError) as exc:
        _fail(where, f"field 'metadata' is not plain JSON with finite numbers ({exc})")

    specs = [TensorSpec(shape=tuple(int(d) for d in inp.shape), bits=inp.bits)]
    names = set()
    for index, layer in enumerate(model.layers):
        lname = getattr(layer, "name", None)
        lwhere = f"{file}: layer {index} '{lname}'"
        if type(layer) not in _LAYER_TYPES.values():
            _fail(lwhere, f"field 'op': unknown layer type {type(layer).__name__}")
        if not isinstance(lname, str) or not lname:
            _fail(f"{file}: layer {index}", "field 'name' must be a non-empty string")
        if not _LAYER_NAME.fullmatch(lname):
            _fail(f"{file}: layer {index} {lname[:40]!r}",
                  "field 'name' must be an identifier: a letter or '_', then letters, digits "
                  f"or '_', at most {MAX_NAME} characters (it names hardware modules)")
        if lname in names:
            _fail(lwhere, "field 'name' repeats an earlier layer's name")
        names.add(lname)
        prev = specs[-1]
        h, w, c = prev.shape
        if isinstance(layer, (Conv, FC)):
            if not prev.is_codes:
                _fail(lwhere, f"field 'op': {layer.op} needs activation codes as input, but the previous "
                      "layer emits accumulators (add a threshold layer)")
            if isinstance(layer, Conv):
                k = _int_field(lwhere, layer.kernel, "kernel", 1, MAX_DIM)
                s = _int_field(lwhere, layer.stride, "stride", 1, MAX_DIM)
                p = _int_field(lwhere, layer.padding, "padding", 0, k - 1)
                _int_field(lwhere, layer.pad_value, "pad_value", 0, (1 << prev.bits) - 1)
                oc = _int_field(lwhere, layer.out_channels, "out_channels", 1, MAX_DIM)
                if h + 2 * p < k or w + 2 * p < k:
                    _fail(lwhere, f"field 'kernel' {k} is larger than the padded input {h}x{w}+{p}")
                oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
                rows, cols = oc, k * k * c
                out_shape = (oh, ow, oc)
            else:
                oc = _int_field(lwhere, layer.out_features, "out_features", 1, MAX_ELEMENTS)
                rows, cols = oc, prev.size
                out_shape = (1, 1, oc)
            if rows * cols > MAX_ELEMENTS:
                _fail(lwhere, f"field 'weights.shape' {rows}x{cols} is too large "
                      f"(more than {MAX_ELEMENTS} weights)")
            _check_weights(lwhere, layer.weights, rows, cols)
            if layer.bias is not None:
                _array_field(lwhere, layer.bias, "bias", ["int64"], (oc,))
                if np.any((layer.bias < -(1 << 40)) | (layer.bias > (1 << 40))):
                    _fail(lwhere, "field 'bias' exceeds ±2**40")
            if math.prod(out_shape) > MAX_ELEMENTS:
                _fail(lwhere, f"field '{'out_channels' if isinstance(layer, Conv) else 'out_features'}' "
                      f"gives an output tensor {out_shape} of more than {MAX_ELEMENTS} elements")
            lo, hi = _acc_range(layer.weights, prev.bits, layer.bias)
            specs.append(TensorSpec(shape=out_shape, bits=None,
                                    acc_range=(int(lo.min()), int(hi.max()))))
        elif isinstance(layer, Threshold):
            if prev.is_codes:
                _fail(lwhere, "field 'op': threshold needs an accumulator input, but the previous "
                      "layer emits codes")
            bits = _int_field(lwhere, layer.bits, "bits", 1, MAX_ACT_BITS)
            _array_field(lwhere, layer.thresholds, "thresholds", ["int64"], (c, (1 << bits) - 1))
            t = layer.thresholds
            down = np.any(t[:, 1:] < t[:, :-1], axis=1)   # neighbours compared: no wrap-around
            if np.any(down):
                _fail(lwhere, f"field 'thresholds' is not sorted in channel {int(np.argmax(down))}")
            specs.append(TensorSpec(shape=prev.shape, bits=bits))
        elif isinstance(layer, MaxPool):
            if not prev.is_codes:
                _fail(lwhere, "field 'op': maxpool needs activation codes as input, but the previous "
                      "layer emits accumulators")
            k = _int_field(lwhere, layer.kernel, "kernel", 1, MAX_DIM)
            _int_field(lwhere, layer.stride, "stride", 0, MAX_DIM)
            s = layer.step
            if h < k or w < k:
                _fail(lwhere, f"field 'kernel' {k} is larger than the input {h}x{w}")
            specs.append(TensorSpec(shape=((h - k) // s + 1, (w - k) // s + 1, c), bits=prev.bits))
    last = specs[-1]
    if last.is_codes:
        _fail(f"{file}: layer {len(model.layers) - 1} '{model.layers[-1].name}'",
              "field 'op': the last layer must emit integer scores (a conv or fc layer without threshold)")
    if last.size != len(model.classes):
        _fail(f"{file}: field 'classes'", f"lists {len(model.classes)} classes but the last layer "
              f"emits {last.size} scores")
    return specs


# --- file format ---------------------------------------------------------------------

_LAYER_ARRAYS = {
    "conv": ("bias",), "fc": ("bias",), "threshold": ("thresholds",), "maxpool": (),
}
_WEIGHT_ARRAYS = ("dense", "values", "rows", "colptr")
_HEADER_FIELDS = ("format", "version", "name", "input", "classes", "output_scale", "metadata", "layers")


def _content_hash(header: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(arrays):
        arr = arrays[name]
        h.update(f"\0{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))  # no copy when contiguous
    return h.hexdigest()


def _plain(value):
    """NumPy scalars (accepted by validation) as the Python numbers JSON can hold."""
    return value.item() if isinstance(value, np.generic) else value


def _to_file_dicts(model: Model) -> tuple[dict, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(model.layers):
        entry = {"op": layer.op}
        for f in dataclasses.fields(layer):
            value = getattr(layer, f.name)
            if isinstance(value, Weights):
                wd = {"kind": value.kind, "bits": _plain(value.bits),
                      "shape": [_plain(d) for d in value.shape],
                      "format": "csc" if value.sparse else "dense"}
                for a in _WEIGHT_ARRAYS:
                    if getattr(value, a) is not None:
                        arrays[f"L{i}.weights.{a}"] = getattr(value, a)
                entry["weights"] = wd
            elif isinstance(value, np.ndarray):
                arrays[f"L{i}.{f.name}"] = value
            elif value is not None:
                entry[f.name] = _plain(value)
        layers.append(entry)
    header = {
        "format": "qnn-fpga-model",
        "version": FORMAT_VERSION,
        "name": model.name,
        "input": {"shape": [_plain(d) for d in model.input.shape], "bits": _plain(model.input.bits),
                  "scale": _plain(model.input.scale), "offset": _plain(model.input.offset)},
        "classes": list(model.classes),
        "output_scale": _plain(model.output_scale),
        "metadata": model.metadata,
        "layers": layers,
    }
    return header, arrays


def model_path(path) -> Path:
    """A model file, or a directory holding ``model.npz``."""
    path = Path(path)
    return path / "model.npz" if path.is_dir() else path


def save(model: Model, path) -> Path:
    """Validate and write ``model`` to ``path`` (a ``.npz`` file or a directory).

    The file appears whole or not at all: it is written under a unique temporary name
    in the same directory and renamed into place, so concurrent writers never mix.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path.mkdir(parents=True, exist_ok=True)
        path = path / "model.npz"
    model.validate(str(path))
    header, arrays = _to_file_dicts(model)
    header["sha256"] = _content_hash(header, arrays)
    blob = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, header=blob, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _reject_constant(name):
    raise ValueError(f"non-finite number {name} in the header")


#: Largest ``header`` member (JSON text plus its .npy header) read from a file.
MAX_HEADER_BYTES = 1 << 22
#: Room for a member's .npy header on top of its array bytes.
_NPY_OVERHEAD = 1 << 16


def _open_regular(path: Path, where: str):
    """Open ``path`` for reading without blocking; refuse anything but a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        _fail(where, "no such file")
    except IsADirectoryError:
        _fail(where, "is a directory, not a model file")
    except OSError as exc:
        _fail(where, f"cannot open the model file ({exc.strerror or type(exc).__name__})")
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            _fail(where, "is a directory, not a model file")
        if not stat.S_ISREG(info.st_mode):
            _fail(where, "is not a regular file (a FIFO, device or socket), not a model file")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), info.st_size


def _not_zip_message(head: bytes) -> str:
    """Say what a file that is not a ZIP archive looks like (never suggest unpickling it)."""
    stripped = head.lstrip()
    if head.startswith(b"\x93NUMPY"):
        what = "a single NumPy .npy array"
    elif head[:1] == b"\x80" or head[:2] in (b"(d", b"(l", b"}q", b"]q"):
        what = "a Python pickle (never loaded: pickles can run code)"
    elif stripped[:1] in (b"{", b"["):
        what = "JSON text"
    elif not head:
        what = "an empty file"
    else:
        what = "not a ZIP archive"
    return f"not a model file: {what}; expected an uncompressed NumPy .npz (ZIP) archive"


def _member_caps(header) -> dict[str, int]:
    """Largest array bytes the header allows per layer member (none where it cannot say)."""
    caps: dict[str, int] = {}
    layers = header.get("layers") if isinstance(header, dict) else None
    if not isinstance(layers, list):
        return caps

    def dim(v):
        return v if type(v) is int and 0 <= v <= MAX_ELEMENTS else MAX_ELEMENTS

    inp = header.get("input")
    widest = 0
    if isinstance(inp, dict) and isinstance(inp.get("shape"), list) and inp["shape"]:
        widest = dim(inp["shape"][-1])
    for entry in layers:
        if isinstance(entry, dict):
            widest = max(widest, dim(entry.get("out_channels", 0)), dim(entry.get("out_features", 0)))
    for i, entry in enumerate(layers):
        if not isinstance(entry, dict):
            continue
        wd = entry.get("weights")
        out = max(dim(entry.get("out_channels", 0)), dim(entry.get("out_features", 0)))
        if isinstance(wd, dict) and isinstance(wd.get("shape"), list) and len(wd["shape"]) == 2:
            r, c = (dim(d) for d in wd["shape"])
            n = min(r * c, MAX_ELEMENTS)
            caps.update({f"L{i}.weights.dense": n, f"L{i}.weights.values": n,
                         f"L{i}.weights.rows": 4 * n, f"L{i}.weights.colptr": 8 * (c + 1)})
            out = max(out, r)
        caps[f"L{i}.bias"] = 8 * out
        bits = entry.get("bits")
        bits = bits if type(bits) is int and 1 <= bits <= MAX_ACT_BITS else MAX_ACT_BITS
        caps[f"L{i}.thresholds"] = 8 * widest * ((1 << bits) - 1)
    return caps


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> np.ndarray:
    """One stored .npy member as an array, its declared shape checked against its size."""
    name = info.filename[:-4]
    with zf.open(info) as f:
        buf = bytearray(info.file_size)
        got = f.readinto(memoryview(buf))
        if got != info.file_size or f.read(1):
            _fail(where, f"member '{name}' is not {info.file_size} bytes long as declared")
    head = io.BytesIO(buf)
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        _fail(where, f"member '{name}' is not a NumPy .npy array ({str(exc).splitlines()[0] if str(exc) else ''})")
    if dtype.hasobject:
        _fail(where, f"member '{name}' holds Python objects (a pickle); refused")
    offset = head.tell()
    count = math.prod(shape)
    if count * dtype.itemsize != len(buf) - offset:
        _fail(where, f"member '{name}' declares shape {shape} of {dtype.str} "
              f"({count * dtype.itemsize} bytes) but holds {len(buf) - offset} bytes")
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape, order="F" if fortran else "C")


def load(path) -> Model:
    """Read, check the hash of and validate a model file; any defect raises :class:`IRError`.

    Memory stays bounded: members must be stored (not compressed), their declared sizes
    are checked against the file's size and the header's limits before they are read.
    """
    given = Path(path)
    path = model_path(given)
    where = str(path)
    if path != given and not path.exists():
        _fail(str(given), "is a directory without model.npz")
    fileobj, size = _open_regular(path, where)
    with fileobj:
        try:
            head = fileobj.read(64)
            fileobj.seek(0)
            if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                _fail(where, _not_zip_message(head))
            arrays = _read_container(fileobj, size, where)
        except IRError:
            raise
        except Exception as exc:  # zipfile, zlib, numpy header parsing, memory: unreadable
            _fail(where, f"unreadable model file ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''})")
    header = arrays.pop("header")
    stored_hash = header.pop("sha256", None)
    for name, arr in arrays.items():
        if arr.dtype.kind not in "iu":
            _fail(where, f"array '{name}' has dtype {arr.dtype}, expected an integer type")
    try:
        digest = _content_hash(header, arrays)
    except (MemoryError, TypeError, ValueError, RecursionError) as exc:
        _fail(where, f"cannot hash the content ({type(exc).__name__}: {exc})")
    if stored_hash != digest:
        _fail(where, "field 'sha256' does not match the content: the file is corrupted or was edited")
    try:
        return _from_file_dicts(header, arrays, where).validate(where)
    except IRError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
            RecursionError, MemoryError) as exc:
        _fail(where, f"malformed header ({type(exc).__name__}: {exc})")


def _read_container(fileobj, size: int, where: str) -> dict:
    """The ZIP's members: ``{"header": parsed JSON dict, name: array, ...}``."""
    with zipfile.ZipFile(fileobj) as zf:
        infos = zf.infolist()
        seen, total = {}, 0
        for info in infos:
            fname = info.filename
            if not fname.endswith(".npy") or len(fname) == 4:
                _fail(where, f"member '{fname}' is not a NumPy .npy array")
            if fname in seen:
                _fail(where, f"member '{fname}' appears twice")
            if info.compress_type != zipfile.ZIP_STORED:
                _fail(where, f"member '{fname[:-4]}' is compressed; model files must be "
                      "uncompressed (ZIP_STORED, as numpy.savez writes)")
            if info.flag_bits & 0x1:
                _fail(where, f"member '{fname[:-4]}' is encrypted")
            total += info.file_size
            if info.file_size != info.compress_size or total > size:
                _fail(where, f"member '{fname[:-4]}' declares {info.file_size} bytes, more than "
                      f"the file holds ({size} bytes)")
            seen[fname] = info
        if "header.npy" not in seen:
            _fail(where, "no 'header' array: not a model file")
        hinfo = seen.pop("header.npy")
        if hinfo.file_size > MAX_HEADER_BYTES:
            _fail(where, f"member 'header' is {hinfo.file_size} bytes, more than the "
                  f"{MAX_HEADER_BYTES} allowed")
        blob = _read_member(zf, hinfo, where)
        if blob.dtype != np.uint8 or blob.ndim != 1:
            _fail(where, "field 'header' must be a 1-D uint8 array of JSON")
        try:
            header = json.loads(blob.tobytes().decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            _fail(where, f"field 'header' is not valid JSON ({str(exc).splitlines()[0]})")
        del blob
        if not isinstance(header, dict):
            _fail(where, "field 'header' must be a JSON object")
        if header.get("format") != "qnn-fpga-model":
            _fail(where, f"field 'format' is {header.get('format')!r}, not 'qnn-fpga-model'")
        version = header.get("version")
        if type(version) is not int or version != FORMAT_VERSION:
            _fail(where, f"field 'version' is {version!r}; this tool reads version {FORMAT_VERSION} "
                  "(regenerate the model: python -m scripts.make_models)")
        caps = _member_caps(header)
        arrays: dict = {"header": header}
        for fname, info in seen.items():
            name = fname[:-4]
            if name in caps and info.file_size > caps[name] + _NPY_OVERHEAD:
                _fail(where, f"array '{name}' is {info.file_size} bytes, more than the "
                      f"{caps[name]} its layer's header allows")
            arrays[name] = _read_member(zf, info, where)
        return arrays


def _get(d, key, where, types, prefix=""):
    if not isinstance(d, dict) or key not in d:
        _fail(where, f"field '{prefix}{key}' is missing")
    value = d[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        _fail(where, f"field '{prefix}{key}' has the wrong type {type(value).__name__}")
    return value


def _no_unknown(d, known, where, prefix=""):
    extra = set(d) - set(known)
    if extra:
        _fail(where, f"unknown field(s) {', '.join(prefix + k for k in sorted(extra))}")


def _as_tuple(t):
    return t if isinstance(t, tuple) else (t,)


def _from_file_dicts(header: dict, arrays: dict[str, np.ndarray], where: str) -> Model:
    _no_unknown(header, _HEADER_FIELDS, where)
    inp = _get(header, "input", where, dict)
    _no_unknown(inp, ("shape", "bits", "scale", "offset"), where, "input.")
    shape = _get(inp, "shape", where, list, "input.")
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        _fail(where, f"field 'input.shape' must be three integers, not {shape!r}")
    input_spec = InputSpec(shape=tuple(shape), bits=_get(inp, "bits", where, int, "input."),
                           scale=_get(inp, "scale", where, (int, float), "input."),
                           offset=_get(inp, "offset", where, (int, float), "input."))
    layers = []
    used = {"header"}
    layer_list = _get(header, "layers", where, list)
    for i, entry in enumerate(layer_list):
        lwhere = f"{where}: layer {i}"
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            lname = entry["name"]
            lwhere += f" '{lname}'" if _LAYER_NAME.fullmatch(lname) else f" {lname[:40]!r}"
        op = _get(entry, "op", lwhere, str)
        if op not in _LAYER_TYPES:
            _fail(lwhere, f"field 'op' is {op!r}, expected one of {', '.join(_LAYER_TYPES)}")
        cls = _LAYER_TYPES[op]
        kwargs = {}
        known = {f.name for f in dataclasses.fields(cls)}
        extra = set(entry) - known - {"op"}
        if extra:
            _fail(lwhere, f"unknown field(s) {', '.join(sorted(extra))} for op {op}")
        for f in dataclasses.fields(cls):
            if f.name == "weights":
                wd = _get(entry, "weights", lwhere, dict)
                _no_unknown(wd, ("kind", "bits", "shape", "format"), lwhere, "weights.")
                wshape = _get(wd, "shape", lwhere, list, "weights.")
                fmt = _get(wd, "format", lwhere, str, "weights.")
                if fmt not in ("dense", "csc"):
                    _fail(lwhere, f"field 'weights.format' is {fmt!r}, expected dense or csc")
                warrs = {}
                for a in (("dense",) if fmt == "dense" else ("values", "rows", "colptr")):
                    key = f"L{i}.weights.{a}"
                    if key not in arrays:
                        _fail(lwhere, f"array 'weights.{a}' is missing")
                    warrs[a] = arrays[key]
                    used.add(key)
                if len(wshape) != 2 or not all(isinstance(d, int) and not isinstance(d, bool)
                                               for d in wshape):
                    _fail(lwhere, f"field 'weights.shape' must be two integers, not {wshape!r}")
                kwargs["weights"] = Weights(kind=_get(wd, "kind", lwhere, str, "weights."),
                                            bits=_get(wd, "bits", lwhere, int, "weights."),
                                            shape=tuple(wshape), **warrs)
            elif f.name in _LAYER_ARRAYS[op]:
                key = f"L{i}.{f.name}"
                if f.name in entry:
                    _fail(lwhere, f"field '{f.name}' belongs in array '{key}', not in the header")
                if key in arrays:
                    kwargs[f.name] = arrays[key]
                    used.add(key)
                elif f.default is dataclasses.MISSING:
                    _fail(lwhere, f"array '{f.name}' is missing")
            elif f.name in entry:
                kwargs[f.name] = entry[f.name]
            elif f.default is dataclasses.MISSING:
                _fail(lwhere, f"field '{f.name}' is missing")
        layers.append(cls(**kwargs))
    unused = set(arrays) - used
    if unused:
        _fail(where, f"array(s) {', '.join(sorted(unused))} belong to no layer")
    classes = _get(header, "classes", where, list)
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        _fail(where, "field 'metadata' must be a JSON object")
    return Model(name=_get(header, "name", where, str), input=input_spec, layers=layers,
                 classes=classes, output_scale=_get(header, "output_scale", where, (int, float)),
                 metadata=metadata)
