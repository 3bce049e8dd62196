"""The register map: one table, Amaranth-free for the host driver, the same as docs/hardware.md."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hdl.shell import regmap
from hdl.shell.regmap import REGISTER_MAP, REGISTERS, RegisterValues

REPO = Path(__file__).resolve().parents[3]


def test_table_is_consistent():
    offsets = [r.offset for r in REGISTER_MAP]
    assert len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 and o < 1 << regmap.ADDR_WIDTH for o in offsets)
    assert REGISTERS == {"ID": 0x00, "VERSION": 0x04, "FRAMES_DONE": 0x08, "CYCLES": 0x0C,
                         "STATUS": 0x10, "CONTROL": 0x14, "IN_ELEMENTS": 0x18,
                         "CLASSES": 0x1C, "IN_FORMAT": 0x20, "BATCH": 0x24,
                         "WEIGHT_BASE_LO": 0x40, "WEIGHT_BASE_HI": 0x44}
    constant = {f for f in RegisterValues.__dataclass_fields__}
    live = {"frames_done", "cycles", "status", "batch"}
    for r in REGISTER_MAP:
        assert r.access in ("R", "W", "RW"), r
        assert (r.source is None) == (r.access == "W"), r
        assert r.source is None or r.source in constant | live, r


def test_driver_imports_no_amaranth():
    """The host driver runs on the board's ARM, where Amaranth is not installed."""
    code = "import sys, hdl.host.driver; assert 'amaranth' not in sys.modules, 'amaranth'"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert done.returncode == 0, done.stderr


def test_docs_show_the_table():
    """docs/hardware.md's register table has the rows of REGISTER_MAP, in order."""
    text = (REPO / "docs" / "hardware.md").read_text()
    rows = re.findall(r"^\| (0x[0-9A-F]{2}) \| (\w+) \| (\w+) \| (.*) \|$", text, re.M)
    assert [(int(o, 16), n, a, m) for o, n, a, m in rows] == \
        [(r.offset, r.name, r.access, r.meaning) for r in REGISTER_MAP]


def test_in_format_round_trip():
    value = regmap.pack_in_format(12, 64, 32)
    assert value == 12 | 12 << 8 | 8 << 16 | 4 << 24
    assert regmap.unpack_in_format(value) == {"bits": 12, "slot_bits": 12, "in_width": 64,
                                              "out_width": 32}
    assert regmap.unpack_in_format(regmap.pack_in_format(1, 1024, 128))["in_width"] == 1024
    assert regmap.code_slot_bits(8) == 8 and regmap.code_slot_bits(9) == 9
    assert [regmap.codes_per_beat(b, 32) for b in (1, 2, 3, 4, 8, 12, 16)] == \
        [32, 16, 10, 8, 4, 2, 2]
    assert regmap.codes_per_beat(1, 128) == 128


@pytest.mark.parametrize("call,exc,msg", [
    (lambda: regmap.codes_per_beat(17, 32), ValueError, "input code bits must be at most 16"),
    (lambda: regmap.codes_per_beat(0, 32), ValueError, "input code bits must be at least 1"),
    (lambda: regmap.codes_per_beat(8, 48), ValueError,
     "input TDATA width must be one of 32, 64, 128, 256, 512, 1024, not 48"),
    (lambda: regmap.shell_floor_cycles(10, 8, 0), ValueError, "classes must be at least 1"),
    (lambda: regmap.input_beats_per_frame(1.5, 8, 32), TypeError, "frame_elements must be"),
])
def test_packing_checks(call, exc, msg):
    with pytest.raises(exc, match=msg):
        call()


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(ident=1 << 32), ValueError, "ident must fit in 32 bits, not 0x100000000"),
    (dict(classes=-1), ValueError, "classes must fit in 32 bits"),
    (dict(version=1.0), TypeError, "version must be an integer, not 1.0"),
    (dict(in_format=True), TypeError, "in_format must be an integer, not True"),
])
def test_register_values_checks(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        RegisterValues(**kwargs)
