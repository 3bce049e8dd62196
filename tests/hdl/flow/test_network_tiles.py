"""Network compiler and the tile-skipping MVTU: block-pruned models bit-exact against
``sim.golden`` under gaps and backpressure, measured cycles per frame equal to the cycle
model (from the actual zero tiles), the planner's choice, folding errors."""

import numpy as np
import pytest

from hdl.flow.network import (FoldingError, Network, NetworkSpec, choose_folding, lut_estimate, plan,
                              stage_cycle_options)
from hdl.engines.tiles import tile_steps
from sim.random_model import LayerPlan, build_model
from tests.hdl.flow.test_network import check_exact, measured_cycles

C, F = "conv", "fc"


def block_model(seed=0):
    """conv (pot, 2x4 blocks, 30% kept) -> fc (int4, 2x8 blocks, one row group empty)
    -> fc scores (ternary, dense)."""
    plans = [LayerPlan(op=C, out=8, kind="pot", wbits=4, act_bits=2, padding=1, pool=2,
                       block=(2, 4), density=0.3),
             LayerPlan(op=F, out=8, kind="int", wbits=4, act_bits=2, block=(2, 8), density=0.4, bias=True),
             LayerPlan(op=F, out=4, kind="ternary", act_bits=None, bias=True)]
    return build_model(plans, input_shape=(6, 6, 4), input_bits=3, seed=seed, name="block")


FOLDINGS = {
    "tiles": {"conv0": {"pe": 2, "simd": 4, "tiles": True}, "pool0": (2, 2),
              "fc1": {"pe": 2, "simd": 8, "tiles": True, "in_simd": 24}},
    "wide-in": {"conv0": {"pe": 4, "simd": 2, "tiles": True, "in_simd": 4}, "pool0": (4, 4),
                "fc1": {"pe": 8, "simd": 8, "tiles": True, "in_simd": 72}},
}


@pytest.mark.parametrize("name", sorted(FOLDINGS))
def test_exact_and_cycles(name):
    m = block_model()
    net = Network(m, FOLDINGS[name], target_cycles=10 ** 9)
    assert [s.engine for s in net.stages[:3]] == ["shiftmac-tiles", "maxpool", "mvtu-tiles"]
    check_exact(net, frames=3, seed=7)
    got, want = measured_cycles(net), net.cycles_per_frame
    assert got == want, (net.folding, got, want,
                                            [s.cycles_per_frame for s in net.stages])


def test_cycles_follow_the_zero_tiles():
    m = block_model()
    conv = plan(m, {"conv0": {"pe": 2, "simd": 4, "tiles": True}})[0]
    dense = plan(m, {"conv0": (2, 4)})[0]
    steps = tile_steps(m.layers[0].weights.matrix(), 2, 4)
    assert conv.compute.steps == steps < 4 * 9
    assert conv.cycles_per_frame == max(36 * max(9, steps), conv.window.cycles_per_frame)
    assert dense.cycles_per_frame == 36 * 4 * 9 and dense.engine == "shiftmac"


def test_planner_picks_tiles_where_cheaper():
    """A block-pruned model: at a tight target the planner takes the tile engine, meets
    the target with fewer estimated LUTs than the dense engine's cheapest folding; the
    network built at the target is bit-exact. A model without zero tiles never gets it."""
    m = block_model()
    target = 700
    folding = choose_folding(m, target)
    spec = NetworkSpec(m, target_cycles=target)
    assert spec.cycles_per_frame <= target
    conv = spec.stages[0]
    assert conv.tiles and folding["conv0"]["tiles"] and spec.folding["conv0"]["in_simd"] == conv.in_lanes
    # the default engine's cheapest folding meeting the target is estimated dearer
    dense = [s for p in (1, 2, 4, 8) for q in (1, 2, 4)
             for s in plan(m, {"conv0": (p, q)})[:1] if s.cycles_per_frame <= target]
    assert dense and min(lut_estimate(s) for s in dense) > lut_estimate(conv)
    assert conv.cycles_per_frame in stage_cycle_options(conv.layer, conv.in_spec)
    check_exact(Network(spec=spec), frames=2, seed=3)
    from tests.hdl.flow.test_network import model
    dense_model = model("int")
    for t in (1, 50, 500, 10 ** 9):
        assert not any(s.tiles for s in NetworkSpec(dense_model, target_cycles=t).stages)


@pytest.mark.parametrize("folding, match", [
    ({"fc1": {"pe": 2, "simd": 8, "in_simd": 16}}, r"layer 'fc1': in_simd 16 != simd 8 needs the tile engine"),
    ({"fc1": {"pe": 2, "simd": 8, "tiles": True, "in_simd": 12}},
     r"layer 'fc1': in_simd must be a multiple of SIMD 8 dividing the input width 72, not 12"),
    ({"conv0": {"pe": 2, "simd": 2, "tiles": True, "in_simd": 8}},
     r"layer 'conv0': in_simd must be a multiple of SIMD 2 dividing the input channel count 4, not 8"),
    ({"conv0": {"pe": 2, "tiles": 1}}, r"layer 'conv0': tiles must be true or false, not 1"),
    ({"pool0": {"pe": 2, "tiles": True}}, r"layer 'pool0': tiles applies to conv and fc stages only"),
])
def test_folding_errors(folding, match):
    with pytest.raises(FoldingError, match=match):
        NetworkSpec(block_model(), folding)
