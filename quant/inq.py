"""Incremental network quantization (INQ, Zhou et al. 2017; seed 004) to power-of-two weights.

The exponent window of each ``pot`` layer is fixed from the pretrained ``max|W|``
(``e_max = floor(log2(4/3 max|W|))``). Then, in steps, the largest-magnitude 50%,
75%, 87.5% and 100% of each layer's (unpruned) weights are quantized and frozen; the
rest are retrained in float between steps. Pruning masks stay applied.
"""

from __future__ import annotations

import torch

from .loop import evaluate
from .loop import fit as default_fit
from .quantizers import pot_exponents

__all__ = ["INQ_STEPS", "inq"]

INQ_STEPS = (0.5, 0.75, 0.875, 1.0)


def _pot_layers(net):
    return [l for l in net.quant_layers() if l.weight_quant is not None and l.weight_quant.kind == "pot"]


@torch.no_grad()
def _freeze(layer, fraction: float):
    wq = layer.weight_quant
    w = layer.weight * layer.mask
    live = layer.mask
    n_live = int(live.sum())
    k = int(round(fraction * n_live))
    frozen = torch.zeros_like(live)
    if k > 0:
        mags = torch.where(live, w.abs(), torch.full_like(w, -1.0)).flatten()
        idx = torch.topk(mags, k).indices
        frozen.view(-1)[idx] = True
    if wq.inq_frozen is not None:
        frozen |= wq.inq_frozen  # once frozen, always frozen
    wq.inq_frozen = frozen
    wq.enabled = True
    q = wq.quantize(w)[0].detach() * wq.quantize(w)[1]
    layer.weight.copy_(torch.where(frozen, q, layer.weight))
    return torch.where(frozen, q, torch.zeros_like(q))


def inq(net, data, *, epochs_per_step: int, lr: float, seed: int, steps=INQ_STEPS,
        progress: bool = True, fit=None) -> dict:
    """Run INQ on every ``pot`` layer of ``net``; returns per-step accuracies (float32 path)."""
    fit = fit or default_fit
    layers = _pot_layers(net)
    with torch.no_grad():
        for layer in layers:
            w = layer.weight * layer.mask
            layer.weight_quant.e_max.fill_(float(pot_exponents(w.abs().max(), layer.weight_quant.bits)[0]))
    # activations quantized from the start; weights partially float during INQ
    for m in net.modules():
        if hasattr(m, "levels"):
            m.enabled = True
    history = {}
    for i, frac in enumerate(steps):
        frozen_vals = [(_freeze(l, frac), l.weight_quant.inq_frozen) for l in layers]

        def hold(phase, frozen_vals=frozen_vals):
            if phase == "step":
                with torch.no_grad():
                    for layer, (q, fr) in zip(layers, frozen_vals):
                        layer.weight.copy_(torch.where(fr, q, layer.weight))

        fit(net, data, epochs=epochs_per_step, lr=lr, seed=seed + i, desc=f"INQ {frac:.1%}",
            progress=progress, after_step=hold)
        history[f"{frac:.4f}"] = evaluate(net, data.x_test, data.y_test)
    for layer in layers:
        layer.weight_quant.inq_frozen = None
    return history
