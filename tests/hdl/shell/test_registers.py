"""The AXI4-Lite register block in Amaranth's simulator."""

import random

import pytest
from amaranth.sim import Simulator

from hdl.shell import regmap
from hdl.shell.registers import AXI4LiteRegisters, AXI4LiteSignature
from hdl.shell.regmap import REGISTER_MAP, REGISTERS, RegisterValues

from tests.hdl.shell.axibench import lite_read, lite_write


class _Bus:
    """Flat s_axi_* view of the register block's ``bus`` port."""

    def __init__(self, regs):
        self.regs = regs

    def __getattr__(self, name):
        return getattr(self.regs.bus, name[len("s_axi_"):])


def test_registers_read_write_and_counters():
    regs = AXI4LiteRegisters(RegisterValues(ident=0x12345678, version=0x00020003,
                                            in_elements=64, classes=10, in_format=0x04040108))
    bus = _Bus(regs)
    rng = random.Random(1)
    seen = {}

    async def bench(ctx):
        assert await lite_read(ctx, bus, REGISTERS["ID"]) == 0x12345678
        assert await lite_read(ctx, bus, REGISTERS["VERSION"]) == 0x00020003
        assert await lite_read(ctx, bus, REGISTERS["IN_ELEMENTS"]) == 64
        assert await lite_read(ctx, bus, REGISTERS["CLASSES"]) == 10
        assert await lite_read(ctx, bus, REGISTERS["IN_FORMAT"]) == 0x04040108
        assert await lite_read(ctx, bus, 0x3C) == 0                  # unmapped
        assert await lite_read(ctx, bus, REGISTERS["STATUS"]) == 0
        # 5 busy cycles, 3 frames, one error of each kind
        ctx.set(regs.busy, 1)
        await ctx.tick().repeat(5)
        ctx.set(regs.busy, 0)
        for sig in (regs.frame_done, regs.frame_done, regs.frame_done, regs.err_short,
                    regs.err_long):
            ctx.set(sig, 1)
            await ctx.tick()
            ctx.set(sig, 0)
        assert await lite_read(ctx, bus, REGISTERS["CYCLES"]) == 5
        assert await lite_read(ctx, bus, REGISTERS["FRAMES_DONE"]) == 3
        assert await lite_read(ctx, bus, REGISTERS["STATUS"]) == (
            regmap.STATUS_ERR_SHORT | regmap.STATUS_ERR_LONG)
        ctx.set(regs.busy, 1)
        await ctx.tick()                    # busy is registered: STATUS lags a cycle
        assert await lite_read(ctx, bus, REGISTERS["STATUS"]) & regmap.STATUS_BUSY
        ctx.set(regs.busy, 0)
        # writes to read-only registers are ignored
        await lite_write(ctx, bus, REGISTERS["ID"], 0, rng)
        assert await lite_read(ctx, bus, REGISTERS["ID"]) == 0x12345678
        # a CONTROL write with byte 0 disabled does nothing
        await lite_write(ctx, bus, REGISTERS["CONTROL"], regmap.CONTROL_CLEAR, rng,
                         strb=0b1110)
        assert await lite_read(ctx, bus, REGISTERS["FRAMES_DONE"]) == 3
        await lite_write(ctx, bus, REGISTERS["CONTROL"], regmap.CONTROL_CLEAR, rng)
        for name in ("FRAMES_DONE", "CYCLES", "STATUS", "CONTROL"):
            assert await lite_read(ctx, bus, REGISTERS[name]) == 0, name
        # BATCH: reset value 1, 16 bits, 0 stores 1, needs WSTRB bits 0 and 1
        assert await lite_read(ctx, bus, REGISTERS["BATCH"]) == 1
        await lite_write(ctx, bus, REGISTERS["BATCH"], 0x1_0140, rng)
        assert await lite_read(ctx, bus, REGISTERS["BATCH"]) == 0x140
        assert ctx.get(regs.batch) == 0x140
        await lite_write(ctx, bus, REGISTERS["BATCH"], 7, rng, strb=0b0001)
        assert await lite_read(ctx, bus, REGISTERS["BATCH"]) == 0x140
        await lite_write(ctx, bus, REGISTERS["BATCH"], 0, rng)
        assert await lite_read(ctx, bus, REGISTERS["BATCH"]) == 1
        seen["done"] = True

    async def watch_reset(ctx):
        async for _, _, pulse in ctx.tick().sample(regs.soft_reset):
            if pulse:
                seen["reset"] = seen.get("reset", 0) + 1

    async def reset_bench(ctx):
        while "done" not in seen:
            await ctx.tick()
        await lite_write(ctx, bus, REGISTERS["CONTROL"], regmap.CONTROL_SOFT_RESET, rng)
        await ctx.tick().repeat(3)
        seen["after"] = True

    sim = Simulator(regs)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(reset_bench)
    sim.add_testbench(watch_reset, background=True)
    sim.run()
    assert seen.get("after") and seen.get("reset") == 1


def test_every_table_register_decodes():
    """Each readable register of the table reads its value at its offset (the decode is
    built from the table); the write-only CONTROL and the gaps read 0."""
    values = RegisterValues(ident=0xA1, version=0xB2, in_elements=0xC3, classes=0xD4,
                            in_format=0xE5)
    regs = AXI4LiteRegisters(values)
    bus = _Bus(regs)
    got = {}

    async def bench(ctx):
        for offset in range(0, 0x40, 4):
            got[offset] = await lite_read(ctx, bus, offset)

    sim = Simulator(regs)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = {offset: 0 for offset in range(0, 0x40, 4)}
    for r in REGISTER_MAP:
        if "R" in r.access and hasattr(values, r.source):
            want[r.offset] = getattr(values, r.source)
    want[REGISTERS["BATCH"]] = 1                                       # its reset value
    assert got == want


def test_signature_checks():
    with pytest.raises(ValueError, match="AXI4-Lite data width must be 32 or 64, not 16"):
        AXI4LiteSignature(12, 16)
