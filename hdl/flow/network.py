"""Network compiler: a model file becomes one streaming accelerator.

A model's layers group into *stages*: a ``conv`` or ``fc`` layer with the ``threshold``
after it (one compute engine with its fused output stage; a ``conv`` gets a sliding
window in front), or a ``maxpool``. The default engine of a compute stage follows from
the layer's weights: CSC weights run on the sparse engine, power-of-two weights on the
shift MAC, everything else on the MVTU (XNOR, binary-weight or int mode). Where the
weights have all-zero ``pe`` x ``simd`` tiles, the planner may put the stage on the
tile-skipping MVTU instead (:mod:`hdl.engines.tiles`, ``"tiles": true`` in a folding),
when that meets the target with fewer LUTs (:func:`lut_estimate`).

Stages are chained by streams; where one stage's output lanes differ from the next
stage's input lanes a width converter repacks them, and a small FIFO decouples every
pair of stages. Elements travel in tensor order ``(y, x, c)`` everywhere.

The cycle model (``Stage.cycles_per_frame``) is what folding is chosen by: a frame
takes as long as its slowest stage (the initiation interval), see :func:`plan`. What the
generated top does (:attr:`NetworkSpec.cycles_per_frame`) is that or the AXI shell's
own floor, whichever is larger (:func:`shell_floors`); FIFO depths come from the
stages' burst patterns (:func:`fifo_depth_for`).

Planning reads descriptions only (each stage's ``compute``, ``window`` and ``pool``,
and :class:`NetworkSpec` for the whole pipeline); engines are built by
:func:`build_engine` and :class:`Network`, to be elaborated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

from amaranth.hdl import Cat, Module, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl import ir
from hdl.engines.described import Described
from hdl.engines.mvtu import MVTU, RAM_STYLES, MVTUSpec
from hdl.engines.plumbing import StreamFIFO, WidthConverter, fifo_slots
from hdl.engines.pool import MaxPool, MaxPoolSpec
from hdl.engines.shiftmac import ShiftMAC
from hdl.engines.sparse import SparseCSC, SparseSpec
from hdl.engines.weightstream import AXI_BOUNDARY, AxiReadSignature, WeightStream, WeightStreamSpec
from hdl.engines.tiles import TileMVTU, TileSpec, tile_mask
from hdl.engines.window import SlidingWindow, SlidingWindowSpec

__all__ = ["Stage", "FoldingError", "plan", "choose_folding", "frame_cycles", "Network", "NetworkSpec",
           "ConvEngine", "build_engine", "engine_name", "burst_depth", "plan_ram_styles",
           "weight_memory", "bram18_estimate", "weight_bram_budget", "lut_estimate", "stage_cycle_options",
           "shell_floors", "fifo_depth_for", "FULL_RATE_FIFO_DEPTH", "FifoPlan", "plan_fifos",
           "latency_estimate", "SERIAL_INPUT_HEADROOM"]


#: Address width of the weight streamers' AXI masters (Zynq UltraScale+ HP ports: 49).
WEIGHT_ADDR_WIDTH = 40
#: Bursts a weight streamer keeps in flight: 4 bursts of 16 words cover a read latency
#: of up to ~48 cycles at one word per cycle (2 bursts ran at 0.65 words per cycle with
#: the ZCU104 model's 30 cycles, ``bench.alexnet``).
WEIGHT_OUTSTANDING = 4


class FoldingError(ValueError):
    """A requested folding cannot be implemented (names the layer and the parameter)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Stage:
    """One hardware stage and its folding, with the descriptions of its engines.

    ``pe``/``simd`` fold a compute stage (``simd`` input elements and ``pe`` output
    channels per cycle); a max-pool stage has ``pe == simd == lanes``. ``ram_style``
    places an engine's weight memories (:data:`hdl.engines.mvtu.RAM_STYLES`; the sparse
    engine's entry ROMs). ``weights="ddr"`` streams the engine's weight beats from DDR
    instead (:class:`hdl.engines.weightstream.WeightStream`, ``ddr_width``-bit AXI words):
    a dense layer's weight words (MVTU or shift MAC), a CSC layer's entry words (sparse
    engine, :meth:`hdl.engines.sparse.SparseSpec.weight_beats`). ``ddr_ports``
    (dividing ``pe``) splits the weight beat by PE groups over that many streamers, each
    with its own AXI master, for stages that need more than one port's bandwidth. ``tiles`` puts a compute
    stage on the tile-skipping MVTU (:class:`hdl.engines.tiles.TileMVTU`), whose input takes
    ``in_simd`` elements per beat (default ``simd``); a tile stage keeps its weights on chip.
    """
    name: str
    op: str
    layer: ir.Layer
    threshold: ir.Threshold | None
    in_spec: ir.TensorSpec
    out_spec: ir.TensorSpec
    pe: int
    simd: int
    ram_style: str = "auto"
    weights: str = "rom"
    ddr_width: int = 128
    ddr_ports: int = 1
    tiles: bool = False
    in_simd: int | None = None

    @property
    def streamed(self) -> bool:
        return self.weights == "ddr"

    @property
    def in_lanes(self) -> int:
        return self.in_simd or self.simd

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def engine(self) -> str:
        return engine_name(self.layer, self.in_spec.bits, tiles=self.tiles)

    @property
    def vectors_per_frame(self) -> int:
        """Input vectors of the compute engine per frame (output pixels of a conv)."""
        return self.window.out_pixels if isinstance(self.layer, ir.Conv) else 1

    @property
    def cycles_per_frame(self) -> int:
        """The cycle model; a streamed stage gets at most one DDR word per cycle (and a
        streamed sparse stage follows its streamed words, which may add fillers)."""
        if self.streamed and self.engine == "sparse":
            cycles = self.vectors_per_frame * self.compute.cycles_per_vector
            if self.window is not None:
                cycles = max(cycles, self.window.cycles_per_frame)
        else:
            cycles = stage_cycles(self.layer, self.in_spec, self.pe, self.simd, tiles=self.tiles,
                                  in_simd=self.in_simd)
        if self.streamed:
            cycles = max(cycles, self.vectors_per_frame * self.weight_stream.cycles_per_pass)
        return cycles

    @cached_property
    def weight_streams(self) -> list[WeightStreamSpec]:
        """The weight streamers' descriptions of a streamed stage (one per DDR port, each
        carrying ``pe / ddr_ports`` PEs' words), else empty."""
        if not self.streamed:
            return []
        spec = self.compute
        lane = Shape.cast(spec.weight_beat_layout.elem_shape).width      # one PE's word
        steps = spec.compute_cycles if self.engine == "sparse" else spec.neuron_folds * spec.synapse_folds
        return [WeightStreamSpec(unsigned(spec.pe // self.ddr_ports * lane), steps,
                                 data_width=self.ddr_width, burst_len=min(16, 4096 * 8 // self.ddr_width),
                                 outstanding=WEIGHT_OUTSTANDING)
                for _ in range(self.ddr_ports)]

    @property
    def weight_stream(self) -> WeightStreamSpec | None:
        """The first (or only) weight streamer's description, else None."""
        return self.weight_streams[0] if self.streamed else None

    def weight_parts(self) -> list[list[int]]:
        """Per DDR port, the beats it streams (its PEs' bits of ``weight_beats()``)."""
        part = self.weight_stream.beat_bits
        mask = (1 << part) - 1
        beats = self.compute.weight_beats()
        return [[(b >> (j * part)) & mask for b in beats] for j in range(self.ddr_ports)]

    @cached_property
    def compute(self):
        """The compute engine's description (``MVTUSpec`` for the MVTU and shift MAC,
        ``TileSpec`` for the tile-skipping MVTU, ``SparseSpec`` for the sparse engine);
        None for max-pool."""
        if isinstance(self.layer, ir.MaxPool):
            return None
        if self.tiles:
            return TileSpec.from_layer(self.layer, self.threshold, in_bits=self.in_spec.bits, pe=self.pe,
                                       simd=self.simd, in_simd=self.in_lanes, ram_style=self.ram_style)
        if self.engine == "sparse":
            return SparseSpec.from_layer(self.layer, self.threshold, in_bits=self.in_spec.bits,
                                         pe=self.pe, simd=self.simd, ram_style=self.ram_style,
                                         weight_source="stream" if self.streamed else "rom")
        return MVTUSpec.from_layer(self.layer, self.threshold, in_bits=self.in_spec.bits, pe=self.pe,
                                   simd=self.simd, ram_style=self.ram_style,
                                   weight_source="stream" if self.streamed else "rom")

    @property
    def window(self) -> SlidingWindowSpec | None:
        """The sliding window's description for a convolution, else None."""
        if not isinstance(self.layer, ir.Conv):
            return None
        return SlidingWindowSpec.for_conv(self.layer, self.in_spec, self.in_lanes)

    @property
    def pool(self) -> MaxPoolSpec | None:
        """The max-pool's description for a max-pool stage, else None."""
        if not isinstance(self.layer, ir.MaxPool):
            return None
        return MaxPoolSpec.for_layer(self.layer, self.in_spec, self.pe)


def engine_name(layer: ir.Layer, in_bits: int | None, *, tiles: bool = False) -> str:
    """Which engine runs a layer: by default decided by its weights alone (CSC weights on
    the sparse engine, on chip or streamed); ``tiles``: the tile-skipping MVTU
    (``shiftmac-tiles`` for pot weights, else ``mvtu-tiles``)."""
    if isinstance(layer, ir.MaxPool):
        return "maxpool"
    w = layer.weights
    if tiles:
        return "shiftmac-tiles" if w.kind == "pot" else "mvtu-tiles"
    if w.sparse:
        return "sparse"
    if w.kind == "pot":
        return "shiftmac"
    if w.kind == "binary":
        return "mvtu-xnor" if in_bits == 1 else "mvtu-binary"
    return "mvtu-int"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def stage_cycles(layer: ir.Layer, in_spec: ir.TensorSpec, pe: int, simd: int, *, tiles: bool = False,
                 in_simd: int | None = None) -> int:
    """Cycles per frame of one stage at a folding (the cycle model), from the engines'
    descriptions.

    * fc: the engine's cycles per vector, ``(out / pe) * (in / simd)``
      (:meth:`hdl.engines.mvtu.MVTUSpec.vector_cycles`);
    * conv: ``H' * W'`` vectors of ``K*K*C`` elements, or the window's own cycles per
      frame (:class:`hdl.engines.window.SlidingWindowSpec`) if that is larger (strides
      above the kernel);
    * sparse (CSC) fc / conv: the engine's cycles per vector (they follow the non-zero
      weights, see :class:`hdl.engines.sparse.SparseSpec`) instead of ``(out / pe) * (in / simd)``;
    * ``tiles``: the tile-skipping MVTU's ``max(in / in_simd, scheduled tiles)`` per vector
      (:meth:`hdl.engines.tiles.TileSpec.tile_cycles`, from the actual zero tiles), the
      window at ``in_simd`` lanes;
    * maxpool: :attr:`hdl.engines.pool.MaxPoolSpec.cycles_per_frame`,
      ``max(H * W, H' * W' * K * K) * C / lanes``.
    """
    if isinstance(layer, ir.MaxPool):
        return MaxPoolSpec.for_layer(layer, in_spec, pe).cycles_per_frame
    sparse = layer.weights.sparse
    if tiles:
        vector = TileSpec.tile_cycles(_matrix(layer), pe, simd, in_simd)
        if isinstance(layer, ir.FC):
            return vector
        window = SlidingWindowSpec.for_conv(layer, in_spec, in_simd or simd)
        return max(window.out_pixels * vector, window.cycles_per_frame)
    if isinstance(layer, ir.FC):
        if sparse:
            return _sparse_vector_cycles(layer, in_spec.bits, pe, simd)
        return MVTUSpec.vector_cycles(layer.out_features, in_spec.size, pe, simd)
    window = SlidingWindowSpec.for_conv(layer, in_spec, simd)
    if sparse:
        vector = _sparse_vector_cycles(layer, in_spec.bits, pe, simd)
    else:
        vector = MVTUSpec.vector_cycles(layer.out_channels, window.window_beats * simd, pe, simd)
    return max(window.out_pixels * vector, window.cycles_per_frame)


_SPARSE_CYCLES: dict = {}
_MATRICES: dict = {}


def _matrix(layer):
    """The layer's dense weight-value matrix, cached per layer object."""
    hit = _MATRICES.get(id(layer))
    if hit is None or hit[0] is not layer:
        hit = _MATRICES[id(layer)] = (layer, layer.weights.matrix())
    return hit[1]


def has_zero_tiles(layer, pe: int, simd: int) -> bool:
    """Whether the layer's weights have an all-zero ``pe`` x ``simd`` tile."""
    return not tile_mask(_matrix(layer), pe, simd).all()


def _sparse_vector_cycles(layer, in_bits: int, pe: int, simd: int) -> int:
    """Steady-state cycles per input vector of the sparse engine at a folding: they
    depend on where the non-zero weights are, so they come from the engine's own cycle
    model (:attr:`hdl.engines.sparse.SparseSpec.cycles_per_vector`), cached per layer."""
    key = (id(layer), in_bits, pe, simd)
    hit = _SPARSE_CYCLES.get(key)
    if hit is None or hit[0] is not layer:
        spec = SparseSpec.from_layer(layer, None, in_bits=in_bits, pe=pe, simd=simd)
        hit = _SPARSE_CYCLES[key] = (layer, spec.cycles_per_vector)
    return hit[1]


def _groups(model: ir.Model):
    """(layer, threshold or None, input spec, output spec) per stage."""
    specs = model.specs()
    groups = []
    i = 0
    while i < len(model.layers):
        layer = model.layers[i]
        threshold = None
        if isinstance(layer, (ir.Conv, ir.FC)) and i + 1 < len(model.layers) \
                and isinstance(model.layers[i + 1], ir.Threshold):
            threshold = model.layers[i + 1]
        out_index = i + (2 if threshold is not None else 1)
        groups.append((layer, threshold, specs[i], specs[out_index]))
        i = out_index
    return groups


def _check_folding(layer, in_spec, pe, simd, tiles=False, in_simd=None):
    where = f"layer '{layer.name}'"
    for label, value in (("pe", pe), ("simd", simd)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FoldingError(f"{where}: {label} must be a positive integer, not {value!r}")
    if not isinstance(tiles, bool):
        raise FoldingError(f"{where}: tiles must be true or false, not {tiles!r}")
    if tiles and isinstance(layer, ir.MaxPool):
        raise FoldingError(f"{where}: tiles applies to conv and fc stages only")
    if in_simd is not None:
        if not isinstance(in_simd, int) or isinstance(in_simd, bool) or in_simd < 1:
            raise FoldingError(f"{where}: in_simd must be a positive integer, not {in_simd!r}")
        if in_simd != simd and not tiles:
            raise FoldingError(f"{where}: in_simd {in_simd} != simd {simd} needs the tile engine "
                               f"(\"tiles\": true)")
        width = in_spec.shape[2] if isinstance(layer, ir.Conv) else in_spec.size
        what = "input channel count" if isinstance(layer, ir.Conv) else "input width"
        if in_simd % simd or width % in_simd:
            raise FoldingError(f"{where}: in_simd must be a multiple of SIMD {simd} dividing the "
                               f"{what} {width}, not {in_simd}")
    h, w, c = in_spec.shape
    if isinstance(layer, ir.MaxPool):
        if pe != simd or c % pe:
            raise FoldingError(f"{where}: max-pool lanes must divide the channel count {c} "
                               f"(pe == simd), not pe={pe} simd={simd}")
        return
    outputs = layer.out_channels if isinstance(layer, ir.Conv) else layer.out_features
    if outputs % pe:
        raise FoldingError(f"{where}: PE must divide the output count {outputs}, not {pe}")
    if isinstance(layer, ir.Conv):
        if c % simd:
            raise FoldingError(f"{where}: SIMD must divide the input channel count {c}, not {simd}")
    elif in_spec.size % simd:
        raise FoldingError(f"{where}: SIMD must divide the input width {in_spec.size}, not {simd}")


def _check_ram_style(layer, in_spec, ram_style):
    if ram_style not in RAM_STYLES:
        raise FoldingError(f"layer '{layer.name}': ram_style must be one of {', '.join(RAM_STYLES)}, "
                           f"not {ram_style!r}")
    if ram_style != "auto" and isinstance(layer, ir.MaxPool):
        raise FoldingError(f"layer '{layer.name}': ram_style applies to the engines' weight "
                           f"memories only; this stage has none")


def _fold_options(layer, in_spec):
    """Every legal (pe, simd) of a stage."""
    h, w, c = in_spec.shape
    if isinstance(layer, ir.MaxPool):
        return [(d, d) for d in _divisors(c)]
    outputs = layer.out_channels if isinstance(layer, ir.Conv) else layer.out_features
    simds = _divisors(c) if isinstance(layer, ir.Conv) else _divisors(in_spec.size)
    return [(p, s) for p in _divisors(outputs) for s in simds]


def _in_simd_options(layer, in_spec, simd: int) -> list[int]:
    """Legal ``in_simd`` of the tile engine at ``simd``: multiples dividing the input
    channel count (conv, the window's beat) or the input width (fc), smallest first."""
    width = in_spec.shape[2] if isinstance(layer, ir.Conv) else in_spec.size
    return [k for k in range(simd, width + 1, simd) if width % k == 0]


def _tile_options(layer, in_spec) -> list[tuple[int, int, int]]:
    """``(pe, simd, in_simd)`` of the tile engine where the weights have a zero tile."""
    if isinstance(layer, ir.MaxPool):
        return []
    return [(p, s, k) for p, s in _fold_options(layer, in_spec) if has_zero_tiles(layer, p, s)
            for k in _in_simd_options(layer, in_spec, s)]


def stage_cycle_options(layer, in_spec) -> set[int]:
    """Every cycles-per-frame count a stage can reach (default engine and tile engine)."""
    out = {stage_cycles(layer, in_spec, p, s) for p, s in _fold_options(layer, in_spec)}
    out |= {stage_cycles(layer, in_spec, p, s, tiles=True, in_simd=k)
            for p, s, k in _tile_options(layer, in_spec)}
    return out


def _cheapest(layer, in_spec, target_cycles: int, min_lanes: int = 1):
    """The cheapest folding that meets the target: ``(pe, simd)`` on the default engine,
    or ``{"pe", "simd", "in_simd", "tiles": True}`` on the tile-skipping MVTU.

    On the default engine, the folding with the fewest lanes (pe * simd); ties go to the
    larger SIMD (wide popcounts are cheaper per lane than PEs), except on the sparse
    engine, whose every MAC lane reads the input buffer through ``simd`` banks (read
    ports grow with SIMD): there to the smaller SIMD. Where the weights have zero tiles,
    the tile engine's foldings that meet the target (each at its smallest ``in_simd``
    that does) compete with that choice by :func:`lut_estimate`; the tile engine wins only
    with a lower estimate. If no folding meets the target, the fastest one.
    """
    options = [(p, s) for p, s in _fold_options(layer, in_spec)]
    cycles = {ps: stage_cycles(layer, in_spec, *ps) for ps in options}
    meeting = [(p, s) for p, s in options if cycles[(p, s)] <= target_cycles
               and (not isinstance(layer, ir.MaxPool) or p >= min_lanes)]
    tiles = {}
    for p, s, k in _tile_options(layer, in_spec):
        c = stage_cycles(layer, in_spec, p, s, tiles=True, in_simd=k)
        if (p, s) not in tiles or (tiles[(p, s)][1] > target_cycles and c < tiles[(p, s)][1]):
            tiles[(p, s)] = (k, c)                      # the smallest in_simd that meets, or the fastest
    tile_meeting = [(p, s, k) for (p, s), (k, c) in tiles.items() if c <= target_cycles]
    if not meeting and not tile_meeting:
        best = min(options, key=lambda ps: (cycles[ps], ps[0] * ps[1]))
        fastest = [(p, s, k) for (p, s), (k, c) in tiles.items() if c < cycles[best]]
        if not fastest:
            return best
        p, s, k = min(fastest, key=lambda psk: (tiles[psk[:2]][1], _estimate(layer, in_spec, *psk)))
        return {"pe": p, "simd": s, "in_simd": k, "tiles": True}
    sparse = not isinstance(layer, ir.MaxPool) and layer.weights.sparse
    best = min(meeting, key=lambda ps: (ps[0] * ps[1], ps[1] if sparse else -ps[1])) if meeting else None
    if tile_meeting:
        p, s, k = min(tile_meeting, key=lambda psk: (_estimate(layer, in_spec, *psk), -psk[1]))
        if best is None or _estimate(layer, in_spec, p, s, k) < _estimate(layer, in_spec, *best, None):
            return {"pe": p, "simd": s, "in_simd": k, "tiles": True}
    return best


def choose_folding(model: ir.Model, target_cycles: int) -> dict[str, tuple[int, int]]:
    """Per stage ``(pe, simd)``, or a dict with ``in_simd`` and ``"tiles": True`` for the
    tile-skipping MVTU: the cheapest folding whose cycles per frame meet the target."""
    if target_cycles < 1:
        raise FoldingError(f"target cycles per frame must be at least 1, not {target_cycles}")
    folding = {}
    prev_lanes = None
    for layer, threshold, in_spec, out_spec in _groups(model):
        if isinstance(layer, ir.MaxPool):
            # Keep the previous stage's lanes when they divide C and meet the target.
            c = in_spec.shape[2]
            lanes = math.gcd(prev_lanes or 1, c)
            if stage_cycles(layer, in_spec, lanes, lanes) > target_cycles:
                lanes, _ = _cheapest(layer, in_spec, target_cycles)
            folding[layer.name] = (lanes, lanes)
        else:
            folding[layer.name] = _cheapest(layer, in_spec, target_cycles)
        choice = folding[layer.name]
        prev_lanes = choice["pe"] if isinstance(choice, dict) else choice[0]
    return folding


def plan(model: ir.Model, folding: dict | None = None, *, target_cycles: int | None = None) -> list[Stage]:
    """The stages of ``model`` at a folding.

    ``folding`` maps stage names (the conv/fc/maxpool layer's name) to ``(pe, simd)`` or
    ``{"pe": .., "simd": .., "ram_style": .., "tiles": .., "in_simd": ..}`` (each key
    optional; ``tiles`` true for the tile-skipping MVTU, whose input beat carries
    ``in_simd`` elements, default ``simd``); stages it does not
    name get the cheapest folding that meets ``target_cycles`` (default: fully folded,
    ``pe = simd = 1`` where legal).
    """
    folding = dict(folding or {})
    groups = _groups(model)
    names = {layer.name for layer, *_ in groups}
    unknown = sorted(set(folding) - names)
    if unknown:
        raise FoldingError(f"folding names unknown stage(s) {', '.join(unknown)}; "
                           f"stages are {', '.join(layer.name for layer, *_ in groups)}")
    full = all(isinstance(v, (tuple, list)) or (isinstance(v, dict) and {"pe", "simd"} <= set(v))
               for v in folding.values()) and len(folding) == len(groups)
    # (every stage folded explicitly: no search, which costs a sparse schedule per option)
    auto = None if full else choose_folding(model, target_cycles or 1 << 62)
    stages = []
    for layer, threshold, in_spec, out_spec in groups:
        value = folding.get(layer.name) if full else folding.get(layer.name, auto[layer.name])
        default = auto[layer.name] if auto is not None else None
        if isinstance(default, dict):
            default = (default["pe"], default["simd"])
        ram_style, weights, ddr_ports, tiles, in_simd = "auto", "rom", 1, False, None
        if isinstance(value, dict):
            extra = set(value) - {"pe", "simd", "ram_style", "weights", "ddr_ports", "tiles", "in_simd"}
            if extra:
                raise FoldingError(f"layer '{layer.name}': unknown folding key(s) {', '.join(sorted(extra))}")
            pe = value["pe"] if "pe" in value else default[0]
            simd = value["simd"] if "simd" in value else (
                pe if isinstance(layer, ir.MaxPool) else default[1])
            ram_style = value.get("ram_style", "auto")
            weights = value.get("weights", "rom")
            ddr_ports = value.get("ddr_ports", 1)
            tiles = value.get("tiles", False)
            in_simd = value.get("in_simd")
        else:
            try:
                pe, simd = value
            except (TypeError, ValueError):
                raise FoldingError(f"layer '{layer.name}': folding must be (pe, simd) or "
                                   f"{{'pe': .., 'simd': ..}}, not {value!r}") from None
        _check_folding(layer, in_spec, pe, simd, tiles, in_simd)
        _check_ram_style(layer, in_spec, ram_style)
        if weights not in ("rom", "ddr"):
            raise FoldingError(f"layer '{layer.name}': weights must be 'rom' or 'ddr', not {weights!r}")
        if weights == "ddr" and isinstance(layer, ir.MaxPool):
            raise FoldingError(f"layer '{layer.name}': a max-pool stage has no weights to stream")
        if weights == "ddr" and tiles:
            raise FoldingError(f"layer '{layer.name}': the tile-skipping engine keeps its weights "
                               f"on chip: drop 'tiles' or weights 'ddr'")
        if not isinstance(ddr_ports, int) or isinstance(ddr_ports, bool) or ddr_ports < 1 or pe % ddr_ports \
                or (ddr_ports > 1 and weights != "ddr"):
            raise FoldingError(f"layer '{layer.name}': ddr_ports must divide PE {pe} on a stage "
                               f"with weights 'ddr', not {ddr_ports!r}")
        stages.append(Stage(name=layer.name, op=layer.op, layer=layer, threshold=threshold,
                            in_spec=in_spec, out_spec=out_spec, pe=pe, simd=simd, ram_style=ram_style,
                            weights=weights, ddr_ports=ddr_ports, tiles=tiles,
                            in_simd=in_simd if tiles else None))
    return stages


#: Block RAM18 aspect ratios (width, depth) a read-only weight memory can use.
BRAM18_SHAPES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
#: A weight memory goes to block RAM only if each BRAM18 it takes saves this many LUTs.
MIN_LUTS_PER_BRAM18 = 32
#: Share of a board's BRAM18 that :func:`weight_bram_budget` gives the weights; the rest
#: is for line buffers, threshold memories, FIFOs and the DMA.
WEIGHT_BRAM_SHARE = 0.9


def weight_bram_budget(bram18: int) -> int:
    """BRAM18s for the weight memories on a board with ``bram18`` of them."""
    return int(WEIGHT_BRAM_SHARE * bram18)


def weight_memory(stage: Stage) -> tuple[int, int, int] | None:
    """``(memories, width, depth)`` of an engine's weight ROMs (one per PE; the sparse
    engine's entry ROMs), or None for a stage without them (max-pool)."""
    if stage.compute is None or stage.streamed:
        return None
    return stage.compute.entry_memory if stage.engine == "sparse" else stage.compute.weight_memory


def bram18_estimate(width: int, depth: int) -> int:
    """BRAM18s of one ``width`` x ``depth`` ROM: the best aspect ratio."""
    return min(-(-width // w) * -(-depth // d) for w, d in BRAM18_SHAPES)


def rom_lut_estimate(width: int, depth: int) -> int:
    """LUT6s of one ``width`` x ``depth`` ROM built from logic (64 bits per LUT6)."""
    return width * -(-depth // 64)


def _lane_luts(kind: str, wbits: int, in_bits: int, mode: str | None = None) -> float:
    """Rough LUTs of one MAC lane and its share of the adder tree or bit heap, after
    ``bench.shift`` (PE4 x SIMD16, 4-bit activations: pot4 12.6, int4 32.4 per lane),
    scaled by the activation (and int weight) width."""
    if mode == "xnor":
        return 1.0
    if kind == "binary":
        return 1.5 * in_bits
    if kind == "pot":
        return 3.2 * in_bits
    if kind == "ternary":
        return 2.0 * in_bits
    return 2.0 * in_bits * wbits


def _mem_luts(width: int, depth: int) -> int:
    """A ROM's LUTs, or the LUT-equivalent of the block RAM it would take when that saves
    LUTs (:data:`MIN_LUTS_PER_BRAM18` per BRAM18, as :func:`plan_ram_styles` decides)."""
    return min(rom_lut_estimate(width, depth), MIN_LUTS_PER_BRAM18 * bram18_estimate(width, depth))


def lut_estimate(stage: Stage) -> int:
    """Rough LUTs of a compute stage's engine, to choose between the default engine and the
    tile-skipping MVTU (not a synthesis figure): MAC lanes (:func:`_lane_luts`), an
    accumulator and output comparison per PE, the weight memories, and the input buffer
    (the MVTU's one vector, the tile engine's two banks and slice multiplexer, the
    sparse engine's asynchronous read port per lane and bank of its reach)."""
    c = stage.compute
    if c is None:
        return 0
    in_bits = stage.in_spec.bits
    lanes = stage.pe * stage.simd
    mode = getattr(c, "mode", None)
    total = lanes * _lane_luts(c.kind, c.wbits, in_bits, mode)
    total += 3 * stage.pe * c.acc_shape.width
    n, width, depth = weight_memory(stage)
    total += n * _mem_luts(width, depth)
    if stage.engine == "sparse":
        depth = 2 * c.inputs // stage.simd
        total += lanes * c.reach * in_bits * (-(-depth // 64) + 1)
    elif stage.tiles:
        width, depth = c.input_buffer
        total += rom_lut_estimate(width, depth) + (c.slices - 1) * stage.simd * in_bits // 2
        total += rom_lut_estimate(sum(c.step_fields) + 2, c.steps)
    elif c.neuron_folds > 1:
        total += rom_lut_estimate(stage.simd * in_bits, c.synapse_folds)
    return int(total)


def _estimate(layer, in_spec, pe: int, simd: int, in_simd: int | None) -> int:
    """:func:`lut_estimate` of a candidate: the tile engine at ``in_simd``, or (None) the
    default engine."""
    tiles = in_simd is not None
    stage = Stage(name=layer.name, op=layer.op, layer=layer, threshold=None, in_spec=in_spec,
                  out_spec=in_spec, pe=pe, simd=simd, tiles=tiles, in_simd=in_simd)
    return lut_estimate(stage)


def plan_ram_styles(stages: list[Stage], bram18_budget: int) -> list[Stage]:
    """Place the weight memories of the stages left at ``ram_style="auto"``: block RAM
    for the set of stages that saves the most LUTs (a 0/1 knapsack over the BRAM18
    estimates) while the weights' BRAM18 (explicit ``"block"`` stages included) stay
    within ``bram18_budget``, among stages where a BRAM18 saves at least
    :data:`MIN_LUTS_PER_BRAM18` LUTs; LUTs (``"distributed"``) for the rest. Synthesis
    alone puts shallow ROMs in LUTs however much block RAM the board has spare."""
    used, items = 0, []
    for stage in stages:
        mem = weight_memory(stage)
        if mem is None:
            continue
        n, width, depth = mem
        bram, luts = n * bram18_estimate(width, depth), n * rom_lut_estimate(width, depth)
        if stage.ram_style == "block":
            used += bram
        elif stage.ram_style == "auto":
            items.append((stage.name, bram, luts if luts >= MIN_LUTS_PER_BRAM18 * bram else 0))
    room = max(0, bram18_budget - used)
    # best[c]: (LUTs saved, stages in block RAM) within c BRAM18s.
    best = [(0, frozenset())] * (room + 1)
    for name, bram, saving in items:
        if not saving or bram > room:
            continue
        for c in range(room, bram - 1, -1):
            cand = best[c - bram][0] + saving
            if cand > best[c][0]:
                best[c] = (cand, best[c - bram][1] | {name})
    block = best[room][1]
    styles = {name: "block" if name in block else "distributed" for name, _, _ in items}
    return [replace(s, ram_style=styles[s.name]) if s.name in styles else s for s in stages]


def frame_cycles(stages: list[Stage]) -> int:
    """Initiation interval of the pipeline: the slowest stage's cycles per frame."""
    return max(s.cycles_per_frame for s in stages)


def shell_floors(model: ir.Model, in_width: int = 32, serial: bool = False) -> tuple[int, int]:
    """``(input, output)``: cycles per frame the AXI shell needs at least, whatever the
    folding, with ``in_width``-bit input TDATA: the frame's input beats (one per cycle,
    :func:`hdl.shell.regmap.input_beats_per_frame`; its codes, one per cycle, if the
    input is ``serial``) and the output adapter's ``classes + 1`` words
    (:func:`hdl.shell.regmap.output_cycles_per_frame`). The one place the cycle model
    reads the shell's packing."""
    from hdl.shell import regmap
    elements = math.prod(model.input.shape)
    beats = regmap.input_beats_per_frame(elements, model.input.bits, in_width)
    return (max(beats, elements) if serial else beats,
            regmap.output_cycles_per_frame(len(model.classes)))


#: The serial input (one code per cycle, :class:`~hdl.shell.adapters.InputFormat`) is
#: chosen when the core's frame interval is at least this many times a frame's codes:
#: room for the first stage to take its input in bursts (a window's start-up).
SERIAL_INPUT_HEADROOM = 2


#: Pipeline latency of a link between stages: a FIFO's two cycles (its output is
#: registered) and a width converter's one.
LINK_LATENCY = 3
#: Per stage allowance for the engines' internal pipelines (adder trees, output stage).
STAGE_PIPELINE_ALLOWANCE = 16


def _in_beats(stage: Stage) -> int:
    return stage.in_spec.size // stage.in_lanes


def latency_estimate(model: ir.Model, stages: list[Stage], in_width: int = 32,
                     serial_input: bool = False) -> int:
    """Cycle-model estimate of one frame's latency through the generated top (first input
    beat to the label beat) on an idle pipeline: the shell's input beats, each stage's
    input beats and its cycles per frame (a stage may take all its input before it
    finishes), the links' and the engines' pipeline latencies, and the output floor.
    An estimate, not a proof: ``bench.networks`` measures the latency of the top and the
    tests check that it stays below this on small networks."""
    beats_in, out = shell_floors(model, in_width, serial_input)
    per_stage = sum(_in_beats(s) + s.cycles_per_frame + STAGE_PIPELINE_ALLOWANCE for s in stages)
    return beats_in + per_stage + LINK_LATENCY * (len(stages) + 1) + out


#: Depth at which a :class:`~hdl.engines.plumbing.StreamFIFO` passes one beat per cycle:
#: its ``i.ready`` is the level a cycle ago, and a beat takes two cycles to the output
#: register, so below that the producer waits for beats in flight.
FULL_RATE_FIFO_DEPTH = 3


def burst_depth(stage: Stage) -> int:
    """Beats the FIFO in front of ``stage`` must hold so that its producer never waits.

    A dense engine (MVTU, shift MAC) takes a vector's input beats only during its first
    neuron fold and computes the other ``pe``-folds without taking input. For a fully
    connected stage the FIFO holds one whole input vector (``in / simd`` beats), so the
    producer writes the next vector while the engine computes; with a single neuron fold
    the engine takes input every cycle and a small FIFO is enough. A convolution gets
    room for its window's start-up (:attr:`SlidingWindowSpec.startup`): the next frame's
    beats that arrive while the buffer still holds this frame's last rows.
    """
    compute = stage.compute
    if stage.window is not None:
        # At a frame change the window's buffer is full of this frame's last rows until
        # its last windows are out, and then needs the next frame's first rows: room for
        # that start-up keeps the producer (and every stage before it) running meanwhile.
        return stage.window.startup
    if isinstance(stage.layer, ir.FC) and stage.engine == "sparse":
        # The sparse engine takes a vector into a free input bank only: one vector and a
        # beat more let the producer run on while both banks are taken.
        return stage.in_spec.size // stage.simd + 1
    if stage.tiles:
        # Two input banks: the next vector streams in while the engine computes.
        return 0
    if isinstance(stage.layer, ir.FC) and compute is not None and compute.neuron_folds > 1:
        return compute.synapse_folds
    return 0


def fifo_depth_for(stage: Stage, minimum: int = FULL_RATE_FIFO_DEPTH) -> int:
    """Depth of the FIFO in front of ``stage`` from the burst patterns on both sides.

    Every stage's producer (the shell, an engine, a width converter) and consumer pass at
    most one beat per cycle, so a FIFO that passes one beat per cycle
    (:data:`FULL_RATE_FIFO_DEPTH`) never slows a steady pair; a consumer that takes its
    input in bursts and then computes without input (:func:`burst_depth`) gets room for
    one burst, so that its producer runs on meanwhile.
    """
    return max(minimum, burst_depth(stage))


@dataclass(frozen=True)
class FifoPlan:
    """One FIFO of the generated core: in front of stage ``stage``, ``depth`` beats of
    ``width`` bits, and why that depth (``"rate"``: one beat per cycle, ``"burst"``: one
    input vector of a bursty consumer, ``"fixed"``: the ``fifo_depth`` asked for)."""
    stage: str
    depth: int
    width: int
    reason: str

    @property
    def bits(self) -> int:
        """Storage built, :func:`~hdl.engines.plumbing.fifo_slots` beats."""
        return fifo_slots(self.depth) * self.width

    def as_dict(self) -> dict:
        return {"stage": self.stage, "depth": self.depth, "width": self.width,
                "bits": self.bits, "reason": self.reason}


def plan_fifos(stages: list[Stage], fifo_depth: int | None = None) -> list[FifoPlan | None]:
    """The FIFO in front of each stage (None where there is none). Between stages always;
    in front of the first stage where it has a sliding window (its ``i.ready`` then comes
    from registers: the window's ready logic does not reach into the shell's input
    adapter) or takes its input vector in bursts of several beats; not in front of a
    fully connected first stage that takes a vector in one beat (the input adapter
    assembles the next one meanwhile), where it would cost ``3 x SIMD x bits``
    flip-flops for nothing. ``fifo_depth`` raises every depth to at least that many beats."""
    plans = []
    for index, stage in enumerate(stages):
        burst = burst_depth(stage)
        if index == 0 and stage.window is None and stage.pool is None and burst < 2:
            plans.append(None)
            continue
        depth = fifo_depth_for(stage)
        reason = "burst" if burst >= FULL_RATE_FIFO_DEPTH else "rate"
        if fifo_depth is not None and fifo_depth > depth:
            depth, reason = fifo_depth, "fixed"
        plans.append(FifoPlan(stage=stage.name, depth=depth,
                              width=stage.in_lanes * stage.in_spec.bits, reason=reason))
    return plans


class ConvEngine(wiring.Component):
    """A convolution: :class:`~hdl.engines.window.SlidingWindow` feeding a compute engine."""

    def __init__(self, window: SlidingWindow, compute: wiring.Component):
        self.window, self.compute = window, compute
        super().__init__({
            "i": In(stream.Signature(_payload(window, "i"))),
            "o": Out(stream.Signature(_payload(compute, "o"))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        m.submodules.compute = self.compute
        wiring.connect(m, wiring.flipped(self.i), self.window.i)
        wiring.connect(m, self.window.o, self.compute.i)
        wiring.connect(m, self.compute.o, wiring.flipped(self.o))
        return m


def _payload(component: wiring.Component, port: str):
    """Payload layout of a component's stream port."""
    return component.signature.members[port].signature.members["payload"].shape


def _compute_engine(stage: Stage):
    if stage.tiles:
        return TileMVTU(spec=stage.compute)
    if stage.engine == "sparse":
        return SparseCSC(spec=stage.compute)
    cls = ShiftMAC if stage.engine == "shiftmac" else MVTU
    return cls(spec=stage.compute)


def build_engine(stage: Stage) -> wiring.Component:
    """The hardware of one stage, with ``i``/``o`` stream ports (also synthesised alone)."""
    if stage.pool is not None:
        return MaxPool(spec=stage.pool)
    compute = _compute_engine(stage)
    if stage.window is None:
        return compute
    return ConvEngine(SlidingWindow(spec=stage.window), compute)


class NetworkSpec:
    """A whole model's accelerator described apart from its hardware: the stages at their
    folding (each with its engines' descriptions), the FIFOs (:attr:`fifos`), lanes,
    cycles per frame of the core and of the generated top (with the shell's floors) and
    the latency estimate. Parameters are those of :class:`Network`.
    """

    def __init__(self, model: ir.Model, folding: dict | None = None, *, target_cycles=None,
                 fifo_depth: int | None = None, bram18_budget: int | None = None,
                 axis_width: int = 32, ddr_width: int | None = None):
        if not isinstance(model, ir.Model):
            raise TypeError(f"model must be an ir.Model, not {type(model).__name__}")
        if fifo_depth is not None and (not isinstance(fifo_depth, int) or isinstance(fifo_depth, bool)
                                       or fifo_depth < 1):
            raise ValueError(f"fifo_depth must be a positive integer, not {fifo_depth!r}")
        self.model = model
        #: Input TDATA bits of the AXI shell around the network (the board's, 32 by default).
        self.axis_width = axis_width
        #: ``(input, output)`` cycles per frame of the AXI shell (:func:`shell_floors`).
        self.shell_floors = shell_floors(model, axis_width)
        if target_cycles is not None:
            # Folding faster than the shell delivers frames buys nothing.
            target_cycles = max(target_cycles, max(self.shell_floors))
        self.stages = plan(model, folding, target_cycles=target_cycles)
        if ddr_width is not None:
            # the board's HP port width: a wider master only makes the interconnect convert
            self.stages = [replace(s, ddr_width=ddr_width) if s.streamed else s
                           for s in self.stages]
        if bram18_budget is not None:
            self.stages = plan_ram_styles(self.stages, bram18_budget)
        self.fifo_depth = fifo_depth
        #: The FIFO in front of each stage, or None (:func:`plan_fifos`).
        self.fifos = plan_fifos(self.stages, fifo_depth)
        #: Beats of the FIFO in front of each stage (None where there is none).
        self.fifo_depths = [f.depth if f is not None else None for f in self.fifos]
        #: Cycles per frame of the core alone (the slowest stage) with a free-running
        #: source and sink.
        self.core_cycles_per_frame = frame_cycles(self.stages)
        #: Whether the shell repacks the input one code per cycle (a cheaper converter):
        #: when the core's frame interval leaves :data:`SERIAL_INPUT_HEADROOM` times the time.
        self.serial_input = (SERIAL_INPUT_HEADROOM * math.prod(model.input.shape)
                             <= self.core_cycles_per_frame)
        self.shell_floors = shell_floors(model, axis_width, self.serial_input)
        #: Cycles per frame of the generated top: the slowest stage or the shell's floor.
        self.cycles_per_frame = max(self.core_cycles_per_frame, *self.shell_floors)
        #: What limits :attr:`cycles_per_frame`: a stage's name, "shell input" or "shell output".
        self.bottleneck = ("shell input" if self.cycles_per_frame == self.shell_floors[0] and
                           self.shell_floors[0] > self.core_cycles_per_frame else
                           "shell output" if self.cycles_per_frame > self.core_cycles_per_frame else
                           max(self.stages, key=lambda s: s.cycles_per_frame).name)
        #: Estimated latency of one frame through the top (:func:`latency_estimate`; an
        #: estimate, measured by ``bench.networks``).
        self.latency_bound = latency_estimate(model, self.stages, axis_width, self.serial_input)
        self.in_lanes = self.stages[0].in_lanes
        self.out_lanes = self.stages[-1].out_lanes

    @property
    def fifo_bits(self) -> int:
        """Storage of all the FIFOs, in bits."""
        return sum(f.bits for f in self.fifos if f is not None)

    @property
    def folding(self) -> dict[str, dict]:
        """Per stage ``{"pe", "simd"}`` (``"tiles"`` and ``"in_simd"`` on the tile engine,
        ``"ram_style"`` where it is not ``"auto"``)."""
        return {s.name: {"pe": s.pe, "simd": s.simd,
                         **({"tiles": True, "in_simd": s.in_lanes} if s.tiles else {}),
                         **({"ram_style": s.ram_style} if s.ram_style != "auto" else {}),
                         **({"weights": s.weights} if s.streamed else {}),
                         **({"ddr_ports": s.ddr_ports} if s.ddr_ports > 1 else {})}
                for s in self.stages}

    @cached_property
    def streamed(self) -> list[Stage]:
        """The stages whose weights stream from DDR, in pipeline order."""
        return [s for s in self.stages if s.streamed]

    @cached_property
    def streamers(self) -> list[tuple[Stage, int, WeightStreamSpec]]:
        """``(stage, port of the stage, description)`` per weight streamer, in order; AXI
        master ``w{k}`` of the network serves the ``k``-th."""
        return [(s, j, ws) for s in self.streamed for j, ws in enumerate(s.weight_streams)]

    @cached_property
    def weight_offsets(self) -> list[int]:
        """Byte offset of each streamer's image in the weight buffer (4 KiB aligned)."""
        ends = [0]
        for _, _, ws in self.streamers:
            ends.append(ends[-1] + -(-ws.image_bytes // AXI_BOUNDARY) * AXI_BOUNDARY)
        return ends[:-1]

    @property
    def weight_buffer_bytes(self) -> int:
        """Size of :meth:`weight_image`."""
        if not self.streamers:
            return 0
        return self.weight_offsets[-1] + -(-self.streamers[-1][2].image_bytes
                                           // AXI_BOUNDARY) * AXI_BOUNDARY

    def weight_image(self) -> bytes:
        """The DDR weight buffer the driver places (contiguous, 4 KiB aligned): every
        streamer's :func:`hdl.engines.weightstream.weight_image` at its offset."""
        from hdl.engines.weightstream import weight_image
        out = bytearray(self.weight_buffer_bytes)
        parts = {}
        for (s, j, ws), at in zip(self.streamers, self.weight_offsets):
            if s.name not in parts:
                parts[s.name] = s.weight_parts()
            img = weight_image(parts[s.name][j], ws)
            out[at:at + len(img)] = img
        return bytes(out)


class Network(Described):
    """A whole model as one streaming component.

    Built from a :class:`NetworkSpec` (``Network(spec=...)``) or from its parameters
    (``Network(model, folding, ...)``), which make the description first; the
    description's figures (``stages``, ``folding``, ``cycles_per_frame``, ...) read as
    the network's own.

    Ports
    -----
    i : ``In(stream.Signature(ArrayLayout(unsigned(input.bits), in_lanes)))``
        Input codes of one frame after another, tensor order, ``in_lanes`` per beat
        (the first stage's SIMD).
    o : ``Out(stream.Signature(ArrayLayout(signed(w), out_lanes)))``
        The frame's integer scores, ``out_lanes`` (the last stage's PE) per beat, each
        of ``score_shape``.

    Throughput: the core alone takes one frame per :attr:`core_cycles_per_frame` cycles
    in steady state (the slowest stage); inside the AXI shell, one per
    :attr:`cycles_per_frame` (that or the shell's floor, :func:`shell_floors`). Between
    stages: a width converter where lanes differ, and a
    :class:`~hdl.engines.plumbing.StreamFIFO` sized by :func:`plan_fifos` (one beat per
    cycle, or one input vector in front of a stage that takes its input in bursts; in
    front of the first stage where :func:`plan_fifos` says), at least ``fifo_depth``
    beats if given, so that a stage
    that is not the slowest never holds up the one before it.

    ``bram18_budget`` (the board's block RAM, say) places the weight memories of stages
    left at ``ram_style="auto"`` by :func:`plan_ram_styles`; None leaves it to synthesis.
    ``ddr_width`` (the board's HP port width) sets the data width of every weight master;
    None keeps the stages' own (``Stage.ddr_width``).

    Stages with ``weights="ddr"`` add, for the ``k``-th of them, an AXI4 read master
    ``w{k}`` (``Out(AxiReadSignature(WEIGHT_ADDR_WIDTH, ddr_width))``), and the network
    the inputs ``weight_base`` (byte address of :meth:`NetworkSpec.weight_image` in DDR,
    4 KiB aligned) and ``weight_enable`` (fetching runs while high).
    """

    Spec = NetworkSpec

    def __init__(self, spec: NetworkSpec):
        self.spec = spec
        #: The stages' engines, elaborated as the network's submodules.
        self.engines = [build_engine(s) for s in spec.stages]
        out_layout = _payload(self.engines[-1], "o")
        self.score_shape = out_layout.elem_shape
        ports = {"i": In(stream.Signature(_payload(self.engines[0], "i"))),
                 "o": Out(stream.Signature(out_layout))}
        #: The weight streamers (``NetworkSpec.streamers``).
        self.streamers = [WeightStream(spec=ws) for _, _, ws in spec.streamers]
        if self.streamers:
            ports["weight_base"] = In(WEIGHT_ADDR_WIDTH)
            ports["weight_enable"] = In(1)
            for k, (s, _, _) in enumerate(spec.streamers):
                ports[f"w{k}"] = Out(AxiReadSignature(WEIGHT_ADDR_WIDTH, s.ddr_width))
        wiring.Component.__init__(self, ports)

    def elaborate(self, platform):
        m = Module()
        upstream = wiring.flipped(self.i)
        for index, (stage, engine) in enumerate(zip(self.stages, self.engines)):
            m.submodules[stage.name] = engine
            if index:
                prev = self.stages[index - 1]
                bits = prev.out_spec.bits
                if prev.out_lanes != stage.in_lanes:
                    conv = WidthConverter(bits, prev.out_lanes, stage.in_lanes)
                    m.submodules[f"{stage.name}_repack"] = conv
                    wiring.connect(m, upstream, conv.i)
                    upstream = conv.o
            if self.fifos[index] is not None:
                fifo = StreamFIFO(data.ArrayLayout(unsigned(stage.in_spec.bits), stage.in_lanes),
                                  self.fifos[index].depth)
                m.submodules[f"{stage.name}_fifo"] = fifo
                wiring.connect(m, upstream, fifo.i)
                upstream = fifo.o
            wiring.connect(m, upstream, engine.i)
            upstream = engine.o
        wiring.connect(m, upstream, wiring.flipped(self.o))
        joined = {}
        for k, ((stage, j, _), ws, offset) in enumerate(zip(self.spec.streamers, self.streamers,
                                                            self.spec.weight_offsets)):
            m.submodules[f"{stage.name}_weights{j}"] = ws
            joined.setdefault(stage.name, (stage, []))[1].append(ws)
            wiring.connect(m, ws.axi, wiring.flipped(getattr(self, f"w{k}")))
            m.d.comb += [ws.base.eq(self.weight_base + offset), ws.enable.eq(self.weight_enable)]
        for stage, streams in joined.values():
            # One beat from every port's streamer makes the stage's weight beat.
            engine = self.engines[self.stages.index(stage)]
            compute = engine.compute if isinstance(engine, ConvEngine) else engine
            all_valid = Signal(name=f"{stage.name}_weights_valid")
            m.d.comb += [all_valid.eq(Cat(ws.o.valid for ws in streams).all()),
                         compute.w.valid.eq(all_valid),
                         compute.w.payload.eq(Cat(ws.o.payload for ws in streams))]
            for ws in streams:
                m.d.comb += ws.o.ready.eq(compute.w.ready & all_valid)
        return m
