"""Which weights stay on chip and which stream from DDR, and what that costs per frame.

:func:`place_weights` takes the planned stages and a board: while the weight memories
exceed the board's share of block RAM, it streams the stage that frees the
most on-chip bytes per DDR byte it adds to a frame (a fully connected layer reads its
weights once per frame; a convolution once per output pixel, so it streams last). The
returned :class:`WeightPlan` reports, per stage and in total, the bytes on chip (ROM
words), the bytes read from DDR per frame (the streamers' images: dense words, or the
sparse engine's CSC words), and the DDR bandwidth at the frame rate against the HP
ports' (:meth:`boards._base.ZynqPlatform.ddr_port_bytes_per_s` each; one port per AXI
master, ``Stage.ddr_ports`` masters per streamed stage) and the DDR's peak.

The frame rate counts the port: a frame takes at least its DDR bytes over the port's
bytes per cycle, besides the slowest stage (:attr:`Stage.cycles_per_frame`, which holds
a streamed stage to one DDR word per cycle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hdl.flow.network import Stage, frame_cycles, weight_memory

__all__ = ["WeightPlan", "place_weights", "onchip_bytes", "ddr_bytes_per_frame",
           "ONCHIP_WEIGHT_SHARE"]

#: Share of the board's block RAM bytes that weight ROMs may take on chip (the
#: rest is for line buffers, FIFOs, thresholds and the DMA), as
#: :data:`hdl.flow.network.WEIGHT_BRAM_SHARE`.
ONCHIP_WEIGHT_SHARE = 0.9


def onchip_bytes(stage: Stage) -> int:
    """Bytes of the stage's weight memories on chip (0 if streamed or without weights)."""
    mem = weight_memory(stage)
    if mem is None:
        return 0
    n, width, depth = mem
    return -(-n * width * depth // 8)


def ddr_bytes_per_frame(stage: Stage) -> int:
    """Bytes a streamed stage reads from DDR per frame: one pass per input vector."""
    if not stage.streamed:
        return 0
    return sum(ws.pass_bytes for ws in stage.weight_streams) * stage.vectors_per_frame


@dataclass(frozen=True)
class WeightPlan:
    """Stages with their weight placement and the per-frame DDR figures."""

    stages: list
    clock_mhz: float
    port_bytes_per_s: float
    budget_bytes: int
    ddr_peak_bytes_per_s: float = float("inf")

    @property
    def masters(self) -> int:
        """AXI read masters, each on its own HP port (``Stage.ddr_ports`` per stage)."""
        return sum(s.ddr_ports for s in self.stages if s.streamed)

    @property
    def available_bytes_per_s(self) -> float:
        """What the masters' HP ports can read together, at most the DDR's peak."""
        return min(max(1, self.masters) * self.port_bytes_per_s, self.ddr_peak_bytes_per_s)

    @property
    def folding(self) -> dict:
        """A folding for :class:`hdl.flow.network.NetworkSpec` with the placement."""
        return {s.name: {"pe": s.pe, "simd": s.simd,
                         **({"weights": "ddr", "ddr_ports": s.ddr_ports} if s.streamed else {})}
                for s in self.stages}

    @property
    def onchip_bytes(self) -> int:
        return sum(onchip_bytes(s) for s in self.stages)

    @property
    def ddr_bytes_per_frame(self) -> int:
        return sum(ddr_bytes_per_frame(s) for s in self.stages)

    @property
    def ddr_image_bytes(self) -> int:
        """Bytes of the weight images in DDR (one pass per streamed stage)."""
        return sum(ws.pass_bytes for s in self.stages for ws in s.weight_streams)

    @property
    def compute_cycles(self) -> int:
        return frame_cycles(self.stages)

    @property
    def port_bytes_per_cycle(self) -> float:
        return self.port_bytes_per_s / (self.clock_mhz * 1e6)

    @property
    def cycles_per_frame(self) -> int:
        """The slowest stage (a streamed one at one word per cycle and port), or the time
        the ports and the DDR need for the frame's DDR bytes if longer."""
        per_cycle = self.available_bytes_per_s / (self.clock_mhz * 1e6)
        return max(self.compute_cycles, math.ceil(self.ddr_bytes_per_frame / per_cycle))

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.cycles_per_frame

    @property
    def bandwidth_used(self) -> float:
        """DDR bytes per second at :attr:`fps`."""
        return self.ddr_bytes_per_frame * self.fps

    def rows(self) -> list[dict]:
        """Per stage: name, engine, placement, bytes on chip, DDR bytes per frame."""
        return [{"stage": s.name, "engine": s.engine, "weights": s.weights if s.compute else None,
                 "onchip_bytes": onchip_bytes(s), "ddr_bytes_per_frame": ddr_bytes_per_frame(s),
                 "cycles_per_frame": s.cycles_per_frame} for s in self.stages]


def place_weights(stages: list[Stage], board, *, clock_mhz: float | None = None,
                  budget_bytes: int | None = None) -> WeightPlan:
    """Stream stages' weights from DDR until the rest fit ``budget_bytes`` (default:
    :data:`ONCHIP_WEIGHT_SHARE` of the board's block RAM: UltraRAM has no initial contents,
    so it cannot hold a ROM). Stages already
    marked ``weights="ddr"`` stay streamed. Raises ``ValueError`` if even streaming every
    stage leaves too much on chip."""
    mhz = clock_mhz or board.default_clock_mhz
    if budget_bytes is None:
        budget_bytes = int(ONCHIP_WEIGHT_SHARE * board.onchip_weight_bytes())
    width = board.hp_data_width
    stages = [replace(s, ddr_width=width) if s.streamed else s for s in stages]
    candidates = {}
    while sum(onchip_bytes(s) for s in stages) > budget_bytes:
        best = None
        for k, s in enumerate(stages):
            if s.compute is None or s.streamed:
                continue
            if k not in candidates:
                candidates[k] = replace(s, weights="ddr", ddr_width=width)
            cand = candidates[k]
            score = onchip_bytes(s) / max(1, ddr_bytes_per_frame(cand))
            if best is None or score > best[0]:
                best = (score, k, cand)
        if best is None:
            raise ValueError(f"weights exceed the on-chip budget of {budget_bytes} bytes even "
                             f"with every stage streamed")
        stages[best[1]] = best[2]
    return WeightPlan(stages, mhz, board.ddr_port_bytes_per_s(mhz), budget_bytes,
                      float(board.ddr_peak_bytes_per_s))
