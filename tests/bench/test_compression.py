"""bench.compression on a tiny pot network: the random block pruning, the three designs
(simulated and synthesised), the ratios and goals computed from them, the JSON written."""

import json

import numpy as np
import pytest

from bench import compression
from hdl import ir
from sim.random_model import LayerPlan, build_model


def tiny_pot():
    plans = [LayerPlan(op="conv", out=4, kind="pot", wbits=4, act_bits=2, padding=1),
             LayerPlan(op="fc", out=8, kind="pot", wbits=4, act_bits=2),
             LayerPlan(op="fc", out=4, kind="pot", wbits=4, act_bits=None)]
    return build_model(plans, input_shape=(4, 4, 2), input_bits=2, seed=4, name="tiny-pot")


def tiny_fc():
    plans = [LayerPlan(op="fc", out=16, kind="pot", wbits=4, act_bits=2),
             LayerPlan(op="fc", out=8, kind="pot", wbits=4, act_bits=2),
             LayerPlan(op="fc", out=4, kind="pot", wbits=4, act_bits=None)]
    return build_model(plans, input_shape=(2, 2, 8), input_bits=2, seed=4, name="tiny-fc")


def test_block_pruned_keeps_the_largest_tiles():
    model = tiny_pot()
    pruned, kept = compression.block_pruned(model, (2, 8), 0.5)
    assert kept == {"fc1": 0.5, "fc2": 0.5}                 # conv0 (4 x 18) is not divided by 2 x 8
    assert np.array_equal(pruned.layers[0].weights.matrix(), model.layers[0].weights.matrix())
    m, p = model.layers[2].weights.matrix(), pruned.layers[2].weights.matrix()
    norms = np.abs(m).reshape(4, 2, 8, 8).sum(axis=(1, 3))
    kept_tiles = np.abs(p).reshape(4, 2, 8, 8).sum(axis=(1, 3)) > 0
    assert kept_tiles.sum() == 16 and norms[kept_tiles].min() >= norms[~kept_tiles].max()
    assert np.array_equal(np.where(p != 0, m, 0), p)           # kept weights unchanged


def run(tmp_path, *extra):
    path = ir.save(tiny_fc(), tmp_path / "tiny")
    out = tmp_path / "compression.json"
    assert compression.main(["--dense", str(path), "--model", "random-block", "--block", "2x8",
                             "--keep", "0.25", "--target-fps", "500000", "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_bench_runs_without_synthesis(tmp_path):
    """Designs planned (the cycle model; the Verilator measurement of the top, three builds,
    runs in the slow test and in tests/bench/test_networks.py), no LUT figures or goals."""
    data = run(tmp_path, "--no-synth", "--no-sim")
    dense, same, fast = data["dense"], data["pruned_same_fps"], data["pruned_fast"]
    for row in (dense, same, fast):
        assert "cycles_measured" not in row and row["lut"] is None, row
    assert fast["cycles_model"] <= fast["target_cycles"] == int(dense["cycles_model"] / 2.2)
    assert any(v.get("tiles") for v in fast["folding"].values())
    assert data["fps_ratio"] == round(fast["fps"] / dense["fps"], 3)
    assert data["goal_met"] is None and data["lut_ratio_fast"] is None


@pytest.mark.slow
def test_bench_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("QNN_SYNTH_CACHE", str(tmp_path / "cache"))
    data = run(tmp_path)
    assert data["pruned_model"]["model"] == "random-block" and data["previous"] is None
    dense, same, fast = data["dense"], data["pruned_same_fps"], data["pruned_fast"]
    assert dense["target_cycles"] == 200 and dense["cycles_model"] <= 200
    for row in (dense, same, fast):
        assert row["cycles_measured"] == row["cycles_model"], row
        assert row["fps"] == pytest.approx(100e6 / row["cycles_measured"])
        assert row["lut"] > 0
    assert same["target_cycles"] == dense["cycles_measured"]
    assert fast["target_cycles"] == int(dense["cycles_measured"] / 2.2)
    assert data["fps_ratio"] == round(fast["fps"] / dense["fps"], 3)
    assert data["lut_ratio_same_fps"] == round(same["lut"] / dense["lut"], 3)
    assert data["goal_speed_met"] == (fast["fps"] / dense["fps"] >= 2.2 and fast["lut"] <= dense["lut"])
    assert data["command"].startswith("python -m bench.compression --dense")
