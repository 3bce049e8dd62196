"""``hdl.build`` streams from DDR what does not fit on chip: a small model on a board
whose on-chip weight budget is made tiny, the placement in report.json/report.md and
deploy/, an explicit ``--folding`` entry that wins, and the refusals (nothing fits, the
DDR cannot carry an asked frame rate)."""

import json

import numpy as np
import pytest

import boards
from boards.zcu104 import ZCU104Platform
from hdl import ir
from hdl.cli import EXIT_DOES_NOT_FIT
from hdl.flow import build
from hdl.flow.network import NetworkSpec
from hdl.flow.report import load_report
from hdl.flow.synth import SynthResult
from hdl.flow.weights import ddr_bytes_per_frame, onchip_bytes
from tests.hdl.flow.test_weights import small_model

#: Weight bytes on chip the fake board allows (ONCHIP_WEIGHT_SHARE of this).
ONCHIP = 120


class TinyBoard(ZCU104Platform):
    """A ZCU104 with room for only ``ONCHIP`` bytes of on-chip weights."""

    @classmethod
    def onchip_weight_bytes(cls):
        return ONCHIP


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return ir.save(small_model(), tmp_path_factory.mktemp("model") / "ddr-small")


@pytest.fixture
def tiny_board(monkeypatch):
    monkeypatch.setattr(boards, "get", lambda name: TinyBoard)


@pytest.fixture
def fake_synth(monkeypatch):
    """Fixed synthesis figures instead of Yosys: these tests are about the weights."""
    def synth(jobs, family, progress, executor=None):
        return {label: SynthResult(top=top, family=family, lut=100, lut_logic=100, lut_memory=0,
                                   ff=50, bram18=0, uram=0, dsp=0, carry=0, muxf=0,
                                   logic_levels=3, path_cells=3)
                for label, (_, top, *_) in jobs.items()}
    monkeypatch.setattr(build, "_synth", synth)


def _onchip_on_zcu104(model):
    spec = NetworkSpec(model, None, target_cycles=int(200e6 / build.DEFAULT_TARGET_FPS))
    return {s.name: onchip_bytes(s) for s in spec.stages}


def test_what_does_not_fit_streams_and_the_report_shows_it(model_file, tiny_board, fake_synth,
                                                           tmp_path):
    model = small_model()
    sizes = _onchip_on_zcu104(model)
    budget = int(0.9 * ONCHIP)
    assert sum(sizes.values()) > budget            # the premise: the weights do not fit
    result = build.build("zcu104", model_path=model_file, out_dir=tmp_path, quiet=True)
    w = result.weights
    streamed = [r["stage"] for r in w["stages"] if r["placement"] == "ddr"]
    assert streamed and set(streamed) < set(sizes)    # some stages stream, not all
    folding = json.loads((tmp_path / "folding.json").read_text())
    assert {k for k, v in folding.items() if v.get("weights") == "ddr"} == set(streamed)
    spec = NetworkSpec(model, folding)
    assert [s.name for s in spec.streamed] == streamed
    assert w["onchip_bytes"] == sum(onchip_bytes(s) for s in spec.stages) <= budget
    assert w["onchip_budget_bytes"] == budget
    assert w["ddr_bytes_per_frame"] == sum(ddr_bytes_per_frame(s) for s in spec.stages) > 0
    for row, s in zip(w["stages"], spec.stages):
        assert row["onchip_bytes"] == onchip_bytes(s)
        assert row["ddr_bytes_per_frame"] == ddr_bytes_per_frame(s)
        assert (row["ddr_bytes_per_frame"] > 0) == (row["placement"] == "ddr")
    port = TinyBoard.ddr_port_bytes_per_s(200)
    assert w["ddr_ports"] == len(spec.streamers) and w["ddr_bandwidth_ports"] == len(spec.streamers) * port
    fps = 200e6 / result.cycles_per_frame
    assert w["ddr_bandwidth_used"] == pytest.approx(w["ddr_bytes_per_frame"] * fps)
    assert w["ddr_bandwidth_used"] <= w["ddr_bandwidth_ports"]
    # The frame rate counts the port: no faster than the DDR bytes over the ports allow.
    assert result.cycles_per_frame >= spec.cycles_per_frame
    assert result.cycles_per_frame * port / 200e6 * w["ddr_ports"] >= w["ddr_bytes_per_frame"]
    # report.json and report.md
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["weights"] == json.loads(json.dumps(w))
    assert data["cycles_per_frame"] == result.cycles_per_frame
    assert load_report(tmp_path / "report.json").weights == data["weights"]
    md = (tmp_path / "report.md").read_text()
    for name in streamed:
        assert f"| {name} | ddr | 0 | {ddr_bytes_per_frame(spec.stages[[s.name for s in spec.stages].index(name)]):,} |" in md
    assert f"{w['ddr_bandwidth_used'] / 1e9:.3f} GB/s** at" in md
    # deploy/: the weight image, named in accelerator.json
    deploy = tmp_path / "deploy"
    assert (deploy / "weights.bin").read_bytes() == spec.weight_image()
    cfg = json.loads((deploy / "accelerator.json").read_text())
    assert cfg["weights"] == {"file": "weights.bin", "bytes": spec.weight_buffer_bytes,
                              "align": 4096, "ports": len(spec.streamers)}
    # the Vivado project connects one HP port per streamer
    tcl = (tmp_path / "vivado" / "create_project.tcl").read_text()
    assert "m_axi_w0" in tcl


def test_an_explicit_folding_wins(model_file, tiny_board, tmp_path):
    auto = build.build("zcu104", model_path=model_file, out_dir=tmp_path / "auto",
                       run_synth=False, quiet=True)
    auto_ddr = {r["stage"] for r in auto.weights["stages"] if r["placement"] == "ddr"}
    # Keep on chip a stage the compiler streamed: another one streams instead.
    keep = sorted(auto_ddr)[0]
    pe, simd = auto.folding[keep]["pe"], auto.folding[keep]["simd"]
    result = build.build("zcu104", model_path=model_file, out_dir=tmp_path / "pinned",
                         run_synth=False, quiet=True,
                         folding={keep: {"pe": pe, "simd": simd, "weights": "rom"}})
    placement = {r["stage"]: r["placement"] for r in result.weights["stages"]}
    assert placement[keep] == "on chip"
    assert "ddr" in placement.values()
    assert result.weights["onchip_bytes"] <= int(0.9 * ONCHIP)
    # An explicit "ddr" on a design that fits is kept as well (no placement needed).
    on_real = build.build("zcu104", model_path=model_file, out_dir=tmp_path / "real",
                          run_synth=False, quiet=True, deploy=False,
                          folding={"fc2": {"pe": 2, "simd": 4, "weights": "ddr"}})
    assert on_real.folding["fc2"]["weights"] == "ddr"
    assert [r["stage"] for r in on_real.weights["stages"] if r["placement"] == "ddr"] == ["fc2"]


def test_weight_masters_take_the_boards_hp_width(model_file, tmp_path):
    """A stage streamed on a Zynq-7000 board reads through 64-bit masters, the width of
    its HP ports (128 on Zynq UltraScale+)."""
    result = build.build("pynq-z2", model_path=model_file, out_dir=tmp_path, run_synth=False,
                         quiet=True, deploy=False,
                         folding={"fc2": {"pe": 2, "simd": 4, "weights": "ddr"}})
    assert result.folding["fc2"]["weights"] == "ddr"
    top = (tmp_path / "vivado" / "hdl" / f"{build.TOP_MODULE}.v").read_text()
    assert "input wire [63:0] m_axi_w0_rdata," in top


def test_refusals_are_one_line(model_file, monkeypatch, tmp_path):
    # Even with every stage streamed the weights pinned on chip do not fit.
    class NoRoom(TinyBoard):
        @classmethod
        def onchip_weight_bytes(cls):
            return 10
    monkeypatch.setattr(boards, "get", lambda name: NoRoom)
    model = small_model()
    sizes = _onchip_on_zcu104(model)
    big = max(sizes, key=sizes.get)
    with pytest.raises(build.DoesNotFit, match="more than the 9 bytes") as info:
        build.build("zcu104", model_path=model_file, out_dir=tmp_path / "a", run_synth=False,
                    quiet=True, folding={big: {"weights": "rom"}})
    assert info.value.exit_code == EXIT_DOES_NOT_FIT and "\n" not in str(info.value)
    assert not (tmp_path / "a").exists()
    # The DDR cannot carry an asked frame rate: conv0 streamed reads its weights once per
    # output pixel, from a DDR of 100 MB/s (half a byte per cycle at 200 MHz).
    class SlowDdr(TinyBoard):
        ddr_peak_bytes_per_s = 100_000_000
    monkeypatch.setattr(boards, "get", lambda name: SlowDdr)
    fastest = 200e6 / build._target_cycles(model, 200, 1e12, explicit=False, notes=[],
                                           axis_width=build.board_tdata_width(SlowDdr))
    with pytest.raises(build.DoesNotFit, match="weights streamed from DDR .conv0. allow at most") as info:
        build.build("zcu104", model_path=model_file, out_dir=tmp_path / "b", run_synth=False,
                    quiet=True, target_fps=fastest, folding={"conv0": {"weights": "ddr"}})
    assert "\n" not in str(info.value) and info.value.exit_code == EXIT_DOES_NOT_FIT
    # At the default rate it builds, the frame rate set by the DDR.
    slow = build.build("zcu104", model_path=model_file, out_dir=tmp_path / "c", run_synth=False,
                       quiet=True, deploy=False, folding={"conv0": {"weights": "ddr"}})
    w = slow.weights
    assert w["ddr_bandwidth_ports"] == 100_000_000
    assert slow.cycles_per_frame == w["ddr_cycles_per_frame"] == -(-w["ddr_bytes_per_frame"] * 2 // 1)
    assert w["ddr_bandwidth_used"] == pytest.approx(100_000_000)


@pytest.mark.slow
def test_verify_a_streamed_build(model_file, tiny_board, tmp_path):
    """--verify on the streamed build: the Verilator top with its weight master served
    by the DDR model (ZCU104 port latency and bandwidth, random stalls), bit-exact.
    Slow: a Verilator build of its own (about 50 s; 10 s once cached)."""
    result = build.build("zcu104", model_path=model_file, out_dir=tmp_path, run_synth=False,
                         quiet=True, deploy=False, verify=6, verify_data="random", seed=2)
    v = result.verify
    assert v["bit_exact"] and v["frames"] == 6 and v["first_mismatch"] is None
    streamed = NetworkSpec(small_model(), result.folding).streamed
    assert streamed
    # every frame of both runs reads the streamed weights at least once per input vector
    per_frame = sum(ddr_bytes_per_frame(s) for s in streamed)
    assert v["ddr_bytes_read"] >= 6 * per_frame
    assert json.loads((tmp_path / "verify.json").read_text())["bit_exact"] is True


@pytest.mark.slow
def test_max_fit_places_the_weights(model_file, tiny_board, fake_synth, tmp_path):
    """--max-fit plans with the weights placed (synthesis figures fixed: every folding
    fits). Slow: the search converts every tried folding's engines (about 30 s)."""
    result = build.build("zcu104", model_path=model_file, out_dir=tmp_path, quiet=True,
                         deploy=False, max_fit=True)
    assert any(r["placement"] == "ddr" for r in result.weights["stages"])
    assert result.weights["onchip_bytes"] <= int(0.9 * ONCHIP)


def test_a_ddr_bound_report_says_so(model_file, monkeypatch, fake_synth, tmp_path):
    """The frame rate set by the DDR: report.json's cycles, report.md's limit."""
    class SlowDdr(TinyBoard):
        ddr_peak_bytes_per_s = 100_000_000
    monkeypatch.setattr(boards, "get", lambda name: SlowDdr)
    slow = build.build("zcu104", model_path=model_file, out_dir=tmp_path, quiet=True,
                       deploy=False, folding={"conv0": {"weights": "ddr"}})
    cycles = slow.report.cycles_per_frame
    assert cycles == slow.weights["ddr_cycles_per_frame"] == slow.cycles_per_frame
    assert cycles > max(layer.cycles_per_frame for layer in slow.report.layers)
    md = (tmp_path / "report.md").read_text()
    assert (f"cycles per frame: {cycles:,} (the DDR bandwidth: "
            f"{slow.weights['ddr_bytes_per_frame']:,} bytes per frame over 1 HP port(s))") in md
    assert "(100.0%)" in md              # the port is the limit: all of its bandwidth used
