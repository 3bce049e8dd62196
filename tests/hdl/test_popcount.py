"""Popcount: the generic tree in Amaranth's simulator, the primitive tree by Yosys proofs."""

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.popcount import Popcount

SEED = 20261121

# Construction that raises still creates the object; Amaranth then warns it was unused.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def _simulate(dut, vectors, *, xnor):
    """Drive (a, b) vectors, return the outputs read ``dut.latency`` cycles later."""
    got = []

    async def bench(ctx):
        for a, b in vectors:
            ctx.set(dut.a, a)
            if xnor:
                ctx.set(dut.b, b)
            if dut.latency:
                await ctx.tick()
            else:
                await ctx.delay(1e-9)
            got.append(ctx.get(dut.o))

    sim = Simulator(dut)
    if dut.latency:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def _expected(vectors, width, *, xnor):
    mask = (1 << width) - 1
    return [bin((~(a ^ b) & mask) if xnor else a).count("1") for a, b in vectors]


@pytest.mark.parametrize("xnor", [False, True])
@pytest.mark.parametrize("width", range(1, 9))
def test_exhaustive_small(width, xnor):
    if xnor:
        vectors = [(a, b) for a, b in itertools.product(range(1 << width), repeat=2)]
        if len(vectors) > 4096:
            vectors = vectors[::len(vectors) // 4096]
    else:
        vectors = [(a, 0) for a in range(1 << width)]
    dut = Popcount(width, xnor=xnor, registered=False, primitives="generic")
    assert _simulate(dut, vectors, xnor=xnor) == _expected(vectors, width, xnor=xnor), \
        f"width {width} xnor {xnor}"


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("xnor", [False, True])
@pytest.mark.parametrize("width", [9, 13, 31, 32, 33, 64, 100, 128])
def test_random_wide(width, xnor, registered):
    rng = np.random.default_rng(SEED + width)
    mask = (1 << width) - 1

    def rand():
        # Mix uniform vectors with nearly-all-ones / all-zeros to reach the extremes.
        kind = rng.integers(4)
        v = int.from_bytes(rng.bytes((width + 7) // 8), "little") & mask
        return [v, mask, 0, v | (mask ^ (1 << int(rng.integers(width))))][kind]
    vectors = [(rand(), rand()) for _ in range(200)]
    dut = Popcount(width, xnor=xnor, registered=registered, primitives="generic")
    assert dut.latency == int(registered)
    got = _simulate(dut, vectors, xnor=xnor)
    assert got == _expected(vectors, width, xnor=xnor), f"seed {SEED + width}"


def test_ports():
    p = Popcount(64, xnor=True)
    assert len(p.a) == 64 and len(p.b) == 64 and len(p.o) == 7
    assert p.latency == 1
    q = Popcount(7)
    assert not hasattr(q, "b") and len(q.o) == 3
    assert Popcount(7, registered=False).latency == 0


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(width=0), ValueError, "width must be at least 1, not 0"),
    (dict(width=3.0), TypeError, "width must be an int"),
    (dict(width=4, xnor=1), TypeError, "xnor must be a bool"),
    (dict(width=4, registered=None), TypeError, "registered must be a bool"),
    (dict(width=4, primitives="altera"), ValueError, "primitives must be one of auto, generic, xilinx, not 'altera'"),
    (dict(width=4, family="ecp5"), ValueError, "family must be one of ultrascale, 7series, not 'ecp5'"),
])
def test_bad_parameters(kwargs, exc, match):
    width = kwargs.pop("width")
    with pytest.raises(exc, match=match):
        Popcount(width, **kwargs)
