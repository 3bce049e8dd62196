"""A custom Amaranth design from two generators, built from plain NumPy weights.

    python examples/custom_design.py [--vectors 20] [--seed 1]

A two-layer perceptron on 4-bit inputs, without a model file or PyTorch:

* layer 1: :class:`hdl.engines.MVTU` with ternary weights (32 inputs -> 16 outputs), fused
  per-channel thresholds giving 2-bit activation codes; folded PE 4 x SIMD 8;
* layer 2: :class:`hdl.engines.ShiftMAC` with power-of-two weights (16 -> 6), integer
  scores plus a bias; folded PE 2 x SIMD 4, no multiplier anywhere.

Each layer is first described (:class:`hdl.engines.mvtu.MVTUSpec`: checked parameters,
port shapes, cycles per vector) and built as hardware only when the design is
elaborated. Layer 1 emits 4 codes per beat and layer 2 takes 4 per beat, so the two
streams connect directly (``wiring.connect``); otherwise put a
``hdl.engines.WidthConverter`` between them. The script simulates the design in Amaranth's simulator with random input gaps
and output stalls, checks every score against NumPy, writes ``build/two_layer.v`` with
``--verilog``, and exits non-zero on a mismatch.
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.engines import MVTU, ShiftMAC
from hdl.engines.mvtu import MVTUSpec


def describe_layers(w1, t1, w2, b2) -> tuple[MVTUSpec, MVTUSpec]:
    """The two layers' descriptions: they check the parameters (before any hardware
    exists) and give the port shapes and figures."""
    fc1 = MVTUSpec(w1, kind="ternary", in_bits=4, pe=4, simd=8, thresholds=t1)
    fc2 = MVTUSpec(w2, kind="pot", in_bits=fc1.out_bits, pe=2, simd=4, bias=b2)
    return fc1, fc2


class TwoLayer(wiring.Component):
    """``scores = W2 @ threshold(W1 @ x)`` on a stream of 32-element 4-bit vectors, from
    the layers' descriptions; the engines are built in ``elaborate``."""

    def __init__(self, fc1: MVTUSpec, fc2: MVTUSpec):
        self.fc1, self.fc2 = fc1, fc2
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(4), 8))),
            "o": Out(stream.Signature(data.ArrayLayout(self.fc2.out_shape, 2))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fc1 = fc1 = MVTU(spec=self.fc1)
        m.submodules.fc2 = fc2 = ShiftMAC(spec=self.fc2)
        wiring.connect(m, wiring.flipped(self.i), fc1.i)
        wiring.connect(m, fc1.o, fc2.i)
        wiring.connect(m, fc2.o, wiring.flipped(self.o))
        return m


def make_weights(seed: int):
    """Random layer parameters, as plain NumPy arrays."""
    rng = np.random.default_rng(seed)
    w1 = rng.integers(-1, 2, size=(16, 32))                               # ternary
    acc1 = w1 @ rng.integers(0, 16, size=(32, 200))                      # typical sums
    t1 = np.sort(np.percentile(acc1, [25, 50, 75], axis=1).T.round().astype(np.int64), axis=1)
    w2 = rng.choice([-1, 1], size=(6, 16)) << rng.integers(0, 4, size=(6, 16))   # ±1..±8
    w2[rng.random((6, 16)) < 0.2] = 0
    b2 = rng.integers(-10, 11, size=6)
    return w1, t1, w2, b2


def reference(x, w1, t1, w2, b2):
    """The same computation in NumPy: codes = #{t : acc >= t}, then scores."""
    acc1 = x @ w1.T
    codes = (acc1[:, :, None] >= t1[None]).sum(axis=2)
    return codes @ w2.T + b2


def simulate(design: TwoLayer, x: np.ndarray, seed: int, gap=0.2, stall=0.2) -> np.ndarray:
    """Stream the vectors ``x`` through ``design``; return the scores it emits."""
    beats = x.reshape(-1, 8)
    n_out = len(x) * 6 // 2
    got = []

    async def source(ctx):
        rng = random.Random(seed)
        for beat in beats:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(design.i.payload, [int(v) for v in beat])
            ctx.set(design.i.valid, 1)
            await ctx.tick().until(design.i.ready)
            ctx.set(design.i.valid, 0)

    async def sink(ctx):
        rng = random.Random(seed + 1)
        while len(got) < n_out:
            ctx.set(design.o.ready, rng.random() >= stall)
            _, _, valid, ready, payload = await ctx.tick().sample(
                design.o.valid, design.o.ready, design.o.payload)
            if valid and ready:
                got.append([int(v) for v in payload])

    sim = Simulator(design)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return np.array(got).reshape(len(x), 6)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="MVTU + ShiftMAC custom design, simulated.")
    parser.add_argument("--vectors", type=int, default=20, help="input vectors to simulate")
    parser.add_argument("--seed", type=int, default=1, help="weights, inputs and stalls")
    parser.add_argument("--verilog", action="store_true", help="also write build/two_layer.v")
    args = parser.parse_args(argv)
    if args.vectors < 1:
        parser.error(f"--vectors must be at least 1, not {args.vectors}")

    w1, t1, w2, b2 = make_weights(args.seed)
    fc1, fc2 = describe_layers(w1, t1, w2, b2)
    design = TwoLayer(fc1, fc2)
    x = np.random.default_rng(args.seed + 1).integers(0, 16, size=(args.vectors, 32))
    got = simulate(design, x, args.seed)
    want = reference(x, w1, t1, w2, b2)
    bad = np.argwhere(got != want)
    print(f"layer 1: {fc1.mode} mode, {fc1.cycles_per_vector} cycles/vector; "
          f"layer 2: {fc2.mode} mode (exponents {fc2.emin}..{fc2.emax}), "
          f"{fc2.cycles_per_vector} cycles/vector")
    if args.verilog:
        from pathlib import Path
        from amaranth.back import verilog
        Path("build").mkdir(exist_ok=True)
        Path("build/two_layer.v").write_text(verilog.convert(TwoLayer(fc1, fc2), name="two_layer"))
        print("wrote build/two_layer.v")
    if len(bad):
        v, c = bad[0]
        print(f"MISMATCH at vector {v}, class {c}: got {got[v, c]}, expected {want[v, c]}")
        return 1
    print(f"OK: {args.vectors} vectors, {got.size} scores match NumPy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
