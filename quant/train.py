"""Training CLI: ``python -m quant.train --preset NAME --out DIR`` (or ``--arch FILE.json``;
``qnn-train`` once installed).

Trains a preset (:mod:`quant.presets`) on a data set (``sim.data.load_dataset``: the
embedded digits split by default, or an ``.npz``) with :func:`quant.presets.run_preset`,
which writes ``DIR/model.npz`` and ``DIR/metrics.json``.
"""

from __future__ import annotations

import logging
import sys

from hdl import cli

from .presets import names, run_preset

__all__ = ["main"]

log = logging.getLogger("qnn.train")


def _parser():
    p = cli.parser(
        "python -m quant.train",
        "Train a quantized model from a preset and export it as a model file "
        "(model.npz, with metrics.json beside it).",
        json_help="write only the metrics as JSON to stdout")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=names(), help="training recipe")
    src.add_argument("--arch", metavar="FILE.json",
                     help="your own architecture (layers, weight kind and bits, activation bits)")
    p.add_argument("--out", required=True, help="output directory (model.npz, metrics.json)")
    p.add_argument("--epochs", type=int, default=None,
                   help="scale the preset's epochs to this many QAT epochs (default: preset's)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: preset's)")
    p.add_argument("--data", default="digits", help="'digits' or a path to an .npz data set")
    p.add_argument("--estimator", default=None, choices=("ste", "approx", "swish", "expect"),
                   help="override the preset's gradient estimator")
    return p


def _body(args) -> int:
    if args.epochs is not None and args.epochs < 1:
        raise cli.BadInput(f"--epochs must be at least 1, not {args.epochs}")
    bar = sys.stderr.isatty() and not args.quiet
    try:
        preset, command = args.preset, None
        if args.arch:
            from .arch import load_arch
            preset = load_arch(args.arch)
            command = "python -m quant.train " + " ".join(args.argv)
        m = run_preset(preset, args.out, epochs=args.epochs, seed=args.seed, data=args.data,
                       progress=bar, estimator=args.estimator, command=command)
    except (ValueError, OSError) as exc:
        raise cli.BadInput(str(exc).splitlines()[0]) from None
    if args.json:
        cli.emit_json(m)
    else:
        log.info("%s: accuracy %.2f%% (float model %.2f%%), compression %.1fx, %.0f s -> %s",
                 args.preset or m["preset"], 100 * m["accuracy"], 100 * m["float_accuracy"],
                 m["compression_ratio"], m["train_seconds"], args.out)
    return cli.EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    return cli.run(_body, args)


if __name__ == "__main__":
    sys.exit(main())
