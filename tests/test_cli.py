"""Command-line conventions shared by every tool (:mod:`hdl.cli`): ``--version``,
``--json`` (only JSON on stdout), ``-q``, exit codes listed in ``--help`` and returned."""

import io
import json
import subprocess
import sys

import pytest

from hdl import cli

CLIS = ["hdl.build", "sim.golden", "quant.train", "bench.networks", "bench.sparse",
        "bench.popcount", "bench.shift", "bench.mvtu", "bench.compression", "bench.vgg_layer",
        "bench.golden", "bench.training", "bench.report", "scripts.make_models"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=300)


def test_every_cli_has_version_json_and_exit_codes():
    """One interpreter imports each CLI and asks for --version and --help (fast: no
    subprocess per tool)."""
    code = (
        "import contextlib, importlib, io, json, sys\n"
        f"out = {{}}\n"
        f"for name in {CLIS!r}:\n"
        "    mod = importlib.import_module(name)\n"
        "    res = {}\n"
        "    for flag in ('--version', '--help'):\n"
        "        buf = io.StringIO()\n"
        "        try:\n"
        "            with contextlib.redirect_stdout(buf):\n"
        "                mod.main([flag])\n"
        "        except SystemExit as e:\n"
        "            res[flag] = (e.code, buf.getvalue())\n"
        "    out[name] = res\n"
        "sys.__stdout__.write(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    for name in CLIS:
        (vcode, vtext), (hcode, htext) = results[name]["--version"], results[name]["--help"]
        assert vcode == 0 and vtext.strip() == f"python -m {name} (qnn-fpga) {cli.version()}", name
        assert hcode == 0 and "--json" in htext and "-q, --quiet" in htext, name
        for code, meaning in cli.EXIT_CODES:
            assert f"{code:>3}  {meaning}" in htext, (name, code)
        assert "``" not in htext and ":func:" not in htext, name       # no raw reST


def test_quant_train_help_reads_plainly():
    text = _run("quant.train", "--help").stdout
    assert "Train a quantized model from a preset" in text and "``" not in text


def test_usage_error_is_2_and_one_line():
    proc = _run("sim.golden")
    assert proc.returncode == cli.EXIT_USAGE
    assert proc.stderr.strip().splitlines() == [
        "error: the following arguments are required: model (see python -m sim.golden --help)"]


def test_run_maps_errors_to_codes(capsys):
    def body(kind):
        def f(args):
            raise kind("it went wrong\n  on two lines")
        return f
    args = cli.parser("x", "d").parse_args([])
    assert cli.run(body(cli.DoesNotFit), args) == cli.EXIT_DOES_NOT_FIT
    assert cli.run(body(cli.ToolFailed), args) == cli.EXIT_TOOL_FAILED
    assert cli.run(body(cli.Mismatch), args) == cli.EXIT_MISMATCH
    assert cli.run(body(ValueError), args, bad_input=(ValueError,)) == cli.EXIT_BAD_INPUT
    assert cli.run(body(KeyError), args) == cli.EXIT_ERROR
    assert cli.run(body(KeyboardInterrupt), args) == cli.EXIT_INTERRUPTED
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: it went wrong on two lines" and len(lines) == 6
    quiet = cli.parser("x", "d").parse_args(["-q"])
    cli.run(lambda a: cli.log.info("chatter"), quiet)
    assert capsys.readouterr().err == ""


def test_json_last_line_routes_human_lines_to_stderr(capsys):
    @cli.json_last_line
    def main(argv=None):
        print("a human line")
        print("another", end="")
        print()
        print(json.dumps({"x": 1}))
        return 0

    assert main(["--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"x": 1} and err == "a human line\nanother\n"
    main(["-q"])
    out, err = capsys.readouterr()
    assert out == '{"x": 1}\n' and err == ""
    main([])
    out, _ = capsys.readouterr()
    assert out.splitlines() == ["a human line", "another", '{"x": 1}']


def test_progress_draws_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = cli.progress(total=3, desc="x")
    bar.update()
    bar.close()
    assert sys.stderr.getvalue() == "" and bar.n == 1
    assert list(cli.progress(range(3))) == [0, 1, 2]


def test_build_json_is_only_json(tmp_path, capsys, monkeypatch):
    """hdl.build --json: stdout parses as one JSON document; progress and messages on stderr."""
    from hdl import build, ir
    from sim import random_model as rm
    model = rm.build_model([rm.LayerPlan(op="fc", out=4, kind="binary", act_bits=None)],
                           input_shape=(1, 1, 8), input_bits=1, seed=1, name="fc")
    path = ir.save(model, tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    assert build.main(["zcu102", "--model", str(path), "--no-synth", "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["out_dir"] == "build/zcu102" and data["cycles_per_frame"] > 0
    assert (tmp_path / "build" / "zcu102" / "deploy" / "accelerator.json").exists()
    assert "cycles/frame" in err


@pytest.mark.parametrize("argv, code", [
    (["zcu102", "--verify", "-1", "--no-synth"], cli.EXIT_BAD_INPUT),
    (["zcu102", "--verify", "x"], cli.EXIT_USAGE),
    (["zcu102", "--verify-data", "nope.npz", "--no-synth"], cli.EXIT_BAD_INPUT),
    (["zcu102", "--target-fps", "1e12", "--no-synth"], cli.EXIT_DOES_NOT_FIT),
])
def test_build_exit_codes(argv, code, capsys, tmp_path, monkeypatch):
    from hdl import build
    monkeypatch.chdir(tmp_path)
    try:
        got = build.main(argv)
    except SystemExit as exc:
        got = exc.code
    assert got == code
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "build").exists()


def test_verify_without_the_sim_extra_is_tool_failed(tmp_path, capsys, monkeypatch):
    """No cocotb installed: --verify fails as 'tool failed' (5) in one line, naming the extra."""
    import builtins
    from hdl import build, ir
    from sim import random_model as rm
    model = rm.build_model([rm.LayerPlan(op="fc", out=4, kind="binary", act_bits=None)],
                           input_shape=(1, 1, 8), input_bits=1, seed=1, name="fc")
    path = ir.save(model, tmp_path / "m")
    real_import = builtins.__import__

    def no_cocotb(name, *args, **kwargs):
        if name.split(".")[0] == "cocotb":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_cocotb)
    code = build.main(["zcu102", "--model", str(path), "--no-synth", "--verify", "2",
                       "--out", str(tmp_path / "o")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_TOOL_FAILED and "pip install 'qnn-fpga[sim]'" in lines[-1]
    assert not (tmp_path / "o").exists()


def test_verify_mismatch_fails_the_build_with_6(tmp_path, capsys, monkeypatch):
    """The build's side of a mismatch (the simulation's side is tests/hdl/deploy): exit 6,
    one line naming frame and layer, verify.json kept, no completion marker."""
    from hdl import build, ir
    from hdl.flow import verify
    from sim import random_model as rm
    model = rm.build_model([rm.LayerPlan(op="fc", out=4, kind="binary", act_bits=None)],
                           input_shape=(1, 1, 8), input_bits=1, seed=1, name="fc")
    path = ir.save(model, tmp_path / "m")

    def mismatching(spec, codes, **kwargs):
        return verify.VerifyResult(frames=len(codes), bit_exact=False, mismatched_frames=2,
                                   accuracy=None, cycles_per_frame=None,
                                   model_cycles_per_frame=spec.cycles_per_frame,
                                   first_mismatch={"frame": 1, "layer": "layer 'fc0' (element 0)"})
    monkeypatch.setattr(verify, "verify", mismatching)
    out = tmp_path / "o"
    code = build.main(["zcu102", "--model", str(path), "--no-synth", "--verify", "3", "--out",
                       str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_MISMATCH
    assert lines[-1] == ("error: --verify: 2 of 3 frames differ from the golden model; first "
                         "frame 1, layer 'fc0' (element 0)")
    assert json.loads((out / "verify.json").read_text())["first_mismatch"]["frame"] == 1
    assert not (out / "build_complete.json").exists()
