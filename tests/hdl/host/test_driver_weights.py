"""The driver places the weight buffer and writes its address, HI then LO."""

import pytest

from hdl.host.driver import Accelerator, Geometry
from hdl.shell.regmap import DEFAULT_IDENT, REGISTERS


class Recorder:
    def __init__(self):
        self.writes, self.placed = [], []
        g = Geometry(in_bits=8, in_elements=4, classes=2)
        self.regs = {REGISTERS["ID"]: DEFAULT_IDENT, REGISTERS["IN_ELEMENTS"]: 4,
                     REGISTERS["CLASSES"]: 2, REGISTERS["IN_FORMAT"]: g.in_format()}

    def write_reg(self, offset, value):
        self.writes.append((offset, value))

    def read_reg(self, offset):
        return self.regs.get(offset, 0)

    def send_frame(self, data):
        raise AssertionError("no frames here")

    def recv_frame(self, nbytes):
        raise AssertionError("no frames here")

    def place_buffer(self, image):
        self.placed.append(image)
        return 0x8_1234_5000


def test_load_weights_writes_hi_then_lo():
    backend = Recorder()
    acc = Accelerator(backend)
    assert acc.load_weights(b"\x01\x02") == 0x8_1234_5000
    assert backend.placed == [b"\x01\x02"]
    assert backend.writes == [(REGISTERS["WEIGHT_BASE_HI"], 0x8), (REGISTERS["WEIGHT_BASE_LO"], 0x1234_5000)]
    with pytest.raises(ValueError, match="4 KiB aligned"):
        acc.set_weight_base(0x1000_0010)
