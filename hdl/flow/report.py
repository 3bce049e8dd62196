"""Build report: ``report.json`` (read by other tools: fixed keys), ``report.md``, a plot.

``report.json`` holds exactly these keys::

    board, part, clock_mhz, model,
    layers: [ {name, op, engine, pe, simd, cycles_per_frame,
               lut, ff, bram18, uram, dsp, logic_levels}, ... ],
    totals:   {lut, ff, bram18, uram, dsp},
    capacity: {lut, ff, bram18, uram, dsp},
    fits, cycles_per_frame, fps, latency_cycles

and, when a stage's weights stream from DDR, ``weights``: per stage its placement ("on
chip" or "ddr"; None for a stage without weights), ``onchip_bytes`` and
``ddr_bytes_per_frame``; in total ``onchip_bytes`` against ``onchip_budget_bytes``,
``ddr_image_bytes`` (the buffer the driver places), ``ddr_bytes_per_frame``,
``ddr_ports``, ``ddr_bandwidth_used`` (bytes/s at the report's frame rate) against
``ddr_bandwidth_ports`` (the HP ports', at most the DDR's peak), see
:func:`hdl.flow.build.weights_summary`; and, when the build ran them, ``verify``
(:mod:`hdl.flow.verify`: bit_exact, accuracy,
measured cycles_per_frame, ...) and ``vivado`` (utilization and timing read from
Vivado's reports: lut, ff, bram18, dsp, wns_ns, achieved_mhz, ...; see
:mod:`hdl.flow.vivado`), added by :func:`add_to_report`.

* ``totals`` are the whole accelerator's figures (its own synthesis, which includes
  the FIFOs, width converters and AXI logic between the layers); without one they are
  the sum of the layers.
* ``fits``: every total is at most the board's capacity.
* ``cycles_per_frame``: the initiation interval of the generated top: the largest
  layer's ``cycles_per_frame`` or the AXI shell's floor (input beats per frame, classes
  + 2 at the output), whichever is larger (``hdl.flow.network.NetworkSpec``), by default
  the largest layer's; ``fps = clock_mhz * 1e6 / cycles_per_frame`` at the assumed
  clock; ``latency_cycles``: first input beat to last output beat of one frame, the
  cycle model's estimate (``hdl.flow.network.latency_estimate``; ``bench.networks``
  measures it on the top).
* ``logic_levels`` per layer: the longest LUT path (see :mod:`hdl.flow.synth`); the report
  flags layers above :data:`MAX_LOGIC_LEVELS`, the depth at which 200 MHz on
  UltraScale+ stops being credible.

``report.md`` also shows what sets the frame rate (a layer or the shell), the FIFOs
between the stages (depth, width, bits, why that depth) and the whole design's logic
levels, when the build passes them (:class:`BuildReport` ``fifos``, ``shell_floors``,
``logic_levels``; not in ``report.json``, whose keys are fixed).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["LayerReport", "BuildReport", "write_report", "load_report", "REPORT_KEYS", "weights_markdown",
           "LAYER_KEYS", "RESOURCE_KEYS", "MAX_LOGIC_LEVELS", "OPTIONAL_KEYS", "add_to_report"]

RESOURCE_KEYS = ("lut", "ff", "bram18", "uram", "dsp")
LAYER_KEYS = ("name", "op", "engine", "pe", "simd", "cycles_per_frame", *RESOURCE_KEYS,
              "logic_levels")
REPORT_KEYS = ("board", "part", "clock_mhz", "model", "layers", "totals", "capacity", "fits",
               "cycles_per_frame", "fps", "latency_cycles")
#: Keys added by later steps of a build (verification, a Vivado run).
OPTIONAL_KEYS = ("verify", "vivado", "weights")
#: Logic levels above which a layer is flagged in report.md.
MAX_LOGIC_LEVELS = 6


def _check_count(owner: str, key: str, value, minimum: int = 0):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{owner} {key} must be an int, not {value!r}")
    if value < minimum:
        raise ValueError(f"{owner} {key} must be >= {minimum}, not {value}")


def _resources(owner: str, value: Mapping) -> dict:
    if not isinstance(value, Mapping):
        raise TypeError(f"{owner} must be a mapping of {', '.join(RESOURCE_KEYS)}")
    missing = [k for k in RESOURCE_KEYS if k not in value]
    extra = [k for k in value if k not in RESOURCE_KEYS]
    if missing or extra:
        raise ValueError(f"{owner} must have exactly the keys {', '.join(RESOURCE_KEYS)}"
                         f" (missing {missing}, unexpected {extra})")
    for k in RESOURCE_KEYS:
        _check_count(owner, k, value[k])
    return {k: int(value[k]) for k in RESOURCE_KEYS}


@dataclass(frozen=True, kw_only=True)
class LayerReport:
    """One layer's engine: folding, cycles per frame, synthesis figures."""

    name: str
    op: str
    engine: str
    pe: int
    simd: int
    cycles_per_frame: int
    lut: int
    ff: int
    bram18: int
    uram: int
    dsp: int
    logic_levels: int

    def __post_init__(self):
        for key in ("name", "op", "engine"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise TypeError(f"layer {key} must be a non-empty str, not {getattr(self, key)!r}")
        for key in ("pe", "simd", "cycles_per_frame"):
            _check_count(f"layer {self.name}", key, getattr(self, key), 1)
        for key in (*RESOURCE_KEYS, "logic_levels"):
            _check_count(f"layer {self.name}", key, getattr(self, key), 0)

    @classmethod
    def from_synth(cls, *, name: str, op: str, engine: str, pe: int, simd: int,
                   cycles_per_frame: int, synth) -> "LayerReport":
        """From an :class:`hdl.flow.synth.SynthResult` of the layer's engine."""
        return cls(name=name, op=op, engine=engine, pe=pe, simd=simd,
                   cycles_per_frame=cycles_per_frame, logic_levels=synth.logic_levels,
                   **synth.resources())

    def resources(self) -> dict:
        return {k: getattr(self, k) for k in RESOURCE_KEYS}

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in LAYER_KEYS}


@dataclass(frozen=True, kw_only=True)
class BuildReport:
    """Everything ``report.json`` holds; ``fits`` and ``fps`` are derived."""

    board: str
    part: str
    clock_mhz: float
    model: str
    layers: tuple
    capacity: dict
    latency_cycles: int
    totals: dict | None = None
    cycles_per_frame: int | None = None
    #: report.md only: ``(input, output)`` floors of the AXI shell in cycles per frame,
    #: the FIFOs (dicts of ``stage, depth, width, bits, reason``, see
    #: :class:`hdl.flow.network.FifoPlan`) and the whole design's logic levels.
    shell_floors: tuple | None = field(default=None, compare=False)
    fifos: tuple = field(default=(), compare=False)
    logic_levels: int | None = field(default=None, compare=False)
    #: report.md only: ``(start, end)`` of the whole design's longest path.
    path_ends: tuple = field(default=(), compare=False)
    #: The weight placement when a stage streams from DDR (see the module docstring).
    weights: dict | None = field(default=None, compare=False)

    def __post_init__(self):
        for key in ("board", "part", "model"):
            if not isinstance(getattr(self, key), str):
                raise TypeError(f"report {key} must be a str, not {getattr(self, key)!r}")
        if (not isinstance(self.clock_mhz, (int, float)) or isinstance(self.clock_mhz, bool)
                or not self.clock_mhz > 0 or not math.isfinite(self.clock_mhz)):
            raise ValueError(f"report clock_mhz must be a positive number, not {self.clock_mhz!r}")
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("report layers must not be empty")
        for layer in layers:
            if not isinstance(layer, LayerReport):
                raise TypeError(f"report layers must be LayerReport, not {type(layer).__name__}")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"report layer names must be unique, not {names}")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "clock_mhz", float(self.clock_mhz))
        object.__setattr__(self, "capacity", _resources("report capacity", self.capacity))
        if self.totals is None:
            totals = {k: sum(getattr(layer, k) for layer in layers) for k in RESOURCE_KEYS}
        else:
            totals = _resources("report totals", self.totals)
        object.__setattr__(self, "totals", totals)
        if self.cycles_per_frame is None:
            object.__setattr__(self, "cycles_per_frame",
                               max(layer.cycles_per_frame for layer in layers))
        _check_count("report", "cycles_per_frame", self.cycles_per_frame, 1)
        _check_count("report", "latency_cycles", self.latency_cycles, 0)
        if self.shell_floors is not None:
            floors = tuple(self.shell_floors)
            if len(floors) != 2:
                raise ValueError(f"report shell_floors must be (input, output), not {floors!r}")
            for key, value in zip(("input", "output"), floors):
                _check_count("report shell floor", key, value, 1)
            object.__setattr__(self, "shell_floors", floors)
        fifos = tuple(dict(f) for f in self.fifos)
        for f in fifos:
            if set(f) != {"stage", "depth", "width", "bits", "reason"}:
                raise ValueError(f"report fifos must have keys stage, depth, width, bits, reason, "
                                 f"not {sorted(f)}")
        object.__setattr__(self, "fifos", fifos)
        if self.logic_levels is not None:
            _check_count("report", "logic_levels", self.logic_levels, 0)

    @classmethod
    def for_board(cls, board, *, model: str, layers: Sequence[LayerReport],
                  latency_cycles: int, clock_mhz: float | None = None,
                  totals: Mapping | None = None, cycles_per_frame: int | None = None,
                  shell_floors=None, fifos=(), logic_levels: int | None = None,
                  path_ends=(), weights: dict | None = None):
        """A report for a ``boards`` platform class (name, part, capacity, default clock)."""
        return cls(board=board.name, part=board.part(), model=model, layers=tuple(layers),
                   capacity=board.capacity.as_dict(), latency_cycles=latency_cycles,
                   clock_mhz=board.default_clock_mhz if clock_mhz is None else clock_mhz,
                   totals=None if totals is None else dict(totals),
                   cycles_per_frame=cycles_per_frame, shell_floors=shell_floors,
                   fifos=tuple(fifos), logic_levels=logic_levels,
                   path_ends=tuple(path_ends), weights=weights)

    @property
    def limit(self) -> str:
        """What sets the frame rate: "slowest layer", or the AXI shell's input or output."""
        if self.cycles_per_frame <= max(layer.cycles_per_frame for layer in self.layers):
            return "slowest layer"
        if (self.weights is not None and self.cycles_per_frame == self.weights["ddr_cycles_per_frame"]
                and (self.shell_floors is None or self.cycles_per_frame > max(self.shell_floors))):
            return (f"the DDR bandwidth: {self.weights['ddr_bytes_per_frame']:,} bytes per frame "
                    f"over {self.weights['ddr_ports']} HP port(s)")
        if self.shell_floors is not None and self.cycles_per_frame == self.shell_floors[0]:
            return f"the AXI shell's input: {self.shell_floors[0]:,} beats per frame"
        if self.shell_floors is not None and self.cycles_per_frame == self.shell_floors[1]:
            return f"the AXI shell's output: classes + 1 = {self.shell_floors[1]} cycles"
        return "the AXI shell"

    @property
    def fits(self) -> bool:
        return all(self.totals[k] <= self.capacity[k] for k in RESOURCE_KEYS)

    @property
    def fps(self) -> float:
        return self.clock_mhz * 1e6 / self.cycles_per_frame

    def utilisation(self) -> dict:
        """Fraction of capacity per resource (``inf`` when used but absent, e.g. URAM)."""
        out = {}
        for k in RESOURCE_KEYS:
            cap, used = self.capacity[k], self.totals[k]
            out[k] = used / cap if cap else (0.0 if used == 0 else math.inf)
        return out

    def to_json(self) -> dict:
        return {
            "board": self.board, "part": self.part, "clock_mhz": self.clock_mhz,
            "model": self.model, "layers": [layer.to_json() for layer in self.layers],
            "totals": dict(self.totals), "capacity": dict(self.capacity),
            "fits": self.fits, "cycles_per_frame": self.cycles_per_frame,
            "fps": self.fps, "latency_cycles": self.latency_cycles,
            **({"weights": self.weights} if self.weights is not None else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "BuildReport":
        keys = set(data) - set(OPTIONAL_KEYS)
        if keys != set(REPORT_KEYS):
            raise ValueError(f"report.json keys must be {', '.join(REPORT_KEYS)}; "
                             f"missing {sorted(set(REPORT_KEYS) - keys)}, "
                             f"unexpected {sorted(keys - set(REPORT_KEYS))}")
        layers = []
        for n, layer in enumerate(data["layers"]):
            if set(layer) != set(LAYER_KEYS):
                raise ValueError(f"report.json layer {n} keys must be {', '.join(LAYER_KEYS)}")
            layers.append(LayerReport(**layer))
        report = cls(board=data["board"], part=data["part"], clock_mhz=data["clock_mhz"],
                     model=data["model"], layers=tuple(layers), capacity=data["capacity"],
                     totals=data["totals"], cycles_per_frame=data["cycles_per_frame"],
                     latency_cycles=data["latency_cycles"], weights=data.get("weights"))
        if report.fits != data["fits"]:
            raise ValueError("report.json 'fits' disagrees with its totals and capacity")
        return report

    def markdown(self, notes: Sequence[str] = ()) -> str:
        util = self.utilisation()
        lines = [
            f"# Build report: {self.model} on {self.board}",
            "",
            f"- part: `{self.part}`, clock {self.clock_mhz:g} MHz (assumed)",
            f"- cycles per frame: {self.cycles_per_frame:,} ({self.limit}), "
            f"**{self.fps:,.0f} fps**, latency about {self.latency_cycles:,} cycles "
            f"({self.latency_cycles / self.clock_mhz:,.2f} us; the cycle model's estimate)",
            f"- fits: **{'yes' if self.fits else 'NO'}**",
            "",
            "| layer | op | engine | PE | SIMD | cycles/frame | LUT | FF | BRAM18 | URAM | DSP "
            "| logic levels |",
            "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for layer in self.layers:
            flag = " (!)" if layer.logic_levels > MAX_LOGIC_LEVELS else ""
            bottleneck = " *" if layer.cycles_per_frame == self.cycles_per_frame else ""
            lines.append(
                f"| {layer.name} | {layer.op} | {layer.engine} | {layer.pe} | {layer.simd} "
                f"| {layer.cycles_per_frame:,}{bottleneck} | {layer.lut:,} | {layer.ff:,} "
                f"| {layer.bram18:,} | {layer.uram:,} | {layer.dsp:,} "
                f"| {layer.logic_levels}{flag} |")
        lines += [
            "",
            "`*` sets the frame rate; `(!)` more than "
            f"{MAX_LOGIC_LEVELS} LUT levels.",
        ]
        if self.logic_levels is not None:
            flag = " (!)" if self.logic_levels > MAX_LOGIC_LEVELS else ""
            where = (f", longest path from `{self.path_ends[0]}` to `{self.path_ends[1]}`"
                     if len(self.path_ends) == 2 else "")
            lines += ["", f"Whole design: {self.logic_levels} logic levels{flag}{where}."]
        if self.fifos:
            lines += ["", "| FIFO in front of | depth | width | bits | depth from |",
                      "|---|--:|--:|--:|---|"]
            lines += [f"| {f['stage']} | {f['depth']:,} | {f['width']} | {f['bits']:,} "
                      f"| {f['reason']} |" for f in self.fifos]
            lines += [f"| total | | | {sum(f['bits'] for f in self.fifos):,} | |", "",
                      "Depth from: `rate`, the least that passes one beat per cycle; `burst`, "
                      "one input vector of a stage that takes its input in bursts; `fixed`, "
                      "the depth asked for."]
        if self.weights is not None:
            lines += ["", weights_markdown(self.weights)]
        lines += [
            "",
            "| resource | total | capacity | used |",
            "|---|--:|--:|--:|",
        ]
        for k in RESOURCE_KEYS:
            used = "n/a" if math.isinf(util[k]) else f"{100 * util[k]:.1f}%"
            lines.append(f"| {k} | {self.totals[k]:,} | {self.capacity[k]:,} | {used} |")
        if notes:
            lines += ["", *[f"- {note}" for note in notes]]
        return "\n".join(lines) + "\n"


def weights_markdown(weights: Mapping) -> str:
    """report.md's section on weights streamed from DDR (``report.json["weights"]``)."""
    w = weights
    lines = ["| stage | weights | bytes on chip | DDR bytes per frame |", "|---|---|--:|--:|"]
    lines += [f"| {r['stage']} | {r['placement'] or '-'} | {r['onchip_bytes']:,} "
              f"| {r['ddr_bytes_per_frame']:,} |" for r in w["stages"]]
    lines += [f"| total | | {w['onchip_bytes']:,} of {w['onchip_budget_bytes']:,} "
              f"| {w['ddr_bytes_per_frame']:,} |", "",
              f"Weights from DDR: a {w['ddr_image_bytes']:,}-byte image the driver places in DDR; "
              f"**{w['ddr_bandwidth_used'] / 1e9:.3f} GB/s** at {w['fps']:,.0f} fps against "
              f"{w['ddr_bandwidth_ports'] / 1e9:.3f} GB/s of {w['ddr_ports']} HP port(s) "
              f"({100 * w['ddr_bandwidth_used'] / w['ddr_bandwidth_ports']:.1f}%)."]
    return "\n".join(lines)


def plot(report: BuildReport, path: str | os.PathLike) -> Path:
    """PNG: cycles per frame per layer, and each layer's and the total's share of capacity."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [layer.name for layer in report.layers]
    fig = Figure(figsize=(max(7.0, 1.0 + 0.9 * len(names)), 7.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1)
    cycles = [layer.cycles_per_frame for layer in report.layers]
    colors = ["tab:red" if c == report.cycles_per_frame else "tab:blue" for c in cycles]
    ax1.bar(names, cycles, color=colors)
    ax1.set_ylabel("cycles per frame")
    ax1.set_yscale("log")
    ax1.set_title(f"{report.model} on {report.board}: {report.fps:,.0f} fps at "
                  f"{report.clock_mhz:g} MHz (red: slowest layer)")
    groups = names + ["total"]
    width = 0.8 / len(RESOURCE_KEYS)
    for n, key in enumerate(RESOURCE_KEYS):
        cap = report.capacity[key]
        if cap == 0:
            continue
        values = [100 * getattr(layer, key) / cap for layer in report.layers]
        values.append(100 * report.totals[key] / cap)
        xs = [g + (n - len(RESOURCE_KEYS) / 2 + 0.5) * width for g in range(len(groups))]
        ax2.bar(xs, values, width=width, label=f"{key} (of {cap:,})")
    ax2.axhline(100, color="black", linewidth=1, linestyle="--")
    ax2.set_yscale("log")                       # small layers stay visible next to 100%
    ax2.set_ylim(bottom=0.01)
    ax2.set_xticks(range(len(groups)), groups)
    ax2.set_ylabel("% of board capacity (log)")
    ax2.set_title(f"resources against {report.part} ({'fits' if report.fits else 'does NOT fit'})")
    ax2.legend(fontsize="small", ncols=3)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def write_report(report: BuildReport, out_dir: str | os.PathLike, *,
                 notes: Sequence[str] = (), with_plot: bool = True) -> dict:
    """Write ``report.json``, ``report.md`` and ``report.png``; returns their paths.

    Without matplotlib the plot is skipped (its path is then None) and report.md says so.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "png": None}
    paths["json"].write_text(json.dumps(report.to_json(), indent=2) + "\n")
    notes = list(notes)
    if with_plot:
        try:
            paths["png"] = plot(report, out / "report.png")
        except ImportError:
            notes.append("plot skipped: matplotlib is not installed (pip install -e '.[plot]')")
    paths["md"].write_text(report.markdown(notes) +
                           ("\n![per-layer cycles and resources](report.png)\n"
                            if paths["png"] else ""))
    return paths


def add_to_report(path: str | os.PathLike, key: str, value) -> None:
    """Add ``key`` (one of :data:`OPTIONAL_KEYS`) to an existing ``report.json``."""
    if key not in OPTIONAL_KEYS:
        raise ValueError(f"key must be one of {', '.join(OPTIONAL_KEYS)}, not {key!r}")
    path = Path(path)
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data, indent=2) + "\n")


def load_report(path: str | os.PathLike) -> BuildReport:
    """Read and check a ``report.json``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable report.json ({exc})") from None
    try:
        return BuildReport.from_json(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
