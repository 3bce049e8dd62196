"""The harness itself: packing, builds, caching, and that broken hardware is caught.

One Amaranth DUT (``SkidAdder``) covers the correct case and four faults, selected by
its ``mode`` input, so that a single Verilator build serves all of them. A second,
hand-written Verilog AXI-Stream pass-through checks Verilog input and the AXI drivers.
"""

from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.flow import toolchain
from sim.harness import load_arrays, run_cocotb, save_arrays
from sim.beats import pack, unpack

TEST_MODULE = "tests.sim.cocotb_harness_selftest"
BITS, LANES = 6, 12      # payloads of 72 and 84 bits: wider than 64 on purpose

MODE_OK, MODE_DROP, MODE_UNSTABLE, MODE_LANE, MODE_VALID_DROP = 0, 1, 2, 3, 4


class SkidAdder(wiring.Component):
    """Adds 1 to every lane, through a 2-entry skid buffer; ``mode`` injects faults.

    mode 0: correct. mode 1: accepts a beat while full and drops it. mode 2: output
    payload changes while valid is held without a transfer. mode 3: lane 2 adds 2.
    mode 4: output valid drops for a cycle after a stall, without a transfer.
    Throughput 1 beat/cycle, latency 1 cycle.
    """

    def __init__(self, bits, lanes):
        self.bits, self.lanes = bits, lanes
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(bits), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(bits + 1), lanes))),
            "mode": In(3),
        })

    def elaborate(self, platform):
        m = Module()
        layout = data.ArrayLayout(signed(self.bits), self.lanes)
        buf = [Signal(layout, name=f"buf{k}") for k in range(2)]
        count = Signal(range(3))
        stalled = Signal()     # output was valid and not taken in the previous cycle

        full = count == 2
        m.d.comb += self.i.ready.eq(~full | (self.mode == MODE_DROP))
        push = self.i.valid & self.i.ready & ~full
        pop = self.o.valid & self.o.ready
        m.d.comb += self.o.valid.eq((count != 0) & ~(stalled & (self.mode == MODE_VALID_DROP)))
        for lane in range(self.lanes):
            m.d.comb += self.o.payload[lane].eq(buf[0][lane] + 1)
        with m.If(self.mode == MODE_LANE):
            m.d.comb += self.o.payload[2].eq(buf[0][2] + 2)
        with m.If((self.mode == MODE_UNSTABLE) & stalled):
            m.d.comb += self.o.payload[0].eq(buf[0][0] - 1)
        m.d.sync += stalled.eq(self.o.valid & ~self.o.ready & ~stalled)

        with m.If(pop):
            m.d.sync += buf[0].eq(buf[1])
        with m.If(push):
            with m.If((count == 0) | ((count == 1) & pop)):
                m.d.sync += buf[0].eq(self.i.payload)
            with m.Else():
                m.d.sync += buf[1].eq(self.i.payload)
        m.d.sync += count.eq(count + push - pop)
        return m


AXIS_PASS = """
module axis_pass #(parameter W = 16) (
    input clk, input rst,
    input [W-1:0] s_axis_tdata, input s_axis_tvalid, output s_axis_tready,
    input s_axis_tlast,
    output reg [W-1:0] m_axis_tdata, output reg m_axis_tvalid, input m_axis_tready,
    output reg m_axis_tlast
);
    assign s_axis_tready = !m_axis_tvalid || m_axis_tready;
    always @(posedge clk) begin
        if (rst) m_axis_tvalid <= 1'b0;
        else if (s_axis_tready) begin
            m_axis_tvalid <= s_axis_tvalid;
            m_axis_tdata <= s_axis_tdata;
            m_axis_tlast <= s_axis_tlast;
        end
    end
endmodule
"""


def adder_params(**kw):
    return dict(bits=BITS, lanes=LANES, n=150, gap_prob=0.3, stall_prob=0.4) | kw


# ---------------------------------------------------------------- pure Python


def test_pack_unpack_roundtrip():
    rng = np.random.default_rng(0)
    for bits, lanes in [(1, 7), (4, 3), (8, 16), (13, 5)]:
        for _ in range(50):
            vals = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), lanes).tolist()
            word = pack(vals, bits, lanes)
            assert 0 <= word < 1 << (bits * lanes)
            assert unpack(word, bits, lanes, signed=True) == vals
            assert unpack(word, bits, lanes) == [v % (1 << bits) for v in vals]


def test_pack_lane0_low_bits():
    assert pack([1, 2, 3], 4, 3) == 0x321
    assert pack([-1, 0], 4, 2) == 0x0F
    assert unpack(0x0F, 4, 2, signed=True) == [-1, 0]


def test_pack_rejects_bad_values():
    with pytest.raises(ValueError, match="lane 1 value 16 does not fit in 4 bits"):
        pack([0, 16], 4, 2)
    with pytest.raises(ValueError, match="expected 3 lane values, not 2"):
        pack([0, 1], 4, 3)
    with pytest.raises(ValueError, match="does not fit in 2 lanes of 4 bits"):
        unpack(0x100, 4, 2)


def test_arrays_roundtrip(tmp_path):
    path = save_arrays(tmp_path, w=np.arange(6).reshape(2, 3), t=np.array([-1, 5]))
    got = load_arrays(path)
    assert got["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert got["t"].tolist() == [-1, 5]


def test_run_cocotb_argument_checks():
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        run_cocotb(AXIS_PASS, name="", test_module=TEST_MODULE)
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        run_cocotb(AXIS_PASS, name="x", test_module=TEST_MODULE, timeout_s=0)
    with pytest.raises(TypeError, match="dut must be an amaranth wiring.Component"):
        run_cocotb(object(), name="x", test_module=TEST_MODULE)
    with pytest.raises(ValueError, match="simulator must be 'verilator' or 'icarus', not 'vcs'"):
        run_cocotb(AXIS_PASS, name="x", test_module=TEST_MODULE, simulator="vcs")
    with pytest.raises(TypeError, match="seeds must be an int or a non-empty sequence"):
        run_cocotb(AXIS_PASS, name="x", test_module=TEST_MODULE, seeds=[])


# ---------------------------------------------------------------- Verilator: SkidAdder


def test_correct_adder_passes_with_gaps_and_backpressure():
    result = run_cocotb(SkidAdder(BITS, LANES), name="selftest_skid_ok",
                        test_module=TEST_MODULE,
                        testcase=["stream_adder", "stream_adder_again"],
                        parameters=adder_params(mode=MODE_OK), seeds=(1, 2, 3))
    assert result.tests == ["stream_adder", "stream_adder_again"]
    assert sorted(result.reports) == [1, 2, 3]
    for rep in result.reports.values():
        assert rep["beats"] == 150
        # random gaps and stalls must have slowed the stream down
        assert rep["last_out"] - rep["first_out"] > 150
    # the same hardware again: the cached build is used
    again = run_cocotb(SkidAdder(BITS, LANES), name="selftest_skid_ok_again",
                       test_module=TEST_MODULE, testcase="stream_adder",
                       parameters=adder_params(mode=MODE_OK, n=20), seeds=4)
    assert not again.built
    assert again.build_dir == result.build_dir


def test_free_running_throughput_one_beat_per_cycle():
    vectors = np.random.default_rng(7).integers(-(1 << (BITS - 1)), 1 << (BITS - 1),
                                                (100, LANES))
    result = run_cocotb(SkidAdder(BITS, LANES), name="selftest_skid_free",
                        test_module=TEST_MODULE, testcase="stream_adder",
                        parameters=adder_params(mode=MODE_OK, free_running=True, n=100,
                                                vectors=vectors))
    rep = result.report
    # latency 1 cycle, then one beat per cycle
    assert rep["first_out"] - rep["first_in"] == 1
    assert rep["last_out"] - rep["first_out"] == 100 - 1


@pytest.mark.parametrize("mode, what", [
    (MODE_DROP, "timed out"),
    (MODE_UNSTABLE, "payload changed while valid was held"),
    (MODE_LANE, "beat 0: got"),
    (MODE_VALID_DROP, "valid dropped without a transfer"),
])
def test_broken_adder_is_caught(mode, what):
    seed = 5
    with pytest.raises(AssertionError) as info:
        run_cocotb(SkidAdder(BITS, LANES), name=f"selftest_skid_fault{mode}",
                   test_module=TEST_MODULE, testcase="stream_adder",
                   parameters=adder_params(mode=mode), seeds=seed)
    msg = str(info.value)
    assert "stream_adder" in msg
    assert f"seed {seed}" in msg and f"QNN_SEED={seed}" in msg
    assert what in msg
    wave = Path(msg.split("waveform: ")[1].split("\n")[0])
    assert wave.exists() and wave.stat().st_size > 0
    assert f"seed{seed}" in wave.name


# ---------------------------------------------------------------- Verilog input, AXI-Stream


def test_axis_verilog_frames(tmp_path):
    result = run_cocotb(AXIS_PASS, name="selftest_axis", test_module=TEST_MODULE,
                        testcase="axis_frames",
                        parameters={"width": 16, "frames": [1, 5, 2, 17, 3]}, seeds=(3,))
    assert result.tests == ["axis_frames"]
    assert result.report["frames"] == 5
    # the same Verilog from a file: the cached build is used
    path = tmp_path / "axis_pass.v"
    path.write_text(AXIS_PASS)
    again = run_cocotb(path, name="selftest_axis_file", test_module=TEST_MODULE,
                       testcase="axis_frames", parameters={"width": 16, "frames": [2]},
                       seeds=4)
    assert not again.built and again.build_dir == result.build_dir


def test_wall_clock_timeout_kills_a_hung_simulation():
    with pytest.raises(AssertionError, match=r"timed out: killed after timeout_s=4 s"):
        run_cocotb(AXIS_PASS, name="selftest_axis_hang", test_module=TEST_MODULE,
                   testcase="hang", parameters={}, timeout_s=4, seeds=9)


@pytest.mark.skipif(not toolchain.iverilog_available(),
                    reason="Icarus fallback smoke test needs Debian's 'iverilog' on PATH")
def test_icarus_fallback():
    result = run_cocotb(AXIS_PASS, name="selftest_axis_icarus", test_module=TEST_MODULE,
                        testcase="axis_frames", simulator="icarus",
                        parameters={"width": 8, "frames": [4, 1, 3]}, seeds=(2,))
    assert result.simulator == "icarus"
    assert result.report["frames"] == 3
    # an Amaranth design with a fault is caught and leaves a waveform on Icarus too
    with pytest.raises(AssertionError, match="beat 0: got") as info:
        run_cocotb(SkidAdder(BITS, LANES), name="selftest_skid_icarus_fault3",
                   test_module=TEST_MODULE, testcase="stream_adder", simulator="icarus",
                   parameters=adder_params(mode=MODE_LANE, n=20), seeds=6)
    wave = Path(str(info.value).split("waveform: ")[1].split("\n")[0])
    assert wave.exists() and wave.stat().st_size > 0
