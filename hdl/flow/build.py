"""The main job behind ``python -m hdl.build BOARD``: a model file becomes a board project.

Steps: load and validate the model; choose the folding by the cycle model (a target
frame rate, the largest that fits the board, or per-layer overrides); generate the
accelerator (:class:`hdl.flow.network.Network` inside :class:`hdl.shell.axi.AxiTop`) as Verilog
with its Vivado wrapper (weights that exceed the board's on-chip share stream from DDR,
:func:`place_weights_for`); estimate every layer and the whole accelerator with Yosys
``synth_xilinx`` (cached by netlist hash); write the Vivado project around the Zynq
processing system (and run Vivado when it is on PATH); write ``report.json``,
``report.md`` and ``report.png``; with ``verify``, simulate the generated top on test
frames against the golden model (:mod:`hdl.flow.verify`); write ``deploy/`` for a PYNQ
board (:mod:`hdl.deploy`).

Errors raise :class:`BuildError` (bad input) or one of its kinds :class:`DoesNotFit`,
:class:`ToolFailed`, :class:`VerifyFailed`, each with one line and its CLI exit code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

import boards
from hdl import cli, ir
from hdl.flow import synth
from hdl.flow.executor import ClusterError, check_scheduler, make_executor
from hdl.shell.axi import AxiTop, board_tdata_width, verilog_wrapper
from hdl.flow.network import (FoldingError, Network, NetworkSpec, build_engine, choose_folding,
                              frame_cycles, plan, shell_floors, stage_cycles,
                              plan_ram_styles, stage_cycle_options, weight_bram_budget)
from hdl.flow.report import BuildReport, LayerReport, write_report
from hdl.flow.report import add_to_report
from hdl.flow.vivado import max_weight_ports, run_vivado, vivado_figures, write_project
from hdl.flow.weights import ONCHIP_WEIGHT_SHARE, WeightPlan, onchip_bytes, place_weights

__all__ = ["DEFAULT_MODEL", "DEFAULT_TARGET_FPS", "BuildError", "DoesNotFit", "ToolFailed",
           "VerifyFailed", "BuildResult", "build", "parse_folding", "place_weights_for",
           "weight_plan", "weights_summary", "onchip_budget"]

log = logging.getLogger("qnn.build")

#: Where the shipped ``models/`` are: beside the ``hdl`` package, in a checkout and in an
#: installed wheel (package data) alike.
REPO = Path(__file__).resolve().parents[2]
#: The model ``python -m hdl.build`` uses when none is given.
DEFAULT_MODEL = REPO / "models" / "w1a2"
#: Default target frame rate at the board's clock; the folding is the cheapest that
#: reaches it.
DEFAULT_TARGET_FPS = 20_000
CORE_MODULE, TOP_MODULE = "qnn_core", "qnn_accel"
#: Written last, only by a build that finished (design fits, Vivado did not fail); a
#: folder without it holds no finished build.
COMPLETE_MARKER = "build_complete.json"
#: Everything a build writes into its output folder; cleared before a build starts.
OUTPUTS = (COMPLETE_MARKER, "report.json", "report.md", "report.png", "folding.json", "vivado",
           "deploy", "verify.json")
#: Clock range accepted by ``--clock`` (MHz).
CLOCK_RANGE = (1.0, 800.0)


class BuildError(cli.BadInput, RuntimeError):
    """A build cannot go on (bad input); the message is one line."""


class DoesNotFit(BuildError):
    """The design does not fit the board, or the asked frame rate cannot be met."""
    exit_code = cli.EXIT_DOES_NOT_FIT


class ToolFailed(BuildError):
    """Yosys, Verilator or Vivado failed or is missing."""
    exit_code = cli.EXIT_TOOL_FAILED


class VerifyFailed(BuildError):
    """``--verify``: the simulated accelerator differs from the golden model."""
    exit_code = cli.EXIT_MISMATCH


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    report: BuildReport | None
    out_dir: Path
    folding: dict
    cycles_per_frame: int
    messages: tuple[str, ...]
    verify: dict | None = None
    vivado: dict | None = None
    #: The weight placement when a stage streams from DDR (:func:`weights_summary`).
    weights: dict | None = None


def _progress(total: int, desc: str):
    return cli.progress(total=total, desc=desc)


def parse_folding(text: str | None) -> dict | None:
    """``--folding``: a JSON object (inline or a file path) of stage -> {pe, simd}."""
    if text is None:
        return None
    source = Path(text)
    try:
        is_file = source.exists()
    except (OSError, ValueError):              # a name too long for a path, a NUL byte
        is_file = False
    if is_file:
        if source.is_dir():
            raise BuildError(f"--folding {text}: is a directory, not a JSON file")
        try:
            raw = source.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BuildError(f"--folding {text}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise BuildError(f"--folding {text}: cannot read ({exc.strerror or exc})") from None
    else:
        raw = text
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        what = "not JSON" if is_file else "not JSON and not a file"
        raise BuildError(f"--folding: {what} ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(value, dict):
        raise BuildError("--folding: must be a JSON object mapping layer names to {\"pe\": .., \"simd\": ..}")
    return value


def _finite(value) -> bool:
    """A real int or float (not bool) that is finite as a float64."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:                             # an int beyond float64
        return False


def _number(value, name: str, lo: float, hi: float, unit: str = "") -> float:
    """A finite real number in ``lo .. hi`` (one-line BuildError otherwise)."""
    if not _finite(value):
        raise BuildError(f"{name} must be a finite number between {lo:g} and {hi:g}{unit}, "
                         f"not {value!r:.40}")
    value = float(value)
    if not lo <= value <= hi:
        raise BuildError(f"{name} must be a finite number between {lo:g} and {hi:g}{unit}, not {value:g}")
    return value


def _prepare_out(out: Path) -> Path | None:
    """Create or check the output folder and clear a previous build's outputs.

    Returns the outermost folder created here (None if ``out`` existed). Only the names
    in :data:`OUTPUTS` are removed, and ``vivado/`` only when it is a project this tool
    wrote.
    """
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out}: is a file, not a directory")
    created = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        created = folder
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write_test_")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BuildError(f"--out {out}: cannot write there ({exc.strerror or type(exc).__name__})") from None
    vivado = out / "vivado"
    if vivado.exists() and not (vivado / "create_project.tcl").exists():
        raise BuildError(f"--out {out}: holds a vivado/ folder this tool did not write; "
                         "choose another --out")
    deploy = out / "deploy"
    if deploy.exists() and not (deploy / "accelerator.json").exists():
        raise BuildError(f"--out {out}: holds a deploy/ folder this tool did not write; "
                         "choose another --out")
    _clear_outputs(out)
    return created


def _remove_empty(out: Path, top: Path) -> None:
    """Remove ``out`` and its parents up to ``top`` while they are empty (a failed build)."""
    for folder in (out, *out.parents):
        if any(folder.iterdir()):
            return
        folder.rmdir()
        if folder == top:
            return


def _clear_outputs(out: Path) -> None:
    for name in OUTPUTS:
        target = out / name
        try:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        except OSError as exc:
            raise BuildError(f"--out {out}: cannot remove the earlier {name} "
                             f"({exc.strerror or type(exc).__name__})") from None


def _synth(jobs: dict, family, progress, executor=None) -> dict:
    """Synthesise ``label -> (verilog, top)`` through ``executor`` (default: two at a time
    here), cached per netlist."""
    def done(label, result):
        progress.set_postfix_str(label)
        progress.update()
    try:
        return synth.synthesize_many(jobs, family, workers=2, progress=done, executor=executor)
    except RuntimeError as exc:
        raise _synthesis_failed(exc) from None


def _synthesis_failed(exc: RuntimeError) -> "ToolFailed":
    """Yosys missing or failed: the first and last lines of its log, in one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = lines[0] + (f" ... {lines[-1]}" if len(lines) > 1 else "") if lines else type(exc).__name__
    return ToolFailed(f"synthesis failed: {detail}")


#: Verilog (characters) above which the whole accelerator is synthesised in parts
#: (:func:`synthesize_in_parts`): yowasp's Yosys has 4 GiB, and a design's ROM contents as
#: Verilog statements take the most of it (docs/hardware.md, "Resource estimates").
WHOLE_RUN_MAX_CHARS = 32_000_000


def synthesize_in_parts(spec, board, *, stages=None, workers: int = 2, progress=None,
                        executor=None, timeout: float = 1800) -> tuple[dict, "synth.SynthResult"]:
    """The generated top of ``spec`` on ``board`` through
    :func:`hdl.flow.synth.synthesize_parts`, from Amaranth's RTLIL: one Yosys run per stage
    named in ``stages`` (default: every stage; its module inside the top) and one for the
    rest of the top. Returns ``({stage name or "rest": result}, whole design)``;
    ``progress(label, result)`` as each run ends. Raises ``RuntimeError`` if Yosys fails."""
    from amaranth.back import rtlil

    from hdl.flow.verify import accelerator_top
    text = rtlil.convert(accelerator_top(spec, board), name=CORE_MODULE, platform=board())
    names = [s.name for s in spec.stages] if stages is None else list(stages)
    labels = {f"{CORE_MODULE}.core.{name}": name for name in names}
    missing = set(labels) - set(synth.submodules(text, f"{CORE_MODULE}.core"))
    if missing:
        raise ValueError(f"stage modules not found in the top: {', '.join(sorted(missing))}")
    labels[CORE_MODULE] = "rest"
    results = synth.synthesize_parts(
        text, CORE_MODULE, board.synth_family, [m for m in labels if m != CORE_MODULE], rtlil=True,
        workers=workers, executor=executor, timeout=timeout,
        progress=None if progress is None else lambda module, r: progress(labels[module], r))
    return {labels[m]: r for m, r in results.items()}, synth.combine(results, CORE_MODULE)


def whole_job(core_v: str, name: str = CORE_MODULE) -> tuple:
    """The synthesis job of the whole accelerator (``AxiTop`` converted as ``name``): each
    of the network's stages (submodules of its ``core``) is mapped apart, as Vivado
    synthesises a block design's IP out of context (see :func:`hdl.flow.synth.synthesize`)."""
    return core_v, name, tuple(synth.submodules(core_v, f"{name}.core"))


def _stage_jobs(stages, platform) -> dict:
    """Each stage's engine alone, elaborated for the board (Xilinx primitives included)."""
    jobs = {}
    for stage in stages:
        name = f"layer_{stage.name}"
        jobs[stage.name] = (verilog.convert(build_engine(stage), name=name, platform=platform), name)
    return jobs


def _fits(board, totals: dict) -> bool:
    cap = board.capacity.as_dict()
    return totals["lut"] <= cap["lut"] and totals["bram18"] <= cap["bram18"]


def _max_fit_folding(model, board, platform, progress, executor=None,
                     clock: float | None = None) -> tuple[dict, int]:
    """Largest frame rate whose layers' summed LUT and BRAM fit the board (Yosys-measured).

    Candidate targets are the distinct cycle counts the stages can reach (on the tile
    engine too, where the weights have zero tiles); a binary
    search over them synthesises each tried folding's engines (cached by netlist), with
    the weights placed as the build places them (:func:`place_weights_for`).
    """
    stages = plan(model)
    candidates = sorted({c for s in stages for c in stage_cycle_options(s.layer, s.in_spec)})
    lo, hi = 0, len(candidates) - 1        # hi: slowest candidate, assumed to fit
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        folding = choose_folding(model, candidates[mid])
        trial = plan(model, folding)
        placed = place_weights_for(trial, board, clock or board.default_clock_mhz)
        if placed is not None:
            trial = plan(model, placed)
        trial = plan_ram_styles(trial, weight_bram_budget(board.capacity.bram18))
        results = _synth(_stage_jobs(trial, platform), board.synth_family, progress, executor)
        totals = {k: sum(r.resources()[k] for r in results.values()) for k in ("lut", "bram18")}
        if _fits(board, totals):
            best, hi = (folding, candidates[mid]), mid - 1
        else:
            lo = mid + 1
    if best is None:
        raise DoesNotFit(f"{board.name}: even the most folded design does not fit the board")
    return best


def build(board_name: str, *, model_path=None, clock_mhz: float | None = None,
          target_fps: float | None = None, max_fit: bool = False, folding: dict | None = None,
          out_dir=None, run_synth: bool = True, quiet: bool = False, verify: int = 0,
          verify_data: str | None = None, seed: int = 1, deploy: bool = True,
          vivado_timeout: float | None = None, scheduler: str | None = None) -> BuildResult:
    """Run the whole build; raises :class:`BuildError` (or ``ir.IRError``) with one line.

    ``out_dir`` defaults to ``build/BOARD`` in the working directory. ``verify``: frames
    to simulate against the golden model (0: none) from ``verify_data`` (``"digits"``,
    an ``.npz``, ``"random"``; default: the model's data set when it has its shape).
    ``deploy``: write ``deploy/`` (the board-side driver, its configuration and the
    test frames). ``scheduler`` (``tcp://HOST:PORT``): run the Yosys jobs on that Dask
    cluster.
    """
    try:
        board = boards.get(board_name)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    model_file = ir.model_path(model_path or DEFAULT_MODEL)
    from hdl.qonnx import load_model          # a model file, or a QONNX graph (.onnx)
    model = load_model(model_path or DEFAULT_MODEL)
    clock = _number(board.default_clock_mhz if clock_mhz is None else clock_mhz,
                    "--clock", *CLOCK_RANGE, " MHz")
    if target_fps is not None:
        if not _finite(target_fps) or target_fps <= 0:
            raise BuildError(f"--target-fps must be a finite positive number (frames/s), "
                             f"not {target_fps!r:.40}")
        target_fps = float(target_fps)
    if max_fit and (target_fps is not None or folding):
        raise BuildError("--max-fit chooses the folding itself: drop --target-fps/--folding")
    if max_fit and not run_synth:
        raise BuildError("--max-fit needs synthesis: drop --no-synth")
    if scheduler is not None:
        if not run_synth:
            raise BuildError("--scheduler runs the synthesis jobs: drop --no-synth")
        try:
            check_scheduler(scheduler)
        except (TypeError, ValueError) as exc:
            raise BuildError(f"--{exc}") from None
    if isinstance(verify, bool) or not isinstance(verify, int) or not 0 <= verify <= 100_000:
        raise BuildError(f"--verify must be a number of frames between 0 and 100000, not {verify!r}")
    if verify_data not in (None, "digits", "random") and not Path(str(verify_data)).is_file():
        raise BuildError(f"--verify-data must be 'digits', 'random' or an .npz file, not {verify_data!r}")
    lo, hi = model.specs()[-1].acc_range
    width = 1 + max((v if v >= 0 else -v - 1).bit_length() for v in (int(lo), int(hi)))  # signed
    if width > 32:
        raise BuildError(f"{model_file}: scores range {lo}..{hi} needs {width} bits, but the AXI "
                         "shell carries 32-bit words (score width must be at most 32, not "
                         f"{width})")
    if folding is not None and not isinstance(folding, dict):
        raise BuildError("--folding: must be a JSON object mapping layer names to {\"pe\": .., \"simd\": ..}")
    target_cycles, notes = None, []
    if not max_fit:
        target_cycles = _target_cycles(model, clock, target_fps or DEFAULT_TARGET_FPS,
                                       explicit=target_fps is not None, notes=notes,
                                       axis_width=board_tdata_width(board))
    if out_dir is not None and not str(out_dir):
        raise BuildError("--out must name a directory, not ''")
    out = Path(out_dir) if out_dir is not None else Path("build") / board.name
    created = _prepare_out(out)
    try:
        with _executor(scheduler) as executor:
            result = _build_into(out, board=board, model=model, model_file=model_file, clock=clock,
                                 target_cycles=target_cycles, max_fit=max_fit, folding=folding,
                                 explicit_target=target_fps is not None,
                                 run_synth=run_synth, quiet=quiet, notes=notes, verify=verify,
                                 verify_data=verify_data, seed=seed, deploy=deploy,
                                 vivado_timeout=vivado_timeout, executor=executor)
    except BuildError as exc:
        if not getattr(exc, "keep_outputs", False):
            _discard(out, created)
        raise                                # kept: finished, failed its goal; the report explains
    except BaseException:
        _discard(out, created)
        raise
    marker = {"board": board.name, "model": model.name, "model_file": str(model_file),
              "cycles_per_frame": result.cycles_per_frame, "synthesised": result.report is not None,
              "verified_frames": verify,
              "outputs": sorted(p.name for p in out.iterdir() if p.name in OUTPUTS)}
    tmp = out / f".{COMPLETE_MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, out / COMPLETE_MARKER)       # last: the build is complete
    return result


def _executor(scheduler):
    """Yosys jobs two at a time here, or on the Dask cluster at ``scheduler``."""
    try:
        return make_executor(scheduler, workers=2)
    except ClusterError as exc:
        raise BuildError(str(exc)) from None


def _discard(out: Path, created: Path | None) -> None:
    """Nothing half-written survives a failed build."""
    try:
        _clear_outputs(out)
        if created is not None:
            _remove_empty(out, created)
    except (OSError, BuildError):
        pass


def _kept(exc: BuildError) -> BuildError:
    """A finished build that failed its goal (does not fit, Vivado failed, verification
    differs): its outputs stay, without the completion marker."""
    exc.keep_outputs = True
    return exc


def _target_cycles(model, clock: float, fps: float, *, explicit: bool, notes: list,
                   axis_width: int) -> int:
    """Cycles per frame for a frame rate.

    The fastest top is the model's fastest folding or the AXI shell's floor at the
    board's ``axis_width``-bit TDATA (input beats, classes + 1 output words), whichever
    is slower. A rate beyond it is refused when asked for, and clamped to it (with a
    note) when it is the default target.
    """
    core = frame_cycles(plan(model, target_cycles=1))
    floor = max(shell_floors(model, axis_width))
    fastest = max(core, floor)
    cycles = clock * 1e6 / fps
    if cycles < fastest:
        best = clock * 1e6 / fastest
        why = (f"the fastest folding of {model.name} needs {core} cycles per frame"
               if core >= floor else
               f"the AXI shell needs {floor} cycles per frame for {model.name} at "
               f"{axis_width}-bit TDATA")
        if explicit:
            raise DoesNotFit(f"--target-fps {fps:g} cannot be met: {why}, {best:,.0f} fps at "
                             f"{clock:g} MHz; ask for at most {math.floor(best)} or use --max-fit")
        notes.append(f"the default target of {fps:,.0f} fps is beyond what {model.name} can do "
                     f"({why}, {best:,.0f} fps at {clock:g} MHz): building that")
        return fastest
    return int(min(cycles, 1 << 62))    # a tiny rate: the most folded design meets it


def onchip_budget(board) -> int:
    """Bytes of the board's block RAM the weight ROMs may take (UltraRAM cannot hold a ROM)."""
    return int(ONCHIP_WEIGHT_SHARE * board.onchip_weight_bytes())


def place_weights_for(stages, board, clock: float, folding: dict | None = None) -> dict | None:
    """A full folding with weights placed, when the weight memories of ``stages`` exceed
    the board's on-chip share (:func:`onchip_budget`); None when they fit.

    :func:`hdl.flow.weights.place_weights` decides per stage; a stage whose ``folding``
    entry names ``"weights"`` keeps what it says. Raises :class:`DoesNotFit` when even
    streaming every other stage leaves too much on chip.
    """
    budget = onchip_budget(board)
    total = sum(onchip_bytes(s) for s in stages)
    if total <= budget:
        return None
    folding = folding or {}
    pinned = {name for name, v in folding.items() if isinstance(v, dict) and "weights" in v}
    fixed = sum(onchip_bytes(s) for s in stages if s.name in pinned)
    if fixed > budget:
        raise DoesNotFit(f"{board.name}: the weights --folding keeps on chip "
                         f"({', '.join(sorted(n for n in pinned if folding[n]['weights'] != 'ddr'))}) "
                         f"take {fixed:,} bytes, more than the {budget:,} bytes of block RAM "
                         f"the weights may use")
    try:
        placed = place_weights([s for s in stages if s.name not in pinned], board,
                               clock_mhz=clock, budget_bytes=budget - fixed)
    except ValueError:
        raise DoesNotFit(f"{board.name}: the weights take {total:,} bytes on chip and do not fit "
                         f"the {budget:,} bytes of block RAM they may use even with "
                         f"every stage streamed from DDR") from None
    by_name = {s.name: s for s in placed.stages}
    out = {}
    for stage in stages:
        s = by_name.get(stage.name, stage)
        entry = {"pe": s.pe, "simd": s.simd}
        user = folding.get(s.name)
        if isinstance(user, dict) and "ram_style" in user:
            entry["ram_style"] = user["ram_style"]
        if s.streamed:
            entry.update(weights="ddr", ddr_ports=s.ddr_ports)
        else:
            if getattr(s, "tiles", False):
                entry.update(tiles=True, in_simd=s.in_lanes)
            if s.name in pinned:
                entry["weights"] = s.weights
        out[s.name] = entry
    return out


def weight_plan(spec, board, clock: float) -> WeightPlan | None:
    """The DDR figures of ``spec``'s streamed stages at ``clock``, or None without any."""
    if not spec.streamers:
        return None
    return WeightPlan(list(spec.stages), clock, board.ddr_port_bytes_per_s(clock),
                      onchip_budget(board), float(board.ddr_peak_bytes_per_s))


def weights_summary(plan: WeightPlan, cycles_per_frame: int | None = None) -> dict:
    """What ``report.json["weights"]`` holds: per stage on chip or DDR, bytes on chip, DDR
    bytes per frame; in total the DDR bandwidth used at the frame rate (the top's
    ``cycles_per_frame``, default the plan's) against the HP ports'."""
    cycles = max(cycles_per_frame or 0, plan.cycles_per_frame)
    fps = plan.clock_mhz * 1e6 / cycles
    return {
        "stages": [{"stage": r["stage"], "placement": None if r["weights"] is None else
                    ("ddr" if r["weights"] == "ddr" else "on chip"),
                    "onchip_bytes": r["onchip_bytes"], "ddr_bytes_per_frame": r["ddr_bytes_per_frame"]}
                   for r in plan.rows()],
        "onchip_bytes": plan.onchip_bytes, "onchip_budget_bytes": plan.budget_bytes,
        "ddr_image_bytes": plan.ddr_image_bytes, "ddr_bytes_per_frame": plan.ddr_bytes_per_frame,
        "ddr_ports": plan.masters, "ddr_bandwidth_used": plan.ddr_bytes_per_frame * fps,
        "ddr_bandwidth_ports": plan.available_bytes_per_s,
        "ddr_cycles_per_frame": plan.cycles_per_frame, "fps": fps,
    }


def _check_ddr(plan: WeightPlan, spec, board, clock, target_cycles, explicit: bool, messages,
               say) -> None:
    """Refuse a design whose streamers need more HP ports than the PS has, or whose DDR
    traffic cannot carry an asked frame rate; note it when it misses the default rate."""
    ports = max_weight_ports(board)
    if plan.masters > ports:
        raise DoesNotFit(f"{board.name}: {plan.masters} weight streamers need one HP port each, "
                         f"the PS has {ports} for them")
    cycles = max(spec.cycles_per_frame, plan.cycles_per_frame)
    # The same design with its weights on chip: what the DDR does not decide.
    compute = max(stage_cycles(s.layer, s.in_spec, s.pe, s.simd) if s.streamed else s.cycles_per_frame
                  for s in spec.stages)
    if cycles <= max(target_cycles or 0, compute, *spec.shell_floors):
        return
    names = ", ".join(s.name for s in spec.streamed)
    best = clock * 1e6 / cycles
    why = (f"weights streamed from DDR ({names}) allow at most {best:,.0f} fps at {clock:g} MHz: "
           f"{plan.ddr_bytes_per_frame:,} bytes per frame over {plan.masters} HP port(s), "
           f"{plan.available_bytes_per_s / 1e9:.2f} GB/s, one word per cycle per port")
    if explicit:
        raise DoesNotFit(f"--target-fps {clock * 1e6 / target_cycles:g} cannot be met: {why}")
    note = f"the target frame rate is not met: {why}"
    messages.append(note)
    say(note)


def _build_into(out: Path, *, board, model, model_file, clock, target_cycles, max_fit, folding,
                run_synth, quiet, notes, verify, verify_data, seed, deploy,
                vivado_timeout, executor=None, explicit_target=False) -> BuildResult:
    messages = list(notes)
    say = (lambda s: None) if quiet else log.info
    for note in notes:
        say(note)
    started = time.monotonic()

    platform = board()          # engines elaborate with Xilinx primitives for this part
    n_stages = len(plan(model))
    progress = _progress(n_stages + 2 if run_synth else 1, f"build {board.name}")
    try:
        if max_fit:
            folding, target_cycles = _max_fit_folding(model, board, platform, progress, executor,
                                                      clock)
        try:
            spec = NetworkSpec(model, folding, target_cycles=max(1, target_cycles),
                               axis_width=board_tdata_width(board), ddr_width=board.hp_data_width,
                               bram18_budget=weight_bram_budget(board.capacity.bram18))
            placed = place_weights_for(spec.stages, board, clock, folding)
            if placed is not None:
                spec = NetworkSpec(model, placed, target_cycles=max(1, target_cycles),
                                   axis_width=board_tdata_width(board), ddr_width=board.hp_data_width,
                                   bram18_budget=weight_bram_budget(board.capacity.bram18))
        except FoldingError as exc:
            raise BuildError(f"--folding: {exc}") from None
        weights = weight_plan(spec, board, clock)
        cycles = spec.cycles_per_frame
        if weights is not None:
            cycles = max(cycles, weights.cycles_per_frame)
            _check_ddr(weights, spec, board, clock, target_cycles, explicit_target, messages, say)
        frame_elements = model.input.shape[0] * model.input.shape[1] * model.input.shape[2]
        try:
            top = AxiTop(Network(spec=spec), frame_elements=frame_elements,
                         classes=len(model.classes), board=board)
        except ValueError as exc:
            raise BuildError(f"{model_file}: the AXI shell cannot carry this model ({exc})") from None
        core_v = verilog.convert(top, name=CORE_MODULE, platform=platform)
        wrapper_v = verilog_wrapper(top, name=TOP_MODULE, inner=CORE_MODULE)
        progress.update()
        project = write_project(out / "vivado", board=board, top=TOP_MODULE, clock_mhz=clock,
                                sources={f"{CORE_MODULE}.v": core_v, f"{TOP_MODULE}.v": wrapper_v},
                                in_width=top.in_width, out_width=top.out_width,
                                weight_ports=len(top.weight_ports))
        (out / "folding.json").write_text(json.dumps(spec.folding, indent=2) + "\n")

        report = None
        if run_synth:
            in_parts = len(core_v) > WHOLE_RUN_MAX_CHARS
            if in_parts:
                say(f"{len(core_v) / 1e6:.0f} MB of Verilog: synthesising each stage and the rest "
                    f"of the top apart (from RTLIL)")
                def done(label, result):
                    progress.set_postfix_str(label)
                    progress.update()
                try:
                    layer_synth, whole = synthesize_in_parts(spec, board, progress=done, executor=executor)
                except RuntimeError as exc:
                    raise _synthesis_failed(exc) from None
            else:
                jobs = {"whole accelerator": whole_job(core_v), **_stage_jobs(spec.stages, platform)}
                layer_synth = _synth(jobs, board.synth_family, progress, executor)
                whole = layer_synth["whole accelerator"]
            layers = [LayerReport.from_synth(name=s.name, op=s.op, engine=s.engine, pe=s.pe,
                                             simd=s.simd, cycles_per_frame=s.cycles_per_frame,
                                             synth=layer_synth[s.name])
                      for s in spec.stages]
            report = BuildReport.for_board(board, model=model.name, layers=layers,
                                           latency_cycles=spec.latency_bound, clock_mhz=clock,
                                           totals=whole.resources(),
                                           cycles_per_frame=cycles,
                                           shell_floors=spec.shell_floors,
                                           fifos=[f.as_dict() for f in spec.fifos if f is not None],
                                           logic_levels=whole.logic_levels,
                                           path_ends=whole.path_ends,
                                           weights=None if weights is None else weights_summary(weights, cycles))
            report_notes = [f"folding: {json.dumps(spec.folding)}",
                            f"whole accelerator: {whole.logic_levels} logic levels (LUTs on the longest path)",
                            *(["synthesised in parts: each stage as its own design and the rest of "
                               "the top with the stages as black boxes, summed; logic levels leave out "
                               "paths across a stage's ports"] if in_parts else []),
                            "resources are Yosys synth_xilinx estimates; Vivado counts LUTs differently",
                            "cycles_per_frame is the generated top's (the slowest layer, the AXI "
                            "shell's floor, or the DDR bandwidth of streamed weights); "
                            "latency_cycles is the cycle model's estimate",
                            f"toolflow time: {time.monotonic() - started:.1f} s"]
            write_report(report, out, notes=report_notes)
    finally:
        progress.close()

    if report is not None:
        say(f"{board.name}: {model.name}, {cycles} cycles/frame, "
            f"{report.fps:,.0f} fps at {clock:g} MHz, {report.totals['lut']:,} LUT, "
            f"{report.totals['ff']:,} FF, {report.totals['bram18']} BRAM18, {report.totals['dsp']} DSP "
            f"-> {out / 'report.md'}")
    else:
        say(f"{board.name}: {model.name}, {cycles} cycles/frame "
            f"({clock * 1e6 / cycles:,.0f} fps at {clock:g} MHz); synthesis skipped")
    if report is not None and not report.fits:
        over = [k for k in report.totals if report.totals[k] > report.capacity[k]]
        raise _kept(DoesNotFit(
            f"{board.name}: the design does not fit ({', '.join(f'{k} {report.totals[k]:,} > {report.capacity[k]:,}' for k in over)}); "
            f"lower --target-fps or use --max-fit (report in {out})"))

    verified = None
    if verify:
        verified = _verify(out, spec, model, verify, verify_data, seed, report is not None, say,
                               board)
    if deploy:
        _deploy(out / "deploy", top, clock, model, verify_data, seed, spec)
        say(f"deploy/: driver, accelerator.json, validate.py and test frames -> {out / 'deploy'}")

    vivado = run_vivado(out / "vivado", timeout=vivado_timeout,
                        echo=(lambda line: None) if quiet else (lambda line: log.info("vivado: %s", line)))
    messages.append(vivado.message)
    say(vivado.message)
    figures = None
    if vivado.ran and not vivado.ok:
        raise _kept(ToolFailed(vivado.message))
    if vivado.ran:
        try:
            figures = vivado_figures(out / "vivado", board.ps)
        except ValueError as exc:
            raise _kept(ToolFailed(f"Vivado's reports cannot be read: {exc}")) from None
        if figures is not None and report is not None:
            add_to_report(out / "report.json", "vivado", figures)
        if deploy:
            from hdl.deploy import copy_bitstream
            copy_bitstream(out / "vivado", out / "deploy")
    return BuildResult(report=report, out_dir=out, folding=spec.folding,
                       cycles_per_frame=cycles, messages=tuple(messages),
                       verify=verified, vivado=figures,
                       weights=None if weights is None else weights_summary(weights, cycles))


def _deploy(folder: Path, top, clock, model, verify_data, seed, spec) -> None:
    from hdl.deploy import write_deploy
    from hdl.flow.verify import frames_for
    try:
        n = 450 if verify_data in (None, "digits") else 100
        codes, labels, _ = frames_for(model, n, verify_data, seed)
        if labels is not None and verify_data in (None, "digits"):
            codes, labels = codes[:n], labels[:n]
    except (ValueError, OSError) as exc:
        raise BuildError(f"deploy test frames: {exc}") from None
    write_deploy(folder, top=top, clock_mhz=clock, model=model, codes=codes, labels=labels,
                 weight_image=spec.weight_image() if spec.streamers else None)


def _verify(out: Path, spec, model, n: int, data, seed: int, has_report: bool, say,
            board=None) -> dict:
    """Simulate the top on ``n`` frames; the result goes into report.json (or verify.json
    without synthesis); a mismatch raises :class:`VerifyFailed`."""
    from hdl.flow import toolchain
    from hdl.flow.verify import frames_for, verify as run_verify
    try:
        codes, labels, source = frames_for(model, n, data, seed)
    except (ValueError, OSError) as exc:
        raise BuildError(f"--verify: {exc}") from None
    say(f"verify: {n} {source} frames through the simulated accelerator, random stalls ...")
    try:
        result = run_verify(spec, codes, labels=labels, seed=seed, board=board)
    except toolchain.ToolNotFound as exc:
        raise ToolFailed(f"--verify: {exc}") from None
    except ImportError as exc:                     # cocotb, cocotbext-axi: the 'sim' extra
        raise ToolFailed(f"--verify needs the simulation packages ({exc.name} is missing): "
                         "pip install 'qnn-fpga[sim]'") from None
    except (AssertionError, RuntimeError) as exc:
        raise ToolFailed(f"--verify: the simulation failed ({str(exc).splitlines()[0]})") from None
    result["data"] = source
    if has_report:
        add_to_report(out / "report.json", "verify", dict(result))
    else:
        (out / "verify.json").write_text(json.dumps(dict(result), indent=2) + "\n")
    bad = result["first_mismatch"]
    if bad is not None:
        raise _kept(VerifyFailed(
            f"--verify: {result['mismatched_frames']} of {n} frames differ from the golden "
            f"model; first frame {bad['frame']}, {bad['layer']}"))
    acc = f", accuracy {100 * result['accuracy']:.2f}%" if result["accuracy"] is not None else ""
    say(f"verify: {n} frames bit-exact{acc}, {result['cycles_per_frame']} cycles/frame measured "
        f"(model {result['model_cycles_per_frame']})")
    return result
