"""Shared cocotb side of the Verilator tests of the FC engines (``cocotb_mvtu``,
``cocotb_sparse``).

Every seed draws its own input vectors (the first all ones, the second all zeros, so the
accumulators reach their range ends) and its own gap and stall probabilities; expected
outputs come from the golden model (``sim.golden``) on an ``ir.FC`` with the engine's
weights, thresholded if the parameters carry ``thresholds``.
"""

import random

import cocotb
import numpy as np

from hdl import ir
from sim import golden
from sim.beats import compare, pack, unpack
from sim.harness import params, report, seed
from sim.streams import StreamSink, StreamSource, reset, start_clock


def fc_expected(p, w: ir.Weights, codes):
    """Golden outputs (vectors, outputs) of an FC layer with weights ``w``, the ``bias``
    of ``p`` and, if present, its ``thresholds``."""
    bias = p.get("bias")
    layer = ir.FC(name="fc", out_features=w.shape[0], weights=w,
                  bias=None if bias is None else np.asarray(bias, np.int64))
    spec = ir.TensorSpec(shape=(1, 1, w.shape[1]), bits=p["in_bits"])
    acc = np.asarray(golden.layer_forward(layer, codes.reshape(len(codes), 1, 1, -1), spec))
    acc = acc.reshape(len(codes), w.shape[0])
    if p.get("thresholds") is not None:
        return np.asarray(golden.threshold(acc, p["thresholds"]), np.int64)
    return acc


async def run_engine(dut, p, s, gap, stall, free, *, weights: ir.Weights, timeout_cycles):
    """Send ``p["vectors"]`` random vectors through the engine and compare every output
    beat with :func:`fc_expected`; ``timeout_cycles(in_beats, folds, out_beats)`` bounds
    the wait. Returns the source and sink (for their cycle counts)."""
    start_clock(dut)
    await reset(dut)
    rng = np.random.default_rng(s)
    outputs, inputs = weights.shape
    codes = rng.integers(0, 1 << p["in_bits"], size=(p["vectors"], inputs))
    codes[0] = (1 << p["in_bits"]) - 1
    codes[1] = 0
    want = fc_expected(p, weights, codes).reshape(-1, p["pe"])
    src = StreamSource(dut, "i", seed=s + 1, gap_prob=gap, free_running=free)
    sink = StreamSink(dut, "o", seed=s + 2, stall_prob=stall, free_running=free)
    beats = codes.reshape(-1, p["simd"])
    cocotb.start_soon(src.send(pack(row, p["in_bits"], p["simd"]) for row in beats.tolist()))
    folds = outputs // p["pe"]
    words = await sink.receive(len(want), timeout_cycles=timeout_cycles(len(beats), folds, len(want)))
    got = [unpack(w, p["out_bits"], p["pe"], signed=p["out_signed"]) for w in words]
    compare(got, want, seed=s, what="output",
            label=lambda k: f"vector {k // folds} fold {k % folds}")
    await sink.expect_done()
    return src, sink


async def stalls(dut, name, run):
    """Body of the ``stalls`` test: ``run(dut, p, s, gap, stall, free)`` with gap and
    stall probabilities drawn per seed."""
    p = params()
    s = seed()
    dut._log.info("%s: seed %d (replay with QNN_SEED=%d)", name, s, s)
    rng = random.Random(s)
    gap, stall = rng.choice([0.0, 0.3, 0.7]), rng.choice([0.0, 0.3, 0.7])
    await run(dut, p, s, gap, stall, free=False)
    report(gap=gap, stall=stall)


async def free_running(dut, run):
    """Body of the ``free_running`` test: reports the cycles of the first input and the
    first and last output."""
    p = params()
    s = seed()
    src, sink = await run(dut, p, s, 0.0, 0.0, free=True)
    report(first_in=src.first_cycle, first_out=sink.first_cycle, last_out=sink.last_cycle,
           vectors=p["vectors"])
