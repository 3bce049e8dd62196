"""Benchmark: VGG16's 8th convolution, int8 on DSPs against pot4 in shift-add (issue 13, goal 4).

    python -m bench.vgg_layer [--out bench/results/vgg_layer.json] [--designs int8,pot4]
                              [--no-sim] [--no-confirm] [--timeout S]

Seed paper 004 runs this layer (28x28x256 -> 512, 3x3, padding 1) on a Zynq-7035 with
4-bit power-of-two weights in shift-add and reports 0.489x the time per frame of its
int8 baseline with 0.57x its DSPs. Here, on the ``ax7z035`` board (Zynq-7035), with
random weights (:func:`sim.random_model.build_model`), two designs of the generated layer
(:class:`hdl.engines.window.SlidingWindow` + compute engine, built by
:func:`hdl.flow.network.build_engine` exactly as in a network):

* ``int8``: int8 weights x 8-bit activations on the MVTU's int mode (its ``*`` maps to
  one DSP48 per lane, see ``bench/shift.py``): the seed's baseline;
* ``pot4``: pot4 weights x 4-bit activations on :class:`hdl.engines.shiftmac.ShiftMAC`.

Each design runs at the largest folding that fits the board (LUT, DSP and BRAM18 of
Yosys ``synth_xilinx -family xc7`` within capacity). SIMD is the widest that divides the
256 input channels (the fewest PEs for a lane count, so the least per-PE overhead), and
the PE count is searched (:func:`search`): a folding's resources come from synthesising
*slices* of it, the layer with 1 and with 2 of its PEs (each PE with its full weight
memory, the window and the engine's shared parts in both), scaled to all PEs
(``shared + PE * per-PE``); a folding of at most 2 PEs is synthesised whole
(``scaled: false``).
Whole-design synthesis of the large designs is not affordable on this machine (the
synthesis times are in the JSON). A resource model calibrated on the foldings already
synthesised proposes the next folding to synthesise; the search ends at the largest
folding whose synthesised figures fit, with the next larger one synthesised and shown
not to fit (``--no-confirm``: only the model's verdict on it is listed). A rerun starts
from the foldings stored in ``--out`` (or ``--start``), and all Yosys results are cached
by netlist hash, so a rerun after an engine change synthesises only about two foldings.
A design left out of ``--designs`` keeps its stored row, marked ``carried_over`` with the
command that measured it.

Cycles per frame are measured by simulating one whole frame of the chosen design in
Verilator (``sim.harness``; free-running source and sink), every output checked
bit-exact against ``sim.golden``; frames/s are at the board's default clock (an
assumed clock, no place and route). The last line printed is JSON; the same object is
written to ``--out``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import verilog

import boards
from bench import command
from hdl import ir
from hdl.flow import synth
from hdl.flow.network import (bram18_estimate, build_engine, plan, plan_ram_styles, stage_cycles,
                              weight_bram_budget, weight_memory)
from sim.random_model import LayerPlan, build_model
from hdl import cli

BOARD = "ax7z035"
#: Seed paper 004's figures and issue 13's goal for them.
SEED_TIME_RATIO, SEED_DSP_RATIO = 0.489, 0.57
GOAL_TIME_RATIO, GOAL_DSP_RATIO = 0.4, 0.57

#: Design name -> (weight kind, weight bits, activation bits).
DESIGNS = {"int8": ("int", 8, 8), "pot4": ("pot", 4, 4)}
#: Verilator optimisation for the big designs (TOOLCHAIN.md: the default -Os build of a
#: large design takes tens of minutes).
VERILATOR_MAKEFLAGS = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
#: Passing frame simulations' reports, by Verilog, stimulus and seed.
SIM_CACHE = Path(__file__).resolve().parent.parent / "build" / "vgg_layer_sim"
#: Bump when ``bench/cocotb_vgg_layer.py`` changes what it checks or reports.
_TEST_VERSION = 1


@dataclass(frozen=True)
class Geometry:
    """A 3x3, padding-1 convolution ``height x width x channels -> out``."""
    height: int
    width: int
    channels: int
    out: int
    kernel: int = 3
    padding: int = 1

    @property
    def pixels(self) -> int:
        return ((self.height + 2 * self.padding - self.kernel) + 1) * \
               ((self.width + 2 * self.padding - self.kernel) + 1)


#: VGG16's 8th convolution (conv4_2 in the 13-conv numbering: 28x28x512 in the original
#: network; seed 004's layer takes 256 channels).
VGG_CONV8 = Geometry(28, 28, 256, 512)


def layer_model(design: str, geom: Geometry, out: int | None = None, seed: int = 0) -> ir.Model:
    """The layer with random weights of ``design``'s kind; ``out`` output channels
    (default ``geom.out``; fewer for a slice)."""
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {', '.join(DESIGNS)}, not {design!r}")
    kind, wbits, in_bits = DESIGNS[design]
    plans = [LayerPlan(op="conv", out=out or geom.out, kind=kind, wbits=wbits, act_bits=None,
                       kernel=geom.kernel, padding=geom.padding)]
    return build_model(plans, input_shape=(geom.height, geom.width, geom.channels),
                       input_bits=in_bits, seed=seed, name=f"conv-{design}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def widest_simd(geom: Geometry) -> int:
    """The largest SIMD the sliding window accepts (a divisor of the channel count)."""
    return geom.channels


def stage_for(design: str, geom: Geometry, pe: int, simd: int, *, out: int | None = None,
              ram_style: str | None = None, bram18: int | None = None):
    """The planned stage of the layer at ``pe x simd``; its weight memories placed by
    :func:`hdl.flow.network.plan_ram_styles` for ``bram18`` (the board's block RAM), or
    at ``ram_style``."""
    model = layer_model(design, geom, out)
    fold = {"pe": pe, "simd": simd}
    if ram_style is not None:
        fold["ram_style"] = ram_style
    stages = plan(model, {"conv0": fold})
    if ram_style is None and bram18 is not None:
        stages = plan_ram_styles(stages, weight_bram_budget(bram18))
    return stages[0]


def frame_cycles_model(design: str, geom: Geometry, pe: int, simd: int) -> int:
    """Cycles per frame of the layer by the compiler's cycle model."""
    model = layer_model(design, geom)
    return stage_cycles(model.layers[0], model.specs()[0], pe, simd)


# ----------------------------------------------------------------------------- synthesis

def _synth_stage(stage, family: str, timeout: float, log, platform=None) -> tuple[synth.SynthResult, float]:
    """Synthesise a stage's engine elaborated for ``platform``; the result and the
    seconds it took."""
    engine = build_engine(stage)
    # the board's platform, as hdl.build elaborates: the Xilinx primitives of the
    # popcount and shift-add heaps (generic logic is their simulation twin)
    text = verilog.convert(engine, name="top", platform=platform)
    start = time.monotonic()
    result = synth.synthesize(text, "top", family, timeout=timeout)
    seconds = time.monotonic() - start
    log(f"  synthesised {stage.layer.out_channels} outputs at PE {stage.pe} x SIMD {stage.simd} "
        f"({stage.ram_style}): {result.lut} LUT, {result.dsp} DSP, {result.bram18} BRAM18"
        f"{' (cached)' if result.cached else f' in {seconds:.0f} s'}")
    return result, seconds


KEYS = ("lut", "ff", "bram18", "dsp")


def evaluate(design: str, geom: Geometry, pe: int, simd: int, board, *, timeout: float,
             log=lambda text: None) -> dict:
    """Resources of the layer at ``pe x simd``: the whole design if it has at most 2 PEs,
    else scaled from slices: the layer with 1 and with 2 of its PEs (each PE with its
    whole weight memory; the window and the engine's shared input buffer and control in
    both), ``per_pe`` = 2-PE - 1-PE, ``shared`` = 1-PE - ``per_pe``, total = ``shared`` +
    ``pe`` * ``per_pe``."""
    full = stage_for(design, geom, pe, simd, bram18=board.capacity.bram18)
    family = board.synth_family
    if pe <= 2:
        result, seconds = _synth_stage(full, family, timeout, log, board())
        figures = {k: getattr(result, k) for k in KEYS}
        row = {"scaled": False, "synth_s": None if result.cached else round(seconds, 1),
               "cached": result.cached, "logic_levels": result.logic_levels}
    else:
        slices = {}
        for n in (1, 2):
            stage = stage_for(design, geom, n, simd, out=n * (geom.out // pe), ram_style=full.ram_style)
            slices[n] = _synth_stage(stage, family, timeout, log, board())
        one, two = slices[1][0], slices[2][0]
        per_pe = {k: getattr(two, k) - getattr(one, k) for k in KEYS}
        shared = {k: getattr(one, k) - per_pe[k] for k in KEYS}
        figures = {k: shared[k] + pe * per_pe[k] for k in KEYS}
        row = {"scaled": True, "per_pe": per_pe, "shared": shared,
               "slice_synth_s": [None if r.cached else round(t, 1) for r, t in slices.values()],
               "cached": one.cached and two.cached,
               "logic_levels": max(one.logic_levels, two.logic_levels)}
    cap = board.capacity
    fits = all(figures[k] <= getattr(cap, k) for k in ("lut", "dsp", "bram18"))
    return {"pe": pe, "simd": simd, "lanes": pe * simd, "ram_style": full.ram_style, **figures,
            "fits": fits, **row}


def _weight_bram(design, geom, pe, simd) -> int:
    stage = stage_for(design, geom, pe, simd, ram_style="block")
    n, width, depth = weight_memory(stage)
    return n * bram18_estimate(width, depth)


def model_estimate(design: str, geom: Geometry, pe: int, simd: int, calib: dict) -> dict:
    """Resources at ``pe`` PEs predicted from a synthesised folding ``calib`` of the same
    SIMD: LUT, FF and DSP scale with the PEs, BRAM18 with the weight memories' estimated
    block RAM (:func:`hdl.flow.network.bram18_estimate`)."""
    if calib.get("scaled"):
        shared, per_pe = calib["shared"], calib["per_pe"]
    else:                                   # the whole design: split it evenly per PE
        shared = {k: 0 for k in KEYS}
        per_pe = {k: calib[k] / calib["pe"] for k in KEYS}
    est = {k: shared[k] + pe * per_pe[k] for k in KEYS}
    est["bram18"] = calib["bram18"] - _weight_bram(design, geom, calib["pe"], simd) \
        + _weight_bram(design, geom, pe, simd)
    return {k: int(math.ceil(v)) for k, v in est.items()}


def search(design: str, geom: Geometry, board, *, confirm: bool = True, timeout: float = 7200,
           start: int | None = None, log=lambda text: None) -> tuple[dict, list[dict]]:
    """The largest folding (most PEs at :func:`widest_simd`) whose synthesised resources
    fit ``board``; returns it and every folding synthesised on the way (largest first).

    Starts from ``start`` PEs (e.g. the previous run's choice, so that a rerun after an
    engine change synthesises little), else from 2 (1 if the layer has a single output),
    then repeatedly synthesises
    the largest folding that the calibrated model (:func:`model_estimate`, from the
    largest folding synthesised so far) says fits; once the best fitting folding is
    synthesised, the next larger one is synthesised too (``confirm``) to show it does
    not fit."""
    simd = widest_simd(geom)
    pes = _divisors(geom.out)
    cap = board.capacity
    done: dict[int, dict] = {}

    def fits(fig):
        return all(fig[k] <= getattr(cap, k) for k in ("lut", "dsp", "bram18"))

    def run(pe):
        log(f"{design}: PE {pe} x SIMD {simd}")
        done[pe] = evaluate(design, geom, pe, simd, board, timeout=timeout, log=log)
        log(f"{design}: PE {pe} x SIMD {simd}: {done[pe]['lut']} LUT, {done[pe]['dsp']} DSP, "
            f"{done[pe]['bram18']} BRAM18{' (scaled)' if done[pe]['scaled'] else ''}: "
            f"{'fits' if done[pe]['fits'] else 'does not fit'}")

    run(start if start in pes else pes[1] if len(pes) > 1 else pes[0])
    while True:
        calib = done[max(done)]
        fitting = [pe for pe in pes if (done[pe]["fits"] if pe in done
                                        else fits(model_estimate(design, geom, pe, simd, calib)))]
        if not fitting:
            raise RuntimeError(f"{design}: no folding of the layer fits {board.name} "
                               f"(PE 1: {done.get(1)})")
        best = max(fitting)
        if best not in done:
            run(best)
            continue
        bigger = [pe for pe in pes if pe > best]
        if not confirm or not bigger or bigger[0] in done:
            break
        run(bigger[0])
    tried = [{**done[pe], "source": "yosys"} for pe in sorted(done, reverse=True)]
    bigger = [pe for pe in pes if pe > best]
    if bigger and bigger[0] not in done:            # not synthesised: the model's verdict
        est = model_estimate(design, geom, bigger[0], simd, done[max(done)])
        tried.insert(0, {"pe": bigger[0], "simd": simd, "lanes": bigger[0] * simd, **est,
                         "fits": fits(est), "source": "model", "calibrated_on_pe": max(done)})
    return done[best], tried


# ---------------------------------------------------------------------------- simulation

def simulate(design: str, geom: Geometry, pe: int, simd: int, ram_style: str, *, frames: int = 1,
             seed: int = 1, gap: float = 0.0, stall: float = 0.0, name: str | None = None,
             makeflags: str | None = VERILATOR_MAKEFLAGS, timeout_s: float | None = None,
             use_cache: bool = True) -> dict:
    """Simulate ``frames`` frames of the layer in Verilator (``sim.harness``), every output
    checked bit-exact against ``sim.golden`` (inside the cocotb test); returns the
    cocotb test's report (cycles from the first input to the last output transfer) and
    the wall-clock time. ``gap``/``stall`` > 0 randomise the source and sink. A passing
    run's report is cached under ``build/vgg_layer_sim/`` by the Verilog, the stimulus
    parameters and the seed (``"cached": true`` when reused)."""
    from sim.harness import run_cocotb, strip_src

    stage = stage_for(design, geom, pe, simd, ram_style=ram_style)
    engine = build_engine(stage)
    compute = engine.compute
    layer = stage.layer
    params = {
        "weights": layer.weights.matrix(), "kind": layer.weights.kind, "wbits": layer.weights.bits,
        "in_bits": stage.in_spec.bits, "height": geom.height, "width": geom.width,
        "channels": geom.channels, "out": geom.out, "kernel": geom.kernel,
        "padding": geom.padding, "pad_value": layer.pad_value,
        "pe": pe, "simd": simd, "frames": frames, "gap": gap, "stall": stall,
        "out_bits": compute.out_shape.width, "out_signed": compute.out_shape.signed,
        "cycles_model": frames * stage.cycles_per_frame,
    }
    name = name or f"vgg_{design}_{geom.height}x{geom.width}x{geom.channels}_{geom.out}_pe{pe}_simd{simd}"
    text = verilog.convert(engine, name="top")
    # keyed by the Verilog without Amaranth's src attributes (file:line of every signal):
    # an edit elsewhere in a source file does not change the hardware
    bare = strip_src(text)
    key = hashlib.sha256(json.dumps({"verilog": bare, "seed": seed, "test": _TEST_VERSION,
                                     **{k: v for k, v in params.items() if k != "weights"}},
                                    sort_keys=True).encode()
                         + np.ascontiguousarray(params["weights"]).tobytes()).hexdigest()
    cache = SIM_CACHE / f"{key}.json"
    if use_cache and cache.exists():
        return {**json.loads(cache.read_text()), "cached": True}
    saved = os.environ.get("MAKEFLAGS")
    if makeflags:
        os.environ["MAKEFLAGS"] = f"{saved or ''} {makeflags}".strip()
    start = time.monotonic()
    try:
        result = run_cocotb(bare, toplevel="top", name=name, test_module="bench.cocotb_vgg_layer",
                            parameters=params, seeds=[seed], timeout_s=timeout_s)
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    rep = dict(result.report)
    rep["wall_s"] = round(time.monotonic() - start, 1)
    rep["built"] = result.built
    if use_cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(rep))
    return {**rep, "cached": False}


# --------------------------------------------------------------------------------- main

def run(designs=tuple(DESIGNS), *, geom: Geometry = VGG_CONV8, board=BOARD,
        do_sim: bool = True, confirm: bool | dict = True, timeout: float = 7200, previous=None,
        starts: dict | None = None, log=print) -> dict:
    """Search, synthesise and simulate each design; the result object (without command).
    ``board`` is a board name or class (``boards/``); ``previous`` an earlier result
    object whose chosen foldings start the searches, unless ``starts`` (design -> PEs)
    names another start."""
    board = boards.get(board) if isinstance(board, str) else board
    board_name = board.name
    clock = float(board.default_clock_mhz)
    geom_dict = {"height": geom.height, "width": geom.width, "channels": geom.channels,
                 "out": geom.out, "kernel": geom.kernel, "padding": geom.padding}
    rows = {}
    for design in designs:
        start = None
        if isinstance(previous, dict) and previous.get("layer") == geom_dict:
            start = ((previous.get("designs") or {}).get(design) or {}).get("folding", {}).get("pe")
        start = (starts or {}).get(design, start)
        chosen, tried = search(design, geom, board, timeout=timeout, start=start,
                               confirm=confirm.get(design, True) if isinstance(confirm, dict) else confirm,
                               log=log)
        kind, wbits, in_bits = DESIGNS[design]
        cycles_model = frame_cycles_model(design, geom, chosen["pe"], chosen["simd"])
        row = {
            "weights": f"{kind}{wbits}", "in_bits": in_bits,
            "folding": {"pe": chosen["pe"], "simd": chosen["simd"], "ram_style": chosen["ram_style"]},
            "lanes": chosen["lanes"], "lut": chosen["lut"], "ff": chosen["ff"],
            "dsp": chosen["dsp"], "bram18": chosen["bram18"], "scaled": chosen["scaled"],
            "logic_levels": chosen["logic_levels"], "cycles_model": cycles_model,
            "cycles_measured": None, "fps": None, "search": tried,
        }
        if do_sim:
            log(f"{design}: simulating one frame at PE {chosen['pe']} x SIMD {chosen['simd']} "
                f"({cycles_model:,} cycles by the model)")
            rep = simulate(design, geom, chosen["pe"], chosen["simd"], chosen["ram_style"])
            row["cycles_measured"] = rep["cycles"]
            row["outputs_checked"] = rep["outputs"]
            row["sim_wall_s"] = rep["wall_s"]
            row["sim_cached"] = rep["cached"]
            row["fps"] = round(clock * 1e6 / rep["cycles"], 2)
            log(f"{design}: {rep['cycles']:,} cycles measured, {rep['outputs']:,} outputs bit-exact, "
                f"{rep['wall_s']:.0f} s")
        rows[design] = row
    out = {"bench": "vgg_layer", "board": board_name, "family": board.synth_family,
           "clock_mhz": clock, "clock_note": "the board's default fabric clock (assumed; no place and route)",
           "capacity": board.capacity.as_dict(),
           "layer": geom_dict,
           "designs": rows}
    compare(out)
    return out


def compare(out: dict) -> None:
    """Add the pot4 / int8 ratios and the goal to a result object holding both designs."""
    rows = out["designs"]
    if "int8" not in rows or "pot4" not in rows:
        return
    base, pot = rows["int8"], rows["pot4"]
    key = "cycles_measured" if base["cycles_measured"] and pot["cycles_measured"] else "cycles_model"
    out["time_ratio"] = round(pot[key] / base[key], 4)
    out["time_ratio_from"] = key
    out["dsp_ratio"] = round(pot["dsp"] / base["dsp"], 4) if base["dsp"] else None
    out["goal"] = {
        "time_ratio_max": GOAL_TIME_RATIO, "dsp_ratio_max": GOAL_DSP_RATIO,
        "seed_time_ratio": SEED_TIME_RATIO, "seed_dsp_ratio": SEED_DSP_RATIO,
        "met": key == "cycles_measured" and out["time_ratio"] <= GOAL_TIME_RATIO
        and out["dsp_ratio"] is not None and out["dsp_ratio"] <= GOAL_DSP_RATIO,
    }


def carry_over(summary: dict, previous: dict | None, designs: list[str]) -> None:
    """Designs not run this time keep their stored row (same board and layer), marked
    with the command that measured them, so that a rerun of one design still compares."""
    if not isinstance(previous, dict) or previous.get("layer") != summary["layer"] \
            or previous.get("board") != summary["board"]:
        return
    for name, row in (previous.get("designs") or {}).items():
        if name in DESIGNS and name not in designs and name not in summary["designs"]:
            summary["designs"][name] = {**row, "carried_over": row.get("carried_over")
                                        or previous.get("command", "an earlier run")}
    compare(summary)


@cli.json_last_line
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("python -m bench.vgg_layer", __doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/vgg_layer.json", help="JSON result file")
    parser.add_argument("--designs", default=",".join(DESIGNS),
                        help=f"comma-separated subset of {', '.join(DESIGNS)}")
    parser.add_argument("--no-sim", action="store_true", help="skip the frame simulation")
    parser.add_argument("--no-confirm", nargs="?", const=",".join(DESIGNS), default="",
                        metavar="DESIGNS",
                        help="for these designs (default all) do not synthesise the next larger "
                             "folding to show it does not fit; the model's verdict is listed")
    parser.add_argument("--start", default="",
                        help="first folding to synthesise per design, e.g. pot4=8 (PEs); default "
                             "the folding stored in --out, else 2")
    parser.add_argument("--timeout", type=float, default=7200, help="limit per Yosys run, seconds")
    args = parser.parse_args(argv)
    designs = [d for d in args.designs.split(",") if d]
    bad = [d for d in designs if d not in DESIGNS]
    if bad or not designs:
        parser.error(f"--designs must name some of {', '.join(DESIGNS)}, not {args.designs!r}")

    def log(text):
        print(text, file=sys.stderr, flush=True)

    out = Path(args.out)
    previous = None
    if out.exists():
        try:
            previous = json.loads(out.read_text())
        except ValueError:
            pass
    try:
        starts = {k: int(v) for k, v in (item.split("=") for item in args.start.split(",") if item)}
    except ValueError:
        parser.error(f"--start must be like pot4=8,int8=2, not {args.start!r}")
    summary = run(designs, do_sim=not args.no_sim,
                  confirm={d: d not in args.no_confirm.split(",") for d in designs},
                  timeout=args.timeout, previous=previous, starts=starts, log=log)
    carry_over(summary, previous, designs)
    summary["command"] = command("vgg_layer", argv)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
