"""cocotb agents for ``amaranth.lib.stream`` ports: source, sink, passive monitor.

The AXI ports of the generated top are driven by cocotbext-axi (:mod:`sim.backend`);
packing, stall patterns and the stream-rule check are shared with every driver through
:mod:`sim.beats` (re-exported here: ``pack``, ``unpack``, ``ProtocolError``).

Inside a cocotb test (started by :func:`sim.harness.run_cocotb`)::

    from sim.harness import seed
    from sim.streams import StreamSink, StreamSource, reset, start_clock

    start_clock(dut)                     # 10 ns clock on dut.clk
    await reset(dut)                     # dut.rst high for 2 cycles
    src = StreamSource(dut, "i", seed=seed())            # i__valid/i__ready/i__payload
    sink = StreamSink(dut, "o", seed=seed() + 1)         # o__valid/o__ready/o__payload
    cocotb.start_soon(src.send(words))                   # returns when all transferred
    got = await sink.receive(len(words), timeout_cycles=100 * len(words))
    await sink.expect_done()             # nothing more comes out, no protocol error

Throughput: with ``free_running=True`` on both ends, ``sink.last_cycle -
src.first_cycle`` is the cycle count from the first input transfer to the last output
transfer; ``CycleCounter.of(dut.clk).cycle`` is the current cycle.

Timing model: every agent drives its outputs just after the falling clock edge and
samples the handshake in the read-only phase before the rising edge, so a transfer
happens at the rising edge after a cycle where valid and ready were both high. One
task per clock (:class:`CycleCounter`) runs all agents, which keeps the Python cost per
simulated cycle low.

Randomness: each agent draws a :func:`sim.beats.pauses` pattern from its ``seed``:
``gap_prob`` is the chance that a source without a beat in flight offers none in a
cycle, ``stall_prob`` the chance that ready is low. ``free_running=True`` sets both to
zero. Put the seed in assertion messages; replay it with ``QNN_SEED=<seed>`` (see
:mod:`sim.harness`).

Protocol checks: :class:`StreamSink` and :class:`StreamMonitor` (passive: drives
nothing) check the DUT's output with :class:`sim.beats.HoldRule`; a violation is
recorded with its cycle and sim time and raised as :class:`ProtocolError` (an
``AssertionError``) from ``receive``, ``check`` and ``expect_done``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from sim.beats import HoldRule, ProtocolError, pack, pauses, unpack

__all__ = ["pack", "unpack", "ProtocolError", "start_clock", "reset", "CycleCounter",
           "StreamSource", "StreamSink", "StreamMonitor"]


def handle(dut, name: str):
    """``dut.<name>``; :class:`ProtocolError` naming the signal if the DUT lacks it."""
    try:
        return getattr(dut, name)
    except AttributeError:
        raise ProtocolError(f"the DUT has no signal {name!r}") from None


def _now_ns() -> float:
    from cocotb.utils import get_sim_time
    return get_sim_time("ns")


def _int(value, what: str) -> int:
    """Value of a signal as an unsigned int; ProtocolError for X/Z bits."""
    try:
        return int(value)
    except ValueError:
        raise ProtocolError(f"{what} has X/Z bits: {value}") from None


_domains: dict[int, "CycleCounter"] = {}


class CycleCounter:
    """The clock loop shared by all agents on one clock; counts cycles.

    ``CycleCounter.of(dut.clk).cycle`` is the number of the current cycle, counted from
    the first agent (or :func:`start_clock`) of the test; compare differences only.
    Cycle ``c`` starts at a falling edge and its handshakes transfer at the rising edge
    that ends it.
    """

    def __init__(self, clock):
        import cocotb
        self.clock = clock
        self.cycle = 0
        self._agents: list = []
        self._task = cocotb.start_soon(self._loop())

    async def _loop(self):
        from cocotb.triggers import FallingEdge, ReadOnly
        falling, read_only = FallingEdge(self.clock), ReadOnly()
        while True:
            await falling
            self.cycle += 1
            agents = list(self._agents)
            for agent in agents:
                agent._drive()
            await read_only
            for agent in agents:
                agent._sample()

    def _add(self, agent) -> None:
        self._agents.append(agent)

    def remove(self, agent) -> None:
        """Stop driving and sampling ``agent``."""
        if agent in self._agents:
            self._agents.remove(agent)

    @classmethod
    def of(cls, clock) -> "CycleCounter":
        """The counter of ``clock``, started on first use in the running test."""
        key = id(clock)
        counter = _domains.get(key)
        if counter is None or counter.clock is not clock or counter._task.done():
            counter = _domains[key] = cls(clock)
        return counter


def start_clock(dut, period_ns: float = 10, name: str = "clk"):
    """Start a free-running clock on ``dut.<name>`` (default ``clk``, 10 ns); returns it."""
    from cocotb.clock import Clock
    clk = handle(dut, name)
    clock = Clock(clk, period_ns, unit="ns")
    clock.start()
    CycleCounter.of(clk)     # loops of earlier tests are done and get replaced
    return clock


async def reset(dut, cycles: int = 2, name: str = "rst", clock: str = "clk",
                active_high: bool = True) -> None:
    """Hold ``dut.<name>`` active for ``cycles`` rising edges, then release it.

    Call after :func:`start_clock`. Release happens after a falling edge, so the DUT
    leaves reset cleanly at the next rising edge.
    """
    from cocotb.triggers import FallingEdge, RisingEdge
    rst = handle(dut, name)
    clk = handle(dut, clock)
    rst.value = 1 if active_high else 0
    for _ in range(cycles):
        await RisingEdge(clk)
    await FallingEdge(clk)
    rst.value = 0 if active_high else 1


class _Agent:
    """Handles of one stream (``valid``, ``ready``, data fields) on a shared clock loop."""

    def __init__(self, dut, valid: str, ready: str, data: Sequence[str], clock):
        self.dut = dut
        self.clock = handle(dut, clock) if isinstance(clock, str) else clock
        self.valid = handle(dut, valid)
        self.ready = handle(dut, ready)
        self.data = [handle(dut, d) for d in data]
        self.names = list(data)
        self.first_cycle = None        # cycle of the first transfer
        self.last_cycle = None         # cycle of the latest transfer
        self.counter = CycleCounter.of(self.clock)

    def _transferred(self) -> None:
        cycle = self.counter.cycle
        if self.first_cycle is None:
            self.first_cycle = cycle
        self.last_cycle = cycle


class _Source(_Agent):
    """Drives ``valid`` and the data fields, honours ``ready``; beats are tuples of ints
    (one per data field)."""

    def __init__(self, dut, valid: str, ready: str, data: Sequence[str], *, seed: int,
                 gap_prob: float, clock, free_running: bool):
        super().__init__(dut, valid, ready, data, clock)
        self.seed = seed
        self.pause = pauses(seed, 0.0 if free_running else gap_prob)
        self.sent = 0                  # beats transferred so far
        self._limits = [1 << len(h) for h in self.data]
        self._queue: deque = deque()
        self._pushed = 0               # beats queued so far
        self._waiters: list = []       # (target count, Event)
        self._current = None
        self._valid_out = 0
        self.valid.value = 0
        self.counter._add(self)

    def _drive(self) -> None:
        if self._current is not None:
            return
        if self._queue and not next(self.pause):
            self._current = self._queue.popleft()
            for h, v in zip(self.data, self._current):
                h.value = v
            if not self._valid_out:
                self.valid.value = self._valid_out = 1
        elif self._valid_out:
            self.valid.value = self._valid_out = 0

    def _sample(self) -> None:
        if self._current is None or not _int(self.ready.value, "ready"):
            return
        self._current = None
        self.sent += 1
        self._transferred()
        for target, event in list(self._waiters):
            if self.sent >= target:
                event.set()
                self._waiters.remove((target, event))

    def _enqueue(self, beats) -> int:
        for beat in beats:
            for v, limit, name in zip(beat, self._limits, self.names):
                if not 0 <= v < limit:
                    raise ValueError(f"{v:#x} does not fit in {name} "
                                     f"({limit.bit_length() - 1} bits, unsigned; use pack())")
            self._queue.append(beat)
            self._pushed += 1
        return self._pushed

    async def _wait_sent(self, target: int) -> None:
        from cocotb.triggers import Event
        if self.sent >= target:
            return
        event = Event()
        self._waiters.append((target, event))
        await event.wait()

    @property
    def idle(self) -> bool:
        """True when every queued beat was transferred."""
        return self.sent == self._pushed


class _Sink(_Agent):
    """Drives ``ready`` from a stall pattern (or watches it, ``passive``), collects
    beats on valid & ready, checks the stream rule."""

    def __init__(self, dut, valid: str, ready: str, data: Sequence[str], *, seed: int,
                 stall_prob: float, clock, free_running: bool, name: str,
                 passive: bool = False):
        super().__init__(dut, valid, ready, data, clock)
        self.name = name
        self.seed = seed
        self.pause = pauses(seed, 0.0 if free_running or passive else stall_prob)
        self.rule = HoldRule(name, self.names)
        self.errors = self.rule.errors
        self.received = 0              # beats transferred so far
        self._items: deque = deque()
        self._event = None             # set by the clock loop when a waiter may go on
        self._wanted = None
        self._got = False
        self._deadline = None
        self._ready_out = 0
        self.passive = passive
        if not passive:
            self.ready.value = 0
        self.counter._add(self)

    def _drive(self) -> None:
        if self.passive:
            return
        ready = 0 if next(self.pause) else 1
        if ready != self._ready_out:
            self.ready.value = self._ready_out = ready

    def _sample(self) -> None:
        self._collect()
        if self._event is not None:
            self._got = self._wanted()
            if self._got or self.errors or (self._deadline is not None
                                            and self.counter.cycle >= self._deadline):
                self._event.set()

    def _collect(self) -> None:
        where = f"cycle {self.counter.cycle} (t={_now_ns():g} ns): "
        try:
            valid = _int(self.valid.value, f"{self.name} valid")
            beat = tuple(_int(h.value, f"{self.name} {n}")
                         for h, n in zip(self.data, self.names)) if valid else None
            ready = (_int(self.ready.value, f"{self.name} ready") if self.passive
                     else self._ready_out)
        except ProtocolError as e:
            self.errors.append(where + str(e))
            return
        if self.rule.observe(valid, beat, ready, where):
            self.received += 1
            self._transferred()
            self._items.append(beat)

    def check(self) -> None:
        """Raise :class:`ProtocolError` if a protocol violation was seen."""
        self.rule.check()

    async def _wait_for(self, wanted, timeout_cycles: int | None, what) -> None:
        """Wait until ``wanted()`` holds; ProtocolError on a violation or the timeout.

        The clock loop checks ``wanted`` after sampling each cycle, so waiting costs
        nothing per received beat.
        """
        from cocotb.triggers import Event
        if timeout_cycles is not None and timeout_cycles <= 0:
            raise ValueError(f"timeout_cycles must be positive, not {timeout_cycles}")
        self.check()
        if wanted():
            return
        self._wanted = wanted
        self._got = False
        self._deadline = None if timeout_cycles is None else self.counter.cycle + timeout_cycles
        self._event = event = Event()
        try:
            await event.wait()
        finally:
            self._event = None
            self._deadline = None
        self.check()
        if not self._got:
            raise ProtocolError(f"{self.name}: timed out at cycle {self.counter.cycle} "
                                f"(t={_now_ns():g} ns) after {timeout_cycles} cycles "
                                f"waiting for {what()}")

    async def _take(self, n: int, timeout_cycles: int | None = None) -> list[tuple]:
        await self._wait_for(lambda: len(self._items) >= n, timeout_cycles,
                             lambda: f"{n} beats: received {len(self._items)} "
                                     f"({self.received} in all)")
        return [self._items.popleft() for _ in range(n)]

    async def receive(self, n: int, *, timeout_cycles: int | None = None) -> list[int]:
        """The next ``n`` payloads; :class:`ProtocolError` on a violation, or (with
        ``timeout_cycles``) if they have not all arrived within that many cycles."""
        return [beat[0] for beat in await self._take(n, timeout_cycles)]

    async def expect_done(self, cycles: int = 5) -> None:
        """Wait ``cycles`` cycles; then no beat may be left over and no rule broken."""
        from cocotb.triggers import RisingEdge
        for _ in range(cycles):
            await RisingEdge(self.clock)
        self.check()
        if self._items:
            raise ProtocolError(f"{self.name}: {len(self._items)} unexpected extra beats")

    @property
    def pending(self) -> int:
        """Beats received but not yet taken by ``receive``."""
        return len(self._items)


def _names(prefix: str, sep: str) -> tuple[str, str, list[str]]:
    return f"{prefix}{sep}valid", f"{prefix}{sep}ready", [f"{prefix}{sep}payload"]


class StreamSource(_Source):
    """Drive an ``amaranth.lib.stream`` input port ``{prefix}__valid/__payload``.

    Once valid is high, valid and payload hold until ``{prefix}__ready`` is seen high
    (transfer). Attributes ``sent``, ``first_cycle`` and ``last_cycle`` (cycle of the
    first/latest transfer) support throughput measurements.
    """

    def __init__(self, dut, prefix: str, *, seed: int, gap_prob: float = 0.3, clock="clk",
                 free_running: bool = False, sep: str = "__"):
        super().__init__(dut, *_names(prefix, sep), seed=seed, gap_prob=gap_prob,
                         clock=clock, free_running=free_running)

    async def send(self, words: Iterable[int]) -> None:
        """Queue the payload words and wait until all of them were transferred.

        Several ``send`` calls may overlap; beats go out in call order, back to back.
        """
        target = self._enqueue((int(w),) for w in words)
        await self._wait_sent(target)


class StreamSink(_Sink):
    """Receive from an ``amaranth.lib.stream`` output port ``{prefix}__valid/__payload``,
    ready low with probability ``stall_prob`` in each cycle."""

    def __init__(self, dut, prefix: str, *, seed: int, stall_prob: float = 0.3,
                 clock="clk", free_running: bool = False, sep: str = "__"):
        super().__init__(dut, *_names(prefix, sep), seed=seed, stall_prob=stall_prob,
                         clock=clock, free_running=free_running, name=prefix)


class StreamMonitor(_Sink):
    """Watch a stream without driving it: records transfers and checks the rule.

    For streams whose ready is driven by the DUT or another agent, e.g. a layer boundary
    inside a network (``dut.<hierarchy>`` handles work as ``dut``) or an output also
    driven by a :class:`StreamSink`. ``receive`` works as on :class:`StreamSink`.
    """

    def __init__(self, dut, prefix: str, *, clock="clk", sep: str = "__"):
        super().__init__(dut, *_names(prefix, sep), seed=0, stall_prob=0.0, clock=clock,
                         free_running=True, name=prefix, passive=True)
