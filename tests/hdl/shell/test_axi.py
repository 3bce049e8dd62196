"""The AXI top (a test core between the adapters and the registers) through its
Xilinx-named ports, and the Verilog wrapper."""

import random
import re

import numpy as np
import pytest
from amaranth import signed, unsigned
from amaranth.back import verilog
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.shell import axi, regmap
from hdl.shell.regmap import REGISTERS

from tests.hdl.shell.axibench import (SumCore, axis_recv, axis_send, lite_read, lite_write,
                                      pack_input)


def test_axi_top_end_to_end():
    frame, classes = 10, 4
    top = axi.AxiTop(SumCore(frame, classes, out_lanes=2), frame_elements=frame,
                     classes=classes, ident=0xC0FFEE01)
    rng = np.random.default_rng(11)
    frames = [rng.integers(0, 256, size=frame) for _ in range(3)]
    frames[2][:] = 0
    frames[2][3] = 5                                # argmax = class 3
    expect_scores = [[int(f[k::classes].sum()) for k in range(classes)] for f in frames]
    # one DMA transfer of the three frames: TLAST on the last beat only
    words = [w for f in frames for w in pack_input(f, 8, 32)]
    beats = [(w, int(k == len(words) - 1)) for k, w in enumerate(words)]
    got = []
    regs = {}
    r = random.Random(11)
    started = []

    async def src(ctx):
        await lite_write(ctx, top, REGISTERS["BATCH"], 3, r)
        regs["batch"] = await lite_read(ctx, top, REGISTERS["BATCH"])
        started.append(1)
        await axis_send(ctx, top, beats, r, prefix="s_axis_")

    async def sink(ctx):
        while not started:
            await ctx.tick()
        await axis_recv(ctx, top, (classes + 1) * len(frames), r, prefix="m_axis_", out=got)
        regs["frames"] = await lite_read(ctx, top, REGISTERS["FRAMES_DONE"])
        regs["cycles"] = await lite_read(ctx, top, REGISTERS["CYCLES"])
        regs["status"] = await lite_read(ctx, top, REGISTERS["STATUS"])
        regs["id"] = await lite_read(ctx, top, REGISTERS["ID"])
        regs["elements"] = await lite_read(ctx, top, REGISTERS["IN_ELEMENTS"])
        regs["format"] = await lite_read(ctx, top, REGISTERS["IN_FORMAT"])
        # a short frame: error flag, then a soft reset and a clean frame
        await axis_send(ctx, top, [(1, 1)], r, prefix="s_axis_")
        await ctx.tick().repeat(30)
        regs["status_err"] = await lite_read(ctx, top, REGISTERS["STATUS"])
        await lite_write(ctx, top, REGISTERS["CONTROL"],
                         regmap.CONTROL_SOFT_RESET | regmap.CONTROL_CLEAR, r)
        regs["status_clear"] = await lite_read(ctx, top, REGISTERS["STATUS"])
        await lite_write(ctx, top, REGISTERS["BATCH"], 0, r)     # stores 1
        regs["batch_after"] = await lite_read(ctx, top, REGISTERS["BATCH"])
        words = pack_input(frames[0], 8, 32)
        after = []
        await axis_send(ctx, top, [(w, int(k == len(words) - 1)) for k, w in enumerate(words)],
                        r, prefix="s_axis_")
        await axis_recv(ctx, top, classes + 1, r, prefix="m_axis_", out=after)
        regs["after"] = after
        regs["frames_after"] = await lite_read(ctx, top, REGISTERS["FRAMES_DONE"])

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(src)
    sim.add_testbench(sink)
    sim.run()
    for n, scores in enumerate(expect_scores):
        beats_n = got[n * (classes + 1):(n + 1) * (classes + 1)]
        assert [b[0] for b in beats_n[:classes]] == scores
        assert beats_n[classes] == (int(np.argmax(scores)), int(n == 2))
        assert all(b[1] == 0 for b in beats_n[:classes])
    assert regs["batch"] == 3 and regs["batch_after"] == 1
    assert regs["frames"] == 3 and regs["id"] == 0xC0FFEE01 and regs["elements"] == frame
    assert regs["format"] == 8 | 8 << 8 | 4 << 16 | 4 << 24
    assert 3 * (frame + classes) <= regs["cycles"] < 2000
    assert regs["status"] == 0
    assert regs["status_err"] & regmap.STATUS_ERR_SHORT
    assert regs["status_clear"] == 0
    assert [b[0] for b in regs["after"][:classes]] == expect_scores[0]
    assert regs["frames_after"] == 1


def test_axi_top_ports_and_wrapper():
    top = axi.AxiTop(SumCore(10, 4), frame_elements=10, classes=4)
    text = verilog.convert(top, name="qnn_core")
    for port in ("s_axi_awaddr", "s_axi_rdata", "s_axis_tdata", "s_axis_tready",
                 "m_axis_tdata", "m_axis_tlast", "m_axis_tkeep"):
        assert f" {port}" in text, port
    wrapper = axi.verilog_wrapper(top, name="qnn_accel", inner="qnn_core")
    assert "module qnn_accel (" in wrapper and "qnn_core core (" in wrapper
    assert ".rst(~aresetn)" in wrapper
    assert 'X_INTERFACE_INFO = "xilinx.com:interface:axis:1.0 m_axis TLAST"' in wrapper
    assert "ASSOCIATED_BUSIF s_axi:s_axis:m_axis" in wrapper
    assert "input wire [11:0] s_axi_awaddr" in wrapper
    assert "output wire [31:0] m_axis_tdata" in wrapper
    # every port of the inner module is connected exactly once
    inner_ports = {p for p in top.signature.members}
    for p in inner_ports:
        assert wrapper.count(f".{p}({p})") == 1, p
    with pytest.raises(ValueError, match="name must be a Verilog identifier"):
        axi.verilog_wrapper(top, name="bad name", inner="qnn_core")


def core_signature(bits=8, in_lanes=1, width=16, out_lanes=2, score_sign=signed):
    return wiring.Signature({
        "i": In(stream.Signature(data.ArrayLayout(unsigned(bits), in_lanes))),
        "o": Out(stream.Signature(data.ArrayLayout(score_sign(width), out_lanes))),
    })


def test_formats_for_core():
    fmt_in, fmt_out = axi.formats_for(core_signature(), frame_elements=10, classes=4,
                                      out_width=64)
    assert (fmt_in.bits, fmt_in.lanes, fmt_in.frame_elements, fmt_in.data_width) == (8, 1, 10, 32)
    assert (fmt_out.score_width, fmt_out.lanes, fmt_out.classes, fmt_out.data_width) == \
        (16, 2, 4, 64)


@pytest.mark.parametrize("signature,kwargs,exc,msg", [
    (object(), {}, TypeError, "signature must be a wiring.Signature, not object"),
    (core_signature(), dict(classes=3), ValueError,
     "lanes must divide the number of classes 3, not 2"),
    (core_signature(), dict(in_width=16), ValueError, "data width must be one of 32, "),
    (core_signature(width=33), {}, ValueError, "score width must be at most 32, not 33"),
    (wiring.Signature({"i": In(1)}), {}, ValueError,
     "core must have stream ports 'i' \\(In\\) and 'o' \\(Out\\), not a fitting 'i'"),
    (core_signature().flip(), {}, ValueError, "not a fitting 'i'"),
])
def test_formats_for_refuses(signature, kwargs, exc, msg):
    params = dict(frame_elements=10, classes=4)
    params.update(kwargs)
    with pytest.raises(exc, match=msg):
        axi.formats_for(signature, **params)


def test_build_sources():
    files = axi.build_sources(SumCore(10, 4), frame_elements=10, classes=4, name="net")
    assert sorted(files) == ["net.v", "net_core.v"]
    assert "module net (" in files["net.v"] and "net_core core (" in files["net.v"]
    assert re.search(r"module net_core\s*\(", files["net_core.v"])


def test_shell_floors():
    """The shell's floors of the frame interval, on the top and without one."""
    top = axi.AxiTop(SumCore(784, 4, bits=1), frame_elements=784, classes=4, in_width=64)
    assert (top.input_beats_per_frame, top.output_cycles_per_frame, top.floor_cycles) == \
        (13, 5, 13)
    assert regmap.shell_floor_cycles(784, 1, 10, in_width=64) == 13
    assert regmap.shell_floor_cycles(64, 8, 10) == 16          # digits, 8-bit, 32-bit TDATA
    assert regmap.shell_floor_cycles(64, 4, 10, in_width=128) == 11   # the output's floor
    assert regmap.input_beats_per_frame(32 * 32 * 3, 8, 128) == 192
    assert regmap.output_beats_per_frame(10, 128) == 3


def test_board_tdata_width():
    from boards import PynqZ2Platform, ZCU102Platform
    top = axi.AxiTop(SumCore(10, 4), frame_elements=10, classes=4, board=ZCU102Platform)
    assert (top.in_width, top.out_width) == (128, 128)
    assert len(top.s_axis_tdata) == 128 and len(top.m_axis_tkeep) == 16
    top = axi.AxiTop(SumCore(10, 4), frame_elements=10, classes=4, board=PynqZ2Platform,
                     out_width=32)
    assert (top.in_width, top.out_width) == (64, 32)
    assert axi.board_tdata_width(None) == 32
    with pytest.raises(TypeError, match="board must be a boards platform"):
        axi.board_tdata_width(object())
