"""Xilinx ZC706 evaluation kit (Zynq-7045). Pins: UG954, board XDC."""

from amaranth.build import Attrs, Clock, DiffPairs, Resource
from amaranth_boards.resources import ButtonResources, LEDResources

from ._base import Capacity, ZynqPlatform

__all__ = ["ZC706Platform"]


class ZC706Platform(ZynqPlatform):
    name = "zc706"
    description = "Xilinx ZC706 (Zynq-7000 XC7Z045-2FFG900C)"
    device = "xc7z045"
    package = "ffg900"
    speed = "2"
    # DS190: 218,600 LUT, 437,200 FF, 545 RAMB36 (1,090 RAMB18), 900 DSP48E1.
    capacity = Capacity(lut=218_600, ff=437_200, bram18=1_090, uram=0, dsp=900)
    ps = "ps7"
    axis_width = 64         # AXI-Stream TDATA bits: the HP ports' width
    # PS DDR3, 32-bit at 1066 MT/s (UG954); HP ports 64-bit.
    ddr_peak_bytes_per_s = 4_264_000_000
    hp_data_width = 64
    default_clock_mhz = 100.0
    synth_family = "xc7"
    board_part = "xilinx.com:zc706:part0:1.4"

    default_clk = "clk200"
    resources = [
        Resource("clk200", 0, DiffPairs("H9", "G9", dir="i"),       # SYSCLK (SiT9102)
                 Clock(200e6), Attrs(IOSTANDARD="LVDS")),
        # GPIO_LED_LEFT, _CENTER, _RIGHT, GPIO_LED_0 sit in banks of different VCCO.
        *LEDResources(pins={0: "Y21", 2: "W21"}, attrs=Attrs(IOSTANDARD="LVCMOS25")),
        *LEDResources(pins={1: "G2", 3: "A17"}, attrs=Attrs(IOSTANDARD="LVCMOS15")),
        # GPIO_SW_LEFT, _CENTER, _RIGHT.
        *ButtonResources(pins="AK25", attrs=Attrs(IOSTANDARD="LVCMOS25")),
        *ButtonResources(pins={1: "K15"}, attrs=Attrs(IOSTANDARD="LVCMOS15")),
        *ButtonResources(pins={2: "R27"}, attrs=Attrs(IOSTANDARD="LVCMOS25")),
    ]
    connectors = []
