"""Xilinx ZCU102 evaluation kit (Zynq UltraScale+ ZU9EG). Pins: UG1182, board XDC."""

from amaranth.build import Attrs, Clock, DiffPairs, Resource
from amaranth_boards.resources import ButtonResources, LEDResources

from ._base import Capacity, ZynqPlatform

__all__ = ["ZCU102Platform"]


class ZCU102Platform(ZynqPlatform):
    name = "zcu102"
    description = "Xilinx ZCU102 (Zynq UltraScale+ XCZU9EG-2FFVB1156E)"
    device = "xczu9eg"
    package = "ffvb1156"
    speed = "2-e"
    # DS891: 274,080 LUT, 548,160 FF, 912 RAMB36 (1,824 RAMB18), 0 URAM, 2,520 DSP48E2.
    capacity = Capacity(lut=274_080, ff=548_160, bram18=1_824, uram=0, dsp=2_520)
    ps = "ps8"
    axis_width = 128        # AXI-Stream TDATA bits: the HP ports' width
    # PS DDR4, 64-bit at 2400 MT/s (UG1182); HP ports 128-bit.
    ddr_peak_bytes_per_s = 19_200_000_000
    hp_data_width = 128
    default_clock_mhz = 200.0
    synth_family = "xcup"
    board_part = "xilinx.com:zcu102:part0:3.4"

    default_clk = "clk125"
    resources = [
        Resource("clk125", 0, DiffPairs("G21", "F21", dir="i"),     # CLK_125 (U69 SI5341B)
                 Clock(125e6), Attrs(IOSTANDARD="LVDS_25")),
        *LEDResources(pins="AG14 AF13 AE13 AJ14 AJ15 AH13 AH14 AL12",  # GPIO_LED_0..7
                      attrs=Attrs(IOSTANDARD="LVCMOS33")),
        *ButtonResources(pins="AG15 AE14 AF15 AE15 AG13",           # GPIO_SW_N E W S C
                         attrs=Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors = []
