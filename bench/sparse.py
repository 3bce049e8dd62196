"""Benchmark: the sparse engine against a dense MVTU with the same MAC lanes.

    python -m bench.sparse [--out bench/results/sparse.json] [--size 256] [--vectors 6]

Patterns the engine is meant for (unstructured and channel pruning of fully connected
and convolution layers), ternary and pot4 weights, 2-bit activations, pruned to
densities 50, 25, 10 and 5%:

``random``
    ``size`` x ``size`` fully connected layer, every weight kept with probability
    ``density`` (unstructured pruning);
``columns``
    the same layer with whole inputs pruned, each kept with probability ``density``;
``channels``
    the same layer with whole output neurons (rows) and whole inputs (columns) pruned,
    each kept with probability ``sqrt(density)`` (channel pruning as in FLRPM, seeds/002):
    the kept rows are not spread evenly over the PEs (row ``r`` in PE ``r % pe``);
``conv``
    a 3x3 convolution over 16 channels into 32 (im2col matrix 32 x 144: few output
    rows, long columns), unstructured pruning; the SIMD must divide the 16 channels.

and the pruned layers of the shipped ``models/pot4-sparse`` at their own density
(``digits/conv1``, ``digits/conv2``, ``digits/fc3``; 4-bit activations).

Lane matching: the dense MVTU has ``PE`` x ``SIMD`` lanes (``--dense-pe``,
``--dense-simd``, default 4 x 4 = 16); the sparse engine gets the same number of lanes
as ``pe`` x ``simd``, the split its cycle model finds fastest for the weights (as the
network compiler picks it; ``reach`` the engine's default: the fewest input banks per
lane that cost no cycle).

Cycles per vector are MEASURED in Amaranth's simulator with a free-running source and
sink (``--vectors`` back-to-back vectors; the mean period of the second half), and the
measured output cycles are compared with the spec's cycle trace (``model_exact``: equal
up to a constant latency); the steady-state ``cycles_per_vector`` of the model is
reported beside them. The dense MVTU is measured once per layer shape. ``speedup`` =
dense cycles / sparse cycles; the goal is ``speedup >= 0.6 / density`` everywhere.

Storage: on-chip weight bits of the sparse engine (values, column indices, padding
entries, row tags and last-word flags as ``pointers``) against the MVTU's weight
memories, and its input buffer bits.

``before``: the figures of the previous (column-serial, EIE-style) engine, copied from
the results file this benchmark replaced. The last line printed is JSON; the same
object is written to ``--out``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator
from tqdm import tqdm

from bench import command
from hdl import ir
from hdl.engines.mvtu import MVTU
from hdl.engines.sparse import SparseCSC, SparseSpec
from hdl import cli

DENSITIES = (0.5, 0.25, 0.1, 0.05)
PATTERNS = ("random", "columns", "channels", "conv")
KINDS = {"ternary": None, "pot": 4}
IN_BITS = 2
CONV_SHAPE = (32, 144, 16)               # outputs, inputs (3x3x16), channels
DIGITS = "models/pot4-sparse"
DIGITS_LAYERS = ("conv1", "conv2", "fc3")

#: The previous engine's figures (column-serial, one non-empty column per cycle, rows to
#: PE ``r % pe``, relative 4-bit row indices), from bench/results/sparse.json as it stood.
BEFORE = {
    "note": "previous engine (EIE-style column-serial SparseCSC: one non-empty input column per "
            "cycle, 16 PEs of one entry each, relative 4-bit row indices), fc 256x256, patterns "
            "random/columns/channels only; copied from bench/results/sparse.json before the "
            "row-parallel redesign",
    "command": "python -m bench.sparse",
    "speedup": {"50": 1.569, "25": 2.753, "10": 5.185, "5": 12.8},
    "goal_met": False,
    "goal_missed": ["pot/channels at 10%: 5.185 < 6.0"],
    "worst_speedup_over_goal": 0.864,
    "speedup_by_pattern": {
        "ternary/random": {"50": 1.951, "25": 3.793, "10": 8.623, "5": 15.938},
        "ternary/columns": {"50": 2.098, "25": 3.507, "10": 9.846, "5": 12.8},
        "ternary/channels": {"50": 1.569, "25": 2.753, "10": 6.321, "5": 13.43},
        "pot/random": {"50": 1.947, "25": 3.81, "10": 9.143, "5": 15.515},
        "pot/columns": {"50": 1.939, "25": 4.063, "10": 9.143, "5": 28.444},
        "pot/channels": {"50": 1.681, "25": 3.057, "10": 5.185, "5": 13.128},
    },
    "storage_crossover_density_pct": {"ternary": 29.0, "pot": 47.0},
}


def weight_matrix(rng, shape, kind: str, density: float, pattern: str) -> np.ndarray:
    """Weight values: every non-pruned weight non-zero."""
    rows, cols = shape
    sign = rng.choice(np.array([-1, 1]), size=shape)
    base = sign << rng.integers(0, 7, size=shape) if kind == "pot" else sign   # pot4: ±2**0 .. ±2**6
    if pattern in ("random", "conv"):
        keep = rng.random(shape) < density
    elif pattern == "columns":
        keep = np.broadcast_to(rng.random(cols) < density, shape)
    elif pattern == "channels":
        q = math.sqrt(density)
        keep = (rng.random(rows) < q)[:, None] & (rng.random(cols) < q)[None, :]
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return np.where(keep, base, 0)


def measure(dut, inputs: int, in_bits: int, vectors: int, seed: int = 0) -> list[int]:
    """Free-running simulation: the cycle of every output beat."""
    rng = np.random.default_rng(seed)
    beats = rng.integers(0, 1 << in_bits, size=(vectors * inputs // dut.simd, dut.simd)).tolist()
    n_out = vectors * dut.outputs // dut.pe
    cycles = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        k, cycle = 0, 0
        ctx.set(dut.i.payload, beats[0])
        ctx.set(dut.i.valid, 1)
        while len(cycles) < n_out:
            _, _, i_ready, o_valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            if i_ready and k < len(beats):
                k += 1
                if k < len(beats):
                    ctx.set(dut.i.payload, beats[k])
                else:
                    ctx.set(dut.i.valid, 0)
            if o_valid:
                cycles.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return cycles


def period(cycles: list[int], folds: int) -> int:
    """Mean cycles between the last output beats of the vectors of the second half,
    rounded up."""
    ends = cycles[folds - 1::folds]
    half = len(ends) // 2
    return -(-(ends[-1] - ends[-1 - half]) // half)


def best_spec(m, kind, wbits, in_bits, lanes, simds) -> SparseSpec:
    """The fastest ``pe`` x ``simd`` = ``lanes`` split (model cycles), fewer PEs on ties."""
    outputs, inputs = m.shape
    specs = [SparseSpec(m, kind=kind, wbits=wbits, in_bits=in_bits, pe=lanes // s, simd=s)
             for s in simds if lanes % s == 0 and outputs % (lanes // s) == 0 and inputs % s == 0]
    return min(specs, key=lambda s: (s.cycles_per_vector, s.pe))


def run_case(label, m, kind, wbits, in_bits, density, dense, lanes, simds, vectors) -> dict:
    spec = best_spec(m, kind, wbits, in_bits, lanes, simds)
    outputs, inputs = m.shape
    cycles = measure(SparseCSC(spec=spec), inputs, in_bits, vectors)
    trace = spec.cycle_trace(vectors)
    measured = period(cycles, spec.local_rows)
    speedup = dense["cycles"] / measured
    actual = spec.nnz / (outputs * inputs)
    target = 0.6 / density
    st = spec.storage_bits
    return {
        "case": label, "kind": kind, "shape": [outputs, inputs], "density": density,
        "actual_density": round(actual, 4), "pe": spec.pe, "simd": spec.simd,
        "cycles": measured, "model_cycles": period(trace, spec.local_rows),
        "model_exact": len(set(np.subtract(cycles, trace).tolist())) == 1,
        "steady_cycles": spec.cycles_per_vector, "bound_cycles": spec.bound_cycles,
        "compute_cycles": spec.compute_cycles, "input_beats": spec.beats, "output_beats": spec.local_rows,
        "reach": spec.reach, "acc_banks": spec.acc_banks,
        "dense_cycles": dense["cycles"],
        "speedup": round(speedup, 3), "goal_speedup": round(target, 3), "goal_met": speedup >= target,
        "goal_met_at_actual_density": speedup >= 0.6 / max(actual, 1e-9),
        "padding_entries": spec.padding, "value_bits": spec.value_bits, "index_bits": spec.index_bits,
        "storage_bits": st, "dense_storage_bits": dense["storage_bits"],
        "storage_ratio": round(st["total"] / dense["storage_bits"], 4),
        "buffer_bits": spec.buffer_bits,
    }


def dense_figures(m, kind, wbits, in_bits, dpe, dsimd) -> dict:
    mvtu = MVTU(m if kind != "binary" else np.where(m == 0, 1, m), kind=kind, wbits=wbits,
                in_bits=in_bits, pe=dpe, simd=dsimd)
    cycles = measure(mvtu, m.shape[1], in_bits, 3)
    return {"cycles": period(cycles, m.shape[0] // dpe), "model": mvtu.cycles_per_vector,
            "storage_bits": m.size * mvtu.weight_bits, "weight_bits": mvtu.weight_bits,
            "pe": dpe, "simd": dsimd}


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.sparse", __doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/sparse.json", help="JSON result file")
    parser.add_argument("--size", type=int, default=256, help="fc layer outputs = inputs")
    parser.add_argument("--dense-pe", type=int, default=4, help="dense MVTU PE")
    parser.add_argument("--dense-simd", type=int, default=4, help="dense MVTU SIMD")
    parser.add_argument("--vectors", type=int, default=6, help="vectors per simulation (even, >= 4)")
    args = parser.parse_args(argv)
    if args.vectors < 4 or args.vectors % 2:
        parser.error("--vectors must be even and at least 4")
    size, dpe, dsimd = args.size, args.dense_pe, args.dense_simd
    lanes = dpe * dsimd
    rng = np.random.default_rng(2026)
    fc_simds = [s for s in range(1, lanes + 1) if size % s == 0]
    conv_simds = [s for s in range(1, lanes + 1) if CONV_SHAPE[2] % s == 0]
    rows, dense = [], {}
    jobs = [(k, p, d) for k in KINDS for p in PATTERNS for d in DENSITIES]
    model = ir.load(DIGITS)
    specs = model.specs()
    digits = [(i, layer) for i, layer in enumerate(model.layers) if layer.name in DIGITS_LAYERS]
    with tqdm(total=len(jobs) + len(digits), desc="sparse", file=sys.stderr) as bar:
        for kind, pattern, density in jobs:
            shape = CONV_SHAPE[:2] if pattern == "conv" else (size, size)
            key = f"{kind} {shape[0]}x{shape[1]}"
            if key not in dense:
                full = weight_matrix(rng, shape, kind, 1.0, "random")
                dense[key] = dense_figures(full, kind, KINDS[kind], IN_BITS, dpe, dsimd)
            m = weight_matrix(rng, shape, kind, density, pattern)
            simds = conv_simds if pattern == "conv" else fc_simds
            rows.append(run_case(f"{kind}/{pattern}", m, kind, KINDS[kind], IN_BITS, density, dense[key],
                                 lanes, simds, args.vectors))
            bar.update()
        for i, layer in digits:
            w = layer.weights
            m = w.matrix()
            in_spec = specs[i]
            key = f"digits/{layer.name} {m.shape[0]}x{m.shape[1]}"
            dense[key] = dense_figures(m, w.kind, w.bits, in_spec.bits, dpe, dsimd)
            channels = in_spec.shape[2] if isinstance(layer, ir.Conv) else m.shape[1]
            simds = [s for s in range(1, lanes + 1) if channels % s == 0]
            density = w.nnz / m.size
            rows.append(run_case(f"digits/{layer.name}", m, w.kind, w.bits, in_spec.bits, density,
                                 dense[key], lanes, simds, args.vectors))
            bar.update()
    by_density = {}
    for density in DENSITIES:
        sel = [r for r in rows if r["density"] == density]
        by_density[f"{round(density * 100)}"] = min(r["speedup"] for r in sel)
    by_pattern = {}
    for r in rows:
        if r["case"].startswith("digits/"):
            by_pattern[r["case"]] = {f"{r['actual_density'] * 100:.1f}": r["speedup"]}
        else:
            by_pattern.setdefault(r["case"], {})[f"{round(r['density'] * 100)}"] = r["speedup"]
    misses = [f"{r['case']} at {r['density'] * 100:.3g}%: {r['speedup']} < {r['goal_speedup']}"
              for r in rows if not r["goal_met"]]
    summary = {
        "bench": "sparse",
        "layer": (f"fc {size}x{size} (random, columns, channels) and conv 3x3x16->32 (im2col "
                  f"{CONV_SHAPE[0]}x{CONV_SHAPE[1]}), {IN_BITS}-bit activations; the pruned layers of "
                  f"{DIGITS} (4-bit activations)"),
        "matching": f"dense MVTU PE {dpe} x SIMD {dsimd} = {lanes} lanes; sparse pe x simd = {lanes} "
                    f"(split chosen by the cycle model)",
        "dense": dense,
        "speedup": by_density,          # worst over kinds and patterns, per density (percent)
        "goal": "speedup >= 0.6 / density",
        "goal_met": all(r["goal_met"] for r in rows),
        "goal_missed": misses,
        "speedup_by_pattern": by_pattern,
        "worst_speedup_over_goal": round(min(r["speedup"] / r["goal_speedup"] for r in rows), 3),
        "model_exact": all(r["model_exact"] and r["cycles"] == r["model_cycles"] for r in rows),
        "before": BEFORE,
        "rows": rows,
        "command": command("sparse", argv),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    for r in rows:
        print(f"{r['case']:16s} {r['density']:6.3f}: {r['cycles']:6d} cycles at {r['pe']}x{r['simd']} "
              f"(dense {r['dense_cycles']}), speedup {r['speedup']:7.2f} (goal {r['goal_speedup']:5.1f}"
              f"{', met' if r['goal_met'] else ', NOT met'}), storage {r['storage_ratio']:.3f} of dense",
              file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
