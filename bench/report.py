"""Render ``docs/benchmarks.md`` from the benchmarks' JSON results.

``python -m bench.report [--results bench/results] [--models models] [--out docs/benchmarks.md]``

Reads every ``<results>/*.json`` (one file per benchmark: ``networks``, ``sparse``,
``shift``, ``vgg_layer``, ``popcount``, ``mvtu``, ``golden``, ``training``, ``blockprune``, and any other as a generic
section) and the shipped models' ``metrics.json``. It renders only what those files
hold: a missing file or figure is written "not measured", nothing is computed from
assumptions. Every section names the command that produced its figures (the file's
``"command"`` key, else ``python -m bench.<name>``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from hdl import cli

REPO = Path(__file__).resolve().parent.parent
NOT_MEASURED = "not measured"

__all__ = ["render", "main", "NOT_MEASURED"]


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cmd(data, name: str) -> str:
    if isinstance(data, dict) and isinstance(data.get("command"), str) and data["command"]:
        return data["command"]
    return f"python -m bench.{name}"


def _n(value, fmt: str = ",") -> str:
    """A number formatted, or "not measured"."""
    if value is None:
        return NOT_MEASURED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return format(value, fmt)
    return str(value)


def _met(value) -> str:
    return {True: "**met**", False: "**not met**"}.get(value, NOT_MEASURED)


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |")
    return out


def _source(lines, cmd):
    lines.append(f"Command: `{cmd}`")
    lines.append("")


# ----------------------------------------------------------------------------- networks

ANCHOR_ROWS = [
    # (label, network, board, anchor text)
    ("CNV-W1A1, PYNQ-Z2", "cnv-w1a1", "pynq-z2", "BNN-PYNQ: 9,150 fps, 26,072 LUT, 124 BRAM36"),
    ("CNV-W1A1, PYNQ-Z2, finn-examples folding", "cnv-w1a1-finn", "pynq-z2",
     "finn-examples: 3,020 fps at 100 MHz (FINN model 3,052)"),
    ("LFC-W1A1, PYNQ-Z2", "lfc-w1a1", "pynq-z2", "BNN-PYNQ: 356,633 fps, 31,046 LUT"),
    ("CNV-W1A1, ZC706, 200 MHz", "cnv-w1a1", "zc706", "FINN 2017: 21,906 fps"),
    ("LFC-W1A1, ZC706, 200 MHz", "lfc-w1a1", "zc706", "FINN 2017: about 1.5 M fps"),
    ("SFC-W1A1, ZC706, 200 MHz", "sfc-w1a1", "zc706", "FINN 2017: 12.3 M fps"),
]


def _stage_sum_only(row) -> bool:
    """A row from before whole-design synthesis: its LUT/FF/BRAM18/DSP are the stages'
    engines synthesised alone."""
    return "sum of the stages" in (row.get("synth_note") or "")


def _generators_note(row, again: str, restamp: str = "") -> str:
    """Empty when ``row`` was measured on the current generators (:func:`bench.generator_version`
    of the sources its design uses, or of all of them), else a note saying that its figures
    describe an earlier version, with the command that re-measures it (and ``restamp``'s,
    which keeps it if its Verilog is unchanged)."""
    from bench import generator_version
    if row.get("generators") == generator_version(row.get("generator_sources")):
        return ""
    told = row.get("generators")
    return (f"figures from earlier generators ({'version ' + told if told else 'version not recorded'}"
            f"; the generated Verilog may differ now): re-run `{again}`"
            + (f", or first `{restamp}`, which keeps the figures if the Verilog is unchanged"
               if restamp else ""))


def _rerun(row) -> str:
    """The command that re-measures a network row."""
    return f"python -m bench.networks --networks {row['network']} --boards {row['board']}"


def _why_not_measured(row) -> list[str]:
    """Why a network row lacks measured cycles or whole-design resources, and the command
    that measures them."""
    again = _rerun(row)
    note, reasons = row.get("synth_note") or "", []
    if row.get("cycles_measured") is None:
        why = row.get("cycles_measured_note") or "row from an earlier run"
        if "simulator budget" in why:
            why = (f"row from before the generated top was simulated in Verilator "
                   f"({why.removeprefix('not measured: ')})")
        reasons.append(f"cycles not measured on the generated top: {why}; measure with `{again}`")
    if row.get("lut") is None:
        if note.startswith("synthesis not finished"):
            why = ("the whole-design Yosys run did not finish within its time limit "
                   f"(`--synth-timeout`, 2 cores); measure with `{again} --synth-timeout 7200`")
        elif "--no-synth" in (row.get("command") or ""):
            why = f"the row was run with `--no-synth`; measure with `{again}`"
        else:
            why = f"{note or 'Yosys not run'}; measure with `{again}`"
        reasons.append(f"whole-design resources not measured: {why}")
    elif _stage_sum_only(row):
        reasons.append(f"LUT/FF/BRAM18/DSP are the stages' engines synthesised alone (row from "
                       f"before whole-design synthesis); whole design with `{again}`")
    return reasons


def _networks(lines, data):
    lines += ["## Networks on boards", ""]
    if not data:
        lines += [f"Network benchmarks: {NOT_MEASURED} (no `bench/results/networks.json`).", ""]
        return
    _source(lines, _cmd(data, "networks"))
    lines += ["fps are at an **assumed clock** (the row's MHz; no place and route), with the "
              "logic levels (LUTs on the longest register-to-register path, Yosys netlist) "
              "beside them. LUT/FF/BRAM18/DSP are **Yosys `synth_xilinx` estimates**: Yosys and "
              "Vivado count LUTs differently, so compare with the anchors' Vivado figures with "
              "care. Resources are the **whole generated top** (`AxiTop`: stages, FIFOs, width "
              "converters, AXI shell) in one Yosys run, each stage mapped apart and the netlist "
              "flattened after mapping (docs/hardware.md, \"Resource estimates\"); \"stage LUT "
              "sum\" is the stages' engines "
              "synthesised alone, for the breakdown. Cycles per frame: the compiler's model of "
              "the top (shell floors included) and the top measured in Verilator over "
              "back-to-back frames (scores checked against the golden model); fps follow the "
              "measured figure. Toolflow time: model to figures "
              "in the run that wrote the row (Yosys results are cached by netlist hash, so a "
              "row with cached stages is faster than a first build). Generators: \"current\" "
              "when the generator sources the design uses are unchanged since the row was "
              "measured, or its generated Verilog is (`python -m bench.networks --restamp` "
              "checks and re-stamps); \"earlier\" otherwise.", ""]
    rows = data.get("rows") or []
    commands = {}
    for r in rows:
        commands.setdefault(r.get("command") or _cmd(data, "networks"), []).append(r)
    ids = {c: i + 1 for i, c in enumerate(commands)}
    table = []
    for r in rows:
        meas = r.get("cycles_measured")
        stage_lut = r.get("stage_lut") or {}
        table.append([r["network"], r["board"], _n(r.get("clock_mhz"), "g"),
                      _n(r.get("cycles_model", r.get("cycles_per_frame"))),
                      _n(meas) if meas is not None else NOT_MEASURED,
                      _n(r.get("fps"), ",.0f"), _n(r.get("logic_levels")),
                      _n(r.get("lut")) + (" (stage sum)" if _stage_sum_only(r) else ""),
                      _n(r.get("ff")), _n(r.get("bram18")), _n(r.get("dsp")),
                      _n(sum(stage_lut.values())) if stage_lut and None not in stage_lut.values()
                      else NOT_MEASURED,
                      _n(r.get("fits")), _n(r.get("toolflow_s"), ",.1f"),
                      f"[{ids[r.get('command') or _cmd(data, 'networks')]}]",
                      "earlier" if _generators_note(r, "") else "current"])
    lines += _table(["network", "board", "MHz", "cycles/frame (model)", "cycles/frame (measured)",
                     "fps (assumed clock)", "logic levels", "LUT", "FF", "BRAM18", "DSP",
                     "stage LUT sum", "fits", "toolflow s", "command", "generators"], table)
    lines.append("")
    for c, i in ids.items():
        lines.append(f"- [{i}] `{c}`")
    lines.append("")
    lines += ["Folding per row (stage: PE x SIMD; weights in block RAM `B` or LUTs `L`, as "
              "`hdl.flow.network.plan_ram_styles` placed them for 90% of the board's BRAM18) and "
              "how it was chosen:", ""]
    place = {"block": " B", "distributed": " L"}
    for r in rows:
        fold = ", ".join(f"{k} {v['pe']}x{v['simd']}{place.get(v.get('ram_style'), '')}"
                         for k, v in (r.get("folding") or {}).items())
        notes = [r.get("folding_choice") or ""]
        target = r.get("target_cycles")
        if target and r.get("cycles_per_frame", 0) > target:
            notes.append(f"target not reached: the fastest legal folding gives "
                         f"{r['cycles_per_frame']:,} cycles")
        notes += _why_not_measured(r)
        again = _rerun(r)
        notes.append(_generators_note(r, again, f"{again} --restamp" if r.get("verilog_hash") else ""))
        lines.append(f"- {r['network']} / {r['board']}: {fold} ({'; '.join(n for n in notes if n)})")
    lines.append("")
    for note in data.get("notes") or []:
        lines.append(f"- {note}")
    for s in data.get("skipped") or []:
        lines.append(f"- skipped: {s}")
    lines.append("")

    lines += ["### Side by side with the published figures", ""]
    table = []
    for label, net, board, anchor in ANCHOR_ROWS:
        r = next((x for x in rows if x["network"] == net and x["board"] == board), None)
        if r is None:
            table.append([label, anchor, NOT_MEASURED, NOT_MEASURED, NOT_MEASURED, NOT_MEASURED])
            continue
        table.append([label, anchor,
                      f"{_n(r.get('fps'), ',.0f')} fps at {r['clock_mhz']:g} MHz (assumed); "
                      f"logic levels: {_n(r.get('logic_levels'))}",
                      _n(r.get("lut")), _n(r.get("bram18")), _n(r.get("fits"))])
    lines += _table(["network", "anchor (Vivado, measured on board)", "ours (measured cycles)",
                     "ours LUT (Yosys)", "ours BRAM18 (Yosys)", "fits"], table)
    lines.append("")

    lines += ["### Goals", ""]
    table = [[g["goal"], _met(g.get("met")), g.get("figure", NOT_MEASURED), g.get("gap", NOT_MEASURED),
              g.get("limit") or ""] for g in data.get("goals") or []]
    lines += _table(["goal", "status", "figure", "gap", "what limits it"], table)
    lines.append("")

    finn = data.get("finn_cnv")
    lines += ["### finn-examples CNV-W1A1 folding: cycle and LUT models", ""]
    if not finn:
        lines += [f"{NOT_MEASURED}", ""]
        return
    r = next((x for x in rows if x["network"] == "cnv-w1a1-finn"), None)
    stage_lut = (r or {}).get("stage_lut") or {}
    lines += [f"FINN's cycle model: {_n(finn.get('finn_cycles_per_frame'))} cycles per frame = "
              f"{_n(finn.get('finn_fps_at_100mhz'), ',.0f')} fps at 100 MHz; this compiler's cycle "
              f"model at the same folding: {_n(finn.get('our_cycles_per_frame'))} cycles "
              f"(per-layer agreement: {_n(finn.get('cycles_agree'))}).", "",
              f"FINN's LUT cost model: {finn.get('finn_lut_formula', '')}", ""]
    table = []
    for name, v in (finn.get("layers") or {}).items():
        table.append([name, f"{v['pe']} x {v['simd']}", v["mw"], v["mh"], _n(v["finn_cycles"]),
                      _n(v["our_cycles"]), _n(v["finn_lut_model"]), _n(stage_lut.get(name))])
    layers = finn.get("layers") or {}
    done = [k for k in layers if k in stage_lut]
    ours_total = NOT_MEASURED
    if done:
        ours_total = _n(sum(stage_lut[k] for k in done))
        if len(done) < len(layers):
            part = sum(layers[k]["finn_lut_model"] for k in done)
            ours_total += f" ({len(done)} of {len(layers)} layers; FINN model for them: {part:,})"
    table.append(["total", "", "", "", _n(finn.get("finn_cycles_per_frame")),
                  _n(finn.get("our_cycles_per_frame")), _n(finn.get("finn_lut_model_total")), ours_total])
    lines += _table(["layer", "PE x SIMD", "MW", "MH", "FINN cycles", "our cycles",
                     "FINN LUT model (MVAU)", "our LUT (Yosys, engine incl. sliding window)"], table)
    lines.append("")


# ----------------------------------------------------------------------------- other benches

def _sparse(lines, data):
    lines += ["## Sparse engine: speedup against density", ""]
    if not data:
        lines += [f"{NOT_MEASURED} (no `bench/results/sparse.json`).", ""]
        return
    _source(lines, _cmd(data, "sparse"))
    for key in ("layer", "matching", "goal"):
        if key in data:
            lines.append(f"- {key}: {data[key]}")
    lines += [f"- goal met: {_n(data.get('goal_met'))}; worst speedup / goal: "
              f"{_n(data.get('worst_speedup_over_goal'))}; cycle model exact: {_n(data.get('model_exact'))}"]
    for miss in data.get("goal_missed") or []:
        lines.append(f"- missed: {miss}")
    lines.append("")
    before = data.get("before") or {}
    if data.get("speedup"):
        prev = before.get("speedup") or {}
        lines += _table(["density %", "worst speedup (this engine)", "goal (0.6/density)",
                         "worst speedup (before)"],
                        [[k, v, _n(60 / float(k), ".3g"), _n(prev.get(k), "g")]
                         for k, v in data["speedup"].items()])
        lines.append("")
    if before.get("note"):
        lines += [f"Before: {before['note']} (`{before.get('command', '')}`); goal met then: "
                  f"{_n(before.get('goal_met'))}, worst speedup / goal {_n(before.get('worst_speedup_over_goal'))}.",
                  ""]
    rows = data.get("rows") or []
    if rows:
        table = [[r.get("case", f"{r.get('kind')}/{r.get('pattern')}"), _n(r.get("density"), ".3g"),
                  f"{r['pe']} x {r['simd']}" if "pe" in r else NOT_MEASURED,
                  _n(r.get("cycles")), _n(r.get("model_cycles")), _n(r.get("dense_cycles")),
                  _n(r.get("speedup"), "g"), _n(r.get("goal_speedup"), "g"),
                  _met(r.get("goal_met")), _n(r.get("storage_ratio"), "g")] for r in rows]
        lines += _table(["case", "density", "PE x SIMD", "cycles (measured)", "cycles (model)",
                         "dense cycles", "speedup", "goal (0.6/density)", "goal", "storage / dense"],
                        table)
    lines.append("")


def _compression(lines, data):
    lines += ["## Pruning in hardware: the pruned digits model against the dense one", ""]
    if not data:
        lines += [f"{NOT_MEASURED} (no `bench/results/compression.json`).", ""]
        return
    _source(lines, _cmd(data, "compression"))
    if note := _generators_note(data, _cmd(data, "compression")):
        lines += [f"**Note:** {note}.", ""]
    lines += [f"- goal: {data.get('goal', '')}",
              f"- board {data.get('board')} at {_n(data.get('clock_mhz'), 'g')} MHz (Yosys family "
              f"{data.get('family')}); {data.get('synth_note', '')}",
              f"- speed goal: {_met(data.get('goal_speed_met'))} (fps ratio {_n(data.get('fps_ratio'), 'g')}, "
              f"LUT ratio {_n(data.get('lut_ratio_fast'), 'g')}); size goal: {_met(data.get('goal_size_met'))} "
              f"(fps ratio {_n(data.get('same_fps_ratio'), 'g')}, LUT ratio "
              f"{_n(data.get('lut_ratio_same_fps'), 'g')})", ""]
    pruned = (data.get("pruned_model") or {}).get("model", "pruned")
    rows = [("dense pot4", data.get("dense")),
            (f"{pruned}, same fps", data.get("pruned_same_fps")),
            (f"{pruned}, 2.2x target", data.get("pruned_fast"))]
    prev = data.get("previous") or (data if "sparse_same_fps" in data else {})
    rows += [("before: pot4-sparse (CSC), same fps", prev.get("sparse_same_fps")),
             ("before: pot4-sparse (CSC), 2.2x target", prev.get("sparse_fast"))]
    table = []
    for label, r in rows:
        if not r:
            continue

        def fold(k, v):
            text = f"{k} {v.get('pe')}x{v.get('simd')}"
            return text + (f" tiles(in {v.get('in_simd')})" if v.get("tiles") else "")

        folding = ", ".join(fold(k, v) for k, v in (r.get("folding") or {}).items())
        table.append([label, _n(r.get("cycles_model")), _n(r.get("cycles_measured")), _n(r.get("fps"), ",.0f"),
                      _n(r.get("lut")), _n(r.get("ff")), _n(r.get("bram18")), _n(r.get("dsp")), folding])
    lines += _table(["design", "cycles/frame (model)", "cycles/frame (measured)", "fps", "LUT", "FF",
                     "BRAM18", "DSP", "folding"], table)
    if prev.get("command") and prev is not data:
        lines += ["", f"Before (CSC engine, unstructured pruning): `{prev['command']}`; fps ratio "
                      f"{_n(prev.get('fps_ratio'), 'g')}, LUT ratio {_n(prev.get('lut_ratio_fast'), 'g')} (2.2x "
                      f"target); LUT ratio {_n(prev.get('lut_ratio_same_fps'), 'g')} at the same fps."]
    lines.append("")


def _shift(lines, data):
    lines += ["## Power-of-two weights on shift-add MACs against int MACs (DSP and LUT)", ""]
    if not data:
        lines += [f"{NOT_MEASURED} (no `bench/results/shift.json`).", ""]
        return
    _source(lines, _cmd(data, "shift"))
    lines += [f"- layer: {data.get('layer', '')}; Yosys family {data.get('family', '')}"
              + (f", elaborated for {data['board']}" if data.get("board") else "")
              + f"; largest DSP count of a power-of-two engine: {_n(data.get('max_pot_dsp'))}"]
    goal = data.get("goal") or {}
    if goal:
        lines += [f"- LUT per lane at {data.get('folding', '')} ({data.get('per_lane_means', '')}): "
                  f"pot4 {_n(data.get('pot4_lut_per_lane'), 'g')}, int4 {_n(data.get('int4_lut_per_lane'), 'g')}, "
                  f"int8 {_n(data.get('int8_lut_per_lane'), 'g')}, pot5 {_n(data.get('pot5_lut_per_lane'), 'g')}",
                  f"- goal (issue 13): pot4 lane <= {goal.get('max_ratio')} x int4 lane, 0 DSP: "
                  f"{_met(goal.get('met'))}; ratio {_n(goal.get('pot4_vs_int4_lut_ratio'), 'g')} "
                  f"(whole engine with scores {_n(goal.get('engine_pot4_vs_int4_lut_ratio'), 'g')}, "
                  f"whole engine with thresholds "
                  f"{_n(goal.get('engine_thresholds_pot4_vs_int4_lut_ratio'), 'g')})"]
        eng = data.get("engine_lut_per_lane") or {}
        if eng:
            lines.append("- whole engine LUT per lane (scores): "
                         + ", ".join(f"{k} {_n(v, 'g')}" for k, v in eng.items()))
        thr = data.get("engine_thresholds") or {}
        if thr:
            lines.append("- whole engine LUT per lane (15 thresholds per channel): "
                         + ", ".join(f"{k} {_n(v.get('lut_per_lane'), 'g')}" for k, v in thr.items()))
    prev = data.get("previous") or {}
    if prev.get("lut_per_lane"):
        lines.append(f"- before ({prev.get('what', 'previous results')}): LUT per lane "
                     + ", ".join(f"{k} {_n(v, 'g')}" for k, v in prev["lut_per_lane"].items()))
    lines.append("")
    table = [[k, c.get("kind"), f"{c.get('pe')} x {c.get('simd')}", _n(c.get("lut")), _n(c.get("ff")),
              _n(c.get("dsp")), _n(c.get("lut_per_lane"), "g"), _n(c.get("datapath_lut")),
              _n(c.get("datapath_lut_per_lane"), "g"), _n(c.get("logic_levels"))]
             for k, c in (data.get("configs") or {}).items()]
    lines += _table(["config", "weights", "PE x SIMD", "LUT", "FF", "DSP", "LUT/lane",
                     "datapath LUT", "datapath LUT/lane", "logic levels"], table)
    lines.append("")
    comp = data.get("comparison") or {}
    if comp:
        table = [[fold, pair, _n(v.get("lut_ratio"), "g"), _n(v.get("datapath_lut_ratio"), "g"),
                  _n(v.get("dsp_saved"))]
                 for fold, pairs in comp.items() for pair, v in pairs.items()]
        lines += _table(["folding", "comparison", "LUT ratio (engine)", "LUT ratio (datapath)",
                         "DSP saved"], table)
        lines.append("")


def _vgg_layer(lines, data):
    lines += ["## VGG16's 8th convolution on the Zynq-7035: int8 on DSPs against pot4 in shift-add", ""]
    if not data:
        lines += [f"{NOT_MEASURED} (no `bench/results/vgg_layer.json`).", ""]
        return
    _source(lines, _cmd(data, "vgg_layer"))
    layer = data.get("layer") or {}
    goal = data.get("goal") or {}
    lines += [f"- layer: {layer.get('height')}x{layer.get('width')}x{layer.get('channels')} -> "
              f"{layer.get('out')}, {layer.get('kernel')}x{layer.get('kernel')}, padding "
              f"{layer.get('padding')}, random weights; board `{data.get('board')}` (Yosys family "
              f"{data.get('family')}; capacity {_n((data.get('capacity') or {}).get('lut'))} LUT, "
              f"{_n((data.get('capacity') or {}).get('dsp'))} DSP, "
              f"{_n((data.get('capacity') or {}).get('bram18'))} BRAM18)",
              f"- clock: {_n(data.get('clock_mhz'), 'g')} MHz, {data.get('clock_note', 'assumed')}",
              "- each design at the largest folding that fits (LUT, DSP, BRAM18 within capacity); "
              "resources marked *scaled* come from synthesising slices of the design, the layer "
              "with 1 and with 2 of its PEs (window and shared parts in both), scaled to all "
              "PEs (shared + PE x per-PE); cycles are "
              "measured by simulating one whole frame in Verilator, every output bit-exact "
              "against the golden model", ""]
    designs = data.get("designs") or {}
    table = []
    for name, d in designs.items():
        fold = d.get("folding") or {}
        table.append([name, d.get("weights"), _n(d.get("in_bits")), f"{fold.get('pe')} x {fold.get('simd')}",
                      _n(d.get("lanes")), _n(d.get("cycles_model")), _n(d.get("cycles_measured")),
                      _n(d.get("fps"), ",.2f"), _n(d.get("lut")), _n(d.get("ff")), _n(d.get("dsp")),
                      _n(d.get("bram18")), "scaled" if d.get("scaled") else "whole design",
                      _n(d.get("logic_levels"))])
    lines += _table(["design", "weights", "act bits", "PE x SIMD", "lanes", "cycles/frame (model)",
                     "cycles/frame (measured)", "fps (assumed clock)", "LUT", "FF", "DSP", "BRAM18",
                     "synthesis", "logic levels"], table)
    lines.append("")
    for name, d in designs.items():
        if d.get("carried_over"):
            lines.append(f"- {name}: not rerun by the command above; its figures are those of "
                         f"`{d['carried_over']}`.")
    if any(d.get("carried_over") for d in designs.values()):
        lines.append("")
    tr, dr = data.get("time_ratio"), data.get("dsp_ratio")
    tmax, dmax = goal.get("time_ratio_max"), goal.get("dsp_ratio_max")
    gap = lambda v, lim: _n(round(v - lim, 4), "g") if isinstance(v, (int, float)) and lim is not None else NOT_MEASURED
    lines += _table(["figure", "pot4 / int8", "goal", "gap (figure - goal)", "seed 004"], [
        [f"time per frame (from {data.get('time_ratio_from', 'cycles')})", _n(tr, "g"),
         f"<= {_n(tmax, 'g')}", gap(tr, tmax), _n(goal.get("seed_time_ratio"), "g")],
        ["DSPs", _n(dr, "g"), f"<= {_n(dmax, 'g')}", gap(dr, dmax), _n(goal.get("seed_dsp_ratio"), "g")],
    ])
    lines += ["", f"Goal (issue 13, goal 4): {_met(goal.get('met'))}.", ""]
    if data.get("measured_with"):
        lines += [f"Measured with {data['measured_with']}.", ""]
    search = [(name, t) for name, d in designs.items() for t in d.get("search") or []]
    if search:
        lines += ["Foldings evaluated by the search (largest first; *model*: not synthesised, "
                  "the resource model calibrated on the next smaller folding's synthesis):", ""]
        kind = lambda t: ("model" if t.get("source") == "model"
                          else "scaled" if t.get("scaled") else "whole design")
        lines += _table(["design", "PE x SIMD", "LUT", "DSP", "BRAM18", "figures from", "fits"],
                        [[name, f"{t.get('pe')} x {t.get('simd')}", _n(t.get("lut")), _n(t.get("dsp")),
                          _n(t.get("bram18")), kind(t), _n(t.get("fits"))] for name, t in search])
        lines.append("")


def _popcount(lines, data):
    lines += ["## XNOR-popcount: LUT per lane", ""]
    if not data:
        lines += [f"{NOT_MEASURED} (no `bench/results/popcount.json`).", ""]
        return
    _source(lines, _cmd(data, "popcount"))
    lines += [f"- {data.get('what', '')} ({data.get('tool', '')})",
              f"- goal {data.get('goal_lut_per_lane_at_64')} LUT/lane at SIMD 64: {_met(data.get('goal_met'))}"
              + (f", gap {data['gap_at_64']}" if data.get("gap_at_64") is not None else ""), ""]
    lpl, gen, lev = (data.get("lut_per_lane") or {}), (data.get("generic_lut_per_lane") or {}), \
        (data.get("logic_levels") or {})
    xc7 = data.get("xc7_lut_per_lane") or {}
    table = [[simd, _n(v, "g"), _n(xc7.get(simd), "g") if xc7 else NOT_MEASURED,
              _n(gen.get(simd), "g"), _n(lev.get(simd))] for simd, v in lpl.items()]
    lines += _table(["SIMD", "LUT/lane (xcup)", "LUT/lane (xc7)", "generic-logic twin LUT/lane",
                     "logic levels"], table)
    base = data.get("baselines_at_64") or {}
    if base:
        lines.append("")
        lines += [f"- baseline at SIMD 64, {k}: {v} LUT/lane" for k, v in base.items()]
    lines.append("")


def _mvtu(lines, data):
    lines += ["## MVTU engines against FINN's LUT model", ""]
    if not data:
        lines += [f"{NOT_MEASURED} (no `bench/results/mvtu.json`).", ""]
        return
    _source(lines, _cmd(data, "mvtu"))
    lines += [f"- {data.get('tool', '')}, family {data.get('family', '')}; FINN model: {data.get('finn_model', '')}", ""]
    table = [[k, c.get("mode"), f"{c.get('outputs')} x {c.get('inputs')}", f"{c.get('pe')} x {c.get('simd')}",
              _n(c.get("lut")), _n(c.get("bram18")), _n(c.get("dsp")), _n(c.get("lut_per_lane"), "g"),
              _n(c.get("finn_lut_model"), "g"), _n(c.get("lut_vs_finn"), "g"), _n(c.get("logic_levels"))]
             for k, c in (data.get("configs") or {}).items()]
    lines += _table(["config", "mode", "out x in", "PE x SIMD", "LUT", "BRAM18", "DSP", "LUT/lane",
                     "FINN model LUT", "ours / FINN", "logic levels"], table)
    lines.append("")


def _golden(lines, data):
    lines += ["## Golden model speed against PyTorch", ""]
    if not data:
        lines += [f"{NOT_MEASURED} (no `bench/results/golden.json`).", ""]
        return
    _source(lines, _cmd(data, "golden"))
    table = [[r.get("row", r.get("model")), _n(r.get("frames")), _n(r.get("golden_frames_per_s"), ",.0f"),
              _n(r.get("torch_frames_per_s"), ",.0f"), _n(r.get("speedup_vs_torch"), ".2f")]
             for r in data.get("rows") or []]
    lines += _table(["case", "frames", "golden frames/s", "PyTorch frames/s", "speedup"], table)
    lines += ["", f"- goal speedup {data.get('goal_speedup')}: {_met(data.get('goal_met'))}; "
              f"{data.get('cpus')} CPUs, load average {_n(data.get('load_average_1min'), '.1f')} "
              f"during the run; numpy {data.get('numpy')}, torch {data.get('torch')}", ""]


def _blockprune(lines, data):
    lines += ["## Block pruning: block shape against sparsity (pot4-block)", ""]
    if not data:
        lines += [f"{NOT_MEASURED} (no `bench/results/blockprune.json`).", ""]
        return
    _source(lines, _cmd(data, "blockprune"))
    layers = ("conv1", "conv2", "fc3")
    table = []
    for r in data.get("runs") or []:
        bd, wd = r.get("block_density") or {}, r.get("weight_density") or {}
        table.append(["x".join(str(v) for v in r.get("block") or ()), _n(r.get("target"), ".0%") if isinstance(r.get("target"), float) else _n(r.get("target")),
                      _n(r.get("val_accuracy"), ".2%"), _n(r.get("test_accuracy"), ".2%"),
                      *[_n(bd.get(k), ".1%") for k in layers], *[_n(wd.get(k), ".1%") for k in layers],
                      _n(r.get("train_seconds"), ",.0f"),
                      " ".join(f"{k}={v}" for k, v in sorted((r.get("recipe") or {}).items()))])
    lines += _table(["block", "target zero blocks", "val accuracy", "test accuracy",
                     *[f"{k} block density" for k in layers], *[f"{k} weight density" for k in layers],
                     "train s", "recipe"], table)
    lines += ["", f"- accuracy of the exported model (golden model); trained on "
              f"{_n(data.get('train_fraction'), '.0%')} of the training split, validation = the rest; "
              f"one shared float pretraining ({_n(data.get('float_seconds'), ',.0f')} s)", ""]


def _training(lines, data, models_dir: Path):
    lines += ["## Training: accuracy and compression per preset", ""]
    presets, cmd = {}, None
    if data and data.get("presets"):
        presets, cmd = data["presets"], _cmd(data, "training")
    else:
        for metrics in sorted(models_dir.glob("*/metrics.json")):
            m = _load(metrics)
            if isinstance(m, dict):
                m.setdefault("source", str(metrics.relative_to(models_dir.parent)
                                           if models_dir.parent in metrics.parents else metrics))
                presets[metrics.parent.name] = m
        cmd = "python -m scripts.make_models --all"
        lines.append("Read from `models/*/metrics.json` (no `bench/results/training.json`).")
        lines.append("")
    if not presets:
        lines += [f"{NOT_MEASURED} (no `bench/results/training.json`, no `models/*/metrics.json`).", ""]
        return
    _source(lines, cmd)
    targets = (data or {}).get("targets") or {}
    table = []
    for name, m in presets.items():
        t = targets.get(name) or {}
        table.append([name, _n(m.get("accuracy"), ".2%") if m.get("accuracy") is not None else NOT_MEASURED,
                      _n(m.get("float_accuracy"), ".2%") if m.get("float_accuracy") is not None else NOT_MEASURED,
                      _n(m.get("compression_ratio"), "g"), _n(m.get("sparsity_total"), ".1%")
                      if m.get("sparsity_total") is not None else NOT_MEASURED,
                      _n(m.get("epochs")), _met(t.get("met")) if t else "",
                      t.get("detail", ""), m.get("source", "")])
    lines += _table(["preset", "accuracy (exported model, digits test)", "float accuracy",
                     "compression vs fp32", "sparsity", "epochs", "target", "detail", "source"], table)
    est = (data or {}).get("w1a1_estimators") or {}
    if est:
        lines.append("")
        lines += _table(["w1a1 estimator", "accuracy", "epochs"],
                        [[k, _n(v.get("accuracy"), ".2%"), _n(v.get("epochs"))] for k, v in est.items()])
    lines.append("")


def _interop(lines, name, data):
    lines += ["## QONNX import: Brevitas BNN-PYNQ models against QONNX's executor", ""]
    _source(lines, _cmd(data, name))
    rows = [[m, _n(r.get("frames")), _n(r.get("label_agreement"), ".4f"), _n(r.get("code_mismatches")),
             _n(r.get("code_mismatches_outside_ties")), _n(r.get("float_ties")), _yes(r.get("imported")),
             _yes(r.get("built")), _n(r.get("simulated_frames")) if "simulated_frames" in r else ""]
            for m, r in (data.get("models") or {}).items()]
    lines += _table(["model", "frames", "label agreement", "frames with a code mismatch",
                     "outside float ties", "float ties", "imported", "built (--no-synth)",
                     "frames simulated (Verilator)"], rows)
    lines += ["", f"- all labels equal: {_yes(data.get('all_labels_equal'))}", ""]


def _yes(value) -> str:
    return {True: "yes", False: "no"}.get(value, NOT_MEASURED)


def _alexnet(lines, name, data):
    """Issue 18's benchmark: the goal, the layers' placement, the parts' resources."""
    lines += ["## AlexNet-class network, weights streamed from DDR (ZCU104)", ""]
    _source(lines, _cmd(data, name))
    if not isinstance(data, dict):
        lines += [f"{NOT_MEASURED} (`bench/results/{name}.json` unreadable).", ""]
        return
    if note := _generators_note(data, _cmd(data, name)):
        lines += [f"**Note:** {note}.", ""]
    fps, fits = data.get("fps"), data.get("fits")
    bw, port = data.get("ddr_bandwidth_used"), data.get("ddr_bandwidth_port")
    size, seed = data.get("model_bytes"), data.get("seed_model_bytes")
    over = data.get("over_capacity") or {}
    lines += _table(["goal", "seed (003)", "ours", "met"], [
        [">= 200 fps, measured (whole top, DDR model)", "9.73 fps",
         f"{_n(fps)} fps ({_n(data.get('cycles_measured'))} cycles/frame at {_n(data.get('clock_mhz'))} MHz)",
         _met(None if fps is None or data.get("cycles_measured") is None else fps >= 200)],
        ["fits the board (Yosys, whole design)", "",
         "; ".join(f"{k} {v['used']:,} > {v['capacity']:,}" for k, v in over.items()) or
         ("fits" if fits else NOT_MEASURED), _met(fits)],
        ["DDR bandwidth below the ports'", "", f"{_n(bw, ',.0f')} of {_n(port, ',.0f')} B/s",
         _met(None if bw is None or port is None else bw < port)],
        ["model size (on chip + DDR)", f"{_n(seed, ',.0f')} B", f"{_n(size)} B",
         _met(None if size is None or seed is None else size <= seed)],
    ])
    lines.append("")
    layers = data.get("layers") or {}
    parts = data.get("stage_resources") or {}
    rows = []
    for stage, v in layers.items():
        r = parts.get(stage, {})
        rows.append([stage, v.get("engine"), v.get("pe"), v.get("simd"), v.get("weights"),
                     v.get("density"), _n(v.get("onchip_bytes")), _n(v.get("ddr_bytes_per_frame")),
                     _n(v.get("cycles_per_frame_model")), _n(r.get("lut")), _n(r.get("lut_memory")),
                     _n(r.get("ff")), _n(r.get("bram18")), _n(r.get("logic_levels"))])
    if "rest" in parts:
        r = parts["rest"]
        rows.append(["rest of the top", "", "", "", "", "", "", "", "", _n(r.get("lut")),
                     _n(r.get("lut_memory")), _n(r.get("ff")), _n(r.get("bram18")),
                     _n(r.get("logic_levels"))])
    if rows:
        lines += _table(["stage", "engine", "PE", "SIMD", "weights", "density", "bytes on chip",
                         "DDR bytes/frame", "cycles/frame (model)", "LUT", "of which LUT-RAM",
                         "FF", "BRAM18", "levels"], rows)
        lines += ["", "- per-stage resources: each stage synthesised as its own design (Yosys), "
                  "the rest of the top with the stages as black boxes; their sum is the whole design's"
                  if parts else "- per-stage resources: not synthesised", ""]
    _generic_table(lines, data)


def _generic_table(lines, data):
    scalars = [[k, v] for k, v in data.items() if isinstance(v, (int, float, str, bool)) and k != "command"]
    if scalars:
        lines += _table(["key", "value"], scalars)
    rom = data.get("rom_only_plan")
    if isinstance(rom, dict):
        lines += ["", f"- ROMs held to block RAM (the cycle model's prediction; no such top is generated): streams "
                  f"{', '.join(rom.get('streamed') or []) or 'nothing'}, {_n(rom.get('fps_model'))} fps, "
                  f"{_n(rom.get('ddr_bytes_per_frame'))} DDR bytes per frame"]


_EXTRA = {"interop": _interop, "alexnet": _alexnet}


def _generic(lines, name, data):
    lines += [f"## {name}", ""]
    _source(lines, _cmd(data, name))
    if isinstance(data, dict):
        scalars = [[k, v] for k, v in data.items() if isinstance(v, (int, float, str, bool)) and k != "command"]
        if scalars:
            lines += _table(["key", "value"], scalars)
    lines.append("")


KNOWN = ("networks", "sparse", "compression", "shift", "vgg_layer", "popcount", "mvtu", "golden",
         "training", "blockprune")


def render(results_dir, models_dir=None) -> str:
    """The markdown of ``docs/benchmarks.md`` from the JSON files in ``results_dir``."""
    results_dir = Path(results_dir)
    models_dir = Path(models_dir) if models_dir is not None else REPO / "models"
    files = {p.stem: _load(p) for p in sorted(results_dir.glob("*.json"))} if results_dir.exists() else {}
    lines = ["# Benchmarks", "",
             "Generated by `python -m bench.report` from `bench/results/*.json`; do not edit by "
             "hand. Each section names the command that produced its figures; a figure that no "
             "results file holds is written \"not measured\".", "",
             "Reproduce: `python -m bench.networks` (every network on every board; resumable, "
             "Yosys results cached by netlist hash; `--quick` for SFC and the digits models on "
             "PYNQ-Z2; `--networks`/`--boards` merge rows into the stored results), the other "
             "benchmarks' commands as named in their sections, then `python -m bench.report`.", ""]
    _networks(lines, files.get("networks"))
    _sparse(lines, files.get("sparse"))
    _compression(lines, files.get("compression"))
    _shift(lines, files.get("shift"))
    _vgg_layer(lines, files.get("vgg_layer"))
    _popcount(lines, files.get("popcount"))
    _mvtu(lines, files.get("mvtu"))
    _golden(lines, files.get("golden"))
    _training(lines, files.get("training"), models_dir)
    _blockprune(lines, files.get("blockprune"))
    for name, data in files.items():
        if name not in KNOWN:
            _EXTRA.get(name, _generic)(lines, name, data)
    return "\n".join(lines).rstrip() + "\n"


@cli.json_last_line
def main(argv=None) -> int:
    parser = cli.parser("python -m bench.report", "Render docs/benchmarks.md from bench/results/*.json.")
    parser.add_argument("--results", default=str(REPO / "bench" / "results"), help="results directory")
    parser.add_argument("--models", default=str(REPO / "models"), help="shipped models directory")
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"), help="markdown file to write")
    args = parser.parse_args(argv)
    text = render(args.results, args.models)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(json.dumps({"out": str(out), "lines": text.count("\n")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
