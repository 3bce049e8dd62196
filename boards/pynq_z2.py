"""TUL PYNQ-Z2 (Zynq-7020). Pins as amaranth-boards' ``arty_z7.py`` (same PL pin-out)."""

from amaranth.build import Attrs, Clock, Pins, Resource
from amaranth_boards.resources import (ButtonResources, LEDResources, RGBLEDResource,
                                       SwitchResources)

from ._base import Capacity, ZynqPlatform

__all__ = ["PynqZ2Platform"]


class PynqZ2Platform(ZynqPlatform):
    name = "pynq-z2"
    description = "TUL PYNQ-Z2 (Zynq-7000 XC7Z020-1CLG400C)"
    device = "xc7z020"
    package = "clg400"
    speed = "1"
    # DS190: 53,200 LUT, 106,400 FF, 140 RAMB36 (280 RAMB18), 220 DSP48E1.
    capacity = Capacity(lut=53_200, ff=106_400, bram18=280, uram=0, dsp=220)
    ps = "ps7"
    axis_width = 64         # AXI-Stream TDATA bits: the HP ports' width
    # PS DDR3, 16-bit at 1050 MT/s (TUL PYNQ-Z2 manual); HP ports 64-bit.
    ddr_peak_bytes_per_s = 2_100_000_000
    hp_data_width = 64
    default_clock_mhz = 100.0
    synth_family = "xc7"
    board_part = "tul.com.tw:pynq-z2:part0:1.0"
    # Without the TUL board files: the PYNQ-Z2's DDR3 (2 x MT41K256M16 RE-125, 32 bit).
    ps_config = {
        "PCW_UIPARAM_DDR_PARTNO": "MT41K256M16 RE-125",
        "PCW_UIPARAM_DDR_BUS_WIDTH": "32 Bit",
        "PCW_CRYSTAL_PERIPHERAL_FREQMHZ": "50",
    }

    default_clk = "clk125"
    resources = [
        Resource("clk125", 0, Pins("H16", dir="i"), Clock(125e6),
                 Attrs(IOSTANDARD="LVCMOS33")),
        *SwitchResources(pins="M20 M19", attrs=Attrs(IOSTANDARD="LVCMOS33")),
        RGBLEDResource(0, r="N15", g="G17", b="L15", attrs=Attrs(IOSTANDARD="LVCMOS33")),
        RGBLEDResource(1, r="M15", g="L14", b="G14", attrs=Attrs(IOSTANDARD="LVCMOS33")),
        *LEDResources(pins="R14 P14 N16 M14", attrs=Attrs(IOSTANDARD="LVCMOS33")),
        *ButtonResources(pins="D19 D20 L20 L19", attrs=Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors = []
