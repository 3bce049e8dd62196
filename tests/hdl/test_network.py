"""Network compiler: whole random models in Amaranth's simulator, bit-exact against
``sim.golden.run`` under random input gaps and output backpressure, at many foldings;
the cycle model against measured steady-state cycles per frame; folding errors."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl import ir
from hdl.network import FoldingError, Network, choose_folding, frame_cycles, plan
from sim import golden
from sim.random_model import LayerPlan, build_model

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def simulate(net: Network, codes: np.ndarray, *, seed: int, gap=0.3, stall=0.3):
    """Frames ``codes`` (N, H, W, C) through ``net``; returns (scores (N, classes),
    cycle of each frame's last output beat).

    The source idles before a beat with probability ``gap``, the sink drops ready with
    probability ``stall`` and checks that a held output beat does not change.
    """
    n = len(codes)
    beats = np.asarray(codes).reshape(-1, net.in_lanes)
    classes = len(net.model.classes)
    per_frame = classes // net.out_lanes
    got, ends = [], []
    slack = 1 / (1 - max(gap, stall))
    limit = int(4 * slack * (n * net.cycles_per_frame + net.latency_bound)) + 2000

    async def source(ctx):
        rng = random.Random(seed)
        for beat in beats:
            while gap and rng.random() < gap:
                await ctx.tick()
            ctx.set(net.i.payload, [int(v) for v in beat])
            ctx.set(net.i.valid, 1)
            await ctx.tick().until(net.i.ready)
            ctx.set(net.i.valid, 0)

    async def sink(ctx):
        rng = random.Random(seed + 1)
        cycle, held = 0, None
        while len(got) < n * per_frame:
            ready = not (stall and rng.random() < stall)
            ctx.set(net.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(net.o.valid, net.o.payload)
            cycle += 1
            assert cycle < limit, (f"seed {seed}: timed out after {cycle} cycles with "
                                   f"{len(got)} of {n * per_frame} output beats")
            beat = [int(v) for v in payload] if valid else None
            if held is not None:
                assert beat == held, f"seed {seed}: output beat changed while held: {held} -> {beat}"
            held = None
            if valid and ready:
                got.append(beat)
                if len(got) % per_frame == 0:
                    ends.append(cycle)
            elif valid:
                held = beat

    sim = Simulator(net)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    return np.array(got, dtype=np.int64).reshape(n, classes), ends


def random_codes(model: ir.Model, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 1 << model.input.bits, size=(n, *model.input.shape))


def check_exact(net: Network, *, frames=3, seed=0, gap=0.3, stall=0.3):
    codes = random_codes(net.model, frames, seed)
    got, _ = simulate(net, codes, seed=seed, gap=gap, stall=stall)
    want = golden.run(net.model, codes)
    for f in range(frames):
        assert np.array_equal(got[f], want[f]), (
            f"seed {seed}, folding {net.folding}: frame {f}: scores {got[f].tolist()}, "
            f"golden {want[f].tolist()}")


def measured_cycles(net: Network, *, frames=4, seed=0) -> int:
    """Free-running source and sink, back-to-back frames: the interval between the ends
    of the last two frames (the first ones fill the pipeline)."""
    codes = random_codes(net.model, frames, seed)
    got, ends = simulate(net, codes, seed=seed, gap=0.0, stall=0.0)
    assert np.array_equal(got, golden.run(net.model, codes))
    return ends[-1] - ends[-2]


# Small models of every op and weight kind. (plans, input shape, input bits)
C, F = "conv", "fc"
MODELS = {
    # XNOR: bipolar input, padding with +1 and -1, max-pool, then binary FCs.
    "xnor": ([LayerPlan(op=C, out=4, kind="binary", act_bits=1, padding=1, pad_value=1, pool=2),
              LayerPlan(op=F, out=8, kind="binary", act_bits=1),
              LayerPlan(op=F, out=4, kind="binary", act_bits=None)], (6, 6, 2), 1),
    "xnor-pad0": ([LayerPlan(op=C, out=4, kind="binary", act_bits=1, padding=1, pad_value=0),
                   LayerPlan(op=C, out=2, kind="binary", act_bits=None, stride=2)], (5, 5, 2), 1),
    # Binary weights x k-bit activations, strided conv.
    "binary-k": ([LayerPlan(op=C, out=4, kind="binary", act_bits=2, stride=2, padding=1),
                  LayerPlan(op=F, out=6, kind="binary", act_bits=3),
                  LayerPlan(op=F, out=3, kind="binary", act_bits=None, bias=True)], (7, 7, 2), 2),
    "ternary": ([LayerPlan(op=C, out=4, kind="ternary", act_bits=2, pool=2, bias=True),
                 LayerPlan(op=F, out=4, kind="ternary", act_bits=None)], (6, 6, 2), 3),
    "int": ([LayerPlan(op=C, out=2, kind="int", wbits=4, act_bits=2, kernel=2),
             LayerPlan(op=C, out=4, kind="int", wbits=3, act_bits=1, kernel=1, stride=2),
             LayerPlan(op=F, out=4, kind="int", wbits=5, act_bits=None, bias=True)], (5, 5, 1), 4),
    "pot4": ([LayerPlan(op=C, out=4, kind="pot", wbits=4, act_bits=2, padding=1, pool=2),
              LayerPlan(op=F, out=4, kind="pot", wbits=4, act_bits=None, bias=True)], (6, 6, 1), 4),
    "pot5": ([LayerPlan(op=C, out=2, kind="pot", wbits=5, act_bits=3, stride=2),
              LayerPlan(op=F, out=5, kind="pot", wbits=5, act_bits=None)], (7, 7, 2), 2),
    "pool-odd": ([LayerPlan(op=C, out=4, kind="binary", act_bits=2, pool=2),
                  LayerPlan(op=F, out=4, kind="int", wbits=2, act_bits=None)], (7, 7, 1), 2),
}

try:
    import hdl.sparse  # noqa: F401
    MODELS.update({
        "sparse-fc": ([LayerPlan(op=F, out=8, kind="ternary", act_bits=2, density=0.4),
                       LayerPlan(op=F, out=4, kind="int", wbits=4, act_bits=None, density=0.5)],
                      (3, 3, 2), 2),
        "sparse-conv": ([LayerPlan(op=C, out=4, kind="pot", wbits=4, act_bits=2, padding=1,
                                   density=0.4, pool=2),
                         LayerPlan(op=F, out=4, kind="binary", act_bits=None, density=0.5)],
                        (6, 6, 1), 3),
        "sparse-xnor": ([LayerPlan(op=C, out=4, kind="binary", act_bits=1, density=0.5),
                         LayerPlan(op=F, out=4, kind="ternary", act_bits=None, density=0.3)],
                        (5, 5, 2), 1),
    })
except ImportError:          # the sparse engine is not there yet
    pass


def model(name: str, seed: int = 0) -> ir.Model:
    plans, shape, bits = MODELS[name]
    return build_model(plans, input_shape=shape, input_bits=bits, seed=seed, name=name)


def fastest(m: ir.Model) -> dict:
    return choose_folding(m, 1)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("fold", ["auto", "ones", "fastest"])
def test_exact(name, fold):
    """Every frame's scores equal the golden model's, under gaps and backpressure."""
    m = model(name)
    if fold == "auto":
        # Halfway (geometrically) between fully folded and fully parallel.
        slow = frame_cycles(plan(m))
        quick = frame_cycles(plan(m, fastest(m)))
        net = Network(m, target_cycles=int((slow * quick) ** 0.5))
    elif fold == "ones":
        net = Network(m, {s.name: (1, 1) for s in plan(m)})
    else:
        net = Network(m, fastest(m))
    check_exact(net, frames=3, seed=sum(map(ord, name + fold)))
