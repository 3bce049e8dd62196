"""Vivado project generation: block design around the Zynq PS, build script, run.

:func:`write_project` writes into ``out_dir``:

* ``hdl/``: the accelerator's Verilog sources (given by the caller: the Amaranth core
  and the :func:`hdl.shell.axi.verilog_wrapper` top that the block design references);
* ``constraints.xdc``: the accelerator uses no package pins (clock and reset come from
  the PS), so this holds only bitstream settings; the fabric clock is constrained by the
  PS IP itself;
* ``create_project.tcl``: creates the project for the board's part (with the board
  part when its board files are installed), and the block design ``system``:

  - the PS: ``processing_system7`` (PS7: GP0 master, HP0 slave, FCLK_CLK0 at the
    requested MHz, FCLK_RESET0_N, IRQ_F2P) or ``zynq_ultra_ps_e`` (PS8: HPM0_FPD master,
    HP0_FPD slave, pl_clk0, pl_resetn0, pl_ps_irq0), with the board preset when the
    board part is known to Vivado, else the board's ``ps_config``;
  - an AXI DMA (MM2S and S2MM, scatter-gather off, 26-bit length register);
  - the accelerator as an RTL module reference (``create_bd_cell -type module
    -reference <top>``), with interfaces ``s_axi``, ``s_axis``, ``m_axis`` and pins
    ``aclk``, ``aresetn``;
  - a SmartConnect from the PS master to the accelerator's registers and the DMA's
    AXI-Lite, and one from the DMA's two memory masters to the PS HP port;
  - a ``proc_sys_reset`` driven by the PS reset, synchronous to the fabric clock,
    whose ``peripheral_aresetn`` resets the DMA, the interconnects and the accelerator;
  - the DMA's two interrupts through an ``xlconcat`` to the PS;
  - addresses: accelerator registers at 0x43C0_0000 (PS7) / 0xA000_0000 (PS8), 64 KiB;
    DMA registers at 0x4040_0000 / 0xA001_0000; the DMA sees all of DDR.

  It then validates and saves the design and makes the HDL wrapper the top;
* ``build.tcl``: sources ``create_project.tcl``, runs synthesis, implementation and
  ``write_bitstream``, writes utilisation and timing reports, exports the hardware
  (``system.xsa``) and copies ``<project>.bit`` / ``<project>.hwh`` side by side for a
  PYNQ ``Overlay``;
* ``build.sh``: ``vivado -mode batch -source build.tcl``.

:func:`run_vivado` runs ``build.tcl`` when ``vivado`` is on PATH (its output streamed line
by line to a callback, the terminal by default, while Vivado also writes ``vivado.log``)
and otherwise says that the scripts are ready. :func:`parse_utilization` and
:func:`parse_timing` read the ``utilization.rpt`` and ``timing.rpt`` that ``build.tcl``
writes (``report_utilization`` / ``report_timing_summary`` text) into numbers;
:func:`vivado_figures` gathers them for ``report.json``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from . import toolchain

__all__ = ["VivadoProject", "VivadoRun", "write_project", "run_vivado", "block_design_tcl",
           "project_tcl", "build_tcl", "constraints_xdc", "BD_NAME", "ACCEL_CELL",
           "ADDRESSES", "parse_utilization", "parse_timing", "vivado_figures", "FABRIC_CLOCK"]

#: Name of the block design (its HDL wrapper is ``system_wrapper``).
BD_NAME = "system"
#: Instance name of the accelerator in the block design.
ACCEL_CELL = "accel"
#: Register addresses (accelerator, DMA) seen from the PS, by PS kind.
ADDRESSES = {"ps7": {"accel": 0x43C0_0000, "dma": 0x4040_0000},
             "ps8": {"accel": 0xA000_0000, "dma": 0xA001_0000}}

# PS-specific names: the master port, the HP slave port, their clock pins, the fabric
# clock and reset, the interrupt input, the data address space.
_PS = {
    "ps7": dict(ip="processing_system7", rule="xilinx.com:bd_rule:processing_system7",
                master="M_AXI_GP0", master_clk="M_AXI_GP0_ACLK",
                slave="S_AXI_HP0", slave_clk="S_AXI_HP0_ACLK",
                clk="FCLK_CLK0", resetn="FCLK_RESET0_N", irq="IRQ_F2P", space="Data",
                clock_prop="PCW_FPGA0_PERIPHERAL_FREQMHZ",
                actual_clock_prop="PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ"),
    "ps8": dict(ip="zynq_ultra_ps_e", rule="xilinx.com:bd_rule:zynq_ultra_ps_e",
                master="M_AXI_HPM0_FPD", master_clk="maxihpm0_fpd_aclk",
                slave="S_AXI_HP0_FPD", slave_clk="saxihp0_fpd_aclk",
                clk="pl_clk0", resetn="pl_resetn0", irq="pl_ps_irq0", space="Data",
                clock_prop="PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ",
                actual_clock_prop="PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ"),
}


def _tcl_dict(props: Mapping[str, object]) -> str:
    items = " ".join(f"CONFIG.{k} {{{v}}}" for k, v in props.items())
    return f"[list {items}]"


def _ps_properties(board, clock_mhz: float) -> dict:
    mhz = f"{clock_mhz:g}"
    if board.ps == "ps7":
        return {
            "PCW_USE_M_AXI_GP0": 1, "PCW_USE_S_AXI_HP0": 1,
            "PCW_S_AXI_HP0_DATA_WIDTH": 64,
            "PCW_EN_CLK0_PORT": 1, "PCW_EN_RST0_PORT": 1,
            "PCW_FPGA0_PERIPHERAL_FREQMHZ": mhz,
            "PCW_USE_FABRIC_INTERRUPT": 1, "PCW_IRQ_F2P_INTR": 1,
        }
    return {
        "PSU__USE__M_AXI_GP0": 1, "PSU__USE__M_AXI_GP1": 0, "PSU__USE__M_AXI_GP2": 0,
        "PSU__USE__S_AXI_GP2": 1, "PSU__SAXIGP2__DATA_WIDTH": 128,
        "PSU__FPGA_PL0_ENABLE": 1, "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": mhz,
        "PSU__USE__IRQ0": 1,
    }


#: The PS slave ports the weight masters read DDR through, one each (the DMA has HP0):
#: (interface, clock pin, properties), by PS kind.
_WEIGHT_HP = {
    "ps7": [(f"S_AXI_HP{n}", f"S_AXI_HP{n}_ACLK",
             {f"PCW_USE_S_AXI_HP{n}": 1, f"PCW_S_AXI_HP{n}_DATA_WIDTH": 64}) for n in (1, 2, 3)],
    "ps8": [(f"S_AXI_{name}_FPD", f"saxi{name.lower()}_fpd_aclk",
             {f"PSU__USE__S_AXI_GP{gp}": 1, f"PSU__SAXIGP{gp}__DATA_WIDTH": 128})
            for name, gp in (("HP1", 3), ("HP2", 4), ("HP3", 5), ("HPC0", 0), ("HPC1", 1))],
}


def max_weight_ports(board) -> int:
    """How many weight masters the board's PS can take, one slave port each."""
    return len(_WEIGHT_HP[board.ps])


def _weight_port_tcl(board, weight_ports: int) -> list[str]:
    """Weight master ``m_axi_w{k}`` of the accelerator -> SmartConnect ``weight_ic{k}``
    -> its own PS slave port (clocked and reset with the rest; addressed by
    ``assign_bd_address``)."""
    if not weight_ports:
        return []
    if weight_ports > max_weight_ports(board):
        raise ValueError(f"weight_ports must be at most {max_weight_ports(board)} on "
                         f"{board.name}, not {weight_ports}")
    lines = ["", "# Weights from DDR: each read master -> SmartConnect -> its own HP port"]
    for k, (slave, _, props) in enumerate(_WEIGHT_HP[board.ps][:weight_ports]):
        lines += [f"set_property -dict {_tcl_dict(props)} $ps",
                  f"set weight_ic{k} [create_bd_cell -type ip -vlnv [ip_vlnv smartconnect] weight_ic{k}]",
                  f"set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] $weight_ic{k}",
                  f"connect_bd_intf_net [get_bd_intf_pins {ACCEL_CELL}/m_axi_w{k}] "
                  f"[get_bd_intf_pins weight_ic{k}/S00_AXI]",
                  f"connect_bd_intf_net [get_bd_intf_pins weight_ic{k}/M00_AXI] "
                  f"[get_bd_intf_pins ps/{slave}]"]
    return lines


def _weight_clock_pins(board, weight_ports: int) -> str:
    """The weight path's clock pins, on the fabric clock's net."""
    return "".join(f" [get_bd_pins ps/{clk}] [get_bd_pins weight_ic{k}/aclk]"
                   for k, (_, clk, _) in enumerate(_WEIGHT_HP[board.ps][:weight_ports]))


def block_design_tcl(board, *, top: str, clock_mhz: float, in_width: int = 32,
                     out_width: int = 32, weight_ports: int = 0) -> str:
    """Tcl that builds the block design in the current project (see module docstring);
    the accelerator's ``weight_ports`` AXI4 read masters ``m_axi_w{k}`` each get a PS
    slave port (HP1, HP2, HP3, then HPC0, HPC1 on Zynq UltraScale+)."""
    ps = _PS[board.ps]
    addr = ADDRESSES[board.ps]
    ps_props = _ps_properties(board, clock_mhz)
    fallback = dict(board.ps_config)
    lines = [
        f"# Block design {BD_NAME}: {board.description}, {board.ps.upper()}, "
        f"fabric clock {clock_mhz:g} MHz",
        "proc ip_vlnv {name} {",
        '    set defs [lsort [get_ipdefs -all "xilinx.com:ip:${name}:*"]]',
        '    if {![llength $defs]} { error "IP $name is not in the Vivado IP catalog" }',
        "    return [lindex $defs end]",
        "}",
        f"create_bd_design {BD_NAME}",
        "",
        "# Processing system",
        f"set ps [create_bd_cell -type ip -vlnv [ip_vlnv {ps['ip']}] ps]",
        "if {$use_board_preset} {",
    ]
    if board.ps == "ps7":
        lines += [
            f"    apply_bd_automation -rule {ps['rule']} "
            '-config {make_external "FIXED_IO, DDR" apply_board_preset "1" '
            'Master "Disable" Slave "Disable"} $ps',
            "} else {",
            "    make_bd_intf_pins_external [get_bd_intf_pins ps/DDR] "
            "[get_bd_intf_pins ps/FIXED_IO]",
        ]
    else:
        lines += [
            f"    apply_bd_automation -rule {ps['rule']} "
            '-config {apply_board_preset "1"} $ps',
            "} else {",
        ]
    if fallback:
        lines.append(f"    set_property -dict {_tcl_dict(fallback)} $ps")
    else:
        lines.append('    puts "WARNING: no board files: the PS keeps the IP defaults '
                     '(check DDR and MIO before use)"')
    lines += [
        "}",
        f"set_property -dict {_tcl_dict(ps_props)} $ps",
        "",
        "# AXI DMA: MM2S feeds the accelerator, S2MM takes its results; no scatter-gather",
        "set dma [create_bd_cell -type ip -vlnv [ip_vlnv axi_dma] dma]",
        "set_property -dict " + _tcl_dict({
            "c_include_sg": 0, "c_sg_length_width": 26,
            "c_include_mm2s": 1, "c_include_s2mm": 1,
            "c_m_axis_mm2s_tdata_width": in_width, "c_s_axis_s2mm_tdata_width": out_width,
            "c_mm2s_burst_size": 16, "c_s2mm_burst_size": 16,
        }) + " $dma",
        "",
        "# The accelerator: RTL module reference",
        f"set accel [create_bd_cell -type module -reference {top} {ACCEL_CELL}]",
        "",
        "# Interconnects and reset",
        "set ctrl_ic [create_bd_cell -type ip -vlnv [ip_vlnv smartconnect] ctrl_ic]",
        "set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {2}] $ctrl_ic",
        "set mem_ic [create_bd_cell -type ip -vlnv [ip_vlnv smartconnect] mem_ic]",
        "set_property -dict [list CONFIG.NUM_SI {2} CONFIG.NUM_MI {1}] $mem_ic",
        "set rst [create_bd_cell -type ip -vlnv [ip_vlnv proc_sys_reset] rst]",
        "set irq [create_bd_cell -type ip -vlnv [ip_vlnv xlconcat] irq]",
        "set_property -dict [list CONFIG.NUM_PORTS {2}] $irq",
        "",
        "# Interfaces",
        f"connect_bd_intf_net [get_bd_intf_pins ps/{ps['master']}] "
        "[get_bd_intf_pins ctrl_ic/S00_AXI]",
        f"connect_bd_intf_net [get_bd_intf_pins ctrl_ic/M00_AXI] "
        f"[get_bd_intf_pins {ACCEL_CELL}/s_axi]",
        "connect_bd_intf_net [get_bd_intf_pins ctrl_ic/M01_AXI] "
        "[get_bd_intf_pins dma/S_AXI_LITE]",
        f"connect_bd_intf_net [get_bd_intf_pins dma/M_AXIS_MM2S] "
        f"[get_bd_intf_pins {ACCEL_CELL}/s_axis]",
        f"connect_bd_intf_net [get_bd_intf_pins {ACCEL_CELL}/m_axis] "
        "[get_bd_intf_pins dma/S_AXIS_S2MM]",
        "connect_bd_intf_net [get_bd_intf_pins dma/M_AXI_MM2S] "
        "[get_bd_intf_pins mem_ic/S00_AXI]",
        "connect_bd_intf_net [get_bd_intf_pins dma/M_AXI_S2MM] "
        "[get_bd_intf_pins mem_ic/S01_AXI]",
        f"connect_bd_intf_net [get_bd_intf_pins mem_ic/M00_AXI] "
        f"[get_bd_intf_pins ps/{ps['slave']}]",
        "",
        *_weight_port_tcl(board, weight_ports),
        "",
        "# One clock: the PS fabric clock",
        f"connect_bd_net [get_bd_pins ps/{ps['clk']}] "
        f"[get_bd_pins ps/{ps['master_clk']}] [get_bd_pins ps/{ps['slave_clk']}] "
        "[get_bd_pins dma/s_axi_lite_aclk] [get_bd_pins dma/m_axi_mm2s_aclk] "
        "[get_bd_pins dma/m_axi_s2mm_aclk] [get_bd_pins ctrl_ic/aclk] "
        f"[get_bd_pins mem_ic/aclk] [get_bd_pins {ACCEL_CELL}/aclk] "
        "[get_bd_pins rst/slowest_sync_clk]" + _weight_clock_pins(board, weight_ports),
        "# Reset: PS reset -> proc_sys_reset -> every AXI block",
        f"connect_bd_net [get_bd_pins ps/{ps['resetn']}] [get_bd_pins rst/ext_reset_in]",
        "connect_bd_net [get_bd_pins rst/peripheral_aresetn] [get_bd_pins dma/axi_resetn] "
        f"[get_bd_pins ctrl_ic/aresetn] [get_bd_pins mem_ic/aresetn] "
        f"[get_bd_pins {ACCEL_CELL}/aresetn]"
        + "".join(f" [get_bd_pins weight_ic{k}/aresetn]" for k in range(weight_ports)),
        "# DMA interrupts",
        "connect_bd_net [get_bd_pins dma/mm2s_introut] [get_bd_pins irq/In0]",
        "connect_bd_net [get_bd_pins dma/s2mm_introut] [get_bd_pins irq/In1]",
        f"connect_bd_net [get_bd_pins irq/dout] [get_bd_pins ps/{ps['irq']}]",
        "",
        "# Addresses",
        f"assign_bd_address -offset {addr['accel']:#010x} -range 64K "
        f"-target_address_space [get_bd_addr_spaces ps/{ps['space']}] "
        f"[get_bd_addr_segs {ACCEL_CELL}/s_axi/reg0] -force",
        f"assign_bd_address -offset {addr['dma']:#010x} -range 64K "
        f"-target_address_space [get_bd_addr_spaces ps/{ps['space']}] "
        "[get_bd_addr_segs dma/S_AXI_LITE/Reg] -force",
        "assign_bd_address",
        "",
        f'puts "fabric clock: requested {clock_mhz:g} MHz, PS gives '
        f'[get_property CONFIG.{ps["actual_clock_prop"]} $ps] MHz"',
        "validate_bd_design",
        "save_bd_design",
    ]
    return "\n".join(lines) + "\n"


def project_tcl(board, *, project: str, sources: list[str], constraints: str, top: str,
                clock_mhz: float, in_width: int = 32, out_width: int = 32,
                weight_ports: int = 0) -> str:
    """Tcl that creates the project, adds sources and builds the block design."""
    src = " ".join(f"[file join $here {s}]" for s in sources)
    board_part = board.board_part or ""
    lines = [
        f"# Generated by hdl.flow.vivado for {board.name} ({board.part()}). "
        "Run: vivado -mode batch -source build.tcl",
        "set here [file dirname [file normalize [info script]]]",
        f"create_project {project} [file join $here {project}] -part {board.part()} -force",
        f'set board_part "{board_part}"',
        "set use_board_preset 0",
        'if {$board_part ne "" && [llength [get_board_parts -quiet $board_part]]} {',
        "    set_property board_part $board_part [current_project]",
        "    set use_board_preset 1",
        "}",
        f"add_files -norecurse [list {src}]",
        f"add_files -fileset constrs_1 -norecurse [file join $here {constraints}]",
        "update_compile_order -fileset sources_1",
        "",
        block_design_tcl(board, top=top, clock_mhz=clock_mhz, in_width=in_width,
                         out_width=out_width, weight_ports=weight_ports),
        f"set bd_file [get_files {BD_NAME}.bd]",
        "generate_target all $bd_file",
        "set wrapper [make_wrapper -files $bd_file -top]",
        "add_files -norecurse $wrapper",
        f"set_property top {BD_NAME}_wrapper [current_fileset]",
        "update_compile_order -fileset sources_1",
    ]
    return "\n".join(lines) + "\n"


def build_tcl(*, project: str, jobs: int = 2) -> str:
    """Tcl that creates the project, then runs to a bitstream and exports the hardware."""
    return "\n".join([
        "# Synthesis, implementation, bitstream, hardware export.",
        "set here [file dirname [file normalize [info script]]]",
        "source [file join $here create_project.tcl]",
        f"launch_runs impl_1 -to_step write_bitstream -jobs {jobs}",
        "wait_on_run impl_1",
        'if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {',
        '    error "implementation failed: see the impl_1 run log"',
        "}",
        "open_run impl_1",
        "report_utilization -file [file join $here utilization.rpt]",
        "report_timing_summary -file [file join $here timing.rpt]",
        f"write_hw_platform -fixed -include_bit -force -file [file join $here {BD_NAME}.xsa]",
        "set run_dir [get_property DIRECTORY [get_runs impl_1]]",
        "set bits [glob -nocomplain -directory $run_dir *.bit]",
        'if {![llength $bits]} { error "no bitstream in $run_dir" }',
        f"file copy -force [lindex $bits 0] [file join $here {project}.bit]",
        f"set hwh [lindex [get_files -all -quiet {BD_NAME}.hwh] 0]",
        f'if {{$hwh ne ""}} {{ file copy -force $hwh [file join $here {project}.hwh] }}',
        f'puts "bitstream: [file join $here {project}.bit]"',
    ]) + "\n"


def constraints_xdc(board) -> str:
    lines = [
        f"# {board.description}: the accelerator uses no package pins; its clock",
        "# (the PS fabric clock) is constrained by the PS IP.",
        "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, kw_only=True)
class VivadoProject:
    """Paths written by :func:`write_project`."""

    out_dir: Path
    project: str
    sources: tuple
    constraints: Path
    create_tcl: Path
    build_tcl: Path
    build_sh: Path
    bitstream: Path


@dataclass(frozen=True, kw_only=True)
class VivadoRun:
    """Outcome of :func:`run_vivado`: ``ran`` is False when Vivado is not on PATH."""

    ran: bool
    ok: bool
    message: str
    returncode: int | None = None
    log: Path | None = None


def write_project(out_dir: str | os.PathLike, *, board, top: str,
                  sources: Mapping[str, str], clock_mhz: float | None = None,
                  project: str = "qnn", in_width: int = 32, out_width: int = 32,
                  jobs: int = 2, weight_ports: int = 0) -> VivadoProject:
    """Write the Verilog ``sources`` (file name -> text) and the Vivado scripts.

    ``top`` is the module the block design references (the AXI wrapper); ``clock_mhz``
    defaults to the board's ``default_clock_mhz``.
    """
    from boards import ZynqPlatform
    if not (isinstance(board, type) and issubclass(board, ZynqPlatform)):
        raise TypeError(f"board must be a boards.ZynqPlatform class, not {board!r}")
    if not isinstance(top, str) or not top.isidentifier():
        raise ValueError(f"top must be a Verilog module name, not {top!r}")
    if not isinstance(project, str) or not project.isidentifier():
        raise ValueError(f"project must be an identifier, not {project!r}")
    if not sources:
        raise ValueError("sources must hold at least the accelerator's Verilog")
    if clock_mhz is None:
        clock_mhz = board.default_clock_mhz
    if not isinstance(clock_mhz, (int, float)) or not 1 <= clock_mhz <= 800:
        raise ValueError(f"clock must be between 1 and 800 MHz, not {clock_mhz!r}")
    for label, width in (("in_width", in_width), ("out_width", out_width)):
        if width not in (32, 64, 128):
            raise ValueError(f"{label} must be 32, 64 or 128 (the PS ports' widths), not {width!r}")
    out = Path(out_dir)
    (out / "hdl").mkdir(parents=True, exist_ok=True)
    rel_sources = []
    for name, text in sources.items():
        if Path(name).name != name or not name.endswith((".v", ".sv")):
            raise ValueError(f"source names must be plain .v/.sv file names, not {name!r}")
        (out / "hdl" / name).write_text(text)
        rel_sources.append(f"hdl/{name}")
    (out / "constraints.xdc").write_text(constraints_xdc(board))
    (out / "create_project.tcl").write_text(project_tcl(
        board, project=project, sources=rel_sources, constraints="constraints.xdc", top=top,
        clock_mhz=float(clock_mhz), in_width=in_width, out_width=out_width,
        weight_ports=weight_ports))
    (out / "build.tcl").write_text(build_tcl(project=project, jobs=jobs))
    sh = out / "build.sh"
    sh.write_text("#!/bin/sh\n# Vivado batch build: project, block design, bitstream, .xsa\n"
                  'cd "$(dirname "$0")" && exec vivado -mode batch -nojournal '
                  "-log vivado.log -source build.tcl\n")
    sh.chmod(0o755)
    return VivadoProject(out_dir=out, project=project, sources=tuple(rel_sources),
                         constraints=out / "constraints.xdc",
                         create_tcl=out / "create_project.tcl", build_tcl=out / "build.tcl",
                         build_sh=sh, bitstream=out / f"{project}.bit")


def run_vivado(out_dir: str | os.PathLike, *, timeout: float | None = None,
               echo=None) -> VivadoRun:
    """Run ``build.tcl`` in ``out_dir`` when ``vivado`` is on PATH; else say it is ready.

    Vivado's output goes line by line to ``echo`` (default: stderr) while it runs, and
    into ``vivado.log``; ``timeout`` (seconds) kills it.
    """
    out = Path(out_dir)
    if not (out / "build.tcl").exists():
        raise FileNotFoundError(f"{out / 'build.tcl'} not found: call write_project first")
    exe = toolchain.vivado_path()
    if exe is None:
        return VivadoRun(ran=False, ok=True, message=(
            f"Vivado not on PATH: the project is ready, run `{out / 'build.sh'}` "
            f"(vivado -mode batch -source build.tcl) on a machine with Vivado"))
    log = out / "vivado.log"
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    returncode = _stream([exe, "-mode", "batch", "-nojournal", "-log", str(log),
                          "-source", "build.tcl"], cwd=out, timeout=timeout, echo=echo)
    ok = returncode == 0
    msg = (f"bitstream written: {out}" if ok else
           f"Vivado failed (exit {returncode}); see {log}")
    return VivadoRun(ran=True, ok=ok, message=msg, returncode=returncode, log=log)


def _stream(cmd: list, *, cwd, timeout: float | None, echo) -> int:
    """Run ``cmd``, handing each line of its output to ``echo`` as it comes; kill it after
    ``timeout`` seconds (exit code then -9)."""
    import threading
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1)
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
    try:
        for line in proc.stdout:
            echo(line.rstrip("\n"))
        return proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if timer is not None:
            timer.cancel()


#: The PS fabric clock that drives the accelerator, by PS kind (Vivado's clock names).
FABRIC_CLOCK = {"ps7": "clk_fpga_0", "ps8": "clk_pl_0"}


def _table_rows(text: str) -> dict:
    """``| Site Type | Used | ...`` rows of a Vivado table: name -> first number."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.lstrip().startswith("|"):
            continue
        name = cells[0].rstrip("*").strip()
        try:
            used = float(cells[1])
        except ValueError:
            continue
        rows.setdefault(name, used)
    return rows


def parse_utilization(text: str) -> dict:
    """``report_utilization`` text -> ``{lut, ff, bram18, uram, dsp}`` (used).

    Reads the UltraScale+ names (CLB LUTs, CLB Registers) and the 7-series ones (Slice
    LUTs, Slice Registers); block RAM counts RAMB36 as two BRAM18.
    """
    rows = _table_rows(text)

    def first(*names):
        for name in names:
            if name in rows:
                return rows[name]
        return None

    lut, ff = first("CLB LUTs", "Slice LUTs"), first("CLB Registers", "Slice Registers")
    if lut is None or ff is None:
        raise ValueError("not a Vivado utilization report: no 'CLB LUTs'/'Slice LUTs' row")
    ramb36, ramb18, tiles = first("RAMB36/FIFO", "RAMB36"), first("RAMB18"), first("Block RAM Tile")
    if ramb36 is not None or ramb18 is not None:
        bram18 = 2 * (ramb36 or 0) + (ramb18 or 0)
    else:
        bram18 = 2 * (tiles or 0)
    return {"lut": int(lut), "ff": int(ff), "bram18": int(round(bram18)),
            "uram": int(first("URAM") or 0), "dsp": int(first("DSPs", "DSP48E1", "DSP48E2") or 0)}


def parse_timing(text: str, clock: str | None = None) -> dict:
    """``report_timing_summary`` text -> ``{wns_ns, tns_ns, whs_ns, clock, period_ns,
    target_mhz, achieved_mhz, met}``; ``achieved_mhz = 1000 / (period - WNS)`` for
    ``clock`` (default: the first clock of the Clock Summary)."""
    lines = text.splitlines()
    values = None
    for n, line in enumerate(lines):
        if line.split()[:2] == ["WNS(ns)", "TNS(ns)"]:
            for row in lines[n + 1:n + 4]:
                parts = row.split()
                if parts and not set(parts[0]) <= {"-"}:
                    values = parts
                    break
            break
    if values is None:
        raise ValueError("not a Vivado timing summary: no 'Design Timing Summary' table")
    header = re.split(r"\s{2,}", lines[n].strip())       # columns: two or more spaces apart
    wns = float(values[0])
    tns = float(values[1])
    whs = float(values[header.index("WHS(ns)")]) if "WHS(ns)" in header else None
    clocks = {}
    for line in lines:
        m = re.match(r"^\s*(\S+)\s+\{[\d.\s]+\}\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m:
            clocks.setdefault(m.group(1), (float(m.group(2)), float(m.group(3))))
    if not clocks:
        raise ValueError("not a Vivado timing summary: no 'Clock Summary' table")
    name = clock if clock in clocks else next(iter(clocks))
    period, target = clocks[name]
    return {"wns_ns": wns, "tns_ns": tns, "whs_ns": whs, "clock": name, "period_ns": period,
            "target_mhz": target, "achieved_mhz": round(1000.0 / (period - wns), 3),
            "met": wns >= 0 and (whs is None or whs >= 0)}


def vivado_figures(out_dir: str | os.PathLike, ps: str) -> dict | None:
    """The utilization and timing of a finished Vivado run in ``out_dir`` (None without
    both reports)."""
    out = Path(out_dir)
    util, timing = out / "utilization.rpt", out / "timing.rpt"
    if not (util.exists() and timing.exists()):
        return None
    return {**parse_utilization(util.read_text(errors="replace")),
            **parse_timing(timing.read_text(errors="replace"), FABRIC_CLOCK.get(ps))}
