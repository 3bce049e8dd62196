"""Stream drivers for Amaranth's own simulator (``amaranth.sim``).

The cocotb counterparts are in :mod:`sim.streams`; both draw their stall patterns from
:func:`sim.beats.pauses` and check the stream rule with :class:`sim.beats.HoldRule`.
These drive a component's ``amaranth.lib.stream`` ports from async testbenches:

- :func:`feed` sends beats into an input port (``i``); in a cycle without a beat in
  flight it offers none while the pattern says pause (probability ``gap``); an offered
  beat holds until the transfer.
- :func:`drain` takes ``n`` beats from an output port (``o``), ready low with
  probability ``stall`` in each cycle, and fails (naming the seed) when the output
  breaks the stream rule or a beat does not arrive within ``max_cycles``.
- :func:`simulate` sets up the simulator, the clock and both testbenches.

With ``gap=0, stall=0`` the drivers run free (a beat offered every cycle, ready always
high), for throughput tests; :func:`drain` records the cycle of each output transfer.
"""

from __future__ import annotations

import random

from amaranth.hdl import Value
from amaranth.sim import Simulator

from sim.beats import HoldRule, ProtocolError, default_max_cycles, pauses

__all__ = ["feed", "drain", "simulate", "default_max_cycles"]


def _payload(beat):
    if isinstance(beat, int):
        return beat
    if hasattr(beat, "__iter__"):
        return [int(v) for v in beat]
    return int(beat)


async def feed(ctx, port, beats, *, rng: random.Random | int, gap: float = 0.3):
    """Send ``beats`` (ints or lane lists) into stream ``port`` (e.g. ``dut.i``).

    ``rng`` (a ``random.Random`` or a seed) drives :func:`sim.beats.pauses` with
    probability ``gap``: no new beat is offered in a paused cycle.
    """
    pause = pauses(rng, gap)
    for beat in beats:
        while next(pause):
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.payload, _payload(beat))
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def drain(ctx, port, n: int, *, rng: random.Random | int, stall: float = 0.3, seed,
                max_cycles: int | None = None, raw: bool = False, cycles: list | None = None):
    """Take ``n`` beats from stream ``port`` (e.g. ``dut.o``); return their payloads.

    Ready is low in a cycle where :func:`sim.beats.pauses` (from ``rng``, probability
    ``stall``) says pause. Raises :class:`sim.beats.ProtocolError` naming ``seed`` when
    the output breaks the stream rule or not all ``n`` beats arrive within
    ``max_cycles`` (default: :func:`sim.beats.default_max_cycles` of ``n``, ``n``).
    Payloads are lists of lane ints, or the whole payload as one int if ``raw``. The
    cycle (counted from the start of the drain) of each transfer is appended to
    ``cycles`` if given.
    """
    if max_cycles is None:
        max_cycles = default_max_cycles(n, n)
    pause = pauses(rng, stall)
    rule = HoldRule(f"seed {seed}")
    got = []
    cycle = 0
    while len(got) < n:
        if cycle >= max_cycles:
            raise ProtocolError(f"seed {seed}: timeout after {len(got)}/{n} beats")
        ready = not next(pause)
        ctx.set(port.ready, ready)
        await ctx.delay(1e-9)
        valid = ctx.get(port.valid)
        payload = None
        if valid:
            payload = (ctx.get(Value.cast(port.payload)) if raw
                       else [int(v) for v in ctx.get(port.payload)])
        if rule.observe(valid, payload, ready, f"cycle {cycle}: "):
            got.append(payload)
            if cycles is not None:
                cycles.append(cycle)
        rule.check()
        await ctx.tick()
        cycle += 1
    return got


def simulate(dut, beats, n_out: int, *, seed: int, gap: float = 0.3, stall: float = 0.3,
             max_cycles: int | None = None, raw: bool = False):
    """Send ``beats`` into ``dut.i`` and take ``n_out`` beats from ``dut.o``.

    The source draws its pauses from seed ``seed``, the sink its stalls from
    ``seed + 1``. Returns ``(payloads, cycles)``: the output payloads (see
    :func:`drain`) and the cycle of each output transfer. ``max_cycles`` defaults to
    :func:`sim.beats.default_max_cycles` of the input and output beat counts.
    """
    beats = list(beats)
    if max_cycles is None:
        max_cycles = default_max_cycles(len(beats), n_out)
    got, cycles = [], []

    async def source(ctx):
        await feed(ctx, dut.i, beats, rng=seed, gap=gap)

    async def sink(ctx):
        got.extend(await drain(ctx, dut.o, n_out, rng=seed + 1, stall=stall, seed=seed,
                               max_cycles=max_cycles, raw=raw, cycles=cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return got, cycles
