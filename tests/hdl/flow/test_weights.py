"""Weights from DDR in the network compiler: placement by on-chip budget, the per-frame
DDR figures, and whole networks with streamed stages in Amaranth's simulator, bit-exact
against ``sim.golden.run`` with the DDR model (latency, bandwidth, stalls) on every port,
under input gaps and output backpressure."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards.zcu104 import ZCU104Platform
from hdl.flow.network import FoldingError, Network, NetworkSpec, plan
from hdl.flow.weights import ddr_bytes_per_frame, onchip_bytes, place_weights
from sim import golden
from sim.ddr import DdrModel
from sim.random_model import LayerPlan, build_model

BASE = 0x8_0000_0000
C, F = "conv", "fc"


def small_model(seed=0):
    plans = [LayerPlan(op=C, out=4, kind="pot", wbits=4, act_bits=2, padding=1, pool=2),
             LayerPlan(op=F, out=8, kind="int", wbits=4, act_bits=2, density=0.5),
             LayerPlan(op=F, out=4, kind="pot", wbits=4, act_bits=None, bias=True)]
    return build_model(plans, input_shape=(6, 6, 2), input_bits=3, seed=seed, name="ddr-small")


def simulate(net, codes, *, seed, gap=0.3, stall=0.3, ddr_stall=0.3, latency=30, bytes_per_cycle=None):
    image = net.spec.weight_image()
    beats = np.asarray(codes).reshape(-1, net.in_lanes)
    classes = len(net.model.classes)
    per_frame = classes // net.out_lanes
    got, ends = [], []
    ddrs = [DdrModel(image, base=BASE, data_width=s.ddr_width, latency=latency,
                     bytes_per_cycle=bytes_per_cycle, stall=ddr_stall, seed=seed + 10 * k)
            for k, (s, _, _) in enumerate(net.spec.streamers)]

    async def source(ctx):
        ctx.set(net.weight_base, BASE)
        ctx.set(net.weight_enable, 1)
        rng = random.Random(seed)
        for beat in beats:
            while gap and rng.random() < gap:
                await ctx.tick()
            ctx.set(net.i.payload, [int(v) for v in beat])
            ctx.set(net.i.valid, 1)
            await ctx.tick().until(net.i.ready)
            ctx.set(net.i.valid, 0)

    async def sink(ctx):
        rng = random.Random(seed + 1)
        cycle = 0
        while len(got) < len(codes) * per_frame:
            ready = not (stall and rng.random() < stall)
            ctx.set(net.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(net.o.valid, net.o.payload)
            cycle += 1
            assert cycle < 200_000, f"seed {seed}: timed out with {len(got)} beats"
            if valid and ready:
                got.append([int(v) for v in payload])
                if len(got) % per_frame == 0:
                    ends.append(cycle)

    sim = Simulator(net)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    for k, ddr in enumerate(ddrs):
        port = getattr(net, f"w{k}")

        async def memory(ctx, ddr=ddr, port=port):
            await ddr.run(ctx, port)
        sim.add_testbench(memory, background=True)
    sim.run()
    return np.array(got, dtype=np.int64).reshape(len(codes), classes), ends, ddrs


def codes_for(model, n, seed):
    return np.random.default_rng(seed).integers(0, 1 << model.input.bits, size=(n, *model.input.shape))


@pytest.mark.parametrize("streamed", [("fc1",), ("fc1:2", "fc2"), ("conv0:2", "fc2")])
def test_streamed_network_bit_exact(streamed):
    """``name:n``: the stage's weights over ``n`` DDR ports (streamers joined per beat)."""
    model = small_model()
    folding = {"conv0": {"pe": 2, "simd": 2}, "pool0": (2, 2), "fc1": {"pe": 2, "simd": 6},
               "fc2": {"pe": 2, "simd": 4}}
    for item in streamed:
        name, _, ports = item.partition(":")
        folding[name].update(weights="ddr", ddr_ports=int(ports or 1))
    net = Network(model, folding)
    assert [s.name for s in net.spec.streamed] == [i.partition(":")[0] for i in streamed]
    assert [s.engine for s in net.spec.streamed if s.name == "fc1"] in ([], ["sparse"])   # CSC words
    assert len(net.streamers) == sum(int(i.partition(":")[2] or 1) for i in streamed)
    codes = codes_for(model, 2, 5)
    got, _, ddrs = simulate(net, codes, seed=5)
    assert np.array_equal(got, golden.run(model, codes))
    for (s, _, ws), ddr in zip(net.spec.streamers, ddrs):
        assert ddr.bytes_read >= 2 * ws.pass_bytes * s.vectors_per_frame


def test_streamed_sparse_conv_bit_exact():
    # a CSC convolution streamed at SIMD 1 (relative columns): its words once per pixel
    plans = [LayerPlan(op=C, out=4, kind="int", wbits=4, act_bits=2, padding=1, density=0.4),
             LayerPlan(op=F, out=4, kind="pot", wbits=4, act_bits=None)]
    model = build_model(plans, input_shape=(4, 4, 2), input_bits=2, seed=3, name="ddr-sparse-conv")
    net = Network(model, {"conv0": {"pe": 2, "simd": 1, "weights": "ddr"}, "fc1": (2, 8)})
    stage = net.spec.streamed[0]
    assert stage.engine == "sparse" and stage.compute.delta_bits is not None
    assert ddr_bytes_per_frame(stage) == stage.weight_stream.pass_bytes * 16
    codes = codes_for(model, 2, 7)
    got, _, ddrs = simulate(net, codes, seed=7)
    assert np.array_equal(got, golden.run(model, codes))
    assert ddrs[0].bytes_read >= 2 * 16 * stage.weight_stream.pass_bytes


def test_streamed_frame_cycles_follow_the_port():
    # fc2 (dense pot, 4x8) streamed at 1 byte per cycle: 1 beat of 4x8x4 = 128 bits, 16
    # bytes per frame, so a frame takes >= 16 cycles. fc1 (CSC, 8x36, <= 20 non-zeros a
    # row) streamed on the sparse engine at 2 bytes per cycle: 5 beats (the busiest PE's
    # words) of 8 PE words of 6 entries x 7 bits (4-bit code, 3-bit buffer word) + a last
    # flag (one local row: no row tag) = 344 bits, three 128-bit words each: 240 bytes per
    # frame, >= 120 cycles.
    model = small_model()
    folding = {"conv0": {"pe": 4, "simd": 2}, "pool0": (4, 4), "fc1": {"pe": 8, "simd": 6},
               "fc2": {"pe": 4, "simd": 8}}
    for name, bpc, per_frame, cycles in (("fc2", 1.0, 16, 16), ("fc1", 2.0, 240, 120)):
        fold = dict(folding, **{name: dict(folding[name], weights="ddr")})
        net = Network(model, fold)
        stage = net.spec.streamed[0]
        assert stage.engine == ("sparse" if name == "fc1" else "shiftmac")
        assert ddr_bytes_per_frame(stage) == per_frame
        codes = codes_for(model, 4, 6)
        got, ends, ddrs = simulate(net, codes, seed=6, gap=0, stall=0, ddr_stall=0, bytes_per_cycle=bpc)
        assert np.array_equal(got, golden.run(model, codes))
        assert ends[-1] - ends[-2] >= cycles
        assert ddrs[0].bytes_read / ddrs[0].cycles <= bpc
    assert stage.weight_stream.words_per_beat == 3 and stage.compute.weight_bits == 43


def test_place_weights_streams_fc_first():
    model = small_model()
    stages = plan(model, {"conv0": (2, 2), "pool0": (2, 2), "fc1": (2, 6), "fc2": (2, 4)})
    total = sum(onchip_bytes(s) for s in stages)
    conv, fc1, fc2 = (onchip_bytes(s) for s in stages if s.compute is not None)
    wp = place_weights(stages, ZCU104Platform, budget_bytes=total - 1)
    # fc2 (dense, read once per frame) frees as many bytes on chip as it reads per frame;
    # fc1 streams its CSC words (189 bytes on chip, 192 read: 126-bit beats in 128-bit
    # slots); the conv is read once per output pixel.
    streamed = {s.name: ddr_bytes_per_frame(s) for s in
                plan(model, {"conv0": {"pe": 2, "simd": 2, "weights": "ddr"}, "pool0": (2, 2),
                             "fc1": {"pe": 2, "simd": 6, "weights": "ddr"},
                             "fc2": {"pe": 2, "simd": 4, "weights": "ddr"}}) if s.compute}
    assert fc2 / streamed["fc2"] > fc1 / streamed["fc1"] > conv / streamed["conv0"]
    assert [s.name for s in wp.stages if s.streamed] == ["fc2"]
    assert wp.onchip_bytes == conv + fc1
    assert wp.ddr_bytes_per_frame == streamed["fc2"] > 0
    assert wp.port_bytes_per_cycle == 16.0
    assert wp.cycles_per_frame == max(wp.compute_cycles, -(-wp.ddr_bytes_per_frame // 16))
    assert wp.bandwidth_used == pytest.approx(wp.ddr_bytes_per_frame * wp.fps)
    none = place_weights(stages, ZCU104Platform)
    assert not any(s.streamed for s in none.stages) and none.ddr_bytes_per_frame == 0
    with pytest.raises(ValueError, match="even with every stage streamed"):
        place_weights(stages, ZCU104Platform, budget_bytes=-1)


def test_weights_folding_errors():
    model = small_model()
    with pytest.raises(FoldingError, match="weights must be 'rom' or 'ddr', not 'dram'"):
        plan(model, {"fc1": {"weights": "dram"}})
    with pytest.raises(FoldingError, match="a max-pool stage has no weights to stream"):
        plan(model, {"pool0": {"weights": "ddr"}})
    with pytest.raises(FoldingError, match="ddr_ports must divide PE 2 on a stage with weights 'ddr', not 3"):
        plan(model, {"fc1": {"pe": 2, "weights": "ddr", "ddr_ports": 3}})
    with pytest.raises(FoldingError, match="ddr_ports must divide PE 2"):
        plan(model, {"fc1": {"pe": 2, "ddr_ports": 2}})
    spec = NetworkSpec(model, {"fc1": {"weights": "ddr"}})
    assert spec.folding["fc1"]["weights"] == "ddr" and spec.weight_offsets == [0]
    assert len(spec.weight_image()) == spec.weight_buffer_bytes == 4096
