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

__all__ = ["DdrModel", "port_timing"]


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

    async def run(self, ctx, axi):
        """The testbench: serve ``axi`` (a read master's ports) forever."""
        ar_pause = pauses(self.seed, self.stall)
        r_pause = pauses(self.seed + 1, self.stall)
        pending = deque()                     # [ready cycle, address, beats left]
        tokens = 0.0
        held = None                           # address-channel payload while not accepted
        beat_out = None                       # (data, last) offered on R, not yet taken
        while True:
            cycle = self.cycles
            tokens = min(tokens + self.bytes_per_cycle, max(self.word_bytes, self.bytes_per_cycle))
            arready = not next(ar_pause)
            ctx.set(axi.arready, arready)
            if beat_out is None and pending and pending[0][0] <= cycle and tokens >= self.word_bytes \
                    and not next(r_pause):
                head = pending[0]
                off = head[1] - self.base
                beat_out = (int.from_bytes(self.image[off:off + self.word_bytes], "little"),
                            head[2] == 1)
                tokens -= self.word_bytes
            ctx.set(axi.rvalid, beat_out is not None)
            if beat_out is not None:
                ctx.set(axi.rdata, beat_out[0])
                ctx.set(axi.rlast, beat_out[1])
                ctx.set(axi.rresp, 0)
            await ctx.delay(1e-9)
            if ctx.get(axi.arvalid):
                req = (ctx.get(axi.araddr), ctx.get(axi.arlen) + 1, ctx.get(axi.arsize),
                       ctx.get(axi.arburst))
                if held is not None and held != req:
                    raise ProtocolError(f"cycle {cycle}: AR payload changed before ARREADY")
                held = req
                if arready:
                    self._check_burst(*req)
                    pending.append([cycle + self.latency, req[0], req[1]])
                    self.bursts += 1
                    held = None
            elif held is not None:
                raise ProtocolError(f"cycle {cycle}: ARVALID dropped before ARREADY")
            if beat_out is not None and ctx.get(axi.rready):
                head = pending[0]
                head[1] += self.word_bytes
                head[2] -= 1
                if head[2] == 0:
                    pending.popleft()
                self.bytes_read += self.word_bytes
                beat_out = None
            await ctx.tick()
            self.cycles += 1
