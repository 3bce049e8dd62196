"""Training CLI: ``python -m quant.train --preset NAME --out DIR`` (or ``--arch FILE.json``).

Trains a preset (:mod:`quant.presets`) on a data set (``sim.data.load_dataset``: the
embedded digits split by default, or an ``.npz``) with :func:`quant.presets.run_preset`,
which writes ``DIR/model.npz`` and ``DIR/metrics.json``. ``--arch`` takes an architecture
description instead of a preset (layers, channels, weight kind and bits, activation bits;
see :mod:`quant.arch`).
"""

from __future__ import annotations

import argparse
import sys

from .presets import names, run_preset

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quant.train", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=names(), help="training recipe")
    src.add_argument("--arch", metavar="FILE.json",
                     help="your own architecture (layers, weight kind and bits, activation bits)")
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
        preset, command = args.preset, None
        if args.arch:
            from .arch import load_arch
            preset = load_arch(args.arch)
            command = "python -m quant.train " + " ".join(argv if argv is not None else sys.argv[1:])
        m = run_preset(preset, args.out, epochs=args.epochs, seed=args.seed, data=args.data,
                       progress=not args.quiet, estimator=args.estimator, command=command)
    except (ValueError, OSError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"{args.preset or m['preset']}: accuracy {m['accuracy']:.4f} (float {m['float_accuracy']}), "
          f"compression {m['compression_ratio']}x, {m['train_seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
