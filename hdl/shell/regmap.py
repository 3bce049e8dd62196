"""The accelerator's AXI4-Lite register map, beat packing and the shell's frame floors,
without Amaranth.

The host driver imports this module, the register block builds its address decode from
:data:`REGISTER_MAP`, and docs/hardware.md shows the same table. Registers are 32 bits
at byte offsets; other offsets read 0, writes to them and to read-only registers are
ignored, every response is OKAY.

Packing (docs/hardware.md): ``floor(TDATA / bits)`` input codes per beat, each in a
``bits``-wide slot, lowest index in the lowest bits (:func:`codes_per_beat`); output
32-bit words, scores then the label. The shell's own per-frame floors, which the
network's cycle model adds: :func:`input_beats_per_frame`,
:func:`output_cycles_per_frame` and :func:`shell_floor_cycles`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Register", "REGISTER_MAP", "REGISTERS", "RegisterValues", "WORD", "ADDR_WIDTH",
           "DEFAULT_IDENT", "DEFAULT_VERSION", "STATUS_BUSY", "STATUS_ERR_SHORT",
           "STATUS_ERR_LONG", "CONTROL_SOFT_RESET", "CONTROL_CLEAR", "TDATA_WIDTHS",
           "MAX_CODE_BITS", "MAX_BATCH", "check_tdata_width", "code_slot_bits",
           "codes_per_beat", "input_beats_per_frame", "output_words_per_frame",
           "output_beats_per_frame", "output_cycles_per_frame", "shell_floor_cycles",
           "pack_in_format", "unpack_in_format"]

#: Width of every register and of each output word.
WORD = 32
#: AXI4-Lite address width: a 4 KiB window, the smallest a Vivado address map assigns.
ADDR_WIDTH = 12
DEFAULT_IDENT = 0x514E4E41          # ASCII "QNNA"
DEFAULT_VERSION = 0x00020000        # major 2 (dense packing, batches), minor 0
#: TDATA widths the AXI-Stream ports take (the AXI DMA's stream widths from 32 bits).
TDATA_WIDTHS = (32, 64, 128, 256, 512, 1024)
#: Widest input code.
MAX_CODE_BITS = 16
#: Largest BATCH value (frames per DMA transfer).
MAX_BATCH = (1 << 16) - 1

#: STATUS bits.
STATUS_BUSY, STATUS_ERR_SHORT, STATUS_ERR_LONG = 1, 2, 4
#: CONTROL bits (self-clearing).
CONTROL_SOFT_RESET, CONTROL_CLEAR = 1, 2


@dataclass(frozen=True)
class Register:
    """One register: ``source`` names what a read returns (a :class:`RegisterValues`
    field for the constant registers, a live value otherwise); write-only registers
    have none and read 0."""

    name: str
    offset: int
    access: str                 # "R", "W" or "RW"
    source: str | None
    meaning: str


REGISTER_MAP: tuple[Register, ...] = (
    Register("ID", 0x00, "R", "ident",
             '`0x514E4E41` ("QNNA") unless the build sets another'),
    Register("VERSION", 0x04, "R", "version", "`0x00020000` (major 2, minor 0)"),
    Register("FRAMES_DONE", 0x08, "R", "frames_done",
             "output frames completed (label beats accepted by the DMA), wraps at 2^32"),
    Register("CYCLES", 0x0C, "R", "cycles",
             "clock cycles during which at least one frame was in flight (from its first "
             "input beat to its TLAST output beat), wraps at 2^32"),
    Register("STATUS", 0x10, "R", "status",
             "bit 0 busy (a frame in flight, or a soft reset waiting for the weight "
             "streamers' reads in flight; registered, so it and CYCLES follow the "
             "datapath a cycle late), bit 1 short error (TLAST before the end of "
             "the batch), bit 2 long error (no TLAST at the end of the batch)"),
    Register("CONTROL", 0x14, "W", None,
             "bit 0: soft reset of the datapath (network, adapters, in-flight count); "
             "bit 1: clear FRAMES_DONE, CYCLES and the error flags. Self-clearing, reads 0"),
    Register("IN_ELEMENTS", 0x18, "R", "in_elements", "input codes per frame"),
    Register("CLASSES", 0x1C, "R", "classes", "scores per frame"),
    Register("IN_FORMAT", 0x20, "R", "in_format",
             "bits 7:0 input code bits; 15:8 bits per code slot in TDATA (= code bits: "
             "dense); 23:16 input TDATA bytes; 31:24 output TDATA bytes"),
    Register("BATCH", 0x24, "RW", "batch",
             "frames per input transfer (TLAST on the last beat of its last frame), and "
             "per output transfer; 1..65535, a write of 0 stores 1; reset value 1"),
    # Weights from DDR (helper ddr, issue 18): present on every top, used by cores with
    # streamed stages (hdl.flow.network, weights="ddr").
    Register("WEIGHT_BASE_LO", 0x40, "W", None,
             "bits 31:0 of the DDR byte address of the weight buffer (4 KiB aligned, bits "
             "11:0 ignored); writing it starts the weight streamers"),
    Register("WEIGHT_BASE_HI", 0x44, "W", None,
             "bits 63:32 of that address (write before WEIGHT_BASE_LO)"),
)

#: Register byte offsets by name.
REGISTERS: dict[str, int] = {r.name: r.offset for r in REGISTER_MAP}


@dataclass(frozen=True, kw_only=True)
class RegisterValues:
    """What the constant registers read; each value must fit in 32 bits."""

    ident: int = DEFAULT_IDENT
    version: int = DEFAULT_VERSION
    in_elements: int = 0
    classes: int = 0
    in_format: int = 0

    def __post_init__(self):
        for name in ("ident", "version", "in_elements", "classes", "in_format"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not 0 <= value < 1 << WORD:
                raise ValueError(f"{name} must fit in 32 bits, not {value:#x}")


def _check_count(name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


def check_tdata_width(name: str, value) -> None:
    """Raise ``ValueError`` unless ``value`` is one of :data:`TDATA_WIDTHS`."""
    if isinstance(value, bool) or value not in TDATA_WIDTHS:
        raise ValueError(f"{name} must be one of {', '.join(map(str, TDATA_WIDTHS))}, "
                         f"not {value!r}")


def _check_code_bits(bits) -> None:
    _check_count("input code bits", bits)
    if bits > MAX_CODE_BITS:
        raise ValueError(f"input code bits must be at most {MAX_CODE_BITS}, not {bits}")


def code_slot_bits(bits: int) -> int:
    """Bits an input code occupies in TDATA: its own width (dense packing)."""
    _check_code_bits(bits)
    return bits


def codes_per_beat(bits: int, in_width: int) -> int:
    """Input codes per beat: ``floor(in_width / bits)`` (32 one-bit codes in 32 bits)."""
    check_tdata_width("input TDATA width", in_width)
    return in_width // code_slot_bits(bits)


def input_beats_per_frame(frame_elements: int, bits: int, in_width: int) -> int:
    """Input beats of one frame, ``ceil(frame_elements / codes_per_beat)``: the input
    floor of the frame interval (the shell takes at most one beat per cycle)."""
    _check_count("frame_elements", frame_elements)
    return -(-frame_elements // codes_per_beat(bits, in_width))


def output_words_per_frame(classes: int) -> int:
    """32-bit output words of one frame: the scores and the label."""
    _check_count("classes", classes)
    return classes + 1


def output_beats_per_frame(classes: int, out_width: int) -> int:
    """Output beats of one frame (each frame starts a new beat)."""
    check_tdata_width("output TDATA width", out_width)
    return -(-output_words_per_frame(classes) // (out_width // WORD))


def output_cycles_per_frame(classes: int) -> int:
    """The output floor of the frame interval: the output adapter writes one word per
    cycle, ``classes + 1`` cycles (scores and label) whatever the width."""
    return output_words_per_frame(classes)


def shell_floor_cycles(frame_elements: int, bits: int, classes: int, *, in_width: int = 32,
                       out_width: int = 32) -> int:
    """The fewest cycles per frame the AXI shell allows in steady state (free-running
    DMA, back-to-back frames of a batch): the larger of the input and output floors.
    The generated top's frame interval is the larger of this and the network's."""
    check_tdata_width("output TDATA width", out_width)
    return max(input_beats_per_frame(frame_elements, bits, in_width),
               output_cycles_per_frame(classes))


def pack_in_format(bits: int, in_width: int, out_width: int) -> int:
    """The IN_FORMAT value for ``bits``-bit input codes and the TDATA widths in bits."""
    check_tdata_width("input TDATA width", in_width)
    check_tdata_width("output TDATA width", out_width)
    return (bits | code_slot_bits(bits) << 8 | (in_width // 8) << 16
            | (out_width // 8) << 24)


def unpack_in_format(value: int) -> dict:
    """IN_FORMAT -> ``{"bits", "slot_bits", "in_width", "out_width"}`` (widths in bits)."""
    return {"bits": value & 0xFF, "slot_bits": (value >> 8) & 0xFF,
            "in_width": ((value >> 16) & 0xFF) * 8, "out_width": ((value >> 24) & 0xFF) * 8}
