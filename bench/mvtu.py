"""Benchmark: MVTU resources from Yosys beside FINN's LUT model for the same folding.

    python -m bench.mvtu [--out bench/results/mvtu.json] [--workers 2]

Each configuration is a whole MVTU (weight memories, input buffer, datapath,
accumulators, output stage) with random weights of its kind and, unless it is a score
layer, random thresholds; it is synthesized with Yosys ``synth_xilinx -family xcup``
(``hdl.flow.synth``: LUT = every LUT1..LUT6/LUT6_2 plus LUT-RAM sites, FF, BRAM18, DSP). The
XNOR and binary-weight popcounts use Xilinx primitives (``primitives="xilinx"``), as
they would in a Vivado build.

FINN's model is ``MVAU_hls.lut_estimation`` of Xilinx/finn
(``src/finn/custom_op/fpgadataflow/hls/matrixvectoractivation_hls.py``, from FINN-R,
Blott et al. 2018)::

    LUT = c0 + c1 * P * (mult + addertree + acc + thr + comp) + c2,   c0 = 300, c1 = 1.1
    mult      = Q * (2 * ceil((W + A) / 6) - 1) * (W + A)     (0 with resType "dsp")
    addertree = (W + A) * (2 * Q - 1)
    acc       = accumulator bits
    thr       = (2**B - 1) * acc * ceil(TMEM / 64),  comp = (2**B - 1) * acc
                (distributed threshold memory; 0 for a layer without activation)
    c2        = P * Q * W * ceil(WMEM / 64) for distributed weight memory, else 0

with P = PE, Q = SIMD, W / A weight / activation bits, B output bits, TMEM = MH / PE,
WMEM = MH * MW / (PE * SIMD). We evaluate it with LUT multipliers (resType "lut"), the
accumulator width our generator derived from the weights (FINN's
``minimize_accumulator_width`` does the same), and c2 only where Yosys put our weights in
LUT-RAM. The last line printed is JSON; the same object is written to ``--out``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from bench import command
from hdl.engines.mvtu import MVTU
from hdl.flow.synth import synthesize_many
from sim.random_model import random_thresholds, random_weights
from hdl import cli

# name: (kind, wbits, in_bits, outputs, inputs, pe, simd, out_bits or None for scores)
CONFIGS = {
    "xnor_64x64_pe4_simd16": ("binary", None, 1, 64, 64, 4, 16, 1),
    "xnor_64x64_pe16_simd64": ("binary", None, 1, 64, 64, 16, 64, 1),
    "xnor_256x576_pe16_simd32": ("binary", None, 1, 256, 576, 16, 32, 1),
    "w1a2_64x64_pe4_simd16": ("binary", None, 2, 64, 64, 4, 16, 2),
    "w2a2_64x64_pe4_simd16": ("ternary", None, 2, 64, 64, 4, 16, 2),
}


def finn_lut_model(*, pe: int, simd: int, wbits: int, abits: int, mw: int, mh: int,
                   acc_bits: int, out_bits: int | None, distributed_weights: bool) -> float:
    """FINN's MVAU LUT estimate (see the module docstring), resType "lut"."""
    w_a = wbits + abits
    mult = simd * (2 * math.ceil(w_a / 6) - 1) * w_a
    addertree = w_a * (2 * simd - 1)
    thr = comp = 0
    if out_bits is not None:
        tmem = mh // pe
        thr = (2 ** out_bits - 1) * acc_bits * math.ceil(tmem / 64)
        comp = (2 ** out_bits - 1) * acc_bits
    c2 = pe * simd * wbits * math.ceil(mh * mw / (pe * simd) / 64) if distributed_weights else 0
    return 300 + 1.1 * pe * (mult + addertree + acc_bits + thr + comp) + c2


def build(name: str, seed: int = 0) -> MVTU:
    kind, wbits, in_bits, outputs, inputs, pe, simd, out_bits = CONFIGS[name]
    rng = np.random.default_rng(seed)
    w = random_weights(rng, outputs, inputs, kind, wbits).matrix()
    thresholds = None
    if out_bits is not None:
        lo_a, hi_a = (-1, 1) if in_bits == 1 else (0, (1 << in_bits) - 1)
        pos, neg = np.where(w > 0, w, 0).sum(1), np.where(w < 0, w, 0).sum(1)
        lo, hi = pos * lo_a + neg * hi_a, pos * hi_a + neg * lo_a
        thresholds = random_thresholds(rng, lo, hi, out_bits)
    primitives = "xilinx" if kind == "binary" else "auto"
    return MVTU(w, kind=kind, wbits=wbits, in_bits=in_bits, pe=pe, simd=simd,
                thresholds=thresholds, primitives=primitives)


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.mvtu", __doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/mvtu.json", help="JSON result file")
    parser.add_argument("--workers", type=int, default=2, help="Yosys processes at once")
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS),
                        help="only these configurations (repeatable)")
    args = parser.parse_args(argv)
    names = args.config or list(CONFIGS)
    duts = {n: build(n) for n in names}
    jobs = {n: (verilog.convert(d, name="top"), "top") for n, d in duts.items()}

    def progress(label, result):
        print(f"{label}: {result.lut} LUT, {result.ff} FF, {result.bram18} BRAM18, "
              f"{result.dsp} DSP{' (cached)' if result.cached else ''}", file=sys.stderr, flush=True)

    results = synthesize_many(jobs, "xcup", workers=args.workers, progress=progress)
    rows = {}
    for n in names:
        d, r = duts[n], results[n]
        kind, wbits, in_bits, outputs, inputs, pe, simd, out_bits = CONFIGS[n]
        finn = finn_lut_model(pe=pe, simd=simd, wbits=d.weight_bits, abits=in_bits, mw=inputs,
                              mh=outputs, acc_bits=d.acc_shape.width, out_bits=out_bits,
                              distributed_weights=r.bram18 == 0)
        rows[n] = {
            "mode": d.mode, "outputs": outputs, "inputs": inputs, "pe": pe, "simd": simd,
            "in_bits": in_bits, "out_bits": out_bits, "acc_bits": d.acc_shape.width,
            "cycles_per_vector": d.cycles_per_vector,
            "lut": r.lut, "lut_logic": r.lut_logic, "lut_memory": r.lut_memory, "ff": r.ff,
            "bram18": r.bram18, "dsp": r.dsp, "carry": r.carry, "logic_levels": r.logic_levels,
            "lut_per_lane": round(r.lut / (pe * simd), 3),
            "finn_lut_model": round(finn, 1),
            "lut_vs_finn": round(r.lut / finn, 3),
        }
    summary = {"bench": "mvtu", "family": "xcup", "tool": f"yosys {next(iter(results.values())).yosys_version}",
               "finn_model": "300 + 1.1*PE*(mult + addertree + acc + thr + comp) + c2 "
                             "(MVAU_hls.lut_estimation, resType lut)",
               "configs": rows, "command": command("mvtu", argv)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    for n, row in rows.items():
        print(f"{n:28s} {row['lut']:6d} LUT ({row['lut_per_lane']:.2f}/lane) {row['ff']:5d} FF "
              f"{row['bram18']:3d} BRAM18 {row['dsp']:3d} DSP   FINN model {row['finn_lut_model']:8.1f}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
