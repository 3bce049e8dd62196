"""bench.vgg_layer on a tiny layer: the folding search and slice scaling (with a stand-in
for Yosys whose figures follow a known formula), the frame simulation against the golden
model, the JSON keys, the report section; and the slice scaling with real Yosys."""

import json
from types import SimpleNamespace

import pytest

from bench import report, vgg_layer
from bench.vgg_layer import Geometry
from boards import AX7Z035Platform, Capacity

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

TINY = Geometry(4, 4, 8, 16)


class TinyBoard(AX7Z035Platform):
    name = "tiny"
    capacity = Capacity(lut=2_500, ff=100_000, bram18=1_000, uram=0, dsp=40)


def fake_figures(stage):
    """Stand-in synthesis: 100 shared LUT, per PE 20 LUT + 10 (int) or 30 (pot) per lane;
    one DSP per int lane; one BRAM18 per PE plus one shared."""
    pot = stage.layer.weights.kind == "pot"
    lut = 100 + stage.pe * (20 + stage.simd * (30 if pot else 10))
    return dict(lut=lut, ff=2 * lut, dsp=0 if pot else stage.pe * stage.simd,
                bram18=stage.pe + 1, logic_levels=5)


def _run_tiny(designs, do_sim):
    calls = []

    def fake_synth(stage, family, timeout, log, platform=None):
        calls.append((stage.layer.weights.kind, stage.layer.out_channels, stage.pe))
        return SimpleNamespace(cached=True, **fake_figures(stage)), 0.0

    mp = pytest.MonkeyPatch()
    mp.setattr(vgg_layer, "_synth_stage", fake_synth)
    try:
        out = vgg_layer.run(designs, geom=TINY, board=TinyBoard, do_sim=do_sim, log=lambda text: None)
    finally:
        mp.undo()
    return out, calls


@pytest.fixture(scope="module")
def tiny_result():
    """Both designs searched, not simulated (one Verilator build each is its own test)."""
    return _run_tiny(("int8", "pot4"), do_sim=False)


def test_search_picks_largest_fitting_folding(tiny_result):
    out, calls = tiny_result
    d = out["designs"]
    # int8: DSP = lanes <= 40 -> PE 4 x SIMD 8 (32 DSP); PE 8 (64 DSP) does not fit.
    assert d["int8"]["folding"]["pe"] == 4 and d["int8"]["folding"]["simd"] == 8
    assert d["int8"]["dsp"] == 32 and d["int8"]["lut"] == 100 + 4 * (20 + 8 * 10)
    # pot4: LUT = 100 + 260 * PE <= 2,500 -> PE 8; PE 16 (4,260 LUT) does not fit.
    assert d["pot4"]["folding"]["pe"] == 8 and d["pot4"]["dsp"] == 0
    assert d["pot4"]["lut"] == 100 + 8 * 260 and d["pot4"]["scaled"] is True
    tried = {name: [(t["pe"], t["fits"]) for t in d[name]["search"]] for name in d}
    assert tried["int8"] == [(8, False), (4, True), (2, True)]
    assert tried["pot4"] == [(16, False), (8, True), (2, True)]
    # A scaled folding synthesises slices of 1 and 2 PEs with its weight depth.
    assert ("pot", 2 * 16 // 8, 2) in calls and ("pot", 16 // 8, 1) in calls
    assert d["pot4"]["search"][1]["shared"]["lut"] == 100


@pytest.mark.parametrize("design", ["int8", "pot4"])
def test_frames_measured_bit_exact(design):
    out, _ = _run_tiny((design,), do_sim=True)
    row = out["designs"][design]
    fold = row["folding"]
    model = 16 * (16 // fold["pe"]) * (9 * 8 // fold["simd"])
    assert row["cycles_model"] == model
    # One frame: the model's cycles plus the pipeline's fill and drain.
    assert model <= row["cycles_measured"] <= model + 40, row
    assert row["outputs_checked"] == 16 * 16
    assert row["fps"] == pytest.approx(100e6 / row["cycles_measured"], rel=1e-6)


def test_ratios_from_measured_cycles_when_both_are_measured():
    def rows(measured):
        return {"designs": {"int8": {"cycles_model": 400, "cycles_measured": 420 if measured else None, "dsp": 32},
                            "pot4": {"cycles_model": 100, "cycles_measured": 105 if measured else None, "dsp": 0}}}
    out = rows(True)
    vgg_layer.compare(out)
    assert (out["time_ratio"], out["time_ratio_from"], out["dsp_ratio"]) == (0.25, "cycles_measured", 0)
    assert out["goal"]["met"] is True
    out = rows(False)
    vgg_layer.compare(out)
    assert (out["time_ratio"], out["time_ratio_from"]) == (0.25, "cycles_model") and out["goal"]["met"] is False


def test_report_section(tiny_result, tmp_path):
    out, _ = tiny_result
    (tmp_path / "vgg_layer.json").write_text(json.dumps({**out, "command": "pytest tiny"}))
    text = report.render(tmp_path, tmp_path)
    section = text.split("## VGG16's 8th convolution")[1].split("\n## ")[0]
    assert "`pytest tiny`" in section
    gap = round(out["time_ratio"] - 0.4, 4)
    assert f"| {out['time_ratio']:g} | <= 0.4 | {gap:g} | 0.489 |" in section
    assert f"| {out['designs']['pot4']['lut']:,} |" in section
    assert "## vgg_layer" not in text                   # not also rendered as a generic section


def test_frame_under_stalls():
    rep = vgg_layer.simulate("pot4", Geometry(3, 3, 4, 4), 2, 4, "auto", frames=2, seed=3,
                             gap=0.3, stall=0.3, makeflags=None, use_cache=False)
    assert rep["outputs"] == 2 * 9 * 4 and rep["cycles"] > 2 * 9 * 2 * 9


def test_slice_scaling_with_yosys(tmp_path, monkeypatch):
    """Real Yosys: a 4-PE int8 folding from its 1- and 2-PE slices; one DSP per lane."""
    monkeypatch.setenv("QNN_SYNTH_CACHE", str(tmp_path))
    row = vgg_layer.evaluate("int8", Geometry(4, 4, 8, 8), 4, 8, TinyBoard, timeout=600)
    assert row["scaled"] is True
    for key in ("lut", "ff", "dsp", "bram18"):
        assert row[key] == row["shared"][key] + 4 * row["per_pe"][key]
    assert row["per_pe"]["dsp"] == 8 and row["dsp"] == 32
