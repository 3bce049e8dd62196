"""Benchmark: power-of-two shift MAC lanes against integer multiply lanes (issue 6).

    python -m bench.shift [--out bench/results/shift.json] [--workers 2]

For each folding (PE x SIMD lanes) one layer of 32 outputs x 64 inputs with 4-bit
activations and score output (no thresholds, so that only the datapath differs) is
built four ways from random weights of its kind and synthesized with Yosys
``synth_xilinx -family xcup`` (``hdl.flow.synth``):

* ``pot4`` / ``pot5``: :class:`hdl.engines.shiftmac.ShiftMAC`, 4- and 5-bit power-of-two codes
  using their whole exponent window (``±2**0 .. ±2**6`` and ``±2**0 .. ±2**14``);
* ``int4`` / ``int8``: :class:`hdl.engines.mvtu.MVTU` in int mode, a ``*`` per lane (Yosys maps
  products of at least 9 result bits to DSP48E2 slices, smaller ones to LUTs).

Per-lane figures divide the whole engine (memories, accumulators, output stage
included) by PE x SIMD. Cycles per vector are the same for all four at one folding
(``(32 / PE) * (64 / SIMD)``); the shift MAC's gain is that its lanes need no DSP, so a
DSP-limited device can unfold it further. The last line printed is JSON; the same object
is written to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from bench import command
from hdl.engines.mvtu import MVTU
from hdl.engines.shiftmac import ShiftMAC
from hdl.flow.synth import synthesize_many
from sim.random_model import random_weights

OUTPUTS, INPUTS, IN_BITS = 32, 64, 4
FOLDINGS = ((2, 8), (4, 16))
KINDS = {"pot4": ("pot", 4), "pot5": ("pot", 5), "int4": ("int", 4), "int8": ("int", 8)}


def build(kind_name: str, pe: int, simd: int, seed: int = 0):
    kind, wbits = KINDS[kind_name]
    rng = np.random.default_rng(seed)
    w = random_weights(rng, OUTPUTS, INPUTS, kind, wbits).matrix()
    if kind == "pot":
        emax = (1 << (wbits - 1)) - 2             # make sure the whole window is used
        w[0, 0], w[0, 1] = 1, -(1 << emax)
        return ShiftMAC(w, wbits=wbits, in_bits=IN_BITS, pe=pe, simd=simd)
    return MVTU(w, kind=kind, wbits=wbits, in_bits=IN_BITS, pe=pe, simd=simd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shift", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/shift.json", help="JSON result file")
    parser.add_argument("--workers", type=int, default=2, help="Yosys processes at once")
    args = parser.parse_args(argv)
    duts = {f"{k}_pe{pe}_simd{simd}": build(k, pe, simd) for pe, simd in FOLDINGS for k in KINDS}
    jobs = {n: (verilog.convert(d, name="top"), "top") for n, d in duts.items()}

    def progress(label, r):
        print(f"{label}: {r.lut} LUT, {r.ff} FF, {r.dsp} DSP{' (cached)' if r.cached else ''}",
              file=sys.stderr, flush=True)

    results = synthesize_many(jobs, "xcup", workers=args.workers, progress=progress)
    rows = {}
    for n, d in duts.items():
        r, lanes = results[n], d.pe * d.simd
        rows[n] = {
            "kind": n.split("_")[0], "pe": d.pe, "simd": d.simd, "lanes": lanes,
            "in_bits": IN_BITS, "acc_bits": d.acc_shape.width,
            "cycles_per_vector": d.cycles_per_vector,
            "lut": r.lut, "lut_logic": r.lut_logic, "lut_memory": r.lut_memory, "ff": r.ff,
            "dsp": r.dsp, "bram18": r.bram18, "carry": r.carry,
            "logic_levels": r.logic_levels,
            "lut_per_lane": round(r.lut / lanes, 2),
            "lut_logic_per_lane": round(r.lut_logic / lanes, 2), "ff_per_lane": round(r.ff / lanes, 2),
            "dsp_per_lane": round(r.dsp / lanes, 3),
        }
        if d.mode == "pot":
            rows[n]["exponents"] = [d.emin, d.emax]
    comparison = {}
    for pe, simd in FOLDINGS:
        tag = f"pe{pe}_simd{simd}"
        comparison[tag] = {
            f"{p}_vs_{i}": {
                "lut_ratio": round(rows[f"{p}_{tag}"]["lut"] / rows[f"{i}_{tag}"]["lut"], 3),
                "dsp_saved": rows[f"{i}_{tag}"]["dsp"] - rows[f"{p}_{tag}"]["dsp"],
            }
            for p in ("pot4", "pot5") for i in ("int4", "int8")
        }
    summary = {"bench": "shift", "family": "xcup", "layer": f"{OUTPUTS}x{INPUTS}, {IN_BITS}-bit activations, scores",
               "max_pot_dsp": max(row["dsp"] for n, row in rows.items() if n.startswith("pot")),
               "configs": rows, "comparison": comparison, "command": command("shift", argv)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    for n, row in rows.items():
        print(f"{n:18s} {row['lut']:6d} LUT ({row['lut_per_lane']:6.2f}/lane) {row['ff']:5d} FF "
              f"({row['ff_per_lane']:5.2f}/lane) {row['dsp']:3d} DSP ({row['dsp_per_lane']:.3f}/lane)")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
