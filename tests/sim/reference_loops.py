"""A plain-loop reference of the model semantics, written separately from ``sim.golden``.

It reads the IR's data classes only and re-derives every rule from ``hdl/ir.py``'s
docstrings: power-of-two codes, bipolar values, CSC storage, padding by code,
``(ky, kx, c)`` im2col order, ``(y, x, c)`` flattening, thresholds as counts, max-pool
in floor mode. Everything is Python integers and explicit loops over frames, pixels,
channels and kernel offsets: slow, obvious, only for small cases.
"""

from __future__ import annotations

import numpy as np

from hdl import ir


def act_value(code: int, bits: int) -> int:
    """Value of one activation code: bipolar for 1 bit, the code itself otherwise."""
    if bits == 1:
        return 1 if code == 1 else -1
    return code


def weight_value(stored: int, kind: str, bits: int) -> int:
    """Value of one stored weight; ``pot`` codes are ``sign << (bits-1) | mag``."""
    if kind != "pot":
        return int(stored)
    sign = (stored >> (bits - 1)) & 1
    mag = stored & ((1 << (bits - 1)) - 1)
    if mag == 0:
        return 0
    value = 2 ** (mag - 1)
    return -value if sign else value


def weight_matrix(w: ir.Weights) -> list[list[int]]:
    """Rows x cols of Python ints, read from the dense array or walked from CSC."""
    rows, cols = w.shape
    m = [[0] * cols for _ in range(rows)]
    if w.dense is not None:
        for r in range(rows):
            for c in range(cols):
                m[r][c] = weight_value(int(w.dense[r, c]), w.kind, w.bits)
    else:
        for c in range(cols):
            for idx in range(int(w.colptr[c]), int(w.colptr[c + 1])):
                m[int(w.rows[idx])][c] = weight_value(int(w.values[idx]), w.kind, w.bits)
    return m


def conv(x, bits: int, layer: ir.Conv):
    """x: nested lists [n][y][x][c] of codes -> accumulators [n][y'][x'][o]."""
    m = weight_matrix(layer.weights)
    k, s, p = layer.kernel, layer.stride, layer.padding
    n, h, w, c = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = []
    for f in range(n):
        frame = []
        for oy in range(oh):
            row = []
            for ox in range(ow):
                pixel = []
                for o in range(layer.out_channels):
                    acc = 0
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = oy * s + ky - p, ox * s + kx - p
                            inside = 0 <= iy < h and 0 <= ix < w
                            for ci in range(c):
                                code = x[f][iy][ix][ci] if inside else layer.pad_value
                                col = (ky * k + kx) * c + ci
                                acc += m[o][col] * act_value(code, bits)
                    if layer.bias is not None:
                        acc += int(layer.bias[o])
                    pixel.append(acc)
                row.append(pixel)
            frame.append(row)
        out.append(frame)
    return out


def fc(x, bits: int, layer: ir.FC):
    m = weight_matrix(layer.weights)
    out = []
    for frame in x:
        flat = [code for row in frame for pixel in row for code in pixel]  # (y, x, c)
        scores = []
        for o in range(layer.out_features):
            acc = 0
            for i, code in enumerate(flat):
                acc += m[o][i] * act_value(code, bits)
            if layer.bias is not None:
                acc += int(layer.bias[o])
            scores.append(acc)
        out.append([[scores]])
    return out


def threshold(x, layer: ir.Threshold):
    t = layer.thresholds
    out = []
    for frame in x:
        out.append([[[sum(1 for level in t[ci] if acc >= int(level)) for ci, acc in enumerate(pixel)]
                     for pixel in row] for row in frame])
    return out


def maxpool(x, layer: ir.MaxPool):
    k = layer.kernel
    s = layer.stride or layer.kernel
    out = []
    for frame in x:
        h, w, c = len(frame), len(frame[0]), len(frame[0][0])
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
        rows = []
        for oy in range(oh):
            row = []
            for ox in range(ow):
                pixel = []
                for ci in range(c):
                    best = None
                    for ky in range(k):
                        for kx in range(k):
                            v = frame[oy * s + ky][ox * s + kx][ci]
                            best = v if best is None or v > best else best
                    pixel.append(best)
                row.append(pixel)
            rows.append(row)
        out.append(rows)
    return out


def run_all(model: ir.Model, codes) -> list[np.ndarray]:
    """Every layer's output as int64 arrays (N, H, W, C), computed by loops."""
    x = np.asarray(codes).astype(np.int64).tolist()
    bits = model.input.bits
    outs = []
    for layer in model.layers:
        if isinstance(layer, ir.Conv):
            x, bits = conv(x, bits, layer), None
        elif isinstance(layer, ir.FC):
            x, bits = fc(x, bits, layer), None
        elif isinstance(layer, ir.Threshold):
            x, bits = threshold(x, layer), layer.bits
        elif isinstance(layer, ir.MaxPool):
            x = maxpool(x, layer)
        else:
            raise TypeError(type(layer).__name__)
        outs.append(np.array(x, dtype=np.int64))
    return outs


def labels(scores) -> list[int]:
    """Argmax per frame, ties to the lowest index, by a loop."""
    result = []
    for row in np.asarray(scores).tolist():
        best = 0
        for i, v in enumerate(row):
            if v > row[best]:
                best = i
        result.append(best)
    return result
