"""The host driver's backend on a cocotb simulation of the whole accelerator.

:class:`SimBackend` implements :class:`hdl.host.driver.Backend` against the ports of
:class:`hdl.shell.axi.AxiTop` in a running cocotb test, so that the very
:class:`hdl.host.driver.Accelerator` that drives a board through PYNQ drives the Verilator
simulation:

* ``write_reg`` / ``read_reg``: AXI4-Lite transactions on ``s_axi_*``
  (:class:`AxiLiteMaster`);
* ``send_frame``: the frame's bytes become little-endian TDATA words queued on
  ``s_axis_*`` (:class:`AxisWriter`), TLAST on the last; it returns at once, like a DMA
  transfer that has been started;
* ``recv_frame``: the beats up to the next TLAST from ``m_axis_*``
  (:class:`AxisReader`), as bytes.

The stream agents here are event-driven: they wake every cycle only while they have
beats to send or the accelerator offers output, and otherwise sleep on a value change,
so a simulated frame costs the simulator's time for the thousands of cycles in which
the network computes, not a Python call per cycle (the agents of :mod:`sim.streams`
run every cycle). They follow the same timing: drive after the falling edge, sample
the handshake in the read-only phase.

The driver's methods are blocking, the simulation is not: run the driver in a thread
started with ``cocotb.task.bridge`` (cocotb 2's name for ``external``); each backend call
then hands a coroutine to the simulator with ``cocotb.task.resume`` (formerly
``function``) and blocks until it is done::

    from cocotb.task import bridge
    from hdl.host.driver import Accelerator
    from sim.backend import SimBackend

    backend = SimBackend(dut, seed=1)            # after start_clock(dut), reset(dut)

    def host():                                  # plain blocking code, in a thread
        acc = Accelerator(backend)
        return acc.run(codes)

    labels, scores = await bridge(host)()

Every backend call also exists as a coroutine (``await backend.read_reg_async(0)``) for
use directly from a cocotb test.
"""

from __future__ import annotations

import numpy as np

import random
from collections import deque

from sim.streams import ProtocolError, _handle

__all__ = ["AxiLiteMaster", "AxisWriter", "AxisReader", "SimBackend", "cycle"]


class AxiLiteMaster:
    """A minimal AXI4-Lite master on ``{prefix}awaddr`` ... ``{prefix}rready``.

    One transaction at a time. Signals are driven after the falling clock edge and the
    handshakes sampled in the read-only phase before the rising edge (the timing of
    :mod:`sim.streams`). A write presents address and data together; a response other
    than OKAY raises :class:`ProtocolError`, as does a missing answer within
    ``timeout_cycles``.
    """

    _OUT = ("awaddr", "awprot", "awvalid", "wdata", "wstrb", "wvalid", "bready",
            "araddr", "arprot", "arvalid", "rready")
    _IN = ("awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rvalid")

    def __init__(self, dut, prefix: str = "s_axi_", *, clock: str = "clk",
                 timeout_cycles: int = 1000):
        self.clock = _handle(dut, clock)
        self.sig = {n: _handle(dut, prefix + n) for n in self._OUT + self._IN}
        self.timeout_cycles = timeout_cycles
        for n in self._OUT:
            self.sig[n].value = 0

    async def _wait(self, done, what: str) -> None:
        """Wait, a cycle at a time, until ``done()`` holds in a read-only phase."""
        from cocotb.triggers import FallingEdge, ReadOnly
        for _ in range(self.timeout_cycles):
            await ReadOnly()
            if done():
                return
            await FallingEdge(self.clock)
        raise ProtocolError(f"AXI4-Lite: no {what} within {self.timeout_cycles} cycles")

    async def write(self, addr: int, value: int, strb: int = 0xF) -> None:
        from cocotb.triggers import FallingEdge
        s = self.sig
        await FallingEdge(self.clock)
        s["awaddr"].value, s["awvalid"].value = addr, 1
        s["wdata"].value, s["wstrb"].value, s["wvalid"].value = value & 0xFFFFFFFF, strb, 1
        s["bready"].value = 1
        pending = {"aw", "w"}

        def accepted():
            for ch in list(pending):
                if int(s[f"{ch}ready"].value):
                    pending.discard(ch)
            return not pending

        await self._wait(accepted, "AWREADY/WREADY")
        await FallingEdge(self.clock)
        s["awvalid"].value = s["wvalid"].value = 0
        await self._wait(lambda: int(s["bvalid"].value), "BVALID")
        resp = int(s["bresp"].value)
        await FallingEdge(self.clock)
        s["bready"].value = 0
        if resp:
            raise ProtocolError(f"AXI4-Lite write to {addr:#x}: BRESP {resp}")

    async def read(self, addr: int) -> int:
        from cocotb.triggers import FallingEdge
        s = self.sig
        await FallingEdge(self.clock)
        s["araddr"].value, s["arvalid"].value, s["rready"].value = addr, 1, 1
        await self._wait(lambda: int(s["arready"].value), "ARREADY")
        await FallingEdge(self.clock)
        s["arvalid"].value = 0
        await self._wait(lambda: int(s["rvalid"].value), "RVALID")
        data, resp = int(s["rdata"].value), int(s["rresp"].value)
        await FallingEdge(self.clock)
        s["rready"].value = 0
        if resp:
            raise ProtocolError(f"AXI4-Lite read of {addr:#x}: RRESP {resp}")
        return data


def cycle(period_ns: float = 10) -> int:
    """The current clock cycle (simulation time / period)."""
    from cocotb.utils import get_sim_time
    return int(get_sim_time("ns") // period_ns)


class AxisWriter:
    """AXI-Stream master on ``{prefix}tdata/tlast/tvalid/tready``, event-driven.

    ``push(beats)`` queues ``(tdata, tlast)`` tuples and returns; the writer sends them
    in order, idling before each beat with probability ``gap_prob``. ``sent`` counts
    transfers; ``await drained()`` waits until the queue is empty.
    """

    def __init__(self, dut, prefix: str = "s_axis_", *, seed: int, gap_prob: float = 0.0,
                 clock: str = "clk"):
        import cocotb
        from cocotb.triggers import Event
        self.clock = _handle(dut, clock)
        self.tdata, self.tlast = _handle(dut, prefix + "tdata"), _handle(dut, prefix + "tlast")
        self.tvalid, self.tready = _handle(dut, prefix + "tvalid"), _handle(dut, prefix + "tready")
        self.rng, self.gap_prob = random.Random(seed), gap_prob
        self.queue: deque = deque()
        self.sent = 0
        self._wake, self._idle = Event(), Event()
        self._idle.set()
        self.tvalid.value = 0
        self._task = cocotb.start_soon(self._run())

    def push(self, beats) -> None:
        self.queue.extend(beats)
        if self.queue:
            self._idle.clear()
            self._wake.set()

    def clear(self) -> None:
        """Forget the beats not yet sent (the one on the bus, if any, still goes)."""
        self.queue.clear()

    async def drained(self) -> None:
        await self._idle.wait()

    async def _run(self):
        from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly
        while True:
            if not self.queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            gaps = 0
            while self.gap_prob and self.rng.random() < self.gap_prob:
                gaps += 1
            await FallingEdge(self.clock)
            if gaps:
                self.tvalid.value = 0
                await ClockCycles(self.clock, gaps, rising=False)
            tdata, tlast = self.queue.popleft()
            self.tdata.value, self.tlast.value, self.tvalid.value = tdata, tlast, 1
            while True:
                await ReadOnly()
                if int(self.tready.value):
                    break
                await FallingEdge(self.clock)
            self.sent += 1
            if not self.queue:
                await FallingEdge(self.clock)
                self.tvalid.value = 0


class AxisReader:
    """AXI-Stream slave on ``{prefix}tdata/tlast/tvalid/tready``, event-driven.

    TREADY is low with probability ``stall_prob`` in each cycle in which TVALID is high
    (it rests high otherwise). Checks the stream rule that a beat once offered stays,
    unchanged, until taken. ``await frame()`` returns the beats up to the next TLAST;
    ``ends`` holds the cycle of every TLAST transfer.
    """

    def __init__(self, dut, prefix: str = "m_axis_", *, seed: int, stall_prob: float = 0.0,
                 clock: str = "clk"):
        import cocotb
        from cocotb.triggers import Event
        self.clock = _handle(dut, clock)
        self.tdata, self.tlast = _handle(dut, prefix + "tdata"), _handle(dut, prefix + "tlast")
        self.tvalid, self.tready = _handle(dut, prefix + "tvalid"), _handle(dut, prefix + "tready")
        self.rng, self.stall_prob = random.Random(seed), stall_prob
        self.beats: deque = deque()          # (tdata, tlast) received, not yet taken
        self.frames = 0                      # TLAST beats in ``beats``
        self.ends: list[int] = []
        self.errors: list[str] = []
        self._event = Event()
        self.tready.value = 1
        self._task = cocotb.start_soon(self._run())

    def clear(self) -> None:
        self.beats.clear()
        self.frames = 0

    def check(self) -> None:
        if self.errors:
            raise ProtocolError("m_axis: " + "; ".join(self.errors[:5]))

    async def _run(self):
        from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
        held = None
        while True:
            await FallingEdge(self.clock)
            if not int(self.tvalid.value):
                if held is not None:
                    self.errors.append(f"cycle {cycle()}: TVALID dropped without a transfer")
                    held = None
                self.tready.value = 1
                await RisingEdge(self.tvalid)
                continue
            ready = not (self.stall_prob and self.rng.random() < self.stall_prob)
            self.tready.value = int(ready)
            await ReadOnly()
            beat = (int(self.tdata.value), int(self.tlast.value))
            if held is not None and beat != held:
                self.errors.append(f"cycle {cycle()}: beat changed while held: {held} -> {beat}")
            if not ready:
                held = beat
                continue
            held = None
            self.beats.append(beat)
            if beat[1]:
                self.frames += 1
                self.ends.append(cycle())
                self._event.set()

    async def frame(self, timeout_cycles: int | None = None) -> list[int]:
        """TDATA of the beats up to and including the next one with TLAST."""
        from cocotb.triggers import ClockCycles, First
        self.check()
        deadline = None if timeout_cycles is None else cycle() + timeout_cycles
        while not self.frames:
            self._event.clear()
            if deadline is None:
                await self._event.wait()
            else:
                left = deadline - cycle()
                if left <= 0:
                    raise ProtocolError(f"m_axis: no TLAST within {timeout_cycles} cycles "
                                        f"({len(self.beats)} beats received)")
                await First(self._event.wait(), ClockCycles(self.clock, left))
            self.check()
        out = []
        while True:
            tdata, tlast = self.beats.popleft()
            out.append(tdata)
            if tlast:
                self.frames -= 1
                return out


def _frame_bytes(data) -> np.ndarray:
    """A frame's bytes as a flat uint8 array; integers outside 0..255 are refused, not wrapped."""
    arr = np.asarray(data)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"frame bytes must have an integer dtype, not {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise ValueError(f"frame bytes must be in 0..255, not {int(arr.min())}..{int(arr.max())}")
    return np.ascontiguousarray(arr.astype(np.uint8).reshape(-1))


class SimBackend:
    """:class:`hdl.host.driver.Backend` on the ports of a simulated :class:`hdl.shell.axi.AxiTop`.

    Parameters
    ----------
    dut : cocotb handle
        The top with flat AXI ports (``s_axi_*``, ``s_axis_*``, ``m_axis_*``) and ``clk``.
        Start the clock before making it.
    seed : int
        Seeds the input gaps and output stalls (``gap_prob``, ``stall_prob``).
    gap_prob, stall_prob : float
        Chance of an idle cycle before each input beat / of TREADY low in each cycle on
        the output (a busy DMA); 0 for free-running streams.
    in_width, out_width : int
        TDATA bits of the input and output streams (32 or 64).
    timeout_cycles : int
        ``recv_frame`` raises :class:`ProtocolError` if a frame's TLAST beat has not
        arrived within that many cycles.
    """

    def __init__(self, dut, *, seed: int = 0, gap_prob: float = 0.0, stall_prob: float = 0.0,
                 in_width: int = 32, out_width: int = 32, clock: str = "clk",
                 timeout_cycles: int = 1_000_000):
        self.lite = AxiLiteMaster(dut, clock=clock)
        self.writer = AxisWriter(dut, seed=seed, gap_prob=gap_prob, clock=clock)
        self.reader = AxisReader(dut, seed=seed + 1, stall_prob=stall_prob, clock=clock)
        self.in_bytes, self.out_bytes = in_width // 8, out_width // 8
        self.timeout_cycles = timeout_cycles

    def beats(self, data) -> list[int]:
        """A frame's bytes as TDATA words (little-endian)."""
        raw = _frame_bytes(data)
        if raw.size == 0 or raw.size % self.in_bytes:
            raise ValueError(f"a frame is a whole number of {self.in_bytes}-byte beats, "
                             f"not {raw.size} bytes")
        return [int.from_bytes(raw[k:k + self.in_bytes].tobytes(), "little")
                for k in range(0, raw.size, self.in_bytes)]

    # --- coroutines ---------------------------------------------------------------------

    async def write_reg_async(self, offset: int, value: int) -> None:
        await self.lite.write(offset, value)

    async def read_reg_async(self, offset: int) -> int:
        return await self.lite.read(offset)

    async def send_frame_async(self, data) -> None:
        """Queue the frame's beats (returns before they are all taken, like a DMA)."""
        words = self.beats(data)
        self.writer.push((w, int(k == len(words) - 1)) for k, w in enumerate(words))

    async def recv_frame_async(self, nbytes: int) -> np.ndarray:
        beats = await self.reader.frame(timeout_cycles=self.timeout_cycles)
        out = b"".join(int(b).to_bytes(self.out_bytes, "little") for b in beats)
        if len(out) != nbytes:
            raise ProtocolError(f"m_axis: a frame of {len(beats)} beats ({len(out)} bytes) "
                                f"with TLAST, expected {nbytes} bytes")
        return np.frombuffer(out, dtype=np.uint8).copy()

    # --- the blocking Backend protocol (call from a cocotb.task.bridge thread) -----------

    def write_reg(self, offset: int, value: int) -> None:
        from cocotb.task import resume
        resume(self.write_reg_async)(offset, value)

    def read_reg(self, offset: int) -> int:
        from cocotb.task import resume
        return resume(self.read_reg_async)(offset)

    def send_frame(self, data: np.ndarray) -> None:
        from cocotb.task import resume
        resume(self.send_frame_async)(data)

    def recv_frame(self, nbytes: int) -> np.ndarray:
        from cocotb.task import resume
        return resume(self.recv_frame_async)(nbytes)
