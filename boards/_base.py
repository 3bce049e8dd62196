"""What every board of this project adds to an ``amaranth.vendor.XilinxPlatform``.

A board class in ``boards/`` is written the way amaranth-boards writes its platforms
(``device``, ``package``, ``speed``, ``resources`` with real pins) and carries, as class
attributes, what the generator needs beyond pins:

* ``name``: the command-line name (``python -m hdl.build <name>``);
* ``capacity``: the programmable logic's resources (:class:`Capacity`), from the Xilinx
  product tables (DS190 for Zynq-7000, DS891 for Zynq UltraScale+);
* ``ps``: the processing system, ``"ps7"`` (Zynq-7000, ``processing_system7``) or
  ``"ps8"`` (Zynq UltraScale+, ``zynq_ultra_ps_e``);
* ``axis_width``: the default TDATA width of the accelerator's AXI-Stream ports, the
  width of the PS's high-performance ports the DMA reaches DDR through (64 bits on
  Zynq-7000 S_AXI_HP, 128 on Zynq UltraScale+ S_AXI_HP*_FPD);
* ``default_clock_mhz``: the fabric clock (FCLK_CLK0 / pl_clk0) the accelerator runs at
  unless ``--clock`` says otherwise;
* ``synth_family``: the ``-family`` of Yosys ``synth_xilinx`` (``xc7`` or ``xcup``);
* ``board_part``: the Vivado board part whose preset configures the PS (DDR, MIO), used
  when the board files are installed, or None;
* ``ps_config``: PS properties applied in any case (the fabric clock and the AXI ports
  are set by the block design generator itself);
* ``ddr_peak_bytes_per_s``: the PS DDR interface's peak (bus width x transfer rate of
  the board's memory), ``hp_data_width`` the PL-to-PS HP port width the weight
  streamers use, ``ddr_latency_ns`` the read latency the DDR simulation model assumes
  (an assumption for simulation, not a measurement). A streamed weight port gets at
  most :meth:`ZynqPlatform.ddr_port_bytes_per_s`.

The accelerator does not use board pins: it is clocked and reset by the processing
system inside the block design. The pins are there so that the class is a usable
amaranth-boards platform (``platform.build(Blinky())``).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.vendor import XilinxPlatform

__all__ = ["Capacity", "ZynqPlatform", "RESOURCE_KEYS"]

#: The resource kinds counted everywhere (synthesis results, capacity, report.json).
RESOURCE_KEYS = ("lut", "ff", "bram18", "uram", "dsp")


@dataclass(frozen=True, kw_only=True)
class Capacity:
    """Programmable-logic resources of a device.

    ``bram18`` counts 18 Kb block RAM halves (one RAMB36 = two RAMB18), ``uram`` 288 Kb
    UltraRAM blocks, ``dsp`` DSP48E1/DSP48E2 slices, ``lut`` all 6-input LUTs (logic and
    distributed RAM), ``ff`` all slice flip-flops.
    """

    lut: int
    ff: int
    bram18: int
    uram: int
    dsp: int

    def __post_init__(self):
        for key in RESOURCE_KEYS:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"capacity {key} must be an int, not {value!r}")
            if value < 0:
                raise ValueError(f"capacity {key} must be >= 0, not {value}")

    def as_dict(self) -> dict:
        return {key: getattr(self, key) for key in RESOURCE_KEYS}


class ZynqPlatform(XilinxPlatform):
    """Base of the Zynq boards: an ``XilinxPlatform`` plus the attributes listed above."""

    name: str
    description: str
    capacity: Capacity
    ps: str
    axis_width: int
    default_clock_mhz: float
    synth_family: str
    board_part: str | None = None
    ps_config: dict = {}
    ddr_peak_bytes_per_s: float
    hp_data_width: int = 128
    ddr_latency_ns: float = 150.0

    @classmethod
    def ddr_port_bytes_per_s(cls, clock_mhz: float | None = None) -> float:
        """Bytes per second one HP port can read: its width at the fabric clock, at most
        the DDR's peak."""
        mhz = clock_mhz or cls.default_clock_mhz
        return min(cls.hp_data_width / 8 * mhz * 1e6, float(cls.ddr_peak_bytes_per_s))

    @classmethod
    def onchip_weight_bytes(cls) -> int:
        """Bytes of block RAM (18 Kb halves) on the device, where weight ROMs can go.
        UltraRAM is left out: it has no initial contents in the bitstream, so it cannot
        hold a ROM."""
        return cls.capacity.bram18 * 18 * 1024 // 8

    @classmethod
    def uram_bytes(cls) -> int:
        """Bytes of UltraRAM (288 Kb each) on the device."""
        return cls.capacity.uram * 288 * 1024 // 8

    @classmethod
    def part(cls) -> str:
        """The Vivado part name, e.g. ``xczu9eg-ffvb1156-2-e`` or ``xc7z020clg400-1``."""
        if cls.device.startswith("xczu"):
            return f"{cls.device}-{cls.package}-{cls.speed}"
        return f"{cls.device}{cls.package}-{cls.speed}"
