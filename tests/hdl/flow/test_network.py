"""Network compiler: whole random models in Amaranth's simulator, bit-exact against
``sim.golden.run`` under random input gaps and output backpressure, at many foldings;
the cycle model against measured steady-state cycles per frame; folding errors."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl import ir
from hdl.flow.network import FoldingError, Network, NetworkSpec, choose_folding, frame_cycles, plan
from sim import golden
from sim.random_model import LayerPlan, build_model


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
    sim.add_testbench(source)
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


def measured_cycles(net: Network, *, frames=3, seed=0) -> int:
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
    import hdl.engines.sparse  # noqa: F401
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


def window_startup(net: Network) -> int:
    """The sliding window's per-frame start-up bound (``hdl.engines.window``): the input beats of
    a frame's first window, ``(K - 1 - padding) * W * CF + K * CF``, for the first stage
    when it is a convolution (later stages' windows are fed at their producer's rate)."""
    s = net.stages[0]
    if s.op != "conv":
        return 0
    h, w, c = s.in_spec.shape
    k, cf = s.layer.kernel, c // s.simd
    return max(0, k - 1 - s.layer.padding) * w * cf + k * cf


#: Foldings where the first stage is a convolution whose compute runs at 100% with an
#: unpadded window: its window cannot take the next frame's first rows until the last
#: windows of the current frame are out, a stall of up to its start-up per frame.
WINDOW_BOUND = {("int", "auto"), ("int", "fastest"), ("pool-odd", "fastest"),
                ("ternary", "fastest"), ("sparse-xnor", "auto"), ("sparse-xnor", "fastest")}


def folded(m: ir.Model, fold: str) -> Network:
    if fold == "auto":
        slow = frame_cycles(plan(m))
        quick = frame_cycles(plan(m, fastest(m)))
        return Network(m, target_cycles=int((slow * quick) ** 0.5))
    if fold == "ones":
        return Network(m, {s.name: (1, 1) for s in plan(m)})
    return Network(m, fastest(m))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("fold", ["auto", "ones", "fastest"])
def test_cycles_per_frame(name, fold):
    """Free-running, back-to-back frames: steady-state cycles per frame within 2% of
    the cycle model of the core alone (``Network.core_cycles_per_frame``)."""
    net = folded(model(name), fold)
    got = measured_cycles(net)
    want = net.core_cycles_per_frame
    if (name, fold) in WINDOW_BOUND:
        assert want <= got <= want + window_startup(net), (net.folding, got, want)
    else:
        assert abs(got - want) <= 0.02 * want, (
            f"{name} at {net.folding}: measured {got} cycles per frame, model {want} "
            f"(stages {[s.cycles_per_frame for s in net.stages]})")


def test_fifo_holds_a_vector():
    """A fully connected stage with several neuron folds takes its input only during the
    first fold: the FIFO in front holds one input vector so that the producer runs on;
    every other FIFO passes one beat per cycle (3 beats); a convolution's FIFO holds its
    window's start-up (the next frame's first beats), a wide fc first stage has none."""
    m = model("binary-k")
    spec = NetworkSpec(m, {"conv0": (2, 2), "fc1": (1, 1), "fc2": (1, 1)})
    startup = spec.stages[0].window.startup
    assert startup == 10 and spec.fifo_depths == [startup, 64, 6]
    assert [f.reason for f in spec.fifos] == ["burst", "burst", "burst"]
    spec = NetworkSpec(m, {"conv0": (2, 2), "fc1": (6, 1), "fc2": (3, 1)})
    assert spec.fifo_depths == [startup, 3, 3]
    # slots (depth + 1: i.ready is registered) x lanes x bits
    assert spec.fifo_bits == (startup + 1) * 2 * 2 + 4 * 1 * 2 + 4 * 1 * 3
    spec = NetworkSpec(m, {"conv0": (2, 2), "fc1": (6, 1), "fc2": (3, 1)}, fifo_depth=12)
    assert spec.fifo_depths == [12, 12, 12] and spec.fifos[1].reason == "fixed"
    # A first stage that takes its input in bursts gets a FIFO of one vector in front.
    fc = build_model([LayerPlan(op=F, out=4, act_bits=None)], input_shape=(2, 2, 3), input_bits=2)
    assert NetworkSpec(fc, {"fc0": (1, 3)}).fifo_depths == [4]
    assert NetworkSpec(fc, {"fc0": (4, 3)}).fifo_depths == [None]


def halving_model():
    """A one-beat-per-vector fc, then an fc with one neuron fold taking 4 beats a vector."""
    plans = [LayerPlan(op=F, out=16), LayerPlan(op=F, out=16), LayerPlan(op=F, out=4, act_bits=None)]
    return build_model(plans, input_shape=(4, 4, 1), input_bits=8, seed=3, name="halving")


def top_intervals(net: Network, frames: int, serial_input=None) -> tuple[np.ndarray, list[int]]:
    """The generated top (``AxiTop`` around ``net``) in Amaranth's simulator, free-running,
    ``frames`` random frames back to back: (scores, cycle of each TLAST)."""
    from hdl.host.driver import Geometry, pack_frame
    from hdl.shell.axi import AxiTop
    m = net.model
    codes = random_codes(m, frames, 0)
    g = Geometry(in_elements=int(np.prod(m.input.shape)), in_bits=m.input.bits,
                 classes=len(m.classes))
    top = AxiTop(net, frame_elements=g.in_elements, classes=g.classes, serial_input=serial_input)
    assert top.input_format.serial == (net.serial_input if serial_input is None else serial_input)
    words = [w for k in range(frames) for w in pack_frame(codes[k], g).view("<u4").tolist()]
    per_frame = len(words) // frames
    got, ends = [], []

    async def source(ctx):
        ctx.set(top.s_axis_tvalid, 1)
        for n, word in enumerate(words):
            ctx.set(top.s_axis_tdata, word)
            ctx.set(top.s_axis_tlast, n % per_frame == per_frame - 1)
            await ctx.tick().until(top.s_axis_tready)
        ctx.set(top.s_axis_tvalid, 0)

    async def sink(ctx):
        ctx.set(top.m_axis_tready, 1)
        cycle = 0
        while len(ends) < frames:
            _, _, valid, tdata, tlast = await ctx.tick().sample(
                top.m_axis_tvalid, top.m_axis_tdata, top.m_axis_tlast)
            cycle += 1
            assert cycle < 100 * (frames * net.cycles_per_frame + net.latency_bound)
            if valid:
                got.append(int(tdata))
                if tlast:
                    ends.append(cycle)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    words_out = np.array(got, dtype=np.uint32).reshape(frames, -1)[:, :g.classes]
    scores = words_out.view(np.int32).astype(np.int64)
    assert np.array_equal(scores, golden.run(m, codes))
    return scores, ends


def test_cycle_model_includes_the_shell():
    """The issue's example: an 8x8x1 8-bit input into one fc layer at its fastest folding
    is 1 cycle per frame for the stage, 16 for the top (16 input beats of 4 codes); the
    output side's floor is classes + 1. Measured on the top: the model."""
    fc = build_model([LayerPlan(op=F, out=4, act_bits=None)], input_shape=(8, 8, 1),
                     input_bits=8, seed=1)
    net = Network(fc, fastest(fc))
    assert net.core_cycles_per_frame == 1 and not net.serial_input
    assert net.shell_floors == (16, 5)
    assert net.cycles_per_frame == 16 and net.bottleneck == "shell input"
    _, ends = top_intervals(net, 3)
    assert np.diff(ends).tolist()[1:] == [16]
    assert ends[0] <= net.latency_bound
    # A target beyond the shell's floor folds no faster than the floor needs.
    slow = NetworkSpec(fc, target_cycles=1)
    assert slow.core_cycles_per_frame == 16 and slow.cycles_per_frame == 16




def test_serial_input_when_the_core_leaves_time():
    """A conv on a 6x6x3 8-bit image takes 3 codes a beat from 32-bit words of 4: a
    shift buffer at full rate. When the core's frame interval is at least twice the
    frame's codes, the shell repacks them one per cycle instead (two small converters);
    the top gives the same scores at the same rate as with the full-rate input."""
    m = build_model([LayerPlan(op=C, out=4, kind="binary", act_bits=1, padding=1),
                     LayerPlan(op=F, out=4, kind="binary", act_bits=None)],
                    input_shape=(6, 6, 3), input_bits=8, seed=2)
    net = Network(m, {"conv0": (1, 3), "fc1": (4, 16)})
    assert net.serial_input and net.core_cycles_per_frame >= 2 * 108
    assert net.shell_floors == (108, 5)
    scores, ends = top_intervals(net, 3)
    full_scores, full_ends = top_intervals(net, 3, serial_input=False)
    assert np.array_equal(scores, full_scores)
    assert np.diff(ends).tolist() == np.diff(full_ends).tolist()
    assert ends[0] <= net.latency_bound


def test_fifo_full_rate_in_the_top():
    """The issue's case: a stage with one neuron fold after a faster stage ran at half
    rate behind a 2-beat FIFO (8 cycles per vector against 4 predicted). With the planned
    FIFOs the top runs at its model: 5 cycles, the output floor (4 classes + 1), which
    the stages (4) stay under (behind a halving FIFO they would take 8)."""
    net = Network(halving_model(), {"fc0": (16, 16), "fc1": (16, 4), "fc2": (4, 16)})
    assert [s.cycles_per_frame for s in net.stages] == [1, 4, 1]
    assert net.fifo_depths == [None, 3, 3]
    assert net.cycles_per_frame == 5 and net.bottleneck == "shell output"
    _, ends = top_intervals(net, 3)
    assert np.diff(ends).tolist()[1:] == [5]
    assert ends[0] <= net.latency_bound


@pytest.mark.parametrize("name", ["xnor", "ternary", "pot5", "int"])
def test_choose_folding_meets_target(name):
    """The cheapest folding meets the target whenever some folding can, and the folding
    with the fewest lanes among those that do (per stage)."""
    m = model(name)
    best = frame_cycles(plan(m, fastest(m)))
    for target in (1, best, 2 * best, 5 * best, 10 ** 9):
        f = choose_folding(m, target)
        stages = plan(m, f)
        if target >= best:
            assert frame_cycles(stages) <= target, (target, f)
        else:
            assert frame_cycles(stages) == best
        for s in stages:
            if s.op == "maxpool" or s.cycles_per_frame > target:
                continue
            lanes = s.pe * s.simd
            # no folding with fewer lanes meets the target for this stage
            for pe in range(1, lanes):
                for simd in range(1, lanes // pe + 1):
                    if pe * simd >= lanes:
                        continue
                    try:
                        other = plan(m, {s.name: (pe, simd)})
                    except FoldingError:
                        continue
                    o = next(x for x in other if x.name == s.name)
                    assert o.cycles_per_frame > target, (s.name, (s.pe, s.simd), (pe, simd))
    # the network built at a target reports that folding and cycle count
    spec = NetworkSpec(m, target_cycles=2 * best)
    assert spec.cycles_per_frame == frame_cycles(plan(m, choose_folding(m, 2 * best))) <= 2 * best


@pytest.mark.parametrize("folding, match", [
    ({"conv0": (3, 1)}, r"layer 'conv0': PE must divide the output count 4, not 3"),
    ({"conv0": (1, 3)}, r"layer 'conv0': SIMD must divide the input channel count 2, not 3"),
    ({"fc1": (1, 7)}, r"layer 'fc1': SIMD must divide the input width 36, not 7"),
    ({"fc1": (5, 1)}, r"layer 'fc1': PE must divide the output count 8, not 5"),
    ({"pool0": (2, 1)}, r"layer 'pool0': max-pool lanes .* pe=2 simd=1"),
    ({"pool0": (3, 3)}, r"layer 'pool0': max-pool lanes must divide the channel count 4"),
    ({"conv0": (0, 1)}, r"layer 'conv0': pe must be a positive integer, not 0"),
    ({"conv0": (1, 2.0)}, r"layer 'conv0': simd must be a positive integer, not 2.0"),
    ({"conv0": {"pe": 2, "lanes": 1}}, r"layer 'conv0': unknown folding key\(s\) lanes"),
    ({"conv0": 4}, r"layer 'conv0': folding must be \(pe, simd\)"),
    ({"act0": (1, 1)}, r"unknown stage\(s\) act0; stages are conv0, pool0, fc1, fc2"),
    ({"fc1": {"ram_style": "ultra"}}, r"layer 'fc1': ram_style must be one of auto, block, distributed"),
    ({"pool0": {"ram_style": "block"}}, r"layer 'pool0': ram_style applies to the engines' weight"),
])
def test_folding_errors(folding, match):
    with pytest.raises(FoldingError, match=match):
        Network(model("xnor"), folding)


def test_folding_errors_in_the_description():
    """The description refuses a folding with the same message as the network."""
    with pytest.raises(FoldingError, match=r"layer 'conv0': PE must divide the output count 4, not 3"):
        NetworkSpec(model("xnor"), {"conv0": (3, 1)})


@pytest.mark.parametrize("name", ["xnor", "pot4", "int", "pool-odd"])
def test_stage_figures_are_the_engines(name):
    """Each stage's cycles per frame, weight memories and the network's ports follow from
    the engines' descriptions, and the engines built from them have those figures."""
    spec = NetworkSpec(model(name), target_cycles=200)
    net = Network(spec=spec)
    for stage, engine in zip(spec.stages, net.engines):
        if stage.pool is not None:
            assert stage.cycles_per_frame == stage.pool.cycles_per_frame == engine.cycles_per_frame
            continue
        window, compute = stage.window, stage.compute
        engine = engine.compute if window is not None else engine
        assert engine.spec is compute and engine.signature == compute.signature
        pixels = 1 if window is None else window.out_pixels
        assert stage.cycles_per_frame == max(pixels * compute.cycles_per_vector,
                                             0 if window is None else window.cycles_per_frame)
    assert net.signature.members["o"].signature.members["payload"].shape.elem_shape == net.score_shape
    from amaranth.back import rtlil
    rtlil.convert(net)                     # built to be elaborated


def test_folding_error_is_value_error():
    assert issubclass(FoldingError, ValueError)
    with pytest.raises(FoldingError, match="target cycles per frame must be at least 1"):
        choose_folding(model("xnor"), 0)
    with pytest.raises(TypeError, match="model must be an ir.Model"):
        Network("models/w1a2")
    with pytest.raises(ValueError, match="fifo_depth must be a positive integer"):
        Network(model("xnor"), fifo_depth=0)


def test_explicit_dict_folding():
    """Per-stage dicts and tuples mix; unnamed stages get the automatic folding."""
    m = model("xnor")
    net = Network(m, {"conv0": {"pe": 2}, "fc1": (4, 6), "pool0": {"pe": 2}},
                  target_cycles=10 ** 9)
    assert net.folding["conv0"] == {"pe": 2, "simd": 1}
    assert net.folding["fc1"] == {"pe": 4, "simd": 6}
    assert net.folding["pool0"] == {"pe": 2, "simd": 2}
    assert net.folding["fc2"] == {"pe": 1, "simd": 1}
    assert (net.in_lanes, net.out_lanes) == (1, 1)
    check_exact(net, frames=2, seed=5)


def test_ram_style_reaches_the_weight_memories():
    """A stage's ram_style is the rom_style attribute of its weight memories (Vivado's
    name; hdl.flow.synth maps it for Yosys), and only where it is asked for."""
    from amaranth.back import verilog
    net = Network(model("xnor"), {"fc1": {"pe": 2, "ram_style": "distributed"},
                                  "fc2": {"ram_style": "block"}})
    assert net.folding["fc1"] == {"pe": 2, "simd": 1, "ram_style": "distributed"}
    assert "ram_style" not in net.folding["conv0"]
    text = verilog.convert(net, name="top")
    assert text.count('(* rom_style = "distributed" *)') == 2        # one memory per PE
    assert text.count('(* rom_style = "block" *)') == 1


def test_plan_ram_styles_knapsack():
    """LFC at 256 cycles on PYNQ-Z2's weight budget: fc1 and fc2 (1 Mbit each) fill the
    block RAM and fc0 goes to LUTs, though fc0 alone saves the most LUTs per BRAM18."""
    from hdl.flow.network import plan_ram_styles, weight_bram_budget, weight_memory, bram18_estimate
    from sim.random_model import lfc
    m = lfc()
    stages = plan(m, {"fc0": (4, 784), "fc1": (4, 1024), "fc2": (4, 1024), "fc3": (5, 8)})
    budget = weight_bram_budget(280)
    styles = {s.name: s.ram_style for s in plan_ram_styles(stages, budget)}
    assert styles == {"fc0": "distributed", "fc1": "block", "fc2": "block", "fc3": "block"}
    used = sum(n * bram18_estimate(w, d) for s in plan_ram_styles(stages, budget)
               if s.ram_style == "block" for n, w, d in [weight_memory(s)])
    assert used <= budget
    # An explicit choice is kept and counted; no budget: everything in LUTs.
    forced = plan(m, {"fc0": (4, 784), "fc1": {"pe": 4, "simd": 1024, "ram_style": "distributed"},
                      "fc2": (4, 1024), "fc3": (5, 8)})
    styles = {s.name: s.ram_style for s in plan_ram_styles(forced, budget)}
    assert styles == {"fc0": "block", "fc1": "distributed", "fc2": "block", "fc3": "block"}
    assert {s.ram_style for s in plan_ram_styles(stages, 0)} == {"distributed"}


@pytest.mark.slow
def test_whole_design_logic_levels():
    """The shipped digits model's whole generated top (``AxiTop`` around ``Network``, as
    ``python -m hdl.build pynq-z2`` builds it) stays within 6 LUT levels: ready paths no
    longer cross the sliding window or into the AXI registers. Several minutes of Yosys."""
    import math
    from pathlib import Path

    from amaranth.back import verilog

    import boards
    from hdl.flow.network import weight_bram_budget
    from hdl.flow.synth import synthesize
    from hdl.shell.axi import AxiTop
    board = boards.get("pynq-z2")
    m = ir.load(ir.model_path(Path(__file__).resolve().parents[3] / "models" / "w1a2"))
    spec = NetworkSpec(m, target_cycles=5_000, bram18_budget=weight_bram_budget(board.capacity.bram18))
    top = AxiTop(Network(spec=spec), frame_elements=math.prod(m.input.shape), classes=len(m.classes))
    result = synthesize(verilog.convert(top, name="qnn_core", platform=board()), "qnn_core",
                        board.synth_family)
    assert 1 <= result.logic_levels <= 6, result.critical_path
