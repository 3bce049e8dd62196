"""Training CLI: ``python -m quant.train --preset NAME --out DIR``.

Trains a preset (:mod:`quant.presets`) on a data set (``sim.data.load_dataset``: the
embedded digits split by default, or an ``.npz``) with :func:`quant.presets.run_preset`,
which writes ``DIR/model.npz`` and ``DIR/metrics.json``.
"""

from __future__ import annotations

import argparse
import sys

from .presets import names, run_preset

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quant.train", description=__doc__.splitlines()[0])
    ap.add_argument("--preset", required=True, choices=names(), help="training recipe")
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
