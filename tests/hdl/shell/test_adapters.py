"""AXI-Stream adapters in Amaranth's simulator: packing, frame errors, rates."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.shell.adapters import AxisInput, AxisOutput, InputFormat, OutputFormat
from hdl.shell.regmap import code_slot_bits

from tests.hdl.shell.axibench import axis_payloads, pack_input, stream_recv, stream_send


def unpack_lanes(payloads, bits, lanes):
    return [(int(p) >> (j * bits)) & ((1 << bits) - 1) for p in payloads for j in range(lanes)]


def run_input(dut, beats, n_out, seed, gap=0.3, stall=0.3, tail=0, batch=1, flags=None):
    """Send (tdata, tlast) beats, receive ``n_out`` code beats; returns them and the
    events seen on frame_start / err_short / err_long. The ``ends`` flags taken (with
    random stalls on ``ends.ready``) are appended to ``flags``."""
    got, events = [], []
    flags = [] if flags is None else flags
    r = random.Random(seed)
    fr = random.Random(seed + 1)
    width = dut.format.data_width

    async def src(ctx):
        await stream_send(ctx, dut.i, axis_payloads(beats, width), r, gap)

    async def sink(ctx):
        await stream_recv(ctx, dut.o, n_out, r, stall, out=got)
        if tail:
            await ctx.tick().repeat(tail)

    async def watch(ctx):
        ctx.set(dut.batch, batch)
        async for _, _, start, short, long in ctx.tick().sample(
                dut.frame_start, dut.err_short, dut.err_long):
            events.extend(name for name, hit in (("start", start), ("short", short),
                                                 ("long", long)) if hit)

    async def ends(ctx):
        ready = 1
        ctx.set(dut.ends.ready, ready)
        async for _, _, valid, flag in ctx.tick().sample(dut.ends.valid, dut.ends.payload):
            if valid and ready:
                flags.append(int(flag))
            ready = int(fr.random() >= stall)
            ctx.set(dut.ends.ready, ready)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(sink)
    sim.add_testbench(watch, background=True)
    sim.add_testbench(ends, background=True)
    sim.run()
    return got, events


# ----------------------------------------------------------------- AxisInput

@pytest.mark.parametrize("bits, lanes, elements, width", [
    (8, 1, 64, 32), (2, 2, 30, 32), (1, 8, 72, 64), (12, 2, 10, 32), (4, 4, 4, 32),
    # lanes not dividing the codes per beat
    (8, 3, 27, 32), (8, 8, 24, 32), (2, 6, 30, 64), (12, 3, 9, 32), (8, 5, 5, 64),
])
@pytest.mark.parametrize("serial", [False, True])
def test_axis_input_packing(bits, lanes, elements, width, serial):
    fmt = InputFormat(bits=bits, lanes=lanes, frame_elements=elements, data_width=width,
                      serial=serial)
    dut = AxisInput(fmt)
    seed = 7 + bits + lanes
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 1 << bits, size=elements) for _ in range(3)]
    beats = []
    slot = code_slot_bits(bits)
    used = (elements - (fmt.beats_per_frame - 1) * fmt.codes_per_beat) * slot
    garbage = ((1 << width) - 1) ^ ((1 << used) - 1)      # padding slots of the last beat
    for f in frames:
        words = pack_input(f, bits, width)
        assert len(words) == fmt.beats_per_frame
        words[-1] |= garbage                                 # must be ignored
        beats += [(w, int(k == len(words) - 1)) for k, w in enumerate(words)]
    expect = [int(x) for f in frames for x in f]
    got, events = run_input(dut, beats, len(expect) // lanes, seed)
    assert unpack_lanes(got, bits, lanes) == expect, f"seed {seed}"
    assert events == ["start"] * 3, f"seed {seed}"


@pytest.mark.parametrize("lanes, frame, cycles_per_beat, batch, serial", [
    (1, 16, 1, 1, False),       # 4 codes per input beat, 1 per output beat: no bubble
    (3, 24, 1, 1, False),       # input faster than output: an output beat every cycle
    (8, 24, 2, 1, False),       # two input beats per output beat
    (8, 24, 2, 2, False),       # the same in batches of two frames
    (3, 24, 1, 3, False),       # ... and three
    (3, 24, 3, 2, True),        # serial: one code per cycle, no bubble between frames
    (8, 24, 8, 1, True),
])
def test_axis_input_full_rate(lanes, frame, cycles_per_beat, batch, serial):
    fmt = InputFormat(bits=8, lanes=lanes, frame_elements=frame, serial=serial)
    assert fmt.cycles_per_frame == (frame if serial else fmt.beats_per_frame)
    dut = AxisInput(fmt)
    n_out = 6 * frame // lanes
    times, errors = [], []

    async def src(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.ends.ready, 1)
        ctx.set(dut.batch, batch)
        t = 0
        while len(times) < n_out:
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            t += 1
            if valid:
                times.append(t)

    async def tlast(ctx):
        # ``last`` on every batch's last beat, counted from accepted beats
        beats, per = 0, fmt.beats_per_frame * batch
        async for _, _, v, r in ctx.tick().sample(dut.i.valid, dut.i.ready):
            if v and r:
                beats += 1
            ctx.set(dut.i.payload.last, beats % per == per - 1)

    async def watch(ctx):
        async for _, _, e1, e2 in ctx.tick().sample(dut.err_short, dut.err_long):
            if e1 or e2:
                errors.append(1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(tlast, background=True)
    sim.add_testbench(watch, background=True)
    sim.run()
    gaps = {b - a for a, b in zip(times, times[1:])}
    assert gaps == {cycles_per_beat}
    assert not errors


def test_axis_input_latency():
    """A beat taken at one clock edge has its first codes on ``o`` two edges later (the
    converter's register, then the output slice's)."""
    dut = AxisInput(InputFormat(bits=8, lanes=1, frame_elements=16))
    log = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        await ctx.tick().repeat(2)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.data, 0x04030201)
        for _ in range(4):
            _, _, taken, valid, codes = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.as_value())
            log.append((taken, valid, codes))
            ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert log == [(1, 0, 0), (0, 0, 0), (0, 1, 1), (0, 1, 2)]


@pytest.mark.parametrize("lanes", [2, 3])
def test_axis_input_resynchronises_after_short_and_long_frames(lanes):
    bits, elements = 8, 12                          # 3 beats of 4 codes
    dut = AxisInput(InputFormat(bits=bits, lanes=lanes, frame_elements=elements))
    rng = np.random.default_rng(3)
    good = [rng.integers(1, 256, size=elements) for _ in range(3)]
    w = [pack_input(f, bits, 32) for f in good]
    beats = [(w[0][0], 0), (w[0][1], 1)]            # short: TLAST on beat 2 of 3
    beats += [(x, 0) for x in w[1]] + [(0xDEAD, 0), (0xBEEF, 1)]   # long: 2 extra beats
    beats += [(x, int(k == 2)) for k, x in enumerate(w[2])]        # a good frame
    expect = list(good[0][:8]) + [0] * 4 + list(good[1]) + list(good[2])
    flags = []
    got, events = run_input(dut, beats, len(expect) // lanes, seed=3, tail=20, flags=flags)
    assert unpack_lanes(got, bits, lanes) == [int(x) for x in expect]
    assert events == ["start", "short", "start", "long", "start"]
    assert flags == [1, 1, 1]


@pytest.mark.parametrize("bits, lanes, elements, width, batch, seed", [
    (1, 8, 72, 64, 4, 1), (3, 3, 30, 32, 3, 2), (8, 4, 12, 128, 5, 3),
])
@pytest.mark.parametrize("serial", [False, True])
def test_axis_input_batches(bits, lanes, elements, width, batch, seed, serial):
    """Batches of ``batch`` frames, TLAST only at a batch's end, under random stalls:
    every code arrives, the flags mark each batch's last frame; then a batch cut short
    (TLAST in its second frame) and one too long, and the stream resynchronises."""
    fmt = InputFormat(bits=bits, lanes=lanes, frame_elements=elements, data_width=width,
                      serial=serial)
    dut = AxisInput(fmt)
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 1 << bits, size=elements) for _ in range(3 * batch + 2)]
    words = [pack_input(f, bits, width) for f in frames]
    beats, expect = [], []
    for b in range(2):                                   # two good batches
        chunk = [w for f in words[b * batch:(b + 1) * batch] for w in f]
        beats += [(w, int(k == len(chunk) - 1)) for k, w in enumerate(chunk)]
        expect += [int(x) for f in frames[b * batch:(b + 1) * batch] for x in f]
    k = 2 * batch                                        # short: frame 0 and half of 1
    beats += [(w, 0) for w in words[k]]
    half = max(1, fmt.beats_per_frame // 2)
    cut = words[k + 1][:half]
    beats += [(w, int(j == len(cut) - 1)) for j, w in enumerate(cut)]
    expect += [int(x) for x in frames[k]]
    kept = min(elements, half * fmt.codes_per_beat) if half < fmt.beats_per_frame else elements
    expect += [int(x) for x in frames[k + 1][:kept]] + [0] * (elements - kept)
    long = [w for f in words[k + 2:k + 2 + batch] for w in f] + [0x5A, 0xA5]
    beats += [(w, int(j == len(long) - 1)) for j, w in enumerate(long)]   # long batch
    expect += [int(x) for f in frames[k + 2:k + 2 + batch] for x in f]
    flags = []
    got, events = run_input(dut, beats, len(expect) // lanes, seed, batch=batch, flags=flags,
                            tail=20)
    assert unpack_lanes(got, bits, lanes) == expect, f"seed {seed}"
    want = ([0] * (batch - 1) + [1]) * 2 + [0, 1] + [0] * (batch - 1) + [1]
    assert flags == want, f"seed {seed}"
    assert events.count("start") == 3 * batch + 2, f"seed {seed}"
    assert (events.count("short"), events.count("long")) == (1, 1), f"seed {seed}"


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(lanes=4), ValueError, "lanes must divide the frame length 10, not 4"),
    (dict(data_width=16), ValueError, "data width must be one of 32, 64, 128, 256, 512, "
                                      "1024, not 16"),
    (dict(bits=17), ValueError, "input code bits must be at most 16, not 17"),
    (dict(lanes=1.0), TypeError, "lanes must be an integer, not 1.0"),
    (dict(frame_elements=0), ValueError, "frame_elements must be at least 1, not 0"),
])
def test_input_format_checks(kwargs, exc, msg):
    params = dict(bits=8, lanes=1, frame_elements=10)
    params.update(kwargs)
    with pytest.raises(exc, match=msg):
        InputFormat(**params)


def test_formats_geometry():
    fmt = InputFormat(bits=12, lanes=3, frame_elements=9, data_width=64)
    assert (fmt.slot, fmt.codes_per_beat, fmt.beats_per_frame) == (12, 5, 2)
    fmt = InputFormat(bits=1, lanes=8, frame_elements=784, data_width=64)
    assert (fmt.codes_per_beat, fmt.beats_per_frame) == (64, 13)
    out = OutputFormat(score_width=20, lanes=2, classes=10, data_width=64)
    assert (out.words_per_beat, out.words_per_frame, out.beats_per_frame) == (2, 11, 6)
    assert out.cycles_per_frame == 11


# ----------------------------------------------------------------- AxisOutput

def run_output(dut, payloads, n_beats, seed, gap=0.3, stall=0.3, flags=None):
    """Scores in, beats out; ``flags`` (default all 1) feed ``ends``, one per frame,
    with random gaps."""
    got, done = [], []
    r = random.Random(seed)
    fr = random.Random(seed + 2)
    frames = len(payloads) * dut.format.lanes // dut.format.classes
    flags = [1] * frames if flags is None else flags

    async def src(ctx):
        await stream_send(ctx, dut.i, payloads, r, gap)

    async def ends(ctx):
        await stream_send(ctx, dut.ends, flags, fr, gap)

    async def sink(ctx):
        await stream_recv(ctx, dut.o, n_beats, r, stall, out=got)

    async def watch(ctx):
        async for _, _, d in ctx.tick().sample(dut.frame_done):
            if d:
                done.append(1)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(ends)
    sim.add_testbench(sink)
    sim.add_testbench(watch, background=True)
    sim.run()
    width = dut.format.data_width
    return [(p & ((1 << width) - 1), p >> width) for p in got], len(done)


@pytest.mark.parametrize("score_width, lanes, classes, width", [
    (12, 1, 10, 32), (20, 2, 10, 64), (32, 5, 5, 64), (3, 3, 3, 32), (8, 1, 1, 32),
])
def test_axis_output_words_and_label(score_width, lanes, classes, width):
    fmt = OutputFormat(score_width=score_width, lanes=lanes, classes=classes, data_width=width)
    dut = AxisOutput(fmt)
    seed = score_width * 7 + classes
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (score_width - 1)), (1 << (score_width - 1))
    frames = [rng.integers(lo, hi, size=classes) for _ in range(4)]
    frames[1][:] = frames[1][0]                     # all tied: label 0
    frames[2][-1] = hi - 1                          # maximum in the last class
    frames[2][0] = hi - 1                           # ... tied with class 0
    mask = (1 << score_width) - 1
    payloads = []
    for f in frames:
        for k in range(0, classes, lanes):
            v = 0
            for j, s in enumerate(f[k:k + lanes]):
                v |= (int(s) & mask) << (j * score_width)
            payloads.append(v)
    flags = [1, 0, 0, 1]                            # batches of 1 and 3 frames
    got, done = run_output(dut, payloads, fmt.beats_per_frame * len(frames), seed,
                           flags=flags)
    wpb = width // 32
    for n, f in enumerate(frames):
        beats = got[n * fmt.beats_per_frame:(n + 1) * fmt.beats_per_frame]
        assert [b[1] for b in beats] == [0] * (len(beats) - 1) + [flags[n]], f"seed {seed}"
        words = [(b[0] >> (32 * k)) & 0xFFFFFFFF for b in beats for k in range(wpb)]
        scores = [w - (1 << 32) if w >> 31 else w for w in words[:classes]]
        assert scores == [int(s) for s in f], f"seed {seed}"
        assert words[classes] == int(np.argmax(f)), f"seed {seed}"
        assert all(w == 0 for w in words[classes + 1:])
    assert done == len(frames)


@pytest.mark.parametrize("width", [32, 64, 128])
def test_axis_output_rate(width):
    """Free-running source and sink: classes + 1 cycles per frame, no bubble."""
    classes = 10
    dut = AxisOutput(OutputFormat(score_width=16, lanes=1, classes=classes, data_width=width))
    done_at = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.ends.valid, 1)
        t = 0
        async for _, _, d in ctx.tick().sample(dut.frame_done):
            t += 1
            if d:
                done_at.append(t)
            if len(done_at) == 5:
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    gaps = {b - a for a, b in zip(done_at, done_at[1:])}
    assert gaps == {classes + 1}


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(score_width=33), ValueError, "score width must be at most 32, not 33"),
    (dict(lanes=3), ValueError, "lanes must divide the number of classes 10, not 3"),
    (dict(data_width=48), ValueError, "data width must be one of 32, .*, not 48"),
    (dict(classes="10"), TypeError, "classes must be an integer, not '10'"),
])
def test_output_format_checks(kwargs, exc, msg):
    params = dict(score_width=16, lanes=1, classes=10)
    params.update(kwargs)
    with pytest.raises(exc, match=msg):
        OutputFormat(**params)
