"""``rom_counter``: a wrapping counter whose next value is a multiplexer of registers, so
that Yosys decodes a LUT ROM addressed by it straight from flip-flops."""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.engines.rom import rom_counter
from hdl.flow.synth import synthesize


@pytest.mark.parametrize("count,start", [(1, 0), (2, 0), (5, 0), (16, 0), (2, 1), (5, 1), (5, 4)])
def test_counts_on_step(count, start):
    m = Module()
    step = Signal()
    value = rom_counter(m, count, step, "idx", start=start)
    m.d.sync += Signal(name="tick").eq(step)       # a sync domain even for count 1
    steps = np.random.default_rng(count).integers(0, 2, size=60)
    seen = []

    async def bench(ctx):
        for s in steps:
            ctx.set(step, int(s))
            seen.append(ctx.get(value))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    expected = ((start + np.concatenate([[0], np.cumsum(steps)[:-1]])) % count).tolist()
    assert seen == expected


class _RomReader(wiring.Component):
    """A counter stepping on ``step`` addresses a 200 x 24 ROM; the registered read data
    is XOR-accumulated so that none of it is trimmed."""

    step: In(1)
    out: Out(24)

    def __init__(self, successor: bool):
        self.successor = successor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        depth = 200
        rng = np.random.default_rng(1)
        init = [int(v) for v in rng.integers(0, 1 << 24, size=depth, dtype=np.uint64)]
        m.submodules.rom = rom = Memory(shape=unsigned(24), depth=depth, init=init)
        step = Signal()
        m.d.sync += step.eq(self.step)
        if self.successor:
            idx = rom_counter(m, depth, step, "idx")
        else:
            idx = Signal(range(depth))
            with m.If(step):
                m.d.sync += idx.eq(Mux(idx == depth - 1, 0, idx + 1))
        rd = rom.read_port(domain="sync")
        acc = Signal(24)
        m.d.comb += [rd.addr.eq(idx), self.out.eq(acc)]
        m.d.sync += acc.eq(acc ^ rd.data)
        return m


def test_rom_decoded_from_registers(tmp_path):
    """With the plain counter Yosys puts the increment in front of the ROM's decoder;
    with ``rom_counter`` the ROM is shallower and smaller."""
    plain, succ = (synthesize(verilog.convert(_RomReader(s), name="top"), "top", "xc7",
                              cache_dir=tmp_path, use_cache=False) for s in (False, True))
    print(f"200 x 24 ROM: plain counter {plain.lut} LUT, {plain.logic_levels} levels; "
          f"rom_counter {succ.lut} LUT, {succ.logic_levels} levels")
    assert succ.logic_levels <= 4 < plain.logic_levels, (succ.critical_path, plain.critical_path)
    assert succ.lut < plain.lut
