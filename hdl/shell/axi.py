"""The board top: a network core with AXI ports named the Xilinx way, and its Verilog wrapper.

* :class:`AxiTop`: the core between :class:`~hdl.shell.adapters.AxisInput` and
  :class:`~hdl.shell.adapters.AxisOutput`, with the
  :class:`~hdl.shell.registers.AXI4LiteRegisters` and the in-flight frame count. Its
  ports are flat and carry the Xilinx names (``s_axi_awaddr``, ``s_axis_tdata``,
  ``m_axis_tlast``, ...): Amaranth would name a nested member ``s_axis__tdata``, which
  Vivado does not infer, and the cocotb tests drive these names.
* :func:`verilog_wrapper`: the Verilog module the Vivado block design instantiates as a
  module reference (``aclk``/``aresetn`` and ``X_INTERFACE_INFO`` attributes, so that
  Vivado sees one AXI4-Lite and two AXI-Stream interfaces on one clock).
* :func:`build_sources`: both Verilog files of a board build.

This is the only module that knows the Xilinx port names; inside, AXI-Stream is an
``amaranth.lib.stream`` of :func:`~hdl.shell.adapters.axis_layout`. Register map and
beat packing: :mod:`hdl.shell.regmap` and docs/hardware.md (the register constants are
re-exported here for the top's users).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, ResetInserter, Shape, Signal
from amaranth.hdl import ShapeCastable
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.engines.plumbing import StreamFIFO

from .adapters import AxisInput, AxisOutput, InputFormat, OutputFormat
from .registers import AXI4LiteRegisters, AXI4LiteSignature
from .regmap import (ADDR_WIDTH, CONTROL_CLEAR, CONTROL_SOFT_RESET, DEFAULT_IDENT,
                     DEFAULT_VERSION, REGISTERS, STATUS_BUSY, STATUS_ERR_LONG,
                     STATUS_ERR_SHORT, TDATA_WIDTHS, WORD, RegisterValues, code_slot_bits,
                     pack_in_format, shell_floor_cycles)

__all__ = ["AxiTop", "formats_for", "board_tdata_width", "verilog_wrapper", "build_sources",
           # re-exported from hdl.shell.regmap
           "REGISTERS", "DEFAULT_IDENT", "DEFAULT_VERSION", "ADDR_WIDTH", "STATUS_BUSY",
           "STATUS_ERR_SHORT", "STATUS_ERR_LONG", "CONTROL_SOFT_RESET", "CONTROL_CLEAR",
           "TDATA_WIDTHS", "code_slot_bits", "shell_floor_cycles"]

#: Most read bursts a weight master may have outstanding (``WeightStreamSpec.outstanding``).
MAX_OUTSTANDING = 16

#: TDATA width without a board: 32 bits.
DEFAULT_TDATA_WIDTH = 32

_AXI_LITE_PORTS = list(AXI4LiteSignature().members)
_AXIS_PORTS = ["tdata", "tkeep", "tlast", "tvalid", "tready"]


def _axis_members(prefix: str, data_width: int, *, master: bool) -> dict:
    fwd, back = (Out, In) if master else (In, Out)
    return {f"{prefix}_tdata": fwd(data_width), f"{prefix}_tkeep": fwd(data_width // 8),
            f"{prefix}_tlast": fwd(1), f"{prefix}_tvalid": fwd(1), f"{prefix}_tready": back(1)}


def _stream_elements(signature, port: str, flow) -> tuple[int, Shape]:
    members = signature.members
    member = members[port] if port in members else None
    if (member is None or not member.is_signature or member.flow != flow
            or not isinstance(member.signature, stream.Signature)):
        raise ValueError(f"core must have stream ports 'i' (In) and 'o' (Out), "
                         f"not a fitting '{port}'")
    layout = member.signature.members["payload"].shape
    if not isinstance(layout, data.ArrayLayout):
        raise TypeError(f"core payloads must be data.ArrayLayout, not {layout!r} on '{port}'")
    shape = layout.elem_shape
    return layout.length, shape.as_shape() if isinstance(shape, ShapeCastable) else Shape.cast(shape)


def board_tdata_width(board) -> int:
    """The AXI-Stream TDATA width of ``board`` (a ``boards`` platform class or instance):
    its ``axis_width`` (the width of its PS's high-performance ports: 64 bits on
    Zynq-7000, 128 on Zynq UltraScale+), or 32 for ``None``."""
    if board is None:
        return DEFAULT_TDATA_WIDTH
    width = getattr(board, "axis_width", None)
    if width is None:
        raise TypeError(f"board must be a boards platform with an axis_width, not {board!r}")
    return width


def formats_for(signature: wiring.Signature, *, frame_elements: int, classes: int,
                in_width: int = 32, out_width: int = 32,
                serial_input: bool = False) -> tuple[InputFormat, OutputFormat]:
    """The adapters' formats around a core of this ``signature`` (see :class:`AxiTop`);
    raises ``TypeError`` or ``ValueError`` when it or the parameters do not fit."""
    if not isinstance(signature, wiring.Signature):
        raise TypeError(f"signature must be a wiring.Signature, not {type(signature).__name__}")
    in_lanes, in_shape = _stream_elements(signature, "i", In)
    out_lanes, out_shape = _stream_elements(signature, "o", Out)
    if in_shape.signed:
        raise ValueError("core input codes must be unsigned")
    return (InputFormat(bits=in_shape.width, lanes=in_lanes, frame_elements=frame_elements,
                        data_width=in_width, serial=serial_input),
            OutputFormat(score_width=out_shape.width, lanes=out_lanes, classes=classes,
                         data_width=out_width))


class AxiTop(wiring.Component):
    """A network core with AXI ports: the module the block design instantiates.

    Parameters
    ----------
    core : wiring.Component
        With ``i: In(stream.Signature(ArrayLayout(unsigned(bits), in_lanes)))`` (input
        codes, tensor order) and ``o: Out(stream.Signature(ArrayLayout(signed(w),
        out_lanes)))`` (the ``classes`` scores of a frame).
    frame_elements, classes : int
        Input codes and scores per frame.
    in_width, out_width : int or None
        TDATA bits of the input and output streams (:data:`TDATA_WIDTHS`); ``None``:
        the board's (:func:`board_tdata_width`), 32 without a board.
    board : a ``boards`` platform class, or None
        Only for the default TDATA widths.
    serial_input : bool or None
        Repack the input codes one per cycle (:class:`~hdl.shell.adapters.InputFormat`,
        cheaper) instead of up to one TDATA beat per cycle. ``None``: what the core's
        description says (``core.spec.serial_input`` of a
        :class:`~hdl.flow.network.Network`), else not.
    frames_in_flight : int
        Depth of the FIFO of batch-end flags between the adapters: at most this many
        frames are between their last input beat and their label beat (more stall the
        input at a frame's end).
    ident, version : int
        What the ID and VERSION registers read.

    Ports
    -----
    ``s_axi_*`` (AXI4-Lite slave), ``s_axis_*`` (input codes), ``m_axis_*`` (scores and
    label); clock and reset are Amaranth's ``clk``/``rst`` (reset active high), which
    :func:`verilog_wrapper` turns into ``aclk``/``aresetn``. TKEEP is ignored on the
    input and all ones on the output. A DMA transfer carries BATCH frames (register,
    default 1), TLAST on its last beat, each way.

    The shell's floors of the frame interval (what the cycle model adds to the
    network's): :attr:`input_beats_per_frame`, :attr:`output_cycles_per_frame` and
    their maximum :attr:`floor_cycles` (the input's codes instead of its beats when it
    is serial); the same numbers without a top, at full rate:
    :func:`hdl.shell.regmap.shell_floor_cycles`.

    A soft reset (CONTROL bit 0) resets the core, both adapters and the in-flight count.
    With weight masters (``m_axi_w{k}_*``), the core's reset waits until their read
    bursts in flight have all been received (no new burst starts meanwhile, RREADY stays
    high); STATUS reads busy until then (docs/hardware.md).
    The parameters are checked as :func:`formats_for` and
    :class:`~hdl.shell.regmap.RegisterValues` check them.
    """

    def __init__(self, core: wiring.Component, *, frame_elements: int, classes: int,
                 in_width: int | None = None, out_width: int | None = None, board=None,
                 serial_input: bool | None = None, frames_in_flight: int = 32,
                 ident: int = DEFAULT_IDENT, version: int = DEFAULT_VERSION):
        if not isinstance(core, wiring.Component):
            raise TypeError(f"core must be a wiring.Component, not {type(core).__name__}")
        if serial_input is None:
            serial_input = bool(getattr(getattr(core, "spec", None), "serial_input", False))
        in_width = board_tdata_width(board) if in_width is None else in_width
        out_width = board_tdata_width(board) if out_width is None else out_width
        if (not isinstance(frames_in_flight, int) or isinstance(frames_in_flight, bool)
                or frames_in_flight < 1):
            raise ValueError(f"frames_in_flight must be a positive int, not {frames_in_flight!r}")
        self.frames_in_flight = frames_in_flight
        self.input_format, self.output_format = formats_for(
            core.signature, frame_elements=frame_elements, classes=classes, in_width=in_width,
            out_width=out_width, serial_input=serial_input)
        self.register_values = RegisterValues(
            ident=ident, version=version, in_elements=frame_elements, classes=classes,
            in_format=pack_in_format(self.input_format.bits, in_width, out_width))
        self.core = core
        self.frame_elements, self.classes = frame_elements, classes
        self.in_width, self.out_width = in_width, out_width
        members = {f"s_axi_{name}": member.flip()
                   for name, member in AXI4LiteSignature(ADDR_WIDTH, WORD).members.items()}
        members.update(_axis_members("s_axis", in_width, master=False))
        members.update(_axis_members("m_axis", out_width, master=True))
        #: Names ``w{k}`` of the core's AXI4 weight read masters (streamed stages).
        self.weight_ports = sorted((n for n in core.signature.members if n[:1] == "w" and n[1:].isdigit()),
                                   key=lambda n: int(n[1:]))
        for port in self.weight_ports:
            for name, member in core.signature.members[port].signature.members.items():
                members[f"m_axi_{port}_{name}"] = member
        super().__init__(members)

    @property
    def input_beats_per_frame(self) -> int:
        """Input beats of one frame: the shell's input floor (cycles per frame)."""
        return self.input_format.beats_per_frame

    @property
    def output_cycles_per_frame(self) -> int:
        """The output adapter's floor (cycles per frame), ``classes + 1``."""
        return self.output_format.cycles_per_frame

    @property
    def floor_cycles(self) -> int:
        """The shell's floor of the frame interval: the input beats (or codes, if the
        input is serial) or the output cycles, whichever is larger."""
        return max(self.input_format.cycles_per_frame, self.output_cycles_per_frame)

    def elaborate(self, platform):
        m = Module()
        soft_reset = Signal()          # the adapters, the batch ends, the in-flight count
        # the core: at once, or with weight masters once they are drained
        core_reset = Signal() if self.weight_ports else soft_reset
        m.submodules.regs = regs = AXI4LiteRegisters(self.register_values)
        m.submodules.core = ResetInserter(core_reset)(self.core)
        inp, out = AxisInput(self.input_format), AxisOutput(self.output_format)
        m.submodules.inp = ResetInserter(soft_reset)(inp)
        m.submodules.out = ResetInserter(soft_reset)(out)

        # Soft reset with weight bursts in flight: AXI has no way to cancel a read burst,
        # its R beats arrive anyway. So a soft reset first stops new bursts (the
        # streamers' enable low), keeps RREADY high (it always is) and counts the
        # outstanding bursts down; the core is reset when none is left and no ARVALID
        # waits, then the streamers restart from the image's start. Meanwhile the
        # adapters are held in reset (no frame enters) and STATUS reads busy.
        draining = Signal() if self.weight_ports else Const(0)
        if self.weight_ports:
            idle = []
            for port in self.weight_ports:
                g = (lambda name: getattr(self, f"m_axi_{port}_{name}"))
                bursts = Signal(range(MAX_OUTSTANDING + 1), name=f"{port}_outstanding")
                m.d.sync += bursts.eq(bursts + (g("arvalid") & g("arready"))
                                      - (g("rvalid") & g("rready") & g("rlast")))
                idle.append((bursts == 0) & ~g("arvalid"))
            drained = Signal()
            m.d.comb += [
                drained.eq(Cat(*idle).all()),
                soft_reset.eq(regs.soft_reset | draining),
                core_reset.eq(soft_reset & drained),
            ]
            with m.If(soft_reset):
                m.d.sync += draining.eq(~drained)
        else:                          # no weight master: everything at once, as before
            m.d.comb += soft_reset.eq(regs.soft_reset)

        for name in _AXI_LITE_PORTS:
            outer, inner = getattr(self, f"s_axi_{name}"), getattr(regs.bus, name)
            if self.signature.members[f"s_axi_{name}"].flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
        m.d.comb += [
            inp.i.valid.eq(self.s_axis_tvalid),
            inp.i.payload.data.eq(self.s_axis_tdata),
            inp.i.payload.last.eq(self.s_axis_tlast),
            self.s_axis_tready.eq(inp.i.ready),
            self.m_axis_tvalid.eq(out.o.valid),
            self.m_axis_tdata.eq(out.o.payload.data),
            self.m_axis_tlast.eq(out.o.payload.last),
            self.m_axis_tkeep.eq(Const(-1, len(self.m_axis_tkeep))),
            out.o.ready.eq(self.m_axis_tready),
        ]
        wiring.connect(m, inp.o, self.core.i)
        wiring.connect(m, self.core.o, out.i)
        # Which frames end a batch, from the input adapter to the output adapter.
        # (a StreamFIFO: its i.ready is a register, so the input's TREADY logic stays short)
        ends = StreamFIFO(1, self.frames_in_flight)
        m.submodules.ends = ResetInserter(soft_reset)(ends)
        m.d.comb += inp.batch.eq(regs.batch)
        wiring.connect(m, inp.ends, ends.i)
        wiring.connect(m, ends.o, out.ends)
        if self.weight_ports:
            m.d.comb += [self.core.weight_base.eq(regs.weight_base),
                         self.core.weight_enable.eq(regs.weight_enable & ~soft_reset)]
        for port in self.weight_ports:
            inner = getattr(self.core, port)
            for name, member in inner.signature.members.items():
                outer = getattr(self, f"m_axi_{port}_{name}")
                if member.flow == Out:
                    m.d.comb += outer.eq(getattr(inner, name))
                else:
                    m.d.comb += getattr(inner, name).eq(outer)

        # Frames in flight: started (first input beat) minus finished (label beat out).
        in_flight = Signal(16)
        with m.If(soft_reset):
            m.d.sync += in_flight.eq(0)
        with m.Elif(inp.frame_start & ~out.frame_done):
            m.d.sync += in_flight.eq(in_flight + 1)
        with m.Elif(~inp.frame_start & out.frame_done & (in_flight != 0)):
            m.d.sync += in_flight.eq(in_flight - 1)
        m.d.comb += [
            regs.busy.eq((in_flight != 0) | inp.frame_start | draining),
            regs.frame_done.eq(out.frame_done),
            regs.err_short.eq(inp.err_short),
            regs.err_long.eq(inp.err_long),
        ]
        return m


def verilog_wrapper(top: AxiTop, *, name: str, inner: str) -> str:
    """Verilog of module ``name``: ``aclk``/``aresetn`` and the AXI ports of ``top``,
    with ``X_INTERFACE_INFO`` attributes, instantiating ``inner`` (``top`` converted by
    ``amaranth.back.verilog.convert(top, name=inner)``, ports ``clk``, ``rst``, ...).
    """
    if not isinstance(top, AxiTop):
        raise TypeError(f"top must be an AxiTop, not {type(top).__name__}")
    for label, value in (("name", name), ("inner", inner)):
        if not isinstance(value, str) or not value.isidentifier():
            raise ValueError(f"{label} must be a Verilog identifier, not {value!r}")
    busif = ":".join(["s_axi", "s_axis", "m_axis"] + [f"m_axi_{p}" for p in top.weight_ports])
    decls = [
        '  (* X_INTERFACE_INFO = "xilinx.com:signal:clock:1.0 aclk CLK" *)',
        f'  (* X_INTERFACE_PARAMETER = "ASSOCIATED_BUSIF {busif}, '
        'ASSOCIATED_RESET aresetn" *)',
        "  input wire aclk,",
        '  (* X_INTERFACE_INFO = "xilinx.com:signal:reset:1.0 aresetn RST" *)',
        '  (* X_INTERFACE_PARAMETER = "POLARITY ACTIVE_LOW" *)',
        "  input wire aresetn,",
    ]
    conns = ["    .clk(aclk),", "    .rst(~aresetn),"]
    groups = (("s_axi", "xilinx.com:interface:aximm:1.0", _AXI_LITE_PORTS),
              ("s_axis", "xilinx.com:interface:axis:1.0", _AXIS_PORTS),
              ("m_axis", "xilinx.com:interface:axis:1.0", _AXIS_PORTS))
    groups += tuple((f"m_axi_{p}", "xilinx.com:interface:aximm:1.0",
                     list(top.core.signature.members[p].signature.members)) for p in top.weight_ports)
    ports = []
    for prefix, vlnv, names in groups:
        for k, port in enumerate(names):
            full = f"{prefix}_{port}"
            member = top.signature.members[full]
            direction = "input" if member.flow == In else "output"
            width = Shape.cast(member.shape).width
            rng = f"[{width - 1}:0] " if width > 1 else ""
            attrs = [f'  (* X_INTERFACE_INFO = "{vlnv} {prefix} {port.upper()}" *)']
            if k == 0 and prefix == "s_axi":
                attrs.append('  (* X_INTERFACE_PARAMETER = "PROTOCOL AXI4LITE, '
                             f'ADDR_WIDTH {ADDR_WIDTH}, DATA_WIDTH {WORD}" *)')
            if k == 0 and prefix.startswith("m_axi_w"):
                members = top.signature.members
                attrs.append('  (* X_INTERFACE_PARAMETER = "PROTOCOL AXI4, READ_WRITE_MODE '
                             f'READ_ONLY, ADDR_WIDTH {Shape.cast(members[prefix + "_araddr"].shape).width}, '
                             f'DATA_WIDTH {Shape.cast(members[prefix + "_rdata"].shape).width}" *)')
            ports.append((attrs, f"  {direction} wire {rng}{full}"))
            conns.append(f"    .{full}({full}),")
    lines = ["// Generated by hdl.shell.axi.verilog_wrapper: the block design's module reference.",
             f"module {name} ("]
    lines += decls
    for n, (attrs, decl) in enumerate(ports):
        lines += attrs
        lines.append(decl + ("," if n < len(ports) - 1 else ""))
    lines.append(");")
    conns[-1] = conns[-1].rstrip(",")
    lines.append(f"  {inner} core (")
    lines += conns
    lines.append("  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def build_sources(core: wiring.Component, *, frame_elements: int, classes: int,
                  name: str = "qnn_accel", in_width: int | None = None,
                  out_width: int | None = None, board=None, ident: int = DEFAULT_IDENT,
                  version: int = DEFAULT_VERSION) -> dict:
    """The Verilog files of a board build: ``{f"{name}_core.v": ..., f"{name}.v": ...}``.

    ``{name}_core.v`` is :class:`AxiTop` around ``core`` (module ``{name}_core``) and
    ``{name}.v`` the :func:`verilog_wrapper` (module ``name``), the module the Vivado
    block design references (``hdl.flow.vivado.write_project(..., top=name, sources=...)``).
    """
    from amaranth.back import verilog as amaranth_verilog
    top = AxiTop(core, frame_elements=frame_elements, classes=classes, in_width=in_width,
                 out_width=out_width, board=board, ident=ident, version=version)
    inner = f"{name}_core"
    return {f"{inner}.v": amaranth_verilog.convert(top, name=inner),
            f"{name}.v": verilog_wrapper(top, name=name, inner=inner)}
