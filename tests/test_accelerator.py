"""Whole-network verification: the generated accelerator (``AxiTop`` around ``Network``)
for the shipped models under cocotb and Verilator, on digits test images, through its
AXI ports and through the host driver (``hdl.host.driver.Accelerator`` on ``sim.backend``).

One Verilator build per model, at a fixed small folding so that builds stay short; the
cocotb tests are in ``tests/cocotb_accelerator.py``. The default suite runs a subset of
the test images with random input stalls and output backpressure; ``-m slow`` runs all
of them.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from hdl import ir
from hdl.shell.axi import DEFAULT_IDENT, DEFAULT_VERSION, AxiTop
from hdl.flow.network import Network
from sim import golden
from sim.data import load_dataset

MODELS = Path(__file__).resolve().parents[1] / "models"

#: Fixed foldings ((pe, simd) per stage): about 8k cycles per frame for the dense
#: models, small enough to build in well under a minute.
FOLDINGS = {
    "w1a2": {"conv0": (4, 1), "conv1": (4, 32), "pool1": (4, 4), "conv2": (2, 32),
             "pool2": (2, 2), "fc3": (1, 2), "fc_out": (1, 1)},
    "pot4": {"conv0": (4, 1), "conv1": (2, 32), "pool1": (2, 2), "conv2": (1, 32),
             "pool2": (1, 1), "fc3": (1, 2), "fc_out": (1, 1)},
    "pot4-sparse": {"conv0": (4, 1), "conv1": (8, 2), "pool1": (8, 8), "conv2": (4, 2),
                    "pool2": (4, 4), "fc3": (1, 1), "fc_out": (1, 1)},
}

#: Images with stalls in the default suite.
SUBSET = 16


def run(name: str, images: int):
    from sim.harness import run_cocotb

    model = ir.load(MODELS / name)
    data = load_dataset("digits")
    raw = data.x_test[:max(images, 8)]     # the reset tests use images 0..6
    codes = model.input.quantize(raw)
    scores = golden.run(model, codes)
    labels = golden.predict(model, codes)
    net = Network(model, FOLDINGS[name])
    top = AxiTop(net, frame_elements=int(np.prod(model.input.shape)), classes=len(model.classes))
    parameters = {
        "codes": codes.reshape(len(codes), -1).astype(np.int64),
        "scores": scores.astype(np.int64), "labels": labels.astype(np.int64),
        "input_shape": list(model.input.shape), "in_bits": model.input.bits,
        "classes": len(model.classes), "cycles_per_frame": net.cycles_per_frame,
        "latency_bound": net.latency_bound, "stalled": images, "timing_frames": 4,
        "after_reset": 2, "driver_frames": 3, "ident": DEFAULT_IDENT,
        "version": DEFAULT_VERSION,
    }
    result = run_cocotb(top, name=f"accel_{name}", test_module="tests.cocotb_accelerator",
                        parameters=parameters, seeds=(1,))
    rep = result.report
    steady = rep["intervals"][1:]
    assert all(abs(c - net.cycles_per_frame) <= 0.02 * net.cycles_per_frame for c in steady), \
        (rep["intervals"], net.cycles_per_frame)
    # the accuracy the hardware reaches is the golden model's on these images
    assert np.array_equal(rep["driver_labels"], labels[:3])
    return net, rep


@pytest.fixture(autouse=True)
def _quick_verilator_build(monkeypatch):
    """Whole networks build much faster at low C++ optimisation, and their short runs do
    not need more (the OPT_* settings reach Verilator's make through MAKEFLAGS)."""
    flags = os.environ.get("MAKEFLAGS", "")
    if "OPT_" not in flags:
        monkeypatch.setenv("MAKEFLAGS", f"{flags} OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0".strip())


@pytest.mark.parametrize("name", [
    "w1a2", "pot4-sparse",
    # the pot4 top costs ~100 s (a 67 s Verilator build) on 2 idle cores: past the default
    # suite's 90 s per test; its engines are checked in Verilator by tests/hdl/engines
    pytest.param("pot4", marks=pytest.mark.slow)])
def test_accelerator(name):
    """16 digits test images per model with random stalls, bit-exact; steady-state
    cycles per frame within 2% of the model; pin and soft reset with frames in flight;
    the host driver on the simulation."""
    run(name, SUBSET)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FOLDINGS))
def test_accelerator_all_images(name):
    """Every digits test image (450) through the accelerator, bit-exact."""
    images = len(load_dataset("digits").x_test)
    run(name, images)
