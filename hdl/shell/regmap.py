"""The accelerator's AXI4-Lite register map and beat-packing constants, without Amaranth.

The host driver imports this module, the register block builds its address decode from
:data:`REGISTER_MAP`, and docs/hardware.md shows the same table. Registers are 32 bits
at byte offsets; other offsets read 0, writes to them and to read-only registers are
ignored, every response is OKAY.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Register", "REGISTER_MAP", "REGISTERS", "RegisterValues", "WORD", "ADDR_WIDTH",
           "DEFAULT_IDENT", "DEFAULT_VERSION", "STATUS_BUSY", "STATUS_ERR_SHORT",
           "STATUS_ERR_LONG", "CONTROL_SOFT_RESET", "CONTROL_CLEAR", "code_slot_bits",
           "pack_in_format", "unpack_in_format"]

#: Width of every register and of each output word.
WORD = 32
#: AXI4-Lite address width: a 4 KiB window, the smallest a Vivado address map assigns.
ADDR_WIDTH = 12
DEFAULT_IDENT = 0x514E4E41          # ASCII "QNNA"
DEFAULT_VERSION = 0x00010000        # major 1, minor 0

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
    access: str                 # "R" or "W"
    source: str | None
    meaning: str


REGISTER_MAP: tuple[Register, ...] = (
    Register("ID", 0x00, "R", "ident",
             '`0x514E4E41` ("QNNA") unless the build sets another'),
    Register("VERSION", 0x04, "R", "version", "`0x00010000` (major 1, minor 0)"),
    Register("FRAMES_DONE", 0x08, "R", "frames_done",
             "output frames completed (TLAST beats accepted by the DMA), wraps at 2^32"),
    Register("CYCLES", 0x0C, "R", "cycles",
             "clock cycles during which at least one frame was in flight (from its first "
             "input beat to its TLAST output beat), wraps at 2^32"),
    Register("STATUS", 0x10, "R", "status",
             "bit 0 busy (a frame in flight), bit 1 short-frame error, bit 2 long-frame "
             "error"),
    Register("CONTROL", 0x14, "W", None,
             "bit 0: soft reset of the datapath (network, adapters, in-flight count); "
             "bit 1: clear FRAMES_DONE, CYCLES and the error flags. Self-clearing, reads 0"),
    Register("IN_ELEMENTS", 0x18, "R", "in_elements", "input codes per frame"),
    Register("CLASSES", 0x1C, "R", "classes", "scores per frame"),
    Register("IN_FORMAT", 0x20, "R", "in_format",
             "bits 7:0 input code bits; 15:8 bytes per code slot; 23:16 input TDATA bytes; "
             "31:24 output TDATA bytes"),
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


def code_slot_bits(bits: int) -> int:
    """Bits an input code occupies in TDATA: 8 for codes of up to 8 bits, else 16."""
    return 8 if bits <= 8 else 16


def pack_in_format(bits: int, in_width: int, out_width: int) -> int:
    """The IN_FORMAT value for ``bits``-bit input codes and the TDATA widths in bits."""
    return bits | (code_slot_bits(bits) // 8) << 8 | (in_width // 8) << 16 | (out_width // 8) << 24


def unpack_in_format(value: int) -> dict:
    """IN_FORMAT -> ``{"bits", "slot_bytes", "in_width", "out_width"}`` (widths in bits)."""
    return {"bits": value & 0xFF, "slot_bytes": (value >> 8) & 0xFF,
            "in_width": ((value >> 16) & 0xFF) * 8, "out_width": ((value >> 24) & 0xFF) * 8}
