"""Benchmark: does pruning pay in hardware? A block-pruned digits model against the dense one.

    python -m bench.compression [--board pynq-z2] [--model PATH|random-block] [--block 4x16]
                                [--keep 0.25] [--out bench/results/compression.json]

Issue 13, goal 1 (seed 002's 2.2x): a pruned model of the same architecture as the
dense ``models/pot4``, built for the same board, should run at >= 2.2x the dense model's
frames/s with no more LUTs, or at the same frames/s with <= 45% of its LUTs.

* dense: ``models/pot4`` at the default folding of ``python -m hdl.build BOARD`` (the
  cheapest folding reaching 20,000 frames/s at the board's clock), weights placed in
  the board's block RAM by the planner, as the build does;
* pruned (``--model``): ``models/pot4-block`` (block-pruned in ``quant/``) when it
  exists, or ``random-block``: pot4's own weights with all but the ``--keep`` share of
  each layer's ``--block`` tiles (rows x im2col columns, those of largest L1 norm) set
  to zero, in every layer the block divides (thresholds unchanged: a hardware figure,
  not a trained model); the compiler picks each stage's engine (dense, tile-skipping,
  CSC) and folding by itself, at the dense design's cycles per frame (same speed) and
  at those / 2.2 (fast).

Every design is the whole generated top (``AxiTop`` around ``Network`` at the board's
TDATA width: engines, width converters, FIFOs, AXI shell) synthesised in one Yosys
``synth_xilinx`` run for the board's family; cycles per frame are measured on that top
in Verilator (``bench.networks.measure_top``: free-running, back-to-back frames, scores
checked against ``sim.golden``) beside the cycle model. The figures of the previous run on the CSC
engine (unstructured ``models/pot4-sparse``) are kept under ``"previous"``. The last
line printed is JSON; the same object is written to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.back import verilog

import boards
from bench import command, generator_version
from bench.networks import WHOLE_MODULE, measure_top
from hdl import cli, ir
from hdl.flow import synth
from hdl.flow.build import DEFAULT_TARGET_FPS, whole_job
from hdl.flow.network import Network, NetworkSpec, weight_bram_budget
from hdl.shell.axi import AxiTop, board_tdata_width

DENSE = "models/pot4"
BLOCK = "models/pot4-block"
RANDOM_BLOCK = "random-block"
SPEEDUP_GOAL = 2.2
LUT_GOAL = 0.45


def block_pruned(model: ir.Model, block: tuple[int, int], keep: float) -> tuple[ir.Model, dict]:
    """``model`` with, in every conv/fc layer whose weight shape ``block`` divides, only the
    ``keep`` share (rounded, at least one) of its ``block`` tiles of largest L1 norm kept;
    returns the model and the kept share per layer."""
    r, c = block
    layers, kept = [], {}
    for layer in model.layers:
        if isinstance(layer, (ir.Conv, ir.FC)):
            m = layer.weights.matrix()
            rows, cols = m.shape
            if rows % r == 0 and cols % c == 0:
                norms = np.abs(m).reshape(rows // r, r, cols // c, c).sum(axis=(1, 3))
                n = max(1, round(keep * norms.size))
                order = np.argsort(-norms, axis=None, kind="stable")[:n]
                mask = np.zeros(norms.size, bool)
                mask[order] = True
                mask = np.repeat(np.repeat(mask.reshape(norms.shape), r, axis=0), c, axis=1)
                w = ir.Weights.from_matrix(np.where(mask, m, 0), layer.weights.kind, layer.weights.bits)
                layer = dataclasses.replace(layer, weights=w)
                kept[layer.name] = round(n / norms.size, 4)
        layers.append(layer)
    name = f"{model.name}-block{r}x{c}-keep{keep:g}"
    return dataclasses.replace(model, name=name, layers=layers).validate(name), kept


def load_pruned(which: str, dense: ir.Model, block: tuple[int, int], keep: float) -> tuple[ir.Model, dict]:
    """The pruned model and its description for the JSON."""
    if which == RANDOM_BLOCK:
        model, kept = block_pruned(dense, block, keep)
        return model, {"model": RANDOM_BLOCK, "block": list(block), "keep": keep, "kept_tiles": kept,
                       "note": "dense pot4 weights with the largest-norm tiles kept, thresholds "
                               "unchanged (hardware figures only, not a trained model)"}
    return ir.load(which), {"model": which}


def design(model: ir.Model, label: str, board, target_cycles: int, *, measure: bool, progress,
           run_synth: bool = True) -> dict:
    """Build, simulate and synthesise one whole network."""
    net = NetworkSpec(model, target_cycles=target_cycles, axis_width=board_tdata_width(board),
                      bram18_budget=weight_bram_budget(board.capacity.bram18))
    row = {"model": label, "target_cycles": target_cycles, "folding": net.folding,
           "engines": {s.name: s.engine for s in net.stages},
           "stage_cycles": {s.name: s.cycles_per_frame for s in net.stages},
           "cycles_model": net.cycles_per_frame,
           "tile_steps": {s.name: [s.compute.steps, s.compute.neuron_folds * s.compute.synapse_folds]
                          for s in net.stages if s.tiles}}
    progress(f"{label}: {net.cycles_per_frame} cycles/frame at {json.dumps(net.folding)}")
    if measure:
        got = measure_top(net, 3, 0, f"compression_{label.replace('/', '_')}_{target_cycles}")
        row["cycles_measured"] = got["cycles"]
        progress(f"  measured {row['cycles_measured']} cycles/frame (generated top, Verilator)")
    cycles = row.get("cycles_measured", row["cycles_model"])
    clock = board.default_clock_mhz
    row["fps"] = clock * 1e6 / cycles
    if not run_synth:
        row.update({k: None for k in ("lut", "ff", "bram18", "dsp", "logic_levels")})
        return row
    started = time.monotonic()
    top = AxiTop(Network(spec=net), frame_elements=math.prod(model.input.shape),
                 classes=len(model.classes), in_width=net.axis_width, out_width=net.axis_width)
    text = verilog.convert(top, name=WHOLE_MODULE, platform=board())
    verilog_text, module, map_apart = whole_job(text, WHOLE_MODULE)
    result = synth.synthesize(verilog_text, module, board.synth_family, map_apart=map_apart)
    row.update({k: v for k, v in result.resources().items()})
    row["logic_levels"] = result.logic_levels
    row["synth_s"] = round(time.monotonic() - started, 1)
    progress(f"  {row['lut']:,} LUT, {row['ff']:,} FF, {row['bram18']} BRAM18, {row['dsp']} DSP")
    return row


def previous_figures(out: Path) -> dict | None:
    """The figures of the previous results file: its ``"previous"`` entry, or the whole
    run of the CSC bench (``models/pot4-sparse``) that it was before tile skipping."""
    try:
        old = json.loads(out.read_text())
    except (OSError, ValueError):
        return None
    if "previous" in old:
        return old["previous"]
    if "sparse_same_fps" in old:
        keys = ("dense", "sparse_same_fps", "sparse_fast", "fps_ratio", "lut_ratio_fast", "same_fps_ratio",
                "lut_ratio_same_fps", "goal_speed_met", "goal_size_met", "goal_met", "command")
        return {"engine": "sparse (CSC)", **{k: old[k] for k in keys if k in old}}
    return None


def _block(text: str) -> tuple[int, int]:
    try:
        r, c = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"block must be ROWSxCOLS, like 4x16, not {text!r}") from None
    if r < 1 or c < 1:
        raise argparse.ArgumentTypeError(f"block must be positive, not {text!r}")
    return r, c


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.compression", __doc__.split("\n")[0])
    parser.add_argument("--board", default="pynq-z2", help="board (default pynq-z2)")
    parser.add_argument("--out", default="bench/results/compression.json", help="JSON result file")
    parser.add_argument("--no-sim", action="store_true", help="cycle model only (no simulation)")
    parser.add_argument("--no-synth", action="store_true", help="no synthesis (no LUT figures or goals)")
    parser.add_argument("--dense", default=DENSE, help=f"dense model (default {DENSE})")
    parser.add_argument("--model", default=None,
                        help=f"pruned model file, or {RANDOM_BLOCK!r} (default {BLOCK} if it exists, "
                             f"else {RANDOM_BLOCK})")
    parser.add_argument("--block", type=_block, default=(4, 16), help="random-block tile, ROWSxCOLS (4x16)")
    parser.add_argument("--keep", type=float, default=0.25, help="random-block share of tiles kept (0.25)")
    parser.add_argument("--target-fps", type=float, default=DEFAULT_TARGET_FPS,
                        help=f"dense design's frame-rate target (default {DEFAULT_TARGET_FPS:g})")
    args = parser.parse_args(argv)
    if not 0 < args.keep <= 1:
        parser.error(f"--keep must be in (0, 1], not {args.keep}")
    board = boards.get(args.board)
    generators = generator_version()          # the sources as the designs are built from them
    which = args.model or (BLOCK if ir.model_path(BLOCK).exists() else RANDOM_BLOCK)

    def progress(text):
        print(text, file=sys.stderr, flush=True)

    clock = board.default_clock_mhz
    target = int(clock * 1e6 // args.target_fps)
    measure = not args.no_sim
    dense_model = ir.load(args.dense)
    pruned, about = load_pruned(which, dense_model, args.block, args.keep)
    synth_on = not args.no_synth
    dense = design(dense_model, args.dense, board, target, measure=measure, progress=progress,
                   run_synth=synth_on)
    dense_cycles = dense.get("cycles_measured", dense["cycles_model"])
    same = design(pruned, which, board, dense_cycles, measure=measure, progress=progress, run_synth=synth_on)
    fast = design(pruned, which, board, int(dense_cycles / SPEEDUP_GOAL), measure=measure,
                  progress=progress, run_synth=synth_on)
    fps_ratio = fast["fps"] / dense["fps"]
    same_fps_ratio = same["fps"] / dense["fps"]
    if synth_on:
        lut_ratio_fast = round(fast["lut"] / dense["lut"], 3)
        lut_ratio_same = round(same["lut"] / dense["lut"], 3)
        speed_met = fps_ratio >= SPEEDUP_GOAL and fast["lut"] <= dense["lut"]
        size_met = same_fps_ratio >= 1.0 and lut_ratio_same <= LUT_GOAL
        met = speed_met or size_met
    else:
        lut_ratio_fast = lut_ratio_same = speed_met = size_met = met = None
    out = Path(args.out)
    summary = {
        "bench": "compression",
        "board": board.name, "clock_mhz": clock, "family": board.synth_family,
        "goal": f"pruned model >= {SPEEDUP_GOAL}x the dense fps with no more LUTs, or the same fps "
                f"with <= {LUT_GOAL:.0%} of its LUTs (Yosys, whole network)",
        "pruned_model": about,
        "dense": dense, "pruned_same_fps": same, "pruned_fast": fast,
        "fps_ratio": round(fps_ratio, 3), "lut_ratio_fast": lut_ratio_fast,
        "same_fps_ratio": round(same_fps_ratio, 3), "lut_ratio_same_fps": lut_ratio_same,
        "goal_speed_met": speed_met, "goal_size_met": size_met, "goal_met": met,
        "synth_note": "Yosys synth_xilinx of the whole generated top (AxiTop: engines, FIFOs, width "
                      "converters, AXI shell), one run per design; cycles measured on that top in "
                      "Verilator, 3 frames back to back, scores = sim.golden",
        "previous": previous_figures(out),
        "command": command("compression", argv),
        "generators": generators,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
