"""Weights from DDR: the image layout, and an MVTU fed by a WeightStream from the DDR
model, bit-exact against the golden model under DDR stalls, input gaps and output
backpressure (Amaranth simulator); the bandwidth limit; parameter errors."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from boards.zcu104 import ZCU104Platform
from hdl import ir
from hdl.engines.mvtu import MVTU, MVTUSpec
from hdl.engines.weightstream import WeightStream, WeightStreamSpec, image_beats, weight_image
from sim import amsim, golden
from sim.ddr import DdrModel, port_timing
from sim.random_model import random_thresholds, random_weights

BASE = 0x4000_0000


def streamed_mvtu(m, kind, wbits, in_bits, pe, simd, outputs, inputs, *, seed, data_width=128,
                  burst_len=4, outstanding=2, tbits=None):
    rng = np.random.default_rng(seed)
    w = random_weights(rng, outputs, inputs, kind, wbits)
    layer = ir.FC(name="fc", out_features=outputs, weights=w)
    th = None
    if tbits:
        lo, hi = ir.layer_acc_range(layer, in_bits)
        th = ir.Threshold(name="t", bits=tbits, thresholds=random_thresholds(
            rng, (lo + hi) // 2 - 4, (lo + hi) // 2 + 4, tbits))
    spec = MVTUSpec.from_layer(layer, th, in_bits=in_bits, pe=pe, simd=simd, weight_source="stream")
    ws_spec = WeightStreamSpec(spec.weight_beat_layout, len(spec.weight_beats()),
                               data_width=data_width, burst_len=burst_len, outstanding=outstanding)
    m.submodules.mvtu = mvtu = MVTU(spec=spec)
    m.submodules.ws = ws = WeightStream(spec=ws_spec)
    wiring.connect(m, ws.o, mvtu.w)
    return layer, th, mvtu, ws, weight_image(spec.weight_beats(), ws_spec)


def run(kind, wbits, in_bits, pe, simd, outputs, inputs, *, seed, vectors=3, gap=0.3, stall=0.3,
        ddr_stall=0.3, latency=12, bytes_per_cycle=None, **kw):
    m = Module()
    layer, th, mvtu, ws, image = streamed_mvtu(m, kind, wbits, in_bits, pe, simd, outputs, inputs,
                                               seed=seed, **kw)
    rng = np.random.default_rng(seed + 7)
    codes = rng.integers(0, 1 << in_bits, size=(vectors, inputs))
    ddr = DdrModel(image, base=BASE, data_width=ws.data_width, latency=latency,
                   bytes_per_cycle=bytes_per_cycle, stall=ddr_stall, seed=seed)
    n_out = vectors * mvtu.neuron_folds
    got, cycles = [], []

    async def control(ctx):
        ctx.set(ws.base, BASE)
        ctx.set(ws.enable, 1)
        await amsim.feed(ctx, mvtu.i, codes.reshape(-1, simd), rng=seed, gap=gap)

    async def sink(ctx):
        got.extend(await amsim.drain(ctx, mvtu.o, n_out, rng=seed + 1, stall=stall, seed=seed,
                                     max_cycles=200 * (vectors * inputs // simd * mvtu.neuron_folds + 50),
                                     cycles=cycles))

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(control)
    sim.add_testbench(sink)
    async def memory(ctx):
        await ddr.run(ctx, ws.axi)

    sim.add_testbench(memory, background=True)
    sim.run()
    spec = ir.TensorSpec(shape=(1, 1, inputs), bits=in_bits)
    acc = golden.layer_forward(layer, codes.reshape(vectors, 1, 1, inputs), spec).reshape(vectors, -1)
    want = acc if th is None else golden.threshold(acc, th.thresholds)
    assert np.array_equal(np.array(got).reshape(vectors, outputs), want)
    assert ddr.bytes_read >= vectors * ws.pass_bytes
    return ddr, cycles


@pytest.mark.parametrize("case", [
    # kind, wbits, in_bits, pe, simd, outputs, inputs, data_width, threshold bits (None:
    # scores): beats narrower than a word (several per word, a partly used last word),
    # exactly a word, wider than a word.
    ("int", 4, 4, 2, 4, 6, 12, 128, None),
    ("pot", 4, 4, 4, 8, 8, 16, 128, None),
    ("binary", None, 1, 8, 16, 16, 32, 64, 1),
    ("int", 4, 2, 4, 16, 8, 32, 128, 2),
])
def test_streamed_mvtu_bit_exact(case):
    kind, wbits, in_bits, pe, simd, outputs, inputs, dw, tbits = case
    for seed in (1, 2):
        run(kind, wbits, in_bits, pe, simd, outputs, inputs, seed=seed, data_width=dw, tbits=tbits)


def test_bandwidth_limits_throughput():
    # 4 PE x 16 lanes x 4 bits = 256-bit beats, two 128-bit words each: a free-running
    # MVTU needs 32 bytes per cycle. At 8 bytes per cycle a vector's 8 steps take >= 32.
    steps = 2 * 4
    ddr, cycles = run("int", 4, 4, 4, 16, 8, 64, seed=3, vectors=4, gap=0, stall=0, ddr_stall=0,
                      bytes_per_cycle=8.0, burst_len=8, outstanding=4)
    per_vector = (cycles[-1] - cycles[1]) / 3 * 2      # 2 output beats per vector
    assert per_vector >= steps * 32 / 8
    assert ddr.bytes_read / ddr.cycles <= 8.0 + 1e-9


def test_full_speed_when_bandwidth_suffices():
    # 64-bit beats from a 128-bit port with 4 bursts outstanding: after the first
    # latency the MVTU runs one step per cycle (outputs 1 cycle apart per fold).
    ddr, cycles = run("int", 4, 4, 2, 8, 4, 64, seed=4, vectors=6, gap=0, stall=0, ddr_stall=0,
                      latency=20, burst_len=8, outstanding=4)
    steps = (4 // 2) * (64 // 8)
    gaps = np.diff(cycles[2:])
    assert gaps.sum() == (len(cycles) - 3) * steps // 2


def test_image_round_trip_and_layout():
    layout_bits = 24                                   # 5 beats per 128-bit word (32-bit slots)
    from amaranth.hdl import unsigned
    spec = WeightStreamSpec(unsigned(layout_bits), 11, data_width=128, burst_len=2)
    beats = [(k * 0x10203) & 0xFFFFFF for k in range(11)]
    img = weight_image(beats, spec)
    assert (spec.slot, spec.beats_per_word, spec.words, spec.bursts) == (32, 4, 3, 2)
    assert len(img) == 4 * 16 and image_beats(img, spec) == beats
    assert int.from_bytes(img[16:20], "little") == beats[4]
    wide = WeightStreamSpec(unsigned(200), 3, data_width=64, burst_len=4)
    assert (wide.words_per_beat, wide.words, wide.image_bytes) == (4, 12, 96)
    big = [(1 << 199) | k for k in range(3)]
    assert image_beats(weight_image(big, wide), wide) == big


def test_port_timing_zcu104():
    latency, bpc = port_timing(ZCU104Platform)
    assert latency == 30 and bpc == 16.0                # 150 ns, 128 bits at 200 MHz


def test_parameter_errors():
    from amaranth.hdl import unsigned
    with pytest.raises(ValueError, match="data_width must be a power of two, not 96"):
        WeightStreamSpec(unsigned(8), 4, data_width=96)
    with pytest.raises(ValueError, match="burst_len must keep a burst within 4096 bytes"):
        WeightStreamSpec(unsigned(8), 4, data_width=1024, burst_len=64)
    with pytest.raises(TypeError, match="beats must be an integer"):
        WeightStreamSpec(unsigned(8), 4.0)
    spec = WeightStreamSpec(unsigned(8), 4)
    with pytest.raises(ValueError, match="beats must hold 4 beats, not 3"):
        weight_image([1, 2, 3], spec)
    with pytest.raises(ValueError, match="beat 1 must fit in 8 bits"):
        weight_image([1, 256, 3, 4], spec)
    with pytest.raises(ValueError, match="weight_source must be one of rom, stream"):
        MVTUSpec(np.ones((2, 2), int), kind="int", wbits=2, in_bits=2, pe=1, simd=1,
                 weight_source="ddr")
