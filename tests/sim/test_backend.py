"""sim.backend on Verilator: cocotbext-axi's AXI4-Lite master and AXI-Stream agents (with
random gaps and backpressure) and the host driver on a small ``AxiTop``.

The core (``ModSum``) is small so the build is quick; the whole networks run through
the same backend in tests/test_accelerator.py.
"""

import numpy as np
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.shell.axi import AxiTop

FRAME, CLASSES, BITS = 12, 4, 4


class ModSum(wiring.Component):
    """Score ``k`` of a frame = the sum of the codes at positions ``j`` with
    ``j % classes == k``; the scores leave one per beat after the frame's last code."""

    def __init__(self, frame, classes, bits):
        self.frame, self.classes = frame, classes
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(bits), 1))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(16), 1))),
        })

    def elaborate(self, platform):
        m = Module()
        sums = Signal(data.ArrayLayout(signed(16), self.classes))
        pos = Signal(range(self.frame))
        out = Signal(range(self.classes))
        emit = Signal()
        m.d.comb += [self.i.ready.eq(~emit), self.o.valid.eq(emit),
                     self.o.payload[0].eq(sums[out])]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [sums[pos % self.classes].eq(sums[pos % self.classes]
                                                     + self.i.payload[0]),
                         pos.eq(pos + 1)]
            with m.If(pos == self.frame - 1):
                m.d.sync += [pos.eq(0), emit.eq(1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += out.eq(out + 1)
            with m.If(out == self.classes - 1):
                m.d.sync += [out.eq(0), emit.eq(0), sums.eq(0)]
        return m


def test_backend_on_a_small_top():
    from sim.harness import run_cocotb

    rng = np.random.default_rng(5)
    codes = rng.integers(0, 1 << BITS, size=(12, FRAME))
    scores = np.stack([codes[:, k::CLASSES].sum(axis=1) for k in range(CLASSES)], axis=1)
    top = AxiTop(ModSum(FRAME, CLASSES, BITS), frame_elements=FRAME, classes=CLASSES)
    result = run_cocotb(top, name="backend_modsum", test_module="tests.sim.cocotb_backend",
                        parameters={"codes": codes, "scores": scores, "in_bits": BITS,
                                    "classes": CLASSES},
                        seeds=(1, 2), timeout_s=120)
    assert result.tests == ["frames", "cut_frame_and_soft_reset", "host_driver"]
    for rep in result.reports.values():
        assert rep["frames_done"] == len(codes)
        # random gaps and stalls: the frames took longer than free-running ones would
        assert rep["ends"][-1] - rep["ends"][0] > (len(codes) - 1) * (FRAME // 4 + CLASSES)
        assert rep["driver_labels"] == np.argmax(scores[:3], axis=1).tolist()
