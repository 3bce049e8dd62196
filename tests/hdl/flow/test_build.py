"""``python -m hdl.build``: the main job's outputs and its one-line errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

import boards
from hdl import ir
from hdl.flow import build
from hdl.flow.report import LAYER_KEYS, REPORT_KEYS, RESOURCE_KEYS
from hdl.cli import EXIT_BAD_INPUT, EXIT_DOES_NOT_FIT, EXIT_USAGE
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
    assert proc.returncode == EXIT_BAD_INPUT
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown board 'zcu999'" in lines[0]
    assert all(name in lines[0] for name in boards.BOARDS)


def test_bad_model_is_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    proc = _cli("zcu102", "--model", str(bad), "--no-synth", "--out", str(tmp_path / "out"))
    assert proc.returncode == EXIT_BAD_INPUT
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in proc.stderr


def test_bad_folding_is_one_line(tiny_model, tmp_path):
    proc = _cli("pynq-z2", "--model", str(tiny_model), "--no-synth", "--out", str(tmp_path),
                "--folding", '{"conv0": {"pe": 3}}')
    assert proc.returncode == EXIT_BAD_INPUT
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
    fastest = build.frame_cycles(build.plan(ir.load(tiny_model), target_cycles=1))
    fast = build.build("zcu102", model_path=tiny_model, out_dir=tmp_path / "a", run_synth=False,
                       quiet=True, target_fps=250e6 / fastest, clock_mhz=250)
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
    marker = json.loads((tmp_path / build.COMPLETE_MARKER).read_text())
    assert marker["synthesised"] is True and "report.json" in marker["outputs"]

    # The same design on a board too small for it is refused in one line.
    tiny_board = type("TinyBoard", (boards.get("zcu104"),), {
        "name": "tinyboard", "capacity": boards.Capacity(lut=10, ff=10, bram18=0, uram=0, dsp=0)})
    boards.BOARDS["tinyboard"] = tiny_board
    try:
        with pytest.raises(build.BuildError, match=r"tinyboard: the design does not fit \(lut"):
            build.build("tinyboard", model_path=tiny_model, out_dir=tmp_path / "small", quiet=True)
    finally:
        del boards.BOARDS["tinyboard"]
    # The report explains the failure, but the folder is not marked as a finished build.
    assert (tmp_path / "small" / "report.json").exists()
    assert not (tmp_path / "small" / build.COMPLETE_MARKER).exists()


def test_large_design_is_synthesised_in_parts(tiny_model, tmp_path, monkeypatch):
    """Past WHOLE_RUN_MAX_CHARS of Verilog the build synthesises each stage and the rest of
    the top apart (from RTLIL) and adds them up; the layers' figures are those parts."""
    seen = []
    real = build.synth.synthesize_parts

    def parts(text, top, family, modules, **kw):
        seen.append((top, list(modules), kw["rtlil"]))
        return real(text, top, family, modules, **kw)
    monkeypatch.setattr(build, "WHOLE_RUN_MAX_CHARS", 0)
    monkeypatch.setattr(build.synth, "synthesize_parts", parts)
    build.build("zcu104", model_path=tiny_model, out_dir=tmp_path, quiet=True)
    data = json.loads((tmp_path / "report.json").read_text())
    stages = [layer["name"] for layer in data["layers"]]
    assert seen == [("qnn_core", [f"qnn_core.core.{name}" for name in stages], True)]
    md = (tmp_path / "report.md").read_text()
    assert "synthesised in parts" in md
    for key in ("lut", "ff", "bram18"):             # the whole = the stages + the rest
        assert data["totals"][key] >= sum(layer[key] for layer in data["layers"])
    assert data["totals"]["ff"] > sum(layer["ff"] for layer in data["layers"])    # the shell's
    levels = int(re.search(r"Whole design: (\d+) logic levels", md).group(1))
    assert levels >= max(layer["logic_levels"] for layer in data["layers"])


# --- issue 15: every bad argument ends in one line; stale outputs never look like success ---

from hypothesis import given, settings
from hypothesis import strategies as st

from hdl import build as cli


def _main(capsys, *args):
    """Run the CLI in-process; return (exit code, stderr lines that are not progress bars)."""
    try:
        code = cli.main(list(args))
    except SystemExit as exc:                 # argparse
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "step/s" not in ln
             and "step]" not in ln]
    return code, lines


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """Scores of 42 bits: more than the AXI shell's 32-bit words."""
    m = ir.Model(name="wide", input=ir.InputSpec(shape=(1, 1, 4), bits=8, scale=1.0),
                 layers=[ir.FC(name="fc0", out_features=2,
                               weights=ir.Weights.from_matrix(np.full((2, 4), 127), "int", 8),
                               bias=np.array([2**40, -(2**40)], np.int64))],
                 classes=["a", "b"])
    return ir.save(m, tmp_path_factory.mktemp("wide") / "wide")


def _bad_args(tmp_path, tiny_model, wide_model):
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "mdir" / "model.npz").mkdir(parents=True)
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"conv0": "\xe9"}')
    model = ["--model", str(tiny_model), "--no-synth"]
    return {
        "out is a file": (model + ["--out", str(afile)], "is a file, not a directory"),
        "out under a file": (model + ["--out", str(afile / "x")], "cannot write there"),
        "out unwritable": (model + ["--out", "/proc/qnn_no_such/x"], "cannot write there"),
        "out empty": (model + ["--out", ""], "--out must name a directory"),
        "folding directory": (model + ["--folding", str(tmp_path / "adir")], "is a directory, not a JSON file"),
        "folding not utf-8": (model + ["--folding", str(latin)], "not UTF-8 text"),
        "folding long inline": (model + ["--folding", "{" + " " * 300 + "]"], "not JSON and not a file"),
        "folding list": (model + ["--folding", "[1]"], "must be a JSON object"),
        "folding inf pe": (model + ["--folding", '{"conv0": {"pe": 1e400}}'], "pe must be a positive integer"),
        "folding unknown": (model + ["--folding", '{"nope": [1, 1]}'], "unknown stage"),
        "fps nan": (model + ["--target-fps", "nan"], "--target-fps must be a finite positive number"),
        "fps inf": (model + ["--target-fps", "inf"], "--target-fps must be a finite positive number"),
        "fps zero": (model + ["--target-fps", "0"], "--target-fps must be a finite positive number"),
        "fps negative": (model + ["--target-fps", "-5"], "--target-fps must be a finite positive number"),
        "fps unreachable": (model + ["--target-fps", "1e30"], "--target-fps 1e+30 cannot be met"),
        "fps text": (model + ["--target-fps", "fast"], "invalid float value"),
        "clock zero": (model + ["--clock", "0"], "--clock must be a finite number between 1 and 800 MHz, not 0"),
        "clock nan": (model + ["--clock", "nan"], "--clock must be a finite number"),
        "clock huge": (model + ["--clock", "1e9"], "--clock must be a finite number"),
        "clock text": (model + ["--clock", "abc"], "invalid float value"),
        "max-fit no-synth": (model + ["--max-fit"], "--max-fit needs synthesis"),
        "max-fit with fps": (["--model", str(tiny_model), "--max-fit", "--target-fps", "5"], "--max-fit chooses"),
        "scores over 32 bits": (["--model", str(wide_model), "--no-synth", "--out", str(tmp_path / "w")],
                                "score width must be at most 32, not 42"),
        "model dir without model": (["--model", str(tmp_path / "adir"), "--no-synth"],
                                    "adir: is a directory without model.npz"),
        "model.npz a directory": (["--model", str(tmp_path / "mdir"), "--no-synth"],
                                  "mdir/model.npz: is a directory, not a model file"),
        "unknown option": (model + ["--fast"], "unrecognized arguments"),
    }


BAD = sorted([
    "out is a file", "out under a file", "out unwritable", "out empty", "folding directory",
    "folding not utf-8", "folding long inline", "folding list", "folding inf pe", "folding unknown",
    "fps nan", "fps inf", "fps zero", "fps negative", "fps unreachable", "fps text", "clock zero",
    "clock nan", "clock huge", "clock text", "max-fit no-synth", "max-fit with fps",
    "scores over 32 bits", "model dir without model", "model.npz a directory", "unknown option"])


@pytest.mark.parametrize("case", BAD)
def test_bad_argument_is_one_line(case, tmp_path, tiny_model, wide_model, capsys):
    args, expect = _bad_args(tmp_path, tiny_model, wide_model)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, lines = _main(capsys, "zcu102", *args)
    want = (EXIT_USAGE if case in ("clock text", "fps text", "unknown option") else
            EXIT_DOES_NOT_FIT if case == "fps unreachable" else EXIT_BAD_INPUT)
    assert code == want and len(lines) == 1, (code, lines)
    assert lines[0].startswith("error: ") and expect in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # nothing left behind


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10**400)
       | st.sampled_from([None, "5", True, 1j]))
def test_target_fps_numbers(tiny_model, value):
    """Any number: a finite rate the model reaches builds nothing here; the rest one BuildError."""
    fastest = _fastest_top(tiny_model, "zcu102")
    reachable = 250e6 / fastest
    try:
        build.build("zcu102", model_path=tiny_model, target_fps=value, run_synth=False,
                    quiet=True, out_dir="", clock_mhz=250)
    except build.BuildError as exc:
        msg = str(exc)
    else:                                                  # pragma: no cover
        pytest.fail("an empty --out was accepted")
    ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                           and value == value and 0 < value <= reachable)
    assert ("--out must name a directory" in msg) == ok, msg


def _fastest_top(model_path, board):
    """The fewest cycles per frame of the generated top: the fastest folding or the AXI
    shell's floor at the board's TDATA width."""
    model = ir.load(model_path)
    core = build.frame_cycles(build.plan(model, target_cycles=1))
    return max(core, *build.shell_floors(model, build.board_tdata_width(boards.get(board))))


def test_target_beyond_the_shell_floor_is_refused(tmp_path):
    """An fc layer on an 8x8x1 8-bit input folds to 1 cycle per frame, but its 512 input
    bits are 8 beats of the ZC706's 64-bit TDATA: a rate past 8 cycles is refused and
    names the shell."""
    model = rm.build_model([rm.LayerPlan(op="fc", out=4, kind="binary", act_bits=None)],
                           input_shape=(8, 8, 1), input_bits=8, seed=1, name="wide_in")
    path = ir.save(model, tmp_path / "wide_in")
    assert build.frame_cycles(build.plan(model, target_cycles=1)) < 8
    assert _fastest_top(path, "zc706") == 8
    with pytest.raises(build.DoesNotFit, match="the AXI shell needs 8 cycles per frame"):
        build.build("zc706", model_path=path, target_fps=100e6 / 4, clock_mhz=100,
                    run_synth=False, quiet=True, out_dir=tmp_path / "out")
    top = build.build("zc706", model_path=path, target_fps=100e6 / 8, clock_mhz=100,
                      run_synth=False, quiet=True, out_dir=tmp_path / "ok")
    assert top.cycles_per_frame == 8


def test_tiny_and_reachable_rates_build(tiny_model, tmp_path):
    fastest = _fastest_top(tiny_model, "zcu102")
    top = build.build("zcu102", model_path=tiny_model, out_dir=tmp_path / "top", run_synth=False,
                      quiet=True, clock_mhz=100, target_fps=100e6 / fastest)
    assert top.cycles_per_frame == fastest
    slow = build.build("zcu102", model_path=tiny_model, out_dir=tmp_path / "slow", run_synth=False,
                       quiet=True, target_fps=1e-300)
    assert slow.cycles_per_frame > fastest


def test_interrupt_is_one_line_and_leaves_nothing(tiny_model, tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(build, "write_report", interrupted)
    monkeypatch.setattr(build, "_synth", lambda *a, **k: interrupted())
    out = tmp_path / "out"
    code, lines = _main(capsys, "zcu102", "--model", str(tiny_model), "--out", str(out))
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0]
    assert not out.exists()


def test_stale_outputs_never_survive(tiny_model, tmp_path):
    out = tmp_path / "out"
    build.build("zcu102", model_path=tiny_model, out_dir=out, run_synth=False, quiet=True)
    marker = json.loads((out / build.COMPLETE_MARKER).read_text())
    assert marker["synthesised"] is False and marker["board"] == "zcu102"
    assert set(marker["outputs"]) == {"folding.json", "vivado", "deploy"}
    # An earlier build's report (and a foreign file) in the folder: --no-synth drops the report.
    (out / "report.json").write_text("{}")
    (out / "mine.txt").write_text("keep")
    build.build("zcu102", model_path=tiny_model, out_dir=out, run_synth=False, quiet=True)
    assert not (out / "report.json").exists() and (out / "mine.txt").read_text() == "keep"
    assert (out / build.COMPLETE_MARKER).exists()
    # A failing build clears the earlier outputs, marker included.
    with pytest.raises(build.BuildError, match="PE must divide"):
        build.build("zcu102", model_path=tiny_model, out_dir=out, run_synth=False, quiet=True,
                    folding={"conv0": {"pe": 3}})
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    # A failing build into a new folder leaves no folder.
    with pytest.raises(build.BuildError):
        build.build("zcu102", model_path=tiny_model, out_dir=tmp_path / "new" / "o", run_synth=False,
                    quiet=True, folding={"conv0": {"pe": 3}})
    assert not (tmp_path / "new").exists()


def test_foreign_vivado_folder_is_not_deleted(tiny_model, tmp_path):
    (tmp_path / "vivado").mkdir()
    (tmp_path / "vivado" / "precious.xpr").write_text("x")
    with pytest.raises(build.BuildError, match="holds a vivado/ folder this tool did not write"):
        build.build("zcu102", model_path=tiny_model, out_dir=tmp_path, run_synth=False, quiet=True)
    assert (tmp_path / "vivado" / "precious.xpr").exists()


def test_foreign_deploy_folder_is_not_deleted(tiny_model, tmp_path):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "mine.bit").write_text("x")
    with pytest.raises(build.BuildError, match="holds a deploy/ folder this tool did not write"):
        build.build("zcu102", model_path=tiny_model, out_dir=tmp_path, run_synth=False, quiet=True)
    assert (tmp_path / "deploy" / "mine.bit").exists()
