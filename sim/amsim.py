"""Stream drivers for Amaranth's own simulator (``amaranth.sim``).

The cocotb counterparts are in ``sim.streams``; these drive a component's
``amaranth.lib.stream`` ports from async testbenches:

- :func:`feed` sends beats into an input port (``i``), idling before each beat with
  probability ``gap`` (seeded), and holds valid and payload until the transfer.
- :func:`drain` takes ``n`` beats from an output port (``o``), dropping ready with
  probability ``stall`` (seeded), and asserts the stream rule: once valid, valid and
  payload hold until the transfer. It fails on a timeout (a lost beat) too. Every
  assertion message names the seed.
- :func:`simulate` sets up the simulator, the clock and both testbenches.

With ``gap=0, stall=0`` the drivers run free (a beat offered every cycle, ready always
high), for throughput tests; :func:`drain` records the cycle of each output transfer.
"""

from __future__ import annotations

import random

from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = ["feed", "drain", "simulate", "default_max_cycles"]


def default_max_cycles(n_in: int, n_out: int) -> int:
    """A generous timeout for a run of ``n_in`` input and ``n_out`` output beats."""
    return 50 * (n_in + n_out) + 200


def _payload(beat):
    if isinstance(beat, int):
        return beat
    if hasattr(beat, "__iter__"):
        return [int(v) for v in beat]
    return int(beat)


async def feed(ctx, port, beats, *, rng: random.Random, gap: float = 0.3):
    """Send ``beats`` (ints or lane lists) into stream ``port`` (e.g. ``dut.i``).

    Before each beat the source idles one cycle at a time while ``rng.random() < gap``;
    then it raises valid with the beat and holds both until ready is seen.
    """
    for beat in beats:
        while gap and rng.random() < gap:
            await ctx.tick()
        ctx.set(port.payload, _payload(beat))
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)


async def drain(ctx, port, n: int, *, rng: random.Random, stall: float = 0.3, seed,
                max_cycles: int | None = None, raw: bool = False, cycles: list | None = None):
    """Take ``n`` beats from stream ``port`` (e.g. ``dut.o``); return their payloads.

    Each cycle ready is low with probability ``stall``. Asserts that a beat offered while
    ready is low stays valid with the same payload, and that all ``n`` beats arrive
    within ``max_cycles`` (default: :func:`default_max_cycles` of ``n``, ``n``).
    Payloads are lists of lane ints, or the whole payload as one int if ``raw``. The
    cycle (counted from the start of the drain) of each transfer is appended to
    ``cycles`` if given.
    """
    if max_cycles is None:
        max_cycles = default_max_cycles(n, n)
    got = []
    held = None
    cycle = 0
    while len(got) < n:
        assert cycle < max_cycles, f"seed {seed}: timeout after {len(got)}/{n} beats"
        ready = not (stall and rng.random() < stall)
        ctx.set(port.ready, ready)
        await ctx.delay(1e-9)
        valid = ctx.get(port.valid)
        if not valid:
            payload = None
        elif raw:
            payload = ctx.get(Value.cast(port.payload))
        else:
            payload = [int(v) for v in ctx.get(port.payload)]
        if held is not None:
            assert valid and payload == held, f"seed {seed}: output changed while held"
        if valid and ready:
            got.append(payload)
            if cycles is not None:
                cycles.append(cycle)
            held = None
        elif valid:
            held = payload
        await ctx.tick()
        cycle += 1
    return got


def simulate(dut, beats, n_out: int, *, seed: int, gap: float = 0.3, stall: float = 0.3,
             max_cycles: int | None = None, raw: bool = False):
    """Send ``beats`` into ``dut.i`` and take ``n_out`` beats from ``dut.o``.

    The source draws its gaps from ``random.Random(seed)``, the sink its stalls from
    ``random.Random(seed + 1)``. Returns ``(payloads, cycles)``: the output payloads
    (see :func:`drain`) and the cycle of each output transfer. ``max_cycles`` defaults
    to :func:`default_max_cycles` of the input and output beat counts.
    """
    beats = list(beats)
    if max_cycles is None:
        max_cycles = default_max_cycles(len(beats), n_out)
    got, cycles = [], []

    async def source(ctx):
        await feed(ctx, dut.i, beats, rng=random.Random(seed), gap=gap)

    async def sink(ctx):
        got.extend(await drain(ctx, dut.o, n_out, rng=random.Random(seed + 1), stall=stall,
                               seed=seed, max_cycles=max_cycles, raw=raw, cycles=cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return got, cycles
