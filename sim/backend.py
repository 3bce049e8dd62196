"""The AXI ports of the generated top in cocotb, and the host driver's backend on them.

The agents are cocotbext-axi's (``AxiLiteMaster`` on ``s_axi_*``, ``AxiStreamSource`` on
``s_axis_*``, ``AxiStreamSink`` on ``m_axis_*``), with their pause generators drawn from
:func:`sim.beats.pauses`; :class:`AxisChecker` adds the stream-rule check
(:class:`sim.beats.HoldRule`) on the output, which cocotbext-axi does not make.

:class:`SimBackend` implements :class:`hdl.host.driver.Backend` on these ports, so that
the very :class:`hdl.host.driver.Accelerator` that drives a board through PYNQ drives the
Verilator simulation. The driver's methods are blocking, the simulation is not: run the
driver in a thread started with ``cocotb.task.bridge``; each backend call hands a
coroutine to the simulator with ``cocotb.task.resume`` and blocks until it is done::

    from cocotb.task import bridge
    from hdl.host.driver import Accelerator
    from sim.backend import SimBackend

    backend = SimBackend(dut, seed=1)            # after the clock is started

    def host():                                  # plain blocking code, in a thread
        return Accelerator(backend).run(codes)

    labels, scores = await bridge(host)()

Every backend call also exists as a coroutine (``await backend.read_reg_async(0)``) for
use directly from a cocotb test.
"""

from __future__ import annotations

import logging

import numpy as np

from sim.beats import HoldRule, ProtocolError, pauses
from sim.streams import handle

__all__ = ["axis_source", "axis_sink", "AxisChecker", "SimBackend", "cycle"]

PERIOD_NS = 10


def cycle(period_ns: float = PERIOD_NS) -> int:
    """The current clock cycle (simulation time / period)."""
    from cocotb.utils import get_sim_time
    return int(get_sim_time("ns") // period_ns)


def _signals(dut, clock: str, reset: str | None):
    return handle(dut, clock), (None if reset is None else handle(dut, reset))


def _quiet(dut, prefix: str) -> None:
    """cocotbext-axi logs every frame and transaction at INFO; keep warnings only."""
    logging.getLogger(f"cocotb.{dut._name}.{prefix}").setLevel(logging.WARNING)


def axis_source(dut, prefix: str = "s_axis", *, seed: int, gap_prob: float = 0.0,
                clock: str = "clk", reset: str | None = "rst", byte_size: int | None = None,
                with_last: bool = True):
    """cocotbext-axi ``AxiStreamSource`` on ``{prefix}_tdata/_tvalid/_tready/_tlast``.

    No new beat starts in a cycle where ``pauses(seed, gap_prob)`` says pause. Frames
    are bytes (default) or, with ``byte_size`` equal to the TDATA width, lists of words.
    ``with_last=False`` leaves TLAST alone (for a frame cut short on purpose).
    """
    from cocotbext.axi import AxiStreamBus, AxiStreamSource

    if with_last:
        bus = AxiStreamBus.from_prefix(dut, prefix)
    else:
        class NoLast(AxiStreamBus):
            _optional_signals = ["tvalid", "tready"]
        bus = NoLast.from_prefix(dut, prefix)
    _quiet(dut, prefix)
    clk, rst = _signals(dut, clock, reset)
    source = AxiStreamSource(bus, clk, rst, byte_size=byte_size)
    if gap_prob:
        source.set_pause_generator(pauses(seed, gap_prob))
    return source


def axis_sink(dut, prefix: str = "m_axis", *, seed: int, stall_prob: float = 0.0,
              clock: str = "clk", reset: str | None = "rst", byte_size: int | None = None):
    """cocotbext-axi ``AxiStreamSink`` on ``{prefix}_*``: TREADY low in a cycle where
    ``pauses(seed, stall_prob)`` says pause."""
    from cocotbext.axi import AxiStreamBus, AxiStreamSink

    _quiet(dut, prefix)
    clk, rst = _signals(dut, clock, reset)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, prefix), clk, rst, byte_size=byte_size)
    if stall_prob:
        sink.set_pause_generator(pauses(seed, stall_prob))
    return sink


class AxisChecker:
    """Passive check of an AXI-Stream port: the stream rule on (TDATA, TLAST), and the
    cycle of every TLAST transfer in ``ends``.

    Event-driven: it samples every cycle in the read-only phase while TVALID is high (or
    a beat is held) and otherwise sleeps until TVALID rises, so idle cycles cost no
    Python. While ``reset`` is high, nothing is checked (TVALID may fall).
    """

    def __init__(self, dut, prefix: str = "m_axis", *, clock: str = "clk",
                 reset: str | None = "rst"):
        import cocotb
        self.clock, self.reset = _signals(dut, clock, reset)
        self.tdata = handle(dut, f"{prefix}_tdata")
        self.tlast = handle(dut, f"{prefix}_tlast")
        self.tvalid = handle(dut, f"{prefix}_tvalid")
        self.tready = handle(dut, f"{prefix}_tready")
        self.rule = HoldRule(prefix, [f"{prefix}_tdata", f"{prefix}_tlast"])
        self.errors = self.rule.errors
        self.ends: list[int] = []
        self.open_beats = 0            # beats transferred since the last TLAST
        self._task = cocotb.start_soon(self._run())

    def check(self) -> None:
        """Raise :class:`ProtocolError` if the stream rule was broken."""
        self.rule.check()

    async def _run(self):
        from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
        falling, read_only = FallingEdge(self.clock), ReadOnly()
        while True:
            await falling
            await read_only
            if self.reset is not None and int(self.reset.value):
                self.rule.forget()
                self.open_beats = 0
                continue
            valid = int(self.tvalid.value)
            if not valid and not self.rule.holding:
                await RisingEdge(self.tvalid)
                continue
            beat = (int(self.tdata.value), int(self.tlast.value)) if valid else None
            if self.rule.observe(valid, beat, int(self.tready.value), f"cycle {cycle()}: "):
                self.open_beats += 1
                if beat[1]:
                    self.ends.append(cycle())
                    self.open_beats = 0


class SimBackend:
    """:class:`hdl.host.driver.Backend` on the ports of a simulated :class:`hdl.shell.axi.AxiTop`.

    A transfer is a batch of BATCH frames, TLAST at its end, each way. Pipelined (as a
    DMA with queued transfers): ``send_frame`` queues and returns, the output side
    collects whatever comes, so the driver keeps two batches in flight.

    Parameters
    ----------
    dut : cocotb handle
        The top with flat AXI ports (``s_axi_*``, ``s_axis_*``, ``m_axis_*``), ``clk`` and
        ``rst``. Start the clock before making it.
    seed : int
        Seeds the input gaps (``seed``) and output stalls (``seed + 1``).
    gap_prob, stall_prob : float
        Chance of a cycle without a new input beat / with TREADY low on the output (a
        busy DMA); 0 for free-running streams.
    timeout_cycles : int
        ``recv_frame`` raises :class:`ProtocolError` if no whole frame has arrived
        within that many cycles.
    """

    pipelined = True

    def __init__(self, dut, *, seed: int = 0, gap_prob: float = 0.0, stall_prob: float = 0.0,
                 clock: str = "clk", reset: str = "rst", timeout_cycles: int = 1_000_000):
        from cocotbext.axi import AxiLiteBus, AxiLiteMaster

        clk, rst = _signals(dut, clock, reset)
        self.clock = clk
        _quiet(dut, "s_axi")
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), clk, rst)
        self.source = axis_source(dut, "s_axis", seed=seed, gap_prob=gap_prob, clock=clock,
                                  reset=reset)
        self._cut = None               # a source without TLAST, made on first use
        self._args = dict(seed=seed, gap_prob=gap_prob, clock=clock, reset=reset)
        self._dut = dut
        self.sink = axis_sink(dut, "m_axis", seed=seed + 1, stall_prob=stall_prob,
                              clock=clock, reset=reset)
        self.checker = AxisChecker(dut, "m_axis", clock=clock, reset=reset)
        self.in_bytes = self.source.byte_lanes
        self.out_bytes = self.sink.byte_lanes
        self.timeout_cycles = timeout_cycles
        self._stale = 0                # beats of a cut output frame to drop (see clear)

    # --- coroutines ---------------------------------------------------------------------

    async def write_reg_async(self, offset: int, value: int) -> None:
        from cocotbext.axi import AxiResp
        resp = await self.lite.write(offset, int(value & 0xFFFFFFFF).to_bytes(4, "little"))
        if resp.resp != AxiResp.OKAY:
            raise ProtocolError(f"AXI4-Lite write to {offset:#x}: BRESP {resp.resp!r}")

    async def read_reg_async(self, offset: int) -> int:
        from cocotbext.axi import AxiResp
        resp = await self.lite.read(offset, 4)
        if resp.resp != AxiResp.OKAY:
            raise ProtocolError(f"AXI4-Lite read of {offset:#x}: RRESP {resp.resp!r}")
        return int.from_bytes(resp.data, "little")

    def _bytes(self, data) -> bytes:
        """A frame's bytes; integers outside 0..255 are refused, not wrapped."""
        arr = np.asarray(data)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"frame bytes must have an integer dtype, not {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"frame bytes must be in 0..255, not {int(arr.min())}..{int(arr.max())}")
        raw = np.ascontiguousarray(arr.astype(np.uint8).reshape(-1)).tobytes()
        if not raw or len(raw) % self.in_bytes:
            raise ValueError(f"a frame is a whole number of {self.in_bytes}-byte beats, "
                             f"not {len(raw)} bytes")
        return raw

    async def send_frame_async(self, data) -> None:
        """Queue a transfer's bytes (BATCH frames), TLAST on the last beat (returns at
        once, like a DMA)."""
        from cocotbext.axi import AxiStreamFrame
        await self.source.send(AxiStreamFrame(self._bytes(data)))

    async def send_cut_async(self, data) -> None:
        """Send bytes without TLAST (a frame cut short) once the queued frames are out;
        returns when they are all taken."""
        from cocotbext.axi import AxiStreamFrame
        await self.source.wait()
        if self._cut is None:
            self._cut = axis_source(self._dut, "s_axis", with_last=False, **self._args)
        await self._cut.send(AxiStreamFrame(self._bytes(data)))
        await self._cut.wait()

    async def recv_frame_async(self, nbytes: int | None = None, *,
                               timeout_cycles: int | None = None) -> np.ndarray:
        """The bytes of the next output transfer (up to TLAST: BATCH frames);
        :class:`ProtocolError` if it
        does not come within ``timeout_cycles`` (default: the backend's), has other than
        ``nbytes`` bytes, or the output broke the stream rule."""
        timeout = timeout_cycles or self.timeout_cycles
        if self.sink.empty():
            await self.sink.wait(timeout * PERIOD_NS, "ns")
        self.checker.check()
        if self.sink.empty():
            raise ProtocolError(f"m_axis: no TLAST within {timeout} cycles")
        frame = self.sink.recv_nowait()
        data = bytes(frame.tdata)[self._stale * self.out_bytes:]
        self._stale = 0
        out = np.frombuffer(data, dtype=np.uint8).copy()
        if nbytes is not None and out.size != nbytes:
            raise ProtocolError(f"m_axis: a frame of {out.size} bytes with TLAST, "
                                f"expected {nbytes} bytes")
        return out

    def clear(self) -> None:
        """Forget the output so far and any stream-rule error, after a reset (when an
        output frame may stop early and TVALID fall): the frames received, and the beats
        of a frame cut short, which the sink would put in front of the next frame."""
        self.sink.clear()
        self._stale = self.checker.open_beats
        self.checker.errors.clear()
        self.checker.rule.forget()

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
