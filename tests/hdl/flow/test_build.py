"""``python -m hdl.build``: the main job's outputs and its one-line errors."""

import json
import subprocess
import sys

import pytest

import boards
from hdl import ir
from hdl.flow import build
from hdl.flow.report import LAYER_KEYS, REPORT_KEYS, RESOURCE_KEYS
from sim import random_model as rm


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A small conv + pool + fc model, quick to elaborate and synthesise."""
    plans = [rm.LayerPlan(op="conv", out=4, kind="binary", act_bits=2, padding=1, pool=2),
             rm.LayerPlan(op="fc", out=4, kind="ternary", act_bits=None, bias=True)]
    model = rm.build_model(plans, input_shape=(4, 4, 1), input_bits=4, seed=5, name="tiny")
    return ir.save(model, tmp_path_factory.mktemp("model") / "tiny")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hdl.build", *args], capture_output=True, text=True,
                          timeout=600)


def test_unknown_board_is_one_line():
    proc = _cli("zcu999", "--no-synth")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown board 'zcu999'" in lines[0]
    assert all(name in lines[0] for name in boards.BOARDS)


def test_bad_model_is_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    proc = _cli("zcu102", "--model", str(bad), "--no-synth", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in proc.stderr


def test_bad_folding_is_one_line(tiny_model, tmp_path):
    proc = _cli("pynq-z2", "--model", str(tiny_model), "--no-synth", "--out", str(tmp_path),
                "--folding", '{"conv0": {"pe": 3}}')
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "layer 'conv0'" in line and "PE must divide the output count 4, not 3" in line


@pytest.mark.parametrize("board", sorted(boards.BOARDS))
def test_every_board_generates_a_project(board, tiny_model, tmp_path):
    result = build.build(board, model_path=tiny_model, out_dir=tmp_path, run_synth=False, quiet=True)
    core = (tmp_path / "vivado" / "hdl" / f"{build.CORE_MODULE}.v").read_text()
    wrapper = (tmp_path / "vivado" / "hdl" / f"{build.TOP_MODULE}.v").read_text()
    assert f"module {build.CORE_MODULE}" in core and f"module {build.TOP_MODULE}" in wrapper
    tcl = (tmp_path / "vivado" / "create_project.tcl").read_text()
    assert boards.get(board).part() in tcl
    assert json.loads((tmp_path / "folding.json").read_text()) == result.folding
    assert result.report is None


def test_folding_override_and_target(tiny_model, tmp_path):
    fast = build.build("zcu102", model_path=tiny_model, out_dir=tmp_path / "a", run_synth=False,
                       quiet=True, target_fps=1e9)
    slow = build.build("zcu102", model_path=tiny_model, out_dir=tmp_path / "b", run_synth=False,
                       quiet=True, folding={"conv0": {"pe": 1, "simd": 1}, "fc1": {"pe": 1, "simd": 1}})
    assert fast.cycles_per_frame < slow.cycles_per_frame
    assert slow.folding["conv0"]["pe"] == slow.folding["conv0"]["simd"] == 1
    # The board's block RAM is planned for the weights: every dense stage is placed.
    assert all(f.get("ram_style") in ("block", "distributed")
               for name, f in slow.folding.items() if not name.startswith("pool"))


def test_full_build_report(tiny_model, tmp_path):
    """Synthesis included: report.json has the issue's keys and the totals fit."""
    result = build.build("zcu104", model_path=tiny_model, out_dir=tmp_path, quiet=True)
    data = json.loads((tmp_path / "report.json").read_text())
    assert set(REPORT_KEYS) <= set(data)
    assert data["board"] == "zcu104" and data["fits"] is True
    assert data["cycles_per_frame"] == result.cycles_per_frame
    assert data["fps"] == pytest.approx(data["clock_mhz"] * 1e6 / data["cycles_per_frame"])
    for layer in data["layers"]:
        assert set(LAYER_KEYS) <= set(layer)
    assert data["totals"]["lut"] > 0 and data["totals"]["ff"] > 0
    assert set(data["capacity"]) == set(RESOURCE_KEYS)
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.png").exists()

    # The same design on a board too small for it is refused in one line.
    tiny_board = type("TinyBoard", (boards.get("zcu104"),), {
        "name": "tinyboard", "capacity": boards.Capacity(lut=10, ff=10, bram18=0, uram=0, dsp=0)})
    boards.BOARDS["tinyboard"] = tiny_board
    try:
        with pytest.raises(build.BuildError, match=r"tinyboard: the design does not fit \(lut"):
            build.build("tinyboard", model_path=tiny_model, out_dir=tmp_path / "small", quiet=True)
    finally:
        del boards.BOARDS["tinyboard"]
