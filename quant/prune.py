"""Pruning: unstructured magnitude pruning with layer-order schedules, and network slimming.

Unstructured (seed 003, which names "reversed" and "peak" pruning without spelling
them out; the definitions here are ours):

* :func:`layer_order` ``"reversed"``: fully connected layers first (from the output
  backwards), then convolutions from the back; ``"forward"``: input to output.
* :func:`reversed_prune`: each layer in that order is pruned by magnitude to its target
  sparsity (in a few increments), fine-tuning after each increment.
* :func:`peak_prune`: iterative prune/retrain that takes each layer, in the schedule's
  order, to the highest candidate sparsity at which accuracy on a validation split
  carved from the training data stays within ``tolerance`` (0.5 point) of the unpruned
  model.

Masks are buffers of the layers (``layer.mask``); the training loop re-applies them
after every step, so they stay applied through fine-tuning, INQ and export.

Structured (network slimming, Liu et al. 2017; the FLRPM idea of seed 002):
:func:`slim` removes the channels with the smallest BatchNorm ``|gamma|`` (a global or a
per-layer ratio; train with an L1 penalty on gamma first, ``fit(gamma_l1=...)``) and
returns a physically smaller network with the remaining weights copied.
"""

from __future__ import annotations

import copy

import torch

from .loop import evaluate, fit
from .model import QNet

__all__ = ["layer_order", "prune_layer", "reversed_prune", "peak_prune", "slim", "conv_channels"]


def layer_order(net, schedule: str = "reversed") -> list[int]:
    """Indices into ``net.quant_layers()`` in pruning order."""
    layers = net.quant_layers()
    n_conv = sum(1 for b in net.blocks if b.conv)
    convs = list(range(n_conv))
    fcs = list(range(n_conv, len(layers)))
    if schedule == "reversed":
        return fcs[::-1] + convs[::-1]
    if schedule == "forward":
        return convs + fcs
    raise ValueError(f"schedule must be 'reversed' or 'forward', not {schedule!r}")


@torch.no_grad()
def prune_layer(layer, sparsity: float) -> float:
    """Magnitude-prune ``layer`` so that ``sparsity`` of its weights are zero (never unprunes)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity}")
    w = (layer.weight * layer.mask).abs().flatten()
    n = w.numel()
    k = int(round(sparsity * n))
    mask = layer.mask.clone().flatten()
    if k > 0:
        idx = torch.argsort(w, stable=True)[:k]
        mask[idx] = False
    layer.mask.copy_(mask.view_as(layer.mask) & layer.mask)
    layer.apply_mask()
    return 1.0 - float(layer.mask.float().mean())


def reversed_prune(net, data, targets: dict[int, float], *, schedule: str = "reversed",
                   increments: int = 2, epochs: int = 2, lr: float = 2e-3, seed: int = 0,
                   progress: bool = True) -> dict:
    """Prune each layer (schedule order) to ``targets[i]`` in ``increments``, fine-tuning."""
    layers = net.quant_layers()
    done = {}
    for i in layer_order(net, schedule):
        if i not in targets:
            continue
        for step in range(1, increments + 1):
            prune_layer(layers[i], targets[i] * step / increments)
            fit(net, data, epochs=epochs, lr=lr, seed=seed + 17 * i + step,
                desc=f"prune L{i} {targets[i] * step / increments:.0%}", progress=progress)
        done[i] = 1.0 - float(layers[i].mask.float().mean())
    return done


def peak_prune(net, data, val, *, candidates=(0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98),
               tolerance: float = 0.005, schedule: str = "reversed", epochs: int = 2,
               lr: float = 2e-3, seed: int = 0, progress: bool = True,
               base: float | None = None) -> dict:
    """Per layer, the highest candidate sparsity within ``tolerance`` of the unpruned model.

    ``val`` is ``(x_val, y_val)`` carved from the training data (never the test split).
    ``base`` is the unpruned model's validation accuracy (default: ``net`` as given, which
    then must be unpruned). Returns ``{"base_val_accuracy", "reached": {layer index:
    sparsity}}`` and leaves the masks applied.
    """
    x_val, y_val = val
    if base is None:
        base = evaluate(net, x_val, y_val)
    layers = net.quant_layers()
    reached = {}
    for i in layer_order(net, schedule):
        best = 1.0 - float(layers[i].mask.float().mean())
        for s in candidates:
            if s <= best:
                continue
            saved = copy.deepcopy(net.state_dict())
            prune_layer(layers[i], s)
            fit(net, data, epochs=epochs, lr=lr, seed=seed + 31 * i + int(s * 1000),
                desc=f"peak L{i} {s:.0%}", progress=progress)
            acc = evaluate(net, x_val, y_val)
            if acc >= base - tolerance:
                best = s
            else:
                net.load_state_dict(saved)
                break
        reached[i] = best
    return {"base_val_accuracy": base, "reached": reached}


def conv_channels(net) -> int:
    return sum(b.layer.out_channels for b in net.blocks if b.conv)


@torch.no_grad()
def slim(net, ratio: float, *, per_layer: bool = False, min_keep: int = 4, conv_only: bool = True):
    """A new, physically smaller copy of ``net`` without the channels of smallest |gamma|.

    ``ratio`` is the fraction of channels removed: over all pruned blocks at once
    (a global |gamma| threshold, network slimming) or in every block (``per_layer``).
    Every block keeps at least ``min_keep`` channels.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), not {ratio}")
    blocks = [b for b in net.blocks if b.conv or not conv_only]
    gammas = [b.bn.weight.abs() for b in blocks]
    keep = {}
    if per_layer:
        for b, g in zip(blocks, gammas):
            k = max(min_keep, len(g) - int(round(ratio * len(g))))
            keep[id(b)] = torch.sort(torch.argsort(g, descending=True)[:k]).values
    else:
        allg = torch.cat(gammas)
        n_remove = int(round(ratio * len(allg)))
        thr = torch.sort(allg).values[n_remove - 1] if n_remove > 0 else torch.tensor(-1.0)
        for b, g in zip(blocks, gammas):
            idx = torch.nonzero(g > thr).flatten()
            if len(idx) < min_keep:
                idx = torch.sort(torch.argsort(g, descending=True)[:min_keep]).values
            keep[id(b)] = idx
    kept = [keep.get(id(b), torch.arange(b.bn.num_features)) for b in net.blocks]
    convs = [len(k) for k, b in zip(kept, net.blocks) if b.conv]
    fcs = [len(k) for k, b in zip(kept, net.blocks) if not b.conv]
    new = QNet(net.arch.with_widths(convs, fcs), net.spec, in_shape=net.in_shape,
               in_bits=net.in_bits, n_classes=net.n_classes)
    new.load_state_dict(_sliced_state(net, new, kept))
    for a, b in zip(net.modules(), new.modules()):
        if hasattr(a, "enabled"):
            b.enabled = a.enabled
    return new


def _sliced_state(net, new, kept) -> dict:
    old = net.state_dict()
    state = {}
    prev = None                      # kept indices of the previous block's channels
    prev_hw = None                   # (H, W) at the flatten point
    h, w = net.in_shape[1:]
    for i, (b, k) in enumerate(zip(net.blocks, kept)):
        pre = f"blocks.{i}."
        for name in ("layer.weight", "layer.mask"):
            t = old[pre + name][k]
            if prev is not None:
                if b.conv:
                    t = t[:, prev]
                elif prev_hw is not None:
                    c_old = len(prev_full)
                    t = t.reshape(len(k), prev_hw[0], prev_hw[1], c_old)[..., prev].reshape(len(k), -1)
                else:
                    t = t[:, prev]
            state[pre + name] = t
        for name in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
            state[pre + name] = old[pre + name][k]
        state[pre + "bn.num_batches_tracked"] = old[pre + "bn.num_batches_tracked"]
        for name, v in old.items():
            if name.startswith(pre + "act.") or name.startswith(pre + "layer.weight_quant."):
                state[name] = v
        if b.conv:
            h, w = h + 2 * b.layer.pad - b.layer.kernel_size[0] + 1, w + 2 * b.layer.pad - b.layer.kernel_size[0] + 1
            if b.pool:
                h, w = h // 2, w // 2
            prev_hw = (h, w)
        else:
            prev_hw = None
        prev, prev_full = k, torch.arange(b.bn.num_features)
    for name in ("last.weight", "last.mask"):
        t = old[name]
        if prev_hw is not None:
            t = t.reshape(t.shape[0], prev_hw[0], prev_hw[1], len(prev_full))[..., prev].reshape(t.shape[0], -1)
        else:
            t = t[:, prev]
        state[name] = t
    state["last.bias"] = old["last.bias"]
    for name, v in old.items():
        if name.startswith("last.weight_quant."):
            state[name] = v
    assert set(state) == set(new.state_dict()), set(new.state_dict()) ^ set(state)
    return state
