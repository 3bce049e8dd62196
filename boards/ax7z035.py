"""ALINX AX7Z035 development board (Zynq-7035, XC7Z035-2FFG676I).

The board pairs the ALINX AC7Z035 core module (XC7Z035-2FFG676I: package FFG676, speed
grade -2, industrial temperature range; Vivado part ``xc7z035ffg676-2``) with a carrier
board. It stands for the "Zynq-7035" of seed paper 004 (a VGG16 layer with shift-add
weights deployed on a Zynq-7035).

No programmable-logic pins are declared: the accelerator is clocked and reset by the
processing system (FCLK_CLK0) and needs none, and the carrier's pin-out is not
reproduced here without the vendor's schematic at hand. Add resources from ALINX's XDC
before using this class with ``platform.build()`` for a pin-driven design.
"""

from ._base import Capacity, ZynqPlatform

__all__ = ["AX7Z035Platform"]


class AX7Z035Platform(ZynqPlatform):
    name = "ax7z035"
    description = "ALINX AX7Z035 (Zynq-7000 XC7Z035-2FFG676I)"
    device = "xc7z035"
    package = "ffg676"
    speed = "2"
    # DS190: 171,900 LUT, 343,800 FF, 500 RAMB36 (1,000 RAMB18), 900 DSP48E1.
    capacity = Capacity(lut=171_900, ff=343_800, bram18=1_000, uram=0, dsp=900)
    ps = "ps7"
    axis_width = 64         # AXI-Stream TDATA bits: the HP ports' width
    # PS DDR3, 32-bit at 1066 MT/s (ALINX AX7Z035 manual); HP ports 64-bit.
    ddr_peak_bytes_per_s = 4_264_000_000
    hp_data_width = 64
    default_clock_mhz = 100.0
    synth_family = "xc7"
    board_part = None

    resources = []
    connectors = []
