"""The bit-exact golden model: executes any valid model file (:mod:`hdl.ir`) on a batch.

Every hardware test compares with this module frame by frame, so it follows the IR's
rules literally and only uses arithmetic that is provably exact. Codes go in, int64
comes out; layers run one after the other, each vectorized over frames, pixels and
channels (the only Python loops are over layers, kernel offsets, threshold levels,
64-bit words of a packed dot product and row chunks that bound memory).

Execution method, per layer kind:

* **conv / fc, dense binary weights x 1-bit (bipolar) activations** (XNOR layers, the
  bulk of CNV): activations and weights are bit-packed (``np.packbits``, bit = code,
  weight bit 1 = +1) along the im2col axis into ``uint64`` words, padding bits are 0 in
  both, and ``acc = n - 2 * popcount(x XOR w)`` with ``np.bitwise_count``. A conv packs
  each pixel's channels first and builds the windows from the packed bytes (or whole
  words when ``C_in`` is a multiple of 64), so im2col moves 8x less data. Chunks of
  ~4096 output rows keep NumPy's broadcast XOR in its fast regime. When a
  threshold follows (in :func:`run` without ``all_layers``), bias and thresholds are
  folded into popcount limits, ``acc >= t  <=>  popcount < clip(floor((n + b - t)/2),
  -1, n) + 1``, so the codes come straight from the popcounts.
* **conv / fc, any other dense weights** (int, ternary, pot, binary x k-bit): a BLAS
  matmul of the weight *values* and activation *values* in ``float32`` when the bound
  ``B = max_out sum_k |w_k| * max|a|`` is below ``2**24`` (every partial sum BLAS may
  form, in any order, is an integer of magnitude <= B, hence exact), in ``float64`` when
  ``B < 2**53``, and otherwise an ``int64`` matmul (exact, slow, never needed by the
  shipped models). The inner dimension is zero-padded to a multiple of 8 and the
  result converted to int64 before the bias is added; when a threshold follows, the
  products are compared instead with ``clip(t, lo - 1, hi + 1) - bias`` (``lo, hi`` =
  ``ir.layer_acc_range``), which is within ``B + 1`` of zero and so exact as well.
* **conv / fc, CSC weights**: executed from ``values / rows / colptr`` without
  densifying: the non-zeros are put in output-row order, each one's product with its
  input column is formed in int64 for a chunk of rows, and ``np.add.reduceat`` sums
  the segments of each output (outputs without non-zeros stay 0).
* **bias**: int64 add. **threshold**: code = number of thresholds ``t`` with
  ``acc >= t``, by comparing and counting per level (up to 15 levels) or by one
  ``np.searchsorted(side='right')`` on the channels' thresholds laid side by side in
  disjoint offset bands (more levels). **maxpool**: ``np.maximum`` over the ``K*K``
  strided views (no padding, floor mode).
* **scores / labels**: the last layer's output flattened in ``(y, x, c)`` order; label
  = ``np.argmax`` (ties go to the lowest index).

Conv and fc layers run in chunks of output rows (frames x pixels) on a small thread
pool (NumPy releases the GIL inside ufuncs and BLAS); meanwhile BLAS is held to one
thread with ``threadpoolctl`` when it is installed, so that its spinning threads do not
compete with the pool. Results do not depend on the chunking or the thread count.

Conv padding positions hold the *code* ``pad_value`` (for 1-bit inputs code 0 is -1).

Command line: ``python -m sim.golden MODEL [--data digits|PATH.npz] [--json]`` (or
``qnn-golden``) prints the test-split accuracy and frames per second of :func:`run`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from hdl import ir

__all__ = ["run", "predict", "layer_forward", "im2col", "threshold", "maxpool",
           "Mismatch", "compare_layers", "first_mismatch", "main"]

#: Worker threads for row chunks (NumPy ufuncs and BLAS release the GIL); the
#: environment variable ``GOLDEN_THREADS`` overrides it (1 = no pool).
_THREADS = max(1, int(os.environ.get("GOLDEN_THREADS", 0)) or min(4, os.cpu_count() or 1))
#: Elements of one (output rows x outputs) chunk; results never depend on it.
_CHUNK = 1 << 16
_pool: ThreadPoolExecutor | None = None
#: Integers of magnitude below these are exact in float32 / float64 (and all their sums).
_F32_EXACT = 1 << 24
_F64_EXACT = 1 << 53


_blas_controller = None


def _blas_single_thread():
    """Context in which BLAS runs on one thread (row chunks go to our pool instead).

    A multi-threaded BLAS spins between small calls and competes with the pool; with
    ``threadpoolctl`` missing, BLAS keeps its own threads and chunks run in sequence.
    """
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
            _blas_controller = ThreadpoolController()
        except ImportError:
            _blas_controller = False
    if _blas_controller is False:
        return contextlib.nullcontext(False)
    return _blas_controller.limit(limits=1, user_api="blas")


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="golden")
    return _pool


def _code_dtype(bits: int):
    return np.uint8 if bits <= 8 else np.uint16


# --- building blocks -----------------------------------------------------------------

def im2col(codes, kernel: int, stride: int = 1, padding: int = 0, pad_value: int = 0) -> np.ndarray:
    """Sliding windows of a batch of ``(N, H, W, C)`` tensors in ``(ky, kx, c)`` order.

    Returns ``(N, H', W', kernel*kernel*C)`` of the input's dtype, where padding
    positions hold ``pad_value`` and ``H' = (H + 2*padding - kernel) // stride + 1``.
    """
    x = np.asarray(codes)
    if x.ndim != 4:
        raise ValueError(f"im2col needs (N, H, W, C) codes, not shape {x.shape}")
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                   constant_values=pad_value)
    n, h, w, c = x.shape
    oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel {kernel} is larger than the padded input {h}x{w}")
    out = np.empty((n, oh, ow, kernel, kernel, c), dtype=x.dtype)
    for ky in range(kernel):
        for kx in range(kernel):
            out[:, :, :, ky, kx, :] = x[:, ky:ky + stride * (oh - 1) + 1:stride,
                                        kx:kx + stride * (ow - 1) + 1:stride, :]
    return out.reshape(n, oh, ow, kernel * kernel * c)


def threshold(acc, thresholds) -> np.ndarray:
    """Codes from accumulators: per channel (last axis), the count of ``t <= acc``.

    ``acc`` is ``(..., C)`` integers, ``thresholds`` ``(C, T)`` non-decreasing along
    axis 1. Returns uint8 codes (uint16 if ``T`` > 255) of the shape of ``acc``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    thr = np.asarray(thresholds, dtype=np.int64)
    c, levels = thr.shape
    if acc.shape[-1] != c:
        raise ValueError(f"thresholds are for {c} channels, the accumulator has {acc.shape[-1]}")
    dtype = np.uint8 if levels <= 255 else np.uint16
    if acc.size == 0:
        return np.zeros(acc.shape, dtype)
    if levels <= 15:
        code = np.zeros(acc.shape, dtype)
        for j in range(levels):
            np.add(code, acc >= thr[:, j], out=code, casting="unsafe")
        return code
    # Clip every threshold into [lo, hi + 1] of the data (same counts), then lay the
    # channels side by side in disjoint bands and do one sorted search.
    lo, hi = int(acc.min()), int(acc.max())
    span = hi - lo + 2
    if span * c >= (1 << 62):  # not reachable by valid models; exact fallback
        return np.sum(acc[..., None] >= thr, axis=-1).astype(dtype)
    band = np.arange(c, dtype=np.int64) * span
    flat = (np.clip(thr, lo, hi + 1) - lo + band[:, None]).ravel()
    pos = np.searchsorted(flat, acc - lo + band, side="right")
    return (pos - np.arange(c, dtype=np.int64) * levels).astype(dtype)


def maxpool(codes, kernel: int, stride: int | None = None) -> np.ndarray:
    """Max of ``(N, H, W, C)`` codes over ``kernel`` x ``kernel`` windows, no padding, floor."""
    x = np.asarray(codes)
    s = stride or kernel
    n, h, w, c = x.shape
    oh, ow = (h - kernel) // s + 1, (w - kernel) // s + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"maxpool kernel {kernel} is larger than the input {h}x{w}")
    out = None
    for ky in range(kernel):
        for kx in range(kernel):
            view = x[:, ky:ky + s * (oh - 1) + 1:s, kx:kx + s * (ow - 1) + 1:s, :]
            out = view.copy() if out is None else np.maximum(out, view, out=out)
    return out


# --- dot products ----------------------------------------------------------------------
#
# Each kernel is prepared once per layer call and then asked for the accumulators of a
# range of output rows (rows = frames x output pixels), so that the caller can bound
# memory and, when a threshold follows, turn each chunk into codes while it is in cache.

def _packed_words_t(bytes2d: np.ndarray) -> np.ndarray:
    """(M, L) packed-bit bytes -> (ceil(L/8), M) uint64 words (zero-padded), word-major."""
    m, length = bytes2d.shape
    words = -(-length // 8)
    buf = np.zeros((m, words * 8), np.uint8)
    buf[:, :length] = bytes2d
    return np.ascontiguousarray(buf.view(np.uint64).T)


def _windows_t(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """im2col of ``(N, H, W, C)`` (already padded) as ``(K*K*C, N*H'*W')``, row = column index."""
    n, h, w, c = x.shape
    oh, ow = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    out = np.empty((kernel, kernel, c, n, oh, ow), dtype=x.dtype)
    for ky in range(kernel):
        for kx in range(kernel):
            view = x[:, ky:ky + stride * (oh - 1) + 1:stride, kx:kx + stride * (ow - 1) + 1:stride, :]
            out[ky, kx] = view.transpose(3, 0, 1, 2)
    return out.reshape(kernel * kernel * c, n * oh * ow)


class _XnorKernel:
    """``acc = n - 2 * popcount(x XOR w)`` on bit-packed uint64 words (binary x bipolar)."""

    def __init__(self, layer, x: np.ndarray):
        w = layer.weights
        o, self.n = w.shape
        wbits = (w.dense > 0).astype(np.uint8)
        if isinstance(layer, ir.Conv):
            k, p = layer.kernel, layer.padding
            c = x.shape[3]
            if p:
                x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=layer.pad_value)
            packed = np.packbits(x.astype(np.uint8, copy=False), axis=-1)    # (N, H, W, B)
            wpk = np.packbits(wbits.reshape(o, k * k, c), axis=-1)           # (O, K*K, B)
            if packed.shape[-1] % 8 == 0:   # whole words per pixel: windows of words
                self.xt = _windows_t(np.ascontiguousarray(packed).view(np.uint64), k, layer.stride)
                self.wt = np.ascontiguousarray(np.ascontiguousarray(wpk).view(np.uint64)
                                               .reshape(o, -1).T)
            else:                           # windows of bytes, then words
                win = _windows_t(packed, k, layer.stride)                   # (K*K*B, M)
                self.xt = _packed_words_t(np.ascontiguousarray(win.T))
                self.wt = _packed_words_t(wpk.reshape(o, -1))
        else:
            self.xt = _packed_words_t(np.packbits(x.reshape(len(x), -1).astype(np.uint8, copy=False),
                                                  axis=-1))
            self.wt = _packed_words_t(np.packbits(wbits, axis=-1))
        self.rows = self.xt.shape[1]
        # NumPy's broadcast XOR is faster on long rows, so chunks of ~4096 rows (fewer
        # for very wide layers), split evenly over the pool.
        target = max(1, min(_CHUNK // 16, 16 * _CHUNK // o))
        chunks = max(1, self.rows // target)
        if chunks >= _THREADS:
            chunks -= chunks % _THREADS
        elif self.rows >= 256 * _THREADS:
            chunks = _THREADS
        self.chunk = -(-self.rows // chunks)

    def popcounts(self, lo: int, hi: int) -> np.ndarray:
        """``popcount(x XOR w)`` of rows ``lo:hi``, as ``(O, rows)`` (uint16 if n < 2**16)."""
        words, o = self.wt.shape
        r = hi - lo
        tmp = np.empty((o, r), np.uint64)
        cnt = np.empty((o, r), np.uint8)
        grp = np.empty((o, r), np.uint8)
        acc = np.zeros((o, r), np.uint16 if self.n < (1 << 16) else np.int64)
        # Up to 3 words (192 bits) are counted in uint8, then widened into acc.
        for j0 in range(0, words, 3):
            for j in range(j0, min(words, j0 + 3)):
                np.bitwise_xor(self.xt[j, None, lo:hi], self.wt[j][:, None], out=tmp)
                if j == j0:
                    np.bitwise_count(tmp, out=grp)
                else:
                    np.bitwise_count(tmp, out=cnt)
                    grp += cnt
            np.add(acc, grp, out=acc, casting="unsafe")
        return acc

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        return (self.n - 2 * self.popcounts(lo, hi).astype(np.int64)).T

    def set_threshold(self, thresholds: np.ndarray, bias: np.ndarray | None) -> bool:
        """Fold bias and threshold into popcount limits, so codes need no accumulators.

        ``acc = n + b - 2*pc >= t``  <=>  ``pc <= floor((n + b - t) / 2)``  <=>  ``pc < v``
        with ``v = clip(floor((n + b - t) / 2), -1, n) + 1``; ``t`` is first clipped to
        ``[b - n - 1, b + n + 1]`` (outside the reachable range, same counts, no overflow).
        Returns False (caller falls back to accumulators) for many levels or huge n.
        """
        if thresholds.shape[1] > 15 or self.n + 1 >= (1 << 16):
            return False
        b = np.zeros((thresholds.shape[0], 1), np.int64) if bias is None else bias[:, None]
        t = np.clip(thresholds, b - self.n - 1, b + self.n + 1)
        u = np.clip(np.floor_divide(self.n + b - t, 2), -1, self.n)
        self.limits = (u + 1).astype(np.uint16)
        return True

    def codes(self, lo: int, hi: int) -> np.ndarray:
        """Threshold codes of rows ``lo:hi`` (after :meth:`set_threshold`), ``(rows, O)``."""
        pc = self.popcounts(lo, hi)
        code = np.zeros(pc.shape, np.uint8)
        for j in range(self.limits.shape[1]):
            np.add(code, pc < self.limits[:, j, None], out=code, casting="unsafe")
        return code.T


class _DenseKernel:
    """Exact ``values @ W.T`` by BLAS in float32/float64 where provably exact, else int64.

    The bound ``B = max_out sum_k |w_k| * max|a|`` covers every partial sum BLAS can form
    in any order; all are integers of magnitude <= B, exact in float32 below 2**24 and in
    float64 below 2**53. The inner dimension is zero-padded to a multiple of 8.
    """

    def __init__(self, layer, cols: np.ndarray, bits: int):
        w = layer.weights.decode(layer.weights.dense)
        self.cols, self.bits, self.layer = cols, bits, layer
        o, k = w.shape
        amax = 1 if bits == 1 else (1 << bits) - 1
        bound = int(np.abs(w).sum(axis=1).max(initial=0)) * amax
        self.dtype = (np.float32 if bound < _F32_EXACT else np.float64 if bound < _F64_EXACT
                      else np.int64)
        self.kp = -(-k // 8) * 8 if self.dtype != np.int64 else k
        self.wt = np.zeros((self.kp, o), self.dtype)
        self.wt[:k] = w.T
        self.rows = cols.shape[0]
        self.chunk = max(1, 8 * _CHUNK // (self.kp + o))

    def _matmul(self, lo: int, hi: int) -> np.ndarray:
        k = self.cols.shape[1]
        buf = np.zeros((hi - lo, self.kp), self.dtype)
        buf[:, :k] = _act_values(self.cols[lo:hi], self.bits)
        return buf @ self.wt

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        return self._matmul(lo, hi).astype(np.int64)

    def set_threshold(self, thresholds: np.ndarray, bias: np.ndarray | None) -> bool:
        """Compare the exact float products with ``t - bias`` directly (up to 15 levels).

        ``t`` is first clipped to the reachable ``[lo - 1, hi + 1]`` (same counts), so
        ``t - bias`` lies within ``B + 1`` of zero and is exact in the matmul's dtype.
        """
        if thresholds.shape[1] > 15:
            return False
        lo, hi = ir.layer_acc_range(self.layer, self.bits)
        b = np.zeros_like(lo) if bias is None else bias
        t = np.clip(thresholds, (lo - 1)[:, None], (hi + 1)[:, None]) - b[:, None]
        self.limits = np.ascontiguousarray(t.T).astype(self.dtype)  # (levels, O)
        return True

    def codes(self, lo: int, hi: int) -> np.ndarray:
        acc = self._matmul(lo, hi)
        code = np.zeros(acc.shape, np.uint8)
        for limit in self.limits:
            np.add(code, acc >= limit, out=code, casting="unsafe")
        return code


class _CscKernel:
    """Exact ``values @ W.T`` from the CSC arrays, without a dense matrix.

    The non-zeros are put in output-row order; each one's product with its input column
    is formed in int64 and ``np.add.reduceat`` sums each output's segment.
    """

    def __init__(self, layer, cols: np.ndarray, bits: int):
        w = layer.weights
        self.cols, self.bits, self.outs = cols, bits, w.shape[0]
        col_of = np.repeat(np.arange(w.shape[1]), np.diff(w.colptr))
        rows = w.rows.astype(np.int64)
        order = np.argsort(rows, kind="stable")
        self.col_of, rows = col_of[order], rows[order]
        self.vals = w.decode(w.values)[order]
        self.starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else rows
        self.targets = rows[self.starts] if len(rows) else rows
        self.rows = cols.shape[0]
        self.chunk = max(1, 16 * _CHUNK // max(1, len(self.vals)))

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        out = np.zeros((hi - lo, self.outs), np.int64)
        if len(self.vals):
            prod = _act_values(self.cols[lo:hi, self.col_of], self.bits).astype(np.int64) * self.vals
            out[:, self.targets] = np.add.reduceat(prod, self.starts, axis=1)
        return out


def _act_values(codes: np.ndarray, bits: int) -> np.ndarray:
    """Activation values in a small dtype (bipolar -1/+1 for 1-bit codes)."""
    if bits == 1:
        return codes.astype(np.int8) * 2 - 1
    return codes


def _dot_layer(layer, x: np.ndarray, in_spec: ir.TensorSpec, thresholds=None) -> np.ndarray:
    """Accumulators (bias included) of a conv or fc layer, int64 ``(N, H', W', O)``.

    With ``thresholds`` (of a threshold layer that follows), the result is instead its
    uint8 codes, computed chunk by chunk while the accumulators are in cache.
    """
    bits = in_spec.bits
    w = layer.weights
    n = x.shape[0]
    if isinstance(layer, ir.Conv):
        k, s, p = layer.kernel, layer.stride, layer.padding
        out_shape = (n, (x.shape[1] + 2 * p - k) // s + 1, (x.shape[2] + 2 * p - k) // s + 1,
                     layer.out_channels)
    else:
        out_shape = (n, 1, 1, layer.out_features)
    if not w.sparse and w.kind == "binary" and bits == 1:
        kern = _XnorKernel(layer, x)
    else:
        if isinstance(layer, ir.Conv):
            cols = im2col(x, k, s, p, layer.pad_value).reshape(-1, k * k * x.shape[3])
        else:
            cols = x.reshape(n, -1)
        kern = _CscKernel(layer, cols, bits) if w.sparse else _DenseKernel(layer, cols, bits)
    bias = layer.bias
    out = np.empty((kern.rows, out_shape[3]), np.int64 if thresholds is None else np.uint8)
    fused = (thresholds is not None and hasattr(kern, "set_threshold")
             and kern.set_threshold(thresholds, bias))

    def work(lo_hi):
        lo, hi = lo_hi
        if fused:
            out[lo:hi] = kern.codes(lo, hi)
            return
        acc = kern(lo, hi)
        if bias is not None:
            acc = acc + bias
        out[lo:hi] = acc if thresholds is None else threshold(acc, thresholds)

    chunks = [(lo, min(kern.rows, lo + kern.chunk)) for lo in range(0, kern.rows, kern.chunk)]
    with _blas_single_thread() if isinstance(kern, _DenseKernel) else contextlib.nullcontext() as ctl:
        if _THREADS > 1 and len(chunks) > 1 and ctl is not False:
            list(_executor().map(work, chunks))
        else:
            for ch in chunks:
                work(ch)
    return out.reshape(out_shape)


def _forward(layer, x: np.ndarray, in_spec: ir.TensorSpec) -> np.ndarray:
    """One layer in its natural dtype (codes stay uint8/uint16, accumulators int64)."""
    if isinstance(layer, (ir.Conv, ir.FC)):
        return _dot_layer(layer, x, in_spec)
    if isinstance(layer, ir.Threshold):
        return threshold(x, layer.thresholds)
    if isinstance(layer, ir.MaxPool):
        return maxpool(x, layer.kernel, layer.step)
    raise TypeError(f"unknown layer type {type(layer).__name__}")


def _check_input(x, spec: ir.TensorSpec, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iub":
        raise TypeError(f"{what} must be integer codes, not dtype {x.dtype}")
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(spec.shape):
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, spec.shape))}), "
                         f"not {x.shape}")
    if spec.is_codes:
        top = (1 << spec.bits) - 1
        if x.size and (x.min() < 0 or x.max() > top):
            raise ValueError(f"{what} holds codes outside 0..{top} for {spec.bits}-bit activations")
        return x.astype(_code_dtype(spec.bits), copy=False)
    return x.astype(np.int64, copy=False)


# --- public API ------------------------------------------------------------------------

def layer_forward(layer: ir.Layer, x, in_spec: ir.TensorSpec) -> np.ndarray:
    """Output of one layer on a batch ``x`` ``(N, H, W, C)``; ``in_spec`` describes ``x``.

    Returns int64 ``(N, H', W', C')``: accumulators for conv/fc, codes otherwise.
    """
    x = _check_input(x, in_spec, f"input of layer '{layer.name}'")
    return _forward(layer, x, in_spec).astype(np.int64, copy=False)


def run(model: ir.Model, codes, *, all_layers: bool = False):
    """Execute ``model`` on input codes ``(N, H, W, C)``.

    Returns the int64 scores ``(N, n_classes)`` (the last layer's output flattened in
    ``(y, x, c)`` order), or with ``all_layers=True`` the list of every layer's int64
    output ``(N, H, W, C)``, entry ``i`` for ``model.layers[i]``.
    """
    specs = model.specs()
    x = _check_input(codes, specs[0], "input codes")
    outs = []
    layers = model.layers
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if not all_layers and isinstance(layer, (ir.Conv, ir.FC)) and isinstance(nxt, ir.Threshold):
            # Fused: each chunk of accumulators becomes codes while it is in cache.
            x = _dot_layer(layer, x, specs[i], thresholds=nxt.thresholds)
            i += 2
            continue
        x = _forward(layer, x, specs[i])
        if all_layers:
            outs.append(x.astype(np.int64, copy=False))
        i += 1
    if all_layers:
        return outs
    return x.reshape(x.shape[0], -1).astype(np.int64, copy=False)


def predict(model: ir.Model, codes) -> np.ndarray:
    """Labels (int64): argmax of the scores, ties to the lowest index."""
    return np.argmax(run(model, codes), axis=1).astype(np.int64)


# --- locating mismatches ---------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Mismatch:
    """Where two per-layer output lists first differ (tensor order: frame, y, x, c)."""
    layer: int
    name: str
    frame: int
    y: int
    x: int
    channel: int
    expected: int
    got: int
    count: int

    def __str__(self) -> str:
        return (f"layer {self.layer} '{self.name}', frame {self.frame}, pixel (y={self.y}, "
                f"x={self.x}), channel {self.channel}: expected {self.expected}, got {self.got} "
                f"({self.count} differing elements in this layer)")


def compare_layers(expected: list, got: list, names: list[str] | None = None) -> Mismatch | None:
    """First difference between two lists of per-layer outputs, or ``None``.

    Each entry of ``expected`` is ``(N, H, W, C)``; the matching entry of ``got`` may be
    any array with the same number of elements per frame (e.g. flat words from a
    stream) or ``None`` for a layer that was not observed. ``got`` may be shorter.
    """
    for i, (exp, hw) in enumerate(zip(expected, got)):
        if hw is None:
            continue
        exp = np.asarray(exp)
        hw = np.asarray(hw)
        if hw.size != exp.size:
            raise ValueError(f"layer {i}: {hw.size} elements, expected {exp.size} "
                             f"(shape {exp.shape})")
        hw = hw.reshape(exp.shape)
        diff = exp != hw
        if diff.any():
            idx = np.unravel_index(int(np.argmax(diff.ravel())), exp.shape)
            f, y, x, c = (int(v) for v in idx)
            return Mismatch(layer=i, name=names[i] if names else str(i), frame=f, y=y, x=x,
                            channel=c, expected=int(exp[idx]), got=int(hw[idx]),
                            count=int(diff.sum()))
    return None


def first_mismatch(model: ir.Model, codes, hw_outputs_by_layer: list) -> Mismatch | None:
    """Run the golden model on ``codes`` and locate the first layer output that differs.

    ``hw_outputs_by_layer[i]`` is the observed output of ``model.layers[i]`` for the same
    frames (or ``None`` if not observed). Returns ``None`` when everything matches.
    """
    expected = run(model, codes, all_layers=True)
    return compare_layers(expected, hw_outputs_by_layer, [layer.name for layer in model.layers])


# --- command line ----------------------------------------------------------------------

def _progress(iterable, total):
    from hdl import cli
    return cli.progress(iterable, total=total, desc="golden", unit="rep")


def evaluate(model: ir.Model, x_codes: np.ndarray, labels: np.ndarray, *, reps: int = 3) -> dict:
    """Accuracy and frames/s (best of ``reps`` timed runs after a warm-up) of :func:`run`."""
    scores = run(model, x_codes)
    accuracy = float(np.mean(np.argmax(scores, axis=1) == labels)) if len(labels) else 0.0
    best = float("inf")
    for _ in _progress(range(reps), reps):
        t0 = time.perf_counter()
        run(model, x_codes)
        best = min(best, time.perf_counter() - t0)
    return {"accuracy": accuracy, "frames": int(len(x_codes)),
            "frames_per_s": len(x_codes) / best if best > 0 else float("inf"),
            "seconds_per_run": best}


def main(argv: list[str] | None = None) -> int:
    from hdl import cli
    parser = cli.parser(
        "python -m sim.golden",
        "Run the bit-exact golden model on a data set's test split: accuracy and frames "
        "per second.", json_help="write only the figures as JSON to stdout")
    parser.add_argument("model", help="model file (.npz), a directory holding model.npz, or a QONNX .onnx")
    parser.add_argument("--data", default="digits", help="'digits' (default) or an .npz data set")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (default 3)")
    args = parser.parse_args(argv)
    return cli.run(_main, args)


def _main(args) -> int:
    from hdl import cli
    from sim.data import DataError, load_dataset
    try:
        from hdl.qonnx import load_model       # a model file, or a QONNX graph (.onnx)
        model = load_model(args.model)
        data = load_dataset(args.data)
    except (ir.IRError, DataError) as exc:
        raise cli.BadInput(str(exc)) from None
    if tuple(data.shape) != tuple(model.input.shape):
        raise cli.BadInput(f"data set {data.name} has images {data.shape}, the model expects "
                           f"{tuple(model.input.shape)}")
    if args.reps < 1:
        raise cli.BadInput("--reps must be at least 1")
    codes = model.input.quantize(data.x_test)
    result = evaluate(model, codes, data.y_test, reps=args.reps)
    result = {"model": str(ir.model_path(args.model)), "name": model.name, "data": data.name,
              **result}
    if args.json:
        cli.emit_json(result)
    else:
        print(f"{model.name}: accuracy {100 * result['accuracy']:.2f}% on {result['frames']} "
              f"{data.name} test frames, {result['frames_per_s']:.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
