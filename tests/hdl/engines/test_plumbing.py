"""StreamFIFO, RegisterSlice and WidthConverter: order preserved under random input gaps and
output stalls."""

import gc

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from hdl.engines.plumbing import (RegisterSlice, StreamFIFO, StreamFIFOSpec, WidthConverter,
                                  WidthConverterSpec)
from sim import amsim
from sim.streams import unpack


@pytest.fixture(autouse=True)
def _collect_unused():
    """Collect garbage inside each test, so that an elaboratable left unused would warn
    in the test that made it."""
    yield
    gc.collect()


def run_stream(dut, in_beats, n_out, seed, gap=0.3, stall=0.3):
    """``sim.amsim.simulate`` with raw payloads; returns (payloads, cycle of the last
    output transfer)."""
    got, cycles = amsim.simulate(dut, in_beats, n_out, seed=seed, gap=gap, stall=stall, raw=True)
    return got, cycles[-1]


def frame_beats(rng, elements, in_lanes, high):
    """Input beats of frames (rows of ``elements``), each frame's last beat filled up
    with random garbage below ``high`` past its elements."""
    frame = elements.shape[1]
    beats = -(-frame // in_lanes)
    in_beats = []
    for f in elements:
        padded = np.concatenate([f, rng.integers(0, high, size=beats * in_lanes - frame)])
        in_beats += padded.reshape(beats, in_lanes).tolist()
    return in_beats


@pytest.mark.parametrize("depth", [1, 2, 5, 16])
@pytest.mark.parametrize("seed", [1, 2])
def test_fifo_order(depth, seed):
    layout = data.ArrayLayout(unsigned(3), 2)
    dut = StreamFIFO(layout, depth)
    values = np.random.default_rng(seed).integers(0, 8, size=(60, 2))
    got, _ = run_stream(dut, values.tolist(), len(values), seed, gap=0.4, stall=0.4)
    assert [unpack(v, 3, 2) for v in got] == values.tolist(), f"seed {seed}"


def test_fifo_plain_shape_and_throughput():
    dut = StreamFIFO(unsigned(8), 4)
    values = list(range(100))
    got, cycles = run_stream(dut, values, len(values), seed=0, gap=0, stall=0)
    assert got == values
    assert cycles <= len(values) + 3, cycles


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_register_slice_order(seed):
    dut = RegisterSlice(data.ArrayLayout(unsigned(3), 2))
    values = np.random.default_rng(seed).integers(0, 8, size=(80, 2))
    got, _ = run_stream(dut, values.tolist(), len(values), seed, gap=0.4, stall=0.4)
    assert [unpack(v, 3, 2) for v in got] == values.tolist(), f"seed {seed}"


def test_register_slice_throughput_and_registered_ready():
    """One beat per cycle; ``i.ready`` does not follow ``o.ready`` within a cycle."""
    dut = RegisterSlice(unsigned(8))
    values = list(range(100))
    got, cycles = run_stream(dut, values, len(values), seed=0, gap=0, stall=0)
    assert got == values and cycles <= len(values) + 2, cycles
    from amaranth.sim import Simulator
    dut = RegisterSlice(unsigned(8))
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        for ready in (0, 0, 1, 0, 1):
            ctx.set(dut.o.ready, ready)
            before = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1 - ready)              # toggled within the cycle
            seen.append(ctx.get(dut.i.ready) == before)
            ctx.set(dut.o.ready, ready)
            await ctx.tick()
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert all(seen)


@pytest.mark.parametrize("in_lanes,out_lanes", [
    (1, 1), (1, 4), (4, 1), (2, 6), (6, 2), (3, 4), (4, 3), (5, 2), (2, 5), (3, 3), (32, 4),
])
@pytest.mark.parametrize("signed", [False, True])
def test_width_converter_order(in_lanes, out_lanes, signed):
    bits = 4
    seed = in_lanes * 10 + out_lanes + (100 if signed else 0)
    dut = WidthConverter(bits, in_lanes, out_lanes, signed=signed)
    total = in_lanes * out_lanes * 7
    lo, hi = (-8, 8) if signed else (0, 16)
    elements = np.random.default_rng(seed).integers(lo, hi, size=total)
    got, _ = run_stream(dut, elements.reshape(-1, in_lanes).tolist(), total // out_lanes,
                        seed, gap=0.4, stall=0.4)
    flat = [v for word in got for v in unpack(word, bits, out_lanes, signed)]
    assert flat == elements.tolist(), f"seed {seed}"


@pytest.mark.parametrize("in_lanes,out_lanes", [(1, 4), (4, 1), (3, 4), (4, 3), (2, 2), (8, 2), (2, 8)])
def test_width_converter_throughput(in_lanes, out_lanes):
    """Free-running: one beat per cycle on the side with more beats."""
    total = in_lanes * out_lanes * 20
    dut = WidthConverter(2, in_lanes, out_lanes)
    elements = np.arange(total) % 4
    got, cycles = run_stream(dut, elements.reshape(-1, in_lanes).tolist(), total // out_lanes,
                             seed=0, gap=0, stall=0)
    assert [v for word in got for v in unpack(word, 2, out_lanes)] == elements.tolist()
    ideal = max(total // in_lanes, total // out_lanes)
    assert cycles <= ideal + 2, f"{cycles} cycles, ideal {ideal}"


@pytest.mark.parametrize("in_lanes,out_lanes,frame", [
    (4, 1, 10), (4, 2, 10), (4, 3, 9), (4, 5, 5), (8, 3, 9), (3, 4, 4), (4, 6, 30), (4, 1, 3),
    (32, 1, 64), (32, 2, 36), (2, 6, 12), (4, 4, 6), (8, 28, 28), (5, 12, 12), (8, 6, 12),
])
def test_width_converter_frame_drops_unused_lanes(in_lanes, out_lanes, frame):
    """With ``frame``, the lanes of a frame's last input beat past its elements (here
    filled with garbage) are dropped; the frame's elements come out in order."""
    bits, frames = 4, 5
    seed = in_lanes * 100 + out_lanes * 10 + frame
    rng = np.random.default_rng(seed)
    dut = WidthConverter(bits, in_lanes, out_lanes, frame=frame)
    elements = rng.integers(0, 16, size=(frames, frame))
    in_beats = frame_beats(rng, elements, in_lanes, 16)
    total = frames * frame
    got, _ = run_stream(dut, in_beats, total // out_lanes, seed, gap=0.4, stall=0.4)
    flat = [v for word in got for v in unpack(word, bits, out_lanes)]
    assert flat == elements.reshape(-1)[:len(flat)].tolist(), f"seed {seed}"
    assert len(flat) == total - total % out_lanes


@pytest.mark.parametrize("args,kwargs,exc,msg", [
    ((2, 1, 4), dict(frame=0), ValueError, "frame must be at least 1, not 0"),
    ((2, 0, 4), {}, ValueError, "in_lanes must be at least 1, not 0"),
    ((0, 1, 4), {}, ValueError, "bits must be at least 1, not 0"),
    ((2, 1, 4.0), {}, TypeError, "out_lanes must be an integer, not 4.0"),
    ((2, 1, 4), dict(signed=1), TypeError, "signed must be a bool, not 1"),
])
@pytest.mark.parametrize("cls", [WidthConverterSpec, WidthConverter])
def test_width_converter_bad_parameters(cls, args, kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        cls(*args, **kwargs)


@pytest.mark.parametrize("args,exc,msg", [
    ((unsigned(4), 0), ValueError, "depth must be at least 1, not 0"),
    ((unsigned(4), "2"), TypeError, "depth must be an integer, not '2'"),
    (("wide", 2), TypeError, "payload_shape must be shape-castable, not 'wide'"),
])
@pytest.mark.parametrize("cls", [StreamFIFOSpec, StreamFIFO])
def test_fifo_bad_parameters(cls, args, exc, msg):
    with pytest.raises(exc, match=msg):
        cls(*args)


def test_descriptions():
    """Capacity and ports of the width converter, ports of the FIFO, from their
    descriptions."""
    wc = WidthConverterSpec(3, 2, 5, signed=True)
    assert wc.capacity == 6 and wc.element_shape == signed(3)
    assert wc.signature.members["o"].signature.members["payload"].shape.length == 5
    fifo = StreamFIFOSpec(unsigned(4), 3)
    assert fifo.signature.members["i"].signature.members["payload"].shape == unsigned(4)


def test_width_converter_frame_slots_rate():
    """64 codes per bus word into a 784-code vector, as the LFC input: each word's slots
    are fixed by its place in the frame, one word per cycle free-running."""
    frames, frame, n_in = 3, 784, 64
    dut = WidthConverter(1, n_in, frame, frame=frame)
    assert dut._beats_fit_slots()
    rng = np.random.default_rng(7)
    elements = rng.integers(0, 2, size=(frames, frame))
    beats = -(-frame // n_in)
    in_beats = frame_beats(rng, elements, n_in, 2)
    got, cycles = run_stream(dut, in_beats, frames, seed=0, gap=0, stall=0)
    assert [unpack(word, 1, frame) for word in got] == elements.tolist()
    assert cycles <= frames * beats + 2, f"{cycles} cycles for {frames * beats} input beats"
