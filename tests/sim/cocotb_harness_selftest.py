"""cocotb side of tests/sim/test_harness.py: drives the harness's self-test DUTs.

``stream_adder`` (and ``stream_adder_again``, the same in a second test of the same
simulation): each output lane of ``SkidAdder`` (see test_harness.py) must equal
the input lane plus one. Parameters: ``bits``, ``lanes``, ``n``, ``mode`` (fault
selector), ``gap_prob``, ``stall_prob``, ``free_running``, optional ``vectors`` array
(n, lanes) of inputs.

``axis_frames``: an AXI-Stream pass-through (Verilog) must return every frame
unchanged with TLAST on the last beat, through the cocotbext-axi agents of
``sim.backend`` with random gaps and stalls. Parameters: ``frames`` (list of lengths),
``width``.

``hang``: never finishes (checks ``timeout_s``).
"""

import random

import cocotb
from cocotb.triggers import Timer

from sim.backend import AxisChecker, axis_sink, axis_source
from sim.beats import pack, unpack
from sim.harness import params, report, seed
from sim.streams import StreamMonitor, StreamSink, StreamSource, reset, start_clock


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def stream_adder(dut):
    s = seed()
    dut._log.info("stream_adder: seed %d (replay with QNN_SEED=%d)", s, s)
    await _stream_adder(dut, s)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def stream_adder_again(dut):
    """A second test in the same simulation: clock loops must hand over cleanly."""
    s = seed()
    dut._log.info("stream_adder_again: seed %d (+1000) (replay with QNN_SEED=%d)", s, s)
    await _stream_adder(dut, s + 1000)


async def _stream_adder(dut, s):
    p = params()
    bits, lanes, n = p["bits"], p["lanes"], p["n"]
    if "mode" in p:
        dut.mode.value = p["mode"]
    start_clock(dut)
    await reset(dut)
    rng = random.Random(s)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if "vectors" in p:      # an array parameter (travels through the .npz)
        vectors = p["vectors"].tolist()
        assert len(vectors) == n
    else:
        vectors = [[rng.randint(lo, hi) for _ in range(lanes)] for _ in range(n)]
    free = p.get("free_running", False)
    src = StreamSource(dut, "i", seed=s + 1, gap_prob=p.get("gap_prob", 0.3),
                       free_running=free)
    sink = StreamSink(dut, "o", seed=s + 2, stall_prob=p.get("stall_prob", 0.3),
                      free_running=free)
    monitor = StreamMonitor(dut, "o")      # passive twin of the sink
    try:                                   # words that do not fit are refused up front
        await src.send([1 << (bits * lanes)])
    except ValueError as e:
        assert f"does not fit in i__payload ({bits * lanes} bits" in str(e), str(e)
    else:
        raise AssertionError("an oversized payload word was accepted")
    cocotb.start_soon(src.send(pack(v, bits, lanes) for v in vectors))
    words = await sink.receive(n, timeout_cycles=20 * n + 100)
    got = [unpack(w, bits + 1, lanes, signed=True) for w in words]
    for k, (v, g) in enumerate(zip(vectors, got)):
        want = [x + 1 for x in v]
        assert g == want, f"seed {s}: beat {k}: got {g}, expected {want} (input {v})"
    await sink.expect_done()               # nothing extra may come out
    assert await monitor.receive(n) == words, f"seed {s}: the monitor saw other beats"
    assert monitor.pending == 0 and monitor.last_cycle == sink.last_cycle
    report(first_in=src.first_cycle, first_out=sink.first_cycle,
           last_out=sink.last_cycle, beats=n)


@cocotb.test(timeout_time=2, timeout_unit="ms")
async def axis_frames(dut):
    p = params()
    s = seed()
    dut._log.info("axis_frames: seed %d (replay with QNN_SEED=%d)", s, s)
    width = p["width"]
    start_clock(dut)
    await reset(dut)
    rng = random.Random(s)
    frames = [[rng.getrandbits(width) for _ in range(length)] for length in p["frames"]]
    src = axis_source(dut, "s_axis", seed=s + 1, gap_prob=0.3, byte_size=width)
    sink = axis_sink(dut, "m_axis", seed=s + 2, stall_prob=0.3, byte_size=width)
    checker = AxisChecker(dut, "m_axis")
    for frame in frames:
        await src.send(frame)
    for k, frame in enumerate(frames):
        await sink.wait(10 * (20 * len(frame) + 100), "ns")
        assert not sink.empty(), f"seed {s}: frame {k} did not arrive"
        got = list(sink.recv_nowait().tdata)
        assert got == frame, f"seed {s}: frame {k}: got {got}, expected {frame}"
    checker.check()
    assert len(checker.ends) == len(frames)
    report(frames=len(frames), last_out=checker.ends[-1])


@cocotb.test()
async def hang(dut):
    """Never ends: run_cocotb's wall-clock timeout must kill it."""
    dut._log.info("hang: seed %d", seed())
    while True:
        await Timer(1, "us")
