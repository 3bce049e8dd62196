"""The generated Vivado Tcl, run under tclsh with stand-ins for every Vivado command.

The stand-ins record each cell, connection, property and address; the test then checks
that the block design is complete: PS, DMA, accelerator (a module reference to the AXI
wrapper), interconnects, every interface of the accelerator connected, one clock from
the PS fabric clock, reset through proc_sys_reset, for a PS7 and a PS8 board.
"""

import re
import shutil
import subprocess
import sys
from collections import defaultdict

import pytest
from amaranth import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

import boards
from hdl.shell import axi
from hdl.flow import toolchain
from hdl.flow import vivado

def _tcl_command():
    """tclsh (Debian package ``tcl``), else Python's own Tcl interpreter (tkinter)."""
    exe = shutil.which("tclsh") or shutil.which("tclsh8.6")
    if exe:
        return [exe]
    try:
        import tkinter
        tkinter.Tcl()
    except Exception:
        return None
    return [sys.executable, "-c",
            "import sys, tkinter; tkinter.Tcl().eval('source {' + sys.argv[1] + '}')"]


TCL = _tcl_command()
pytestmark = pytest.mark.skipif(TCL is None, reason="no Tcl: install Debian's 'tcl' package")

STANDIN = r"""
# Stand-ins for the Vivado commands used by hdl.flow.vivado; each records what it does.
set ::log [open $::env(STANDIN_LOG) w]
proc rec {args} { puts $::log [join $args "\t"]; flush $::log }
set ::cells [dict create]
set ::props [dict create]
set ::files {}
set ::run_dir $::env(STANDIN_RUNS)
proc unknown {args} { error "stand-in missing for Vivado command: [lindex $args 0]" }

proc create_project {name dir args} {
    set i [lsearch $args -part]
    rec PROJECT $name [lindex $args [expr {$i + 1}]]
}
proc get_board_parts {args} {
    set bp [lindex $args end]
    if {$::env(STANDIN_BOARD_FILES)} { return $bp }
    return ""
}
proc current_project {} { return project }
proc current_fileset {} { return sources_1 }
proc add_files {args} {
    set fs sources_1
    set i [lsearch $args -fileset]
    if {$i >= 0} { set fs [lindex $args [expr {$i + 1}]] }
    foreach f [lindex $args end] {
        if {![file exists $f] && $f ne "system_wrapper.v"} { error "add_files: no file $f" }
        lappend ::files $f
        rec FILE $fs $f
    }
}
proc update_compile_order {args} {}
proc get_ipdefs {args} {
    set pattern [lindex $args end]
    return [list [string map {* 9.9} $pattern]]
}
proc create_bd_design {name} { rec BD $name }
proc create_bd_cell {args} {
    set name [lindex $args end]
    set type [lindex $args [expr {[lsearch $args -type] + 1}]]
    if {$type eq "module"} {
        set ref [lindex $args [expr {[lsearch $args -reference] + 1}]]
        set found 0
        foreach f $::files {
            set fh [open $f]; set text [read $fh]; close $fh
            if {[regexp "module\\s+$ref\\s*\\(" $text]} { set found 1 }
        }
        if {!$found} { error "module reference $ref: no such module in the sources" }
        rec CELL $name module $ref
    } else {
        set vlnv [lindex $args [expr {[lsearch $args -vlnv] + 1}]]
        rec CELL $name ip [lindex [split $vlnv :] 2]
    }
    dict set ::cells $name 1
    return $name
}
proc check_pin {kind path} {
    set cell [lindex [split $path /] 0]
    if {![dict exists $::cells $cell]} { error "$kind $path: no cell $cell" }
    return $path
}
proc get_bd_intf_pins {path} { return [check_pin intf $path] }
proc get_bd_pins {path} { return [check_pin pin $path] }
proc get_bd_addr_spaces {path} { return [check_pin space $path] }
proc get_bd_addr_segs {path} { return [check_pin seg $path] }
proc set_property {args} {
    if {[lindex $args 0] eq "-dict"} {
        set obj [lindex $args 2]
        foreach {k v} [lindex $args 1] { rec PROP $obj $k $v; dict set ::props $obj $k $v }
    } else {
        lassign $args k v obj
        rec PROP $obj $k $v
        dict set ::props $obj $k $v
    }
}
proc get_property {key obj} {
    if {$key eq "PROGRESS"} { return "100%" }
    if {$key eq "DIRECTORY"} { return $::run_dir }
    if {[dict exists $::props $obj $key]} { return [dict get $::props $obj $key] }
    return 100
}
proc apply_bd_automation {args} {
    set rule [lindex $args [expr {[lsearch $args -rule] + 1}]]
    set config [lindex $args [expr {[lsearch $args -config] + 1}]]
    rec AUTO $rule $config [lindex $args end]
}
proc make_bd_intf_pins_external {args} { foreach p $args { rec EXT $p } }
proc connect_bd_intf_net {a b} { rec INTF $a $b }
proc connect_bd_net {args} { rec NET {*}$args }
proc assign_bd_address {args} { rec ADDR {*}$args }
proc validate_bd_design {args} { rec VALIDATE }
proc save_bd_design {args} { rec SAVE }
proc get_files {args} {
    set name [lindex $args end]
    if {$name eq "system.hwh"} {
        set f [file join $::run_dir system.hwh]
        close [open $f w]
        return [list $f]
    }
    return $name
}
proc generate_target {args} { rec GENERATE {*}$args }
proc make_wrapper {args} { rec WRAPPER; return system_wrapper.v }
proc launch_runs {args} {
    rec RUN {*}$args
    file mkdir $::run_dir
    close [open [file join $::run_dir system_wrapper.bit] w]
}
proc wait_on_run {args} {}
proc get_runs {name} { return $name }
proc open_run {args} { rec OPEN {*}$args }
proc report_utilization {args} { rec REPORT utilization }
proc report_timing_summary {args} { rec REPORT timing }
proc write_hw_platform {args} { rec XSA [lindex $args end] }
"""


class _Core(wiring.Component):
    def __init__(self):
        super().__init__({"i": In(stream.Signature(data.ArrayLayout(unsigned(8), 1))),
                          "o": Out(stream.Signature(data.ArrayLayout(signed(16), 1)))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.o.valid.eq(self.i.valid), self.i.ready.eq(self.o.ready),
                     self.o.payload[0].eq(self.i.payload[0])]
        return m


@pytest.fixture(scope="module")
def sources():
    return axi.build_sources(_Core(), frame_elements=4, classes=4, name="qnn_accel")


def run_standin(tmp_path, board, sources, *, board_files, clock_mhz=None):
    out = tmp_path / "vivado"
    proj = vivado.write_project(out, board=board, top="qnn_accel", sources=sources,
                                clock_mhz=clock_mhz)
    (tmp_path / "standin.tcl").write_text(STANDIN)
    driver = tmp_path / "driver.tcl"
    driver.write_text(f"source {tmp_path / 'standin.tcl'}\nsource {proj.build_tcl}\n")
    log = tmp_path / "standin.log"
    env = {"STANDIN_LOG": str(log), "STANDIN_RUNS": str(tmp_path / "runs"),
           "STANDIN_BOARD_FILES": "1" if board_files else "0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([*TCL, str(driver)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [line.split("\t") for line in log.read_text().splitlines()]
    return proj, records, proc.stdout


def wrapper_interfaces(text):
    """Interface and pin names declared by X_INTERFACE_INFO in the wrapper."""
    intfs = set(re.findall(r'X_INTERFACE_INFO = "xilinx\.com:interface:\S+ (\w+) \w+"', text))
    pins = set(re.findall(r'X_INTERFACE_INFO = "xilinx\.com:signal:\S+ (\w+) \w+"', text))
    return intfs, pins


@pytest.mark.parametrize("name, board_files", [
    ("pynq-z2", False), ("pynq-z2", True), ("zcu102", True), ("zcu104", False),
    ("zc706", True), ("ax7z035", False),
])
def test_block_design_complete(tmp_path, sources, name, board_files):
    board = boards.get(name)
    clock = 125.0 if board.ps == "ps7" else 187.5
    proj, records, stdout = run_standin(tmp_path, board, sources, board_files=board_files,
                                        clock_mhz=clock)
    by_kind = defaultdict(list)
    for r in records:
        by_kind[r[0]].append(r[1:])

    assert by_kind["PROJECT"] == [["qnn", board.part()]]
    files = [f for fs, f in by_kind["FILE"] if fs == "sources_1"]
    assert any(f.endswith("qnn_accel_core.v") for f in files)
    assert any(f.endswith("qnn_accel.v") for f in files)
    assert any(f.endswith("constraints.xdc") for fs, f in by_kind["FILE"] if fs == "constrs_1")

    cells = {c[0]: (c[1], c[2]) for c in by_kind["CELL"]}
    ps_ip = "processing_system7" if board.ps == "ps7" else "zynq_ultra_ps_e"
    assert cells["ps"] == ("ip", ps_ip)
    assert cells["dma"] == ("ip", "axi_dma")
    assert cells[vivado.ACCEL_CELL] == ("module", "qnn_accel")
    assert cells["ctrl_ic"] == ("ip", "smartconnect") and cells["mem_ic"] == ("ip", "smartconnect")
    assert cells["rst"] == ("ip", "proc_sys_reset")

    props = defaultdict(dict)
    for obj, key, value in by_kind["PROP"]:
        props[obj][key] = value
    assert props["dma"]["CONFIG.c_include_sg"] == "0"
    assert props["dma"]["CONFIG.c_include_mm2s"] == "1"
    assert props["dma"]["CONFIG.c_include_s2mm"] == "1"
    clock_key = ("CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ" if board.ps == "ps7"
                 else "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ")
    assert float(props["ps"][clock_key]) == clock
    assert f"requested {clock:g} MHz" in stdout

    # board preset when board files exist, else DDR made external by hand (PS7)
    if board_files and board.board_part:
        assert props["project"]["board_part"] == board.board_part
        assert len(by_kind["AUTO"]) == 1 and "apply_board_preset \"1\"" in by_kind["AUTO"][0][1]
        if board.ps == "ps7":
            assert "DDR" in by_kind["AUTO"][0][1] and "FIXED_IO" in by_kind["AUTO"][0][1]
    else:
        assert not by_kind["AUTO"]
        if board.ps == "ps7":
            assert sorted(e[0] for e in by_kind["EXT"]) == ["ps/DDR", "ps/FIXED_IO"]
            for key, value in board.ps_config.items():
                assert props["ps"][f"CONFIG.{key}"] == value

    # interfaces: every accelerator interface, every DMA port, every interconnect port
    intf_pins = defaultdict(int)
    for a, b in by_kind["INTF"]:
        intf_pins[a] += 1
        intf_pins[b] += 1
    assert all(n == 1 for n in intf_pins.values()), intf_pins
    accel_intfs, accel_pins = wrapper_interfaces(sources["qnn_accel.v"])
    assert accel_intfs == {"s_axi", "s_axis", "m_axis"} and accel_pins == {"aclk", "aresetn"}
    for intf in accel_intfs:
        assert intf_pins[f"{vivado.ACCEL_CELL}/{intf}"] == 1, intf
    for port in ("S_AXI_LITE", "M_AXI_MM2S", "M_AXI_S2MM", "M_AXIS_MM2S", "S_AXIS_S2MM"):
        assert intf_pins[f"dma/{port}"] == 1, port
    for ic in ("ctrl_ic", "mem_ic"):
        n_si, n_mi = int(props[ic]["CONFIG.NUM_SI"]), int(props[ic]["CONFIG.NUM_MI"])
        ports = {f"{ic}/S{k:02d}_AXI" for k in range(n_si)} | {f"{ic}/M{k:02d}_AXI" for k in range(n_mi)}
        assert {p for p in intf_pins if p.startswith(ic + "/")} == ports
    pairs = {frozenset(p) for p in by_kind["INTF"]}
    assert frozenset({"dma/M_AXIS_MM2S", f"{vivado.ACCEL_CELL}/s_axis"}) in pairs
    assert frozenset({f"{vivado.ACCEL_CELL}/m_axis", "dma/S_AXIS_S2MM"}) in pairs
    hp = "ps/S_AXI_HP0" if board.ps == "ps7" else "ps/S_AXI_HP0_FPD"
    master = "ps/M_AXI_GP0" if board.ps == "ps7" else "ps/M_AXI_HPM0_FPD"
    assert intf_pins[hp] == 1 and intf_pins[master] == 1

    # one clock net from the PS fabric clock reaching every clock pin
    nets = [set(n) for n in by_kind["NET"]]
    fclk = "ps/FCLK_CLK0" if board.ps == "ps7" else "ps/pl_clk0"
    clock_nets = [n for n in nets if fclk in n]
    assert len(clock_nets) == 1
    clk = clock_nets[0]
    assert {f"{vivado.ACCEL_CELL}/aclk", "dma/s_axi_lite_aclk", "dma/m_axi_mm2s_aclk",
            "dma/m_axi_s2mm_aclk", "ctrl_ic/aclk", "mem_ic/aclk", "rst/slowest_sync_clk"} <= clk
    ps_clks = {"ps/M_AXI_GP0_ACLK", "ps/S_AXI_HP0_ACLK"} if board.ps == "ps7" else \
        {"ps/maxihpm0_fpd_aclk", "ps/saxihp0_fpd_aclk"}
    assert ps_clks <= clk
    # no pin on two nets
    all_pins = [p for n in by_kind["NET"] for p in n]
    assert len(all_pins) == len(set(all_pins))
    # reset: PS reset -> proc_sys_reset -> accelerator, DMA, interconnects
    ps_rst = "ps/FCLK_RESET0_N" if board.ps == "ps7" else "ps/pl_resetn0"
    assert {ps_rst, "rst/ext_reset_in"} in nets
    rst_net = next(n for n in nets if "rst/peripheral_aresetn" in n)
    assert {f"{vivado.ACCEL_CELL}/aresetn", "dma/axi_resetn", "ctrl_ic/aresetn",
            "mem_ic/aresetn"} <= rst_net

    # addresses, validation, bitstream and hardware export
    addr = [a for a in by_kind["ADDR"] if f"{vivado.ACCEL_CELL}/s_axi/reg0" in a]
    assert addr and f"{vivado.ADDRESSES[board.ps]['accel']:#010x}" in addr[0]
    assert by_kind["VALIDATE"] and by_kind["SAVE"]
    assert props["sources_1"]["top"] == "system_wrapper"
    assert any("write_bitstream" in r for r in by_kind["RUN"])
    assert by_kind["XSA"] and by_kind["XSA"][0][0].endswith("system.xsa")
    assert proj.bitstream.exists() and (proj.out_dir / "qnn.hwh").exists()


def test_standin_catches_missing_module_reference(tmp_path, sources):
    broken = {"qnn_accel_core.v": sources["qnn_accel_core.v"]}      # no wrapper module
    out = tmp_path / "v"
    proj = vivado.write_project(out, board=boards.get("zcu102"), top="qnn_accel",
                                sources=broken)
    (tmp_path / "standin.tcl").write_text(STANDIN)
    driver = tmp_path / "d.tcl"
    driver.write_text(f"source {tmp_path / 'standin.tcl'}\nsource {proj.create_tcl}\n")
    env = {"STANDIN_LOG": str(tmp_path / "log"), "STANDIN_RUNS": str(tmp_path / "r"),
           "STANDIN_BOARD_FILES": "1"}
    proc = subprocess.run([*TCL, str(driver)], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "module reference qnn_accel: no such module" in proc.stderr + proc.stdout


def test_write_project_checks_and_default_clock(tmp_path, sources):
    board = boards.get("pynq-z2")
    proj = vivado.write_project(tmp_path / "p", board=board, top="qnn_accel", sources=sources)
    text = proj.create_tcl.read_text()
    assert f"CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ {{{board.default_clock_mhz:g}}}" in text
    assert "create_bd_cell -type module -reference qnn_accel accel" in text
    assert proj.build_sh.stat().st_mode & 0o100
    with pytest.raises(ValueError, match="clock must be between 1 and 800 MHz, not 0"):
        vivado.write_project(tmp_path / "q", board=board, top="qnn_accel", sources=sources,
                             clock_mhz=0)
    with pytest.raises(TypeError, match="board must be a boards.ZynqPlatform class"):
        vivado.write_project(tmp_path / "q", board="zcu102", top="t", sources=sources)
    with pytest.raises(ValueError, match="source names must be plain"):
        vivado.write_project(tmp_path / "q", board=board, top="t", sources={"../x.v": ""})


def test_run_vivado_without_vivado(tmp_path, sources, monkeypatch):
    monkeypatch.setattr(toolchain, "vivado_path", lambda: None)
    vivado.write_project(tmp_path, board=boards.get("zcu104"), top="qnn_accel", sources=sources)
    result = vivado.run_vivado(tmp_path)
    assert not result.ran and result.ok
    assert "Vivado not on PATH: the project is ready" in result.message
    with pytest.raises(FileNotFoundError, match="call write_project first"):
        vivado.run_vivado(tmp_path / "nothing")


def test_run_vivado_runs_build_script(tmp_path, sources, monkeypatch):
    """With a fake ``vivado`` on PATH, run_vivado calls it on build.tcl in batch mode."""
    fake = tmp_path / "bin" / "vivado"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$@" > args.txt\n')
    fake.chmod(0o755)
    monkeypatch.setattr(toolchain, "vivado_path", lambda: str(fake))
    out = tmp_path / "proj"
    vivado.write_project(out, board=boards.get("zc706"), top="qnn_accel", sources=sources)
    result = vivado.run_vivado(out)
    assert result.ran and result.ok and result.returncode == 0
    assert "-mode batch" in (out / "args.txt").read_text()
    assert "-source build.tcl" in (out / "args.txt").read_text()


# --- Vivado's output streamed while it runs; its reports read into numbers ---

from pathlib import Path

REPORTS = Path(__file__).parent / "vivado_reports"


def test_parse_utilization_ultrascale_and_7series():
    zu = vivado.parse_utilization((REPORTS / "utilization_zcu102.rpt").read_text())
    assert zu == {"lut": 21877, "ff": 26034, "bram18": 2 * 22 + 11, "uram": 0, "dsp": 3}
    z7 = vivado.parse_utilization((REPORTS / "utilization_pynqz2.rpt").read_text())
    assert z7 == {"lut": 18944, "ff": 20411, "bram18": 2 * 104 + 12, "uram": 0, "dsp": 0}
    with pytest.raises(ValueError, match="not a Vivado utilization report"):
        vivado.parse_utilization("Timing Summary Report\n")


def test_parse_timing_met_and_failed():
    met = vivado.parse_timing((REPORTS / "timing_zcu102.rpt").read_text(), "clk_pl_0")
    assert met["wns_ns"] == 0.618 and met["whs_ns"] == 0.010 and met["met"] is True
    assert met["clock"] == "clk_pl_0" and met["target_mhz"] == 200.0
    assert met["achieved_mhz"] == pytest.approx(1000 / (5.0 - 0.618), abs=1e-3)
    failed = vivado.parse_timing((REPORTS / "timing_failed_pynqz2.rpt").read_text(),
                                 vivado.FABRIC_CLOCK["ps7"])
    assert failed["met"] is False and failed["tns_ns"] == -88.412
    assert failed["achieved_mhz"] == pytest.approx(1000 / 11.25, abs=1e-3)
    with pytest.raises(ValueError, match="no 'Design Timing Summary'"):
        vivado.parse_timing("nothing here")


def _fake_vivado(tmp_path, body):
    fake = tmp_path / "bin" / "vivado"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(0o755)
    return fake


def test_run_vivado_streams_its_output(tmp_path, sources, monkeypatch):
    """Each line reaches the callback while Vivado still runs (before it writes 'done')."""
    fake = _fake_vivado(tmp_path, 'echo "start of synthesis"\nsleep 1\ntouch done\n'
                                  'echo "route_design completed"\nexit 3\n')
    monkeypatch.setattr(toolchain, "vivado_path", lambda: str(fake))
    vivado.write_project(tmp_path / "p", board=boards.get("zcu102"), top="qnn_accel", sources=sources)
    seen = []
    result = vivado.run_vivado(tmp_path / "p", echo=lambda line: seen.append(
        (line, (tmp_path / "p" / "done").exists())))
    assert seen == [("start of synthesis", False), ("route_design completed", True)]
    assert result.ran and not result.ok and result.returncode == 3


def test_build_reads_vivado_reports(tmp_path, monkeypatch):
    """A (fake) Vivado run: utilization and timing in the build's result, the bitstream
    and .hwh copied into deploy/, and its failure is 'tool failed'."""
    from hdl.flow import build
    from hdl import ir
    from sim import random_model as rm
    model = rm.build_model([rm.LayerPlan(op="fc", out=4, kind="binary", act_bits=None)],
                           input_shape=(1, 1, 8), input_bits=1, seed=1, name="fc")
    path = ir.save(model, tmp_path / "m")
    fake = _fake_vivado(tmp_path, f'cp {REPORTS}/utilization_zcu102.rpt utilization.rpt\n'
                                  f'cp {REPORTS}/timing_zcu102.rpt timing.rpt\n'
                                  'echo bits > qnn.bit\necho hwh > qnn.hwh\n')
    monkeypatch.setattr(toolchain, "vivado_path", lambda: str(fake))
    result = build.build("zcu102", model_path=path, out_dir=tmp_path / "o", run_synth=False,
                         quiet=True)
    assert result.vivado["lut"] == 21877 and result.vivado["achieved_mhz"] > 200
    assert (tmp_path / "o" / "deploy" / "qnn.bit").read_text() == "bits\n"
    assert (tmp_path / "o" / "deploy" / "qnn.hwh").read_text() == "hwh\n"
    _fake_vivado(tmp_path, "echo 'ERROR: [Place 30-640] Place Check' ; exit 1\n")
    with pytest.raises(build.ToolFailed, match="Vivado failed"):
        build.build("zcu102", model_path=path, out_dir=tmp_path / "o", run_synth=False, quiet=True)


class _WeightCore(_Core):
    """A core with ``n`` weight read masters (as a network with streamed stages)."""

    def __init__(self, n):
        from hdl.engines.weightstream import AxiReadSignature
        wiring.Component.__init__(self, {
            "i": In(stream.Signature(data.ArrayLayout(unsigned(8), 1))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(16), 1))),
            "weight_base": In(40), "weight_enable": In(1),
            **{f"w{k}": Out(AxiReadSignature(40, 128)) for k in range(n)}})


@pytest.mark.parametrize("name, n", [("zcu104", 4), ("pynq-z2", 1)])
def test_block_design_weight_ports(tmp_path, name, n):
    """Each weight master reaches its own PS slave port through a SmartConnect, on the
    one clock and reset."""
    board = boards.get(name)
    srcs = axi.build_sources(_WeightCore(n), frame_elements=4, classes=4, name="qnn_accel")
    out = tmp_path / "vivado"
    proj = vivado.write_project(out, board=board, top="qnn_accel", sources=srcs, weight_ports=n)
    (tmp_path / "standin.tcl").write_text(STANDIN)
    driver = tmp_path / "driver.tcl"
    driver.write_text(f"source {tmp_path / 'standin.tcl'}\nsource {proj.build_tcl}\n")
    log = tmp_path / "standin.log"
    env = {"STANDIN_LOG": str(log), "STANDIN_RUNS": str(tmp_path / "runs"),
           "STANDIN_BOARD_FILES": "0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([*TCL, str(driver)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = [line.split("\t") for line in log.read_text().splitlines()]
    intf = {frozenset(r[1:]) for r in records if r[0] == "INTF"}
    nets = [set(r[1:]) for r in records if r[0] == "NET"]
    clk = next(n for n in nets if ("ps/FCLK_CLK0" if board.ps == "ps7" else "ps/pl_clk0") in n)
    rst = next(n for n in nets if "rst/peripheral_aresetn" in n)
    slaves = (["S_AXI_HP1", "S_AXI_HP2", "S_AXI_HP3"] if board.ps == "ps7" else
              ["S_AXI_HP1_FPD", "S_AXI_HP2_FPD", "S_AXI_HP3_FPD", "S_AXI_HPC0_FPD"])
    clocks = (["S_AXI_HP1_ACLK"] if board.ps == "ps7" else
              ["saxihp1_fpd_aclk", "saxihp2_fpd_aclk", "saxihp3_fpd_aclk", "saxihpc0_fpd_aclk"])
    for k in range(n):
        assert frozenset({f"{vivado.ACCEL_CELL}/m_axi_w{k}", f"weight_ic{k}/S00_AXI"}) in intf
        assert frozenset({f"weight_ic{k}/M00_AXI", f"ps/{slaves[k]}"}) in intf
        assert {f"weight_ic{k}/aclk", f"ps/{clocks[k]}"} <= clk
        assert f"weight_ic{k}/aresetn" in rst
    pins = [p for n in nets for p in n]
    assert len(pins) == len(set(pins))
    accel_intfs, _ = wrapper_interfaces(srcs["qnn_accel.v"])
    assert accel_intfs == {"s_axi", "s_axis", "m_axis"} | {f"m_axi_w{k}" for k in range(n)}
    with pytest.raises(ValueError, match="weight_ports must be at most"):
        vivado.write_project(tmp_path / "v2", board=board, top="qnn_accel", sources=srcs,
                             weight_ports=vivado.max_weight_ports(board) + 1)
