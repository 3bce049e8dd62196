"""Addressing LUT ROMs (weights, thresholds, schedules) without logic in front of them.

Yosys merges the register that drives a ROM's address into the read port, then decodes
the ROM from that register's *next-state* logic. A counter that increments there puts a
carry chain and its wrap multiplexer in front of the decoder, and ABC can no longer
use the wide multiplexers (MUXF7/MUXF8) on the address bits: a deeper and larger ROM.
:func:`rom_counter` keeps the increment in a successor register, so the next state is a
2:1 multiplexer of two registers.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal

__all__ = ["rom_counter"]


def rom_counter(m: Module, count: int, step, name: str, *, start: int = 0) -> Signal:
    """A counter ``0, 1, .., count - 1, 0, ..`` that moves when ``step`` is 1; reset
    ``start``.

    Its next value is ``Mux(step, successor, value)`` with the successor held in a
    register, for use as a ROM address (see the module docstring)."""
    value = Signal(range(count), init=start % count, name=name)
    if count > 1:
        succ = Signal(range(count), init=(start + 1) % count, name=f"{name}_succ")
        with m.If(step):
            m.d.sync += [value.eq(succ), succ.eq(Mux(succ == count - 1, 0, succ + 1))]
    return value
