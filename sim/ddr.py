"""A DDR read port for Amaranth's simulator: latency, bandwidth, stalls, AXI checks.

:class:`DdrModel` answers the AXI4 read master of a
:class:`hdl.engines.weightstream.WeightStream` (the ``axi`` member) from a byte image,
as an async testbench. Timing, in fabric clock cycles:

* a burst's first beat comes ``latency`` cycles after its address was accepted
  (:func:`port_timing` derives it and the bandwidth from a board's figures);
* the data channel carries at most ``bytes_per_cycle`` on average (a token bucket that
  holds at most one word, so a burst cannot go faster than the port);
* ``stall`` is the probability that ``arready`` or a data beat is held back in a cycle
  (refresh, other masters), drawn from :func:`sim.beats.pauses` so a seed repeats.

It checks the master: INCR bursts of the port's word size, no 4 KiB crossing, addresses
inside the image, the address held stable until accepted, and counts bytes and bursts.
"""

from __future__ import annotations

from collections import deque

from sim.beats import ProtocolError, pauses

__all__ = ["DdrModel", "ReadChannel", "port_timing"]


def port_timing(board, clock_mhz: float | None = None) -> tuple[int, float]:
    """``(latency cycles, bytes per cycle)`` of the board's HP port at the fabric clock."""
    mhz = clock_mhz or board.default_clock_mhz
    latency = max(1, round(board.ddr_latency_ns * mhz / 1e3))
    return latency, board.ddr_port_bytes_per_s(mhz) / (mhz * 1e6)


class DdrModel:
    """AXI4 read slave over ``image`` (bytes at byte address ``base``)."""

    def __init__(self, image: bytes, *, base: int = 0, data_width: int = 128, latency: int = 30,
                 bytes_per_cycle: float | None = None, stall: float = 0.0, seed: int = 0):
        if latency < 1:
            raise ValueError(f"latency must be at least 1 cycle, not {latency}")
        self.image, self.base = bytes(image), base
        self.data_width, self.word_bytes = data_width, data_width // 8
        self.latency = latency
        self.bytes_per_cycle = float(bytes_per_cycle or self.word_bytes)
        if self.bytes_per_cycle <= 0:
            raise ValueError(f"bytes_per_cycle must be positive, not {bytes_per_cycle}")
        self.stall, self.seed = stall, seed
        self.bytes_read = 0
        self.bursts = 0
        self.cycles = 0

    def _check_burst(self, addr: int, length: int, size: int, burst: int):
        if burst != 1:
            raise ProtocolError(f"ARBURST must be INCR (1), not {burst}")
        if 1 << size != self.word_bytes:
            raise ProtocolError(f"ARSIZE {size} is not the port's {self.word_bytes}-byte word")
        if addr % self.word_bytes:
            raise ProtocolError(f"ARADDR {addr:#x} is not word aligned")
        end = addr + length * self.word_bytes
        if addr // 4096 != (end - 1) // 4096:
            raise ProtocolError(f"burst at {addr:#x} of {length} words crosses a 4 KiB boundary")
        if addr < self.base or end > self.base + len(self.image):
            raise ProtocolError(f"burst {addr:#x}..{end:#x} outside the image")

    def channel(self, name: str = "") -> "ReadChannel":
        """A fresh per-cycle state machine of one read master (see :class:`ReadChannel`);
        ``name`` prefixes its protocol errors."""
        return ReadChannel(self, name)

    async def run(self, ctx, axi):
        """The testbench: serve ``axi`` (a read master's ports) forever."""
        ch = self.channel()
        while True:
            arready, beat = ch.drive()
            ctx.set(axi.arready, arready)
            ctx.set(axi.rvalid, beat is not None)
            if beat is not None:
                ctx.set(axi.rdata, beat[0])
                ctx.set(axi.rlast, beat[1])
                ctx.set(axi.rresp, 0)
            await ctx.delay(1e-9)
            ar = None
            if ctx.get(axi.arvalid):
                ar = (ctx.get(axi.araddr), ctx.get(axi.arlen) + 1, ctx.get(axi.arsize),
                      ctx.get(axi.arburst))
            ch.sample(ar, ctx.get(axi.rready))
            await ctx.tick()
            self.cycles += 1


class ReadChannel:
    """One cycle of a :class:`DdrModel` read port at a time, for any simulator front end:
    :meth:`drive` gives this cycle's ARREADY and R beat (``(data, last)`` or None) to
    put on the ports, :meth:`sample` takes the master's AR request (``(address, beats,
    arsize, arburst)`` or None) and RREADY seen in the same cycle, checks them and
    advances the cycle."""

    def __init__(self, model: DdrModel, name: str = ""):
        self.model, self.prefix = model, f"{name}: " if name else ""
        self.ar_pause = pauses(model.seed, model.stall)
        self.r_pause = pauses(model.seed + 1, model.stall)
        self.pending = deque()                # [ready cycle, address, beats left]
        self.tokens = 0.0
        self.held = None                      # AR payload while not accepted
        self.beat = None                      # (data, last) offered on R, not yet taken
        self.arready = False
        self.cycle = 0

    def drive(self) -> tuple[bool, tuple | None]:
        m = self.model
        wb = m.word_bytes
        self.tokens = min(self.tokens + m.bytes_per_cycle, max(wb, m.bytes_per_cycle))
        self.arready = not next(self.ar_pause)
        if self.beat is None and self.pending and self.pending[0][0] <= self.cycle \
                and self.tokens >= wb and not next(self.r_pause):
            head = self.pending[0]
            off = head[1] - m.base
            self.beat = (int.from_bytes(m.image[off:off + wb], "little"), head[2] == 1)
            self.tokens -= wb
        return self.arready, self.beat

    def sample(self, ar: tuple | None, rready: bool) -> None:
        m = self.model
        if ar is not None:
            if self.held is not None and self.held != ar:
                raise ProtocolError(f"{self.prefix}cycle {self.cycle}: AR payload changed "
                                    "before ARREADY")
            self.held = ar
            if self.arready:
                m._check_burst(*ar)
                self.pending.append([self.cycle + m.latency, ar[0], ar[1]])
                m.bursts += 1
                self.held = None
        elif self.held is not None:
            raise ProtocolError(f"{self.prefix}cycle {self.cycle}: ARVALID dropped before ARREADY")
        if self.beat is not None and rready:
            head = self.pending[0]
            head[1] += m.word_bytes
            head[2] -= 1
            if head[2] == 0:
                self.pending.popleft()
            m.bytes_read += m.word_bytes
            self.beat = None
        self.cycle += 1
