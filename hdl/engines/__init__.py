"""The engines: one ``wiring.Component`` per layer kind, with stream ports, each built
from its description (``MVTUSpec``, ``SlidingWindowSpec``, ...; see
:mod:`hdl.engines.described`).

Compute engines (``MVTU``, ``ShiftMAC``, ``TileMVTU``, ``SparseCSC``) share the output stage of
:mod:`hdl.engines.threshold`; ``SlidingWindow`` and ``MaxPool`` handle the spatial
side; :mod:`hdl.engines.plumbing` holds FIFOs and width converters.
"""

from hdl.engines.mvtu import MVTU
from hdl.engines.plumbing import StreamFIFO, WidthConverter
from hdl.engines.pool import LabelSelect, MaxPool
from hdl.engines.shiftmac import ShiftMAC
from hdl.engines.sparse import SparseCSC
from hdl.engines.threshold import OutputStage
from hdl.engines.tiles import TileMVTU
from hdl.engines.window import SlidingWindow

from hdl.engines.mvtu import MVTUSpec
from hdl.engines.plumbing import StreamFIFOSpec, WidthConverterSpec
from hdl.engines.pool import MaxPoolSpec
from hdl.engines.threshold import OutputStageSpec
from hdl.engines.tiles import TileSpec
from hdl.engines.window import SlidingWindowSpec

__all__ = ["MVTU", "ShiftMAC", "TileMVTU", "SparseCSC", "OutputStage", "SlidingWindow", "MaxPool", "LabelSelect",
           "StreamFIFO", "WidthConverter",
           "MVTUSpec", "OutputStageSpec", "SlidingWindowSpec", "MaxPoolSpec", "StreamFIFOSpec",
           "WidthConverterSpec", "TileSpec"]
