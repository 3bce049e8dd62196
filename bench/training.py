"""Training benchmark: ``python -m bench.training [--quick] [--retrain] [--estimators]``.

Per preset: test accuracy (golden model on the exported file), compression ratio,
sparsity, against the targets of issue 4:

    w1a1 >= 97%, w1a2 >= 98%, w2a2 >= 98.5%, pot4 >= 99%,
    pot4-sparse >= 98% with compression_ratio >= 35,
    pot4-block >= 98% with <= 25% of its blocks non-zero in conv1, conv2 and fc3 (issue 13),
    slim removing >= 40% of conv channels within 1 point of w1a2.

By default it reads the ``metrics.json`` that ``python -m scripts.make_models --all``
wrote under ``models/`` (presets without one are trained into ``build/bench_training``);
``--retrain`` trains every preset afresh. It also trains ``w1a1`` once per gradient
estimator (same seed and epochs: 40, ``--quick``: 10) unless ``--no-estimators``; runs
already in ``build/bench_training/w1a1-<estimator>`` with the same epochs are reused
unless ``--retrain``, and so are those in the previous ``--out`` file.
Writes ``bench/results/training.json``; the last line printed is that JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import command
from hdl import cli

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("w1a1", "w1a2", "w2a2", "pot4", "pot4-sparse", "pot4-block", "slim")
ESTIMATORS = ("ste", "approx", "swish", "expect")


def _target(name: str, m: dict, results: dict) -> tuple[bool, str]:
    acc = m["accuracy"]
    simple = {"w1a1": 0.97, "w1a2": 0.98, "w2a2": 0.985, "pot4": 0.99}
    if name in simple:
        t = simple[name]
        return acc >= t, f"accuracy {acc:.4f} vs >= {t} (gap {acc - t:+.4f})"
    if name == "pot4-sparse":
        cr = m["compression_ratio"]
        return acc >= 0.98 and cr >= 35, (f"accuracy {acc:.4f} vs >= 0.98 (gap {acc - 0.98:+.4f}), "
                                          f"compression {cr}x vs >= 35x")
    if name == "pot4-block":
        bd = m.get("block_density") or {}
        worst = max((bd.get(k, 1.0) for k in ("conv1", "conv2", "fc3")), default=1.0)
        blk = "x".join(str(v) for v in m.get("block") or ())
        return acc >= 0.98 and worst <= 0.25, (f"accuracy {acc:.4f} vs >= 0.98 (gap {acc - 0.98:+.4f}), "
                                               f"densest {blk} block layer {worst:.1%} vs <= 25%")
    if name == "slim":
        removed = m.get("conv_channels_removed", 0.0)
        ref = results.get("w1a2", {}).get("accuracy")
        within = ref is not None and acc >= ref - 0.01
        return removed >= 0.4 and within, (f"conv channels removed {removed:.1%} vs >= 40%, "
                                           f"accuracy {acc:.4f} vs w1a2 {ref} - 0.01")
    return False, "no target"


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    from quant.presets import run_preset
    ap = cli.parser("python -m bench.training", __doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (estimator comparison: 10 epochs)")
    ap.add_argument("--retrain", action="store_true", help="retrain every preset instead of reading models/")
    ap.add_argument("--no-estimators", action="store_true", help="skip the w1a1 estimator comparison")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "training.json"))
    args = ap.parse_args(argv)
    work = ROOT / "build" / "bench_training"
    results, checks = {}, {}
    for name in PRESETS:
        shipped = ROOT / "models" / name / "metrics.json"
        if shipped.exists() and not args.retrain:
            m = json.loads(shipped.read_text())
            m["source"] = f"models/{name}/metrics.json (python -m scripts.make_models --all)"
        else:
            m = run_preset(name, work / name, epochs=10 if args.quick else None, progress=False)
            m["source"] = f"python -m quant.train --preset {name}" + (" --epochs 10" if args.quick else "")
        results[name] = {k: m.get(k) for k in (
            "accuracy", "float_accuracy", "compression_ratio", "bytes_fp32", "bytes_exported",
            "sparsity", "sparsity_total", "epochs", "seed", "estimator", "train_seconds",
            "train_cpu_seconds", "conv_channels", "conv_channels_removed", "block", "block_density",
            "weight_density", "source")}
    for name in PRESETS:
        ok, text = _target(name, results[name], results)
        checks[name] = {"met": ok, "detail": text}
        print(f"{name:12s} {'MET ' if ok else 'MISS'} {text}", file=sys.stderr)
    est = {}
    try:
        previous = json.loads(Path(args.out).read_text()).get("w1a1_estimators") or {}
    except (OSError, ValueError, AttributeError):
        previous = {}
    if not args.no_estimators:
        epochs = 10 if args.quick else 40
        for e in ESTIMATORS:
            cached = work / f"w1a1-{e}" / "metrics.json"
            m = json.loads(cached.read_text()) if cached.exists() else None
            if m is None and (previous.get(e) or {}).get("epochs") == epochs:
                m = dict(previous[e], estimator=e)
            if args.retrain or m is None or m.get("epochs") != epochs or m.get("estimator") != e:
                m = run_preset("w1a1", work / f"w1a1-{e}", epochs=epochs, estimator=e, progress=False)
            est[e] = {"accuracy": m["accuracy"], "float_accuracy": m["float_accuracy"],
                      "epochs": epochs, "seed": m["seed"], "train_seconds": m["train_seconds"]}
            print(f"w1a1 estimator {e:7s} accuracy {m['accuracy']:.4f}", file=sys.stderr)
    out = {"presets": results, "targets": checks, "w1a1_estimators": est,
           "quick": args.quick, "retrain": args.retrain, "command": command("training", argv)}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
