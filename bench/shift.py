"""Benchmark: power-of-two shift-add lanes against integer multiply lanes (issues 6, 13).

    python -m bench.shift [--out bench/results/shift.json] [--workers 2]

For each folding (PE x SIMD lanes) one layer of 32 outputs x 64 inputs with 4-bit
activations and score output (no thresholds, so that only the datapath differs) is
built four ways from random weights of its kind:

* ``pot4`` / ``pot5``: :class:`hdl.engines.shiftmac.ShiftMAC` (the MVTU's shift-add bit
  heap, :mod:`hdl.engines.shiftadd`), 4- and 5-bit power-of-two codes using their whole
  exponent window (``±2**0 .. ±2**6`` and ``±2**0 .. ±2**14``);
* ``int4`` / ``int8``: :class:`hdl.engines.mvtu.MVTU` in int mode, a ``*`` per lane and an
  adder tree (Yosys maps products of at least 9 result bits to DSP48E2 slices, smaller
  ones to LUTs).

Every design is elaborated for the ZCU104 platform (so the primitive forms are used,
as in a network build) and synthesised with Yosys ``synth_xilinx -family xcup``
(``hdl.flow.synth``), twice:

* **engine**: the whole MVTU (weight memories, input buffer, control, accumulators,
  output stage); ``lut_per_lane`` = its LUTs / (PE x SIMD);
* **datapath**: the PE datapaths alone, built by the engine's own ``MVTU._partial``:
  registered weight words and activation word in, the PE partial sums out, i.e. the
  lanes (multipliers, or shifters) and their adder tree (or bit heap), without memory,
  accumulator, output stage or control; ``datapath_lut_per_lane`` = its LUTs / (PE x SIMD).

At PE 4 x SIMD 16, pot4 and int4 are also synthesised as hidden layers (15 random
thresholds per channel instead of scores; ``engine_thresholds``): there the pot engine's
per-row heap offset (:func:`hdl.engines.shiftadd.heap_offset`) goes into the thresholds
for free, while with scores it is a per-channel bias in the output stage, which the
bias-free int4 engine does not need; the thresholds' comparators are shared cost, on the
wider accumulator for pot4 (its heap domain spans ``15 * sum|w|`` with pot weights up
to 64, int4's weights stop at 8).

The JSON's headline ``pot4_lut_per_lane``, ``int4_lut_per_lane`` and ``int8_lut_per_lane``
are the datapath figures at PE 4 x SIMD 16 (issue 13: "a pot4 lane, shift-add and its
share of the adder tree"), ``goal`` compares pot4 with ``GOAL_RATIO`` times int4, and
``engine_lut_per_lane`` gives the whole-engine figures beside them. ``previous`` keeps
the figures of the results file this run replaces (carried forward), so that the gain
stays visible. Cycles per vector are the same for all four at one folding
(``(32 / PE) * (64 / SIMD)``). The last line printed is JSON; the same object is written
to ``--out``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Const, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

import boards
from bench import command
from hdl.engines.mvtu import MVTU
from hdl.engines.shiftmac import ShiftMAC
from hdl.flow.synth import synthesize_many
from sim.random_model import random_thresholds, random_weights
from hdl import cli

OUTPUTS, INPUTS, IN_BITS = 32, 64, 4
FOLDINGS = ((2, 8), (4, 16))
KINDS = {"pot4": ("pot", 4), "pot5": ("pot", 5), "int4": ("int", 4), "int8": ("int", 8)}
BOARD = "zcu104"
#: Issue 13, goal 3: a pot4 lane at most this fraction of an int4 lane's LUTs (PE4 x SIMD16).
GOAL_FOLDING, GOAL_RATIO = (4, 16), 0.6


def build(kind_name: str, pe: int, simd: int, seed: int = 0, thresholds: bool = False):
    """The layer for ``kind_name``; with ``thresholds``, 15 random thresholds per channel
    (4-bit activation codes out, as a hidden layer) instead of scores."""
    kind, wbits = KINDS[kind_name]
    rng = np.random.default_rng(seed)
    w = random_weights(rng, OUTPUTS, INPUTS, kind, wbits).matrix()
    if kind == "pot":
        emax = (1 << (wbits - 1)) - 2             # make sure the whole window is used
        w[0, 0], w[0, 1] = 1, -(1 << emax)
    t = None
    if thresholds:
        span = np.abs(w).sum(axis=1) * ((1 << IN_BITS) - 1)
        t = random_thresholds(rng, -span // 4, span // 4, IN_BITS)
    if kind == "pot":
        return ShiftMAC(w, wbits=wbits, in_bits=IN_BITS, pe=pe, simd=simd, thresholds=t)
    return MVTU(w, kind=kind, wbits=wbits, in_bits=IN_BITS, pe=pe, simd=simd, thresholds=t)


class Datapath(wiring.Component):
    """The PE datapaths of ``mvtu`` alone (``MVTU._partial`` per PE), between registers:
    weight words and activation word are registered on the way in, and each PE's partial
    sum leaves through the datapath's own output register."""

    def __init__(self, mvtu: MVTU):
        self.mvtu = mvtu
        super().__init__({
            "w": In(mvtu.pe * mvtu.simd * mvtu.weight_bits),
            "x": In(data.ArrayLayout(unsigned(mvtu.in_bits), mvtu.simd)),
            "o": Out(data.ArrayLayout(mvtu.partial_shape, mvtu.pe)),
        })

    def elaborate(self, platform):
        m = Module()
        mv = self.mvtu
        mv._advance = Const(1, 1)                 # every datapath register loads each cycle
        w, x = Signal.like(self.w), Signal.like(self.x)
        m.d.sync += [w.eq(self.w), x.eq(self.x)]
        word = mv.simd * mv.weight_bits
        shared = {}
        for p in range(mv.pe):
            m.d.comb += self.o[p].eq(mv._partial(m, p, w[p * word:(p + 1) * word], x, shared))
        return m


def _previous(out: Path) -> dict | None:
    """Per-lane figures of the results file about to be replaced (or its own ``previous``)."""
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(old, dict) and isinstance(old.get("previous"), dict):
        return old["previous"]
    configs = old.get("configs") or {}
    if not configs:
        return None
    return {"command": old.get("command"), "what": "whole engine, the first-round pot datapath "
            "(barrel shift, one's-complement negate, adder tree), no platform",
            "lut_per_lane": {n: c.get("lut_per_lane") for n, c in configs.items()},
            "dsp": {n: c.get("dsp") for n, c in configs.items()}}


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.shift", __doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/shift.json", help="JSON result file")
    parser.add_argument("--workers", type=int, default=2, help="Yosys processes at once")
    args = parser.parse_args(argv)
    platform = boards.get(BOARD)()
    duts = {f"{k}_pe{pe}_simd{simd}": build(k, pe, simd) for pe, simd in FOLDINGS for k in KINDS}
    goal_tag = "pe{}_simd{}".format(*GOAL_FOLDING)
    hidden = {f"{k}_{goal_tag}": build(k, *GOAL_FOLDING, thresholds=True) for k in ("pot4", "int4")}
    jobs = {}
    for n, d in duts.items():
        jobs[n] = (verilog.convert(d, name="top", platform=platform), "top")
        jobs[n + "_datapath"] = (verilog.convert(Datapath(d), name="top", platform=platform), "top")
    for n, d in hidden.items():
        jobs[n + "_thresholds"] = (verilog.convert(d, name="top", platform=platform), "top")

    def progress(label, r):
        print(f"{label}: {r.lut} LUT, {r.ff} FF, {r.dsp} DSP{' (cached)' if r.cached else ''}",
              file=sys.stderr, flush=True)

    results = synthesize_many(jobs, platform.synth_family, workers=args.workers, progress=progress)
    rows = {}
    for n, d in duts.items():
        r, dp, lanes = results[n], results[n + "_datapath"], d.pe * d.simd
        rows[n] = {
            "kind": n.split("_")[0], "pe": d.pe, "simd": d.simd, "lanes": lanes,
            "in_bits": IN_BITS, "acc_bits": d.acc_shape.width,
            "cycles_per_vector": d.cycles_per_vector, "datapath_stages": d.datapath_stages,
            "lut": r.lut, "lut_logic": r.lut_logic, "lut_memory": r.lut_memory, "ff": r.ff,
            "dsp": r.dsp, "bram18": r.bram18, "carry": r.carry,
            "logic_levels": r.logic_levels,
            "lut_per_lane": round(r.lut / lanes, 2),
            "lut_logic_per_lane": round(r.lut_logic / lanes, 2), "ff_per_lane": round(r.ff / lanes, 2),
            "dsp_per_lane": round(r.dsp / lanes, 3),
            "datapath_lut": dp.lut, "datapath_ff": dp.ff, "datapath_dsp": dp.dsp,
            "datapath_carry": dp.carry, "datapath_logic_levels": dp.logic_levels,
            "datapath_lut_per_lane": round(dp.lut / lanes, 2),
        }
        if d.mode == "pot":
            rows[n]["exponents"] = [d.emin, d.emax]
    comparison = {}
    for pe, simd in FOLDINGS:
        tag = f"pe{pe}_simd{simd}"
        comparison[tag] = {
            f"{p}_vs_{i}": {
                "lut_ratio": round(rows[f"{p}_{tag}"]["lut"] / rows[f"{i}_{tag}"]["lut"], 3),
                "datapath_lut_ratio": round(rows[f"{p}_{tag}"]["datapath_lut"]
                                            / rows[f"{i}_{tag}"]["datapath_lut"], 3),
                "dsp_saved": rows[f"{i}_{tag}"]["dsp"] - rows[f"{p}_{tag}"]["dsp"],
            }
            for p in ("pot4", "pot5") for i in ("int4", "int8")
        }
    thresholds = {n.split("_")[0]: {"lut": results[n + "_thresholds"].lut,
                                     "lut_per_lane": round(results[n + "_thresholds"].lut / (d.pe * d.simd), 2),
                                     "ff": results[n + "_thresholds"].ff, "dsp": results[n + "_thresholds"].dsp,
                                     "logic_levels": results[n + "_thresholds"].logic_levels}
                  for n, d in hidden.items()}
    per_lane = {k: rows[f"{k}_{goal_tag}"]["datapath_lut_per_lane"] for k in KINDS}
    ratio = round(rows[f"pot4_{goal_tag}"]["datapath_lut"] / rows[f"int4_{goal_tag}"]["datapath_lut"], 3)
    max_pot_dsp = max([row["dsp"] for n, row in rows.items() if n.startswith("pot")]
                      + [thresholds["pot4"]["dsp"]])
    out = Path(args.out)
    summary = {
        "bench": "shift", "family": platform.synth_family, "board": BOARD,
        "layer": f"{OUTPUTS}x{INPUTS}, {IN_BITS}-bit activations, scores",
        "folding": goal_tag,
        "pot4_lut_per_lane": per_lane["pot4"], "int4_lut_per_lane": per_lane["int4"],
        "int8_lut_per_lane": per_lane["int8"], "pot5_lut_per_lane": per_lane["pot5"],
        "max_pot_dsp": max_pot_dsp,
        "per_lane_means": "datapath LUTs (lanes and adder tree or bit heap, between registers) "
                          "/ (PE x SIMD)",
        "engine_lut_per_lane": {k: rows[f"{k}_{goal_tag}"]["lut_per_lane"] for k in KINDS},
        "engine_thresholds": thresholds,
        "goal": {"pot4_vs_int4_lut_ratio": ratio, "max_ratio": GOAL_RATIO,
                 "engine_pot4_vs_int4_lut_ratio": comparison[goal_tag]["pot4_vs_int4"]["lut_ratio"],
                 "engine_thresholds_pot4_vs_int4_lut_ratio": round(
                     thresholds["pot4"]["lut"] / thresholds["int4"]["lut"], 3),
                 "met": ratio <= GOAL_RATIO and max_pot_dsp == 0},
        "configs": rows, "comparison": comparison, "previous": _previous(out),
        "command": command("shift", argv)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    for n, row in rows.items():
        print(f"{n:18s} engine {row['lut']:6d} LUT ({row['lut_per_lane']:6.2f}/lane) {row['ff']:5d} FF "
              f"{row['dsp']:3d} DSP | datapath {row['datapath_lut']:5d} LUT "
              f"({row['datapath_lut_per_lane']:6.2f}/lane), {row['datapath_logic_levels']} LUT levels")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
