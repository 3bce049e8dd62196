"""Speed of the exact golden model beside PyTorch float32 on the same networks.

    python -m bench.golden [--reps 5] [--batch 256]

Rows: the shipped model ``models/w1a2`` on the digits test split (skipped with a note
while that model does not exist) and a CNV-sized W1A1 network (``sim.random_model.cnv``,
8-bit input) on a batch of random frames. PyTorch runs the same layers with the same
weights as float32 (``Conv2d`` after a constant pad by the padding code's value,
``MaxPool2d``, ``Linear`` on the (y, x, c)-flattened input, ReLU in place of each
threshold: a speed stand-in, not an exact model) with ``torch.set_num_threads(2)``.
Both run interleaved in the same process after a warm-up; the figure is the best of
``--reps`` timed repetitions (noise from other processes only ever adds time).
Goal: the golden model at least 2x faster than PyTorch on CNV. The last line printed
is JSON, also written to ``bench/results/golden.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from bench import command
from hdl import ir
from sim import golden
from sim.random_model import cnv
from hdl import cli

RESULTS = Path(__file__).resolve().parent / "results" / "golden.json"
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "w1a2"
GOAL = 2.0


def torch_equivalent(model: ir.Model):
    """``torch.nn.Sequential`` of float32 layers with the model's weights (NCHW input)."""
    import torch
    from torch import nn

    class FlattenYXC(nn.Module):  # the IR flattens in (y, x, c) order
        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x

    mods = []
    specs = model.specs()
    for layer, spec in zip(model.layers, specs):
        if isinstance(layer, ir.Conv):
            c = spec.shape[2]
            k = layer.kernel
            w = layer.weights.matrix().reshape(layer.out_channels, k, k, c).transpose(0, 3, 1, 2)
            if layer.padding:
                pad_val = float(ir.act_values(layer.pad_value, spec.bits))
                mods.append(nn.ConstantPad2d(layer.padding, pad_val))
            conv = nn.Conv2d(c, layer.out_channels, k, stride=layer.stride, bias=True)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
                conv.bias.copy_(torch.from_numpy((layer.bias if layer.bias is not None else
                                                  np.zeros(layer.out_channels)).astype(np.float32)))
            mods.append(conv)
        elif isinstance(layer, ir.FC):
            mods.append(FlattenYXC())
            fc = nn.Linear(spec.size, layer.out_features, bias=True)
            with torch.no_grad():
                fc.weight.copy_(torch.from_numpy(layer.weights.matrix().astype(np.float32)))
                fc.bias.copy_(torch.from_numpy((layer.bias if layer.bias is not None else
                                                np.zeros(layer.out_features)).astype(np.float32)))
            mods.append(fc)
        elif isinstance(layer, ir.Threshold):
            mods.append(nn.ReLU())
        elif isinstance(layer, ir.MaxPool):
            mods.append(nn.MaxPool2d(layer.kernel, layer.step))
    mods.append(nn.Flatten(1))
    return nn.Sequential(*mods).eval()


def compare(model: ir.Model, codes: np.ndarray, *, reps: int) -> dict:
    """Best-of-``reps`` frames/s of golden.run and of the PyTorch float32 twin, interleaved."""
    import torch
    net = torch_equivalent(model)
    x = torch.from_numpy(ir.act_values(codes, model.input.bits).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    n = len(codes)
    with torch.inference_mode():
        assert net(x).shape == (n, len(model.classes))
        # Same network: the first conv/fc layer's float output equals the exact accumulators.
        first = next(i for i, m in enumerate(net) if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
        head = net[:first + 1](x[:8]).numpy()
        exact = golden.run(model, codes[:8], all_layers=True)[0]
        if head.ndim == 4:
            head = head.transpose(0, 2, 3, 1)
        assert np.array_equal(head.reshape(exact.shape), exact), "torch twin differs from the model"
        golden.run(model, codes)                     # warm-up both
        g_times, t_times = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            golden.run(model, codes)
            g_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            net(x)
            t_times.append(time.perf_counter() - t0)
    g, t = min(g_times), min(t_times)
    return {"model": model.name, "frames": n,
            "golden_frames_per_s": n / g, "torch_frames_per_s": n / t,
            "golden_median_frames_per_s": n / float(np.median(g_times)),
            "torch_median_frames_per_s": n / float(np.median(t_times)),
            "speedup_vs_torch": t / g}


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.golden", __doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    parser.add_argument("--batch", type=int, default=256, help="CNV batch size (default 256)")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.batch < 1:
        print("error: --reps and --batch must be at least 1", file=sys.stderr)
        return cli.EXIT_BAD_INPUT
    import torch
    torch.set_num_threads(2)
    rows = []
    notes = []

    path = ir.model_path(SHIPPED)
    if path.exists():
        from sim.data import load_dataset
        model = ir.load(path)
        data = load_dataset("digits")
        codes = model.input.quantize(data.x_test)
        row = compare(model, codes, reps=args.reps)
        row["accuracy"] = float(np.mean(golden.predict(model, codes) == data.y_test))
        row["row"] = "w1a2 (shipped, digits test split)"
        rows.append(row)
    else:
        notes.append(f"models/w1a2 not found ({path}): row skipped")

    model = cnv()
    codes = np.random.default_rng(0).integers(0, 1 << model.input.bits,
                                              size=(args.batch, *model.input.shape), dtype=np.uint8)
    cnv_row = compare(model, codes, reps=args.reps)
    cnv_row["row"] = f"CNV W1A1 (random weights, batch {args.batch})"
    rows.append(cnv_row)

    for row in rows:
        print(f"{row['row']}: golden {row['golden_frames_per_s']:.0f} frames/s, "
              f"torch float32 {row['torch_frames_per_s']:.0f} frames/s, "
              f"speedup {row['speedup_vs_torch']:.2f}x")
    for note in notes:
        print(f"note: {note}")
    speedup = cnv_row["speedup_vs_torch"]
    print(f"CNV speedup_vs_torch {speedup:.2f}x (goal {GOAL}x: {'met' if speedup >= GOAL else 'NOT met'})")
    result = {
        "bench": "golden", "rows": rows, "notes": notes,
        "speedup_vs_torch": speedup, "goal_speedup": GOAL, "goal_met": speedup >= GOAL,
        "cnv_golden_frames_per_s": cnv_row["golden_frames_per_s"],
        "cnv_torch_frames_per_s": cnv_row["torch_frames_per_s"],
        "batch": args.batch, "reps": args.reps, "torch_threads": torch.get_num_threads(),
        "golden_threads": golden._THREADS, "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0], "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__, "torch": torch.__version__,
    }
    result["command"] = command("golden", argv)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
