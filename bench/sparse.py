"""Benchmark: the sparse CSC engine against a dense MVTU with the same MAC lanes.

    python -m bench.sparse [--out bench/results/sparse.json] [--size 256] [--vectors 3]

A ``size`` x ``size`` fully connected layer, 2-bit activations, ternary and pot4 weights,
pruned to densities 50, 25, 10 and 5% by two patterns:

``random``
    every weight kept with probability ``density`` (unstructured pruning);
``columns``
    whole inputs (columns) pruned, each kept with probability ``density`` (input-channel
    pruning);
``channels``
    whole output neurons (rows) and whole inputs (columns) pruned, each kept with
    probability ``sqrt(density)`` (channel pruning as in FLRPM, seeds/002). The kept rows
    are not spread evenly over the PEs (row ``r`` lives in PE ``r % pe``), so this is the
    load-imbalance worst case.

Lane matching: the dense MVTU has ``PE`` x ``SIMD`` multiply lanes (``--dense-pe``,
``--dense-simd``, default 4 x 4 = 16); the sparse engine gets ``pe = PE * SIMD`` PEs of
one weight per cycle each and the same input beat width ``simd = SIMD``.

Cycles per vector are MEASURED in Amaranth's simulator with a free-running source and
sink (``--vectors`` back-to-back vectors, the period between the last output beats of
the last two; the engine's own ``cycles_per_vector`` model is reported beside it), for the sparse engine at every density and pattern and for the dense MVTU
once per weight kind (its cycles do not depend on the weights). ``speedup`` = dense
cycles / sparse cycles; the goal is ``speedup >= 0.6 / density`` at every density.

Storage: on-chip weight bits of the sparse engine (values, relative indices, padding
entries, column memory) against the MVTU's weight memories (``outputs * inputs *
weight_bits``); the crossover density (sparse storage = dense storage) from the
engine's exact storage at densities 1..100% (random pattern).

The last line printed is JSON; the same object is written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator
from tqdm import tqdm

from bench import command
from hdl.engines.mvtu import MVTU
from hdl.engines.sparse import SparseCSC

DENSITIES = (0.5, 0.25, 0.1, 0.05)
PATTERNS = ("random", "columns", "channels")
KINDS = {"ternary": None, "pot": 4}
IN_BITS = 2


def weight_matrix(rng, size: int, kind: str, density: float, pattern: str) -> np.ndarray:
    """Weight values: every non-pruned weight non-zero."""
    sign = rng.choice(np.array([-1, 1]), size=(size, size))
    if kind == "pot":
        base = sign << rng.integers(0, 7, size=(size, size))      # ±2**0 .. ±2**6 (pot4)
    else:
        base = sign
    if pattern == "random":
        keep = rng.random((size, size)) < density
    elif pattern == "columns":
        keep = np.broadcast_to(rng.random(size) < density, (size, size))
    elif pattern == "channels":
        q = math.sqrt(density)
        keep = (rng.random(size) < q)[:, None] & (rng.random(size) < q)[None, :]
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return np.where(keep, base, 0)


def measure(dut, inputs: int, vectors: int, folds: int, seed: int = 0) -> tuple[int, int]:
    """Free-running simulation: (cycles between the last output beats of the last two
    vectors, total cycles)."""
    rng = np.random.default_rng(seed)
    beats = rng.integers(0, 1 << IN_BITS, size=(vectors * inputs // dut.simd, dut.simd)).tolist()
    ends = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        k, outs, cycle = 0, 0, 0
        ctx.set(dut.i.payload, beats[0])
        ctx.set(dut.i.valid, 1)
        while outs < vectors * folds:
            _, _, i_ready, o_valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            cycle += 1
            if i_ready and k < len(beats):
                k += 1
                if k < len(beats):
                    ctx.set(dut.i.payload, beats[k])
                else:
                    ctx.set(dut.i.valid, 0)
            if o_valid:
                outs += 1
                if outs % folds == 0:
                    ends.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return ends[-1] - ends[-2], ends[-1]


def crossover(size: int, kind: str, dense_bits: int, pe: int, simd: int) -> float | None:
    """Density (percent, bisected to 1%) at which the sparse storage reaches the dense
    storage (random pattern); None if it stays below at 100%."""
    def total(pct):
        w = weight_matrix(np.random.default_rng(pct), size, kind, pct / 100, "random")
        s = SparseCSC(w, kind=kind, wbits=KINDS[kind], in_bits=IN_BITS, pe=pe, simd=simd)
        return s.storage_bits["total"]

    if total(100) < dense_bits:
        return None
    lo, hi = 0, 100                 # total(lo) < dense <= total(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if total(mid) >= dense_bits:
            hi = mid
        else:
            lo = mid
    return float(hi)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sparse", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/sparse.json", help="JSON result file")
    parser.add_argument("--size", type=int, default=256, help="layer outputs = inputs")
    parser.add_argument("--dense-pe", type=int, default=4, help="dense MVTU PE")
    parser.add_argument("--dense-simd", type=int, default=4, help="dense MVTU SIMD")
    parser.add_argument("--index-bits", type=int, default=4, help="relative row index width")
    parser.add_argument("--vectors", type=int, default=3, help="vectors per simulation (>= 2)")
    args = parser.parse_args(argv)
    if args.vectors < 2:
        parser.error("--vectors must be at least 2")
    warnings.filterwarnings("ignore", category=UnusedElaboratable)   # engines built to count
    size, dpe, dsimd = args.size, args.dense_pe, args.dense_simd
    pe, simd = dpe * dsimd, dsimd
    rng = np.random.default_rng(2026)
    rows, dense = [], {}
    jobs = [(k, p, d) for k in KINDS for p in PATTERNS for d in DENSITIES]
    for kind, pattern, density in tqdm(jobs, desc="sparse", file=sys.stderr):
        if kind not in dense:
            w = weight_matrix(rng, size, kind, 1.0, "random")
            mvtu = MVTU(w, kind=kind, wbits=KINDS[kind], in_bits=IN_BITS, pe=dpe, simd=dsimd)
            cycles, _ = measure(mvtu, size, 2, size // dpe)
            dense[kind] = {"cycles": cycles, "model": mvtu.cycles_per_vector,
                           "storage_bits": size * size * mvtu.weight_bits,
                           "weight_bits": mvtu.weight_bits}
        w = weight_matrix(rng, size, kind, density, pattern)
        dut = SparseCSC(w, kind=kind, wbits=KINDS[kind], in_bits=IN_BITS, pe=pe, simd=simd,
                        index_bits=args.index_bits)
        cycles, _ = measure(dut, size, args.vectors, size // pe)
        speedup = dense[kind]["cycles"] / cycles
        target = 0.6 / density
        st = dut.storage_bits
        rows.append({
            "kind": kind, "pattern": pattern, "density": density,
            "actual_density": round(dut.nnz / (size * size), 4),
            "cycles": cycles, "model_cycles": dut.cycles_per_vector,
            "bound_cycles": dut.bound_cycles, "lockstep_cycles": dut.lockstep_cycles,
            "dense_cycles": dense[kind]["cycles"],
            "speedup": round(speedup, 3), "goal_speedup": round(target, 3),
            "goal_met": speedup >= target,
            "goal_met_at_actual_density": speedup >= 0.6 * size * size / max(dut.nnz, 1),
            "padding_entries": dut.padding, "value_bits": dut.value_bits,
            "storage_bits": st, "dense_storage_bits": dense[kind]["storage_bits"],
            "storage_ratio": round(st["total"] / dense[kind]["storage_bits"], 4),
        })
    rows_bits = {r["kind"]: r["value_bits"] for r in rows}
    cross = {k: crossover(size, k, dense[k]["storage_bits"], pe, simd)
             for k in KINDS}
    by_density = {}
    for density in DENSITIES:
        sel = [r for r in rows if r["density"] == density]
        worst = min(sel, key=lambda r: r["speedup"])
        by_density[f"{round(density * 100)}"] = worst["speedup"]
    by_pattern = {f"{k}/{p}": {f"{round(r['density'] * 100)}": r["speedup"] for r in rows
                               if r["kind"] == k and r["pattern"] == p}
                  for k in KINDS for p in PATTERNS}
    misses = [f"{r['kind']}/{r['pattern']} at {round(r['density'] * 100)}%: {r['speedup']} < "
              f"{r['goal_speedup']}" for r in rows if not r["goal_met"]]
    summary = {
        "bench": "sparse",
        "layer": f"fc {size}x{size}, {IN_BITS}-bit activations, index_bits {args.index_bits}",
        "matching": f"dense MVTU PE {dpe} x SIMD {dsimd} = {dpe * dsimd} lanes; sparse pe {pe}, simd {simd}",
        "dense": dense,
        "speedup": by_density,          # worst over kinds and patterns, per density (percent)
        "goal": "speedup >= 0.6 / density",
        "goal_met": all(r["goal_met"] for r in rows),
        "goal_missed": misses,
        "speedup_by_pattern": by_pattern,
        "worst_speedup_over_goal": round(min(r["speedup"] / r["goal_speedup"] for r in rows), 3),
        "model_exact": all(r["cycles"] == r["model_cycles"] for r in rows),
        "storage_crossover_density_pct": cross,
        "storage_breakeven_without_pointers_pct": {
            k: round(100 * dense[k]["weight_bits"] / (rows_bits[k] + args.index_bits), 1) for k in KINDS},
        "rows": rows,
        "command": command("sparse", argv),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    for r in rows:
        print(f"{r['kind']:8s} {r['pattern']:10s} {r['density']:5.2f}: {r['cycles']:6d} cycles "
              f"(dense {r['dense_cycles']}), speedup {r['speedup']:7.2f} (goal {r['goal_speedup']:5.1f}"
              f"{', met' if r['goal_met'] else ', NOT met'}), storage {r['storage_ratio']:.3f} of dense",
              file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
