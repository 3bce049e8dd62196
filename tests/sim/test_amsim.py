"""sim.amsim: the Amaranth-simulator stream drivers pass a correct register stage and
catch broken ones (payload or valid changing while held, a dropped beat)."""

import random

import pytest
from amaranth.hdl import Module, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sim import amsim


class Pipe(wiring.Component):
    """One register stage between ``i`` and ``o``; ``fault`` breaks it on purpose:

    - ``"none"``: correct.
    - ``"payload"``: the payload counts up while the output is stalled.
    - ``"valid"``: valid drops while the output is stalled (the beat is lost).
    - ``"drop"``: every second input beat is accepted but never offered.
    """

    def __init__(self, fault="none", shape=unsigned(8)):
        self.fault = fault
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        keep = Signal(init=1)
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        with m.If(self.i.ready):
            m.d.sync += self.o.payload.eq(self.i.payload)
            if self.fault == "drop":
                m.d.sync += self.o.valid.eq(self.i.valid & keep)
                with m.If(self.i.valid):
                    m.d.sync += keep.eq(~keep)
            else:
                m.d.sync += self.o.valid.eq(self.i.valid)
        with m.Else():
            if self.fault == "payload":
                m.d.sync += self.o.payload.eq(Value.cast(self.o.payload) + 1)
            elif self.fault == "valid":
                m.d.sync += self.o.valid.eq(0)
        return m


BEATS = list(range(1, 41))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_correct_stage_passes(seed):
    got, cycles = amsim.simulate(Pipe(), BEATS, len(BEATS), seed=seed, raw=True)
    assert got == BEATS
    assert cycles == sorted(set(cycles)), cycles


def test_free_running_one_beat_per_cycle():
    got, cycles = amsim.simulate(Pipe(), BEATS, len(BEATS), seed=0, gap=0, stall=0, raw=True)
    assert got == BEATS
    assert cycles == list(range(cycles[0], cycles[0] + len(BEATS))), cycles


def test_lane_payloads():
    """ArrayLayout payloads come back as lists of lane values."""
    dut = Pipe(shape=data.ArrayLayout(unsigned(4), 2))
    beats = [[a, b] for a in range(4) for b in range(3)]
    got, _ = amsim.simulate(dut, beats, len(beats), seed=4)
    assert got == beats


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # source left in until()
@pytest.mark.parametrize("fault, what", [
    ("payload", "payload changed while valid was held without a transfer"),
    ("valid", "valid dropped without a transfer"),
])
def test_change_while_held_is_caught(fault, what):
    with pytest.raises(AssertionError, match=rf"seed 7: stream protocol violated: cycle \d+: {what}"):
        amsim.simulate(Pipe(fault), BEATS, len(BEATS), seed=7, raw=True)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_dropped_beat_is_caught():
    with pytest.raises(AssertionError, match=r"seed 5: timeout after 20/40 beats"):
        amsim.simulate(Pipe("drop"), BEATS, len(BEATS), seed=5, raw=True)


def test_feed_and_drain_separately():
    """The drivers used in a hand-written testbench, with the cycle list."""
    dut = Pipe()
    got, cycles = [], []

    async def source(ctx):
        await amsim.feed(ctx, dut.i, BEATS, rng=random.Random(9), gap=0.5)

    async def sink(ctx):
        got.extend(await amsim.drain(ctx, dut.o, len(BEATS), rng=random.Random(10),
                                     stall=0.5, seed=9, raw=True, cycles=cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert got == BEATS
    assert len(cycles) == len(BEATS) and cycles[-1] >= 2 * len(BEATS) * 0.5
