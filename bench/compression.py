"""Benchmark: does pruning pay in hardware? The pruned digits model against the dense one.

    python -m bench.compression [--board pynq-z2] [--out bench/results/compression.json]

Issue 13, goal 1 (seed 002's 2.2x): the pruned ``models/pot4-sparse`` built for the same
board as the dense ``models/pot4`` should run at >= 2.2x the dense model's frames/s with
no more LUTs, or at the same frames/s with <= 45% of its LUTs.

* dense: ``models/pot4`` at the default folding of ``python -m hdl.build BOARD`` (the
  cheapest folding reaching 20,000 frames/s at the board's clock), weights placed in
  the board's block RAM by the planner, as the build does;
* sparse, same speed: ``models/pot4-sparse`` at the cheapest folding reaching the dense
  design's cycles per frame;
* sparse, 2.2x: the cheapest folding reaching the dense cycles per frame / 2.2.

Every design is the whole generated network (``hdl.flow.network.Network``: engines,
width converters, FIFOs; the AXI shell excluded, the same for both) synthesised in one
Yosys ``synth_xilinx`` run for the board's family; cycles per frame are measured in
Amaranth's simulator (free-running, back-to-back frames, scores checked against
``sim.golden``) beside the cycle model. The last line printed is JSON; the same object
is written to ``--out``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from amaranth.back import verilog

import boards
from bench import command
from bench.networks import measure_cycles
from hdl import ir
from hdl.flow import synth
from hdl.flow.build import DEFAULT_TARGET_FPS
from hdl.flow.network import Network, NetworkSpec, weight_bram_budget
from hdl import cli

DENSE = "models/pot4"
SPARSE = "models/pot4-sparse"
SPEEDUP_GOAL = 2.2
LUT_GOAL = 0.45


def design(path: str, board, target_cycles: int, *, measure: bool, progress) -> dict:
    """Build, simulate and synthesise one whole network."""
    model = ir.load(path)
    net = NetworkSpec(model, target_cycles=target_cycles,
                      bram18_budget=weight_bram_budget(board.capacity.bram18))
    row = {"model": path, "target_cycles": target_cycles, "folding": net.folding,
           "engines": {s.name: s.engine for s in net.stages},
           "stage_cycles": {s.name: s.cycles_per_frame for s in net.stages},
           "cycles_model": net.cycles_per_frame}
    progress(f"{path}: {net.cycles_per_frame} cycles/frame at {json.dumps(net.folding)}")
    if measure:
        row["cycles_measured"] = measure_cycles(net, frames=3)
        progress(f"  measured {row['cycles_measured']} cycles/frame")
    cycles = row.get("cycles_measured", row["cycles_model"])
    clock = board.default_clock_mhz
    row["fps"] = clock * 1e6 / cycles
    started = time.monotonic()
    text = verilog.convert(Network(spec=net), name="network", platform=board())
    result = synth.synthesize(text, "network", board.synth_family)
    row.update({k: v for k, v in result.resources().items()})
    row["logic_levels"] = result.logic_levels
    row["synth_s"] = round(time.monotonic() - started, 1)
    progress(f"  {row['lut']:,} LUT, {row['ff']:,} FF, {row['bram18']} BRAM18, {row['dsp']} DSP")
    return row


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.compression", __doc__.split("\n")[0])
    parser.add_argument("--board", default="pynq-z2", help="board (default pynq-z2)")
    parser.add_argument("--out", default="bench/results/compression.json", help="JSON result file")
    parser.add_argument("--no-sim", action="store_true", help="cycle model only (no simulation)")
    args = parser.parse_args(argv)
    board = boards.get(args.board)

    def progress(text):
        print(text, file=sys.stderr, flush=True)

    clock = board.default_clock_mhz
    target = int(clock * 1e6 // DEFAULT_TARGET_FPS)
    measure = not args.no_sim
    dense = design(DENSE, board, target, measure=measure, progress=progress)
    dense_cycles = dense.get("cycles_measured", dense["cycles_model"])
    same = design(SPARSE, board, dense_cycles, measure=measure, progress=progress)
    fast = design(SPARSE, board, int(dense_cycles / SPEEDUP_GOAL), measure=measure, progress=progress)
    fps_ratio = fast["fps"] / dense["fps"]
    lut_ratio_fast = fast["lut"] / dense["lut"]
    same_fps_ratio = same["fps"] / dense["fps"]
    lut_ratio_same = same["lut"] / dense["lut"]
    speed_met = fps_ratio >= SPEEDUP_GOAL and fast["lut"] <= dense["lut"]
    size_met = same_fps_ratio >= 1.0 and lut_ratio_same <= LUT_GOAL
    summary = {
        "bench": "compression",
        "board": board.name, "clock_mhz": clock, "family": board.synth_family,
        "goal": f"pruned model >= {SPEEDUP_GOAL}x the dense fps with no more LUTs, or the same fps "
                f"with <= {LUT_GOAL:.0%} of its LUTs (Yosys, whole network)",
        "dense": dense, "sparse_same_fps": same, "sparse_fast": fast,
        "fps_ratio": round(fps_ratio, 3), "lut_ratio_fast": round(lut_ratio_fast, 3),
        "same_fps_ratio": round(same_fps_ratio, 3), "lut_ratio_same_fps": round(lut_ratio_same, 3),
        "goal_speed_met": speed_met, "goal_size_met": size_met, "goal_met": speed_met or size_met,
        "synth_note": "Yosys synth_xilinx of the whole Network (engines, FIFOs, width converters; AXI "
                      "shell excluded), one run per design",
        "command": command("compression", argv),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
