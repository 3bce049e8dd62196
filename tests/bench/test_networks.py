"""bench.networks and bench.report: row contents, measured cycles against the cycle model,
FINN's cycle and LUT models at the finn-examples folding, and the generated markdown."""

import json
import math
import subprocess
import sys

import pytest

from bench import networks, report
from sim.random_model import LayerPlan, build_model

ROW_KEYS = {"network", "board", "clock_mhz", "fps", "cycles_per_frame", "lut", "ff", "bram18",
            "dsp", "fits", "folding", "toolflow_s", "logic_levels", "cycles_measured", "command",
            "cycles_model", "stage_lut", "stage_ff", "stage_bram18", "stage_dsp", "fifos",
            "latency_measured", "shell_note"}


def tiny_sfc():
    """SFC in miniature: 8-bit input, binary FCs, 1-bit activations, scores."""
    plans = [LayerPlan(op="fc", out=16), LayerPlan(op="fc", out=16),
             LayerPlan(op="fc", out=4, act_bits=None)]
    return build_model(plans, input_shape=(4, 4, 1), input_bits=8, seed=3, name="tiny-sfc")


@pytest.fixture(scope="module")
def tiny_row(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synth_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("QNN_SYNTH_CACHE", str(cache))
    try:
        row = networks.run_row("tiny-sfc", "pynq-z2", 100.0, model=tiny_sfc(), target_cycles=32,
                               cmd="pytest tiny")
    finally:
        mp.undo()
    return row


def test_row_keys_and_figures(tiny_row):
    row = tiny_row
    assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
    assert row["cycles_per_frame"] <= 32
    assert row["fps"] == pytest.approx(100e6 / row["cycles_per_frame"])
    assert set(row["folding"]) == {"fc0", "fc1", "fc2"}
    # Synthesised: every figure present and the fit decided against the board.
    for key in ("lut", "ff", "bram18", "dsp", "logic_levels"):
        assert isinstance(row[key], int) and row[key] >= 0, (key, row[key])
    assert row["lut"] > 0 and row["logic_levels"] > 0
    assert row["fits"] is True
    assert row["toolflow_s"] > 0
    json.dumps(row)                                    # JSON-able as written


def test_measured_cycles_match_model(tiny_row):
    """The generated top in Verilator, free-running, back-to-back frames: measured within
    2% of the cycle model; fps from the measured cycles; latency within the estimate."""
    got, want = tiny_row["cycles_measured"], tiny_row["cycles_model"]
    assert got is not None, tiny_row["cycles_measured_note"]
    assert abs(got - want) <= 0.02 * want, (got, want, tiny_row["folding"])
    assert tiny_row["cycles_per_frame"] == got
    assert tiny_row["fps"] == pytest.approx(100e6 / got)
    assert 0 < tiny_row["latency_measured"] <= tiny_row["latency_estimate"]


def test_whole_design_resources(tiny_row):
    """Resources are the whole top's, which holds the stages' engines and more (FIFOs,
    converters, the AXI shell)."""
    assert set(tiny_row["stage_lut"]) == {"fc0", "fc1", "fc2"}
    assert tiny_row["lut"] > sum(tiny_row["stage_lut"].values())
    assert tiny_row["ff"] > sum(tiny_row["stage_ff"].values())
    assert tiny_row["fifos"] and all(f["depth"] >= 3 for f in tiny_row["fifos"])


def test_shell_note():
    """A row whose goal the shell cannot carry says so and by how much: tiny-sfc at 1
    cycle per frame needs 5 (4 classes + 1 at the output)."""
    from hdl.flow.network import NetworkSpec
    spec = NetworkSpec(tiny_sfc(), target_cycles=1)
    note = networks.shell_note(spec, 1)
    assert spec.cycles_per_frame == 5 and spec.bottleneck == "shell output"
    assert "output (5 cycles per frame" in note and "5.00x slower" in note
    assert networks.shell_note(NetworkSpec(tiny_sfc(), target_cycles=32), 32) is None


def test_verilator_options_by_size():
    assert networks.verilator_opt(10_000) == ""
    assert "OPT_SLOW=-O0" in networks.verilator_opt(1_000_000)
    assert "OPT_FAST=-O0" in networks.verilator_opt(50_000_000)
    # a long run of a big design is worth optimising the per-cycle code
    assert "OPT_FAST=-O1" in networks.verilator_opt(50_000_000, cycles=2_000_000)
    assert networks.verilator_opt(10_000, cycles=2_000_000) == ""


def test_cache_only_leaves_resources_unmeasured(tmp_path, monkeypatch):
    monkeypatch.setenv("QNN_SYNTH_CACHE", str(tmp_path))
    row = networks.run_row("tiny-sfc", "zcu102", 200.0, model=tiny_sfc(), target_cycles=64,
                           measure=False, cache_only=True)
    assert row["lut"] is None and row["fits"] is None and row["cycles_measured"] is None
    assert "not synthesised" in row["synth_note"]
    assert row["fps"] == pytest.approx(200e6 / row["cycles_per_frame"])


def test_finn_cnv_folding_cycles_agree():
    model = networks.load_network("cnv-w1a1-finn")
    folding, target, _ = networks.folding_for("cnv-w1a1-finn", "pynq-z2", 100.0)
    from hdl.flow.network import plan
    stages = plan(model, folding, target_cycles=target)
    finn = networks.finn_cnv_comparison(model, stages)
    assert finn["cycles_agree"]
    assert finn["finn_cycles_per_frame"] == 32_768          # fc6: 512 * 256 / 4
    assert round(finn["finn_fps_at_100mhz"]) == 3_052       # finn-examples' predicted figure
    assert finn["our_cycles_per_frame"] == 32_768
    assert {s.name: (s.pe, s.simd) for s in stages if s.name in networks.FINN_CNV_FOLDING} \
        == networks.FINN_CNV_FOLDING


def test_finn_lut_model_by_hand():
    # conv3 of CNV: MW 1152, P 16, Q 32, W1A1 (bipolar input is signed).
    # mult 32*1*2 = 64, adder 2*63 = 126, alpha = log2(1152) + 0 = 10.17 -> acc 12,
    # or the popcount's 11 bits when FINN's accumulator type is given.
    assert networks.finn_mvau_luts(1152, 16, 32, 1, 1, signed_input=True) == \
        int(300 + 1.1 * 16 * (64 + 126 + 12))
    assert networks.finn_mvau_luts(1152, 16, 32, 1, 1, signed_input=True, acc_type_bits=11) == \
        int(300 + 1.1 * 16 * (64 + 126 + 11))
    # conv0: 8-bit unsigned input, W 1: W + A = 9, mult = 3 * (2*2 - 1) * 9 = 81
    alpha = math.log2(27) + 1 + 8 - 1
    acc = math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1)
    assert networks.finn_mvau_luts(27, 16, 3, 1, 8, signed_input=False) == \
        int(300 + 1.1 * 16 * (81 + 9 * 5 + acc))


def test_goals_not_measured_without_rows():
    goals = networks.evaluate_goals([], None)
    assert len(goals) == 6
    assert all(g["met"] is None and g["gap"] == "not measured" for g in goals)


def test_report_missing_files(tmp_path):
    text = report.render(tmp_path / "results", tmp_path / "models")
    assert text.startswith("# Benchmarks")
    for section in ("Networks on boards", "Sparse", "Power-of-two", "popcount", "Golden", "Training"):
        assert section in text
    # Every section says "not measured" when its file is missing.
    assert text.count(report.NOT_MEASURED) >= 7


def test_report_renders_rows(tmp_path, tiny_row):
    results = tmp_path / "results"
    data = networks._write([tiny_row], [], results, tmp_path / "rows.json", "pytest tiny")
    assert json.loads((tmp_path / "rows.json").read_text())[0]["network"] == "tiny-sfc"
    (results / "golden.json").write_text(json.dumps({"rows": [], "command": "python -m bench.golden --x"}))
    text = report.render(results, tmp_path / "models")
    assert "| tiny-sfc | pynq-z2 |" in text
    assert f"{tiny_row['lut']:,}" in text
    assert "`python -m bench.golden --x`" in text
    assert "Yosys and Vivado count LUTs differently" in text
    assert "assumed clock" in text
    assert len(data["goals"]) == 6


def test_report_marks_rows_from_earlier_generators(tmp_path, tiny_row, monkeypatch):
    import bench
    sources = tiny_row["generator_sources"]
    assert tiny_row["generators"] == bench.generator_version(sources)
    # The design's own sources, with the board's, and none that it does not use.
    assert {"hdl/engines/mvtu.py", "hdl/flow/network.py", "hdl/shell/axi.py",
            "boards/pynq_z2.py", "boards/_base.py"} <= set(sources)
    assert not {"hdl/engines/window.py", "boards/zc706.py"} & set(sources)
    old = dict(tiny_row, network="tiny-old", generators="0123456789ab")
    results = tmp_path / "results"
    networks._write([tiny_row, old], [], results, tmp_path / "rows.json", "pytest tiny")
    text = report.render(results, tmp_path / "models")
    current = next(line for line in text.splitlines() if line.startswith("| tiny-sfc |"))
    earlier = next(line for line in text.splitlines() if line.startswith("| tiny-old |"))
    assert current.endswith("| current |") and earlier.endswith("| earlier |")
    assert "figures from earlier generators (version 0123456789ab" in text
    assert "`python -m bench.networks --networks tiny-old --boards pynq-z2 --restamp`" in text
    # A change in one of the design's sources changes its version; a change elsewhere not.
    copy = tmp_path / "checkout"
    for file in bench.generator_files():
        (copy / file).parent.mkdir(parents=True, exist_ok=True)
        (copy / file).write_bytes((bench._ROOT / file).read_bytes())
    monkeypatch.setattr(bench, "_ROOT", copy)
    assert bench.generator_version(sources) == tiny_row["generators"]
    (copy / "hdl/engines/window.py").write_text("# changed\n")
    assert bench.generator_version(sources) == tiny_row["generators"]
    (copy / "hdl/engines/mvtu.py").write_text("# changed\n")
    assert bench.generator_version(sources) != tiny_row["generators"]
    (copy / "hdl/engines/mvtu.py").unlink()
    assert bench.generator_version(sources) != tiny_row["generators"]


def test_restamp_keeps_rows_whose_verilog_is_unchanged(tmp_path, tiny_row, monkeypatch):
    """--restamp re-measures nothing: a row whose generated Verilog the current generators
    reproduce takes the current stamp; a changed hash, or no hash on an earlier row, stays."""
    import bench
    assert len(tiny_row["verilog_hash"]) == 16
    monkeypatch.setattr(networks, "ROWS_FILE", tmp_path / "rows.json")
    monkeypatch.setattr(networks, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(networks, "network_available", lambda name: True)
    monkeypatch.setattr(networks, "FULL_NETWORKS", ("same", "changed", "unhashed", "hashless-current"))
    monkeypatch.setattr(networks, "_named_spec",
                        lambda name, board, clock: (networks._spec(tiny_sfc(), None, 32, board), 32, ""))
    stale = "0123456789ab"
    rows = [dict(tiny_row, network="same", generators=stale),
            dict(tiny_row, network="changed", generators=stale, verilog_hash="f" * 16),
            dict(tiny_row, network="unhashed", generators=stale, verilog_hash=None),
            dict(tiny_row, network="hashless-current", verilog_hash=None)]
    networks.ROWS_FILE.write_text(json.dumps(rows))
    outcome = networks.restamp(progress=lambda text: None)
    assert outcome == {"same/pynq-z2": "re-stamped", "changed/pynq-z2": "Verilog changed: re-run it",
                       "unhashed/pynq-z2": "no Verilog hash, earlier generators: re-run it",
                       "hashless-current/pynq-z2": "hash recorded"}, outcome
    stored = {r["network"]: r for r in json.loads(networks.ROWS_FILE.read_text())}
    current = bench.generator_version(tiny_row["generator_sources"])
    assert stored["same"]["generators"] == current and stored["same"]["lut"] == tiny_row["lut"]
    assert stored["changed"]["generators"] == stored["unhashed"]["generators"] == stale
    assert stored["hashless-current"]["verilog_hash"] == tiny_row["verilog_hash"]


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "bench.networks", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "--quick" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "bench.networks", "--networks", "nope", "--no-synth"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 3 and "unknown network" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "bench.networks", "--boards", "zcu104", "--no-synth"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 3 and "unknown board(s) zcu104" in bad.stderr and not bad.stdout


@pytest.mark.slow
def test_quick_mode(tmp_path):
    """The real quick mode (SFC at 4,096 cycles and the digits models on PYNQ-Z2): every row
    synthesised and fitting, cycles measured (scores checked against the golden model
    inside measure_top). A benchmark run, so under ``slow``; ``tiny_row`` covers the
    plumbing in the default suite."""
    rows = [networks.run_row(n, "pynq-z2", 100.0) for n in networks.QUICK["networks"]
            if networks.network_available(n)]
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["lut"] > 0 and row["fits"] is True, (row["network"], row["synth_note"])
        assert row["cycles_measured"] is not None, row["cycles_measured_note"]
        if row["network"].startswith("sfc"):
            assert abs(row["cycles_measured"] - row["cycles_per_frame"]) <= 0.02 * row["cycles_per_frame"]


def test_measure_top_streams_weights_from_ddr():
    """A stage whose weights stream from DDR: the DDR model serves the top's weight
    master at the board's port timing; scores equal the golden model's (checked inside
    measure_top) and the frame interval is at least the cycle model's."""
    from boards.zcu104 import ZCU104Platform
    from hdl.flow.network import NetworkSpec
    plans = [LayerPlan(op="fc", out=8, kind="pot", wbits=4, act_bits=2),
             LayerPlan(op="fc", out=4, kind="int", wbits=4, act_bits=None)]
    model = build_model(plans, input_shape=(2, 2, 4), input_bits=3, seed=5, name="ddr-fc")
    folding = {"fc0": {"pe": 2, "simd": 4, "weights": "ddr"}, "fc1": {"pe": 4, "simd": 8}}
    spec = NetworkSpec(model, folding, ddr_width=128)
    assert len(spec.streamers) == 1
    got = networks.measure_top(spec, 3, board=ZCU104Platform, name="measure_ddr_fc")
    assert len(got["intervals"]) == 2 and got["cycles"] >= spec.cycles_per_frame
