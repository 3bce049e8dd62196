"""Benchmark: an AlexNet-class network with weights streamed from DDR on the ZCU104 (issue 18).

    python -m bench.alexnet [--out bench/results/alexnet.json] [--fps 200] [--slice-rows 8]
                            [--frames 2] [--no-synth] [--synth-timeout S]

Seed paper 003 compresses AlexNet 28x (8.7 MB, CSC, 4-bit values) and runs it at 9.73
fps on a ZCU104; its weights do not fit the device's block RAM and UltraRAM. Here:

1. :func:`sim.random_model.alexnet` (227x227x3, 5 conv + 3 fc, 1000 classes, pot4
   weights pruned to :data:`sim.random_model.ALEXNET_DENSITIES`, 4-bit activations);
2. a folding per stage, the fewest lanes whose cycle model meets ``clock / fps``
   (sparse engine, on chip or with its CSC words streamed; a dense layer streamed on
   the MVTU/shift MAC);
3. :func:`hdl.flow.weights.place_weights`: what stays on chip (90 % of BRAM+URAM bytes,
   as the seed counts memory; ``onchip_fits`` compares with block RAM, the only place a
   ROM can go, and ``rom_only_plan`` gives the cycle model of the plan held to it) and
   what streams from DDR, the bytes per frame and the bandwidth against the HP port;
   streamed CSC stages are then refolded for their streamed words (SIMD 1: relative
   column indices, :meth:`hdl.engines.sparse.SparseSpec.weight_beats`);
4. an estimate from slices: each streamed stage is simulated (Amaranth simulator, engine +
   :class:`hdl.engines.weightstream.WeightStream` + :class:`sim.ddr.DdrModel` with the
   ZCU104 port's latency and bandwidth, outputs checked bit-exact against
   ``sim.golden``) on a *slice* of output rows with the full input width (at least
   ``--slice-rows``; a sparse slice has enough rows that its words, not its input beats,
   set its pace), and its cycles per frame extrapolated by the cycle model's ratio of
   the whole stage to the slice; stages on chip count with their cycle model;
5. resources: the whole generated top (``AxiTop`` around ``Network``, AXI shell, FIFOs
   and weight masters included) through Yosys ``synth_xilinx``, from Amaranth's RTLIL
   (the megabytes of ROM initialisation as Verilog statements take Yosys past its
   memory), in parts (:func:`hdl.flow.synth.synthesize_parts`: the whole design in one
   run is past yowasp's 4 GiB too): each compute stage alone and the rest of the top with
   the stages as black boxes, summed, cached; ``fits`` against the board's LUT, FF,
   BRAM18, URAM and DSP, ``stage_resources`` the parts. ``--no-synth`` leaves them null.
   ``onchip_fits`` compares the weight bytes on chip with the block RAM share only;
6. measured cycles of the whole generated top: ``--frames`` (2) random frames back to
   back through it in Verilator (:func:`bench.networks.measure_top`), every weight
   master served by the DDR model at the ZCU104 port's latency and bandwidth, the scores
   equal to ``sim.golden``'s; ``cycles_measured`` is the interval between the ends of
   the last two frames, and ``fps`` follows it. Step 4's estimate stays beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from bench import command, generator_version
from bench.networks import measure_top
from boards.zcu104 import ZCU104Platform
from hdl import ir
from hdl.engines import shiftadd
from hdl.flow.network import Network, NetworkSpec, _divisors, plan, stage_cycles
from hdl.flow.weights import ONCHIP_WEIGHT_SHARE, ddr_bytes_per_frame, onchip_bytes, place_weights
from hdl.shell.axi import board_tdata_width
from sim import amsim, golden
from sim.ddr import DdrModel, port_timing
from sim.random_model import ALEXNET_DENSITIES, alexnet

SEED_FPS = 9.73
SEED_MODEL_BYTES = 8.7e6
BASE = 0x8_0000_0000


def _log(text: str):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _lower_bound(layer, in_spec, pe, simd, dense):
    """A cheap lower bound on a stage's cycles per frame (no sparse schedule)."""
    if isinstance(layer, ir.MaxPool):
        return stage_cycles(layer, in_spec, pe, simd)
    rows, cols = layer.weights.shape
    vectors = 1
    if isinstance(layer, ir.Conv):
        h, w, _ = in_spec.shape
        k, s, p = layer.kernel, layer.stride, layer.padding
        vectors = ((h + 2 * p - k) // s + 1) * ((w + 2 * p - k) // s + 1)
    nnz = rows * cols if dense else layer.weights.nnz
    return vectors * max(cols // simd, rows // pe, nnz // (pe * simd))


def fold(model, target: int, streamed=frozenset(), stream_width: int = 128) -> dict:
    """Per stage the fewest lanes whose cycles meet ``target`` (ties: larger SIMD, or the
    smaller on the sparse engine); max-pools keep the previous lanes where they divide."""
    from hdl.flow.network import _groups
    folding, prev = {}, 1
    for layer, threshold, in_spec, out_spec in _groups(model):
        h, w, c = in_spec.shape
        if isinstance(layer, ir.MaxPool):
            lanes = math.gcd(prev, c)
            while stage_cycles(layer, in_spec, lanes, lanes) > target:
                lanes = min(d for d in _divisors(c) if d > lanes)
            folding[layer.name] = (lanes, lanes, 1)
            continue
        dense = not layer.weights.sparse
        rows = layer.weights.shape[0]
        if layer.name in streamed:
            folding[layer.name] = (_stream_fold(layer, in_spec, target, stream_width) if dense else
                                   _sparse_stream_fold(layer, threshold, in_spec, out_spec, target,
                                                       stream_width))
            prev = folding[layer.name][0]
            continue
        simds = _divisors(c) if isinstance(layer, ir.Conv) else _divisors(in_spec.size)
        options = sorted(((p, s) for p in _divisors(rows) for s in simds),
                         key=lambda ps: (ps[0] * ps[1], -ps[1] if dense else ps[1]))
        choice, need = None, 0.0
        for p, s in options:
            if _lower_bound(layer, in_spec, p, s, dense) > target or p * s < need:
                continue
            if layer.name in streamed:
                choice = (p, s)          # dense: the bound is the cycle model
                break
            t0 = time.time()
            cycles = stage_cycles(layer, in_spec, p, s)
            _log(f"{layer.name}: pe {p} simd {s}: {cycles} cycles ({time.time() - t0:.0f} s)")
            if cycles <= target:
                choice = (p, s)
                break
            need = p * s * cycles / target      # skip foldings that cannot be enough
        if choice is None:
            choice = max(options, key=lambda ps: ps[0] * ps[1])
        folding[layer.name] = (*choice, 1)
        prev = choice[0]
    return {name: {"pe": f[0], "simd": f[1], **({"weights": "ddr", "ddr_ports": f[2]} if name in streamed else {})}
            for name, f in folding.items()}


def weight_bits(layer) -> int:
    """Stored bits per weight on the dense engine (as ``MVTUSpec.weight_bits``)."""
    w = layer.weights
    if w.kind != "pot":
        return w.bits
    values = w.values if w.sparse else w.dense[w.dense != 0]
    e = np.log2(np.abs(values)).round().astype(np.int64)
    return 1 + shiftadd.code_fields(int(e.max() - e.min() + 1))[0]


def _stream_fold(layer, in_spec, target: int, width: int) -> tuple[int, int, int]:
    """``(pe, simd, ddr_ports)`` of a streamed FC stage whose compute cycles and words
    per port and pass meet ``target``: the fewest DDR ports, then the fewest DDR words
    (beats that fill their slots), then the fewest lanes."""
    rows, cols = layer.weights.shape
    wb = weight_bits(layer)
    best = None
    for p in _divisors(rows):
        for s in _divisors(in_spec.size):
            beats = (rows // p) * (cols // s)
            if beats > target:
                continue
            for ports in (d for d in _divisors(p) if d <= 4):
                part = p // ports * s * wb
                if part <= width:
                    words = -(-beats // (width // (1 << (part - 1).bit_length())))
                else:
                    words = beats * -(-part // width)
                if words <= target:
                    key = (ports, words * ports, p * s, -s)     # least slot padding, then lanes
                    if best is None or key < best[0]:
                        best = (key, (p, s, ports))
                    break
    if best is None:
        raise ValueError(f"layer '{layer.name}': no streamed folding meets {target} cycles")
    return best[1]


def _sparse_stream_fold(layer, threshold, in_spec, out_spec, target: int, width: int) -> tuple[int, int, int]:
    """``(pe, simd, ddr_ports)`` of a streamed CSC stage: the smallest SIMD (1: relative
    column indices, the narrowest words) whose input beats meet ``target`` cycles per
    frame, the fewest PEs whose streamed words do, and the fewest DDR ports (dividing PE)
    whose words per pass do too."""
    from dataclasses import replace

    from hdl.flow.network import Stage
    rows, cols = layer.weights.shape
    nnz = layer.weights.nnz
    for s in _divisors(cols):
        if cols // s > target:
            continue
        for p in _divisors(rows):
            if nnz / (p * s) > target:
                continue
            t0 = time.time()
            stage = Stage(name=layer.name, op=layer.op, layer=layer, threshold=threshold, in_spec=in_spec,
                          out_spec=out_spec, pe=p, simd=s, weights="ddr", ddr_width=width)
            compute = stage.vectors_per_frame * stage.compute.cycles_per_vector
            _log(f"{layer.name}: streamed CSC pe {p} simd {s}: {compute} cycles ({time.time() - t0:.0f} s)")
            if compute > target:
                continue
            for ports in (d for d in _divisors(p) if d <= 4):
                cand = stage if ports == 1 else replace(stage, ddr_ports=ports)
                cand.__dict__["compute"] = stage.compute          # the same words, split by PE
                if cand.cycles_per_frame <= target:
                    return p, s, ports
    raise ValueError(f"layer '{layer.name}': no streamed CSC folding meets {target} cycles")


def slice_rows_for(stage, rows: int) -> int:
    """Rows of the slice of ``stage`` to simulate: a multiple of ``lcm(rows, pe)``; for
    the sparse engine doubled until the busiest PE's non-zeros in it reach its input beats
    (so that the slice runs at the pace of its words, as the whole stage does)."""
    step = math.lcm(rows, stage.pe)
    rows = step
    total = stage.layer.weights.shape[0]
    if stage.engine == "sparse":
        per_row = np.count_nonzero(stage.layer.weights.matrix(), axis=1)
        beats = stage.layer.weights.shape[1] // stage.simd
        while rows < total and max(per_row[p:rows:stage.pe].sum() for p in range(stage.pe)) < beats:
            rows = min(total, 2 * rows)
    return rows


def measure_slice(stage, rows: int, *, board, frames: int = 3, seed: int = 0) -> dict:
    """Simulate ``rows`` output rows (full input width) of a streamed FC stage as a
    one-stage :class:`hdl.flow.network.Network` at the stage's folding and DDR ports, each
    port served by a :class:`sim.ddr.DdrModel` at the board's latency and bandwidth;
    scores checked bit-exact against ``sim.golden``; cycles per vector in steady state
    (between the last two frame ends), extrapolated to the whole stage by the cycle
    model's ratio (whole stage over slice; by rows for a dense stage)."""
    layer = stage.layer
    cols = layer.weights.shape[1]
    sub = layer.weights.matrix()[:rows]
    fc = ir.FC(name="slice", out_features=rows,
               weights=ir.Weights.from_matrix(sub, layer.weights.kind, layer.weights.bits,
                                              sparse=layer.weights.sparse))
    model = ir.Model(name="slice", input=ir.InputSpec(shape=(1, 1, cols), bits=stage.in_spec.bits, scale=1.0),
                     layers=[fc], classes=[str(k) for k in range(rows)]).validate("slice")
    net = Network(model, {"slice": {"pe": stage.pe, "simd": stage.simd, "weights": "ddr",
                                    "ddr_ports": stage.ddr_ports}})
    image = net.spec.weight_image()
    latency, bpc = port_timing(board)
    ddrs = [DdrModel(image, base=BASE, data_width=ws.data_width, latency=latency, bytes_per_cycle=bpc)
            for _, _, ws in net.spec.streamers]
    codes = np.random.default_rng(seed).integers(0, 1 << stage.in_spec.bits, size=(frames, 1, 1, cols))
    beats = codes.reshape(-1, stage.simd)
    per_frame = rows // stage.pe
    got, ends = [], []

    async def source(ctx):
        ctx.set(net.weight_base, BASE)
        ctx.set(net.weight_enable, 1)
        await amsim.feed(ctx, net.i, beats, rng=seed, gap=0)

    async def sink(ctx):
        cycles = []
        got.extend(await amsim.drain(ctx, net.o, frames * per_frame, rng=seed + 1, stall=0, seed=seed,
                                     max_cycles=20 * frames * (net.spec.streamers[0][2].words + cols) + 10_000,
                                     cycles=cycles))
        ends.extend(cycles[per_frame - 1::per_frame])

    sim = Simulator(net)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    for k, ddr in enumerate(ddrs):
        async def memory(ctx, ddr=ddr, port=getattr(net, f"w{k}")):
            await ddr.run(ctx, port)
        sim.add_testbench(memory, background=True)
    t0 = time.time()
    sim.run()
    exact = bool(np.array_equal(np.array(got).reshape(frames, rows), golden.run(model, codes)))
    per_vector = ends[-1] - ends[-2]
    s0 = net.spec.stages[0]
    return {"stage": stage.name, "rows": rows, "of_rows": layer.weights.shape[0],
            "pe": stage.pe, "simd": stage.simd, "ddr_ports": stage.ddr_ports, "bit_exact": exact,
            "cycles_per_vector_slice": per_vector, "model_cycles_slice": s0.cycles_per_frame,
            "ddr_bytes_slice": sum(ws.pass_bytes for _, _, ws in net.spec.streamers),
            "cycles_per_frame_extrapolated": per_vector * stage.cycles_per_frame / s0.cycles_per_frame,
            "ddr_latency_cycles": latency, "port_bytes_per_cycle": bpc,
            "sim_seconds": round(time.time() - t0, 1)}


def synthesize_top(spec: NetworkSpec, board, *, timeout: float, workers: int = 2, progress=_log) -> dict:
    """Yosys figures of the whole generated top of ``spec`` on ``board`` (see the module
    docstring, step 5): one run per compute stage and one for the rest of the top, summed."""
    from hdl.flow.build import synthesize_in_parts
    t0 = time.time()
    stages = [s.name for s in spec.stages if s.compute is not None]
    progress(f"Yosys ({board.synth_family}) on {len(stages)} stages and the rest, {workers} at a time")

    def done(name, result):
        progress(f"synthesised {name}: {result.resources()}, "
                 f"{result.logic_levels} levels{' (cached)' if result.cached else ''}")
    try:
        parts, result = synthesize_in_parts(spec, board, stages=stages, workers=workers, progress=done,
                                            timeout=timeout)
    except RuntimeError as exc:         # keep the run's other figures; say why these are missing
        reason = " ".join(str(exc).split())[:300]
        return {"lut": None, "ff": None, "bram18": None, "uram": None, "dsp": None, "fits": None,
                "resources_note": f"Yosys failed after {time.time() - t0:.0f} s: {reason}"}
    cap = board.capacity.as_dict()
    figures = result.resources()
    over = {k: (v, cap[k]) for k, v in figures.items() if v > cap[k]}
    breakdown = {name: {**r.resources(), "lut_memory": r.lut_memory, "logic_levels": r.logic_levels}
                 for name, r in parts.items()}
    return {**figures, "lut_memory": result.lut_memory, "logic_levels": result.logic_levels,
            "fits": not over, "over_capacity": {k: {"used": v, "capacity": c} for k, (v, c) in over.items()},
            "resources_note": (
                "Yosys synth_xilinx on the whole generated top in parts (one design is past "
                "yowasp's 4 GiB): each compute stage as a design of its own, and the rest of the "
                "top (AXI shell, FIFOs, width converters, max-pools, weight masters) with the "
                "stages as black boxes; figures summed; logic levels the deepest part's (paths "
                "across a stage's ports left out)"),
            "stage_resources": breakdown,
            "synth_seconds": round(time.time() - t0, 1),
            "synth_cached": all(r.cached for r in parts.values())}


def run(fps_target: float, slice_rows: int, board=ZCU104Platform, *, synth_timeout: float | None = None,
        frames: int = 2) -> dict:
    """The benchmark (module docstring); ``synth_timeout`` None skips step 5, ``frames`` 0
    step 6."""
    t0 = time.time()
    model = alexnet(seed=0)
    _log("model built")
    mhz = board.default_clock_mhz
    target = int(mhz * 1e6 / fps_target)
    folding = fold(model, target)
    stages = plan(model, folding)
    rom_budget = int(ONCHIP_WEIGHT_SHARE * board.onchip_weight_bytes())
    # The seed counts block RAM and UltraRAM as weight memory; ROMs fit block RAM only.
    budget = int(ONCHIP_WEIGHT_SHARE * (board.onchip_weight_bytes() + board.uram_bytes()))
    rom_only = place_weights(stages, board, budget_bytes=rom_budget)
    wp = place_weights(stages, board, budget_bytes=budget)
    streamed = {s.name for s in wp.stages if s.streamed}
    _log(f"first placement: streamed {sorted(streamed)}")
    if streamed:                                      # refold the streamed stages for their words
        again = fold(model, target, streamed, board.hp_data_width)
        folding = {k: again[k] if k in streamed else v for k, v in folding.items()}
        stages = plan(model, folding)
        wp = place_weights(stages, board, budget_bytes=budget)
    _log(f"placement: streamed {[s.name for s in wp.stages if s.streamed]}")
    layers = {}
    for s in wp.stages:
        if s.compute is None:
            continue
        nnz = s.layer.weights.nnz
        layers[s.name] = {"pe": s.pe, "simd": s.simd, "engine": s.engine, "weights": s.weights,
                          "density_planned": ALEXNET_DENSITIES[s.name],
                          "density": round(nnz / math.prod(s.layer.weights.shape), 4),
                          "onchip_bytes": onchip_bytes(s), "ddr_bytes_per_frame": ddr_bytes_per_frame(s),
                          "cycles_per_frame_model": s.cycles_per_frame}
        if s.streamed:
            c, ws = s.compute, s.weight_stream
            layers[s.name].update(ddr_ports=s.ddr_ports, pe_word_bits=c.weight_bits,
                                  beat_bits=ws.beat_bits, slot_bits=ws.slot, beats_per_vector=ws.beats)
            if s.engine == "sparse":
                layers[s.name].update(
                    value_bits=c.value_bits, index_bits=c.lane_width - c.value_bits,
                    column_index="relative" if c.delta_bits is not None else "absolute",
                    zero_entries=c.padding, nonzeros=c.nnz,
                    stream_bits_per_nonzero=round(ws.pass_bytes * 8 / c.nnz, 2))
    slices = []
    for s in wp.stages:
        if s.streamed:
            slices.append(measure_slice(s, slice_rows_for(s, slice_rows), board=board))
            _log(f"slice {s.name}: {slices[-1]}")
    resources = {"lut": None, "ff": None, "bram18": None, "uram": None, "dsp": None, "fits": None,
                 "resources_note": "not synthesised (--no-synth)"}
    whole = None
    spec = NetworkSpec(model, folding, axis_width=board_tdata_width(board), ddr_width=board.hp_data_width)
    with ThreadPoolExecutor(2) as pool:       # Yosys and Verilator run side by side
        synth_job = (pool.submit(synthesize_top, spec, board, timeout=synth_timeout)
                     if synth_timeout is not None else None)
        if frames:
            _log(f"simulating the whole top: {frames} frames")
            whole = measure_top(spec, frames, board=board, name="alexnet_top")
            _log(f"whole top: {whole}")
        if synth_job is not None:
            resources = synth_job.result()
            _log(f"whole design: {resources}")
    measured = {sl["stage"]: sl["cycles_per_frame_extrapolated"] for sl in slices}
    ddr_cycles = math.ceil(wp.ddr_bytes_per_frame / (wp.available_bytes_per_s / (mhz * 1e6)))
    per_stage = {s.name: measured.get(s.name, s.cycles_per_frame) for s in wp.stages}
    estimate = max(max(per_stage.values()), ddr_cycles)
    slowest = max(per_stage, key=per_stage.get)
    cycles = whole["cycles"] if whole else estimate
    fps = mhz * 1e6 / cycles
    nonzeros = sum(round(v["density"] * math.prod(s.layer.weights.shape))
                   for s in wp.stages if s.compute is not None for v in [layers[s.name]])
    params = sum(math.prod(s.layer.weights.shape) for s in wp.stages if s.compute is not None)
    return {
        "board": board.name, "clock_mhz": mhz, "model": model.name, "fps_target": fps_target,
        "fps": round(fps, 2), "fps_vs_seed": round(fps / SEED_FPS, 2),
        "cycles_per_frame": round(cycles),
        "cycles_measured": whole["cycles"] if whole else None,
        "latency_measured": whole["latency"] if whole else None,
        "cycles_measured_method": (
            f"the whole generated top (AXI shell, FIFOs, weight masters) in Verilator, {frames} "
            "random frames back to back, every weight master served by the DDR model at the "
            "board's port latency and bandwidth, scores equal to sim.golden's; cycles between "
            "the ends of the last two frames" if whole else "not simulated (--frames 0)"),
        "cycles_slices_estimate": round(estimate),
        "cycles_slices_estimate_basis": (
            f"slowest stage {slowest} ({'measured slice' if slowest in measured else 'cycle model'}): "
            "streamed stages measured on slices of rows (Amaranth sim with the DDR model, "
            "bit-exact, cycles per vector extrapolated by the cycle model's ratio of the whole "
            "stage to the slice), on-chip stages by the engines' cycle models, DDR bytes over "
            "the ports' bandwidth"),
        "cycles_model": wp.cycles_per_frame,
        "ddr_bytes_per_frame": wp.ddr_bytes_per_frame,
        "ddr_bandwidth_used": round(wp.ddr_bytes_per_frame * fps),
        "ddr_bandwidth_port": wp.available_bytes_per_s,
        "ddr_ports": wp.masters, "ddr_bandwidth_per_port": wp.port_bytes_per_s,
        "ddr_peak": wp.ddr_peak_bytes_per_s,
        "ddr_bandwidth_port_note": ("sum of the HP ports the weight masters use (one each, "
                                    "128 bits at the fabric clock), at most the DDR peak"),
        "all_slices_bit_exact": all(sl["bit_exact"] for sl in slices),
        "ddr_layout_note": ("streamed CSC stages stream the sparse engine's words, one per PE and "
                            "compute cycle: 4-bit weight code, column (SIMD 1: relative to the row's "
                            "previous entry, zero-weight fillers for longer gaps), last-of-row flag; "
                            "no row tag (layers.*: bits, fillers as zero_entries)"),
        "model_bytes": wp.onchip_bytes + wp.ddr_image_bytes,
        "model_bytes_onchip": wp.onchip_bytes, "model_bytes_ddr": wp.ddr_image_bytes,
        "seed_model_bytes": SEED_MODEL_BYTES, "plan_budget_bytes": wp.budget_bytes,
        "onchip_budget_bytes": rom_budget, "onchip_fits": wp.onchip_bytes <= rom_budget,
        "onchip_note": (
            "the plan keeps weight ROMs on chip up to 90 % of the block RAM and UltraRAM bytes "
            "(plan_budget_bytes, as the seed counts the ZCU104's memory); a ROM fits block RAM "
            "only (UltraRAM has no initial contents), whose share is onchip_budget_bytes. "
            "Weights in UltraRAM need a load-from-DDR path, not built"),
        "rom_only_plan": {
            "streamed": [s.name for s in rom_only.stages if s.streamed],
            "fps_model": round(rom_only.fps, 2), "cycles_model": rom_only.cycles_per_frame,
            "ddr_bytes_per_frame": rom_only.ddr_bytes_per_frame,
            "note": ("the same folding with the ROMs held to block RAM: the stages that must then "
                     "stream (a convolution reads its weights once per output pixel) and the "
                     "cycle model's frame rate (DDR bandwidth-bound); a prediction: no such top is generated")},
        "parameters": params, "nonzeros": nonzeros, "compression_vs_dense_params": round(params / nonzeros, 2),
        **resources,
        "layers": layers, "slices": slices, "seconds": round(time.time() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alexnet", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/alexnet.json", help="JSON result file")
    parser.add_argument("--fps", type=float, default=200.0, help="frame rate the folding targets")
    parser.add_argument("--slice-rows", type=int, default=8, help="rows per simulated slice")
    parser.add_argument("--no-synth", action="store_true", help="skip Yosys on the whole design")
    parser.add_argument("--frames", type=int, default=2,
                        help="frames through the whole top in Verilator (0: none, else at least 2)")
    parser.add_argument("--synth-timeout", type=float, default=4 * 3600, help="Yosys time limit, seconds")
    args = parser.parse_args(argv)
    if args.frames == 1 or args.frames < 0:
        parser.error(f"--frames must be 0 or at least 2, not {args.frames}")
    generators = generator_version()          # the sources as the design is built from them
    summary = run(args.fps, args.slice_rows, synth_timeout=None if args.no_synth else args.synth_timeout,
                  frames=args.frames)
    summary["command"] = command("alexnet", argv)
    summary["generators"] = generators
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    for name, row in summary["layers"].items():
        print(name, row)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("layers", "slices")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
