"""The training loop and the data and evaluation helpers it needs.

The bottom of the training stack: :mod:`quant.prune` and :mod:`quant.inq` call
:func:`fit` and :func:`evaluate`, :mod:`quant.presets` composes them into recipes, and
:mod:`quant.train` is the CLI over the presets. Nothing here imports those modules.

Input codes: 4-bit, ``code = floor(raw * 15 / max_value + 0.5)`` (digits: 0..16 ->
0..15), recorded in the model's ``InputSpec``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hdl import ir

__all__ = ["INPUT_BITS", "Data", "prepare_data", "fit", "evaluate", "evaluate_exact"]

INPUT_BITS = 4


@dataclass(frozen=True, kw_only=True, eq=False)
class Data:
    """Input codes (float32 NCHW tensors) and labels, with the IR input spec."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    codes_test: np.ndarray      # (N, H, W, C) uint codes for the golden model
    input_spec: ir.InputSpec
    classes: tuple[str, ...]
    name: str

    def split_val(self, fraction: float = 0.15, seed: int = 0) -> tuple["Data", tuple]:
        """(train part, (x_val, y_val)) carved from the training data, stratified."""
        g = np.random.default_rng(seed)
        y = self.y_train.numpy()
        val_idx = []
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            g.shuffle(idx)
            val_idx.extend(idx[:max(1, int(round(fraction * len(idx))))])
        val = np.zeros(len(y), dtype=bool)
        val[val_idx] = True
        tr = torch.from_numpy(~val)
        vl = torch.from_numpy(val)
        part = Data(x_train=self.x_train[tr], y_train=self.y_train[tr], x_test=self.x_test,
                    y_test=self.y_test, codes_test=self.codes_test, input_spec=self.input_spec,
                    classes=self.classes, name=self.name)
        return part, (self.x_train[vl], self.y_train[vl])


def prepare_data(name: str = "digits", bits: int = INPUT_BITS) -> Data:
    """Load a data set (``sim.data.load_dataset``) and quantize it to ``bits``-bit input codes."""
    from sim.data import load_dataset
    ds = load_dataset(name)
    spec = ir.InputSpec(shape=tuple(int(d) for d in ds.shape), bits=bits,
                        scale=((1 << bits) - 1) / ds.max_value, offset=0.5)

    def t(x):
        return torch.from_numpy(spec.quantize(x).astype(np.float32)).permute(0, 3, 1, 2).contiguous()

    return Data(x_train=t(ds.x_train), y_train=torch.from_numpy(ds.y_train),
                x_test=t(ds.x_test), y_test=torch.from_numpy(ds.y_test),
                codes_test=spec.quantize(ds.x_test), input_spec=spec, classes=ds.classes,
                name=ds.name)


def _augment(x: torch.Tensor, g: torch.Generator, shift: int = 1) -> torch.Tensor:
    """Random translation by up to ``shift`` pixels (zero fill = background code 0)."""
    if shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=g)
    iy = (dy[:, None] + torch.arange(h)[None, :])            # (n, h)
    ix = (dx[:, None] + torch.arange(w)[None, :])            # (n, w)
    rows = padded[torch.arange(n)[:, None, None], :, iy[:, :, None], ix[:, None, :]]
    return rows.permute(0, 3, 1, 2).contiguous()


def fit(net, data: Data, *, epochs: int, lr: float, seed: int, batch: int = 64,
        gamma_l1: float = 0.0, weight_decay: float = 0.0, augment: int = 1,
        desc: str = "train", progress: bool = True, after_step=None) -> None:
    """Adam with a cosine schedule; masks re-applied and binary latents clamped each step."""
    if epochs <= 0:
        return
    from tqdm import tqdm
    g = torch.Generator().manual_seed(seed)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    n = len(data.x_train)
    steps = epochs * math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False, file=sys.stderr)
    for _ in bar:
        net.train()
        perm = torch.randperm(n, generator=g)
        total, correct = 0.0, 0
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            x = _augment(data.x_train[idx], g, augment)
            y = data.y_train[idx]
            out = net(x)
            loss = F.cross_entropy(out, y)
            if gamma_l1:
                loss = loss + gamma_l1 * sum(b.bn.weight.abs().sum() for b in net.blocks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if after_step is not None:
                after_step("grad")
            opt.step()
            sched.step()
            net.apply_masks()
            net.clamp_latent()
            if after_step is not None:
                after_step("step")
            total += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == y).sum())
        bar.set_postfix(loss=f"{total / n:.3f}", acc=f"{correct / n:.3f}")


@torch.no_grad()
def evaluate(net, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the float32 forward pass (quantized or float, as the net is set)."""
    net.eval()
    return float((net(x).argmax(1) == y).float().mean())


@torch.no_grad()
def evaluate_exact(net, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the exact integer-accumulator eval pass (``net.forward_exact``)."""
    net.eval()
    scores, _ = net.forward_exact(x)
    return float((scores.argmax(1) == y).double().mean())
