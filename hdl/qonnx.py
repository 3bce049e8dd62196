"""QONNX import and export: Brevitas/QONNX/FINN-ONNX graphs in, QONNX graphs out.

``python -m hdl.qonnx import MODEL.onnx --out DIR`` and ``python -m hdl.qonnx export DIR
--out MODEL.onnx``; :func:`load_model` reads a model file or an ``.onnx`` graph and is
what ``python -m hdl.build --model`` and ``python -m sim.golden`` call. NumPy-only at
import time: ``onnx`` is imported when a graph is read or written (the ``onnx`` extra).

**Import.** The graph is walked once in its (topological) node order; each tensor is a
constant, the raw input under a pending affine map, activation *codes* whose real value
is ``A * ir_value + B`` (``A``, ``B`` exact rationals), or a conv/fc *accumulator*
whose real value per channel is ``y = (P * acc + Q) / sqrt(V) + R`` (exact rationals;
``V`` comes from one BatchNormalization, 1 without). Weights are
Quant/BipolarQuant/integer constants, ``integer * per-output-channel scale``.

A quantizer (Quant, BipolarQuant, MultiThreshold, Sign; Relu/Clip before it)
on an accumulator becomes a ``threshold`` layer: its level ``j`` holds when ``y`` passes
a boundary ``b_j`` (``y >= b_j`` or ``y > b_j``: Quant's rounding mode decides whether
the boundary itself belongs, e.g. half-to-even). The threshold is the smallest integer
accumulator for which that holds in *exact real arithmetic* on the graph's float32
constants (``sqrt`` compared by squaring; clamped to the layer's exact accumulator range
unless within twice its magnitude), so the
thresholds reproduce the float graph on every integer input, except where QONNX's own
float32 evaluation rounds across a boundary (a *float tie*; ``bench.interop`` counts
those inputs). A channel whose ``y`` decreases with its accumulator (negative
BatchNorm scale) has its weight row negated, as ``quant.export`` does.

The input quantizer becomes ``input.scale``/``offset`` (``code = floor(raw * scale +
offset)``: round-half-to-even is taken as half-up, a tie only at exact halves; a
narrow-range quantizer's top code is the file's too for raw inputs inside the
quantizer's range, ``metadata['input_code_max']``). The last
conv/fc layer gives the integer scores: one positive ``output_scale`` for all classes,
per-class offsets that are integer multiples of it into ``bias``, a common additive
constant into ``metadata['score_offset']``. What does not fit (an unknown op, a residual
branch, per-channel activation scales, a non-uniform input quantizer, Trunc, ...)
raises :class:`QONNXError`, one line naming the node and why.

**Export.** Cast/Mul/Add/Quant(FLOOR) on the input (float64, the model file's rule),
then Conv (after a Pad holding the pad code's value) or Flatten+MatMul with the integer
weights in float32
(exact: every accumulator is below 2**24, checked), MultiThreshold per threshold layer,
MaxPool, the integer bias as Add, and the scores times ``output_scale`` in float64.
Weight kinds and formats are in the graph's ``quantization_annotation``
(``finn_datatype``), the model's name, classes and metadata in ``metadata_props``: a
model exported and imported back is identical (same arrays, same content hash).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from hdl import ir

__all__ = ["QONNXError", "load_model", "import_onnx", "import_with_trace", "export_onnx",
           "Probe", "main"]

QONNX_DOMAIN = "qonnx.custom_op.general"
_META_KEY = "qnn_fpga.model"
_F32_EXACT = 1 << 24


class QONNXError(ir.IRError):
    """A graph cannot become a model file; the message names the node and why."""


def load_model(path) -> ir.Model:
    """A model file (``.npz`` or a directory) or a QONNX graph (``.onnx``, imported)."""
    if str(path).lower().endswith(".onnx"):
        return import_onnx(path)
    return ir.load(path)


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise QONNXError("reading or writing .onnx needs the 'onnx' extra "
                         "(pip install -c constraints.txt -e '.[onnx]')") from None
    return onnx, numpy_helper


# --- exact arithmetic helpers ---------------------------------------------------------

def _frac(x) -> Fraction:
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite constant {x}")
    return Fraction(x)


def _sign_diff(lhs: Fraction, m: Fraction, v: Fraction) -> int:
    """Sign of ``lhs - m * sqrt(v)`` (``v > 0``), exactly."""
    if v == 1:
        d = lhs - m
        return (d > 0) - (d < 0)
    sl, sm = (lhs > 0) - (lhs < 0), (m > 0) - (m < 0)
    if sl >= 0 and sm <= 0:
        return 0 if sl == 0 and sm == 0 else 1
    if sl <= 0 and sm >= 0:
        return -1
    d = lhs * lhs - m * m * v        # both non-zero with the same sign
    s = (d > 0) - (d < 0)
    return s if sl > 0 else -s


# --- tensor descriptions ----------------------------------------------------------------

@dataclass
class _Raw:
    """The graph input after elementwise ``a * x + b``; ``shape`` is (C, H, W)."""
    shape: tuple
    flat: bool = False
    a: Fraction = Fraction(1)
    b: Fraction = Fraction(0)


@dataclass
class _Codes:
    """Activation codes: real value = ``A * ir_value + B``."""
    shape: tuple
    bits: int
    A: Fraction
    B: Fraction
    flat: bool = False
    pad: int = 0                 # pending Pad (pixels on each side) for the next Conv
    pad_value: Fraction | None = None


@dataclass
class _Weights:
    """Integer weights ``q`` (ONNX layout) times a per-output-channel scale."""
    q: np.ndarray
    scale: np.ndarray            # per-element, broadcast to q's shape (float64)
    kind: str | None = None
    bits: int | None = None
    node: str = ""


@dataclass
class _Acc:
    """A conv/fc accumulator: per channel ``y = (P*acc + Q)/sqrt(V) + R``, lazily built."""
    shape: tuple
    flat: bool
    make: object                 # callable(matrix) -> ir layer
    matrix: np.ndarray           # int64 (rows, cols) weight values, IR column order
    kind: str
    bits: int
    in_bits: int
    node: str
    P: list
    Q: list
    V: list
    R: list
    biased: bool = False
    pools: list = field(default_factory=list)   # MaxPools seen before the quantizer
    clip_lo: Fraction | None = None
    clip_hi: Fraction | None = None
    annotation: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """Where an IR layer's codes are in the QONNX graph, to compare them.

    ``tensor`` is the ONNX tensor holding the same activations as the IR layer
    ``layer`` (``-1``: the input codes) as real values ``A * ir_value + B``. For a
    threshold layer, ``P, Q, V, R`` (float64, per channel, after any row negation) give
    the pre-quantizer value ``y`` from the layer's accumulator and ``bounds`` the
    quantizer's boundaries in ``y``; for the input, ``bounds`` are in ``raw * scale +
    offset`` units.
    """
    layer: int
    tensor: str
    bits: int
    A: float
    B: float
    P: np.ndarray | None = None
    Q: np.ndarray | None = None
    V: np.ndarray | None = None
    R: np.ndarray | None = None
    bounds: np.ndarray | None = None
    chw: tuple = (0, 0, 0)

    def codes(self, real) -> np.ndarray:
        """Codes (N, H, W, C) from the ONNX tensor's values (N, C, H, W), or (N, C*H*W)
        flattened in ONNX's (c, y, x) order."""
        real = np.asarray(real, dtype=np.float64)
        ir_val = np.rint((real - self.B) / self.A).astype(np.int64)
        c = (ir_val + 1) // 2 if self.bits == 1 else ir_val
        if c.ndim == 2:
            c = c.reshape(len(c), *self.chw) if np.prod(self.chw) == c.shape[1] else c[:, :, None, None]
        if c.ndim == 4:
            c = c.transpose(0, 2, 3, 1)
        return c


# --- import ---------------------------------------------------------------------------

_IDENT = re.compile(r"[^A-Za-z0-9_]")


class _Importer:
    def __init__(self, proto, name: str):
        onnx, nh = _onnx()
        self.onnx, self.nh = onnx, nh
        self.proto = proto
        self.g = proto.graph
        self.name = name
        self.layers: list = []
        self.probes: list[Probe] = []
        self.names: set[str] = set()
        self.input_spec = None
        self.values: dict = {}
        self.annotations = {}
        for ann in self.g.quantization_annotation:
            self.annotations[ann.tensor_name] = {kv.key: kv.value for kv in ann.quant_parameter_tensor_names}
        for t in self.g.initializer:
            self.values[t.name] = nh.to_array(t)
        inputs = [i for i in self.g.input if i.name not in self.values]
        if len(inputs) != 1:
            raise QONNXError(f"graph: expected one input image, found {len(inputs)} "
                             f"({', '.join(i.name for i in inputs)})")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) == 4 and all(d > 0 for d in dims[1:]):
            shape = tuple(dims[1:])
        elif len(dims) == 2 and dims[1] > 0:
            shape = (dims[1], 1, 1)
        else:
            raise QONNXError(f"graph input '{inputs[0].name}': shape {dims} is neither "
                             "(N, C, H, W) nor (N, features)")
        self.input_name = inputs[0].name
        self.values[self.input_name] = _Raw(shape=shape, flat=len(dims) == 2)
        if len(self.g.output) != 1:
            raise QONNXError(f"graph: expected one output (the scores), found {len(self.g.output)}")

    # -- helpers
    def fail(self, node, why):
        raise QONNXError(f"node '{node.name or node.output[0]}' ({node.op_type}): {why}")

    def layer_name(self, node, default):
        base = _IDENT.sub("_", node.name or "") or default
        if not re.match(r"[A-Za-z_]", base):
            base = "_" + base
        base = base[:ir.MAX_NAME - 4]
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def attrs(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def get(self, node, i):
        if i >= len(node.input) or not node.input[i]:
            return None
        name = node.input[i]
        if name not in self.values:
            self.fail(node, f"input '{name}' is not computed by an earlier node")
        return self.values[name]

    def const(self, node, i, what):
        v = self.get(node, i)
        if isinstance(v, _Weights):
            v = v.q * v.scale
        if not isinstance(v, np.ndarray):
            self.fail(node, f"{what} must be a constant")
        return v

    def scalar(self, node, i, what) -> Fraction:
        v = np.asarray(self.const(node, i, what), dtype=np.float64)
        if v.size == 0 or np.any(v != v.flat[0]):
            self.fail(node, f"{what} must be one number per tensor (a per-channel or "
                      "per-element value cannot be represented)")
        return _frac(v.flat[0])

    def per_channel(self, node, c_arr, acc: _Acc) -> list:
        """A constant broadcast against an accumulator: one Fraction per channel."""
        c_arr = np.asarray(c_arr, dtype=np.float64)
        ch, h, w = acc.shape
        full = (1, ch) if acc.flat else (1, ch, h, w)
        try:
            b = np.broadcast_to(c_arr, full) if c_arr.ndim <= len(full) else None
        except ValueError:
            b = None
        if b is None:
            self.fail(node, f"constant of shape {c_arr.shape} does not broadcast to {full}")
        b = b.reshape(ch, -1)
        if np.any(b != b[:, :1]):
            self.fail(node, "constant varies across pixels (only per-channel constants fold into thresholds)")
        return [_frac(x) for x in b[:, 0]]

    # -- walk
    def run(self):
        for node in self.g.node:
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None or node.domain not in ("", "ai.onnx", QONNX_DOMAIN, "finn.custom_op.general",
                                                         "onnx.brevitas"):
                self.fail(node, "unsupported operation")
            outs = handler(node)
            if not isinstance(outs, tuple):
                outs = (outs,)
            for name, value in zip(node.output, outs):
                if name:
                    self.values[name] = value
        out = self.values.get(self.g.output[0].name)
        if not isinstance(out, _Acc):
            raise QONNXError(f"graph output '{self.g.output[0].name}': expected the scores of a "
                             "final conv/fc layer (no quantizer after it)")
        self.finish(out)

    # constants and no-ops
    def op_Constant(self, node):
        a = self.attrs(node)
        if "value" not in a:
            self.fail(node, "only tensor constants are supported")
        return self.nh.to_array(a["value"])

    def op_Identity(self, node):
        return self.get(node, 0)

    op_Dropout = op_Identity

    def op_Cast(self, node):
        v = self.get(node, 0)
        if isinstance(v, np.ndarray):
            return self._fold(node)
        to = self.attrs(node).get("to")
        if to not in (1, 10, 11, 16):       # float, float16, double, bfloat16
            self.fail(node, "casts a computed tensor to a non-float type")
        return v

    def _fold(self, node):
        """Evaluate a node whose inputs are all constants with ONNX's reference runtime."""
        from onnx.reference import ReferenceEvaluator
        ins = [self.values[n] for n in node.input if n]
        if not all(isinstance(x, np.ndarray) for x in ins):
            return None
        g = self.onnx.helper.make_graph(
            [node], "fold",
            [self.onnx.helper.make_tensor_value_info(n, self.onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for n, v in zip([n for n in node.input if n], ins)],
            [self.onnx.helper.make_tensor_value_info(o, 0, None) for o in node.output if o])
        m = self.onnx.helper.make_model(g, opset_imports=[self.onnx.helper.make_opsetid("", 18)])
        try:
            res = ReferenceEvaluator(m).run(None, dict(zip([n for n in node.input if n], ins)))
        except Exception as exc:  # noqa: BLE001 - reported in one line
            self.fail(node, f"cannot fold constant inputs ({type(exc).__name__}: {str(exc).splitlines()[0][:80]})")
        return tuple(np.asarray(r) for r in res) if len(res) > 1 else np.asarray(res[0])

    # shape ops
    def _shape_op(self, node, target):
        v = self.get(node, 0)
        if isinstance(v, np.ndarray):
            return self._fold(node)
        if isinstance(v, _Weights):
            self.fail(node, "reshapes quantized weights (not supported)")
        c, h, w = v.shape
        n = c * h * w
        if target is None or (len(target) == 2 and (target[1] in (-1, n))):
            if isinstance(v, _Codes) and v.pad:
                self.fail(node, "flattens a padded tensor")
            return _replace(v, flat=True)
        if len(target) == 4 and tuple(target[1:]) in ((c, h, w), (-1, h, w)) and not v.flat:
            return v
        if len(target) == 4 and h == w == 1 and tuple(target[1:]) in ((c, 1, 1), (-1, 1, 1)):
            return _replace(v, flat=False)
        self.fail(node, f"reshape of a {('flat ' if v.flat else '')}(C,H,W)={v.shape} tensor "
                  f"to {list(target)} is not a flatten")

    def op_Reshape(self, node):
        if isinstance(self.get(node, 0), np.ndarray):
            return self._fold(node)
        target = [int(t) for t in self.const(node, 1, "the shape")]
        return self._shape_op(node, target)

    def op_Flatten(self, node):
        if self.attrs(node).get("axis", 1) != 1:
            self.fail(node, "flattens from an axis other than 1")
        return self._shape_op(node, None)

    def op_Transpose(self, node):
        v = self.get(node, 0)
        if isinstance(v, np.ndarray):
            return self._fold(node)
        perm = list(self.attrs(node).get("perm", []))
        if isinstance(v, _Weights):              # e.g. MatMul(x, Transpose(Quant(W)))
            perm = perm or list(range(v.q.ndim))[::-1]
            return _replace(v, q=v.q.transpose(perm),
                            scale=np.broadcast_to(v.scale, v.q.shape).transpose(perm))
        c, h, w = v.shape
        dims = [1, c] if v.flat else [1, c, h, w]
        moved = [d for i, d in enumerate(perm) if i != d]
        if all(dims[d] == 1 for d in moved):
            return v
        self.fail(node, f"transposes a tensor of shape {tuple(dims)} with perm {perm} "
                  "(only NCHW layouts are supported)")

    op_Squeeze = op_Unsqueeze = op_Shape = op_Gather = op_Concat = op_Slice = op_Pow = op_Sqrt = \
        lambda self, node: self._fold_or_fail(node)

    def _fold_or_fail(self, node):
        res = self._fold(node)
        if res is None:
            self.fail(node, "is only supported on constants")
        return res

    # elementwise
    def _elementwise(self, node, op):
        x, y = self.get(node, 0), self.get(node, 1)
        if isinstance(x, (np.ndarray, _Weights)) and isinstance(y, (np.ndarray, _Weights)):
            return self._fold(node) if not isinstance(x, _Weights) and not isinstance(y, _Weights) \
                else self.fail(node, "computes on quantized weights")
        const_first = isinstance(x, (np.ndarray, _Weights))
        if const_first:
            x, y = y, x
            if op in ("Div",):
                self.fail(node, "divides a constant by a computed tensor")
        if not isinstance(y, (np.ndarray, _Weights)):
            self.fail(node, "combines two computed tensors (a residual branch or a product "
                      "of activations cannot be represented)")
        neg_x = const_first and op == "Sub"           # c - x
        const_val = y.q * y.scale if isinstance(y, _Weights) else y
        if isinstance(x, _Raw):
            k = self.scalar(node, 0 if const_first else 1, "the constant")
            a, b = (-x.a, -x.b) if neg_x else (x.a, x.b)
            if op == "Mul":
                return _replace(x, a=a * k, b=b * k)
            if op == "Div":
                return _replace(x, a=a / k, b=b / k)
            return _replace(x, a=a, b=b + (k if op == "Add" or neg_x else -k))
        if isinstance(x, _Codes):
            k = self.scalar(node, 0 if const_first else 1, "the constant")
            A, B = (-x.A, -x.B) if neg_x else (x.A, x.B)
            if op == "Mul":
                return _replace(x, A=A * k, B=B * k)
            if op == "Div":
                return _replace(x, A=A / k, B=B / k)
            return _replace(x, B=B + (k if op == "Add" or neg_x else -k))
        if isinstance(x, _Acc):
            if x.clip_lo is not None or x.clip_hi is not None:
                self.fail(node, "arithmetic after Relu/Clip before a quantizer")
            if x.pools and op in ("Mul", "Div"):
                self.fail(node, "scales an accumulator after a MaxPool")
            ks = self.per_channel(node, const_val, x)
            P, Q, R = list(x.P), list(x.Q), list(x.R)
            if neg_x:
                P, Q, R = [-p for p in P], [-q for q in Q], [-r for r in R]
            if op in ("Mul", "Div"):
                if op == "Div" and any(k == 0 for k in ks):
                    self.fail(node, "divides by zero")
                ks = ks if op == "Mul" else [1 / k for k in ks]
                P = [p * k for p, k in zip(P, ks)]
                Q = [q * k for q, k in zip(Q, ks)]
                R = [r * k for r, k in zip(R, ks)]
                return _replace(x, P=P, Q=Q, R=R)
            sign = 1 if (op == "Add" or neg_x) else -1
            if all(v == 1 for v in x.V):
                Q = [q + sign * k for q, k in zip(Q, ks)]
            else:
                R = [r + sign * k for r, k in zip(R, ks)]
            return _replace(x, Q=Q, R=R, biased=True)
        self.fail(node, "unsupported operand")

    def op_Mul(self, node):
        return self._elementwise(node, "Mul")

    def op_Div(self, node):
        return self._elementwise(node, "Div")

    def op_Add(self, node):
        return self._elementwise(node, "Add")

    def op_Sub(self, node):
        return self._elementwise(node, "Sub")

    def op_BatchNormalization(self, node):
        x = self.get(node, 0)
        if isinstance(x, np.ndarray):
            return self._fold(node)
        if not isinstance(x, _Acc):
            self.fail(node, "normalizes something other than a conv/fc output")
        if any(v != 1 for v in x.V) or any(r != 0 for r in x.R):
            self.fail(node, "a second BatchNormalization before the quantizer")
        if x.pools or x.clip_lo is not None or x.clip_hi is not None:
            self.fail(node, "BatchNormalization after a MaxPool or an activation")
        eps = _frac(self.attrs(node).get("epsilon", 1e-5))
        g, beta, mean, var = (self.per_channel(node, _bn_param(self.const(node, i, n), x), x)
                              for i, n in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        V = [v + eps for v in var]
        if any(v <= 0 for v in V):
            self.fail(node, "variance + epsilon is not positive")
        P = [p * gi for p, gi in zip(x.P, g)]
        Q = [(q - m) * gi for q, m, gi in zip(x.Q, mean, g)]
        return _replace(x, P=P, Q=Q, V=V, R=list(beta), biased=True)

    def op_Relu(self, node):
        x = self.get(node, 0)
        if not isinstance(x, _Acc):
            self.fail(node, "Relu is supported only between a conv/fc layer and its quantizer")
        lo = Fraction(0) if x.clip_lo is None else max(x.clip_lo, Fraction(0))
        hi = x.clip_hi if x.clip_hi is None else max(x.clip_hi, lo)
        return _replace(x, clip_lo=lo, clip_hi=hi)

    def op_Clip(self, node):
        x = self.get(node, 0)
        if not isinstance(x, _Acc):
            self.fail(node, "Clip is supported only between a conv/fc layer and its quantizer")
        a = self.attrs(node)
        lo = self.scalar(node, 1, "min") if self.get(node, 1) is not None else \
            (_frac(a["min"]) if "min" in a else None)
        hi = self.scalar(node, 2, "max") if self.get(node, 2) is not None else \
            (_frac(a["max"]) if "max" in a else None)
        if x.clip_lo is not None:
            lo = x.clip_lo if lo is None else max(lo, x.clip_lo)
        if x.clip_hi is not None:
            hi = x.clip_hi if hi is None else min(hi, x.clip_hi)
        return _replace(x, clip_lo=lo, clip_hi=hi)

    op_HardTanh = op_Clip

    # weights and layers
    def _weights(self, node, i, what) -> _Weights:
        v = self.get(node, i)
        if isinstance(v, _Weights):
            w = v
        elif isinstance(v, np.ndarray):
            f = np.asarray(v, dtype=np.float64)
            if not np.all(f == np.round(f)):
                self.fail(node, f"{what} '{node.input[i]}' are neither quantized nor integers")
            w = _Weights(q=f.astype(np.int64), scale=np.ones_like(f), node=node.input[i])
        else:
            self.fail(node, f"{what} must be constant (quantized) weights")
        ann = self.annotations.get(node.input[i]) or self.annotations.get(w.node) or {}
        return _replace(w, kind=_ann_kind(ann) or w.kind, bits=_ann_bits(ann) or w.bits), ann

    def _in_codes(self, node) -> _Codes:
        x = self.get(node, 0)
        if isinstance(x, _Raw):
            self.fail(node, "reads the raw input: the input must be quantized first "
                      "(Quant, BipolarQuant or MultiThreshold)")
        if not isinstance(x, _Codes):
            self.fail(node, "reads an unquantized tensor (add a quantizer before it)")
        return x

    def _make_acc(self, node, x: _Codes, m, w_scale, kind, bits, shape, flat, make, extra_q, ann):
        if m.shape[0] and np.any(m != m):
            self.fail(node, "bad weights")
        rowsum = m.sum(axis=1)
        P = [ws * x.A for ws in w_scale]
        Q = [ws * x.B * int(rs) + eq for ws, rs, eq in zip(w_scale, rowsum, extra_q)]
        return _Acc(shape=shape, flat=flat, make=make, matrix=m, kind=kind, bits=bits,
                    in_bits=x.bits, node=node.name, P=P, Q=Q, V=[Fraction(1)] * len(P),
                    R=[Fraction(0)] * len(P), biased=any(q != 0 for q in extra_q) or x.B != 0,
                    annotation=ann)

    def _row_scale(self, node, w: _Weights, out_axis: int) -> list:
        s = np.moveaxis(np.broadcast_to(w.scale, w.q.shape), out_axis, 0).reshape(w.q.shape[out_axis], -1)
        if np.any(s != s[:, :1]):
            self.fail(node, "weight scales vary within an output channel")
        if np.any(s[:, 0] == 0):
            self.fail(node, "a weight scale is zero")
        return [_frac(v) for v in s[:, 0]]

    def _kind_bits(self, node, w: _Weights, m) -> tuple[str, int]:
        kind, bits = w.kind, w.bits
        lo, hi = (int(m.min()), int(m.max())) if m.size else (0, 0)
        if kind is None:
            if np.all(np.abs(m) == 1):
                kind, bits = "binary", 1
            elif lo >= -1 and hi <= 1 and (bits is None or bits <= 2):
                kind, bits = "ternary", 2
            else:
                need = max(2, max(lo.bit_length() if lo >= 0 else (-lo - 1).bit_length(),
                                  hi.bit_length()) + 1)
                kind, bits = "int", max(need, bits or 0)
        bits = {"binary": 1, "ternary": 2}.get(kind, bits)
        if kind == "binary" and not np.all(np.abs(m) == 1):
            self.fail(node, "binary weights hold values other than -1 and +1")
        if kind == "pot":
            try:
                ir.pot_encode(m, bits)
            except ValueError:
                self.fail(node, f"weights are not {bits}-bit power-of-two values")
        elif kind == "int" and (bits > 8 or lo < -(1 << (bits - 1)) or hi >= 1 << (bits - 1)):
            self.fail(node, f"integer weights in {lo}..{hi} need more than 8 bits" if bits > 8 else
                      f"integer weights in {lo}..{hi} do not fit {bits} bits")
        return kind, bits

    def op_Conv(self, node):
        x = self._in_codes(node)
        if x.flat:
            self.fail(node, "convolves a flattened tensor")
        a = self.attrs(node)
        w, ann = self._weights(node, 1, "weights")
        if w.q.ndim != 4:
            self.fail(node, "only 2-D convolutions are supported")
        oc, ic, kh, kw = w.q.shape
        if a.get("group", 1) != 1:
            self.fail(node, f"grouped convolution (group={a.get('group')}) is not supported")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(node, "dilated convolution is not supported")
        if kh != kw:
            self.fail(node, f"kernel {kh}x{kw} is not square")
        strides = list(a.get("strides", [1, 1]))
        if strides[0] != strides[-1]:
            self.fail(node, f"strides {strides} differ")
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            self.fail(node, "auto_pad is not supported (give explicit pads)")
        if len(set(pads)) > 1:
            self.fail(node, f"pads {pads} are not symmetric")
        c, h, wd = x.shape
        if ic != c:
            self.fail(node, f"weights expect {ic} input channels, the input has {c}")
        p, pad_value = pads[0] if pads else 0, Fraction(0)
        if x.pad:
            if p:
                self.fail(node, "both a Pad node and Conv pads")
            p, pad_value = x.pad, x.pad_value
        pad_code = 0
        if p:
            pad_code = _code_of(x, pad_value)
            if pad_code is None:
                self.fail(node, f"the padding value {float(pad_value)} is not one of the input's codes")
        wscale = self._row_scale(node, w, 0)
        m = w.q.transpose(0, 2, 3, 1).reshape(oc, -1).astype(np.int64)
        kind, bits = self._kind_bits(node, w, m)
        s = strides[0]
        oh, ow = (h + 2 * p - kh) // s + 1, (wd + 2 * p - kh) // s + 1
        bias = self._bias(node, 2, oc)
        lname = self.layer_name(node, f"conv{len(self.layers)}")

        def make(mat, b=None, _w=(kind, bits), _ann=ann):
            return ir.Conv(name=lname, out_channels=oc, kernel=kh, stride=s, padding=p,
                           pad_value=pad_code, weights=_ir_weights(mat, _w[0], b or _w[1], _ann))
        return self._make_acc(node, x, m, wscale, kind, bits, (oc, oh, ow), False, make, bias, ann)

    def _bias(self, node, i, n):
        if self.get(node, i) is None:
            return [Fraction(0)] * n
        b = np.broadcast_to(np.asarray(self.const(node, i, "bias"), dtype=np.float64).reshape(-1), (n,))
        return [_frac(v) for v in b]

    def _fc(self, node, x: _Codes, w: _Weights, ann, out_axis, alpha=Fraction(1), bias=None):
        c, h, wd = x.shape
        if not x.flat and (h, wd) != (1, 1):
            self.fail(node, "a matrix product on an unflattened (C,H,W) tensor")
        q = np.moveaxis(w.q, out_axis, 0)
        n_out, n_in = q.shape
        if n_in != c * h * wd:
            self.fail(node, f"weights take {n_in} inputs, the input has {c * h * wd}")
        # ONNX flattens NCHW as (c, y, x); the model file as (y, x, c).
        perm = np.arange(c * h * wd).reshape(c, h, wd).transpose(1, 2, 0).reshape(-1)
        m = q[:, perm].astype(np.int64)
        kind, bits = self._kind_bits(node, w, m)
        wscale = [alpha * s for s in self._row_scale(node, w, out_axis)]
        lname = self.layer_name(node, f"fc{len(self.layers)}")

        def make(mat, b=None, _w=(kind, bits), _ann=ann):
            return ir.FC(name=lname, out_features=n_out, weights=_ir_weights(mat, _w[0], b or _w[1], _ann))
        return self._make_acc(node, x, m, wscale, kind, bits, (n_out, 1, 1), True, make,
                              bias if bias is not None else [Fraction(0)] * n_out, ann)

    def op_Gemm(self, node):
        x = self._in_codes(node)
        a = self.attrs(node)
        if a.get("transA", 0):
            self.fail(node, "transA=1 is not supported")
        w, ann = self._weights(node, 1, "weights")
        if w.q.ndim != 2:
            self.fail(node, "weights are not a matrix")
        out_axis = 0 if a.get("transB", 0) else 1
        n_out = w.q.shape[out_axis]
        beta = _frac(a.get("beta", 1.0))
        bias = [beta * b for b in self._bias(node, 2, n_out)]
        return self._fc(node, x, w, ann, out_axis, _frac(a.get("alpha", 1.0)), bias)

    def op_MatMul(self, node):
        x = self._in_codes(node)
        w, ann = self._weights(node, 1, "weights")
        if w.q.ndim != 2:
            self.fail(node, "weights are not a matrix")
        return self._fc(node, x, w, ann, 1)

    def op_Pad(self, node):
        x = self.get(node, 0)
        if not isinstance(x, _Codes) or x.flat:
            self.fail(node, "pads something other than activation codes")
        a = self.attrs(node)
        mode = a.get("mode", b"constant")
        if mode not in (b"constant", "constant"):
            self.fail(node, f"pad mode {mode!r} is not supported")
        pads = [int(v) for v in (self.const(node, 1, "pads") if self.get(node, 1) is not None
                                 else a.get("pads", []))]
        value = self.scalar(node, 2, "the pad value") if self.get(node, 2) is not None \
            else _frac(a.get("value", 0.0))
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or len(set(pads[2:4] + pads[6:8])) != 1:
            self.fail(node, f"pads {pads} are not the same on all four spatial sides")
        if x.pad:
            self.fail(node, "two Pad nodes in a row")
        return _replace(x, pad=pads[2], pad_value=value)

    def op_MaxPool(self, node):
        x = self.get(node, 0)
        a = self.attrs(node)
        k = list(a.get("kernel_shape", []))
        s = list(a.get("strides", k))
        if len(k) != 2 or k[0] != k[1] or s[0] != s[1]:
            self.fail(node, f"kernel {k} / strides {s} are not square")
        if any(a.get("pads", [0])) or a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1])):
            self.fail(node, "padding, ceil mode or dilation is not supported")
        if len(node.output) > 1 and node.output[1]:
            self.fail(node, "the indices output is not supported")
        if not isinstance(x, (_Codes, _Acc)) or x.flat:
            self.fail(node, "pools something other than a (C,H,W) activation tensor")
        c, h, w = x.shape
        if h < k[0] or w < k[0]:
            self.fail(node, f"kernel {k[0]} is larger than the input {h}x{w}")
        shape = (c, (h - k[0]) // s[0] + 1, (w - k[0]) // s[0] + 1)
        pool = ir.MaxPool(name=self.layer_name(node, f"pool{len(self.layers)}"), kernel=k[0],
                          stride=0 if s[0] == k[0] else s[0])
        if isinstance(x, _Acc):
            if x.clip_lo is not None or x.clip_hi is not None:
                self.fail(node, "MaxPool between an activation and its quantizer")
            return _replace(x, shape=shape, pools=x.pools + [(pool, node.output[0])])
        if x.A <= 0:
            self.fail(node, "pools codes whose values decrease with the code")
        if x.pad:
            self.fail(node, "pools a padded tensor")
        self.layers.append(pool)
        out = _replace(x, shape=shape)
        self._probe_like(node.output[0], out)
        return out

    def _probe_like(self, tensor, x: _Codes):
        self.probes.append(Probe(layer=len(self.layers) - 1, tensor=tensor, bits=x.bits,
                                 A=float(x.A), B=float(x.B), chw=tuple(x.shape)))

    # quantizers
    def _quant_params(self, node, weights=False):
        a = self.attrs(node)
        if weights:                              # per-output-channel scales allowed
            sc = np.asarray(self.const(node, 1, "the scale"), dtype=np.float64)
            if np.any(~(sc > 0)):
                self.fail(node, "a weight scale is not positive")
            s = Fraction(1)
        else:
            s = self.scalar(node, 1, "the scale")
        z = self.scalar(node, 2, "the zero point")
        bw = self.scalar(node, 3, "the bit width")
        if bw.denominator != 1 or not 1 <= bw <= 16:
            self.fail(node, f"bit width {float(bw)} is not an integer in 1..16")
        bw = int(bw)
        signed, narrow = int(a.get("signed", 1)), int(a.get("narrow", 0))
        mode = a.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
        if s <= 0:
            self.fail(node, "the scale is not positive")
        if signed:
            qmin, qmax = -(1 << (bw - 1)) + narrow, (1 << (bw - 1)) - 1
        else:
            qmin, qmax = 0, (1 << bw) - 1 - narrow
        return s, z, bw, signed, qmin, qmax, mode

    def op_Quant(self, node):
        x = self.get(node, 0)
        s, z, bw, signed, qmin, qmax, mode = self._quant_params(node, isinstance(x, np.ndarray))
        if isinstance(x, np.ndarray):            # weights
            f = np.asarray(x, dtype=np.float64)
            zs = np.asarray(self.const(node, 2, "zero point"), dtype=np.float64)
            if np.any(zs != 0):
                self.fail(node, "weights with a non-zero zero point")
            sc = np.asarray(self.const(node, 1, "scale"), dtype=np.float64)
            if bw == 1 and signed:
                return _Weights(q=np.where(f / sc >= 0, 1, -1).astype(np.int64),
                                scale=np.broadcast_to(sc, f.shape).astype(np.float64),
                                kind="binary", bits=1, node=node.input[0])
            y = np.clip(f / sc, qmin, qmax)
            q = _ROUNDING.get(mode, np.round)(y).astype(np.int64)
            kind = "ternary" if (signed and bw == 2 and qmin == -1) else None
            return _Weights(q=q, scale=np.broadcast_to(sc, f.shape).astype(np.float64),
                            kind=kind, bits=None if kind else max(2, bw + (0 if signed else 1)),
                            node=node.input[0])
        if bw == 1 and signed:                   # qonnx: sign of x/s + z, values (±1 - z) * s
            return self._bipolar(node, x, s, -z * s, [(Fraction(-z * s), True)])
        if mode not in _BOUNDARY:
            self.fail(node, f"rounding mode {mode} is not supported")
        bounds = []
        for j in range(qmin + 1, qmax + 1):
            off, incl = _BOUNDARY[mode](j)
            bounds.append(((off - z) * s, incl))
        levels = qmax - qmin + 1
        return self._levels(node, x, bounds, levels, s, (qmin - z) * s,
                            raw_mode=mode, raw_q=(s, z, qmin))

    def op_BipolarQuant(self, node):
        x = self.get(node, 0)
        s = self.scalar(node, 1, "the scale")
        if s <= 0:
            self.fail(node, "the scale is not positive")
        if isinstance(x, np.ndarray):
            f = np.asarray(x, dtype=np.float64)
            sc = np.asarray(self.const(node, 1, "scale"), dtype=np.float64)
            return _Weights(q=np.where(f >= 0, 1, -1).astype(np.int64),
                            scale=np.broadcast_to(sc, f.shape).astype(np.float64),
                            kind="binary", bits=1, node=node.input[0])
        return self._bipolar(node, x, s, Fraction(0), [(Fraction(0), True)])

    def op_Sign(self, node):
        return self._levels(node, self.get(node, 0), [(Fraction(0), True), (Fraction(0), False)],
                            3, Fraction(1), Fraction(-1))

    def op_MultiThreshold(self, node):
        x = self.get(node, 0)
        a = self.attrs(node)
        t = np.asarray(self.const(node, 1, "the thresholds"), dtype=np.float64)
        if t.ndim != 2:
            self.fail(node, "thresholds are not a (channels, steps) matrix")
        layout = a.get("data_layout", b"")
        layout = layout.decode() if isinstance(layout, bytes) else layout
        if layout not in ("", "NCHW", "NC"):
            self.fail(node, f"data layout {layout} is not supported")
        o_s, o_b = _frac(a.get("out_scale", 1.0)), _frac(a.get("out_bias", 0.0))
        if o_s <= 0:
            self.fail(node, "out_scale is not positive")
        n = t.shape[1]
        if isinstance(x, _Raw):
            row = t[0]
            if np.any(t != row) or n < 1:
                self.fail(node, "input thresholds differ between channels")
            d = np.diff(row)
            if n > 1 and (np.any(d != d[0]) or d[0] <= 0):
                self.fail(node, "input thresholds are not evenly spaced (a non-uniform quantizer)")
            step = _frac(d[0]) if n > 1 else Fraction(1)
            return self._raw_quant(node, x, levels=n + 1, k=1 / step,
                                   offset=1 - _frac(row[0]) / step, A=o_s, B=o_b, bounds=None)
        if not isinstance(x, _Acc):
            self.fail(node, "thresholds something other than a conv/fc output")
        c = x.shape[0]
        if t.shape[0] not in (1, c):
            self.fail(node, f"{t.shape[0]} threshold rows for {c} channels")
        t = np.broadcast_to(t, (c, n))
        if np.any(np.diff(t, axis=1) < 0):
            self.fail(node, "thresholds are not sorted")
        bounds = [[(_frac(v), True) for v in row] for row in t]
        return self._levels(node, x, bounds, n + 1, o_s, o_b)

    def _bipolar(self, node, x, s, B, bounds):
        if isinstance(x, _Raw):
            # code 1 iff a*x + b + bound0 >= 0: scale a, offset b - bound + 1, clipped to 0..1
            return self._raw_quant(node, x, levels=2, k=Fraction(1), offset=1 - bounds[0][0],
                                   A=s, B=B, bounds=None, bipolar=True)
        return self._levels(node, x, bounds, 2, s, B, bipolar=True)

    def _raw_quant(self, node, x: _Raw, *, levels, k, offset, A, B, bounds, bipolar=False):
        if self.input_spec is not None:
            self.fail(node, "a second input quantizer")
        if x.a == 0:
            self.fail(node, "the input is multiplied by zero")
        bits = max(1, (levels - 1).bit_length())
        if bits > ir.MAX_INPUT_BITS:
            self.fail(node, f"{levels} input levels need more than {ir.MAX_INPUT_BITS} bits")
        c, h, w = x.shape
        self.input_spec = ir.InputSpec(shape=(h, w, c), bits=bits, scale=float(x.a * k),
                                       offset=float(x.b * k + offset))
        self.input_levels = levels
        A, B = _code_map(bits, levels, A, B, bipolar)
        codes = _Codes(shape=x.shape, bits=bits, A=A, B=B, flat=x.flat)
        self.probes.append(Probe(layer=-1, tensor=node.output[0], bits=bits, A=float(A), B=float(B),
                                 chw=tuple(x.shape)))
        return codes

    def _levels(self, node, x, bounds, levels, s, B0, bipolar=False, raw_mode=None, raw_q=None):
        """A quantizer with ``levels`` codes; level j holds when y passes ``bounds[j-1]``.

        ``bounds``: one list for all channels or one per channel of (boundary, inclusive).
        The real value of code c is ``s * c + B0`` (``s * (2c-1) ...`` for bipolar).
        """
        if isinstance(x, _Raw):
            if raw_mode not in ("ROUND", "HALF_EVEN", "FLOOR"):
                self.fail(node, f"rounding mode {raw_mode} on the input is not supported")
            s_, z, qmin = raw_q
            half = Fraction(0) if raw_mode == "FLOOR" else Fraction(1, 2)
            return self._raw_quant(node, x, levels=levels, k=1 / s_, offset=z - qmin + half,
                                   A=s, B=B0, bounds=None)
        if not isinstance(x, _Acc):
            self.fail(node, "quantizes something other than the input or a conv/fc output "
                      "(a quantizer on codes is not supported)")
        if levels < 2:
            self.fail(node, "a quantizer with fewer than two levels")
        bits = 1 if levels == 2 else (levels - 1).bit_length()
        if bits > ir.MAX_ACT_BITS:
            self.fail(node, f"{levels} activation levels need more than {ir.MAX_ACT_BITS} bits")
        ch = x.shape[0]
        per_ch = bounds if bounds and isinstance(bounds[0], list) else [bounds] * ch
        neg = [p < 0 for p in x.P]
        m = np.where(np.array(neg)[:, None], -x.matrix, x.matrix) if any(neg) else x.matrix
        layer = x.make(m, self._negated_bits(node, x, m))
        in_spec_bits = x.in_bits
        lo, hi = ir.layer_acc_range(layer, in_spec_bits)
        n_thr = (1 << bits) - 1
        th = np.empty((ch, n_thr), dtype=np.int64)
        for c in range(ch):
            P = -x.P[c] if neg[c] else x.P[c]
            th[c, :] = hi[c] + 1
            for j, (b, incl) in enumerate(per_ch[c]):
                th[c, j] = _threshold(P, x.Q[c], x.V[c], x.R[c], b, incl, x.clip_lo, x.clip_hi,
                                      int(lo[c]), int(hi[c]))
        th = np.maximum.accumulate(th, axis=1)     # unreachable top levels stay sorted
        self.layers.append(layer)
        self.layers.append(ir.Threshold(name=self.layer_name(node, f"act{len(self.layers)}"),
                                        bits=bits, thresholds=th))
        Pf = np.array([float(-p if n else p) for p, n in zip(x.P, neg)])
        bnd = np.array([[float(b) for b, _ in row] for row in per_ch]) if per_ch and per_ch[0] else None
        A, B = _code_map(bits, levels, s, B0, bipolar)
        self.probes.append(Probe(layer=len(self.layers) - 1, tensor=node.output[0], bits=bits,
                                 A=float(A), B=float(B), P=Pf,
                                 Q=np.array([float(q) for q in x.Q]), V=np.array([float(v) for v in x.V]),
                                 R=np.array([float(r) for r in x.R]), bounds=bnd, chw=tuple(x.shape)))
        codes = _Codes(shape=x.shape, bits=bits, A=A, B=B, flat=x.flat)
        for pool, tensor in x.pools:
            self.layers.append(pool)
            self._probe_like(tensor, codes)
        return codes

    def _negated_bits(self, node, x: _Acc, m) -> int:
        """Weight bits after negating rows: -(-2**(b-1)) needs one more bit."""
        if x.kind != "int" or not m.size or m.max() < 1 << (x.bits - 1):
            return x.bits
        if x.bits == 8:
            msg = "negating rows (a negative scale) of 8-bit weights holding -128 needs 9 bits"
            if node is None:
                raise QONNXError(f"node '{x.node}': {msg}")
            self.fail(node, msg)
        return x.bits + 1

    # the scores
    def finish(self, x: _Acc):
        if x.pools or x.clip_lo is not None or x.clip_hi is not None:
            raise QONNXError(f"node '{x.node}': a MaxPool or activation after the last layer "
                             "without a quantizer cannot give integer scores")
        if len(set(x.V)) != 1 or len(set(x.P)) != 1:
            raise QONNXError(f"node '{x.node}': the scores have per-class scales (weight "
                             "scale or normalization per class); one output scale is needed")
        if len(set(x.R)) != 1:
            raise QONNXError(f"node '{x.node}': the scores have per-class offsets after a normalization")
        P, V, R0 = x.P[0], x.V[0], x.R[0]
        if P == 0:
            raise QONNXError(f"node '{x.node}': the scores do not depend on the input (scale 0)")
        flip = P < 0
        Pp = -P if flip else P
        d = [q / Pp for q in x.Q]          # real = (Pp/sqrt V) * (acc' + d) + R0
        if all(v.denominator == 1 for v in d):
            base = Fraction(0)
        elif all((v - d[0]).denominator == 1 for v in d):
            base = min(d)
        else:
            raise QONNXError(f"node '{x.node}': per-class offsets (bias) are not integer multiples "
                             "of the output scale")
        bias = np.array([int(v - base) for v in d], dtype=np.int64)
        m = -x.matrix if flip else x.matrix
        layer = x.make(m, self._negated_bits(None, x, m))
        if x.biased or np.any(bias):
            layer = _with_bias(layer, bias)
        self.layers.append(layer)
        out_scale = float(Pp) if V == 1 else float(Pp) / math.sqrt(float(V))
        self.output_scale = out_scale
        self.score_offset = float(R0) + out_scale * float(base)

    def model(self) -> ir.Model:
        if self.input_spec is None:
            raise QONNXError("graph: the input is never quantized")
        meta_raw = {p.key: p.value for p in self.proto.metadata_props}
        stored = json.loads(meta_raw[_META_KEY]) if _META_KEY in meta_raw else None
        classes = tuple(stored["classes"]) if stored else \
            tuple(str(i) for i in range(self._n_scores()))
        if stored:
            name, metadata = stored["name"], stored["metadata"]
        else:
            name = self.name
            metadata = {"source": "qonnx"}
            if self.score_offset:
                metadata["score_offset"] = self.score_offset
            if self.input_levels < (1 << self.input_spec.bits):
                metadata["input_code_max"] = self.input_levels - 1
        return ir.Model(name=name, input=self.input_spec, layers=self.layers, classes=classes,
                        output_scale=self.output_scale, metadata=metadata).validate(self.name)

    def _n_scores(self):
        last = self.layers[-1]
        return last.out_features if isinstance(last, ir.FC) else last.out_channels


_ROUNDING = {"ROUND": np.round, "HALF_EVEN": np.round, "FLOOR": np.floor, "CEIL": np.ceil}

#: Rounding mode -> for integer level j: (offset k in units of the scale such that
#: q >= j  <=>  x/s + z passes k, inclusive?).
_BOUNDARY = {
    "ROUND": lambda j: (Fraction(2 * j - 1, 2), j % 2 == 0),
    "HALF_EVEN": lambda j: (Fraction(2 * j - 1, 2), j % 2 == 0),
    "HALF_UP": lambda j: (Fraction(2 * j - 1, 2), j >= 1),
    "HALF_DOWN": lambda j: (Fraction(2 * j - 1, 2), j <= 0),
    "FLOOR": lambda j: (Fraction(j), True),
    "CEIL": lambda j: (Fraction(j - 1), False),
    "UP": lambda j: (Fraction(j - 1), False) if j >= 1 else (Fraction(j), True),
    "DOWN": lambda j: (Fraction(j), True) if j >= 1 else (Fraction(j - 1), False),
}


def _code_map(bits, levels, s, B0, bipolar=False):
    """(A, B) with real = A * ir_value + B, from real = s * c + B0 (c = code)."""
    if bipolar:
        return s, B0
    if bits == 1:                       # ir = 2c - 1
        return s / 2, s / 2 + B0
    return s, B0


def _code_of(x: _Codes, value: Fraction):
    """The code whose real value is ``value``, or None."""
    ir_val = (value - x.B) / x.A
    if ir_val.denominator != 1:
        return None
    v = int(ir_val)
    if x.bits == 1:
        return (v + 1) // 2 if v in (-1, 1) else None
    return v if 0 <= v < (1 << x.bits) else None


def _threshold(P, Q, V, R, b, incl, clip_lo, clip_hi, lo, hi) -> int:
    """Smallest integer a in [lo, hi + 1] with y(a) passing (b, incl); y increasing (P >= 0)."""
    def passes(y_sign):
        return y_sign > 0 or (incl and y_sign == 0)

    if clip_lo is not None and passes((clip_lo > b) - (clip_lo < b)):
        return lo
    if clip_hi is not None and not passes((clip_hi > b) - (clip_hi < b)):
        return hi + 1

    def pred(a):
        return passes(_sign_diff(P * a + Q, b - R, V))

    if P == 0:
        return lo if pred(0) else hi + 1
    if V == 1:
        # exact closed form; kept outside [lo, hi + 1] when within twice the range's
        # magnitude (so that a model exported here comes back identical)
        tau = (b - R - Q) / P
        t = math.ceil(tau) if incl else math.floor(tau) + 1
        bound = 2 * max(abs(lo), abs(hi)) + 2
        return t if -bound <= t <= bound else min(max(t, lo), hi + 1)
    sv = math.sqrt(float(V))
    try:
        tau = ((float(b) - float(R)) * sv - float(Q)) / float(P)
        cand = min(max(math.ceil(tau), lo), hi + 1) if math.isfinite(tau) else None
    except (OverflowError, ZeroDivisionError):
        cand = None
    if cand is not None:
        ok_here = cand == hi + 1 or pred(cand)
        ok_below = cand == lo or not pred(cand - 1)
        if ok_here and ok_below:
            return cand
    left, right = lo, hi + 1
    while left < right:
        mid = (left + right) // 2
        if pred(mid):
            right = mid
        else:
            left = mid + 1
    return left


def _bn_param(arr, x):
    """BatchNormalization's (C,) parameters, shaped to broadcast along the channel axis."""
    arr = np.asarray(arr)
    return arr if x.flat or arr.ndim != 1 else arr.reshape(-1, 1, 1)


def _with_bias(layer, bias):
    cls = type(layer)
    kw = {f: getattr(layer, f) for f in layer.__dataclass_fields__}
    kw["bias"] = bias
    return cls(**kw)


def _replace(obj, **kw):
    import dataclasses
    return dataclasses.replace(obj, **kw)


def _ann_kind(ann: dict):
    if "qnn_fpga_kind" in ann:
        return ann["qnn_fpga_kind"]
    dt = ann.get("finn_datatype", "")
    return {"BIPOLAR": "binary", "TERNARY": "ternary"}.get(dt) or ("int" if dt.startswith("INT") else None)


def _ann_bits(ann: dict):
    if "qnn_fpga_bits" in ann:
        return int(ann["qnn_fpga_bits"])
    dt = ann.get("finn_datatype", "")
    return int(dt[3:]) if dt.startswith("INT") and dt[3:].isdigit() else None


def _ir_weights(m, kind, bits, ann):
    fmt = ann.get("qnn_fpga_format")
    dense = ir.Weights.from_matrix(m, kind, bits)
    if fmt == "dense":
        return dense
    csc = ir.Weights.from_matrix(m, kind, bits, sparse=True)
    if fmt == "csc":
        return csc
    return csc if np.any(m == 0) and csc.storage_bits() < dense.storage_bits() else dense


def import_with_trace(source, *, name: str | None = None) -> tuple[ir.Model, list[Probe]]:
    """Import a QONNX graph (path or ``onnx.ModelProto``); also return the :class:`Probe` list."""
    onnx, _ = _onnx()
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            proto = onnx.load(str(path))
        except FileNotFoundError:
            raise QONNXError(f"{path}: no such file") from None
        except Exception as exc:  # noqa: BLE001 - protobuf errors, one line
            raise QONNXError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
        default = _IDENT.sub("_", path.stem) or "model"
    else:
        proto, default = source, "model"
    imp = _Importer(proto, name or default)
    try:
        imp.run()
        model = imp.model()
    except QONNXError:
        raise
    except ir.IRError as exc:
        raise QONNXError(f"imported model is invalid: {exc}") from None
    except ValueError as exc:
        raise QONNXError(f"graph: {str(exc).splitlines()[0]}") from None
    return model, imp.probes


def import_onnx(source, *, name: str | None = None) -> ir.Model:
    """A QONNX / FINN-ONNX graph (path or ``onnx.ModelProto``) as a validated model."""
    return import_with_trace(source, name=name)[0]


# --- export ---------------------------------------------------------------------------

def export_onnx(model: ir.Model, path=None, *, batch: int = 1):
    """Write ``model`` as a QONNX graph (returns the ``onnx.ModelProto``; saved if ``path``).

    ``batch`` is the graph's fixed batch size (QONNX's executor wants fixed shapes).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, not {batch!r}")
    onnx, nh = _onnx()
    from onnx import TensorProto, helper
    model.validate(model.name)
    specs = model.specs()
    h, w, c = model.input.shape
    nodes, inits, anns, infos = [], [], [], []
    cur = {"shape": [batch, c, h, w], "type": TensorProto.DOUBLE}

    def const(name, arr):
        inits.append(nh.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, name, domain="", shape=None, dtype=None, **attrs):
        nodes.append(helper.make_node(op, ins, [name], name=name, domain=domain, **attrs))
        if shape is not None:
            cur["shape"] = list(shape)
        if dtype is not None:
            cur["type"] = dtype
        infos.append(helper.make_tensor_value_info(name, cur["type"], cur["shape"]))
        return name

    def f32(arr, what):
        arr = np.asarray(arr)
        if arr.size and np.max(np.abs(arr)) >= _F32_EXACT:
            raise QONNXError(f"{model.name}: {what} reaches {int(np.max(np.abs(arr)))}, beyond "
                             "float32's exact integers (2**24)")
        return arr.astype(np.float32)

    x = node("Cast", ["x"], "input_f64", to=TensorProto.DOUBLE)
    x = node("Mul", [x, const("input_scale", np.float64(model.input.scale))], "input_scaled")
    x = node("Add", [x, const("input_offset", np.float64(model.input.offset))], "input_offset_added")
    x = node("Quant", [x, const("q_one", np.float64(1.0)), const("q_zero", np.float64(0.0)),
                       const("input_bits", np.float64(model.input.bits))], "input_codes",
             domain=QONNX_DOMAIN, signed=0, narrow=0, rounding_mode="FLOOR", dtype=TensorProto.FLOAT)
    if model.input.bits == 1:
        x = node("Mul", [x, const("two", np.float32(2.0))], "input_2c")
        x = node("Add", [x, const("minus_one", np.float32(-1.0))], "input_bipolar")
    for i, layer in enumerate(model.layers):
        spec, out = specs[i], specs[i + 1]
        lname = layer.name
        if isinstance(layer, (ir.Conv, ir.FC)):
            lo, hi = out.acc_range
            f32([lo, hi], f"layer '{lname}' accumulator")
            m = layer.weights.matrix()
            ann = {"finn_datatype": {"binary": "BIPOLAR", "ternary": "TERNARY"}.get(
                layer.weights.kind, f"INT{layer.weights.bits}"),
                "qnn_fpga_kind": layer.weights.kind, "qnn_fpga_bits": str(layer.weights.bits),
                "qnn_fpga_format": "csc" if layer.weights.sparse else "dense"}
            if isinstance(layer, ir.Conv):
                k, ci = layer.kernel, spec.shape[2]
                wt = m.reshape(layer.out_channels, k, k, ci).transpose(0, 3, 1, 2)
                if layer.padding:
                    pv = 2 * layer.pad_value - 1 if spec.bits == 1 else layer.pad_value
                    p = layer.padding
                    x = node("Pad", [x, const(f"{lname}_pads", np.array([0, 0, p, p, 0, 0, p, p], np.int64)),
                                     const(f"{lname}_pad_value", np.float32(pv))], f"{lname}_pad",
                             mode="constant", shape=[batch, ci, spec.shape[0] + 2 * p, spec.shape[1] + 2 * p])
                wname = const(f"{lname}_W", f32(wt, "weight"))
                x = node("Conv", [x, wname], lname, kernel_shape=[k, k],
                         strides=[layer.stride, layer.stride], pads=[0, 0, 0, 0],
                         shape=[batch, out.shape[2], out.shape[0], out.shape[1]])
                bshape = (1, layer.out_channels, 1, 1)
            else:
                hh, ww, cc = spec.shape
                x = node("Flatten", [x], f"{lname}_flatten", axis=1, shape=[batch, hh * ww * cc])
                # rows of the ONNX matrix in (c, y, x) order
                perm = np.arange(hh * ww * cc).reshape(hh, ww, cc).transpose(2, 0, 1).reshape(-1)
                wname = const(f"{lname}_W", f32(m[:, perm].T, "weight"))
                x = node("MatMul", [x, wname], lname, shape=[batch, layer.out_features])
                bshape = (layer.out_features,)
            anns.append((wname, ann))
            if layer.bias is not None:
                x = node("Add", [x, const(f"{lname}_bias", f32(layer.bias.reshape(bshape), "bias"))],
                         f"{lname}_biased")
        elif isinstance(layer, ir.Threshold):
            t = f32(layer.thresholds, "threshold")
            attrs = {"out_dtype": "BIPOLAR" if layer.bits == 1 else f"UINT{layer.bits}",
                     "data_layout": "NC" if spec.shape[:2] == (1, 1) and _is_flat(model, i) else "NCHW"}
            if layer.bits == 1:
                attrs.update(out_scale=2.0, out_bias=-1.0)
            x = node("MultiThreshold", [x, const(f"{lname}_T", t)], lname, domain=QONNX_DOMAIN, **attrs)
        elif isinstance(layer, ir.MaxPool):
            x = node("MaxPool", [x], lname, kernel_shape=[layer.kernel, layer.kernel],
                     strides=[layer.step, layer.step], shape=[batch, out.shape[2], out.shape[0], out.shape[1]])
    x = node("Cast", [x], "scores_f64", to=TensorProto.DOUBLE, dtype=TensorProto.DOUBLE)
    x = node("Mul", [x, const("output_scale", np.float64(model.output_scale))], "scores")
    graph = helper.make_graph(
        nodes, _IDENT.sub("_", model.name) or "model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, c, h, w])],
        [helper.make_tensor_value_info("scores", TensorProto.DOUBLE, [batch, len(model.classes)])],
        inits, value_info=infos[:-1])
    for tname, kv in anns:
        a = onnx.TensorAnnotation(tensor_name=tname)
        for k, v in kv.items():
            a.quant_parameter_tensor_names.append(onnx.StringStringEntryProto(key=k, value=v))
        graph.quantization_annotation.append(a)
    proto = helper.make_model(graph, producer_name="qnn-fpga",
                              opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)])
    proto.ir_version = 8
    helper.set_model_props(proto, {_META_KEY: json.dumps(
        {"name": model.name, "classes": list(model.classes), "metadata": model.metadata},
        sort_keys=True)})
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def _is_flat(model, i):
    """Whether the layers before ``i`` flattened the tensor (an fc layer came before)."""
    return any(isinstance(layer, ir.FC) for layer in model.layers[:i])


# --- command line ---------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hdl.qonnx",
                                 description="QONNX graphs to model files and back.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_imp = sub.add_parser("import", help="a QONNX/FINN-ONNX graph becomes a model directory")
    p_imp.add_argument("onnx", help="MODEL.onnx")
    p_imp.add_argument("--out", required=True, help="output directory (model.npz) or .npz file")
    p_imp.add_argument("--name", default=None, help="model name (default: the file's stem)")
    p_exp = sub.add_parser("export", help="a model file becomes a QONNX graph")
    p_exp.add_argument("model", help="model directory or .npz")
    p_exp.add_argument("--out", required=True, help="MODEL.onnx")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "import":
            model = import_onnx(args.onnx, name=args.name)
            path = ir.save(model, args.out)
            n = sum(isinstance(layer, (ir.Conv, ir.FC)) for layer in model.layers)
            print(f"{args.onnx}: {n} conv/fc layers, input {model.input.bits}-bit "
                  f"{model.input.shape} -> {path}")
        else:
            model = ir.load(args.model)
            export_onnx(model, args.out)
            print(f"{ir.model_path(args.model)} -> {args.out}")
    except (ir.IRError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
