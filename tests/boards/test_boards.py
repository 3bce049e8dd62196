import re

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import io
from amaranth.vendor import XilinxPlatform

import boards
from boards import BOARDS, RESOURCE_KEYS, Capacity


def test_registry_names():
    assert set(BOARDS) >= {"zcu102", "zcu104", "pynq-z2", "zc706", "ax7z035"}
    assert boards.get("zcu102") is boards.ZCU102Platform
    assert boards.get("PYNQ_Z2") is boards.PynqZ2Platform


def test_unknown_board_lists_known():
    with pytest.raises(ValueError, match=r"unknown board 'zedboard'; known boards: zcu102, "):
        boards.get("zedboard")
    with pytest.raises(TypeError):
        boards.get(102)


@pytest.mark.parametrize("name, part, ps, family", [
    ("zcu102", "xczu9eg-ffvb1156-2-e", "ps8", "xcup"),
    ("zcu104", "xczu7ev-ffvc1156-2-e", "ps8", "xcup"),
    ("pynq-z2", "xc7z020clg400-1", "ps7", "xc7"),
    ("zc706", "xc7z045ffg900-2", "ps7", "xc7"),
    ("ax7z035", "xc7z035ffg676-2", "ps7", "xc7"),
])
def test_board_attributes(name, part, ps, family):
    cls = boards.get(name)
    assert issubclass(cls, XilinxPlatform)
    assert cls.part() == part
    assert cls.ps == ps
    assert cls.synth_family == family
    assert cls.default_clock_mhz > 0
    platform = cls()
    assert platform.family == ("ultrascaleplus" if ps == "ps8" else "series7")
    # Product-table relations: two flip-flops per LUT in every 7-series/US+ slice,
    # UltraRAM only on EV and some EG parts.
    assert cls.capacity.ff == 2 * cls.capacity.lut
    assert set(cls.capacity.as_dict()) == set(RESOURCE_KEYS)


def test_capacities_from_product_tables():
    assert boards.get("zcu102").capacity == Capacity(lut=274_080, ff=548_160, bram18=1_824, uram=0, dsp=2_520)
    assert boards.get("zcu104").capacity == Capacity(lut=230_400, ff=460_800, bram18=624, uram=96, dsp=1_728)
    assert boards.get("pynq-z2").capacity == Capacity(lut=53_200, ff=106_400, bram18=280, uram=0, dsp=220)
    assert boards.get("zc706").capacity == Capacity(lut=218_600, ff=437_200, bram18=1_090, uram=0, dsp=900)
    assert boards.get("ax7z035").capacity == Capacity(lut=171_900, ff=343_800, bram18=1_000, uram=0, dsp=900)


def test_weight_roms_fit_block_ram_only():
    # UltraRAM has no initial contents in the bitstream: the ZCU104's 96 URAM288 hold no ROM.
    assert boards.get("zcu104").onchip_weight_bytes() == 624 * 18 * 1024 // 8
    assert boards.get("zcu102").onchip_weight_bytes() == 1_824 * 18 * 1024 // 8
    assert boards.get("zcu104").uram_bytes() == 96 * 288 * 1024 // 8 and boards.get("zcu102").uram_bytes() == 0


def test_capacity_checks():
    with pytest.raises(ValueError, match="capacity dsp must be >= 0, not -1"):
        Capacity(lut=1, ff=1, bram18=1, uram=0, dsp=-1)
    with pytest.raises(TypeError, match="capacity lut must be an int"):
        Capacity(lut=1.5, ff=1, bram18=1, uram=0, dsp=0)


def test_pynq_z2_pins_match_arty_z7():
    from amaranth_boards.arty_z7 import ArtyZ720Platform
    ours, theirs = boards.PynqZ2Platform(), ArtyZ720Platform()
    for name, number in [("clk125", 0), ("led", 0), ("led", 3), ("button", 2), ("switch", 1),
                         ("rgb_led", 0)]:
        mine = ours.lookup(name, number)
        ref = theirs.lookup(name, number)
        assert repr(mine.ios) == repr(ref.ios), (name, number)


class _Blink(Elaboratable):
    def elaborate(self, platform):
        m = Module()
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(1)
        return m


@pytest.mark.parametrize("name, pin", [("zcu102", "AG14"), ("zcu104", "D5"), ("zc706", "Y21")])
def test_prepare_writes_led_constraint(name, pin):
    plan = boards.get(name)().prepare(_Blink(), name="top")
    xdc = plan.files["top.xdc"]
    assert re.search(rf'set_property LOC {pin} \[get_ports "led_0__io"\]', xdc), xdc
    assert boards.get(name).part() in plan.files["top.tcl"]
