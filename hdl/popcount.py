"""Population count (optionally of an XNOR of two vectors) as a LUT-lean compressor tree.

The count of ones of an ``n``-bit vector is built as a compressor tree in three steps:

1. **Leaves.** In XNOR mode, three lanes (six input bits ``a_i, b_i``) go into two
   6-input functions giving the sum and carry of ``xnor(a_i, b_i)`` over the three lanes,
   so the XNOR costs nothing extra. Two leftover lanes give one dual-output LUT (half
   adder), one leftover lane one XNOR. In plain mode the input bits are the leaves.
2. **Column compression.** Bits of equal weight ("columns") are reduced by generalized
   parallel counters: a (7;3) counter sums up to seven bits of one column into three bits
   (weights 1, 2, 4) with two LUTs on a carry chain; a full adder (3;2) takes one
   dual-output LUT. Stages repeat until every column holds at most two bits (three in
   the lowest column, whose third bit enters as carry-in).
3. **Final adder.** A two-operand ripple-carry adder on the carry chain, one LUT per column.

With ``primitives="xilinx"`` each counter and adder is built from Xilinx primitives
(``LUT1``..``LUT6``, ``LUT6_2`` with ``INIT`` computed here, ``CARRY8`` on UltraScale(+),
``CARRY4`` on 7-series) so that synthesis keeps the structure; with ``"generic"`` the
same tree is written in plain Amaranth arithmetic (the simulation twin: every node has
the same name and value in both versions, which is what ``tests/hdl/test_popcount.py``
proves with a Yosys equivalence check). ``"auto"`` picks the primitives when elaborated
for a Xilinx platform of a supported family and generic logic otherwise (simulation).
"""

from __future__ import annotations

from amaranth.hdl import Const, Instance, Module, Signal, Value, Cat, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

__all__ = ["Popcount", "popcount_tree", "xnor_popcount_tree", "lut_init", "PRIMITIVES", "FAMILIES"]

PRIMITIVES = ("auto", "generic", "xilinx")
FAMILIES = ("ultrascale", "7series")

# Amaranth's XilinxPlatform.family -> our carry-chain family.
_PLATFORM_FAMILIES = {"ultrascale": "ultrascale", "ultrascaleplus": "ultrascale",
                      "series7": "7series"}


def lut_init(function, n_inputs: int) -> int:
    """``INIT`` of a LUT with ``n_inputs`` inputs computing ``function(i0, i1, ...)``.

    Bit ``k`` of the result is the function at inputs ``I0 = k & 1``, ``I1 = (k >> 1) & 1``
    and so on (Xilinx's convention).
    """
    init = 0
    for k in range(1 << n_inputs):
        if function(*((k >> j) & 1 for j in range(n_inputs))) & 1:
            init |= 1 << k
    return init


def _xnor(a, b):
    return 1 - (a ^ b)


# -- the tree, independent of how its nodes are built ----------------------------------

class _Builder:
    """Builds the nodes of the tree; subclasses decide generic logic or primitives.

    Every node's outputs are fresh named Signals, named identically by both builders so
    that a Yosys ``equiv_make`` pairs them up.
    """

    def __init__(self, m: Module, prefix: str):
        self.m = m
        self.prefix = prefix
        self.count = 0
        self.luts = 0          # LUT sites used (LUT1..LUT6 or LUT6_2 each count one)

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{self.prefix}{kind}{self.count}"

    # Each returns a list of (column offset, 1-bit Value).
    def xnor_leaf(self, pairs): raise NotImplementedError
    def counter(self, bits): raise NotImplementedError
    def adder(self, p, q, ci, width): raise NotImplementedError


class _GenericBuilder(_Builder):
    """The twin: plain Amaranth arithmetic, same structure and node names."""

    def xnor_leaf(self, pairs):
        name = self._name("leaf")
        xs = [~(a ^ b) for a, b in pairs]
        if len(xs) == 1:
            o = Signal(1, name=name)
            self.m.d.comb += o.eq(xs[0])
            self.luts += 1
            return [(0, o[0])]
        o = Signal(2, name=name)
        self.m.d.comb += o.eq(sum(xs))
        self.luts += 1 if len(xs) == 2 else 2
        return [(0, o[0]), (1, o[1])]

    def counter(self, bits):
        name = self._name("gpc")
        o = Signal(range(len(bits) + 1), name=name)
        self.m.d.comb += o.eq(sum(bits))
        self.luts += 1 if len(bits) <= 3 else 2
        return [(j, o[j]) for j in range(len(o))]

    def adder(self, p, q, ci, width):
        name = self._name("add")
        o = Signal(width, name=name)
        self.luts += sum(1 for b in p if b is not None)
        p, q = ([b if b is not None else Const(0, 1) for b in row] for row in (p, q))
        self.m.d.comb += o.eq(Cat(*p) + Cat(*q) + ci)
        return o


class _XilinxBuilder(_Builder):
    """Xilinx primitives: LUTs with computed INIT, CARRY8 (UltraScale) or CARRY4 (7-series)."""

    def __init__(self, m, prefix, family):
        super().__init__(m, prefix)
        self.family = family

    def _lut(self, function, inputs, name):
        """One LUTk (k = number of inputs) computing ``function``; returns its output."""
        k = len(inputs)
        o = Signal(name=name)
        ports = {f"i_I{j}": v for j, v in enumerate(inputs)}
        self.m.submodules[name + "_lut"] = Instance(
            f"LUT{k}", p_INIT=Const(lut_init(function, k), 1 << k), o_O=o, **ports)
        self.luts += 1
        return o

    def _lut6_2(self, f6, f5, inputs, name):
        """A LUT6_2 with up to five inputs (I5 tied high): O6 = f6(inputs), O5 = f5(inputs)."""
        assert len(inputs) <= 5
        inputs = list(inputs) + [Const(0, 1)] * (5 - len(inputs))
        n = len(inputs)
        lo = lut_init(lambda *v: f5(*v), n)
        hi = lut_init(lambda *v: f6(*v), n)
        o6, o5 = Signal(name=name + "_o6"), Signal(name=name + "_o5")
        ports = {f"i_I{j}": v for j, v in enumerate(inputs)}
        self.m.submodules[name + "_lut"] = Instance(
            "LUT6_2", p_INIT=Const(hi << 32 | lo, 64), i_I5=Const(1, 1), o_O6=o6, o_O5=o5, **ports)
        self.luts += 1
        return o6, o5

    def _carry(self, s, di, ci, name):
        """A carry chain over len(s) positions; returns (sum bits O, carry outs CO)."""
        n = len(s)
        seg = 8 if self.family == "ultrascale" else 4
        outs, couts = [], []
        carry = ci
        for base in range(0, n, seg):
            ss = list(s[base:base + seg])
            dd = list(di[base:base + seg])
            pad = seg - len(ss)
            ss += [Const(0, 1)] * pad
            dd += [Const(0, 1)] * pad
            o, co = Signal(seg, name=f"{name}_O{base}"), Signal(seg, name=f"{name}_CO{base}")
            if self.family == "ultrascale":
                inst = Instance("CARRY8", p_CARRY_TYPE="SINGLE_CY8", i_CI=carry, i_CI_TOP=Const(0, 1),
                                i_DI=Cat(*dd), i_S=Cat(*ss), o_O=o, o_CO=co)
            else:
                inst = Instance("CARRY4", i_CI=carry, i_CYINIT=Const(0, 1),
                                i_DI=Cat(*dd), i_S=Cat(*ss), o_O=o, o_CO=co)
            self.m.submodules[f"{name}_carry{base}"] = inst
            count = seg - pad
            outs += [o[j] for j in range(count)]
            couts += [co[j] for j in range(count)]
            carry = co[seg - 1]
        return outs, couts

    def xnor_leaf(self, pairs):
        name = self._name("leaf")
        flat = [v for pair in pairs for v in pair]
        n = len(pairs)
        if n == 1:
            o = Signal(1, name=name)
            self.m.d.comb += o.eq(self._lut(_xnor, flat, name + "_x"))
            return [(0, o[0])]
        o = Signal(2, name=name)

        def count(*v):
            return sum(_xnor(v[2 * j], v[2 * j + 1]) for j in range(n))
        if n == 2:
            o6, o5 = self._lut6_2(lambda *v: count(*v), lambda *v: count(*v) >> 1, flat, name)
            self.m.d.comb += o.eq(Cat(o6, o5))
        else:
            s = self._lut(lambda *v: count(*v), flat, name + "_s")
            c = self._lut(lambda *v: count(*v) >> 1, flat, name + "_c")
            self.m.d.comb += o.eq(Cat(s, c))
        return [(0, o[0]), (1, o[1])]

    def counter(self, bits):
        name = self._name("gpc")
        k = len(bits)
        o = Signal(range(k + 1), name=name)
        if k <= 3:
            # Full / half adder in one dual-output LUT.
            o6, o5 = self._lut6_2(lambda *v: sum(v), lambda *v: sum(v) >> 1, bits, name)
            self.m.d.comb += o.eq(Cat(o6, o5))
            return [(j, o[j]) for j in range(len(o))]
        # (k;3) counter, 4 <= k <= 7, on two carry positions:
        #   position 0 adds P0 = parity(b0..b4), Q0 = b5 (DI0) and b6 (CI);
        #   position 1 adds P1 = [s5 >= 2] (DI1) and Q1 = [s5 >= 4], s5 = b0 + .. + b4.
        low = list(bits[:5])
        n5 = len(low)
        zero = Const(0, 1)
        q0 = bits[5] if k > 5 else zero
        ci = bits[6] if k > 6 else zero
        if k > 5:
            s0 = self._lut(lambda *v: (sum(v[:n5]) ^ v[n5]) & 1, low + [q0], name + "_p")
        else:
            s0 = self._lut(lambda *v: sum(v) & 1, low, name + "_p")
        s1, d1 = self._lut6_2(lambda *v: (sum(v[:n5]) >> 1) == 1,
                              lambda *v: sum(v[:n5]) >= 2, low, name + "_t")
        outs, couts = self._carry([s0, s1], [q0, d1], ci, name)
        self.m.d.comb += o.eq(Cat(outs[0], outs[1], couts[1]))
        return [(j, o[j]) for j in range(len(o))]

    def adder(self, p, q, ci, width):
        name = self._name("add")
        o = Signal(width, name=name)
        s, di = [], []
        for j in range(width - 1):
            pj = p[j] if j < len(p) else None
            qj = q[j] if j < len(q) else None
            if pj is None and qj is None:
                s.append(Const(0, 1))
                di.append(Const(0, 1))
            elif qj is None:
                s.append(self._lut(lambda x: x, [pj], f"{name}_r{j}"))
                di.append(Const(0, 1))
            else:
                s.append(self._lut(lambda x, y: x ^ y, [pj, qj], f"{name}_x{j}"))
                di.append(pj)
        outs, couts = self._carry(s, di, ci, name)
        self.m.d.comb += o.eq(Cat(*outs, couts[width - 2]))
        return o


def _compress(builder: _Builder, columns: list[list[Value]], max_value: int) -> Value:
    """Reduce weighted bit columns to one number (at most ``max_value``)."""
    width = max(1, ceil_log2(max_value + 1))
    while True:
        heights = [len(c) for c in columns]
        if all(h <= (3 if j == 0 else 2) for j, h in enumerate(heights)):
            break
        nxt = [[] for _ in range(len(columns) + 3)]
        for j, col in enumerate(columns):
            col = list(col)
            limit = 3 if j == 0 else 2
            while len(col) > limit:
                excess = len(col) - limit
                if excess >= 3 or len(col) >= 4 and excess > 1:
                    take = min(7, len(col))
                else:
                    take = min(3, len(col))
                group, col = col[:take], col[take:]
                for off, bit in builder.counter(group):
                    nxt[j + off].append(bit)
            nxt[j] += col
        while nxt and not nxt[-1]:
            nxt.pop()
        columns = nxt
    # Final two-operand adder; the lowest column's third bit is the carry-in.
    if len(columns) == 1 and len(columns[0]) == 1:
        return columns[0][0]
    ci = columns[0][2] if len(columns[0]) > 2 else Const(0, 1)
    rows = [[], []]
    for j, col in enumerate(columns):
        for r in range(2):
            rows[r].append(col[r] if r < len(col) else None)
    # Keep rows dense: a missing row-0 bit takes the row-1 bit; other gaps are zeros.
    for j in range(len(columns)):
        if rows[0][j] is None and rows[1][j] is not None:
            rows[0][j], rows[1][j] = rows[1][j], None
    result = builder.adder(rows[0], rows[1], ci, len(columns) + 1)
    return result[:width]


def _leaves(builder: _Builder, pairs) -> list[list[Value]]:
    columns = [[], []]
    n = len(pairs)
    groups = [pairs[i:i + 3] for i in range(0, n - n % 3, 3)]
    rest = pairs[n - n % 3:]
    if rest:
        groups.append(rest)
    for group in groups:
        for off, bit in builder.xnor_leaf(group):
            columns[off].append(bit)
    return [c for c in columns if c] if columns[1] else [columns[0]]


def _make_builder(m, primitives, family, prefix):
    if primitives == "xilinx":
        return _XilinxBuilder(m, prefix, family)
    return _GenericBuilder(m, prefix)


def popcount_tree(m: Module, bits, *, primitives: str = "generic", family: str = "ultrascale",
                  prefix: str = "pc_") -> Value:
    """Number of ones of ``bits`` (a Value or a list of 1-bit Values), built into ``m``.

    Combinational; returns a Value of ``ceil_log2(n + 1)`` bits.
    """
    bits = [bits[i] for i in range(len(bits))] if isinstance(bits, Value) else list(bits)
    if not bits:
        return Const(0, 1)
    builder = _make_builder(m, primitives, family, prefix)
    return _compress(builder, [bits], len(bits))


def xnor_popcount_tree(m: Module, a: Value, b: Value, *, primitives: str = "generic",
                       family: str = "ultrascale", prefix: str = "pc_") -> Value:
    """Number of lanes ``i`` with ``a[i] == b[i]``, built into ``m`` (combinational).

    The XNOR is folded into the first level of counters. Returns ``ceil_log2(n + 1)`` bits.
    """
    if len(a) != len(b):
        raise ValueError(f"XNOR operands must have equal widths, not {len(a)} and {len(b)}")
    builder = _make_builder(m, primitives, family, prefix)
    pairs = [(a[i], b[i]) for i in range(len(a))]
    return _compress(builder, _leaves(builder, pairs), len(a))


def _tree_luts(width: int, xnor: bool) -> int:
    """LUT sites the primitive tree uses (for documentation and the benchmark)."""
    m = Module()
    a = Signal(width)
    if xnor:
        b = _XilinxBuilder(m, "pc_", "ultrascale")
        pairs = [(a[i], a[i]) for i in range(width)]
        _compress(b, _leaves(b, pairs), width)
    else:
        b = _XilinxBuilder(m, "pc_", "ultrascale")
        _compress(b, [[a[i] for i in range(width)]], width)
    return b.luts


class Popcount(wiring.Component):
    """Count of ones of an n-bit vector, optionally of the XNOR of two vectors.

    ``o = popcount(~(a ^ b))`` in XNOR mode, else ``o = popcount(a)``.

    Parameters
    ----------
    width : int
        Number of lanes, at least 1.
    xnor : bool
        Count lanes where ``a`` and ``b`` agree (binary XNOR-popcount) instead of ones of ``a``.
    registered : bool
        Register the output (latency 1) or not (latency 0, combinational).
    primitives : "auto" | "generic" | "xilinx"
        ``"xilinx"`` instantiates LUT/CARRY primitives (needs a Xilinx flow; simulate with
        Yosys's ``cells_sim.v``); ``"generic"`` writes the same tree as plain logic;
        ``"auto"`` uses primitives when elaborated for an Amaranth ``XilinxPlatform`` of the
        7-series or UltraScale(+) families and generic logic otherwise (e.g. simulation).
    family : "ultrascale" | "7series" | None
        Carry primitive for ``primitives="xilinx"``: ``CARRY8`` (UltraScale, UltraScale+) or
        ``CARRY4`` (7-series). ``None`` takes it from the platform, or ``"ultrascale"``.

    Attributes
    ----------
    latency : int
        Cycles from ``a``/``b`` to ``o``: 1 if ``registered`` else 0. The register has no
        enable; a consumer delays its valid by ``latency`` cycles to match.

    Throughput: one vector per cycle. Cost with primitives: about 1.1 LUT per XNOR lane
    at 64 lanes (``python -m bench.popcount``).
    """

    def __init__(self, width: int, *, xnor: bool = False, registered: bool = True,
                 primitives: str = "auto", family: str | None = None):
        if not isinstance(width, int) or isinstance(width, bool):
            raise TypeError(f"Popcount width must be an int, not {width!r}")
        if width < 1:
            raise ValueError(f"Popcount width must be at least 1, not {width}")
        if not isinstance(xnor, bool):
            raise TypeError(f"xnor must be a bool, not {xnor!r}")
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, not {registered!r}")
        if primitives not in PRIMITIVES:
            raise ValueError(f"primitives must be one of {', '.join(PRIMITIVES)}, not {primitives!r}")
        if family is not None and family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
        self._width = width
        self._xnor = xnor
        self._registered = registered
        self._primitives = primitives
        self._family = family
        members = {"a": In(width)}
        if xnor:
            members["b"] = In(width)
        members["o"] = Out(range(width + 1))
        super().__init__(members)

    @property
    def width(self) -> int:
        return self._width

    @property
    def xnor(self) -> bool:
        return self._xnor

    @property
    def latency(self) -> int:
        return 1 if self._registered else 0

    def _choose(self, platform) -> tuple[str, str]:
        """(primitives, family) actually used for ``platform``."""
        platform_family = _PLATFORM_FAMILIES.get(getattr(platform, "family", None))
        family = self._family or platform_family or "ultrascale"
        if self._primitives == "auto":
            return ("xilinx" if platform_family is not None else "generic"), family
        return self._primitives, family

    def elaborate(self, platform):
        m = Module()
        primitives, family = self._choose(platform)
        if self._xnor:
            count = xnor_popcount_tree(m, self.a, self.b, primitives=primitives, family=family)
        else:
            count = popcount_tree(m, self.a, primitives=primitives, family=family)
        if self._registered:
            m.d.sync += self.o.eq(count)
        else:
            m.d.comb += self.o.eq(count)
        return m
