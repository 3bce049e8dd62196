"""Xilinx Zynq board definitions.

Each board is an ``amaranth.vendor.XilinxPlatform`` subclass in the manner of
amaranth-boards that also carries its resource capacity, processing-system kind, default
fabric clock and Yosys synthesis family (see :mod:`boards._base`).

=========  =================================  =====================  ====  ========
name       board                              part                   PS    clock
=========  =================================  =====================  ====  ========
zcu102     Xilinx ZCU102                      xczu9eg-ffvb1156-2-e   ps8   200 MHz
zcu104     Xilinx ZCU104                      xczu7ev-ffvc1156-2-e   ps8   200 MHz
pynq-z2    TUL PYNQ-Z2                        xc7z020clg400-1        ps7   100 MHz
zc706      Xilinx ZC706                       xc7z045ffg900-2        ps7   100 MHz
ax7z035    ALINX AX7Z035 (Zynq-7035 board)    xc7z035ffg676-2        ps7   100 MHz
=========  =================================  =====================  ====  ========

``get(name)`` returns the platform class; an unknown name raises ``ValueError`` listing
the known ones.
"""

from __future__ import annotations

from ._base import RESOURCE_KEYS, Capacity, ZynqPlatform
from .ax7z035 import AX7Z035Platform
from .pynq_z2 import PynqZ2Platform
from .zc706 import ZC706Platform
from .zcu102 import ZCU102Platform
from .zcu104 import ZCU104Platform

__all__ = ["BOARDS", "get", "Capacity", "ZynqPlatform", "RESOURCE_KEYS",
           "ZCU102Platform", "ZCU104Platform", "PynqZ2Platform", "ZC706Platform",
           "AX7Z035Platform"]

#: Command-line name -> platform class.
BOARDS: dict[str, type[ZynqPlatform]] = {
    cls.name: cls for cls in (ZCU102Platform, ZCU104Platform, PynqZ2Platform,
                              ZC706Platform, AX7Z035Platform)
}


def get(name: str) -> type[ZynqPlatform]:
    """The platform class of the board called ``name`` (case-insensitive)."""
    if not isinstance(name, str):
        raise TypeError(f"board name must be a str, not {name!r}")
    key = name.strip().lower().replace("_", "-")
    if key not in BOARDS:
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(BOARDS)}")
    return BOARDS[key]
