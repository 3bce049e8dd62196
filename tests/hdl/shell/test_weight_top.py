"""The AXI top of a network with a stage streamed from DDR: WEIGHT_BASE registers, the
``m_axi_w0_*`` read master served by the DDR model, frames through the AXI-Stream ports,
scores bit-exact against ``sim.golden``; and the Verilog wrapper's AXI4 master."""

import random

import numpy as np
from amaranth.sim import Simulator

from hdl.flow.network import Network
from hdl.shell import axi
from hdl.shell.regmap import REGISTERS
from sim import golden
from sim.ddr import DdrModel
from tests.hdl.flow.test_weights import small_model
from tests.hdl.shell.axibench import axis_recv, axis_send, lite_write, pack_input

BASE = 0x12_3456_7000


class _Port:
    """The flat ``m_axi_w0_*`` ports as the DDR model's ``axi`` member."""

    def __init__(self, top, prefix):
        self.top, self.prefix = top, prefix

    def __getattr__(self, name):
        return getattr(self.top, self.prefix + name)


def streamed_top():
    model = small_model()
    net = Network(model, {"conv0": (2, 2), "pool0": (2, 2), "fc1": {"pe": 2, "simd": 6, "weights": "ddr"},
                          "fc2": (2, 4)})
    return model, net, axi.AxiTop(net, frame_elements=int(np.prod(model.input.shape)), classes=len(model.classes))


def test_top_streams_weights_from_ddr():
    model, net, top = streamed_top()
    classes = len(model.classes)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 1 << model.input.bits, size=(2, *model.input.shape))
    want = golden.run(model, frames)
    beats = []
    for f in frames:
        words = pack_input(f.reshape(-1), model.input.bits, 32)
        beats += [(w, int(k == len(words) - 1)) for k, w in enumerate(words)]
    ddr = DdrModel(net.spec.weight_image(), base=BASE, latency=30, stall=0.2, seed=3)
    got = []
    r = random.Random(3)

    async def host(ctx):
        await lite_write(ctx, top, REGISTERS["WEIGHT_BASE_HI"], BASE >> 32, r)
        await lite_write(ctx, top, REGISTERS["WEIGHT_BASE_LO"], BASE & 0xFFFF_FFFF, r)
        await axis_send(ctx, top, beats, r, prefix="s_axis_")

    async def sink(ctx):
        await axis_recv(ctx, top, (classes + 1) * len(frames), r, prefix="m_axis_", out=got)

    async def memory(ctx):
        await ddr.run(ctx, _Port(top, "m_axi_w0_"))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(sink)
    sim.add_testbench(memory, background=True)
    sim.run()
    for n in range(len(frames)):
        scores = [b[0] for b in got[n * (classes + 1):n * (classes + 1) + classes]]
        scores = [s - (1 << 32) if s >> 31 else s for s in scores]
        assert scores == want[n].tolist()
    assert ddr.bytes_read >= 2 * net.spec.streamed[0].weight_stream.pass_bytes


def test_wrapper_declares_the_weight_master():
    _, net, top = streamed_top()
    wrapper = axi.verilog_wrapper(top, name="qnn_accel", inner="qnn_core")
    assert "ASSOCIATED_BUSIF s_axi:s_axis:m_axis:m_axi_w0" in wrapper
    assert 'X_INTERFACE_INFO = "xilinx.com:interface:aximm:1.0 m_axi_w0 ARADDR"' in wrapper
    assert "PROTOCOL AXI4, READ_WRITE_MODE READ_ONLY, ADDR_WIDTH 40, DATA_WIDTH 128" in wrapper
    assert "output wire [39:0] m_axi_w0_araddr" in wrapper
    assert "input wire [127:0] m_axi_w0_rdata" in wrapper
    for p in top.signature.members:
        assert wrapper.count(f".{p}({p})") == 1, p
