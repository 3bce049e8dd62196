"""Random but valid models: for tests, hardware figures and the reference topologies.

Weights are random, thresholds are drawn inside each channel's reachable accumulator
range so that every activation code actually occurs. Nothing here is trained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hdl import ir

__all__ = ["LayerPlan", "random_weights", "block_prune", "random_thresholds", "build_model",
           "cnv", "sfc", "lfc", "alexnet", "ALEXNET_DENSITIES"]


@dataclass(frozen=True, kw_only=True)
class LayerPlan:
    """One compute block: ``conv`` or ``fc``, optional threshold and max-pool after it.

    ``act_bits`` is the width of the threshold's output codes; ``None`` marks the last
    layer, which emits scores. ``density`` < 1 stores the weights as CSC, or, with
    ``block`` ``(rows, cols)``, keeps that share of the blocks and stores them dense.
    """
    op: str
    out: int
    kind: str = "binary"
    wbits: int | None = None
    act_bits: int | None = 1
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    pad_value: int = 0
    pool: int = 0
    density: float = 1.0
    block: tuple[int, int] | None = None
    bias: bool = False


def random_weights(rng: np.random.Generator, rows: int, cols: int, kind: str,
                   bits: int | None = None, density: float = 1.0,
                   block: tuple[int, int] | None = None) -> ir.Weights:
    """A random weight matrix of the given kind, CSC when ``density`` < 1; with ``block``
    ``(r, c)`` (dividing the shape) whole ``r`` x ``c`` blocks are zeroed instead, each
    kept with probability ``density``, and the matrix is stored dense."""
    bits = {"binary": 1, "ternary": 2}.get(kind, bits)
    if kind == "binary":
        m = rng.choice(np.array([-1, 1]), size=(rows, cols))
    elif kind == "ternary":
        m = rng.integers(-1, 2, size=(rows, cols))
    elif kind == "int":
        m = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(rows, cols))
    elif kind == "pot":
        emax = (1 << (bits - 1)) - 2
        m = rng.choice(np.array([-1, 1]), size=(rows, cols)) << rng.integers(0, emax + 1, size=(rows, cols))
        m = np.where(rng.random((rows, cols)) < 0.1, 0, m)
    else:
        raise ValueError(f"unknown weight kind {kind!r}")
    if block is not None:
        m = block_prune(rng, m, block, density)
        return ir.Weights.from_matrix(m, kind, bits, sparse=kind == "binary" and bool((m == 0).any()))
    if density < 1.0:
        m = np.where(rng.random((rows, cols)) < density, m, 0)
    return ir.Weights.from_matrix(m, kind, bits, sparse=density < 1.0)


def block_prune(rng: np.random.Generator, m: np.ndarray, block: tuple[int, int], density: float) -> np.ndarray:
    """``m`` with each ``block`` ``(r, c)`` tile kept with probability ``density``, else zeroed."""
    r, c = block
    rows, cols = m.shape
    if r < 1 or c < 1 or rows % r or cols % c:
        raise ValueError(f"block must divide the weight shape {m.shape}, not {block}")
    keep = rng.random((rows // r, cols // c)) < density
    return np.where(np.repeat(np.repeat(keep, r, axis=0), c, axis=1), m, 0)


def random_thresholds(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    """Sorted int64 thresholds per channel, drawn in ``[lo - 1, hi + 1]`` of that channel."""
    n = (1 << bits) - 1
    t = rng.integers(lo[:, None] - 1, hi[:, None] + 2, size=(len(lo), n))
    return np.sort(t, axis=1).astype(np.int64)


def build_model(plans: list[LayerPlan], *, input_shape: tuple[int, int, int], input_bits: int = 8,
                seed: int = 0, name: str = "random", classes: list[str] | None = None,
                input_scale: float = 1.0) -> ir.Model:
    """A valid model from a list of :class:`LayerPlan` with random weights and thresholds."""
    rng = np.random.default_rng(seed)
    layers: list[ir.Layer] = []
    shape, bits = input_shape, input_bits
    for i, plan in enumerate(plans):
        h, w, c = shape
        if plan.op == "conv":
            weights = random_weights(rng, plan.out, plan.kernel * plan.kernel * c, plan.kind,
                                     plan.wbits, plan.density, plan.block)
            bias = rng.integers(-8, 9, size=plan.out).astype(np.int64) if plan.bias else None
            layer = ir.Conv(name=f"conv{i}", out_channels=plan.out, kernel=plan.kernel,
                            stride=plan.stride, padding=plan.padding, pad_value=plan.pad_value,
                            weights=weights, bias=bias)
            oh = (h + 2 * plan.padding - plan.kernel) // plan.stride + 1
            ow = (w + 2 * plan.padding - plan.kernel) // plan.stride + 1
            shape = (oh, ow, plan.out)
        else:
            weights = random_weights(rng, plan.out, h * w * c, plan.kind, plan.wbits, plan.density,
                                     plan.block)
            bias = rng.integers(-8, 9, size=plan.out).astype(np.int64) if plan.bias else None
            layer = ir.FC(name=f"fc{i}", out_features=plan.out, weights=weights, bias=bias)
            shape = (1, 1, plan.out)
        layers.append(layer)
        if plan.act_bits is None:
            break
        lo, hi = ir.layer_acc_range(layer, bits)
        # Centre thresholds near the typical accumulator: a random +-1 sum is near 0.
        spread = np.maximum((hi - lo) // 8, 1)
        mid = (lo + hi) // 2
        layers.append(ir.Threshold(name=f"act{i}", bits=plan.act_bits,
                                   thresholds=random_thresholds(rng, mid - spread, mid + spread,
                                                                plan.act_bits)))
        bits = plan.act_bits
        if plan.pool:
            layers.append(ir.MaxPool(name=f"pool{i}", kernel=plan.pool))
            shape = ((shape[0] - plan.pool) // plan.pool + 1, (shape[1] - plan.pool) // plan.pool + 1,
                     shape[2])
    n_out = shape[0] * shape[1] * shape[2]
    classes = classes or [str(k) for k in range(n_out)]
    return ir.Model(name=name, input=ir.InputSpec(shape=input_shape, bits=input_bits, scale=input_scale),
                    layers=layers, classes=classes).validate(name)


def cnv(*, wbits: int = 1, abits: int = 1, seed: int = 0) -> ir.Model:
    """FINN's unpadded CIFAR-10 CNV topology; first layer 8-bit input, random weights.

    ``wbits`` 1 gives binary weights, 2 ternary (CNV-W2A2).
    """
    kind = "binary" if wbits == 1 else "ternary"
    c = lambda out, pool=0: LayerPlan(op="conv", out=out, kind=kind, act_bits=abits, pool=pool)
    f = lambda out, last=False: LayerPlan(op="fc", out=out, kind=kind, act_bits=None if last else abits)
    plans = [c(64), c(64, 2), c(128), c(128, 2), c(256), c(256), f(512), f(512), f(10, True)]
    return build_model(plans, input_shape=(32, 32, 3), input_bits=8, seed=seed,
                       name=f"cnv-w{wbits}a{abits}")


def _mlp(name: str, hidden: int, seed: int, input_bits: int) -> ir.Model:
    plans = [LayerPlan(op="fc", out=hidden) for _ in range(3)] + [LayerPlan(op="fc", out=10, act_bits=None)]
    return build_model(plans, input_shape=(28, 28, 1), input_bits=input_bits, seed=seed, name=name)


def sfc(seed: int = 0) -> ir.Model:
    """FINN's SFC: 784-256-256-256-10, W1A1 with binarized input pixels, as FINN 2017's
    SFC-max (the anchor it is compared with)."""
    return _mlp("sfc-w1a1", 256, seed, input_bits=1)


def lfc(seed: int = 0) -> ir.Model:
    """FINN's LFC: 784-1024-1024-1024-10, W1A1 with binarized input pixels, as BNN-PYNQ's
    LFC-W1A1 (the anchor it is compared with), so every layer is XNOR-popcount."""
    return _mlp("lfc-w1a1", 1024, seed, input_bits=1)


#: Kept share of the weights per AlexNet layer. Seed 003 (``/work/shared/seeds/003_*``)
#: gives only the whole-network figure (reversed pruning, 13x fewer parameters, 61 M in
#: all) and no per-layer table, so the convolutions keep Han et al.'s (2015, "Learning
#: both weights and connections") per-layer densities and the fully connected layers are
#: pruned harder, to the seed's 13x overall (:func:`alexnet` checks the total).
ALEXNET_DENSITIES = {"conv0": 0.84, "conv1": 0.38, "conv2": 0.35, "conv3": 0.37, "conv4": 0.37,
                     "fc5": 0.048, "fc6": 0.048, "fc7": 0.15}


def alexnet(*, kind: str = "pot", wbits: int = 4, abits: int = 4, seed: int = 0,
            densities: dict | None = None) -> ir.Model:
    """An AlexNet-class network on 227x227x3 8-bit input: 5 convolutions (96 11x11/4,
    256 5x5, 384, 384, 256 3x3; no channel groups) with 2x2 max-pools after the 1st, 2nd
    and 5th, then 4096-4096-1000 fully connected, 1000 classes; ``wbits``-bit weights
    pruned to :data:`ALEXNET_DENSITIES` (CSC), ``abits``-bit activations."""
    d = dict(ALEXNET_DENSITIES, **(densities or {}))
    c = lambda name, out, k, stride=1, pad=0, pool=0: LayerPlan(
        op="conv", out=out, kind=kind, wbits=wbits, act_bits=abits, kernel=k, stride=stride,
        padding=pad, pool=pool, density=d[name])
    f = lambda name, out, last=False: LayerPlan(op="fc", out=out, kind=kind, wbits=wbits,
                                                act_bits=None if last else abits, density=d[name])
    plans = [c("conv0", 96, 11, 4, 0, 2), c("conv1", 256, 5, 1, 2, 2), c("conv2", 384, 3, 1, 1),
             c("conv3", 384, 3, 1, 1), c("conv4", 256, 3, 1, 1, 2),
             f("fc5", 4096), f("fc6", 4096), f("fc7", 1000, True)]
    return build_model(plans, input_shape=(227, 227, 3), input_bits=8, seed=seed,
                       name=f"alexnet-{kind}{wbits}a{abits}")
