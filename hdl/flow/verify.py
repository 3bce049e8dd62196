"""``python -m hdl.build BOARD --verify N``: the generated top against the golden model.

:func:`verify` simulates the accelerator (``AxiTop`` around ``Network``, generic logic)
with Verilator through cocotb (:func:`sim.harness.run_cocotb`, the cocotb side in
:mod:`hdl.flow.cocotb_verify`): N frames with random input gaps and output backpressure
through the AXI ports, then a few frames free-running to measure the cycles per frame.
Every frame's scores and label must equal :func:`sim.golden.run`'s bit for bit. A top
whose weights stream from DDR has its AXI read masters served by a DDR model with the
board's port latency and bandwidth (:func:`sim.ddr.port_timing`; random stalls in the
stalled run) over :meth:`~hdl.flow.network.NetworkSpec.weight_image`. On a
mismatch, :func:`locate` runs that frame through each stage's engine alone in Amaranth's
simulator, fed the golden model's input of that layer, and names the first stage whose
output differs from the golden model's (or says that every stage matches alone).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from hdl import ir

__all__ = ["VerifyResult", "frames_for", "verify", "locate"]

#: Chance of an idle input cycle and of TREADY low on the output in the stalled run.
GAP_PROB = STALL_PROB = 0.3
#: Frames of the free-running run (the first fills the pipeline).
TIMING_FRAMES = 4


class VerifyResult(dict):
    """What goes into ``report.json["verify"]``: frames, data, bit_exact, accuracy,
    cycles_per_frame (measured), model_cycles_per_frame, first_mismatch (or None); with
    weights streamed from DDR also ddr_bytes_read (by the stalled run)."""


def frames_for(model: ir.Model, n: int, data: str | None = None, seed: int = 0):
    """``n`` input frames ``(n, H, W, C)`` of codes, their true labels (or None), and the
    data's name: ``data`` is ``"digits"``, an ``.npz`` path (:func:`sim.data.load_dataset`)
    or ``"random"``; None takes the digits test split when the model's input has its
    shape and scikit-learn is installed, else random codes."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of frames must be a positive integer, not {n!r}")
    shape = tuple(model.input.shape)
    if data is None:
        import importlib.util
        data = "digits" if shape == (8, 8, 1) and importlib.util.find_spec("sklearn") else "random"
    if data == "random":
        rng = np.random.default_rng(seed)
        codes = rng.integers(0, 1 << model.input.bits, (n, *shape), dtype=np.int64)
        return codes, None, "random"
    from sim.data import load_dataset
    ds = load_dataset(data)
    if tuple(ds.shape) != shape:
        raise ValueError(f"data set {ds.name} has images {ds.shape}, the model expects {shape}")
    take = np.arange(n) % len(ds.x_test)            # wraps around a small test split
    return (model.input.quantize(ds.x_test[take]).astype(np.int64), ds.y_test[take], ds.name)


def accelerator_top(spec, board=None):
    """The generated top of ``spec``: ``AxiTop`` around its ``Network``."""
    from hdl.flow.network import Network
    from hdl.shell.axi import AxiTop
    model = spec.model
    return AxiTop(Network(spec=spec), frame_elements=int(np.prod(model.input.shape)),
                  classes=len(model.classes), board=board)


def verify(spec, codes, *, golden_model: ir.Model | None = None, labels=None,
           seed: int = 1, name: str | None = None, board=None) -> VerifyResult:
    """Run ``codes`` through the Verilator simulation of the accelerator of ``spec``
    (a :class:`hdl.flow.network.NetworkSpec`) and compare with the golden model of
    ``golden_model`` (default: the spec's model). Returns a :class:`VerifyResult`;
    ``first_mismatch`` is None when every frame is bit-exact."""
    from sim import golden
    from sim.harness import run_cocotb

    model = golden_model or spec.model
    codes = np.asarray(codes, dtype=np.int64)
    n = len(codes)
    want = golden.run(model, codes).astype(np.int64)
    want_labels = golden.predict(model, codes).astype(np.int64)
    top = accelerator_top(spec, board)
    parameters = {
        "codes": codes.reshape(n, -1), "in_bits": model.input.bits,
        "classes": len(model.classes), "latency_bound": int(spec.latency_bound),
        "timing_frames": min(TIMING_FRAMES, n), "gap_prob": GAP_PROB, "stall_prob": STALL_PROB,
        "ident": top.register_values.ident,
    }
    if spec.streamers:
        parameters.update(ddr_parameters(spec, board))
    label = name or f"verify_{model.name}_{spec.cycles_per_frame}"
    with _quick_build():
        result = run_cocotb(top, name=label, test_module="hdl.flow.cocotb_verify",
                            parameters=parameters, seeds=(seed,))
    rep = result.report
    got = np.asarray(rep["scores"], dtype=np.int64).reshape(n, -1)
    got_labels = np.asarray(rep["labels"], dtype=np.int64)
    bad = np.nonzero((got != want).any(axis=1) | (got_labels != want_labels))[0]
    intervals = rep["intervals"][1:] or rep["intervals"]
    out = VerifyResult(
        frames=n, seed=seed, gap_prob=GAP_PROB, stall_prob=STALL_PROB,
        bit_exact=not len(bad), mismatched_frames=int(len(bad)),
        cycles_per_frame=int(np.median(intervals)) if intervals else None,
        model_cycles_per_frame=int(spec.cycles_per_frame),
        latency_cycles=rep.get("latency"),
        accuracy=(float(np.mean(got_labels == np.asarray(labels))) if labels is not None else None),
        golden_accuracy=(float(np.mean(want_labels == np.asarray(labels))) if labels is not None
                         else None),
        first_mismatch=None, simulator=result.simulator)
    if spec.streamers:
        out["ddr_bytes_read"] = int(sum(rep["ddr_bytes_read"]))
    if len(bad):
        k = int(bad[0])
        out["first_mismatch"] = {"frame": k, "expected": want[k].tolist() + [int(want_labels[k])],
                                 "got": got[k].tolist() + [int(got_labels[k])],
                                 "layer": locate(spec, model, codes[k])}
    return out


#: Where the simulated DDR holds the weight buffer (4 KiB aligned, above 4 GiB).
WEIGHT_BASE = 0x8_0000_0000


def ddr_parameters(spec, board) -> dict:
    """The cocotb side's DDR: the weight buffer, its address, each master's width, and
    the port's latency and bytes per cycle (the board's at its default clock; without
    a board 30 cycles and one word per cycle)."""
    from sim.ddr import port_timing
    widths = [s.ddr_width for s, _, _ in spec.streamers]
    latency, per_cycle = port_timing(board) if board is not None else (30, max(widths) // 8)
    return {"weight_image": np.frombuffer(spec.weight_image(), dtype=np.uint8),
            "weight_base": WEIGHT_BASE, "weight_ports": widths, "ddr_latency": int(latency),
            "ddr_bytes_per_cycle": float(per_cycle)}


@contextlib.contextmanager
def _quick_build():
    """A whole network compiles several times faster at low C++ optimisation, and a few
    hundred frames do not need more; a caller's own ``OPT_*`` settings in ``MAKEFLAGS``
    win (they reach Verilator's make, see :func:`sim.harness._build`)."""
    old = os.environ.get("MAKEFLAGS")
    if "OPT_" not in (old or ""):
        os.environ["MAKEFLAGS"] = f"{old or ''} OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0".strip()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


def _feed_and_drain(engine, frame_in: np.ndarray, lanes_in: int, n_out: int, lanes_out: int,
                    max_cycles: int) -> np.ndarray:
    """One frame through ``engine`` in Amaranth's simulator; returns its output values."""
    from amaranth.sim import Simulator

    beats = frame_in.reshape(-1, lanes_in).tolist()
    out: list[int] = []

    async def source(ctx):
        for beat in beats:
            ctx.set(engine.i.payload, beat)
            ctx.set(engine.i.valid, 1)
            await ctx.tick().until(engine.i.ready)
        ctx.set(engine.i.valid, 0)

    async def sink(ctx):
        ctx.set(engine.o.ready, 1)
        for _ in range(max_cycles):
            await ctx.tick()
            if len(out) >= n_out:
                return
        raise TimeoutError

    async def watch(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(
                engine.o.valid, engine.o.ready,
                engine.o.payload):
            if valid and ready:
                out.extend(int(v) for v in payload)

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.add_process(watch)
    sim.run()
    return np.asarray(out[:n_out], dtype=np.int64)


def locate(spec, model: ir.Model, frame) -> str:
    """The first stage whose engine, simulated alone on the golden model's input of its
    layer, gives other values than the golden model; or a note that all stages match."""
    from sim import golden
    from hdl.flow.network import build_engine

    outputs = golden.run(model, np.asarray(frame)[None], all_layers=True)
    index = {layer.name: i for i, layer in enumerate(model.layers)}
    previous = np.asarray(frame)[None]
    for stage in spec.stages:
        i = index.get(stage.name)
        if i is None:
            return f"stage '{stage.name}' has no layer of that name in the golden model"
        last = i + (1 if stage.threshold is not None else 0)
        expected = np.asarray(outputs[last]).reshape(-1).astype(np.int64)
        engine = build_engine(stage)
        try:
            got = _feed_and_drain(engine, previous.reshape(-1), stage.in_lanes, expected.size,
                                  stage.out_lanes, 40 * stage.cycles_per_frame + 10_000)
        except TimeoutError:
            return f"layer '{stage.name}': its engine gives no whole frame"
        if not np.array_equal(got, expected):
            at = int(np.argmax(got != expected))
            return (f"layer '{stage.name}' (element {at} of {expected.size}: expected "
                    f"{int(expected[at])}, got {int(got[at])})")
        previous = np.asarray(outputs[last])
    return "every stage matches the golden model alone: the difference is in the AXI shell"
