"""cocotb side of the Verilator test of the sparse CSC engine (``tests/hdl/test_sparse.py``).

Parameters: the IR's CSC weights (``kind``, ``wbits``, ``shape``, ``values``, ``rows``,
``colptr``), ``in_bits``, ``pe``, ``simd``, ``thresholds`` (array, or absent for scores),
``bias`` (array or absent), ``out_bits`` and ``out_signed`` (the output lane shape),
``vectors`` (per seed). Every seed draws its own input vectors and its own gap and stall
probabilities; expected outputs come from the golden model (``sim.golden``) on an
``ir.FC`` with the same CSC weights. A second test runs free-running and reports the
cycles of the first and last output beats.
"""

import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hdl import ir
from sim import golden
from sim.harness import params, report, seed
from sim.streams import StreamSink, StreamSource, pack, reset, start_clock, unpack


def _weights(p) -> ir.Weights:
    return ir.Weights(kind=p["kind"], bits=int(p["wbits"]), shape=tuple(int(v) for v in p["shape"]),
                      values=p["values"], rows=p["rows"], colptr=p["colptr"])


def _expected(p, codes):
    w = _weights(p)
    bias = p.get("bias")
    layer = ir.FC(name="fc", out_features=w.shape[0], weights=w,
                  bias=None if bias is None else np.asarray(bias, np.int64))
    spec = ir.TensorSpec(shape=(1, 1, w.shape[1]), bits=p["in_bits"])
    acc = np.asarray(golden.layer_forward(layer, codes.reshape(len(codes), 1, 1, -1), spec))
    acc = acc.reshape(len(codes), w.shape[0])
    if p.get("thresholds") is not None:
        return np.asarray(golden.threshold(acc, p["thresholds"]), np.int64)
    return acc


async def _run(dut, p, s, gap, stall, free):
    start_clock(dut)
    await reset(dut)
    rng = np.random.default_rng(s)
    outputs, inputs = (int(v) for v in p["shape"])
    codes = rng.integers(0, 1 << p["in_bits"], size=(p["vectors"], inputs))
    codes[0] = (1 << p["in_bits"]) - 1
    codes[1] = 0
    want = _expected(p, codes).reshape(-1, p["pe"])
    src = StreamSource(dut, "i", seed=s + 1, gap_prob=gap, free_running=free)
    sink = StreamSink(dut, "o", seed=s + 2, stall_prob=stall, free_running=free)
    beats = codes.reshape(-1, p["simd"])
    cocotb.start_soon(src.send(pack(row, p["in_bits"], p["simd"]) for row in beats.tolist()))
    folds = outputs // p["pe"]
    timeout = 20 * p["vectors"] * (p["cycles_per_vector"] + folds + len(beats)) + 200
    words = await sink.receive(len(want), timeout_cycles=timeout)
    got = np.array([unpack(w, p["out_bits"], p["pe"], signed=p["out_signed"]) for w in words])
    bad = np.argwhere(got != want)
    if len(bad):
        k = int(bad[0][0])
        raise AssertionError(f"seed {s}: vector {k // folds} fold {k % folds}: got "
                             f"{got[k].tolist()}, expected {want[k].tolist()}")
    for _ in range(5):
        await RisingEdge(dut.clk)
    sink.check()
    assert sink.pending == 0, f"seed {s}: {sink.pending} unexpected extra beats"
    return src, sink


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def stalls(dut):
    """Random input gaps and output stalls, probabilities drawn per seed."""
    p = params()
    s = seed()
    dut._log.info("sparse: seed %d (replay with QNN_SEED=%d)", s, s)
    rng = random.Random(s)
    gap, stall = rng.choice([0.0, 0.3, 0.7]), rng.choice([0.0, 0.3, 0.7])
    await _run(dut, p, s, gap, stall, free=False)
    report(gap=gap, stall=stall)


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def free_running(dut):
    """Free-running source and sink: report the cycles of the first and last output."""
    p = params()
    s = seed()
    src, sink = await _run(dut, p, s, 0.0, 0.0, free=True)
    report(first_in=src.first_cycle, first_out=sink.first_cycle, last_out=sink.last_cycle,
           vectors=p["vectors"])
