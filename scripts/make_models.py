"""Regenerate the shipped models: ``python -m scripts.make_models [--only NAME ...] [--all]``.

Trains each preset with its fixed default seed (``quant.presets``) and writes
``models/<preset>/model.npz`` and ``metrics.json`` (accuracy measured by the golden
model on the exported file). Default: ``w1a2`` (the model ``python -m hdl.build`` uses), ``pot4``,
``pot4-sparse``, ``pot4-block``; ``--all`` adds ``w1a1``, ``w2a2`` and ``slim``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from hdl import cli

SHIPPED = ("w1a2", "pot4", "pot4-sparse", "pot4-block")
OPTIONAL = ("w1a1", "w2a2", "slim")
ROOT = Path(__file__).resolve().parent.parent / "models"


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    from quant import presets
    ap = cli.parser("python -m scripts.make_models", __doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these presets")
    ap.add_argument("--all", action="store_true", help="also the optional presets")
    ap.add_argument("--out", default=str(ROOT), help="models directory (default: models/)")
    args = ap.parse_args(argv)
    names = args.only or (list(SHIPPED) + (list(OPTIONAL) if args.all else []))
    for name in names:
        if name not in presets.names():
            print(f"error: unknown preset {name!r}; choose from {', '.join(presets.names())}",
                  file=sys.stderr)
            return cli.EXIT_BAD_INPUT
    for name in names:
        m = presets.run_preset(name, Path(args.out) / name,
                               progress=not args.quiet and sys.stderr.isatty())
        print(f"{name}: accuracy {m['accuracy']:.4f}, compression {m['compression_ratio']}x, "
              f"{m['train_seconds']} s ({m['train_cpu_seconds']} s CPU)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
