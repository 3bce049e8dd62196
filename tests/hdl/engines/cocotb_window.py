"""cocotb side of the Verilator tests of SlidingWindow and MaxPool
(tests/hdl/engines/test_window.py, tests/hdl/engines/test_pool.py).

Parameters: ``kind`` ("window" or "maxpool"), ``height``, ``width``, ``channels``,
``kernel``, ``stride``, ``padding``, ``pad_value`` (window only), ``bits``, ``lanes``,
``frames``. Every seed draws its own frames of random codes and its own gap and stall
probabilities; the expected stream comes from the golden model (``sim.golden``). A
second test runs free-running and reports the cycles per frame.
"""

import random

import cocotb
import numpy as np

from sim import golden
from sim.beats import compare, pack, unpack
from sim.harness import params, report, seed
from sim.streams import StreamSink, StreamSource, reset, start_clock


def _frames_and_expected(p, rng):
    codes = rng.integers(0, 1 << p["bits"], size=(p["frames"], p["height"], p["width"],
                                                   p["channels"]))
    if p["kind"] == "window":
        want = golden.im2col(codes, p["kernel"], p["stride"], p["padding"], p["pad_value"])
    else:
        want = golden.maxpool(codes, p["kernel"], p["stride"])
    lanes = p["lanes"]
    return codes.reshape(-1, lanes), np.asarray(want).reshape(-1, lanes)


async def _run(dut, p, s, gap, stall, free):
    start_clock(dut)
    await reset(dut)
    rng = np.random.default_rng(s)
    inputs, want = _frames_and_expected(p, rng)
    bits, lanes = p["bits"], p["lanes"]
    src = StreamSource(dut, "i", seed=s + 1, gap_prob=gap, free_running=free)
    sink = StreamSink(dut, "o", seed=s + 2, stall_prob=stall, free_running=free)
    cocotb.start_soon(src.send(pack(row, bits, lanes) for row in inputs.tolist()))
    words = await sink.receive(len(want), timeout_cycles=30 * (len(want) + len(inputs)) + 200)
    compare([unpack(w, bits, lanes) for w in words], want, seed=s, what=p["kind"])
    await sink.expect_done()
    return src, sink, len(inputs), len(want)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def stalls(dut):
    """Random input gaps and output stalls, probabilities drawn per seed."""
    p = params()
    s = seed()
    dut._log.info("%s: seed %d (replay with QNN_SEED=%d)", p["kind"], s, s)
    rng = random.Random(s)
    gap, stall = rng.choice([0.0, 0.2, 0.6]), rng.choice([0.0, 0.2, 0.6])
    await _run(dut, p, s, gap, stall, free=False)
    report(gap=gap, stall=stall)


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def free_running(dut):
    """Free-running source and sink: report cycles from first input to last output."""
    p = params()
    s = seed()
    src, sink, n_in, n_out = await _run(dut, p, s, 0.0, 0.0, free=True)
    report(cycles=sink.last_cycle - src.first_cycle + 1, in_beats=n_in, out_beats=n_out,
           frames=p["frames"])
