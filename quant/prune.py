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

Block (tile) pruning, for engines that skip all-zero PE x SIMD tiles of the weight
matrix (rows = output channels, columns = im2col inputs in (ky, kx, c) order, c
fastest; fc columns in the model file's order): :func:`prune_blocks` zeroes whole
``rows x cols`` blocks of that matrix by the L1 or L2 norm of their float weights;
:func:`block_prune` takes every listed layer there together in ``increments`` steps
(linear or cubic ramp), fine-tuning after each. A convolution's block columns lie inside
one kernel position's channels (``cols`` divides the input channels), so a hardware tile
whose SIMD divides ``cols`` and PE divides ``rows`` is all zero inside a zero block.

Structured (network slimming, Liu et al. 2017; the FLRPM idea of seed 002):
:func:`slim` removes the channels with the smallest BatchNorm ``|gamma|`` (a global or a
per-layer ratio; train with an L1 penalty on gamma first, ``fit(gamma_l1=...)``) and
returns a physically smaller network with the remaining weights copied.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from .loop import evaluate, fit
from .model import QNet

__all__ = ["layer_order", "prune_layer", "reversed_prune", "peak_prune", "slim", "conv_channels",
           "weight_matrix", "check_block", "block_norms", "block_keep", "prune_blocks",
           "block_prune", "block_schedule", "zero_blocks"]


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


def weight_matrix(t: torch.Tensor) -> torch.Tensor:
    """The hardware matrix of a layer tensor: conv (O, C, kh, kw) -> (O, kh*kw*C), fc as is."""
    return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1) if t.dim() == 4 else t


def _from_matrix(m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.dim() == 4:
        o, c, kh, kw = like.shape
        return m.reshape(o, kh, kw, c).permute(0, 3, 1, 2)
    return m


def check_block(layer, block) -> tuple[int, int]:
    """``(rows, cols)`` of a block that tiles ``layer``'s matrix; ValueError otherwise."""
    if (not isinstance(block, (tuple, list)) or len(block) != 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in block)):
        raise TypeError(f"block must be a (rows, cols) pair of ints, not {block!r}")
    r, c = block
    out = layer.weight.shape[0]
    # a conv block stays inside one kernel position: cols divides the input channels
    width = layer.weight.shape[1]
    what = "input channels" if layer.weight.dim() == 4 else "input width"
    if r < 1 or out % r:
        raise ValueError(f"block rows must divide the output channels {out}, not {r}")
    if c < 1 or width % c:
        raise ValueError(f"block cols must divide the {what} {width}, not {c}")
    return r, c


def _blocks(m: torch.Tensor, r: int, c: int) -> torch.Tensor:
    """(O, K) -> (O/r, K/c, r, c)."""
    o, k = m.shape
    return m.reshape(o // r, r, k // c, c).permute(0, 2, 1, 3)


def block_norms(layer, block, norm: str = "l2") -> torch.Tensor:
    """(O/rows, K/cols) L1 or L2 norms of the blocks of the masked float weights."""
    r, c = check_block(layer, block)
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', not {norm!r}")
    b = _blocks(weight_matrix((layer.weight * layer.mask).detach()), r, c).flatten(2)
    return b.abs().sum(-1) if norm == "l1" else b.pow(2).sum(-1).sqrt()


def block_keep(layer, block) -> torch.Tensor:
    """(O/rows, K/cols) bool: True where the block has a live (unmasked) weight."""
    r, c = check_block(layer, block)
    return _blocks(weight_matrix(layer.mask), r, c).flatten(2).any(-1)


def zero_blocks(matrix, block) -> float:
    """Fraction of all-zero ``rows x cols`` blocks of a (O, K) matrix (numpy or torch)."""
    m = torch.as_tensor(np.asarray(matrix))
    r, c = block
    if m.dim() != 2 or m.shape[0] % r or m.shape[1] % c:
        raise ValueError(f"block {r}x{c} must tile the matrix {tuple(m.shape)}")
    live = _blocks(m != 0, r, c).flatten(2).any(-1)
    return (live.numel() - int(live.sum())) / live.numel()


@torch.no_grad()
def prune_blocks(layer, sparsity: float, block, norm: str = "l2") -> float:
    """Zero the ``sparsity`` fraction of blocks of smallest norm (never unprunes).

    Returns the fraction of blocks now fully masked.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity}")
    r, c = check_block(layer, block)
    norms = block_norms(layer, (r, c), norm)
    keep = block_keep(layer, (r, c))
    k = int(round(sparsity * norms.numel()))
    if k > 0:
        # dead blocks first, then live ones by norm
        order = torch.argsort(torch.where(keep, norms, torch.full_like(norms, -1.0)).flatten(),
                              stable=True)
        flat = keep.flatten().clone()
        flat[order[:k]] = False
        keep = flat.view_as(keep)
    full = keep[:, None, :, None].expand(-1, r, -1, c)          # (O/r, r, K/c, c)
    m = full.reshape(layer.weight.shape[0], -1)
    layer.mask.copy_(layer.mask & _from_matrix(m, layer.mask))
    layer.apply_mask()
    keep = block_keep(layer, (r, c))
    return (keep.numel() - int(keep.sum())) / keep.numel()


def block_schedule(target: float, increments: int, ramp: str = "linear") -> list[float]:
    """Block sparsity after each increment: linear, or cubic (Zhu & Gupta 2017: fast first)."""
    if isinstance(increments, bool) or not isinstance(increments, int) or increments < 1:
        raise ValueError(f"increments must be a positive int, not {increments!r}")
    if ramp == "linear":
        return [target * t / increments for t in range(1, increments + 1)]
    if ramp == "cubic":
        return [target * (1 - (1 - t / increments) ** 3) for t in range(1, increments + 1)]
    raise ValueError(f"ramp must be 'linear' or 'cubic', not {ramp!r}")


def block_prune(net, data, targets: dict[int, float], block, *, norm: str = "l2",
                increments: int = 3, ramp: str = "linear", epochs: int = 2, lr: float = 2e-3,
                seed: int = 0, progress: bool = True) -> dict:
    """Block-prune layers ``targets`` (index into ``net.quant_layers()`` -> block sparsity).

    ``block`` is one (rows, cols) for every layer or a dict per layer index. All layers
    step together along :func:`block_schedule`, with ``epochs`` of fine-tuning after each
    step. Returns the fraction of zero blocks reached per layer.
    """
    layers = net.quant_layers()
    shapes = {}
    for i in targets:
        if not 0 <= i < len(layers):
            raise ValueError(f"layer index must be in 0..{len(layers) - 1}, not {i}")
        shapes[i] = check_block(layers[i], block[i] if isinstance(block, dict) else block)
    steps = {i: block_schedule(t, increments, ramp) for i, t in targets.items()}
    done = {}
    for step in range(increments):
        for i in targets:
            done[i] = prune_blocks(layers[i], steps[i][step], shapes[i], norm)
        fit(net, data, epochs=epochs, lr=lr, seed=seed + step,
            desc=f"block prune {step + 1}/{increments}", progress=progress)
    return done


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
