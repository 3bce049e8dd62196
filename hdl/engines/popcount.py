"""Population count (optionally of an XNOR of two vectors) as a LUT-lean compressor tree.

The count of ones of an ``n``-bit vector is built as a compressor tree in three steps:

1. **Leaves** (XNOR mode). A dual-output LUT takes two lanes (``a_i, b_i, a_j, b_j``) and
   a running weight-1 bit ``r`` and gives the two bits of ``xnor_i + xnor_j + r`` (at
   most 3), so the XNOR costs nothing extra. ``THREAD`` such LUTs are chained through
   ``r``: one LUT per two lanes, each emitting one weight-2 bit. In plain mode the input
   bits are the leaves (column 0).
2. **Column compression** (Wallace-style stages). Bits of equal weight ("columns") are
   reduced by generalized parallel counters until every column holds at most three bits:
   a (k;3) counter (4 <= k <= 7) sums k bits of one column into
   three bits (weights 1, 2, 4) with two LUTs on two carry-chain positions (position 0
   adds parity(b0..b4), b5 and b6 as carry-in; position 1 adds [s >= 2] and [s >= 4] of
   s = b0 + .. + b4); a full adder (3;2) is one dual-output LUT.
3. **Final adder.** A ternary adder on the carry chain: with ``X[j]`` the XOR and
   ``M[j]`` the carry (majority) of column ``j``, position ``j`` adds ``X[j]`` and
   ``M[j-1]``, so its LUT reads the bits of columns ``j`` and ``j-1`` (at most six) and
   no LUT feeds another: one LUT level in front of the carry chain (a second LUT gives
   ``X[j]`` to the chain's DI input where the six inputs leave no second output);
   column 0's third bit is the carry-in.

With ``primitives="xilinx"`` every node is a Xilinx primitive (``LUT1``..``LUT6``,
``LUT6_2`` with ``INIT`` computed here, ``CARRY8`` on UltraScale(+), ``CARRY4`` on
7-series) so that synthesis keeps the structure. With ``"generic"`` the same tree is
written in plain Amaranth arithmetic: the simulation twin, whose every node has the same
name and value as in the primitive version (``tests/hdl/engines/test_popcount.py`` proves the
primitive netlist, run through Yosys's own Xilinx simulation models, equal to the twin
node by node, and equal to a behavioural popcount for small widths). ``"auto"`` picks
the primitives when elaborated for a Xilinx platform of a supported family and generic
logic otherwise (Amaranth simulation, other vendors). Note that ``verilog.convert(top)``
elaborates without a platform, hence generic logic under ``"auto"``; to get the
primitives into a Verilog netlist, pass the board: ``verilog.convert(top,
platform=boards.get("zcu104")())`` (UltraScale+: ``CARRY8``; a Zynq-7000 board: ``CARRY4``).

The final adder puts one LUT level in front of the carry chain, rather than handing each
column's carry from LUT to LUT (a little smaller, but its depth grows with the width).
LUT per lane and logic levels, with primitives, as the generic twin and against a naive
adder tree: ``python -m bench.popcount`` (``docs/benchmarks.md``); the engines' depth
budget is checked by ``tests/hdl/engines/test_logic_levels.py``.
"""

from __future__ import annotations

import abc
import functools

from amaranth.hdl import Cat, Const, Fragment, Instance, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.engines.described import Described

__all__ = ["Popcount", "PopcountSpec", "popcount_tree", "xnor_popcount_tree", "pair_popcount_tree", "lut_init",
           "compress_columns", "tree_stages", "leaf_levels",
           "PRIMITIVES", "FAMILIES", "OPS"]

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


#: Lane functions of two-operand popcounts: what each builder computes per lane.
OPS = ("xnor", "and")
_LANE = {"xnor": _xnor, "and": lambda a, b: a & b}


# -- the tree, independent of how its nodes are built ----------------------------------

#: LUTs per leaf thread: a thread of ``2 * THREAD`` lanes is a chain of ``THREAD``
#: dual-output LUTs, each adding two XNOR lanes to the running weight-1 bit. Longer
#: threads save a few LUTs but add logic levels.
THREAD = 2



def choose_primitives(primitives: str, family: str | None, platform) -> tuple[str, str]:
    """``(primitives, family)`` a LUT-level builder uses when elaborated for ``platform``:
    ``"auto"`` means Xilinx primitives on a Xilinx platform and generic logic elsewhere;
    the carry family comes from ``family``, else the platform, else UltraScale."""
    platform_family = _PLATFORM_FAMILIES.get(getattr(platform, "family", None))
    family = family or platform_family or "ultrascale"
    if primitives == "auto":
        return ("xilinx" if platform_family is not None else "generic"), family
    return primitives, family

class _Builder(abc.ABC):
    """Builds the nodes of the tree; subclasses decide generic logic or primitives.

    Every node's outputs are fresh named Signals, named identically by both builders so
    that a Yosys ``equiv_make`` pairs them up.
    """

    def __init__(self, m: Module, prefix: str, op: str = "xnor"):
        self.m = m
        self.prefix = prefix
        self.op = op
        self.count = 0
        self.luts = 0          # LUT sites used (LUT1..LUT6 or LUT6_2 each count one)

    def _name(self, kind: str) -> str:
        self.count += 1
        return f"{self.prefix}{kind}{self.count}"

    @abc.abstractmethod
    def lane_node(self, pairs, r):
        """Count of lanes in ``pairs`` (one or two) whose ``op`` is 1, plus the bit ``r``.

        Returns [(0, weight-1 bit), (1, weight-2 bit)], or one bit for a lone lane."""

    @abc.abstractmethod
    def counter(self, bits):
        """Sum of 3..7 bits of one column: [(offset, bit), ...]."""

    @abc.abstractmethod
    def adder(self, columns, width):
        """Sum of columns of at most 3 bits as one ``width``-bit Value."""


class _GenericBuilder(_Builder):
    """The twin: plain Amaranth arithmetic, same structure and node names."""

    def lane_node(self, pairs, r):
        name = self._name("leaf")
        lane = (lambda a, b: ~(a ^ b)) if self.op == "xnor" else (lambda a, b: a & b)
        terms = [lane(a, b) for a, b in pairs] + ([r] if r is not None else [])
        self.luts += 1
        o = Signal(range(len(terms) + 1), name=name)
        self.m.d.comb += o.eq(sum(terms) if len(terms) > 1 else terms[0])
        return [(j, o[j]) for j in range(len(o))]

    def counter(self, bits):
        name = self._name("gpc")
        o = Signal(range(len(bits) + 1), name=name)
        self.m.d.comb += o.eq(sum(bits))
        self.luts += 1 if len(bits) <= 3 else 2
        return [(j, o[j]) for j in range(len(o))]

    def adder(self, columns, width):
        name = self._name("add")
        o = Signal(width, name=name)
        # Three rows (one bit of each column per row), two additions.
        rows = [Cat(*(col[r] if r < len(col) else Const(0, 1) for col in columns))
                for r in range(max(len(col) for col in columns))]
        self.m.d.comb += o.eq(sum(rows[1:], rows[0]))
        self.luts += len(columns) + 1
        return o


class _XilinxBuilder(_Builder):
    """Xilinx primitives: LUTs with computed INIT, CARRY8 (UltraScale) or CARRY4 (7-series)."""

    def __init__(self, m, prefix, family, op="xnor"):
        super().__init__(m, prefix, op)
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
        n = len(inputs)
        lo = lut_init(f5, n)
        hi = lut_init(f6, n)
        # Unused inputs are tied low: replicate the table so the tie level does not matter.
        for j in range(n, 5):
            lo |= lo << (1 << j)
            hi |= hi << (1 << j)
        inputs = list(inputs) + [Const(0, 1)] * (5 - n)
        o6, o5 = Signal(name=name + "_o6"), Signal(name=name + "_o5")
        ports = {f"i_I{j}": v for j, v in enumerate(inputs)}
        self.m.submodules[name + "_lut"] = Instance(
            "LUT6_2", p_INIT=Const(hi << 32 | lo, 64), i_I5=Const(1, 1), o_O6=o6, o_O5=o5, **ports)
        self.luts += 1
        return o6, o5

    def _lut6_2_i5(self, f6, inputs, i5, name):
        """A LUT6_2 using all six inputs: O6 = f6(I0..I5), O5 = f6(I0..I4, 0) (the lower
        half of the table, by construction of the primitive)."""
        assert len(inputs) == 5
        init = lut_init(f6, 6)
        o6, o5 = Signal(name=name + "_o6"), Signal(name=name + "_o5")
        ports = {f"i_I{j}": v for j, v in enumerate(inputs)}
        self.m.submodules[name + "_lut"] = Instance(
            "LUT6_2", p_INIT=Const(init, 64), i_I5=i5, o_O6=o6, o_O5=o5, **ports)
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
                first = base == 0      # a chain's fabric carry-in enters on CYINIT
                inst = Instance("CARRY4", i_CI=Const(0, 1) if first else carry,
                                i_CYINIT=carry if first else Const(0, 1),
                                i_DI=Cat(*dd), i_S=Cat(*ss), o_O=o, o_CO=co)
            self.m.submodules[f"{name}_carry{base}"] = inst
            count = seg - pad
            outs += [o[j] for j in range(count)]
            couts += [co[j] for j in range(count)]
            carry = co[seg - 1]
        return outs, couts

    def lane_node(self, pairs, r):
        name = self._name("leaf")
        lane = _LANE[self.op]
        flat = [v for pair in pairs for v in pair] + ([r] if r is not None else [])
        n = len(pairs)

        def count(*v):
            return sum(lane(v[2 * j], v[2 * j + 1]) for j in range(n)) + (v[2 * n] if r is not None else 0)
        if n == 1 and r is None:
            o = Signal(1, name=name)
            self.m.d.comb += o.eq(self._lut(count, flat, name + "_x"))
            return [(0, o[0])]
        o = Signal(2, name=name)
        o6, o5 = self._lut6_2(lambda *v: count(*v), lambda *v: count(*v) >> 1, flat, name)
        self.m.d.comb += o.eq(Cat(o6, o5))
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
        #   position 0 adds P0 = parity(b0..b4) (DI0, the LUT's O5), Q0 = b5 (its I5) and
        #   b6 (carry-in); position 1 adds P1 = [s5 >= 2] (DI1) and Q1 = [s5 >= 4],
        #   s5 = b0 + .. + b4. Both DI come from the LUTs' O5, so the slice's bypass input
        #   stays free for the carry-in.
        low = list(bits[:5])
        n5 = len(low)
        zero = Const(0, 1)
        ci = bits[6] if k > 6 else zero
        if k > 5:
            s0, d0 = self._lut6_2_i5(lambda *v: (sum(v[:5]) ^ v[5]) & 1, low, bits[5], name + "_p")
        else:
            s0, d0 = self._lut6_2(lambda *v: sum(v) & 1, lambda *v: sum(v) & 1, low, name + "_p")
        s1, d1 = self._lut6_2(lambda *v: (sum(v[:n5]) >> 1) == 1,
                              lambda *v: sum(v[:n5]) >= 2, low, name + "_t")
        outs, couts = self._carry([s0, s1], [d0, d1], ci, name)
        self.m.d.comb += o.eq(Cat(outs[0], outs[1], couts[1]))
        return [(j, o[j]) for j in range(len(o))]

    def adder(self, columns, width):
        # Ternary adder on the carry chain, without LUT-to-LUT chaining. With X[j] the XOR
        # and M[j] the carry (AND / majority) of column j's bits, the sum is
        # sum_j 2**j * (X[j] + M[j-1]): chain position j adds X[j] and M[j-1], so its
        # LUT (S = X[j] ^ M[j-1]) reads the bits of columns j and j-1 (at most six) and
        # no LUT waits for another: one LUT level in front of the carry chain. DI (either
        # addend) is the column's lone bit when it has one, 0 when an addend is 0, else
        # X[j] from the same LUT's O5 (at most five inputs) or from a LUT of its own.
        # Column 0 adds its first two bits on position 0 and its third as the carry-in.
        name = self._name("add")
        o = Signal(width, name=name)
        zero = Const(0, 1)
        columns = [list(c) for c in columns]
        assert len(columns[0]) <= 3 and all(len(c) <= 3 for c in columns)
        ci = columns[0].pop() if len(columns[0]) == 3 else zero

        def carries(j):          # column j's bits whose carry M[j] enters position j + 1
            return columns[j] if 1 <= j < len(columns) and len(columns[j]) >= 2 else []

        def carry_of(bits):
            return (bits[0] & bits[1]) if len(bits) == 2 else int(sum(bits) >= 2)

        s, di = [], []
        j = 0
        while j < len(columns) or carries(j - 1):
            cur = columns[j] if j < len(columns) else []
            prev = carries(j - 1)
            lname = f"{name}_c{j}"
            n = len(cur)
            inputs = cur + prev

            def fs(*v, n=n, k=len(prev)):
                return (sum(v[:n]) + (carry_of(v[n:]) if k else 0)) & 1
            if j == 0 and n == 2:                    # position 0: b0 + b1 (+ ci)
                s6, d = self._lut6_2(lambda *v: (v[0] + v[1]) & 1, lambda *v: v[0], cur, lname)
                s.append(s6)
                di.append(d)
            elif not inputs:
                s.append(zero)
                di.append(zero)
            elif n <= 1 or not prev:
                s.append(self._lut(fs, inputs, lname))
                di.append(cur[0] if n == 1 else zero)
            elif len(inputs) <= 5:
                s6, d = self._lut6_2(fs, lambda *v, n=n: sum(v[:n]) & 1, inputs, lname)
                s.append(s6)
                di.append(d)
            else:
                s.append(self._lut(fs, inputs, lname))
                di.append(self._lut(lambda *v: sum(v) & 1, cur, lname + "_x"))
            j += 1
        outs, couts = self._carry(s, di, ci, name)
        bits_out = outs + [couts[-1]]
        self.m.d.comb += o.eq(Cat(*bits_out[:width]))
        return o


def _counter_stage(builder: _Builder, columns, target: int):
    """One stage of counters bringing every column towards ``target`` bits. Outputs of
    this stage's counters count against the column they land in."""
    nxt = [[] for _ in range(len(columns) + 3)]
    for j, col in enumerate(columns):
        col = list(col)
        limit = target
        while len(col) >= 3 and len(col) + len(nxt[j]) > limit:
            excess = len(col) + len(nxt[j]) - limit
            if excess >= 3 and len(col) >= 4:
                take = min(7, len(col), excess + 1)
            else:
                take = 3
            group, col = col[:take], col[take:]
            for off, bit in builder.counter(group):
                nxt[j + off].append(bit)
        nxt[j] += col
    while nxt and not nxt[-1]:
        nxt.pop()
    return nxt


def compress_columns(builder: _Builder, columns, *, levels: int = 0, max_levels: int | None = None,
                     register=None):
    """Counter stages until every column holds at most three bits.

    ``levels``: LUT levels the bits already went through since the last register. With
    ``max_levels``, ``register(columns)`` (which returns the registered columns) is
    called whenever the next stage would exceed it. Returns ``(columns, levels)``.
    """
    # Wallace-style: every stage reduces as far as it can (fewest stages, i.e. fewest
    # logic levels; a Dadda-style schedule measured no fewer LUTs here).
    while any(len(c) > 3 for c in columns):
        if max_levels is not None and levels + 1 > max_levels:
            columns, levels = register(columns), 0
        columns = _counter_stage(builder, columns, 3)
        levels += 1
    return columns, levels


def _compress(builder: _Builder, columns: list[list[Value]], max_value: int, *, levels: int = 0,
              max_levels: int | None = None, register=None) -> Value:
    """Reduce weighted bit columns (index = weight exponent) to their sum (<= ``max_value``),
    registering as :func:`compress_columns` does (and before the final adder)."""
    width = max(1, ceil_log2(max_value + 1))
    columns, levels = compress_columns(builder, columns, levels=levels, max_levels=max_levels,
                                       register=register)
    if len(columns) == 1 and len(columns[0]) == 1:
        return columns[0][0]
    if max_levels is not None and levels + 1 > max_levels:
        columns = register(columns)
    return builder.adder(columns, width)


def _leaves(builder: _Builder, pairs, thread: int = THREAD) -> list[list[Value]]:
    """Lanes (XNOR or AND of a pair of bits) into weighted columns: threads of dual-output LUTs, each LUT adding two
    lanes (four input bits) to the thread's running weight-1 bit."""
    columns = [[], []]
    per_thread = 2 * thread
    for t in range(0, len(pairs), per_thread):
        lanes = pairs[t:t + per_thread]
        r = None
        for i in range(0, len(lanes), 2):
            outs = builder.lane_node(lanes[i:i + 2], r)
            r = outs[0][1]
            for off, bit in outs[1:]:
                columns[off].append(bit)
        columns[0].append(r)
    return columns if columns[1] else [columns[0]]


def _make_builder(m, primitives, family, prefix, op="xnor"):
    if primitives not in ("generic", "xilinx"):
        raise ValueError(f"primitives must be generic or xilinx here, not {primitives!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if primitives == "xilinx":
        return _XilinxBuilder(m, prefix, family, op)
    return _GenericBuilder(m, prefix, op)


def popcount_tree(m: Module, bits, *, primitives: str = "generic", family: str = "ultrascale",
                  prefix: str = "pc_", max_levels: int | None = None, register=None) -> Value:
    """Number of ones of ``bits`` (a Value or a list of 1-bit Values), built into ``m``.

    Combinational, unless ``max_levels`` is given: then ``register(columns)`` registers the
    columns wherever the next LUT level would exceed it (see :func:`compress_columns`).
    Returns a Value of ``ceil_log2(n + 1)`` bits.
    """
    bits = [bits[i] for i in range(len(bits))] if isinstance(bits, Value) else list(bits)
    if not bits:
        return Const(0, 1)
    builder = _make_builder(m, primitives, family, prefix)
    return _compress(builder, [bits], len(bits), max_levels=max_levels, register=register)


def leaf_levels(lanes: int, thread: int = THREAD) -> int:
    """LUT levels of the leaves of a two-operand tree: the longest thread's chain."""
    return min(thread, -(-lanes // 2))


def pair_popcount_tree(m: Module, a: Value, b: Value, *, op: str = "xnor",
                       primitives: str = "generic", family: str = "ultrascale",
                       prefix: str = "pc_", max_levels: int | None = None,
                       register=None) -> Value:
    """Number of lanes ``i`` with ``op(a[i], b[i]) = 1``, built into ``m``.

    ``op`` is ``"xnor"`` (lanes that agree) or ``"and"`` (ones of ``a`` under the mask
    ``b``); it is folded into the first level of the tree at no extra LUT. Combinational
    unless ``max_levels`` is given (as :func:`popcount_tree`). Returns ``ceil_log2(n + 1)``
    bits.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, not {op!r}")
    if len(a) != len(b):
        raise ValueError(f"operands must have equal widths, not {len(a)} and {len(b)}")
    if len(a) == 0:
        return Const(0, 1)
    builder = _make_builder(m, primitives, family, prefix, op)
    pairs = [(a[i], b[i]) for i in range(len(a))]
    return _compress(builder, _leaves(builder, pairs), len(a), levels=leaf_levels(len(a)),
                     max_levels=max_levels, register=register)


def xnor_popcount_tree(m: Module, a: Value, b: Value, **kwargs) -> Value:
    """Number of lanes ``i`` with ``a[i] == b[i]``: ``pair_popcount_tree(op="xnor")``."""
    return pair_popcount_tree(m, a, b, op="xnor", **kwargs)


def _tree_luts(width: int, xnor: bool, thread: int = THREAD) -> int:
    """LUT sites the primitive tree uses (for exploring the structure)."""
    m = Module()
    a = Signal(width)
    b = _XilinxBuilder(m, "pc_", "ultrascale")
    if xnor:
        _compress(b, _leaves(b, [(a[i], a[i]) for i in range(width)], thread), width)
    else:
        _compress(b, [[a[i] for i in range(width)]], width)
    return b.luts


class PopcountSpec:
    """The popcount's description: checked parameters (those of :class:`Popcount`),
    ports and latency."""

    def __init__(self, width: int, *, xnor: bool = False, mask: bool = False,
                 registered: bool = True, primitives: str = "auto", family: str | None = None,
                 max_levels: int | None = None):
        if not isinstance(width, int) or isinstance(width, bool):
            raise TypeError(f"Popcount width must be an int, not {width!r}")
        if width < 1:
            raise ValueError(f"Popcount width must be at least 1, not {width}")
        if not isinstance(xnor, bool):
            raise TypeError(f"xnor must be a bool, not {xnor!r}")
        if not isinstance(mask, bool):
            raise TypeError(f"mask must be a bool, not {mask!r}")
        if xnor and mask:
            raise ValueError("xnor and mask exclude each other: choose one lane function")
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, not {registered!r}")
        if primitives not in PRIMITIVES:
            raise ValueError(f"primitives must be one of {', '.join(PRIMITIVES)}, not {primitives!r}")
        if family is not None and family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
        if max_levels is not None:
            if not isinstance(max_levels, int) or isinstance(max_levels, bool):
                raise TypeError(f"max_levels must be an int or None, not {max_levels!r}")
            if max_levels < 3:
                raise ValueError(f"max_levels must be at least 3 (leaves and one counter stage), "
                                 f"not {max_levels}")
        self.width, self.xnor, self.mask = width, xnor, mask
        self.registered, self.primitives, self.family = registered, primitives, family
        self.max_levels = max_levels

    @property
    def stages(self) -> int:
        """Registers inside the tree (0 without ``max_levels``)."""
        if self.max_levels is None:
            return 0
        return tree_stages(self.width, pair=self.xnor or self.mask, max_levels=self.max_levels)

    @property
    def latency(self) -> int:
        """Cycles from ``a``/``b`` to ``o``: the tree's ``stages``, plus 1 if ``registered``."""
        return self.stages + (1 if self.registered else 0)

    @property
    def signature(self) -> wiring.Signature:
        members = {"a": In(self.width)}
        if self.xnor or self.mask:
            members["b"] = In(self.width)
        if self.max_levels is not None:
            members["en"] = In(1, init=1)
        members["o"] = Out(range(self.width + 1))
        return wiring.Signature(members)


class Popcount(Described):
    """Count of ones of an n-bit vector, optionally of the XNOR or AND of two vectors.

    ``o = popcount(~(a ^ b))`` in XNOR mode, ``o = popcount(a & b)`` in mask mode, else
    ``o = popcount(a)``.

    Built from a :class:`PopcountSpec` (``Popcount(spec=...)``) or from its parameters.

    Parameters
    ----------
    width : int
        Number of lanes, at least 1.
    xnor : bool
        Count lanes where ``a`` and ``b`` agree (binary XNOR-popcount) instead of ones of ``a``.
    mask : bool
        Count ones of ``a & b`` (``b`` masks ``a``); the AND costs no LUT. Not with ``xnor``.
    registered : bool
        Register the output (latency 1) or not (latency 0, combinational).
    max_levels : int or None
        Register the tree's columns wherever a path would exceed this many LUT levels
        (counted from ``a``/``b``); the registers load on ``en``. ``None``: no registers.
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
        Cycles from ``a``/``b`` to ``o``: ``stages`` (the tree's registers) plus 1 if
        ``registered``. The output register has no enable; a consumer delays its valid by
        ``latency`` cycles to match.

    Throughput: one vector per cycle. Cost: ``python -m bench.popcount``.
    """

    Spec = PopcountSpec

    def _choose(self, platform) -> tuple[str, str]:
        return choose_primitives(self.primitives, self.family, platform)

    def elaborate(self, platform):
        m = Module()
        primitives, family = self._choose(platform)
        count, _ = _build_tree(m, self.width, self.a, self.b if (self.xnor or self.mask) else None,
                            op="xnor" if self.xnor else "and", primitives=primitives,
                            family=family, max_levels=self.max_levels,
                            en=self.en if self.max_levels is not None else None)
        if self.registered:
            m.d.sync += self.o.eq(count)
        else:
            m.d.comb += self.o.eq(count)
        return m


def _build_tree(m, width, a, b, *, op, primitives, family, max_levels=None, en=None):
    """The tree into ``m`` (of ``a``, or of ``op(a, b)``); its registers load on ``en``.
    Returns ``(count, registers built)``."""
    stages = [0]

    def register(columns):
        k, stages[0] = stages[0], stages[0] + 1
        regs = []
        for c, col in enumerate(columns):
            regs.append([])
            for i, bit in enumerate(col):
                r = Signal(name=f"pc_r{k}_c{c}_{i}")
                with m.If(en):
                    m.d.sync += r.eq(bit)
                regs[-1].append(r)
        return regs

    if b is None:
        count = popcount_tree(m, a, primitives=primitives, family=family,
                              max_levels=max_levels, register=register)
    else:
        count = pair_popcount_tree(m, a, b, op=op, primitives=primitives, family=family,
                                   max_levels=max_levels, register=register)
    return count, stages[0]


@functools.lru_cache(maxsize=256)
def tree_stages(width: int, *, pair: bool, max_levels: int) -> int:
    """Registers a tree of ``width`` lanes needs to keep every path within ``max_levels``
    LUT levels (read off the generic build: the structure is the same)."""
    m = Module()
    a, b = Signal(width), Signal(width) if pair else None
    stages = _build_tree(m, width, a, b, op="xnor", primitives="generic", family="ultrascale",
                         max_levels=max_levels, en=Const(1))[1]
    Fragment.get(m, None)           # a probe: elaborated, so not reported as unused
    return stages
