"""Shift-add datapath of power-of-two weights: a bit heap of XOR-signed, shifted
activations, compressed like the popcount's.

One :class:`ShiftAdd` computes, per cycle, the partial sum of ``lanes`` products
``v_j * x_j`` of power-of-two weights ``v_j = 0 or ±2**e_j`` (``0 <= e_j < window``, the
exponents relative to the layer's ``emin``) with activations ``x_j``, in the *heap
domain*:

* ``k``-bit unsigned activations: ``v * x = 2**e * (x ^ S) - [v < 0] * (2**k - 1) * 2**e``
  where ``S`` is the sign bit copied ``k`` times (``x ^ S`` is ``x`` for a positive
  weight, its one's complement ``2**k - 1 - x`` for a negative one);
* 1-bit bipolar activations (``x = 2a - 1``): ``v * x = 2**(e + 1) * (a ^ s) - 2**e``.

The second terms depend on the weights only, so a whole row's sum of them
(:func:`heap_offset`) is folded into the thresholds or the bias at build time, and the
hardware adds only the first terms: every lane contributes ``k`` bits (``x ^ S``) to the
columns ``e .. e + k - 1`` of a bit heap, no negation and no sign extension. A zero
weight contributes nothing.

Per lane, the bits are placed by a shifter of one LUT level per exponent-bit group, each
LUT reading at most six inputs (the cost that decides the design, so it is spelled out):

1. XOR and shift by ``e[0]``: bit ``c`` of ``y = (x ^ S) << e[0]`` reads ``s, e[0]``, two
   activation bits (and the zero flag when the window has no spare code, see below);
2. shift by ``2 * e[1] + 4 * e[2]`` (then by the next two exponent bits, and so on):
   each output bit selects one of at most four ``y`` bits by two exponent bits.

The first stage's two end bits are never both non-zero (``y[0]`` needs ``e[0] = 0``,
``y[k]`` needs ``e[0] = 1``), so they can be one LUT output that the second stage gates
with ``e[0]``; each configuration takes the cheaper of the two forms (for 4-bit
activations and a 7-exponent window: 2 + 5 LUTs per lane instead of 3 + 6).
Outputs with at most five inputs in common share one dual-output ``LUT6_2``. The weight
code (:func:`lane_codes`) stores ``e`` in ``shift_bits`` bits and the sign above the
magnitude field; a zero weight is the all-ones magnitude, an exponent the window does
not use (``window < 2**shift_bits``) or a flag bit of its own. In the first case the
zero code would place its bits above those of every real exponent, so only the last
stage's selection of the all-ones group needs a mask (``e[0]`` for ``shift_bits <= 3``),
the other stages none.

The heap's columns are then compressed by :mod:`hdl.engines.popcount`'s generalised
parallel counters (7 bits of a column into 3 with two LUTs on the carry chain) until
every column holds three bits, and summed by its ternary carry-chain adder. A register
goes in whenever the next LUT level would exceed :data:`MAX_LEVELS` levels since the
last one, and after the sum.

With ``primitives="xilinx"`` every LUT is a Xilinx primitive with computed ``INIT``; with
``"generic"`` the same nodes, named alike, are plain Amaranth logic (the simulation
twin, proved equal by ``tests/hdl/engines/test_shiftadd.py`` through Yosys's cell
models); ``"auto"`` follows the platform as :class:`hdl.engines.popcount.Popcount` does.
"""

from __future__ import annotations

import functools

import numpy as np
from amaranth.hdl import Cat, Const, Fragment, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from hdl.engines._checks import check_int
from hdl.engines.described import Described
from hdl.engines.popcount import (FAMILIES, PRIMITIVES, choose_primitives, compress_columns,
                                  _GenericBuilder, _XilinxBuilder)

__all__ = ["ShiftAdd", "ShiftAddSpec", "plan", "lane_codes", "heap_offset", "heap_max", "code_fields", "MAX_LEVELS"]

#: LUT levels allowed between two registers of the datapath (issue 7: 200 MHz on
#: UltraScale+), counted from the registered weight and activation words.
MAX_LEVELS = 6


def code_fields(window: int) -> tuple[int, int, bool]:
    """``(mag_bits, shift_bits, flag)`` of the weight code for exponents ``0 .. window - 1``:
    the magnitude field holds ``e`` in ``shift_bits`` bits, or all ones for a zero weight;
    ``flag`` says the all-ones exponent is a real one (``window == 2**shift_bits``), so
    the field has one more bit that marks zero weights alone."""
    shift_bits = ceil_log2(window)
    flag = window == 1 << shift_bits
    return shift_bits + flag, shift_bits, flag


def _exponents(internal: np.ndarray) -> np.ndarray:
    a = np.abs(internal)
    return np.where(a > 0, np.log2(np.maximum(a, 1)).round().astype(np.int64), 0)


def lane_codes(internal: np.ndarray, window: int) -> np.ndarray:
    """Stored code per weight (``1 + mag_bits`` bits) of internal weights ``0, ±2**e``."""
    mag_bits, _, _ = code_fields(window)
    internal = np.asarray(internal, np.int64)
    mag = np.where(internal != 0, _exponents(internal), (1 << mag_bits) - 1)
    return mag | np.where(internal < 0, 1 << mag_bits, 0)


def heap_max(internal: np.ndarray, in_bits: int) -> np.ndarray:
    """Largest heap-domain contribution of each weight: ``(2**k - 1) * |v|``, or ``2 * |v|``
    for bipolar activations; the smallest is 0."""
    u = 2 if in_bits == 1 else (1 << in_bits) - 1
    return u * np.abs(np.asarray(internal, np.int64))


def heap_offset(internal: np.ndarray, in_bits: int) -> np.ndarray:
    """Per row, heap-domain sum minus true sum ``internal @ x`` (the same for every ``x``)."""
    internal = np.asarray(internal, np.int64)
    if in_bits == 1:
        corr = np.abs(internal)
    else:
        corr = np.where(internal < 0, ((1 << in_bits) - 1) * -internal, 0)
    return corr.sum(axis=-1)


# -- the nodes -----------------------------------------------------------------------------

def _mux(c, a, b):
    """``a if c else b`` with bitwise operators only, so it evaluates on ints and Values."""
    return (c & a) | (~c & b)


class _Node:
    """One LUT function: ``keys`` name its inputs (``values`` maps them to Values), ``fn``
    takes a dict of bits (ints or Values) and returns the output bit."""

    def __init__(self, keys, fn, values=None):
        self.keys = list(dict.fromkeys(keys))
        self.fn = fn
        self.values = values or {}

    def call(self, keys, bits):
        return self.fn(dict(zip(keys, bits)))


class _Nodes:
    """Node creation shared by both builders: single LUTs and dual-output pairs."""

    def node(self, n: _Node, name: str):
        if len(n.keys) > 6:                          # wider than a LUT: leave it to synthesis
            o = Signal(name=name)
            self.m.d.comb += o.eq(n.fn({k: n.values[k] for k in n.keys}))
            self.luts += 2
            return o
        return self._single(n, name)

    def pair(self, a: _Node, b: _Node, name: str):
        keys = list(dict.fromkeys(a.keys + b.keys))
        return self._pair(a, b, keys, name)


class _GenericNodes(_Nodes, _GenericBuilder):
    def _single(self, n, name):
        o = Signal(name=name)
        self.m.d.comb += o.eq(n.fn({k: n.values[k] for k in n.keys}))
        self.luts += 1
        return o

    def _pair(self, a, b, keys, name):
        o6, o5 = Signal(name=name + "_o6"), Signal(name=name + "_o5")
        self.m.d.comb += [o6.eq(a.fn({k: a.values[k] for k in a.keys})),
                          o5.eq(b.fn({k: b.values[k] for k in b.keys}))]
        self.luts += 1
        return o6, o5


class _XilinxNodes(_Nodes, _XilinxBuilder):
    def _single(self, n, name):
        return self._lut(lambda *v: n.call(n.keys, v), [n.values[k] for k in n.keys], name)

    def _pair(self, a, b, keys, name):
        def fa(*v):
            return a.fn(dict(zip(keys, v)))

        def fb(*v):
            return b.fn(dict(zip(keys, v)))
        values = {**a.values, **b.values}
        return self._lut6_2(fa, fb, [values[k] for k in keys], name)


def _pair_up(nodes: list) -> list:
    """Greedy pairing of nodes whose inputs fit one LUT6_2 (at most five together)."""
    out, used = [], set()
    for i, a in enumerate(nodes):
        if i in used:
            continue
        used.add(i)
        best = None
        if len(a[1].keys) <= 5:
            for j in range(i + 1, len(nodes)):
                if j in used or len(nodes[j][1].keys) > 5:
                    continue
                n = len(set(a[1].keys) | set(nodes[j][1].keys))
                if n <= 5 and (best is None or n < best[0]):
                    best = (n, j)
        if best is None:
            out.append((a,))
        else:
            used.add(best[1])
            out.append((a, nodes[best[1]]))
    return out


# -- the datapath --------------------------------------------------------------------------

class ShiftAddSpec:
    """The shift-add datapath's description: checked parameters (those of
    :class:`ShiftAdd`), code fields, sum width and ports; ``latency`` and ``luts`` come
    from :func:`plan`."""

    def __init__(self, lanes: int, *, in_bits: int, window: int, primitives: str = "auto",
                 family: str | None = None):
        for name, value, lo, hi in (("lanes", lanes, 1, None), ("in_bits", in_bits, 1, 16),
                                    ("window", window, 1, 64)):
            check_int(name, value, lo, hi, numpy=True)
        if primitives not in PRIMITIVES:
            raise ValueError(f"primitives must be one of {', '.join(PRIMITIVES)}, not {primitives!r}")
        if family is not None and family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
        _set_params(self, int(lanes), int(in_bits), int(window))
        self.primitives, self.family = primitives, family

    @property
    def latency(self) -> int:
        return plan(self.lanes, self.in_bits, self.window)[0]

    @property
    def luts(self) -> int:
        return plan(self.lanes, self.in_bits, self.window)[1]

    @property
    def signature(self) -> wiring.Signature:
        return wiring.Signature({
            "w": In(self.lanes * self.code_bits),
            "x": In(data.ArrayLayout(unsigned(self.in_bits), self.lanes)),
            "en": In(1),
            "o": Out(self.sum_bits),
        })


class ShiftAdd(Described):
    """Registered heap-domain dot product of ``lanes`` power-of-two weights with ``lanes``
    activation codes (see the module docstring for the domain and the structure).

    Ports
    -----
    w : ``In(unsigned(lanes * code_bits))``
        Weight codes (:func:`lane_codes`), lane ``j`` at bits ``j * code_bits``.
    x : ``In(ArrayLayout(unsigned(in_bits), lanes))``
        Activation codes; for ``in_bits == 1`` bipolar (0 = -1, 1 = +1).
    en : ``In(1)``
        Every register of the datapath loads when ``en`` is high (the engine's advance).
    o : ``Out(unsigned(sum_bits))``
        ``sum_j heap_j``, ``latency`` enabled cycles after ``w`` and ``x``.

    Parameters
    ----------
    lanes : int
        Products per cycle (the engine's SIMD), at least 1.
    in_bits : int
        Activation code width, 1 (bipolar) .. 16.
    window : int
        Number of exponents, ``emax - emin + 1``, 1 .. 64.
    primitives : "auto" | "generic" | "xilinx"
        As for :class:`hdl.engines.popcount.Popcount`.
    family : "ultrascale" | "7series" | None
        Carry primitive for ``"xilinx"``; ``None`` takes it from the platform.

    Attributes
    ----------
    latency : int
        Register stages from ``w``/``x`` to ``o``, at least 1.
    code_bits : int
        Bits per weight code, ``1 + mag_bits``.
    """

    Spec = ShiftAddSpec

    # ----------------------------------------------------------------------------------

    def _groups(self) -> list[list[int]]:
        """Exponent bits per shifter stage: ``e[0]`` (with the sign and the zero flag),
        then two bits at a time (one first when their number is odd)."""
        sb = self.shift_bits
        groups = [[0]] if sb else []
        rest = list(range(1, sb))
        if len(rest) % 2:
            groups.append(rest[:1])
            rest = rest[1:]
        return groups + [rest[i:i + 2] for i in range(0, len(rest), 2)]

    def _specs(self, merge: bool) -> list[list]:
        """One lane's shifter as node specifications, stage by stage: lists of
        ``(position, _Node or None)``. Keys name the inputs: ``s`` (sign), ``z`` (zero
        flag), ``e<i>`` (exponent bits), ``x<i>`` (activation bits), ``y<i>`` (node ``i``
        of the previous stage), ``L`` (all exponent bits below the last stage set).

        With ``merge``, the first stage's two end bits, ``y[0]`` (non-zero only when
        ``e[0] = 0``) and ``y[k]`` (only when ``e[0] = 1``), are one LUT output that the
        next stage gates with ``e[0]``: one LUT less per lane, ``e[0]`` as one more input
        where that stage reads them (and where the zero mask needs it anyway)."""
        k, sb, flag = self.in_bits, self.shift_bits, self.flag
        groups = self._groups()
        merge = merge and len(groups) > 1              # a next stage must gate the merged bit
        top = self.window - 1 + k                    # columns 0 .. top - 1 are reachable

        # Stage 1: y = ~z & ((x ^ S) << e[0]); y[c] reads x[c] (e[0] = 0) and x[c - 1].
        stage = []
        for c in range(k + 1 if sb else k):
            if merge and c == k:
                continue                             # merged into node 0
            src0 = c if c < k else None              # x index when e[0] = 0
            src1 = c - 1 if sb and 1 <= c <= k else None
            if merge and c == 0:
                src1 = k - 1
            keys = ["s"] + (["z"] if flag else []) + (["e0"] if sb else []) + \
                [f"x{i}" for i in (src0, src1) if i is not None]

            def f1(v, src0=src0, src1=src1):
                d0 = (v["s"] ^ v[f"x{src0}"]) if src0 is not None else 0
                d1 = (v["s"] ^ v[f"x{src1}"]) if src1 is not None else 0
                out = _mux(v["e0"], d1, d0) if sb else d0
                return (~v["z"] & out) if flag else out
            stage.append((c, _Node(keys, f1)))
        specs = [stage]
        width = k + 1 if sb else k

        # The zero code's mask at the last stage (spare-code windows): all exponent bits
        # below the last group set; its bits sit at y[low .. low + k - 1] there.
        last_low = [i for g in groups[:-1] for i in g]
        low_shift = sum(1 << i for i in last_low)
        mask_key = f"e{last_low[0]}" if len(last_low) == 1 else "L"
        for gi, g in enumerate(groups[1:], start=1):
            final = gi == len(groups) - 1
            gated = merge and gi == 1                # this stage reads the merged end bits
            shifts = [sum(((a >> t) & 1) << i for t, i in enumerate(g)) for a in range(1 << len(g))]
            all_ones = (1 << len(g)) - 1
            stage = []
            for c in range(width + shifts[-1]):
                cands = {a: c - shifts[a] for a in range(len(shifts)) if 0 <= c - shifts[a] < width}
                if not cands:
                    stage.append((c, None))
                    continue
                masked = final and not flag and all_ones in cands and \
                    low_shift <= cands[all_ones] < low_shift + k
                keys = [f"e{i}" for i in g]
                for idx in sorted(set(cands.values())):
                    if gated and idx in (0, k):
                        keys += ["y0", "e0"]
                    else:
                        keys.append(f"y{idx}")
                if masked:
                    keys.append(mask_key)

                def fk(v, cands=cands, g=g, masked=masked, gated=gated):
                    def pick(a):
                        if a not in cands:
                            return 0
                        idx = cands[a]
                        if gated and idx == 0:
                            bit = ~v["e0"] & v["y0"]
                        elif gated and idx == k:
                            bit = v["e0"] & v["y0"]
                        else:
                            bit = v[f"y{idx}"]
                        return (~v[mask_key] & bit) if (masked and a == all_ones) else bit

                    def tree(t, base):               # select on the group bits, top first
                        if t < 0:
                            return pick(base)
                        return _mux(v[f"e{g[t]}"], tree(t - 1, base | (1 << t)), tree(t - 1, base))
                    return tree(len(g) - 1, 0)
                stage.append((c, _Node(keys, fk)))
            specs.append(stage)
            width += shifts[-1]

        # Backward: keep only what the reachable columns need.
        need = set(range(min(top, width)))
        for st in reversed(specs):
            keep, nxt = {}, set()
            for c, node in st:
                if c in need and node is not None:
                    keep[c] = node
                    nxt |= {int(key[1:]) for key in node.keys if key.startswith("y")}
            st[:] = [(c, keep.get(c)) for c, _ in st]
            need = nxt
        return specs

    @staticmethod
    def _cost(specs) -> int:
        luts = 0
        for st in specs:
            for group in _pair_up([(c, n) for c, n in st if n is not None]):
                luts += 2 if len(group) == 1 and len(group[0][1].keys) > 6 else 1
        return luts + any(n is not None and "L" in n.keys for _, n in specs[-1])

    def _lane_bits(self, b, j: int, code, x) -> tuple[list, int]:
        """Heap bits of lane ``j`` column by column (None where empty), and the LUT levels."""
        k, sb, p = self.in_bits, self.shift_bits, f"l{j}_"
        specs = min((self._specs(merge) for merge in (True, False)), key=self._cost)
        values = {"s": code[self.mag_bits], "z": code[sb] if self.flag else None}
        values |= {f"e{i}": code[i] for i in range(sb)}
        values |= {f"x{i}": x[i] for i in range(k)}
        if any(n is not None and "L" in n.keys for _, n in specs[-1]):
            low = [i for g in self._groups()[:-1] for i in g]
            zero = _Node([f"e{i}" for i in low], lambda v, low=low: _all(v[f"e{i}"] for i in low))
            zero.values = {f"e{i}": values[f"e{i}"] for i in low}
            values["L"] = b.node(zero, f"{p}zero")
        ys = []
        for si, st in enumerate(specs):
            built = []
            for c, node in st:
                if node is not None:
                    node.values = {key: (ys[int(key[1:])] if key.startswith("y") else values[key])
                                   for key in node.keys}
                    built.append((c, node))
            out = {}
            for group in _pair_up(built):
                if len(group) == 1:
                    (c, node), = group
                    out[c] = b.node(node, f"{p}s{si}c{c}")
                else:
                    (c0, n0), (c1, n1) = group
                    out[c0], out[c1] = b.pair(n0, n1, f"{p}s{si}c{c0}_{c1}")
            ys = [out.get(c) for c in range(len(st))]
        top = self.window - 1 + k
        return ys[:top], len(specs)       # the zero mask's LUT runs beside the first stages

    def _build(self, m, primitives, family, w, x, en):
        """The datapath into ``m``; returns (registered sum, register stages, LUTs)."""
        if primitives == "xilinx":
            b = _XilinxNodes(m, "sa_", family)
        else:
            b = _GenericNodes(m, "sa_")
        d = 1 if self.in_bits == 1 else 0
        n_regs = [0]

        def reg(value, name):
            r = Signal(value.shape(), name=name)
            with m.If(en):
                m.d.sync += r.eq(value)
            return r

        columns = [[] for _ in range(self.window + self.in_bits + d)]
        depth = 0
        for j in range(self.lanes):
            code = w[j * self.code_bits:(j + 1) * self.code_bits]
            bits, dj = self._lane_bits(b, j, code, x[j])
            depth = max(depth, dj)
            for c, bit in enumerate(bits):
                if bit is not None:
                    columns[c + d].append(bit)
        while columns and not columns[-1]:
            columns.pop()

        def register_columns(cols):
            level = n_regs[0]
            n_regs[0] += 1
            return [[reg(bit, f"sa_r{level}_c{c}_{i}") for i, bit in enumerate(col)]
                    for c, col in enumerate(cols)]

        columns, levels = compress_columns(b, columns, levels=depth, max_levels=MAX_LEVELS,
                                           register=register_columns)
        if not columns:
            total = Const(0, self.sum_bits)
        elif len(columns) == 1 and len(columns[0]) == 1:
            total = columns[0][0]
        else:
            if levels + 1 > MAX_LEVELS:
                columns = register_columns(columns)
            if all(len(c) <= 1 for c in columns):   # nothing to add: the bits are the sum
                total = Cat(*(c[0] if c else Const(0, 1) for c in columns))
            else:
                total = b.adder(columns, self.sum_bits)
        out = reg(total, "sa_sum")
        n_regs[0] += 1
        return out, n_regs[0], b.luts

    def elaborate(self, platform):
        m = Module()
        primitives, family = choose_primitives(self.primitives, self.family, platform)
        out, self.built_stages, self.built_luts = self._build(m, primitives, family, self.w, self.x,
                                                              self.en)
        m.d.comb += self.o.eq(out)
        return m


def _set_params(obj, lanes: int, in_bits: int, window: int):
    obj.lanes, obj.in_bits, obj.window = lanes, in_bits, window
    obj.mag_bits, obj.shift_bits, obj.flag = code_fields(window)
    obj.code_bits = 1 + obj.mag_bits
    u = 2 if in_bits == 1 else (1 << in_bits) - 1
    obj.max_sum = lanes * u << (window - 1)
    obj.sum_bits = max(1, ceil_log2(obj.max_sum + 1))


@functools.lru_cache(maxsize=256)
def plan(lanes: int, in_bits: int, window: int) -> tuple[int, int]:
    """``(latency, luts)`` of a :class:`ShiftAdd`: its register stages and the LUT sites of
    its primitive form (the builder's count), read off the elaborated structure."""
    probe = ShiftAdd(lanes, in_bits=in_bits, window=window, primitives="generic")
    Fragment.get(probe, None)
    return probe.built_stages, probe.built_luts


def _all(bits):
    bits = list(bits)
    out = bits[0]
    for bit in bits[1:]:
        out = out & bit
    return out
