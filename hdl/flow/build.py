"""The main job behind ``python -m hdl.build BOARD``: a model file becomes a board project.

Steps: load and validate the model; choose the folding by the cycle model (a target
frame rate, the largest that fits the board, or per-layer overrides); generate the
accelerator (:class:`hdl.flow.network.Network` inside :class:`hdl.shell.axi.AxiTop`) as Verilog
with its Vivado wrapper; estimate every layer and the whole accelerator with Yosys
``synth_xilinx`` (cached by netlist hash); write the Vivado project around the Zynq
processing system (and run Vivado when it is on PATH); write ``report.json``,
``report.md`` and ``report.png``.

Errors (unknown board, bad model file, impossible folding, a design that does not
fit) print one line and exit non-zero.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

import boards
from hdl import ir
from hdl.flow import synth
from hdl.shell.axi import AxiTop, verilog_wrapper
from hdl.flow.network import (FoldingError, Network, NetworkSpec, build_engine, choose_folding,
                              frame_cycles, plan,
                              plan_ram_styles, stage_cycles, weight_bram_budget)
from hdl.flow.report import BuildReport, LayerReport, write_report
from hdl.flow.vivado import run_vivado, write_project

__all__ = ["DEFAULT_MODEL", "DEFAULT_TARGET_FPS", "BuildError", "BuildResult", "build", "parse_folding"]

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
OUTPUTS = (COMPLETE_MARKER, "report.json", "report.md", "report.png", "folding.json", "vivado")
#: Clock range accepted by ``--clock`` (MHz).
CLOCK_RANGE = (1.0, 800.0)


class BuildError(RuntimeError):
    """A build cannot go on; the message is one line."""


@dataclass(frozen=True, kw_only=True)
class BuildResult:
    report: BuildReport | None
    out_dir: Path
    folding: dict
    cycles_per_frame: int
    messages: tuple[str, ...]


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit="step", leave=False, file=sys.stderr)
    except ImportError:                                  # base install: plain lines
        class _Plain:
            def __init__(self):
                self.n = 0

            def update(self, k=1):
                self.n += k
                print(f"{desc}: {self.n}/{total}", file=sys.stderr)

            def set_postfix_str(self, s):
                pass

            def close(self):
                pass
        return _Plain()


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


def _synth(jobs: dict, family, progress) -> dict:
    """Synthesise ``label -> (verilog, top)`` two at a time (cached per netlist)."""
    def done(label, result):
        progress.set_postfix_str(label)
        progress.update()
    try:
        return synth.synthesize_many(jobs, family, workers=2, progress=done)
    except RuntimeError as exc:                      # Yosys missing or failed: its log's tail
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[0] + (f" ... {lines[-1]}" if len(lines) > 1 else "") if lines else type(exc).__name__
        raise BuildError(f"synthesis failed: {detail}") from None


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


def _max_fit_folding(model, board, platform, progress) -> tuple[dict, int]:
    """Largest frame rate whose layers' summed LUT and BRAM fit the board (Yosys-measured).

    Candidate targets are the distinct cycle counts the stages can reach; a binary
    search over them synthesises each tried folding's engines (cached by netlist).
    """
    stages = plan(model)
    candidates = sorted({stage_cycles(s.layer, s.in_spec, p, q)
                         for s in stages for p, q in _options(s)})
    lo, hi = 0, len(candidates) - 1        # hi: slowest candidate, assumed to fit
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        folding = choose_folding(model, candidates[mid])
        trial = plan_ram_styles(plan(model, folding), weight_bram_budget(board.capacity.bram18))
        results = _synth(_stage_jobs(trial, platform), board.synth_family, progress)
        totals = {k: sum(r.resources()[k] for r in results.values()) for k in ("lut", "bram18")}
        if _fits(board, totals):
            best, hi = (folding, candidates[mid]), mid - 1
        else:
            lo = mid + 1
    if best is None:
        raise BuildError(f"{board.name}: even the most folded design does not fit the board")
    return best


def _options(stage):
    from hdl.flow.network import _fold_options
    return _fold_options(stage.layer, stage.in_spec)


def build(board_name: str, *, model_path=None, clock_mhz: float | None = None,
          target_fps: float | None = None, max_fit: bool = False, folding: dict | None = None,
          out_dir=None, run_synth: bool = True, quiet: bool = False) -> BuildResult:
    """Run the whole build; raises :class:`BuildError` (or ``ir.IRError``) with one line."""
    try:
        board = boards.get(board_name)
    except ValueError as exc:
        raise BuildError(str(exc)) from None
    model_file = ir.model_path(model_path or DEFAULT_MODEL)
    model = ir.load(model_path or DEFAULT_MODEL)
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
                                       explicit=target_fps is not None, notes=notes)
    if out_dir is not None and not str(out_dir):
        raise BuildError("--out must name a directory, not ''")
    out = Path(out_dir) if out_dir is not None else REPO / "build" / board.name
    created = _prepare_out(out)
    try:
        result = _build_into(out, board=board, model=model, model_file=model_file, clock=clock,
                             target_cycles=target_cycles, max_fit=max_fit, folding=folding,
                             run_synth=run_synth, quiet=quiet, notes=notes)
    except _KeepOutputs:
        raise                                # finished, failed its goal: the report explains
    except BaseException:
        try:
            _clear_outputs(out)              # nothing half-written survives a failed build
            if created is not None:
                _remove_empty(out, created)
        except (OSError, BuildError):
            pass
        raise
    marker = {"board": board.name, "model": model.name, "model_file": str(model_file),
              "cycles_per_frame": result.cycles_per_frame, "synthesised": result.report is not None,
              "outputs": sorted(p.name for p in out.iterdir() if p.name in OUTPUTS)}
    tmp = out / f".{COMPLETE_MARKER}.tmp"
    tmp.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(tmp, out / COMPLETE_MARKER)       # last: the build is complete
    return result


class _KeepOutputs(BuildError):
    """A finished build that failed its goal (does not fit, Vivado failed): outputs stay."""


def _target_cycles(model, clock: float, fps: float, *, explicit: bool, notes: list) -> int:
    """Cycles per frame for a frame rate.

    A rate beyond the model's fastest folding is refused when asked for, and clamped to
    that folding (with a note) when it is the default target.
    """
    fastest = frame_cycles(plan(model, target_cycles=1))
    cycles = clock * 1e6 / fps
    if cycles < fastest:
        best = clock * 1e6 / fastest
        if explicit:
            raise BuildError(f"--target-fps {fps:g} cannot be met: the fastest folding of "
                             f"{model.name} needs {fastest} cycles per frame, {best:,.0f} fps at "
                             f"{clock:g} MHz; ask for at most {math.floor(best)} or use --max-fit")
        notes.append(f"the default target of {fps:,.0f} fps is beyond {model.name}'s fastest "
                     f"folding ({best:,.0f} fps at {clock:g} MHz): building that")
        return fastest
    return int(min(cycles, 1 << 62))    # a tiny rate: the most folded design meets it


def _build_into(out: Path, *, board, model, model_file, clock, target_cycles, max_fit, folding,
                run_synth, quiet, notes) -> BuildResult:
    messages = list(notes)
    say = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    for note in notes:
        say(note)
    started = time.monotonic()

    platform = board()          # engines elaborate with Xilinx primitives for this part
    n_stages = len(plan(model))
    progress = _progress(n_stages + 2 if run_synth else 1, f"build {board.name}")
    try:
        if max_fit:
            folding, target_cycles = _max_fit_folding(model, board, platform, progress)
        try:
            spec = NetworkSpec(model, folding, target_cycles=max(1, target_cycles),
                               bram18_budget=weight_bram_budget(board.capacity.bram18))
        except FoldingError as exc:
            raise BuildError(f"--folding: {exc}") from None
        frame_elements = model.input.shape[0] * model.input.shape[1] * model.input.shape[2]
        try:
            top = AxiTop(Network(spec=spec), frame_elements=frame_elements, classes=len(model.classes))
        except ValueError as exc:
            raise BuildError(f"{model_file}: the AXI shell cannot carry this model ({exc})") from None
        core_v = verilog.convert(top, name=CORE_MODULE, platform=platform)
        wrapper_v = verilog_wrapper(top, name=TOP_MODULE, inner=CORE_MODULE)
        progress.update()
        project = write_project(out / "vivado", board=board, top=TOP_MODULE, clock_mhz=clock,
                                sources={f"{CORE_MODULE}.v": core_v, f"{TOP_MODULE}.v": wrapper_v})
        (out / "folding.json").write_text(json.dumps(spec.folding, indent=2) + "\n")

        report = None
        if run_synth:
            jobs = {"whole accelerator": (core_v, CORE_MODULE), **_stage_jobs(spec.stages, platform)}
            layer_synth = _synth(jobs, board.synth_family, progress)
            whole = layer_synth["whole accelerator"]
            layers = [LayerReport.from_synth(name=s.name, op=s.op, engine=s.engine, pe=s.pe,
                                             simd=s.simd, cycles_per_frame=s.cycles_per_frame,
                                             synth=layer_synth[s.name])
                      for s in spec.stages]
            report = BuildReport.for_board(board, model=model.name, layers=layers,
                                           latency_cycles=spec.latency_bound, clock_mhz=clock,
                                           totals=whole.resources(),
                                           cycles_per_frame=spec.cycles_per_frame,
                                           shell_floors=spec.shell_floors,
                                           fifos=[f.as_dict() for f in spec.fifos if f is not None],
                                           logic_levels=whole.logic_levels)
            notes = [f"folding: {json.dumps(spec.folding)}",
                     f"whole accelerator: {whole.logic_levels} logic levels (LUTs on the longest path)",
                     "resources are Yosys synth_xilinx estimates; Vivado counts LUTs differently",
                     "cycles_per_frame is the generated top's (the slowest layer or the AXI "
                     "shell's floor); latency_cycles is the cycle model's estimate",
                     f"toolflow time: {time.monotonic() - started:.1f} s"]
            write_report(report, out, notes=notes)
        vivado = run_vivado(out / "vivado")
    finally:
        progress.close()

    messages.append(vivado.message)
    if report is not None:
        say(f"{board.name}: {model.name}, {spec.cycles_per_frame} cycles/frame, "
            f"{report.fps:,.0f} fps at {clock:g} MHz, {report.totals['lut']:,} LUT, "
            f"{report.totals['ff']:,} FF, {report.totals['bram18']} BRAM18, {report.totals['dsp']} DSP "
            f"-> {out / 'report.md'}")
    else:
        say(f"{board.name}: {model.name}, {spec.cycles_per_frame} cycles/frame "
            f"({clock * 1e6 / spec.cycles_per_frame:,.0f} fps at {clock:g} MHz); synthesis skipped")
    say(vivado.message)
    if report is not None and not report.fits:
        over = [k for k in report.totals if report.totals[k] > report.capacity[k]]
        raise _KeepOutputs(f"{board.name}: the design does not fit ({', '.join(f'{k} {report.totals[k]:,} > {report.capacity[k]:,}' for k in over)}); "
                         f"lower --target-fps or use --max-fit (report in {out})")
    if vivado.ran and not vivado.ok:
        raise _KeepOutputs(vivado.message)
    return BuildResult(report=report, out_dir=out, folding=spec.folding,
                       cycles_per_frame=spec.cycles_per_frame, messages=tuple(messages))
