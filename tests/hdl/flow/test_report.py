import json

import pytest

import boards
from hdl.flow import report
from hdl.flow.report import BuildReport, LayerReport
from hdl.flow.synth import SynthResult


def layer(name, cycles, lut=100, levels=3, **kw):
    args = dict(name=name, op="conv", engine="mvtu", pe=2, simd=4, cycles_per_frame=cycles,
                lut=lut, ff=2 * lut, bram18=1, uram=0, dsp=0, logic_levels=levels)
    args.update(kw)
    return LayerReport(**args)


def make(**kw):
    args = dict(model="models/w1a2", layers=[layer("conv0", 576), layer("conv1", 1152, levels=7),
                                             layer("fc0", 300, op="fc", engine="sparse")],
                latency_cycles=2500)
    args.update(kw)
    return BuildReport.for_board(boards.get("zcu102"), **args)


def test_json_has_exactly_the_issue_keys(tmp_path):
    r = make()
    paths = report.write_report(r, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert list(data) == ["board", "part", "clock_mhz", "model", "layers", "totals", "capacity",
                          "fits", "cycles_per_frame", "fps", "latency_cycles"]
    for entry in data["layers"]:
        assert list(entry) == ["name", "op", "engine", "pe", "simd", "cycles_per_frame", "lut",
                               "ff", "bram18", "uram", "dsp", "logic_levels"]
    assert list(data["totals"]) == list(data["capacity"]) == ["lut", "ff", "bram18", "uram", "dsp"]
    assert data["board"] == "zcu102" and data["part"] == "xczu9eg-ffvb1156-2-e"
    assert data["clock_mhz"] == 200.0
    assert data["cycles_per_frame"] == 1152                   # the slowest layer
    assert data["fps"] == pytest.approx(200e6 / 1152)
    assert data["totals"] == {"lut": 300, "ff": 600, "bram18": 3, "uram": 0, "dsp": 0}
    assert data["capacity"]["dsp"] == 2520 and data["fits"] is True
    assert report.load_report(paths["json"]) == r


def test_markdown_and_plot(tmp_path):
    paths = report.write_report(make(), tmp_path, notes=["folding: default target"])
    md = paths["md"].read_text()
    assert "| conv1 | conv | mvtu | 2 | 4 | 1,152 * |" in md
    assert "| 7 (!) |" in md                                  # deeper than 6 LUT levels
    assert "folding: default target" in md and "report.png" in md
    assert "173,611 fps" in md
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_totals_from_whole_design_and_fit(tmp_path):
    r = make(totals={"lut": 300_000, "ff": 10, "bram18": 1, "uram": 0, "dsp": 0},
             clock_mhz=150)
    assert not r.fits and r.fps == pytest.approx(150e6 / 1152)
    assert r.utilisation()["lut"] == pytest.approx(300_000 / 274_080)
    pynq = BuildReport.for_board(boards.get("pynq-z2"), model="m", latency_cycles=1,
                                 layers=[layer("a", 10, uram=1)])
    assert not pynq.fits                                      # URAM used, none on a 7z020
    md = pynq.markdown()
    assert "| uram | 1 | 0 | n/a |" in md and "fits: **NO**" in md
    report.write_report(pynq, tmp_path)                       # plot copes with 0 capacity


def test_from_synth():
    s = SynthResult(top="t", family="xcup", lut=10, lut_logic=8, lut_memory=2, ff=5, bram18=2,
                    uram=1, dsp=3, carry=1, muxf=0, logic_levels=4, path_cells=5)
    l = LayerReport.from_synth(name="fc", op="fc", engine="shift", pe=1, simd=2,
                               cycles_per_frame=9, synth=s)
    assert l.to_json() == {"name": "fc", "op": "fc", "engine": "shift", "pe": 1, "simd": 2,
                           "cycles_per_frame": 9, "lut": 10, "ff": 5, "bram18": 2, "uram": 1,
                           "dsp": 3, "logic_levels": 4}


def test_checks(tmp_path):
    with pytest.raises(ValueError, match="layer conv0 pe must be >= 1, not 0"):
        layer("conv0", 10, pe=0)
    with pytest.raises(TypeError, match="layer x lut must be an int"):
        layer("x", 10, lut=1.5)
    with pytest.raises(ValueError, match="report layers must not be empty"):
        make(layers=[])
    with pytest.raises(ValueError, match="report layer names must be unique"):
        make(layers=[layer("a", 1), layer("a", 2)])
    with pytest.raises(ValueError, match="report totals must have exactly the keys"):
        make(totals={"lut": 1})
    with pytest.raises(ValueError, match="report clock_mhz must be a positive number"):
        make(clock_mhz=0)
    bad = make().to_json()
    bad["extra"] = 1
    (tmp_path / "r.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="unexpected \\['extra'\\]"):
        report.load_report(tmp_path / "r.json")
    bad.pop("extra")
    bad["fits"] = False
    (tmp_path / "r.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="'fits' disagrees"):
        report.load_report(tmp_path / "r.json")


def test_markdown_shell_limit_and_fifos():
    """report.md names the shell's floor when it sets the frame rate, lists the FIFOs and
    the whole design's logic levels; report.json keeps its keys."""
    fifos = [{"stage": "conv1", "depth": 3, "width": 8, "bits": 24, "reason": "rate"},
             {"stage": "fc0", "depth": 64, "width": 4, "bits": 256, "reason": "burst"}]
    r = make(cycles_per_frame=2_000, shell_floors=(2_000, 12), fifos=fifos, logic_levels=7)
    md = r.markdown()
    assert "cycles per frame: 2,000 (the AXI shell's input: 2,000 beats per frame)" in md
    assert "| fc0 | 64 | 4 | 256 | burst |" in md and "| total | | | 280 | |" in md
    assert "Whole design: 7 logic levels (!)" in md
    assert "fifos" not in r.to_json() and make().limit == "slowest layer"
    with pytest.raises(ValueError, match="shell_floors must be"):
        make(shell_floors=(1, 2, 3))
