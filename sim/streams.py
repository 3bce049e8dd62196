"""cocotb drivers and monitors for ``amaranth.lib.stream`` ports and AXI-Stream.

Payload packing (plain Python, no simulator needed)::

    word = pack([1, -2, 3], bits=4, lanes=3)        # lane 0 in the low bits
    unpack(word, bits=4, lanes=3, signed=True)      # -> [1, -2, 3]

Inside a cocotb test (started by :func:`sim.harness.run_cocotb`)::

    from sim.harness import seed
    from sim.streams import StreamSink, StreamSource, reset, start_clock

    start_clock(dut)                     # 10 ns clock on dut.clk
    await reset(dut)                     # dut.rst high for 2 cycles
    src = StreamSource(dut, "i", seed=seed())            # i__valid/i__ready/i__payload
    sink = StreamSink(dut, "o", seed=seed() + 1)         # o__valid/o__ready/o__payload
    cocotb.start_soon(src.send(words))                   # returns when all transferred
    got = await sink.receive(len(words), timeout_cycles=100 * len(words))
    # ProtocolError (an AssertionError) on a stream-rule violation or the timeout

AXI-Stream (``s_axis_tdata/_tvalid/_tready/_tlast``, or ``s_axis__tdata`` ... for an
Amaranth port; ``sep`` picks, auto-detected by default)::

    src = AxisSource(dut, "s_axis", seed=s)
    sink = AxisSink(dut, "m_axis", seed=s + 1)
    cocotb.start_soon(src.send(frame))                   # TLAST on the last beat
    got = await sink.receive_frame(timeout_cycles=1000)  # beats up to TLAST

Throughput: with ``free_running=True`` on both ends, ``sink.last_cycle -
src.first_cycle`` is the cycle count from the first input transfer to the last output
transfer; ``CycleCounter.of(dut.clk).cycle`` is the current cycle.

Timing model: every agent drives its outputs just after the falling clock edge and
samples the handshake in the read-only phase before the rising edge, so a transfer
happens at the rising edge after a cycle where valid and ready were both high. One
task per clock (:class:`CycleCounter`) runs all agents; ``agent.first_cycle`` and
``last_cycle`` are the cycles of the first and latest transfers (compare differences).

Randomness: each agent owns a ``random.Random(seed)``; ``gap_prob`` is the chance of
an idle cycle before each beat, ``stall_prob`` the chance that ready is low in a cycle.
``free_running=True`` sets both to zero, for throughput measurements. Print or put the
seed in assertion messages; replay a seed with ``QNN_SEED=<seed>`` (see
:mod:`sim.harness`).

Protocol checks: :class:`StreamSink`, :class:`StreamMonitor` (passive: drives nothing)
and :class:`AxisSink` check the DUT's output
against the stream rules: once valid is high it must stay high, with the same payload,
until a transfer. A violation is recorded with its cycle and sim time in
``sink.errors`` and raised as :class:`ProtocolError` (an ``AssertionError``) from
``receive`` and ``check``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Sequence

__all__ = ["pack", "unpack", "ProtocolError", "start_clock", "reset", "CycleCounter",
           "StreamSource", "StreamSink", "StreamMonitor", "AxisSource", "AxisSink"]


# --------------------------------------------------------------------------- packing

def pack(values: Iterable[int], bits: int, lanes: int) -> int:
    """Pack ``lanes`` integers into one ArrayLayout word, lane 0 in the low bits.

    Negative values are stored in two's complement; every value must fit in ``bits``
    bits as either unsigned or signed.
    """
    values = list(values)
    if len(values) != lanes:
        raise ValueError(f"expected {lanes} lane values, not {len(values)}")
    if bits <= 0:
        raise ValueError(f"bits must be positive, not {bits}")
    mask = (1 << bits) - 1
    word = 0
    for lane, v in enumerate(values):
        v = int(v)
        if not -(1 << (bits - 1)) <= v <= mask:
            raise ValueError(f"lane {lane} value {v} does not fit in {bits} bits")
        word |= (v & mask) << (lane * bits)
    return word


def unpack(word: int, bits: int, lanes: int, signed: bool = False) -> list[int]:
    """Split an ArrayLayout word into ``lanes`` integers (lane 0 from the low bits)."""
    word = int(word)
    if word < 0 or word >> (bits * lanes):
        raise ValueError(f"word {word:#x} does not fit in {lanes} lanes of {bits} bits")
    mask = (1 << bits) - 1
    out = []
    for lane in range(lanes):
        v = (word >> (lane * bits)) & mask
        if signed and v >> (bits - 1):
            v -= 1 << bits
        out.append(v)
    return out


# --------------------------------------------------------------------------- helpers

class ProtocolError(AssertionError):
    """The DUT broke the stream rules (or the harness was misused)."""


def _handle(dut, name: str, required: bool = True):
    try:
        return getattr(dut, name)
    except AttributeError:
        if required:
            raise ProtocolError(f"the DUT has no signal {name!r}") from None
        return None


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
    that ends it. One task per clock drives and samples every agent, which keeps the
    Python cost per simulated cycle low.
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
    clk = _handle(dut, name)
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
    rst = _handle(dut, name)
    clk = _handle(dut, clock)
    rst.value = 1 if active_high else 0
    for _ in range(cycles):
        await RisingEdge(clk)
    await FallingEdge(clk)
    rst.value = 0 if active_high else 1


# --------------------------------------------------------------------------- core agents

class _Source:
    """Drives ``valid`` and data signals, honours ``ready``. Beats are tuples of ints
    for ``data`` (in the order of the data handles)."""

    def __init__(self, dut, valid: str, ready: str, data: Sequence[str], *, seed: int,
                 gap_prob: float, clock, free_running: bool):
        if not 0 <= gap_prob < 1:
            raise ValueError(f"gap_prob must be in [0, 1), not {gap_prob}")
        self.dut = dut
        self.clock = _handle(dut, clock) if isinstance(clock, str) else clock
        self.valid = _handle(dut, valid)
        self.ready = _handle(dut, ready)
        self.data = [_handle(dut, d) for d in data]
        self.names = list(data)
        self.seed = seed
        self.rng = random.Random(seed)
        self.gap_prob = 0.0 if free_running else gap_prob
        self.sent = 0                  # beats transferred so far
        self.first_cycle = None        # cycle of the first transfer
        self.last_cycle = None         # cycle of the latest transfer
        self._queue: deque = deque()
        self._pushed = 0               # beats queued so far
        self._waiters: list = []       # (target count, Event)
        self._current = None
        self._valid_out = 0
        self.valid.value = 0
        self.counter = CycleCounter.of(self.clock)
        self.counter._add(self)

    def _drive(self) -> None:
        if self._current is None:
            if self._queue and not (self.gap_prob and self.rng.random() < self.gap_prob):
                self._current = self._queue.popleft()
                for handle, v in zip(self.data, self._current):
                    handle.value = v
                if not self._valid_out:
                    self.valid.value = self._valid_out = 1
            elif self._valid_out:
                self.valid.value = self._valid_out = 0

    def _sample(self) -> None:
        if self._current is None or not _int(self.ready.value, "ready"):
            return
        self._current = None
        self.sent += 1
        cycle = self.counter.cycle
        if self.first_cycle is None:
            self.first_cycle = cycle
        self.last_cycle = cycle
        for target, event in list(self._waiters):
            if self.sent >= target:
                event.set()
                self._waiters.remove((target, event))

    def _enqueue(self, beats) -> int:
        if not hasattr(self, "_limits"):
            self._limits = [1 << len(h) for h in self.data]
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


class _Sink:
    """Drives ``ready`` randomly, collects data on valid & ready, checks the protocol."""

    def __init__(self, dut, valid: str, ready: str, data: Sequence[str], *, seed: int,
                 stall_prob: float, clock, free_running: bool, name: str,
                 passive: bool = False):
        if not 0 <= stall_prob < 1:
            raise ValueError(f"stall_prob must be in [0, 1), not {stall_prob}")
        self.dut = dut
        self.name = name
        self.clock = _handle(dut, clock) if isinstance(clock, str) else clock
        self.valid = _handle(dut, valid)
        self.ready = _handle(dut, ready)
        self.data = [_handle(dut, d) for d in data]
        self.names = list(data)
        self.seed = seed
        self.rng = random.Random(seed)
        self.stall_prob = 0.0 if free_running else stall_prob
        self.received = 0              # beats transferred so far
        self.first_cycle = None        # cycle of the first transfer
        self.last_cycle = None         # cycle of the latest transfer
        self.errors: list[str] = []
        self._items: deque = deque()
        self._event = None             # set by the clock loop when a waiter may go on
        self._wanted = None
        self._got = False
        self._deadline = None
        self._ready_out = 0
        self._held = None              # beat offered without transfer in the last cycle
        self.passive = passive
        if not passive:
            self.ready.value = 0
        self.counter = CycleCounter.of(self.clock)
        self.counter._add(self)

    def _error(self, text: str) -> None:
        self.errors.append(f"{self.name}: cycle {self.counter.cycle} "
                           f"(t={_now_ns():g} ns): {text}")

    def _drive(self) -> None:
        if self.passive:
            return
        ready = 0 if (self.stall_prob and self.rng.random() < self.stall_prob) else 1
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
        held, self._held = self._held, None
        try:
            valid = _int(self.valid.value, f"{self.name} valid")
            if not valid:
                if held is not None:
                    self._error("valid dropped without a transfer")
                return
            beat = tuple(_int(h.value, f"{self.name} {n}")
                         for h, n in zip(self.data, self.names))
        except ProtocolError as e:
            self._error(str(e))
            return
        if held is not None and beat != held:
            changed = ", ".join(f"{n} {a:#x} -> {b:#x}" for n, a, b
                                in zip(self.names, held, beat) if a != b)
            self._error(f"payload changed while valid was held without a transfer "
                        f"({changed})")
        if self.passive:
            try:
                ready = _int(self.ready.value, f"{self.name} ready")
            except ProtocolError as e:
                self._error(str(e))
                return
        else:
            ready = self._ready_out
        if not ready:
            self._held = beat
            return
        self.received += 1
        cycle = self.counter.cycle
        if self.first_cycle is None:
            self.first_cycle = cycle
        self.last_cycle = cycle
        self._items.append(beat)

    def check(self) -> None:
        """Raise :class:`ProtocolError` if a protocol violation was seen."""
        if self.errors:
            more = f" (+{len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
            raise ProtocolError("stream protocol violated: " + "; ".join(self.errors[:5])
                                + more)

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

    async def _take_until(self, pred, timeout_cycles: int | None = None) -> list[tuple]:
        scanned = 0

        def wanted():
            nonlocal scanned
            while scanned < len(self._items):
                scanned += 1
                if pred(self._items[scanned - 1]):
                    return True
            return False

        await self._wait_for(wanted, timeout_cycles,
                             lambda: f"the end of a frame: received {len(self._items)} "
                                     "beats of it")
        out = []
        while True:
            beat = self._items.popleft()
            out.append(beat)
            if pred(beat):
                return out

    @property
    def pending(self) -> int:
        """Beats received but not yet taken by ``receive``."""
        return len(self._items)


# --------------------------------------------------------------------------- lib.stream

class StreamSource(_Source):
    """Drive an ``amaranth.lib.stream`` input port ``{prefix}__valid/__payload``.

    Once valid is high, valid and payload hold until ``{prefix}__ready`` is seen high
    (transfer). Before each beat an idle cycle is inserted with probability
    ``gap_prob`` (repeatedly), from ``random.Random(seed)``.

    Attributes ``sent``, ``first_cycle`` and ``last_cycle`` (cycle of the first/latest
    transfer) support throughput measurements.
    """

    def __init__(self, dut, prefix: str, *, seed: int, gap_prob: float = 0.3, clock="clk",
                 free_running: bool = False, sep: str = "__"):
        super().__init__(dut, f"{prefix}{sep}valid", f"{prefix}{sep}ready",
                         [f"{prefix}{sep}payload"], seed=seed, gap_prob=gap_prob,
                         clock=clock, free_running=free_running)

    async def send(self, words: Iterable[int]) -> None:
        """Queue the payload words and wait until all of them were transferred.

        Several ``send`` calls may overlap; beats go out in call order, back to back.
        """
        target = self._enqueue((int(w),) for w in words)
        await self._wait_sent(target)


class StreamSink(_Sink):
    """Receive from an ``amaranth.lib.stream`` output port ``{prefix}__valid/__payload``.

    Drives ``{prefix}__ready`` low with probability ``stall_prob`` in each cycle and
    checks the DUT's output against the stream rules (see the module docstring).
    """

    def __init__(self, dut, prefix: str, *, seed: int, stall_prob: float = 0.3,
                 clock="clk", free_running: bool = False, sep: str = "__"):
        super().__init__(dut, f"{prefix}{sep}valid", f"{prefix}{sep}ready",
                         [f"{prefix}{sep}payload"], seed=seed, stall_prob=stall_prob,
                         clock=clock, free_running=free_running, name=prefix)

    async def receive(self, n: int, *, timeout_cycles: int | None = None) -> list[int]:
        """Wait for the next ``n`` payloads; raise :class:`ProtocolError` on violations.

        With ``timeout_cycles``, raise :class:`ProtocolError` (naming how many beats
        arrived) if they have not all arrived within that many cycles.
        """
        return [beat[0] for beat in await self._take(n, timeout_cycles)]


class StreamMonitor(_Sink):
    """Watch a stream without driving it: records transfers and checks the rules.

    For streams whose ready is driven by the DUT or by another agent, e.g. a layer
    boundary inside a network (``dut.<hierarchy>`` handles work as ``dut``) or an output
    also driven by a :class:`StreamSink`. ``receive`` works as on :class:`StreamSink`.
    """

    def __init__(self, dut, prefix: str, *, clock="clk", sep: str = "__"):
        super().__init__(dut, f"{prefix}{sep}valid", f"{prefix}{sep}ready",
                         [f"{prefix}{sep}payload"], seed=0, stall_prob=0.0, clock=clock,
                         free_running=True, name=prefix, passive=True)

    async def receive(self, n: int, *, timeout_cycles: int | None = None) -> list[int]:
        """Wait for the next ``n`` transferred payloads."""
        return [beat[0] for beat in await self._take(n, timeout_cycles)]


# --------------------------------------------------------------------------- AXI-Stream

def _axis_names(dut, prefix: str, sep: str | None, with_last: bool):
    if sep is None:   # Amaranth flattening ("s_axis__tdata") or plain Verilog ("s_axis_tdata")
        sep = "__" if _handle(dut, f"{prefix}__tvalid", required=False) is not None else "_"
    names = {f: f"{prefix}{sep}{f}" for f in ("tdata", "tvalid", "tready", "tlast")}
    if not with_last:
        del names["tlast"]
    return names


class AxisSource(_Source):
    """Drive an AXI-Stream slave port ``{prefix}_tdata/_tvalid/_tready/_tlast``.

    ``sep`` is the separator between prefix and field (default: ``__`` if the DUT has
    ``{prefix}__tvalid``, else ``_``). ``with_last=False`` for ports without TLAST.
    """

    def __init__(self, dut, prefix: str = "s_axis", *, seed: int, gap_prob: float = 0.3,
                 clock="clk", free_running: bool = False, sep: str | None = None,
                 with_last: bool = True):
        n = _axis_names(dut, prefix, sep, with_last)
        data = [n["tdata"]] + ([n["tlast"]] if with_last else [])
        self.with_last = with_last
        super().__init__(dut, n["tvalid"], n["tready"], data, seed=seed, gap_prob=gap_prob,
                         clock=clock, free_running=free_running)

    async def send(self, frame: Iterable[int]) -> None:
        """Send one frame: TLAST is high on its last beat only; wait until transferred."""
        words = [int(w) for w in frame]
        if not words:
            raise ValueError("an AXI-Stream frame needs at least one beat")
        if self.with_last:
            beats = [(w, int(i == len(words) - 1)) for i, w in enumerate(words)]
        else:
            beats = [(w,) for w in words]
        await self._wait_sent(self._enqueue(beats))

    send_frame = send


class AxisSink(_Sink):
    """Receive from an AXI-Stream master port ``{prefix}_tdata/_tvalid/_tready/_tlast``."""

    def __init__(self, dut, prefix: str = "m_axis", *, seed: int, stall_prob: float = 0.3,
                 clock="clk", free_running: bool = False, sep: str | None = None,
                 with_last: bool = True):
        n = _axis_names(dut, prefix, sep, with_last)
        data = [n["tdata"]] + ([n["tlast"]] if with_last else [])
        self.with_last = with_last
        super().__init__(dut, n["tvalid"], n["tready"], data, seed=seed,
                         stall_prob=stall_prob, clock=clock, free_running=free_running,
                         name=prefix)

    async def receive_frame(self, *, timeout_cycles: int | None = None) -> list[int]:
        """Beats up to and including the next one with TLAST high (tdata values)."""
        if not self.with_last:
            raise ProtocolError("receive_frame needs TLAST (with_last=True)")
        return [b[0] for b in await self._take_until(lambda b: b[1], timeout_cycles)]

    async def receive(self, n: int, *, timeout_cycles: int | None = None) -> list[int]:
        """The next ``n`` tdata values, ignoring TLAST."""
        return [b[0] for b in await self._take(n, timeout_cycles)]
