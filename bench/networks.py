"""Network benchmarks: FINN's reference topologies and the shipped digits models on boards.

``python -m bench.networks [--quick] [--networks a,b] [--boards x,y] [--no-synth] [--no-sim]
[--cache-only] [--rewrite] [--restamp] [--synth-timeout S]``

The full run (no options) takes every network on every board; a run restricted by
``--quick``, ``--networks`` or ``--boards`` merges its rows, one by one as they finish,
into the stored results (replacing the same network and board), so that the full table
is built up, and resumed, piece by piece. ``--cache-only`` takes resource figures only
from the synthesis cache; ``--rewrite`` recomputes goals and the FINN comparison of the
stored rows without running anything; ``--restamp`` marks stored rows current whose
generated Verilog the current generators reproduce (:func:`restamp`).

For every (network, board) row: the folding chosen by the compiler's cycle model for a
target (a published anchor's frame rate, see :data:`TARGETS`), cycles per frame from the
cycle model of the generated top (``cycles_model``: the slowest stage or the AXI shell's
floor) and measured on that top in Verilator with a free-running source and sink over
back-to-back frames (``cycles_measured``, scores checked against ``sim.golden``),
frames/s at the assumed clock from the measured cycles, Yosys ``synth_xilinx``
LUT/FF/BRAM18/DSP and logic levels of the whole top (and of each stage's engines alone,
``stage_*``; all cached by netlist hash, the same cache ``python -m hdl.build`` uses, so
an interrupted run resumes), the FIFOs, whether it fits the board, what keeps a row from
its goal through the shell (``shell_note``), and the toolflow time (model to figures).

Also: finn-examples' CNV-W1A1 folding reproduced stage by stage, FINN's cycle model and
FINN's MVAU LUT cost model for it (:func:`finn_mvau_luts`), and each goal of issue 8,
met or not, with the gap.

Results: ``bench/results/networks.json`` (rows, goals, FINN comparison) and
``bench/results.json`` (the list of rows). The last line printed is a JSON summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.hdl import Fragment

import boards
from bench import command, design_sources, generator_version
from hdl import ir
from hdl.flow import synth
from hdl.flow.executor import ClusterError, LocalExecutor, make_executor
from hdl.flow.network import Network, NetworkSpec, build_engine, weight_bram_budget
from hdl.flow.build import whole_job
from hdl import cli
from hdl.shell.axi import AxiTop, board_tdata_width

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
ROWS_FILE = REPO / "bench" / "results.json"

#: (board, assumed clock in MHz) of every row.
BOARDS = (("pynq-z2", 100.0), ("zc706", 200.0), ("zcu102", 200.0))

#: Published anchors (figure, source).
ANCHORS = {
    "cnv-w1a1/pynq-z2": {"fps": 9_150, "lut": 26_072, "bram18": 124 * 2, "bram36": 124,
                         "source": "BNN-PYNQ CNV-W1A1 notebook and utilization report (124 BRAM36)"},
    "cnv-w1a1-finn/pynq-z2": {"fps": 3_020, "fps_model": 3_052,
                              "source": "finn-examples cnv-w1a1 notebook, 100 MHz"},
    "lfc-w1a1/pynq-z2": {"fps": 356_633, "lut": 31_046, "source": "BNN-PYNQ LFC-W1A1"},
    "cnv-w1a1/zc706": {"fps": 21_906, "source": "FINN 2017 paper, CNV on ZC706 at 200 MHz"},
    "sfc-w1a1/zc706": {"fps": 12_300_000, "source": "FINN 2017 paper, SFC on ZC706 at 200 MHz"},
}

#: Target frame rate per network (folding = cheapest meeting it, by the cycle model).
#: A frame rate is turned into cycles per frame at the row's clock.
TARGETS = {
    "sfc-w1a1": {"pynq-z2": 356_633, "zc706": 12_300_000, "zcu102": 12_300_000},
    "lfc-w1a1": {"pynq-z2": 390_000, "zc706": 1_500_000, "zcu102": 1_500_000},
    # One folding for all boards: 8,192 cycles meets both CNV goals (>= 12,000 fps at
    # 100 MHz, >= 24,000 fps at 200 MHz); the xc7 boards then share the synthesis.
    "cnv-w1a1": {"cycles": 8_192},
    "cnv-w2a2": {"cycles": 8_192},
    # hdl.flow.build's default target: 20,000 fps at 100 MHz.
    "digits-w1a2": {"cycles": 5_000},
    "digits-pot4": {"cycles": 5_000},
    "digits-pot4-sparse": {"cycles": 5_000},
}

#: finn-examples build/bnn-pynq/folding_config/cnv-w1a1_folding_config.json, its
#: MatrixVectorActivation_0..8 mapped onto this compiler's stages (the max-pools, which
#: FINN runs as separate StreamingMaxPool layers, are folded by the compiler to meet
#: the same cycle count).
FINN_CNV_FOLDING = {
    "conv0": (16, 3), "conv1": (32, 32), "conv2": (16, 32), "conv3": (16, 32),
    "conv4": (4, 32), "conv5": (1, 32), "fc6": (1, 4), "fc7": (1, 8), "fc8": (5, 1),
}

#: Yosys time limit per stage, and Yosys runs at once (the stages of a row).
SYNTH_TIMEOUT_S = 1_800
SYNTH_WORKERS = 2

QUICK = {"networks": ("sfc-w1a1-quick", "digits-w1a2", "digits-pot4", "digits-pot4-sparse"),
         "boards": ("pynq-z2",)}
FULL_NETWORKS = ("digits-w1a2", "digits-pot4", "digits-pot4-sparse", "sfc-w1a1", "cnv-w1a1-finn",
                 "cnv-w1a1", "lfc-w1a1", "cnv-w2a2")


# ----------------------------------------------------------------------------- models

def load_network(name: str) -> ir.Model:
    """The model of a benchmark network (random weights for FINN's topologies)."""
    from sim import random_model
    if name in ("sfc-w1a1", "sfc-w1a1-quick"):
        return random_model.sfc()
    if name == "lfc-w1a1":
        return random_model.lfc()
    if name in ("cnv-w1a1", "cnv-w1a1-finn"):
        return random_model.cnv(wbits=1, abits=1)
    if name == "cnv-w2a2":
        return random_model.cnv(wbits=2, abits=2)
    if name.startswith("digits-"):
        return ir.load(ir.model_path(REPO / "models" / name[len("digits-"):]))
    raise ValueError(f"unknown network {name!r}")


def network_available(name: str) -> bool:
    if name.startswith("digits-"):
        return (REPO / "models" / name[len("digits-"):]).exists()
    return True


def folding_for(name: str, board: str, clock_mhz: float) -> tuple[dict | None, int | None, str]:
    """(explicit folding or None, target cycles or None, description of the choice)."""
    if name == "cnv-w1a1-finn":
        finn_ii = max(finn_cycles(load_network(name)).values())
        return ({k: {"pe": p, "simd": s} for k, (p, s) in FINN_CNV_FOLDING.items()}, finn_ii,
                "finn-examples cnv-w1a1 folding (max-pools folded to its cycle count)")
    if name == "sfc-w1a1-quick":
        return None, 4_096, "quick: 4,096 cycles per frame"
    target = TARGETS[name]
    if "cycles" in target:
        return None, target["cycles"], f"target {target['cycles']:,} cycles per frame"
    fps = target[board]
    cycles = max(1, int(clock_mhz * 1e6 // fps))
    return None, cycles, f"target {fps:,} fps at {clock_mhz:g} MHz = {cycles:,} cycles per frame"


# ----------------------------------------------------------------------------- FINN models

def finn_cycles(model: ir.Model) -> dict[str, int]:
    """FINN's MVAU cycle model, ``(MH / PE) * (MW / SIMD) * output pixels``, at the
    finn-examples folding (conv and fc stages only)."""
    out = {}
    for spec_in, layer in zip(model.specs(), model.layers):
        if layer.name not in FINN_CNV_FOLDING:
            continue
        pe, simd = FINN_CNV_FOLDING[layer.name]
        mw, mh, pixels = _mvau_shape(layer, spec_in)
        out[layer.name] = (mh // pe) * (mw // simd) * pixels
    return out


def _mvau_shape(layer, spec_in):
    h, w, c = spec_in.shape
    if isinstance(layer, ir.Conv):
        k = layer.kernel
        oh = (h + 2 * layer.padding - k) // layer.stride + 1
        ow = (w + 2 * layer.padding - k) // layer.stride + 1
        return k * k * c, layer.out_channels, oh * ow
    return h * w * c, layer.out_features, 1


def finn_mvau_luts(mw: int, pe: int, simd: int, wbits: int, abits: int, *, signed_input: bool,
                   acc_type_bits: int | None = None) -> int:
    """FINN's MVAU LUT estimate (``matrixvectoractivation.py`` ``lut_estimation``, after
    FINN-R, Blott et al. 2018), for ``mem_mode`` internal_decoupled with ``ram_style``
    auto and threshold memory not distributed (so ``c2 = thr = comp = 0``) and LUT
    multipliers::

        LUT = c0 + c1 * P * (mult + addertree + acc),  c0 = 300, c1 = 1.1
        mult      = Q * (2 * ceil((W + A) / 6) - 1) * (W + A)
        addertree = (W + A) * (2 * Q - 1)
        acc       = min(accDataType bits, ceil(alpha + log2(1 + 2**-alpha) + 1)),
                    alpha = log2(MW) + W + A - 1 - signed(input)

    ``acc_type_bits`` is FINN's minimised accumulator type width (``accDataType``; for an
    XNOR layer the popcount, ``ceil(log2(MW + 1))`` bits); None leaves only the bound.
    """
    w, a, q, p = wbits, abits, simd, pe
    mult = q * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
    adder = (w + a) * (2 * q - 1)
    alpha = math.log2(mw) + w + a - 1 - int(signed_input)
    acc = math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1)
    if acc_type_bits is not None:
        acc = min(acc, acc_type_bits)
    return int(300 + 1.1 * (p * (mult + adder + acc)))


def finn_cnv_comparison(model: ir.Model, stages) -> dict:
    """FINN's cycle and LUT models at the finn-examples folding beside our cycle model."""
    specs = {layer.name: spec for spec, layer in zip(model.specs(), model.layers)}
    ours = {s.name: s.cycles_per_frame for s in stages}
    fc = finn_cycles(model)
    layers = {}
    for layer in model.layers:
        if layer.name not in FINN_CNV_FOLDING:
            continue
        pe, simd = FINN_CNV_FOLDING[layer.name]
        mw, mh, pixels = _mvau_shape(layer, specs[layer.name])
        abits = specs[layer.name].bits
        wbits = layer.weights.bits
        layers[layer.name] = {
            "pe": pe, "simd": simd, "mw": mw, "mh": mh, "pixels": pixels,
            "finn_cycles": fc[layer.name], "our_cycles": ours[layer.name],
            "finn_lut_model": finn_mvau_luts(
                mw, pe, simd, wbits, abits, signed_input=abits == 1,
                # FINN's XNOR MVAU accumulates a popcount (0 .. MW).
                acc_type_bits=math.ceil(math.log2(mw + 1)) if wbits == abits == 1 else None),
        }
    ii = max(fc.values())
    return {
        "layers": layers,
        "finn_cycles_per_frame": ii,
        "finn_fps_at_100mhz": 100e6 / ii,
        "our_cycles_per_frame": max(ours.values()),
        "cycles_agree": all(v["finn_cycles"] == v["our_cycles"] for v in layers.values()),
        "finn_lut_model_total": sum(v["finn_lut_model"] for v in layers.values()),
        "finn_lut_formula": ("LUT = 300 + 1.1 * P * (Q*(2*ceil((W+A)/6)-1)*(W+A) + (W+A)*(2Q-1) + acc_bits) (+ c2 = 0 "
                             "for BRAM weights), acc_bits = min(accDataType bits, ceil(alpha + log2(1 + 2^-alpha) + 1)), "
                             "alpha = log2(MW)+W+A-1-signed(input); XNOR layers accumulate a popcount of "
                             "ceil(log2(MW+1)) bits; thresholds not in LUTRAM (thr = comp = 0); LUT multipliers "
                             "(FINN MVAU lut_estimation, after FINN-R, Blott et al. 2018). Covers the MVAU only: "
                             "sliding windows, pools and FIFOs are outside it"),
    }


# ----------------------------------------------------------------------------- measurement

#: Verilator C++ optimisation by design size (characters of the top's Verilog): small
#: designs build fast at the harness's default and run long; big ones take most of their
#: time in the C++ compiler (CNV-W1A1's top: 35-40 min projected at -Os, 227 s at -O0).
VERILATOR_OPT = ((300_000, ""),
                 (3_000_000, "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0"),
                 (None, "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"))
#: A run of more cycles than this is worth -O1 on the per-cycle code of any design (a big
#: top's evaluation at -O0 then costs more than the longer build).
LONG_RUN_CYCLES = 1_000_000
#: Frames the top is measured with (back to back); the frame interval is taken between
#: the last two.
MEASURE_FRAMES = 4


def verilator_opt(verilog_chars: int, cycles: int = 0) -> str:
    """``OPT_*`` make settings for a Verilator build of a design of this size that will
    run about ``cycles`` cycles."""
    if cycles > LONG_RUN_CYCLES and verilog_chars > VERILATOR_OPT[0][0]:
        return VERILATOR_OPT[1][1]
    for limit, flags in VERILATOR_OPT:
        if limit is None or verilog_chars <= limit:
            return flags
    raise AssertionError("unreachable")


def generated_top(spec: NetworkSpec):
    """The accelerator as a user gets it: ``AxiTop`` (the AXI shell) around ``Network``."""
    model = spec.model
    return AxiTop(Network(spec=spec), frame_elements=math.prod(model.input.shape),
                  classes=len(model.classes), in_width=spec.axis_width, out_width=spec.axis_width)


def measure_top(spec: NetworkSpec, frames: int = MEASURE_FRAMES, seed: int = 0,
                name: str | None = None, board=None) -> dict:
    """The generated top (``AxiTop`` around ``Network``) in Verilator (cached build, C++
    optimisation by :func:`verilator_opt`), free-running source and sink, ``frames``
    (at least 2) random frames back to back; weights streamed from DDR come from the DDR
    model at ``board``'s port latency and bandwidth (:mod:`hdl.flow.verify`'s). The
    scores must equal ``sim.golden``'s
    (AssertionError otherwise). Returns ``cycles`` (between the ends of the last two
    frames), ``intervals``, ``latency`` (first frame, first beat sent to TLAST) and
    ``verilator_opt``."""
    import os

    from amaranth.back import verilog

    from hdl.flow.verify import ddr_parameters
    from sim import golden
    from sim.harness import run_cocotb

    if frames < 2:
        raise ValueError(f"frames must be at least 2, not {frames}")
    model = spec.model
    text = verilog.convert(generated_top(spec), name="top")
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << model.input.bits, size=(frames, *model.input.shape))
    scores = golden.run(model, codes)
    opt = verilator_opt(len(text), frames * spec.cycles_per_frame + spec.latency_bound)
    parameters = {"codes": codes.reshape(frames, -1).astype(np.int64),
                  "scores": scores.astype(np.int64), "in_bits": model.input.bits,
                  "classes": len(model.classes), "axis_width": spec.axis_width,
                  "timeout_cycles": 4 * (frames * spec.cycles_per_frame + spec.latency_bound) + 2_000}
    if spec.streamers:
        parameters.update(ddr_parameters(spec, board))
    saved = os.environ.get("MAKEFLAGS")
    flags = re.sub(r"\bOPT_\w+=\S+", "", saved or "").strip()
    os.environ["MAKEFLAGS"] = f"{flags} {opt}".strip()
    try:
        result = run_cocotb(text, toplevel="top", name=name or f"top_{model.name}",
                            test_module="bench.cocotb_top", parameters=parameters, seeds=(1,))
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved
    rep = result.report
    intervals = np.diff(rep["ends"]).tolist()
    return {"cycles": intervals[-1], "intervals": intervals, "latency": rep["latency"],
            "verilator_opt": opt or "harness default"}


def lanes(spec: NetworkSpec) -> int:
    return sum(s.pe * s.simd for s in spec.stages)


class NotCached(RuntimeError):
    """``--cache-only``: some stages' synthesis results are not in the cache; ``found``
    holds those that are."""

    def __init__(self, missing, found):
        self.missing, self.found = missing, found
        super().__init__(f"stage(s) {', '.join(missing)} not synthesised yet "
                         f"(run without --cache-only)")


def _cached(text: str, top: str, family: str, map_apart=()):
    key = synth._cache_key(text, top, family, synth._options(map_apart))
    path = synth.default_cache_dir() / f"{key}.json"
    if path.exists():                                        # a cache hit: no Yosys run
        return synth.synthesize(text, top, family, map_apart=map_apart)
    return None


#: Name of the whole design in Yosys: ``hdl.build``'s, so that both share the cache.
WHOLE_MODULE = "qnn_core"
WHOLE = "whole design"


def synth_stages(spec: NetworkSpec, board, *, timeout: float = SYNTH_TIMEOUT_S,
                 progress=None, cache_only: bool = False, workers: int = SYNTH_WORKERS,
                 executor=None, verilog_texts: dict[str, str] | None = None) -> dict:
    """Yosys figures of the whole generated top (``AxiTop`` around ``Network``, key
    :data:`WHOLE`) and of each stage: elaborated for ``board``'s platform (Xilinx
    primitives where an engine has them; ``verilog_texts`` from :func:`design_verilog` if
    already converted), the same names, netlists and cache as ``hdl.flow.build``;
    ``workers`` Yosys runs at once, or on ``executor``'s cluster."""
    family = board.synth_family
    texts = verilog_texts or design_verilog(spec, board)
    jobs = {name: whole_job(text, WHOLE_MODULE) if name == WHOLE else (text, f"layer_{name}")
            for name, text in texts.items()}
    if cache_only:
        out = {}
        for name, job in jobs.items():
            text, top_name, map_apart = synth._job(job)
            if (hit := _cached(text, top_name, family, map_apart)) is not None:
                out[name] = hit
        missing = [name for name in jobs if name not in out]
        if missing:
            raise NotCached(missing, out)
        return out
    if progress:
        progress(f"synth the whole design and {len(spec.stages)} stages ({family}, {workers} "
                 "Yosys at a time): " + ", ".join(f"{s.name} {s.pe}x{s.simd}" for s in spec.stages))

    def done(name, result):
        if progress:
            progress(f"  {name}: {result.lut:,} LUT, {result.bram18} BRAM18"
                     + (" (cached)" if result.cached else ""))
    return synth.synthesize_many(jobs, family, workers=workers, timeout=timeout, progress=done,
                                 executor=executor)


def shell_note(spec: NetworkSpec, target: int | None) -> str | None:
    """What keeps the top from its target, or from the stages' own rate, if anything: the
    AXI shell's input (beats per frame) or output (classes + 1) floor."""
    beats, out = spec.shell_floors
    floor = max(beats, out)
    which = (f"input ({beats:,} beats of {spec.axis_width} bits per frame)" if beats >= out
             else f"output ({out} cycles per frame: classes + 1)")
    core = spec.core_cycles_per_frame
    if target is not None and target < floor:
        return (f"cannot reach its goal of {target:,} cycles per frame through the shell: the AXI "
                f"shell's {which} needs at least {floor:,}, {floor / target:.2f}x slower (the "
                f"stages are folded for {floor:,})")
    if spec.cycles_per_frame > core:
        return (f"the AXI shell's {which} limits the top to {spec.cycles_per_frame:,} cycles "
                f"per frame; the stages alone need {core:,}")
    return None


def design_hash(spec: NetworkSpec, board, verilog_texts: dict[str, str] | None = None) -> str:
    """A short SHA-256 of the design's Verilog as measured: the simulated top, the whole
    top and each stage's engines elaborated for ``board``'s platform (``verilog_texts``, as
    :func:`design_verilog` gives them, if already converted), with Amaranth's
    source-location attributes (checkout path and line numbers) left out. Equal hashes,
    equal hardware: a row whose hash the current generators reproduce is current."""
    from amaranth.back import verilog

    texts = [verilog.convert(generated_top(spec), name="top"),
             *(verilog_texts or design_verilog(spec, board)).values()]
    digest = hashlib.sha256()
    for text in texts:
        digest.update(_SRC_ATTRIBUTE.sub("", text).encode() + b"\0")
    return digest.hexdigest()[:16]


def design_verilog(spec: NetworkSpec, board) -> dict[str, str]:
    """Verilog of the whole generated top (key :data:`WHOLE`, module :data:`WHOLE_MODULE`)
    and of each stage's engines (module ``layer_<stage>``), elaborated for ``board``'s
    platform: what Yosys measures."""
    from amaranth.back import verilog

    platform = board()
    texts = {WHOLE: verilog.convert(generated_top(spec), name=WHOLE_MODULE, platform=platform)}
    texts.update({stage.name: verilog.convert(build_engine(stage), name=f"layer_{stage.name}",
                                              platform=platform)
                  for stage in spec.stages})
    return texts


_SRC_ATTRIBUTE = re.compile(r'\(\* src = "[^"]*" \*\)')


def _named_spec(name: str, board, clock_mhz: float) -> tuple[NetworkSpec, int | None, str]:
    """A named network's design for ``board`` as :func:`run_row` builds it, its target and
    how its folding was chosen."""
    folding, target, choice = folding_for(name, board.name, clock_mhz)
    return _spec(load_network(name), folding, target, board), target, choice


def _spec(model: ir.Model, folding, target: int | None, board) -> NetworkSpec:
    return NetworkSpec(model, folding, target_cycles=target, axis_width=board_tdata_width(board),
                       bram18_budget=weight_bram_budget(board.capacity.bram18))


def _planned(spec: NetworkSpec, target: int | None) -> dict:
    """A row's figures that follow from the plan alone (cycle model, FIFOs, shell)."""
    return {"folding": spec.folding,
            "engines": {s.name: s.engine for s in spec.stages},
            "stage_cycles": {s.name: s.cycles_per_frame for s in spec.stages},
            "cycles_model": spec.cycles_per_frame, "cycles_core": spec.core_cycles_per_frame,
            "axis_width": spec.axis_width,
            "shell_floors": {"input": spec.shell_floors[0], "output": spec.shell_floors[1]},
            "bottleneck": spec.bottleneck, "shell_note": shell_note(spec, target),
            "fifos": [f.as_dict() for f in spec.fifos if f is not None], "fifo_bits": spec.fifo_bits,
            "lanes": lanes(spec), "latency_estimate": spec.latency_bound}


def run_row(name: str, board_name: str, clock_mhz: float, *, do_synth: bool = True,
            measure: bool = True, cmd: str = "", progress=None, model: ir.Model | None = None,
            target_cycles: int | None = None, cache_only: bool = False, executor=None,
            synth_timeout: float = SYNTH_TIMEOUT_S) -> dict:
    """One benchmark row (see the module docstring). ``model`` and ``target_cycles``
    replace the named network's model and folding target (for tests). ``executor``
    (:mod:`hdl.flow.executor`) runs the simulation and the Yosys jobs; on a cluster the
    simulation runs while the stages synthesise.

    ``cycles_model`` is the cycle model of the generated top (the slowest stage or the
    shell's floor), ``cycles_measured`` the top in Verilator (:func:`measure_top`);
    ``cycles_per_frame`` and ``fps`` follow the measured figure when there is one.
    ``lut``/``ff``/``bram18``/``dsp``/``uram``/``logic_levels`` are the whole top's,
    ``stage_*`` the stages' engines synthesised alone; ``verilog_hash`` is
    :func:`design_hash`, ``generator_sources`` the generator files the design uses."""
    board = boards.get(board_name)
    started = time.monotonic()
    # The generator sources that plan and elaborate this design: a change in any other
    # cannot change its Verilog, so the row stays current (bench.report).
    with design_sources(board) as sources:
        if model is None:
            spec, target, choice = _named_spec(name, board, clock_mhz)
        else:
            target, choice = target_cycles, f"target {target_cycles:,} cycles per frame"
            spec = _spec(model, None, target, board)
        Fragment.get(generated_top(spec), board())
    sources = sorted(sources)
    verilog_texts = design_verilog(spec, board) if do_synth else None
    verilog_hash = design_hash(spec, board, verilog_texts)
    cycles = spec.cycles_per_frame
    row = {
        "network": name, "model": spec.model.name, "board": board.name, "clock_mhz": clock_mhz,
        "folding_choice": choice, "target_cycles": target,
        **_planned(spec, target),
        "cycles_per_frame": cycles, "fps": clock_mhz * 1e6 / cycles,
        "cycles_measured": None, "cycles_measured_note": None, "latency_measured": None,
        "generators": generator_version(sources), "generator_sources": sources,
        "verilog_hash": verilog_hash,
        "lut": None, "ff": None, "bram18": None, "dsp": None, "uram": None,
        "logic_levels": None, "fits": None, "synth_note": None,
        "capacity": board.capacity.as_dict(), "command": cmd,
    }
    sim_job = None
    if measure:
        if progress:
            progress(f"simulate the generated top of {name} ({MEASURE_FRAMES} frames)")
        sim_job = (executor or LocalExecutor()).submit(measure_top, spec, MEASURE_FRAMES, 0,
                                                       f"bench_{name}_{board.name}")
    if do_synth:
        try:
            per = synth_stages(spec, board, progress=progress, cache_only=cache_only,
                               executor=executor, timeout=synth_timeout, verilog_texts=verilog_texts)
        except NotCached as exc:
            row["synth_note"] = f"synthesis not finished: {exc}"
            per, whole = exc.found, None
        except Exception as exc:                     # a timeout or a Yosys failure: record it
            row["synth_note"] = f"synthesis not finished: {type(exc).__name__}: {str(exc)[:200]}"
            per, whole = {}, None
        else:
            whole = per[WHOLE]
        stages = {k: r for k, r in per.items() if k != WHOLE}
        for key in ("lut", "ff", "bram18", "dsp", "logic_levels"):
            row[f"stage_{key}"] = {k: getattr(r, key) for k, r in stages.items()}
        if whole is not None:
            row.update(whole.resources())
            row["logic_levels"] = whole.logic_levels
            row["synth_cached_stages"] = sum(r.cached for r in stages.values())
            cap = board.capacity.as_dict()
            row["fits"] = all(row[k] <= cap[k] for k in ("lut", "ff", "bram18", "dsp"))
            row["synth_note"] = (f"Yosys synth_xilinx -family {board.synth_family}: the whole "
                                 "generated top (AxiTop: stages, FIFOs, width converters, AXI "
                                 "shell); stage_* are the stages' engines synthesised alone")
    if sim_job is not None:
        got = sim_job.result()
        row["cycles_measured"] = got["cycles"]
        row["latency_measured"] = got["latency"]
        row["cycles_per_frame"] = got["cycles"]
        row["fps"] = clock_mhz * 1e6 / got["cycles"]
        row["cycles_measured_note"] = (
            f"generated top (AxiTop) in Verilator ({got['verilator_opt']}), free-running, "
            f"{MEASURE_FRAMES} frames back to back, scores = sim.golden; intervals "
            f"{got['intervals']}")
    row["toolflow_s"] = round(time.monotonic() - started, 1)
    return row


# ----------------------------------------------------------------------------- goals

def _row(rows, network, board):
    for r in rows:
        if r["network"] == network and r["board"] == board:
            return r
    return None


def evaluate_goals(rows: list[dict], finn: dict | None) -> list[dict]:
    """Each goal of issues 8 and 14: met (True/False, or None when not measured) and the gap."""
    goals = []

    def add(goal, met, figure, gap, limit=""):
        goals.append({"goal": goal, "met": met, "figure": figure, "gap": gap, "limit": limit})

    def fps_goal(network, board, fps_goal, lut_cap, what):
        r = _row(rows, network, board)
        if r is None:
            add(what, None, "not measured", "not measured")
            return
        fps_ok = r["fps"] >= fps_goal
        parts = [f"{r['fps']:,.0f} fps at {r['clock_mhz']:g} MHz ({r['cycles_per_frame']:,} cycles/frame)"]
        gaps = [f"fps {r['fps'] - fps_goal:+,.0f} ({r['fps'] / fps_goal - 1:+.1%})"]
        if r["lut"] is None:
            parts.append("LUT not measured")
            met = None if fps_ok else False
            gaps.append("resources not measured")
        else:
            cap_lut = lut_cap if lut_cap is not None else r["capacity"]["lut"]
            lut_ok = r["lut"] <= cap_lut
            bram_ok = r["bram18"] <= r["capacity"]["bram18"]
            parts.append(f"{r['lut']:,} LUT, {r['bram18']} BRAM18 (board {r['capacity']['bram18']}), "
                         f"{r['logic_levels']} logic levels")
            gaps.append(f"LUT {r['lut'] - cap_lut:+,} vs {cap_lut:,}")
            met = fps_ok and lut_ok and bram_ok and bool(r["fits"])
        add(what, met, "; ".join(parts), "; ".join(gaps), r.get("shell_note") or "")

    def limit(text):
        goals[-1]["limit"] = "; ".join(t for t in (goals[-1]["limit"], text) if t)

    fps_goal("cnv-w1a1", "pynq-z2", 12_000, 22_000,
             "CNV-W1A1 on PYNQ-Z2 at 100 MHz: >= 12,000 fps within 22,000 LUT and the board's BRAM")
    fps_goal("cnv-w1a1", "zc706", 24_000, 30_000,
             "CNV-W1A1 on ZC706 at 200 MHz: >= 24,000 fps within 30,000 LUT")
    fps_goal("lfc-w1a1", "pynq-z2", 390_000, 31_000,
             "LFC-W1A1 on PYNQ-Z2 at 100 MHz: >= 390,000 fps within 31,000 LUT")
    limit(_lfc_limit(_row(rows, "lfc-w1a1", "pynq-z2")))
    fps_goal("lfc-w1a1", "zc706", 1_500_000, None,
             "LFC-W1A1 on ZC706 at 200 MHz: >= 1.5 M fps, fitting")
    fps_goal("sfc-w1a1", "zc706", 12_300_000, 90_000,
             "SFC-W1A1 on ZC706 at 200 MHz: >= 12.3 M fps through the top within 90,000 LUT")
    limit(_sfc_limit(_row(rows, "sfc-w1a1", "zc706")))

    r = _row(rows, "cnv-w1a1-finn", "pynq-z2")
    what = "CNV-W1A1 at the finn-examples folding: fewer LUTs than FINN's cost model predicts"
    if finn is None or r is None:
        add(what, None, "not measured", "not measured")
    elif r["lut"] is None:
        done = {k: v for k, v in (r.get("stage_lut") or {}).items() if k in finn["layers"]}
        if done:
            ours = sum(done.values())
            model_part = sum(finn["layers"][k]["finn_lut_model"] for k in done)
            add(what, None,
                f"partial, {len(done)} of {len(finn['layers'])} layers synthesised "
                f"({', '.join(done)}): ours {ours:,} LUT vs FINN model {model_part:,} LUT for them; "
                f"FINN model total {finn['finn_lut_model_total']:,} LUT",
                f"{ours - model_part:+,} LUT ({ours / model_part - 1:+.1%}) on the synthesised layers; "
                f"the rest not measured")
        else:
            add(what, None, f"FINN model {finn['finn_lut_model_total']:,} LUT (MVAUs); ours not measured",
                "not measured")
    else:
        ours = sum(v for k, v in r["stage_lut"].items() if k in FINN_CNV_FOLDING)
        model_total = finn["finn_lut_model_total"]
        add(what, ours < model_total,
            f"ours {ours:,} LUT (Yosys, conv/fc stages incl. sliding windows) vs FINN model "
            f"{model_total:,} LUT (MVAUs only)",
            f"{ours - model_total:+,} LUT ({ours / model_total - 1:+.1%})")
    return goals


def _sfc_limit(r) -> str:
    if r is None:
        return ""
    beats = (r.get("shell_floors") or {}).get("input")
    if not beats:
        return ""
    return (f"the shell's input carries the 784 binarized codes in {beats} beats of "
            f"{r.get('axis_width', 64)} bits, at most {r['clock_mhz'] * 1e6 / beats:,.0f} fps at "
            f"{r['clock_mhz']:g} MHz")


def _lfc_limit(r) -> str:
    if r is None:
        return ""
    weights_bits = 784 * 1024 + 1024 * 1024 * 2 + 1024 * 10
    cycles = r["cycles_per_frame"]
    bram_bits = 140 * 72
    text = (f"{cycles} cycles per frame at 100 MHz (the layers' power-of-two sizes give 256 or "
            f"512 cycles, nothing between): {weights_bits / 1e6:.2f} Mbit of weights read every "
            f"{cycles} cycles = {weights_bits / cycles:,.0f} bits/cycle, beyond the "
            f"{bram_bits:,} bits/cycle of PYNQ-Z2's 140 BRAM36 (about "
            f"{100e6 / (weights_bits / bram_bits):,.0f} fps from block RAM alone)")
    placed = {k: v.get("ram_style", "auto") for k, v in r["folding"].items()}
    lut_side = [k for k, v in placed.items() if v == "distributed"]
    if lut_side:
        text += (f"; the BRAM planner put {', '.join(lut_side)} in LUTs and "
                 f"{', '.join(k for k, v in placed.items() if v == 'block')} in block RAM")
    return text


# ----------------------------------------------------------------------------- main

def run(networks, board_list, *, do_synth=True, measure=True, args=(), out_dir=RESULTS_DIR,
        rows_file=ROWS_FILE, progress=None, cache_only=False, merge_partial=False,
        executor=None, synth_timeout: float = SYNTH_TIMEOUT_S) -> dict:
    cmd = command("networks", list(args))
    rows, skipped = [], []
    for name in networks:
        if not network_available(name):
            skipped.append(f"{name}: model files not present")
            continue
        for board_name, clock in BOARDS:
            if board_name not in board_list:
                continue
            if name == "cnv-w1a1-finn" and board_name != "pynq-z2":
                continue                          # the finn-examples figure is a PYNQ-Z2 one
            rows.append(run_row(name, board_name, clock, do_synth=do_synth, measure=measure,
                                cmd=cmd, progress=progress, cache_only=cache_only,
                                executor=executor, synth_timeout=synth_timeout))
            if out_dir is None and merge_partial:
                merge(rows[-1:], [])                  # a partial run: merge row by row
            else:
                _write(rows, skipped, out_dir, rows_file, cmd)   # results so far on disk
    return _write(rows, skipped, out_dir, rows_file, cmd)


def _write(rows, skipped, out_dir, rows_file, cmd) -> dict:
    finn = None
    if any(r["network"] == "cnv-w1a1-finn" for r in rows):
        model = load_network("cnv-w1a1-finn")
        folding, target, _ = folding_for("cnv-w1a1-finn", "pynq-z2", 100.0)
        from hdl.flow.network import plan
        finn = finn_cnv_comparison(model, plan(model, folding, target_cycles=target))
    result = {"bench": "networks", "command": cmd, "rows": rows, "skipped": skipped,
              "finn_cnv": finn, "goals": evaluate_goals(rows, finn),
              "anchors": ANCHORS,
              "notes": ["fps at an assumed clock (the row's clock_mhz), logic levels beside them; "
                        "no place and route was run",
                        "Yosys synth_xilinx and Vivado count LUTs differently (Vivado packs and "
                        "optimises more); resources are Yosys estimates",
                        "random weights for SFC, LFC and CNV (hardware figures only)"]}
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "networks.json").write_text(json.dumps(result, indent=1, default=_json) + "\n")
    if rows_file is not None:
        Path(rows_file).write_text(json.dumps(rows, indent=1, default=_json) + "\n")
    return result


def _json(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


@cli.json_last_line
def main(argv=None) -> int:
    parser = cli.parser("python -m bench.networks", __doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="SFC (relaxed folding) and the digits models on PYNQ-Z2 only")
    parser.add_argument("--networks", default=None, help=f"comma list from {', '.join(FULL_NETWORKS)}")
    parser.add_argument("--boards", default=None, help="comma list from pynq-z2, zc706, zcu102")
    parser.add_argument("--no-synth", action="store_true", help="cycle model (and simulation) only")
    parser.add_argument("--no-sim", action="store_true", help="skip the measured cycles")
    parser.add_argument("--cache-only", action="store_true",
                        help="use synthesis results from the cache only (rows with a stage not "
                             "in it get no resource figures)")
    parser.add_argument("--rewrite", action="store_true",
                        help="run nothing: recompute goals and the FINN comparison of the stored rows")
    parser.add_argument("--restamp", action="store_true",
                        help="run nothing: re-stamp stored rows (of --networks, --boards) whose "
                             "generated Verilog is unchanged as current (bench.networks.restamp)")
    parser.add_argument("--synth-timeout", type=float, default=SYNTH_TIMEOUT_S, metavar="S",
                        help=f"limit per Yosys run in seconds (default {SYNTH_TIMEOUT_S:g})")
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                        help="run the Yosys jobs and simulations on this Dask scheduler's "
                             "workers (docs/cluster.md)")
    args = parser.parse_args(argv)
    if args.rewrite:
        result = merge([], [])
        print(json.dumps({"rows": len(result["rows"]), "goals": [g["met"] for g in result["goals"]]}))
        return 0
    raw = list(argv if argv is not None else sys.argv[1:])
    networks = QUICK["networks"] if args.quick else FULL_NETWORKS
    board_list = QUICK["boards"] if args.quick else tuple(b for b, _ in BOARDS)
    if args.networks:
        networks = tuple(n.strip() for n in args.networks.split(","))
        bad = [n for n in networks if n not in FULL_NETWORKS + QUICK["networks"]]
        if bad:
            print(f"error: unknown network(s) {', '.join(bad)}; choose from "
                  f"{', '.join(dict.fromkeys(FULL_NETWORKS + QUICK['networks']))}", file=sys.stderr)
            return cli.EXIT_BAD_INPUT
    if args.boards:
        board_list = tuple(b.strip() for b in args.boards.split(","))
        known = tuple(b for b, _ in BOARDS)
        bad = [b for b in board_list if b not in known]
        if bad:
            print(f"error: unknown board(s) {', '.join(bad)} for this benchmark; choose from "
                  f"{', '.join(known)}", file=sys.stderr)
            return cli.EXIT_BAD_INPUT
    if args.restamp:
        outcome = restamp(networks if args.networks else None, board_list if args.boards else None,
                          progress=lambda text: print(text, file=sys.stderr, flush=True))
        print(json.dumps(outcome))
        return 0
    out_dir, rows_file = RESULTS_DIR, ROWS_FILE
    if args.quick or args.networks or args.boards:
        # A partial run must not overwrite the full results: merge by (network, board).
        out_dir, rows_file = None, None

    def progress(text):
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    try:
        executor = make_executor(args.scheduler, workers=SYNTH_WORKERS)
    except (ClusterError, ValueError) as exc:
        if isinstance(exc, ValueError):
            print(f"error: --{exc}", file=sys.stderr)
            return cli.EXIT_BAD_INPUT
        print(f"error: {exc}", file=sys.stderr)
        return cli.EXIT_TOOL_FAILED
    with executor:
        result = run(networks, board_list, do_synth=not args.no_synth, measure=not args.no_sim,
                     args=raw, out_dir=out_dir, rows_file=rows_file, progress=progress,
                     cache_only=args.cache_only, merge_partial=out_dir is None,
                     executor=executor, synth_timeout=args.synth_timeout)
    if out_dir is None:
        result = merge(result["rows"], result["skipped"])
    for r in result["rows"]:
        print(f"{r['network']:20s} {r['board']:8s} {r['clock_mhz']:5g} MHz {r['cycles_per_frame']:>8,} cyc "
              f"{r['fps']:>14,.0f} fps meas {r['cycles_measured']} LUT {r['lut']} BRAM18 {r['bram18']} "
              f"fits {r['fits']} {r['toolflow_s']} s")
    summary = {"rows": len(result["rows"]),
               "goals": [{"goal": g["goal"], "met": g["met"], "gap": g["gap"]} for g in result["goals"]]}
    print(json.dumps(summary))
    return 0


def restamp(networks=None, board_list=None, progress=print) -> dict[str, str]:
    """Re-stamps stored rows whose hardware the current generators reproduce, without
    re-measuring: a row whose :func:`design_hash` is unchanged takes the current
    generator version and plan figures (cycle model, FIFOs); a current row without a hash
    gets one, each merged as it is checked. Returns what happened to each row, by
    ``"network/board"``."""
    outcome = {}
    for row in json.loads(ROWS_FILE.read_text()) if ROWS_FILE.exists() else []:
        name, board_name = row["network"], row["board"]
        if (networks and name not in networks) or (board_list and board_name not in board_list):
            continue
        key = f"{name}/{board_name}"
        if name not in FULL_NETWORKS + QUICK["networks"] or not network_available(name):
            outcome[key] = "skipped: not a benchmark network here"
            continue
        board = boards.get(board_name)
        with design_sources(board) as sources:
            spec, target, _ = _named_spec(name, board, row["clock_mhz"])
            Fragment.get(generated_top(spec), board())
        sources = sorted(sources)
        now = design_hash(spec, board)
        current = row.get("generators") == generator_version(row.get("generator_sources"))
        if row.get("verilog_hash") is None and not current:
            outcome[key] = "no Verilog hash, earlier generators: re-run it"
        elif row.get("verilog_hash") not in (None, now):
            outcome[key] = "Verilog changed: re-run it"
        else:
            outcome[key] = ("hash recorded" if row.get("verilog_hash") is None
                            else "current" if current else "re-stamped")
            stamped = dict(row, **_planned(spec, target), verilog_hash=now,
                           generators=generator_version(sources), generator_sources=sources)
            # Unless a run replaced the row meanwhile.
            _rewrite(lambda rows: [stamped if r == row else r for r in rows], [])
        progress(f"{key}: {outcome[key]}")
    return outcome


def merge(rows: list[dict], skipped: list[str]) -> dict:
    """Merge rows of a partial run into the stored results (replacing equal (network, board)).
    Partial runs may run side by side: the read, merge and write hold a lock on the file."""
    keys = {(r["network"], r["board"]) for r in rows}
    return _rewrite(lambda old: [r for r in old if (r["network"], r["board"]) not in keys] + rows,
                    skipped)


def _rewrite(update, skipped: list[str]) -> dict:
    """Rewrites the stored rows as ``update(stored rows)`` under the lock (:func:`merge`)."""
    import fcntl

    ROWS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(ROWS_FILE.with_name(ROWS_FILE.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = []
        if ROWS_FILE.exists():
            try:
                old = json.loads(ROWS_FILE.read_text())
            except ValueError:
                old = []
        merged = update(old)
        order = {n: i for i, n in enumerate(FULL_NETWORKS + QUICK["networks"])}
        merged.sort(key=lambda r: (order.get(r["network"], 99),
                                   [b for b, _ in BOARDS].index(r["board"])))
        return _write(merged, skipped, RESULTS_DIR, ROWS_FILE,
                      "python -m bench.networks (rows merged from the commands below)")


if __name__ == "__main__":
    sys.exit(main())
