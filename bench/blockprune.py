"""Block-pruning sweep: ``python -m bench.blockprune [--blocks 4x16 8x16] [--sparsity ...]``.

Chooses the ``pot4-block`` preset's block shape and sparsity by measurement: for each
block shape (rows x cols) and block sparsity (the same for conv1, conv2 and fc3), the
preset's recipe (one shared float pretraining, block pruning, INQ) on 85% of the
training data, then the exported model's accuracy from the golden model on the other
15% (validation: what the choice is made on) and on the test split, with the fraction of
non-zero blocks and weights per layer read from the exported weights.
Writes ``bench/results/blockprune.json``; the last line printed is that JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench import command

ROOT = Path(__file__).resolve().parent.parent


def _block(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a block is ROWSxCOLS such as 8x16, not {text!r}") from None
    return r, c


def _sparsity(text: str) -> tuple[float, ...]:
    try:
        v = tuple(float(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a sparsity is S or S1/S2/S3 (conv1/conv2/fc3), not {text!r}") from None
    if len(v) not in (1, 3) or not all(0 <= x < 1 for x in v):
        raise argparse.ArgumentTypeError(f"a sparsity is S or S1/S2/S3 in [0, 1), not {text!r}")
    return v


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or key not in ("norm", "increments", "ramp", "prune_epochs"):
        raise argparse.ArgumentTypeError(
            f"a recipe setting is norm=, increments=, ramp= or prune_epochs=VALUE, not {text!r}")
    return key, (int(value) if key in ("increments", "prune_epochs") else value)


def main(argv: list[str] | None = None) -> int:
    from quant import presets
    from quant.export import export, predict
    from quant.loop import evaluate, fit, prepare_data
    ap = argparse.ArgumentParser(prog="python -m bench.blockprune", description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", nargs="+", type=_block, default=[(4, 16), (8, 16)])
    ap.add_argument("--sparsity", nargs="+", type=_sparsity, default=[(0.75,), (0.85,), (0.9,)],
                    help="block sparsity of conv1, conv2, fc3: S for all, or S1/S2/S3")
    ap.add_argument("--recipe", nargs="*", type=_setting, default=[],
                    help="override the preset's pruning settings, e.g. ramp=cubic prune_epochs=8")
    ap.add_argument("--append", action="store_true",
                    help="keep the runs already in --out (each run names its command and recipe)")
    ap.add_argument("--epochs", type=int, default=None, help="scale the preset's epochs (default: its own)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "blockprune.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    base = presets.get("pot4-block")
    d = prepare_data("digits")
    part, (x_val, y_val) = d.split_val(0.15, base.seed)
    val_codes = x_val.permute(0, 2, 3, 1).numpy().astype(np.int64)
    torch.manual_seed(base.seed)
    t0 = time.time()
    net = base.build(part)
    net.set_quant(False)
    f = 1.0 if args.epochs is None else args.epochs / base.epochs
    fit(net, part, epochs=max(1, round(base.float_epochs * f)), lr=base.lr_float, seed=base.seed,
        desc="float", progress=False)
    pre = ({k: v.clone() for k, v in net.state_dict().items()}, evaluate(net, d.x_test, d.y_test))
    float_s = time.time() - t0
    cmd = command("blockprune", argv)
    recipe = {k: (list(v) if isinstance(v, tuple) else v)
              for k, v in dict(base.options, **dict(args.recipe)).items() if k not in ("block", "targets")}
    old = json.loads(Path(args.out).read_text()) if args.append and Path(args.out).exists() else {}
    runs = list(old.get("runs", []))
    for block in args.blocks:
        for s in args.sparsity:
            layers = sorted(base.options["targets"])
            targets = dict(zip(layers, s * len(layers) if len(s) == 1 else s))
            o = dict(base.options, **dict(args.recipe), block=block, targets=targets)
            p = dataclasses.replace(base, options=o)
            torch.manual_seed(base.seed)
            t1 = time.time()
            trained, info = p.train(part, epochs=args.epochs, pretrained=pre, progress=False)
            model = export(trained, d.input_spec, d.classes, name="sweep")
            rep = presets.block_report(model, block)
            run = {"block": list(block), "target": s[0] if len(s) == 1 else "/".join(map(str, s)),
                   "val_accuracy": float(np.mean(predict(model, val_codes) == y_val.numpy())),
                   "test_accuracy": float(np.mean(predict(model, d.codes_test) == d.y_test.numpy())),
                   "pruned_float_accuracy": info["pruned_float_accuracy"],
                   "block_density": rep["block_density"], "weight_density": rep["weight_density"],
                   "train_seconds": round(time.time() - t1, 1), "recipe": recipe,
                   "epochs": args.epochs or base.epochs, "command": cmd}
            runs.append(run)
            print(f"{block[0]}x{block[1]} {run['target']}: val {run['val_accuracy']:.4f} test "
                  f"{run['test_accuracy']:.4f} blocks {run['block_density']}", file=sys.stderr, flush=True)
    cmds = [c for c in old.get("command", "").split(" ; ") if c] if old else []
    out = {"runs": runs, "float_seconds": round(float_s, 1), "float_accuracy": pre[1],
           "train_fraction": 0.85, "command": " ; ".join(cmds + [cmd])}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
