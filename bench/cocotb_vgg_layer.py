"""cocotb side of ``bench.vgg_layer``'s frame simulation (and of its plumbing test).

Parameters (from :func:`bench.vgg_layer.simulate`): the layer's ``weights`` (values,
``out x K*K*C``), ``kind``, ``wbits``, ``in_bits``, the geometry (``height``, ``width``,
``channels``, ``out``, ``kernel``, ``padding``, ``pad_value``), the folding (``pe``,
``simd``), ``frames``, ``gap``/``stall`` probabilities (0: free-running), the output
lane shape (``out_bits``, ``out_signed``) and ``cycles_model``. Random input codes per
seed (the first frame's first pixel all ones at the top code); every output beat is
compared with ``sim.golden``'s convolution. Reports ``cycles`` (first input transfer
to last output transfer) and ``outputs`` (values compared).
"""

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hdl import ir
from sim import golden
from sim.harness import params, report, seed
from sim.streams import StreamSink, StreamSource, pack, reset, start_clock, unpack


@cocotb.test(timeout_time=10_000, timeout_unit="ms")
async def frame(dut):
    """Whole frames through the layer, bit-exact against the golden model."""
    p = params()
    s = seed()
    dut._log.info("vgg layer: seed %d (replay with QNN_SEED=%d)", s, s)
    h, w, c, out = p["height"], p["width"], p["channels"], p["out"]
    weights = ir.Weights.from_matrix(np.asarray(p["weights"], np.int64), p["kind"], p["wbits"])
    layer = ir.Conv(name="conv", out_channels=out, kernel=p["kernel"], padding=p["padding"],
                    pad_value=p["pad_value"], weights=weights)
    rng = np.random.default_rng(s)
    codes = rng.integers(0, 1 << p["in_bits"], size=(p["frames"], h, w, c))
    codes[0, 0, 0, :] = (1 << p["in_bits"]) - 1
    spec = ir.TensorSpec(shape=(h, w, c), bits=p["in_bits"])
    want = np.asarray(golden.layer_forward(layer, codes, spec)).reshape(-1, p["pe"])

    start_clock(dut)
    await reset(dut)
    free = p["gap"] == 0 and p["stall"] == 0
    src = StreamSource(dut, "i", seed=s + 1, gap_prob=p["gap"], free_running=free)
    sink = StreamSink(dut, "o", seed=s + 2, stall_prob=p["stall"], free_running=free)
    simd, bits = p["simd"], p["in_bits"]
    cocotb.start_soon(src.send(pack(row, bits, simd) for row in codes.reshape(-1, simd).tolist()))
    slack = 1 if free else 1 + 4 * max(p["gap"], p["stall"]) / (1 - max(p["gap"], p["stall"]))
    words = await sink.receive(len(want), timeout_cycles=int(2 * slack * p["cycles_model"]) + 10_000)
    got = np.array([unpack(x, p["out_bits"], p["pe"], signed=p["out_signed"]) for x in words])
    bad = np.argwhere(got != want)
    if len(bad):
        k = int(bad[0][0])
        folds = out // p["pe"]
        pixel, fold = divmod(k, folds)
        raise AssertionError(f"seed {s}: {len(bad)} wrong beats; first: frame/pixel {pixel} "
                             f"fold {fold}: got {got[k].tolist()}, expected {want[k].tolist()}")
    for _ in range(5):
        await RisingEdge(dut.clk)
    sink.check()
    assert sink.pending == 0, f"seed {s}: {sink.pending} unexpected extra beats"
    report(cycles=sink.last_cycle - src.first_cycle, outputs=int(want.size),
           first_in=src.first_cycle, first_out=sink.first_cycle, last_out=sink.last_cycle)
