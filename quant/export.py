"""Export a trained :class:`quant.model.QNet` to the IR (``hdl.ir``).

* Each hidden block becomes ``conv``/``fc`` (integer weight values) + ``threshold``
  [+ ``maxpool``]. BatchNorm and the activation quantizer fold into ``2**bits - 1``
  integer thresholds per channel. A channel whose codes decrease with its accumulator
  (BatchNorm scale < 0) has its weight row negated, so every channel is increasing and
  the next layer sees the same codes.
* Threshold ``t_j`` of a channel is the smallest integer accumulator ``a`` (within the
  exact accumulator range) with ``code(a) >= j``, found by bisection on
  :meth:`quant.model.Block.codes_from_acc`, the same float64 function the PyTorch
  exact eval pass uses. ``code`` is non-decreasing (IEEE operations are monotone), so
  ``#{j : a >= t_j} = code(a)`` for every reachable accumulator: no rounding can flip
  an activation between PyTorch and the exported model.
* The last layer emits ``acc + bias`` (integer ``bias``), and ``output_scale`` is the
  one positive scale with ``float score = output_scale * integer score``.
* A layer is written as CSC when that takes fewer bits than dense
  (``ir.Weights.storage_bits``).
"""

from __future__ import annotations

import numpy as np
import torch

from hdl import ir

from .model import QNet

__all__ = ["export", "choose_format", "storage_report", "predict"]


def choose_format(matrix: np.ndarray, kind: str, bits: int) -> ir.Weights:
    """Dense or CSC weights, whichever stores in fewer bits."""
    dense = ir.Weights.from_matrix(matrix, kind, bits)
    if not np.any(matrix == 0):
        return dense
    csc = ir.Weights.from_matrix(matrix, kind, bits, sparse=True)
    return csc if csc.storage_bits() < dense.storage_bits() else dense


def _kind_bits(layer) -> tuple[str, int]:
    wq = layer.weight_quant
    return wq.kind, wq.bits


def _thresholds(block, s: torch.Tensor, neg: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(C, L) int64 thresholds by bisection on the block's own code function."""
    levels = block.act.levels
    c = len(lo)
    j = np.arange(1, levels + 1, dtype=np.int64)[None, :]
    left = np.repeat(lo[:, None], levels, axis=1).astype(np.int64)
    right = np.repeat(hi[:, None] + 1, levels, axis=1).astype(np.int64)
    negt = torch.from_numpy(neg)[None, :]

    def code(a: np.ndarray) -> np.ndarray:
        acc = torch.from_numpy(a.T.astype(np.float64))  # (L, C): channel last
        acc = torch.where(negt, -acc, acc)
        return block.codes_from_acc(acc, s).numpy().T.astype(np.int64)

    while np.any(left < right):
        mid = (left + right) // 2
        ok = code(mid) >= j
        right = np.where(ok, mid, right)
        left = np.where(ok, left, mid + 1)
    assert left.shape == (c, levels)
    return left


def export(net: QNet, input_spec: ir.InputSpec, classes, *, name: str = "model",
           metadata: dict | None = None, sparse: bool | None = None) -> ir.Model:
    """Fold and quantize ``net`` (eval mode) into a validated :class:`hdl.ir.Model`.

    ``sparse``: None chooses per layer by storage size; True/False forces CSC/dense.
    """
    net.eval()
    layers: list = []
    in_step = torch.ones((), dtype=torch.float64)
    in_bits = input_spec.bits
    spec = net.spec
    for i, block in enumerate(net.blocks):
        w_int, scale = block.layer.integer_weight()
        s = scale * in_step
        neg = block.bn_direction(s).numpy()
        if block.conv:
            m = w_int.permute(0, 2, 3, 1).reshape(w_int.shape[0], -1).numpy()
        else:
            m = w_int.numpy()
        m = np.where(neg[:, None], -m, m).astype(np.int64)
        kind, bits = _kind_bits(block.layer)
        weights = _weights(m, kind, bits, sparse)
        lname = f"{'conv' if block.conv else 'fc'}{i}"
        if block.conv:
            layer = ir.Conv(name=lname, out_channels=m.shape[0], kernel=block.layer.kernel_size[0],
                            stride=block.layer.stride[0], padding=block.layer.pad,
                            pad_value=spec.pad_code, weights=weights)
        else:
            layer = ir.FC(name=lname, out_features=m.shape[0], weights=weights)
        lo, hi = ir.layer_acc_range(layer, in_bits)
        th = _thresholds(block, s, neg, lo, hi)
        layers += [layer, ir.Threshold(name=f"act{i}", bits=block.act.bits, thresholds=th)]
        if block.pool:
            layers.append(ir.MaxPool(name=f"pool{i}", kernel=2))
        in_step = block.act.step().double()
        in_bits = block.act.bits
    w_int, scale = net.last.integer_weight()
    out_scale = (scale * in_step).reshape(())
    bias = net.int_bias(out_scale).numpy().astype(np.int64)
    kind, bits = _kind_bits(net.last)
    layers.append(ir.FC(name="fc_out", out_features=w_int.shape[0],
                        weights=_weights(w_int.numpy().astype(np.int64), kind, bits, sparse),
                        bias=bias))
    model = ir.Model(name=name, input=input_spec, layers=layers, classes=tuple(classes),
                     output_scale=float(out_scale.detach()), metadata=dict(metadata or {}))
    return model.validate(name)


def _weights(m, kind, bits, sparse):
    if sparse is None:
        return choose_format(m, kind, bits)
    return ir.Weights.from_matrix(m, kind, bits, sparse=sparse)


def storage_report(model: ir.Model) -> dict:
    """Per-layer sparsity, fp32 bytes and exported bytes of the weights."""
    sparsity, fp32_bits, exp_bits = {}, 0, 0
    for layer in model.layers:
        if isinstance(layer, (ir.Conv, ir.FC)):
            w = layer.weights
            n = w.shape[0] * w.shape[1]
            sparsity[layer.name] = round(1 - w.nnz / n, 6)
            fp32_bits += 32 * n
            exp_bits += w.storage_bits()
    total = sum(l.weights.shape[0] * l.weights.shape[1] for l in model.layers
                if isinstance(l, (ir.Conv, ir.FC)))
    nnz = sum(l.weights.nnz for l in model.layers if isinstance(l, (ir.Conv, ir.FC)))
    return {"sparsity": sparsity, "sparsity_total": round(1 - nnz / total, 6),
            "weights_total": total, "bytes_fp32": fp32_bits / 8, "bytes_exported": exp_bits / 8,
            "compression_ratio": round(fp32_bits / exp_bits, 3)}


def predict(model: ir.Model, codes: np.ndarray) -> np.ndarray:
    """Labels from the golden model (``sim.golden.predict``)."""
    from sim import golden
    return np.asarray(golden.predict(model, codes))
