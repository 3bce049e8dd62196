"""Every shipped model loads under the current IR version and reproduces its accuracy."""

import json
from pathlib import Path

import numpy as np
import pytest

from hdl import ir
from sim import golden
from sim.data import load_dataset

MODELS = Path(__file__).resolve().parent.parent / "models"
DIRS = sorted(p.parent for p in MODELS.glob("*/model.npz"))


def test_the_required_models_are_shipped():
    assert {"w1a2", "pot4", "pot4-sparse", "pot4-block"} <= {d.name for d in DIRS}


@pytest.mark.parametrize("path", DIRS, ids=[d.name for d in DIRS])
def test_shipped_model_accuracy_matches_metrics(path):
    model = ir.load(path)
    metrics = json.loads((path / "metrics.json").read_text())
    ds = load_dataset(metrics.get("data", "digits"))
    labels = golden.predict(model, model.input.quantize(ds.x_test))
    assert float(np.mean(labels == ds.y_test)) == metrics["accuracy"]
    assert model.metadata["preset"] == metrics["preset"] == path.name
    fp32 = sum(32 * l.weights.shape[0] * l.weights.shape[1] for l in model.layers
               if isinstance(l, (ir.Conv, ir.FC)))
    stored = sum(l.weights.storage_bits() for l in model.layers if isinstance(l, (ir.Conv, ir.FC)))
    assert metrics["compression_ratio"] == pytest.approx(fp32 / stored, abs=1e-3)


def test_pot4_block_weights_are_whole_zero_blocks():
    """Block densities computed from the exported weights: as recorded, and <= 25%."""
    from quant.prune import zero_blocks
    path = MODELS / "pot4-block"
    model = ir.load(path)
    metrics = json.loads((path / "metrics.json").read_text())
    block = tuple(metrics["block"])
    mats = {l.name: l.weights.matrix() for l in model.layers if isinstance(l, (ir.Conv, ir.FC))}
    assert set(metrics["block_density"]) == {"conv1", "conv2", "fc3"}
    for name in ("conv1", "conv2", "fc3"):
        density = 1 - zero_blocks(mats[name], block)
        assert density == pytest.approx(metrics["block_density"][name], abs=1e-6)
        assert density <= 0.25
        assert metrics["weight_density"][name] == pytest.approx(
            np.count_nonzero(mats[name]) / mats[name].size, abs=1e-6)
    assert metrics["accuracy"] >= 0.98
    pot4 = ir.load(MODELS / "pot4")
    shapes = [(type(l).__name__, l.weights.shape) for l in pot4.layers if isinstance(l, (ir.Conv, ir.FC))]
    assert shapes == [(type(l).__name__, l.weights.shape) for l in model.layers
                      if isinstance(l, (ir.Conv, ir.FC))]
