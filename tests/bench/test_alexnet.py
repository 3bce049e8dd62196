"""bench.alexnet's pieces on small layers: the streamed folding meets its target, a slice
simulation is bit-exact and at least as slow as the port allows; the AlexNet model (slow)."""

import math

import pytest

from bench import alexnet
from boards.zcu104 import ZCU104Platform
from hdl.flow.network import NetworkSpec, plan
from sim.random_model import LayerPlan, build_model


def small_fc(out=32, inputs=(2, 2, 16), density=0.3):
    plans = [LayerPlan(op="fc", out=out, kind="pot", wbits=4, act_bits=None, density=density)]
    return build_model(plans, input_shape=inputs, input_bits=4, seed=2, name="small-fc")


def test_stream_fold_meets_target():
    for density in (1.0, 0.3):                  # dense (shift MAC) and CSC (sparse engine)
        model = small_fc(density=density)
        layer = model.layers[0]
        assert alexnet.weight_bits(layer) == 4
        for target in (256, 64, 24):
            folding = alexnet.fold(model, target, {"fc0"})
            stage = plan(model, folding)[0]
            assert stage.streamed and stage.cycles_per_frame <= target, (density, target, folding)
            assert stage.engine == ("shiftmac" if density == 1.0 else "sparse")
            if density == 1.0 and target == 24:     # 2048 4-bit weights: 64 words of 128 bits:
                assert folding["fc0"]["ddr_ports"] == 4     # 3 ports, rounded up to divide PE
            if density < 1.0:                       # 64 input beats: SIMD 1 down to 64 cycles
                assert (folding["fc0"]["simd"] == 1) == (target >= 64)


def test_measure_slice_bit_exact():
    model = small_fc(out=16, density=1.0)
    stage = plan(model, {"fc0": {"pe": 4, "simd": 8, "weights": "ddr", "ddr_ports": 2}})[0]
    got = alexnet.measure_slice(stage, 8, board=ZCU104Platform)
    assert got["bit_exact"]
    # 8 rows x 64 inputs x 4 bits over two ports: 8 words each per vector (16 B/cycle).
    assert got["ddr_bytes_slice"] == 256 and got["model_cycles_slice"] == 16
    assert got["cycles_per_frame_extrapolated"] == got["cycles_per_vector_slice"] * 2
    # Steady state at the model's speed despite the 30-cycle DDR latency (4 bursts in flight).
    stage = plan(model, {"fc0": {"pe": 2, "simd": 16, "weights": "ddr"}})[0]
    got = alexnet.measure_slice(stage, 16, board=ZCU104Platform, frames=4)
    assert got["bit_exact"] and got["model_cycles_slice"] == 32 == got["cycles_per_vector_slice"]


def test_measure_sparse_slice():
    # CSC at SIMD 1: the slice grows until its busiest PE has as many non-zeros as the 64
    # input beats, and runs at the speed of its streamed words
    model = small_fc(out=32, density=0.3)
    stage = plan(model, {"fc0": {"pe": 2, "simd": 1, "weights": "ddr"}})[0]
    assert stage.engine == "sparse" and stage.compute.delta_bits is not None
    rows = alexnet.slice_rows_for(stage, 4)
    per_row = (stage.layer.weights.matrix()[:rows] != 0).sum(axis=1)
    assert rows % 4 == 0 and max(per_row[0::2].sum(), per_row[1::2].sum()) >= 64
    assert rows == 4 or max(per_row[0:rows // 2:2].sum(), per_row[1:rows // 2:2].sum()) < 64
    got = alexnet.measure_slice(stage, rows, board=ZCU104Platform, frames=4)
    assert got["bit_exact"] and got["cycles_per_vector_slice"] == got["model_cycles_slice"]
    assert got["cycles_per_frame_extrapolated"] == \
        got["cycles_per_vector_slice"] * stage.cycles_per_frame / got["model_cycles_slice"]


def test_synthesize_top_whole_design(monkeypatch):
    # The whole top (shell and weight master included) goes to Yosys in parts: each compute
    # stage alone, the rest with the stages as black boxes; the figures add up, and one
    # over the board's capacity makes fits false and is named.
    from hdl.flow import synth
    seen = {}

    def fake(text, top, family, *, blackbox=(), rtlil=False, timeout=0, **kw):
        seen[top] = dict(text=text, family=family, blackbox=blackbox, rtlil=rtlil)
        part = top != "qnn_core"
        return synth.SynthResult(top=top, family=family, lut=1000 if part else 300, lut_logic=1000 if part else 300,
                                 lut_memory=0, ff=900, bram18=2, uram=200 if part else 0, dsp=0, carry=0,
                                 muxf=0, logic_levels=5 if part else 4, path_cells=5,
                                 cells={"LUT6": 1000, "FDRE": 900, "RAMB18E2": 2, "URAM288": 200} if part else
                                 {"LUT6": 300, "FDRE": 900, "RAMB18E2": 2})
    monkeypatch.setattr(synth, "_synthesize", fake)
    spec = NetworkSpec(small_fc(out=16, density=0.3), {"fc0": {"pe": 2, "simd": 1, "weights": "ddr"}},
                       axis_width=128, ddr_width=128)
    got = alexnet.synthesize_top(spec, ZCU104Platform, timeout=60, progress=lambda _: None)
    assert sorted(seen) == ["qnn_core", "qnn_core.core.fc0"]
    assert seen["qnn_core"]["blackbox"] == ("qnn_core.core.fc0",) and seen["qnn_core.core.fc0"]["blackbox"] == ()
    assert all(v["family"] == "xcup" and v["rtlil"] for v in seen.values())
    assert "\\m_axi_w0_arvalid\n" in seen["qnn_core"]["text"]          # the weight master's port
    assert (got["lut"], got["ff"], got["bram18"], got["uram"], got["logic_levels"]) == (1300, 1800, 4, 200, 5)
    assert got["stage_resources"]["fc0"]["lut"] == 1000 and got["stage_resources"]["rest"]["lut"] == 300
    assert got["fits"] is False and got["over_capacity"] == {"uram": {"used": 200, "capacity": 96}}


@pytest.mark.slow
def test_alexnet_model():
    from sim.random_model import ALEXNET_DENSITIES, alexnet as build
    m = build()
    shapes = [l.weights.shape for l in m.layers if hasattr(l, "weights")]
    assert shapes == [(96, 363), (256, 2400), (384, 2304), (384, 3456), (256, 3456),
                      (4096, 9216), (4096, 4096), (1000, 4096)]
    assert len(m.classes) == 1000 and m.input.shape == (227, 227, 3)
    for l in m.layers:
        if hasattr(l, "weights"):
            density = l.weights.nnz / math.prod(l.weights.shape)
            assert density <= ALEXNET_DENSITIES[l.name]


def test_synthesize_top_failure_is_recorded(monkeypatch):
    # A Yosys that fails (yowasp's 4 GiB on the AlexNet-class top) leaves the resources
    # null with the reason, and the benchmark's measured figures are still written.
    from hdl.flow import synth

    def fails(*a, **k):
        raise RuntimeError("Yosys failed (exit 1):\n  thrown Wasm exception")
    monkeypatch.setattr(synth, "_synthesize", fails)
    spec = NetworkSpec(small_fc(out=16, density=0.3), {"fc0": {"pe": 2, "simd": 1}})
    got = alexnet.synthesize_top(spec, ZCU104Platform, timeout=60, progress=lambda _: None)
    assert got["lut"] is None and got["fits"] is None
    assert got["resources_note"].startswith("Yosys failed after ")
    assert "thrown Wasm exception" in got["resources_note"]


def test_report_section(tmp_path):
    # docs/benchmarks.md's AlexNet section: the goal table from the JSON keys, the layers
    # with their parts' resources, an over-capacity figure named as the miss.
    from bench import report
    data = {"command": "python -m bench.alexnet", "fps": 230.8, "cycles_measured": 866463, "clock_mhz": 200.0,
            "fits": False, "over_capacity": {"bram18": {"used": 1500, "capacity": 624}},
            "ddr_bandwidth_used": 1.2e9, "ddr_bandwidth_port": 9.6e9, "model_bytes": 8591300,
            "seed_model_bytes": 8.7e6,
            "layers": {"conv0": {"engine": "sparse", "pe": 32, "simd": 3, "weights": "rom", "density": 0.75,
                                 "onchip_bytes": 47208, "ddr_bytes_per_frame": 0, "cycles_per_frame_model": 850025}},
            "stage_resources": {"conv0": {"lut": 9000, "lut_memory": 10, "ff": 800, "bram18": 30, "logic_levels": 6},
                                "rest": {"lut": 700, "lut_memory": 0, "ff": 900, "bram18": 4, "logic_levels": 5}},
            "rom_only_plan": {"streamed": ["conv3"], "fps_model": 40.5, "ddr_bytes_per_frame": 10}}
    (tmp_path / "alexnet.json").write_text(__import__("json").dumps(data))
    text = report.render(tmp_path, tmp_path)
    assert "Command: `python -m bench.alexnet`" in text
    assert "| >= 200 fps, measured (whole top, DDR model) | 9.73 fps | 230.8 fps (866,463 cycles/frame at 200.0 MHz) | **met** |" in text
    assert "| fits the board (Yosys, whole design) |  | bram18 1,500 > 624 | **not met** |" in text
    assert "| conv0 | sparse | 32 | 3 | rom | 0.75 | 47,208 | 0 | 850,025 | 9,000 | 10 | 800 | 30 | 6 |" in text
    assert "| rest of the top |" in text and "streams conv3, 40.5 fps" in text
