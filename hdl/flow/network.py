"""Network compiler: a model file becomes one streaming accelerator.

A model's layers group into *stages*: a ``conv`` or ``fc`` layer with the ``threshold``
after it (one compute engine with its fused output stage; a ``conv`` gets a sliding
window in front), or a ``maxpool``. The engine of a compute stage follows from the
layer's weights alone: CSC weights run on the sparse engine, power-of-two weights on
the shift MAC, everything else on the MVTU (XNOR, binary-weight or int mode).

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

from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl import ir
from hdl.engines.described import Described
from hdl.engines.mvtu import MVTU, RAM_STYLES, MVTUSpec
from hdl.engines.plumbing import StreamFIFO, WidthConverter
from hdl.engines.pool import MaxPool, MaxPoolSpec
from hdl.engines.shiftmac import ShiftMAC
from hdl.engines.sparse import SparseCSC, SparseSpec
from hdl.engines.window import SlidingWindow, SlidingWindowSpec

__all__ = ["Stage", "FoldingError", "plan", "choose_folding", "frame_cycles", "Network", "NetworkSpec",
           "ConvEngine", "build_engine", "engine_name", "burst_depth", "plan_ram_styles",
           "weight_memory", "bram18_estimate", "weight_bram_budget", "shell_floors",
           "fifo_depth_for", "FULL_RATE_FIFO_DEPTH", "FifoPlan", "plan_fifos",
           "latency_estimate"]


class FoldingError(ValueError):
    """A requested folding cannot be implemented (names the layer and the parameter)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Stage:
    """One hardware stage and its folding, with the descriptions of its engines.

    ``pe``/``simd`` fold a compute stage (``simd`` input elements and ``pe`` output
    channels per cycle); a max-pool stage has ``pe == simd == lanes``. ``ram_style``
    places an engine's weight memories (:data:`hdl.engines.mvtu.RAM_STYLES`; the sparse
    engine's entry ROMs).
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

    @property
    def in_lanes(self) -> int:
        return self.simd

    @property
    def out_lanes(self) -> int:
        return self.pe

    @property
    def engine(self) -> str:
        return engine_name(self.layer, self.in_spec.bits)

    @property
    def cycles_per_frame(self) -> int:
        return stage_cycles(self.layer, self.in_spec, self.pe, self.simd)

    @cached_property
    def compute(self):
        """The compute engine's description (``MVTUSpec`` for the MVTU and shift MAC,
        ``SparseSpec`` for the sparse engine); None for max-pool."""
        if isinstance(self.layer, ir.MaxPool):
            return None
        cls = SparseSpec if self.engine == "sparse" else MVTUSpec
        return cls.from_layer(self.layer, self.threshold, in_bits=self.in_spec.bits, pe=self.pe,
                              simd=self.simd, ram_style=self.ram_style)

    @property
    def window(self) -> SlidingWindowSpec | None:
        """The sliding window's description for a convolution, else None."""
        if not isinstance(self.layer, ir.Conv):
            return None
        return SlidingWindowSpec.for_conv(self.layer, self.in_spec, self.simd)

    @property
    def pool(self) -> MaxPoolSpec | None:
        """The max-pool's description for a max-pool stage, else None."""
        if not isinstance(self.layer, ir.MaxPool):
            return None
        return MaxPoolSpec.for_layer(self.layer, self.in_spec, self.pe)


def engine_name(layer: ir.Layer, in_bits: int | None) -> str:
    """Which engine runs a layer: decided by its weights alone."""
    if isinstance(layer, ir.MaxPool):
        return "maxpool"
    w = layer.weights
    if w.sparse:
        return "sparse"
    if w.kind == "pot":
        return "shiftmac"
    if w.kind == "binary":
        return "mvtu-xnor" if in_bits == 1 else "mvtu-binary"
    return "mvtu-int"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def stage_cycles(layer: ir.Layer, in_spec: ir.TensorSpec, pe: int, simd: int) -> int:
    """Cycles per frame of one stage at a folding (the cycle model), from the engines'
    descriptions.

    * fc: the engine's cycles per vector, ``(out / pe) * (in / simd)``
      (:meth:`hdl.engines.mvtu.MVTUSpec.vector_cycles`);
    * conv: ``H' * W'`` vectors of ``K*K*C`` elements, or the window's own cycles per
      frame (:class:`hdl.engines.window.SlidingWindowSpec`) if that is larger (strides
      above the kernel);
    * sparse (CSC) fc / conv: the engine's cycles per vector (they follow the non-zero
      weights, see :class:`hdl.engines.sparse.SparseSpec`) instead of ``(out / pe) * (in / simd)``;
    * maxpool: :attr:`hdl.engines.pool.MaxPoolSpec.cycles_per_frame`,
      ``max(H * W, H' * W' * K * K) * C / lanes``.
    """
    if isinstance(layer, ir.MaxPool):
        return MaxPoolSpec.for_layer(layer, in_spec, pe).cycles_per_frame
    sparse = layer.weights.sparse
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


def _check_folding(layer, in_spec, pe, simd):
    where = f"layer '{layer.name}'"
    for label, value in (("pe", pe), ("simd", simd)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise FoldingError(f"{where}: {label} must be a positive integer, not {value!r}")
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


def _cheapest(layer, in_spec, target_cycles: int, min_lanes: int = 1):
    """The folding with the fewest lanes (pe * simd) that meets the target.

    Ties go to the larger SIMD (wide popcounts are cheaper per lane than PEs), except on
    the sparse engine, whose every MAC lane reads the input buffer through ``simd`` banks
    (read ports grow with SIMD): there to the smaller SIMD. If no folding meets the
    target, the fastest one.
    """
    options = [(p, s) for p, s in _fold_options(layer, in_spec)]
    meeting = [(p, s) for p, s in options if stage_cycles(layer, in_spec, p, s) <= target_cycles
               and (not isinstance(layer, ir.MaxPool) or p >= min_lanes)]
    if not meeting:
        return min(options, key=lambda ps: (stage_cycles(layer, in_spec, *ps), ps[0] * ps[1]))
    sparse = not isinstance(layer, ir.MaxPool) and layer.weights.sparse
    return min(meeting, key=lambda ps: (ps[0] * ps[1], ps[1] if sparse else -ps[1]))


def choose_folding(model: ir.Model, target_cycles: int) -> dict[str, tuple[int, int]]:
    """Per stage ``(pe, simd)``: the cheapest folding whose cycles per frame meet the target."""
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
        prev_lanes = folding[layer.name][0]
    return folding


def plan(model: ir.Model, folding: dict | None = None, *, target_cycles: int | None = None) -> list[Stage]:
    """The stages of ``model`` at a folding.

    ``folding`` maps stage names (the conv/fc/maxpool layer's name) to ``(pe, simd)`` or
    ``{"pe": .., "simd": .., "ram_style": ..}`` (each key optional); stages it does not
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
    auto = choose_folding(model, target_cycles or 1 << 62)
    stages = []
    for layer, threshold, in_spec, out_spec in groups:
        value = folding.get(layer.name, auto[layer.name])
        ram_style = "auto"
        if isinstance(value, dict):
            extra = set(value) - {"pe", "simd", "ram_style"}
            if extra:
                raise FoldingError(f"layer '{layer.name}': unknown folding key(s) {', '.join(sorted(extra))}")
            pe = value.get("pe", auto[layer.name][0])
            simd = value.get("simd", pe if isinstance(layer, ir.MaxPool) else auto[layer.name][1])
            ram_style = value.get("ram_style", "auto")
        else:
            try:
                pe, simd = value
            except (TypeError, ValueError):
                raise FoldingError(f"layer '{layer.name}': folding must be (pe, simd) or "
                                   f"{{'pe': .., 'simd': ..}}, not {value!r}") from None
        _check_folding(layer, in_spec, pe, simd)
        _check_ram_style(layer, in_spec, ram_style)
        stages.append(Stage(name=layer.name, op=layer.op, layer=layer, threshold=threshold,
                            in_spec=in_spec, out_spec=out_spec, pe=pe, simd=simd, ram_style=ram_style))
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
    if stage.compute is None:
        return None
    return stage.compute.entry_memory if stage.engine == "sparse" else stage.compute.weight_memory


def bram18_estimate(width: int, depth: int) -> int:
    """BRAM18s of one ``width`` x ``depth`` ROM: the best aspect ratio."""
    return min(-(-width // w) * -(-depth // d) for w, d in BRAM18_SHAPES)


def rom_lut_estimate(width: int, depth: int) -> int:
    """LUT6s of one ``width`` x ``depth`` ROM built from logic (64 bits per LUT6)."""
    return width * -(-depth // 64)


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


def shell_floors(model: ir.Model) -> tuple[int, int]:
    """``(input, output)``: cycles per frame the AXI shell needs at least, whatever the
    folding. Input: the frame's beats at the shell's current packing (one beat per cycle,
    :attr:`hdl.shell.adapters.InputFormat.beats_per_frame`); output: ``classes + 2``
    (one score word per cycle, the label word and one cycle per frame, see
    :class:`hdl.shell.adapters.AxisOutput`). The one place the cycle model reads the
    shell's packing."""
    from hdl.shell.adapters import InputFormat
    size = math.prod(model.input.shape)
    fmt = InputFormat(bits=model.input.bits, lanes=1, frame_elements=size)
    return fmt.beats_per_frame, len(model.classes) + 2


#: Pipeline latency of a link between stages: a FIFO's two cycles (its output is
#: registered) and a width converter's one.
LINK_LATENCY = 3
#: Per stage allowance for the engines' internal pipelines (adder trees, output stage).
STAGE_PIPELINE_ALLOWANCE = 16


def _in_beats(stage: Stage) -> int:
    return stage.in_spec.size // stage.in_lanes


def latency_estimate(model: ir.Model, stages: list[Stage]) -> int:
    """Cycle-model estimate of one frame's latency through the generated top (first input
    beat to the label beat) on an idle pipeline: the shell's input beats, each stage's
    input beats and its cycles per frame (a stage may take all its input before it
    finishes), the links' and the engines' pipeline latencies, and the output floor.
    An estimate, not a proof: ``bench.networks`` measures the latency of the top and the
    tests check that it stays below this on small networks."""
    beats_in, out = shell_floors(model)
    per_stage = sum(_in_beats(s) + s.cycles_per_frame + STAGE_PIPELINE_ALLOWANCE for s in stages)
    return beats_in + per_stage + LINK_LATENCY * (len(stages) + 1) + out


#: Depth at which a :class:`~hdl.engines.plumbing.StreamFIFO` passes one beat per cycle:
#: Amaranth's ``SyncFIFOBuffered`` holds ``depth - 1`` beats in its inner FIFO, which does
#: not take a beat while full even when one leaves, so depths 1 and 2 alternate between
#: writing and reading (half rate).
FULL_RATE_FIFO_DEPTH = 3


def burst_depth(stage: Stage) -> int:
    """Beats the FIFO in front of ``stage`` must hold so that its producer never waits.

    A dense engine (MVTU, shift MAC) takes a vector's input beats only during its first
    neuron fold and computes the other ``pe``-folds without taking input. For a fully
    connected stage the FIFO holds one whole input vector (``in / simd`` beats), so the
    producer writes the next vector while the engine computes; with a single neuron fold
    the engine takes input every cycle and a small FIFO is enough.
    """
    compute = stage.compute
    if isinstance(stage.layer, ir.FC) and stage.engine == "sparse":
        # The sparse engine takes a vector into a free input bank only: one vector and a
        # beat more let the producer run on while both banks are taken.
        return stage.in_spec.size // stage.simd + 1
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
        return self.depth * self.width

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
                 fifo_depth: int | None = None, bram18_budget: int | None = None):
        if not isinstance(model, ir.Model):
            raise TypeError(f"model must be an ir.Model, not {type(model).__name__}")
        if fifo_depth is not None and (not isinstance(fifo_depth, int) or isinstance(fifo_depth, bool)
                                       or fifo_depth < 1):
            raise ValueError(f"fifo_depth must be a positive integer, not {fifo_depth!r}")
        self.model = model
        #: ``(input, output)`` cycles per frame of the AXI shell (:func:`shell_floors`).
        self.shell_floors = shell_floors(model)
        if target_cycles is not None:
            # Folding faster than the shell delivers frames buys nothing.
            target_cycles = max(target_cycles, max(self.shell_floors))
        self.stages = plan(model, folding, target_cycles=target_cycles)
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
        #: Cycles per frame of the generated top: the slowest stage or the shell's floor.
        self.cycles_per_frame = max(self.core_cycles_per_frame, *self.shell_floors)
        #: What limits :attr:`cycles_per_frame`: a stage's name, "shell input" or "shell output".
        self.bottleneck = ("shell input" if self.cycles_per_frame == self.shell_floors[0] and
                           self.shell_floors[0] > self.core_cycles_per_frame else
                           "shell output" if self.cycles_per_frame > self.core_cycles_per_frame else
                           max(self.stages, key=lambda s: s.cycles_per_frame).name)
        #: Estimated latency of one frame through the top (:func:`latency_estimate`; an
        #: estimate, measured by ``bench.networks``).
        self.latency_bound = latency_estimate(model, self.stages)
        self.in_lanes = self.stages[0].in_lanes
        self.out_lanes = self.stages[-1].out_lanes

    @property
    def fifo_bits(self) -> int:
        """Storage of all the FIFOs, in bits."""
        return sum(f.bits for f in self.fifos if f is not None)

    @property
    def folding(self) -> dict[str, dict]:
        """Per stage ``{"pe", "simd"}`` (and ``"ram_style"`` where it is not ``"auto"``)."""
        return {s.name: {"pe": s.pe, "simd": s.simd,
                         **({"ram_style": s.ram_style} if s.ram_style != "auto" else {})}
                for s in self.stages}


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
    """

    Spec = NetworkSpec

    def __init__(self, spec: NetworkSpec):
        self.spec = spec
        #: The stages' engines, elaborated as the network's submodules.
        self.engines = [build_engine(s) for s in spec.stages]
        out_layout = _payload(self.engines[-1], "o")
        self.score_shape = out_layout.elem_shape
        wiring.Component.__init__(self, {"i": In(stream.Signature(_payload(self.engines[0], "i"))),
                                         "o": Out(stream.Signature(out_layout))})

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
        return m
