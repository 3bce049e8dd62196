"""Xilinx ZCU104 evaluation kit (Zynq UltraScale+ ZU7EV). Pins: UG1267, board XDC."""

from amaranth.build import Attrs, Clock, DiffPairs, Resource
from amaranth_boards.resources import ButtonResources, LEDResources

from ._base import Capacity, ZynqPlatform

__all__ = ["ZCU104Platform"]


class ZCU104Platform(ZynqPlatform):
    name = "zcu104"
    description = "Xilinx ZCU104 (Zynq UltraScale+ XCZU7EV-2FFVC1156E)"
    device = "xczu7ev"
    package = "ffvc1156"
    speed = "2-e"
    # DS891: 230,400 LUT, 460,800 FF, 312 RAMB36 (624 RAMB18), 96 URAM, 1,728 DSP48E2.
    capacity = Capacity(lut=230_400, ff=460_800, bram18=624, uram=96, dsp=1_728)
    ps = "ps8"
    axis_width = 128        # AXI-Stream TDATA bits: the HP ports' width
    # PS DDR4, 64-bit at 2400 MT/s (UG1267); HP ports 128-bit.
    ddr_peak_bytes_per_s = 19_200_000_000
    hp_data_width = 128
    default_clock_mhz = 200.0
    synth_family = "xcup"
    board_part = "xilinx.com:zcu104:part0:1.1"

    default_clk = "clk125"
    resources = [
        Resource("clk125", 0, DiffPairs("F23", "E23", dir="i"),     # CLK_125
                 Clock(125e6), Attrs(IOSTANDARD="LVDS")),
        *LEDResources(pins="D5 D6 A5 B5",                          # GPIO_LED_0..3
                      attrs=Attrs(IOSTANDARD="LVCMOS33")),
        *ButtonResources(pins="B4 C4 B3 C3",                       # GPIO_PB_SW0..3
                         attrs=Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors = []
