"""Batched DMA transfers through the host driver on Verilator: a small generated network
(``AxiTop`` around ``Network``), frames bit-exact with batches under random stalls,
a misplaced TLAST reported and recovered from, and the frame rate the driver sustains
with batches of 64 within 2% of the cycle model (the network's interval or the shell's
floor, whichever is larger)."""

import numpy as np

from hdl.flow.network import Network
from hdl.shell.axi import AxiTop
from sim import golden
from sim.random_model import LayerPlan, build_model

#: Three binary fc layers at 32 cycles per frame; 16 eight-bit input codes (4 beats of
#: 32 bits) and 4 classes (5 output cycles) keep the shell's floors below that.
FOLDING = {"fc0": (4, 2), "fc1": (4, 2), "fc2": (1, 2)}


def tiny_model():
    plans = [LayerPlan(op="fc", out=16), LayerPlan(op="fc", out=16),
             LayerPlan(op="fc", out=4, act_bits=None)]
    return build_model(plans, input_shape=(4, 4, 1), input_bits=8, seed=3, name="tiny-sfc")


def test_batches_through_the_driver():
    from sim.harness import run_cocotb

    model = tiny_model()
    net = Network(model, FOLDING)
    top = AxiTop(net, frame_elements=16, classes=4)
    model_cycles = max(net.cycles_per_frame, top.floor_cycles)
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, size=(5 * 64, 16))
    scores = golden.run(model, codes.reshape(-1, 4, 4, 1))
    result = run_cocotb(top, name="backend_batch", test_module="tests.sim.cocotb_backend_batch",
                        parameters={"codes": codes, "scores": np.asarray(scores, np.int64),
                                    "classes": 4, "in_bits": 8, "model_cycles": model_cycles},
                        seeds=(1,), timeout_s=300)
    assert result.tests == ["stalls_and_errors", "rate_with_batches_of_64"]
    rep = result.report
    print(f"batches of 64: batch ends {rep['batch_ends']}, model {model_cycles} cycles/frame, "
          f"first batch {rep['first_batch_cycles']} cycles, CYCLES {rep['cycles_register']} "
          f"for {rep['frames_done']} frames")
    # steady state: the interval between the ends of consecutive batches of 64 frames
    per_frame = [d / 64 for d in np.diff(rep["batch_ends"])[1:]]
    assert per_frame and all(abs(c - model_cycles) <= 0.02 * model_cycles for c in per_frame), \
        (per_frame, model_cycles, rep)
    assert rep["frames_done"] == len(codes)
