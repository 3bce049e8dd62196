"""The sparse engine with its CSC words streamed from DDR (``weight_source="stream"``): a
:class:`WeightStream` served by the DDR model feeds the ``w`` port, outputs bit-exact
against ``sim.golden`` under DDR stalls, input gaps and output backpressure (Amaranth
simulator); the streamed words are the ROM's; parameter errors."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from hdl import ir
from hdl.engines.sparse import SparseCSC, SparseSpec
from hdl.engines.weightstream import WeightStream, WeightStreamSpec, image_beats, weight_image
from sim import amsim
from sim.ddr import DdrModel
from sim.random_model import random_thresholds
from tests.hdl.engines.test_sparse import pruned, reference

BASE = 0x4000_0000


def decode(spec, beats):
    """The weight matrix (internal values) read back from the ``w`` beats as the engine
    reads them: PE ``p``'s word ``t`` in beat ``t``; rows counted by last flags; columns
    absolute (buffer word and bank) or relative to the row's previous entry."""
    values = np.unique(np.append(spec.internal, 0))
    value_of = dict(zip(spec.codes.encode(values).tolist(), values.tolist()))
    assert value_of[int(spec.codes.encode(np.array([0]))[0])] == 0
    vb, lw, ww, simd = spec.value_bits, spec.lane_width, spec.weight_bits, spec.simd
    out = np.zeros_like(spec.internal)
    for p in range(spec.pe):
        row, prev = 0, 0
        for t in range(spec.pe_words[p]):
            word = beats[t] >> (p * ww) & ((1 << ww) - 1)
            for lane in range(simd):
                f = word >> (lane * lw) & ((1 << lw) - 1)
                value = value_of[f & ((1 << vb) - 1)]
                if spec.delta_bits is not None:
                    col = prev = prev + (f >> vb)
                else:
                    buf, sel = f >> vb & ((1 << spec.addr_bits) - 1), f >> (vb + spec.addr_bits)
                    col = buf * simd + lane // spec.reach * spec.reach + sel
                if value:
                    assert out[row * spec.pe + p, col] == 0
                    out[row * spec.pe + p, col] = value
            if word >> (simd * lw) & 1:                           # last word of the row
                row, prev = row + 1, 0
        assert row == spec.local_rows
        assert not any(b >> (p * ww) & ((1 << ww) - 1) for b in beats[spec.pe_words[p]:])
    return out


def run(kind, wbits, in_bits, pe, simd, outputs, inputs, pattern, *, seed, tbits=None, vectors=3,
        data_width=128, gap=0.3, stall=0.3, ddr_stall=0.3, latency=12, reach=None):
    rng = np.random.default_rng(seed)
    w = pruned(rng, outputs, inputs, kind, wbits, pattern)
    th = None
    if tbits:
        layer = ir.FC(name="fc", out_features=outputs, weights=w)
        lo, hi = ir.layer_acc_range(layer, in_bits)
        th = random_thresholds(rng, (lo + hi) // 2 - 4, (lo + hi) // 2 + 4, tbits)
    spec = SparseSpec(w, kind=kind, in_bits=in_bits, pe=pe, simd=simd, reach=reach, thresholds=th,
                      weight_source="stream")
    beats = spec.weight_beats()
    assert len(beats) == spec.weight_steps == spec.compute_cycles
    assert np.array_equal(decode(spec, beats), spec.internal)
    ws_spec = WeightStreamSpec(spec.weight_beat_layout, len(beats), data_width=data_width, burst_len=4)
    image = weight_image(beats, ws_spec)
    assert image_beats(image, ws_spec) == beats

    m = Module()
    m.submodules.dut = dut = SparseCSC(spec=spec)
    m.submodules.ws = ws = WeightStream(spec=ws_spec)
    wiring.connect(m, ws.o, dut.w)
    codes = np.random.default_rng(seed + 7).integers(0, 1 << in_bits, size=(vectors, inputs))
    ddr = DdrModel(image, base=BASE, data_width=data_width, latency=latency, stall=ddr_stall, seed=seed)
    n_out = vectors * dut.local_rows
    got, cycles = [], []

    async def control(ctx):
        ctx.set(ws.base, BASE)
        ctx.set(ws.enable, 1)
        await amsim.feed(ctx, dut.i, codes.reshape(-1, simd), rng=seed, gap=gap)

    async def sink(ctx):
        got.extend(await amsim.drain(ctx, dut.o, n_out, rng=seed + 1, stall=stall, seed=seed,
                                     max_cycles=50 * vectors * (ws_spec.words + dut.cycles_per_vector
                                                                + latency + 20),
                                     cycles=cycles))

    async def memory(ctx):
        await ddr.run(ctx, ws.axi)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(control)
    sim.add_testbench(sink)
    sim.add_testbench(memory, background=True)
    sim.run()
    want = reference(w, codes, in_bits, th)
    assert np.array_equal(np.array(got).reshape(vectors, outputs), want)
    assert ddr.bytes_read >= vectors * ws_spec.pass_bytes
    return spec, ws_spec, cycles


@pytest.mark.parametrize("case", [
    # kind, wbits, in_bits, pe, simd, outputs, inputs, pattern, threshold bits, data width:
    # beats narrower than a word (several per word), wider than a word; rows of very
    # different lengths (PEs with fewer words send zeros); empty rows; relative columns
    # with fillers (SIMD 1, long gaps).
    ("pot", 4, 4, 2, 1, 8, 24, "random", None, 128),
    ("int", 4, 2, 4, 4, 8, 32, "rows", 2, 64),
    ("ternary", None, 3, 2, 4, 6, 16, "edges", None, 128),
    ("binary", None, 1, 3, 2, 6, 12, "blocks", 1, 32),
    ("int", 4, 2, 2, 1, 6, 40, "edges", 2, 64),
])
def test_streamed_sparse_bit_exact(case):
    kind, wbits, in_bits, pe, simd, outputs, inputs, pattern, tbits, dw = case
    run(kind, wbits, in_bits, pe, simd, outputs, inputs, pattern, seed=3, tbits=tbits, data_width=dw)


def test_streamed_sparse_reach_and_empty():
    spec, _, _ = run("pot", 4, 4, 2, 4, 4, 16, "random", seed=5, reach=2)
    assert spec.reach == 2
    run("int", 4, 4, 2, 2, 4, 8, "empty", seed=6)


def test_streamed_full_speed():
    # no stalls and a port fast enough: the streamed engine keeps the ROM version's period
    spec, ws_spec, cycles = run("pot", 4, 4, 2, 1, 8, 64, "random", seed=8, vectors=8, gap=0, stall=0,
                                ddr_stall=0, latency=4)
    assert ws_spec.words <= spec.cycles_per_vector
    ends = cycles[spec.local_rows - 1::spec.local_rows]
    assert ends[-1] - ends[-2] == spec.cycles_per_vector


def test_relative_columns():
    # SIMD 1: 3-bit deltas (8-bit words: 4-bit code, delta, last flag) against the ROM's
    # 5-bit column and 3-bit row tag; gaps above 7 take zero-weight fillers
    w = pruned(np.random.default_rng(3), 8, 24, "pot", 4, "random")
    spec = SparseSpec(w, kind="pot", in_bits=4, pe=2, simd=1, weight_source="stream")
    rom = SparseSpec(w, kind="pot", in_bits=4, pe=2, simd=1)
    assert (spec.delta_bits, spec.word_width, rom.word_width) == (3, 8, 12)
    assert spec.padding == sum(spec.pe_words) - spec.nnz > 0 and rom.padding == 0
    assert spec.storage_bits["total"] == sum(spec.pe_words) * 8
    assert np.array_equal(decode(spec, spec.weight_beats()), spec.internal)


def test_stream_parameter_errors():
    with pytest.raises(ValueError, match="weight_source must be one of rom, stream, not 'ddr'"):
        SparseSpec(np.eye(2, dtype=int), kind="int", wbits=2, in_bits=2, pe=1, weight_source="ddr")
    rom = SparseSpec(np.eye(2, dtype=int), kind="int", wbits=2, in_bits=2, pe=1)
    assert "w" not in rom.signature.members
