"""Training CLI and library: ``python -m quant.train --preset NAME --out DIR``.

Trains a preset (:mod:`quant.presets`) on a data set (``sim.data.load_dataset``: the
embedded digits split by default, or an ``.npz``), exports it with
:func:`quant.export.export`, and writes ``DIR/model.npz`` and ``DIR/metrics.json``.
``accuracy`` is measured by the golden model (``sim.golden.predict``) on the exported
file, on the test split.

Input codes: 4-bit, ``code = floor(raw * 15 / max_value + 0.5)`` (digits: 0..16 ->
0..15), recorded in the model's ``InputSpec``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hdl import ir

__all__ = ["Data", "prepare_data", "fit", "evaluate", "evaluate_exact", "run_preset", "main"]

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
    net.eval()
    scores, _ = net.forward_exact(x)
    return float((scores.argmax(1) == y).double().mean())


def run_preset(preset: str, out, *, epochs: int | None = None, seed: int | None = None,
               data: str = "digits", progress: bool = True, estimator: str | None = None) -> dict:
    """Train, export and measure one preset; writes ``out/model.npz`` and ``metrics.json``."""
    from . import presets
    from .export import export, predict, storage_report
    p = presets.get(preset)
    if estimator is not None:
        p = p.with_estimator(estimator)
    seed = p.seed if seed is None else seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)  # the cores are shared: OpenMP spinning costs 30x here
    d = prepare_data(data)
    t0, c0 = time.time(), time.process_time()
    net, info = p.train(d, epochs=epochs, seed=seed, progress=progress)
    train_s, train_cpu = time.time() - t0, time.process_time() - c0
    meta = {"preset": preset, "seed": seed, "epochs": info["epochs"],
            "estimator": p.spec.estimator, "data": d.name}
    model = export(net, d.input_spec, d.classes, name=f"{d.name}_{preset}", metadata=meta)
    out = Path(out)
    # Old metrics go first: an interruption then never pairs new weights with old metrics.
    (out / "metrics.json").unlink(missing_ok=True)
    path = ir.save(model, out)
    labels = predict(ir.load(path), d.codes_test)
    acc = float(np.mean(labels == d.y_test.numpy()))
    rep = storage_report(model)
    cmd = f"python -m quant.train --preset {preset} --out {out}"
    cmd += "".join(f" --{k} {v}" for k, v in (("epochs", epochs), ("seed", seed if seed != p.seed else None),
                                              ("data", data if data != "digits" else None),
                                              ("estimator", estimator)) if v is not None)
    metrics = {
        "command": cmd,
        "preset": preset, "data": d.name, "seed": seed, "epochs": info["epochs"],
        "estimator": p.spec.estimator,
        "accuracy": acc,
        "accuracy_pytorch_exact": evaluate_exact(net, d.x_test, d.y_test),
        "float_accuracy": info.get("float_accuracy"),
        **rep,
        "train_seconds": round(train_s, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "input": {"bits": d.input_spec.bits, "scale": d.input_spec.scale,
                  "offset": d.input_spec.offset},
        **{k: v for k, v in info.items() if k not in ("epochs", "float_accuracy")},
    }
    tmp = out / f".metrics.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "metrics.json")                # whole, and after model.npz
    return metrics


def main(argv: list[str] | None = None) -> int:
    from . import presets
    ap = argparse.ArgumentParser(prog="python -m quant.train", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True, choices=presets.names(), help="training recipe")
    ap.add_argument("--out", required=True, help="output directory (model.npz, metrics.json)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="scale the preset's epochs to this many QAT epochs (default: preset's)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: preset's)")
    ap.add_argument("--data", default="digits", help="'digits' or a path to an .npz data set")
    ap.add_argument("--estimator", default=None, choices=("ste", "approx", "swish", "expect"),
                    help="override the preset's gradient estimator")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        print("error: --epochs must be at least 1", file=sys.stderr)
        return 2
    try:
        m = run_preset(args.preset, args.out, epochs=args.epochs, seed=args.seed, data=args.data,
                       progress=not args.quiet, estimator=args.estimator)
    except (ValueError, OSError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"{args.preset}: accuracy {m['accuracy']:.4f} (float {m['float_accuracy']}), "
          f"compression {m['compression_ratio']}x, {m['train_seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
