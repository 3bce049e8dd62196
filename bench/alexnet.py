"""Benchmark: an AlexNet-class network with weights streamed from DDR on the ZCU104 (issue 18).

    python -m bench.alexnet [--out bench/results/alexnet.json] [--fps 200] [--slice-rows 8]

Seed paper 003 compresses AlexNet 28x (8.7 MB, CSC, 4-bit values) and runs it at 9.73
fps on a ZCU104; its weights do not fit the device's block RAM and UltraRAM. Here:

1. :func:`sim.random_model.alexnet` (227x227x3, 5 conv + 3 fc, 1000 classes, pot4
   weights pruned to :data:`sim.random_model.ALEXNET_DENSITIES`, 4-bit activations);
2. a folding per stage, the fewest lanes whose cycle model meets ``clock / fps``
   (sparse engine on chip; dense MVTU/shift MAC for streamed stages);
3. :func:`hdl.flow.weights.place_weights`: what stays on chip (90 % of BRAM+URAM bytes)
   and what streams from DDR, the bytes per frame and the bandwidth against the HP port;
4. measured cycles: each streamed stage is simulated (Amaranth simulator, MVTU +
   :class:`hdl.engines.weightstream.WeightStream` + :class:`sim.ddr.DdrModel` with the
   ZCU104 port's latency and bandwidth, outputs checked bit-exact against
   ``sim.golden``) on a *slice* of ``--slice-rows`` output rows with the full input
   width, and its cycles per frame extrapolated by rows. A whole frame of the whole
   top is not simulated (millions of cycles of a design with hundreds of lanes are out
   of reach of the Python simulator in the time available); stages on chip count with
   their cycle model. The JSON says which figure is which.

Resources (``lut``, ``bram18``, ``uram``, ``dsp``, ``fits``) are not synthesised by this
benchmark (null): Yosys on the whole design was not run. ``onchip_fits`` compares the
weight bytes on chip with the budget only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from bench import command
from boards.zcu104 import ZCU104Platform
from hdl import ir
from hdl.engines.mvtu import MVTU, MVTUSpec
from hdl.engines.weightstream import WeightStream, WeightStreamSpec, weight_image
from hdl.flow.network import _divisors, plan, stage_cycles
from hdl.flow.weights import ddr_bytes_per_frame, onchip_bytes, place_weights
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
    for layer, threshold, in_spec, _ in _groups(model):
        h, w, c = in_spec.shape
        if isinstance(layer, ir.MaxPool):
            lanes = math.gcd(prev, c)
            while stage_cycles(layer, in_spec, lanes, lanes) > target:
                lanes = min(d for d in _divisors(c) if d > lanes)
            folding[layer.name] = (lanes, lanes)
            continue
        dense = layer.name in streamed or not layer.weights.sparse
        rows = layer.weights.shape[0]
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
        folding[layer.name] = choice
        prev = choice[0]
    return {name: {"pe": p, "simd": s, **({"weights": "ddr"} if name in streamed else {})}
            for name, (p, s) in folding.items()}


def measure_slice(stage, rows: int, *, board, vectors: int = 2, seed: int = 0) -> dict:
    """Simulate ``rows`` output rows (full input width) of a streamed stage with its
    folding, the WeightStream and the DDR model at the board's port timing; cycles per
    vector in steady state, checked bit-exact, and extrapolated to all rows."""
    layer = stage.layer
    m_full = layer.weights.matrix()
    sub = m_full[:rows]
    w = ir.Weights.from_matrix(sub, layer.weights.kind, layer.weights.bits)
    sl = ir.FC(name="slice", out_features=rows, weights=w)
    spec = MVTUSpec.from_layer(sl, None, in_bits=stage.in_spec.bits, pe=stage.pe, simd=stage.simd,
                               weight_source="stream")
    ws_spec = WeightStreamSpec(spec.weight_beat_layout, spec.neuron_folds * spec.synapse_folds,
                               data_width=stage.ddr_width, burst_len=stage.weight_stream.burst_len,
                               outstanding=4)
    image = weight_image(spec.weight_beats(), ws_spec)
    latency, bpc = port_timing(board)
    top = Module()
    top.submodules.mvtu = mvtu = MVTU(spec=spec)
    top.submodules.ws = ws = WeightStream(spec=ws_spec)
    wiring.connect(top, ws.o, mvtu.w)
    rng = np.random.default_rng(seed)
    cols = sub.shape[1]
    codes = rng.integers(0, 1 << stage.in_spec.bits, size=(vectors + 1, cols))
    ddr = DdrModel(image, base=BASE, data_width=stage.ddr_width, latency=latency, bytes_per_cycle=bpc)
    n_out = (vectors + 1) * spec.neuron_folds
    got, cycles = [], []

    async def control(ctx):
        ctx.set(ws.base, BASE)
        ctx.set(ws.enable, 1)
        await amsim.feed(ctx, mvtu.i, codes.reshape(-1, stage.simd), rng=seed, gap=0)

    async def sink(ctx):
        got.extend(await amsim.drain(ctx, mvtu.o, n_out, rng=seed + 1, stall=0, seed=seed,
                                     max_cycles=20 * (vectors + 1) * (ws_spec.words + cols) + 10_000,
                                     cycles=cycles))

    async def memory(ctx):
        await ddr.run(ctx, ws.axi)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(control)
    sim.add_testbench(sink)
    sim.add_testbench(memory, background=True)
    t0 = time.time()
    sim.run()
    spec_in = ir.TensorSpec(shape=(1, 1, cols), bits=stage.in_spec.bits)
    want = golden.layer_forward(sl, codes.reshape(len(codes), 1, 1, cols), spec_in).reshape(len(codes), -1)
    exact = bool(np.array_equal(np.array(got).reshape(len(codes), rows), want))
    per_vector = (cycles[-1] - cycles[spec.neuron_folds - 1]) / vectors
    return {"stage": stage.name, "rows": rows, "of_rows": layer.weights.shape[0],
            "pe": stage.pe, "simd": stage.simd, "bit_exact": exact,
            "cycles_per_vector_slice": per_vector,
            "model_cycles_slice": max(spec.cycles_per_vector, ws_spec.words),
            "ddr_bytes_slice": ws_spec.pass_bytes,
            "cycles_per_frame_extrapolated": per_vector * layer.weights.shape[0] / rows,
            "ddr_latency_cycles": latency, "port_bytes_per_cycle": bpc,
            "sim_seconds": round(time.time() - t0, 1)}


def run(fps_target: float, slice_rows: int, board=ZCU104Platform) -> dict:
    t0 = time.time()
    model = alexnet(seed=0)
    _log("model built")
    mhz = board.default_clock_mhz
    target = int(mhz * 1e6 / fps_target)
    folding = fold(model, target)
    stages = plan(model, folding)
    wp = place_weights(stages, board)
    streamed = {s.name for s in wp.stages if s.streamed}
    _log(f"first placement: streamed {sorted(streamed)}")
    if streamed:                                      # refold the streamed stages as dense
        dense = fold(model, target, streamed, board.hp_data_width)
        folding = {k: dense[k] if k in streamed else v for k, v in folding.items()}
        stages = plan(model, folding)
        wp = place_weights(stages, board)
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
    slices = [measure_slice(s, math.lcm(slice_rows, s.pe), board=board) for s in wp.stages if s.streamed]
    measured = {sl["stage"]: sl["cycles_per_frame_extrapolated"] for sl in slices}
    cycles = max([measured.get(s.name, s.cycles_per_frame) for s in wp.stages]
                 + [math.ceil(wp.ddr_bytes_per_frame / wp.port_bytes_per_cycle)])
    fps = mhz * 1e6 / cycles
    nonzeros = sum(round(v["density"] * math.prod(s.layer.weights.shape))
                   for s in wp.stages if s.compute is not None for v in [layers[s.name]])
    params = sum(math.prod(s.layer.weights.shape) for s in wp.stages if s.compute is not None)
    return {
        "board": board.name, "clock_mhz": mhz, "model": model.name, "fps_target": fps_target,
        "fps": round(fps, 2), "fps_vs_seed": round(fps / SEED_FPS, 2),
        "cycles_measured": round(cycles),
        "cycles_measured_method": ("max over stages: streamed stages simulated on a slice of rows "
                                   "(Amaranth sim, DDR model at the board's port timing) and "
                                   "extrapolated by rows; on-chip stages by the cycle model; not a "
                                   "whole-frame simulation of the top"),
        "cycles_model": wp.cycles_per_frame,
        "ddr_bytes_per_frame": wp.ddr_bytes_per_frame,
        "ddr_bandwidth_used": round(wp.ddr_bytes_per_frame * fps),
        "ddr_bandwidth_port": wp.port_bytes_per_s,
        "model_bytes": wp.onchip_bytes + wp.ddr_image_bytes,
        "model_bytes_onchip": wp.onchip_bytes, "model_bytes_ddr": wp.ddr_image_bytes,
        "seed_model_bytes": SEED_MODEL_BYTES, "onchip_budget_bytes": wp.budget_bytes,
        "onchip_fits": wp.onchip_bytes <= wp.budget_bytes,
        "parameters": params, "nonzeros": nonzeros, "compression_vs_dense_params": round(params / nonzeros, 2),
        "lut": None, "bram18": None, "uram": None, "dsp": None, "fits": None,
        "resources_note": "not synthesised (Yosys on the whole design not run)",
        "layers": layers, "slices": slices, "seconds": round(time.time() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.alexnet", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/results/alexnet.json", help="JSON result file")
    parser.add_argument("--fps", type=float, default=200.0, help="frame rate the folding targets")
    parser.add_argument("--slice-rows", type=int, default=8, help="rows per simulated slice")
    args = parser.parse_args(argv)
    summary = run(args.fps, args.slice_rows)
    summary["command"] = command("alexnet", argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    for name, row in summary["layers"].items():
        print(name, row)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("layers", "slices")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
