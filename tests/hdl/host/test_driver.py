"""Host driver: packing and unpacking against an in-process fake, and against hdl.shell.axi.

The fake backend re-implements the documented beat packing and register map
independently; a second backend runs hdl.shell.axi.AxiTop (with a small test core) in
Amaranth's simulator, so the driver's bytes are checked against the real adapters.
The Verilator backend of the whole network comes with the network compiler.
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.shell import axi
from hdl.host import driver
from hdl.shell.regmap import REGISTERS
from hdl.host.driver import Accelerator, AcceleratorError, Geometry

from tests.hdl.shell.axibench import SumCore, axis_recv, axis_send, lite_read, lite_write


class FakeBackend:
    """Registers and frames as docs/hardware.md describes them; ``fn(codes) -> scores``."""

    def __init__(self, fn, geometry, *, ident=axi.DEFAULT_IDENT, corrupt_label=False):
        self.fn, self.g = fn, geometry
        self.regs = {REGISTERS["ID"]: ident, REGISTERS["VERSION"]: axi.DEFAULT_VERSION,
                     REGISTERS["IN_ELEMENTS"]: geometry.in_elements,
                     REGISTERS["CLASSES"]: geometry.classes,
                     REGISTERS["IN_FORMAT"]: geometry.in_format(),
                     REGISTERS["FRAMES_DONE"]: 0, REGISTERS["STATUS"]: 0,
                     REGISTERS["CYCLES"]: 0}
        self.pending = []
        self.corrupt_label = corrupt_label
        self.sent = []

    def write_reg(self, offset, value):
        if offset == REGISTERS["CONTROL"] and value & axi.CONTROL_CLEAR:
            for name in ("FRAMES_DONE", "CYCLES", "STATUS"):
                self.regs[REGISTERS[name]] = 0
        if offset == REGISTERS["BATCH"]:
            self.regs[offset] = max(1, value & 0xFFFF)

    def read_reg(self, offset):
        return self.regs.get(offset, 1 if offset == REGISTERS["BATCH"] else 0)

    def send_frame(self, data):
        """One transfer of BATCH frames: floor(width / bits) codes per beat, code j of a
        beat in bits j*bits.., beats little-endian."""
        data = np.asarray(data, dtype=np.uint8)
        g, beat = self.g, self.g.in_width // 8
        assert data.size % beat == 0, "not a whole number of beats"
        self.sent.append(data.copy())
        per = g.in_width // g.in_bits
        beats = -(-g.in_elements // per)
        batch = self.read_reg(REGISTERS["BATCH"])
        if data.size != batch * beats * beat:
            self.regs[REGISTERS["STATUS"]] |= axi.STATUS_ERR_LONG
        for f in range(batch):
            words = [int.from_bytes(bytes(data[(f * beats + b) * beat:(f * beats + b + 1) * beat]),
                                    "little") for b in range(beats)]
            codes = [(words[k // per] >> (k % per * g.in_bits)) & ((1 << g.in_bits) - 1)
                     for k in range(g.in_elements)]
            rest = g.in_elements - (beats - 1) * per
            assert words[-1] >> (rest * g.in_bits) == 0, "padding must be zero"
            self.pending.append(codes)

    def recv_frame(self, nbytes):
        out = b""
        for _ in range(self.read_reg(REGISTERS["BATCH"])):
            codes = self.pending.pop(0)
            scores = [int(s) for s in self.fn(codes)]
            label = max(range(len(scores)), key=lambda k: (scores[k], -k))
            if self.corrupt_label:
                label = (label + 1) % len(scores)
            frame = b"".join(s.to_bytes(4, "little", signed=True) for s in scores)
            frame += label.to_bytes(4, "little")
            frame += bytes(-len(frame) % (self.g.out_width // 8))
            out += frame
            self.regs[REGISTERS["FRAMES_DONE"]] += 1
        assert len(out) == nbytes
        return np.frombuffer(out, dtype=np.uint8)


def weighted_sums(classes, elements, seed):
    w = np.random.default_rng(seed).integers(-50, 50, size=(classes, elements))
    return lambda codes: w @ np.asarray(codes, dtype=np.int64)


@pytest.mark.parametrize("bits, elements, classes, in_width, out_width, batch", [
    (8, 64, 10, 32, 32, 1), (2, 30, 10, 64, 64, 4), (12, 7, 3, 32, 64, 64),
    (1, 5, 4, 64, 32, 2), (3, 50, 4, 128, 128, 5), (1, 784, 10, 64, 64, 3),
])
def test_run_against_fake(bits, elements, classes, in_width, out_width, batch):
    g = Geometry(in_elements=elements, in_bits=bits, classes=classes, in_width=in_width,
                 out_width=out_width)
    fn = weighted_sums(classes, elements, seed=bits)
    backend = FakeBackend(fn, g)
    acc = Accelerator(backend, batch=batch)          # geometry from the registers
    assert acc.geometry == g
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 1 << bits, size=(6, elements))
    labels, scores = acc.run(codes)
    expect = np.stack([fn(c) for c in codes])
    assert np.array_equal(scores, expect)
    assert np.array_equal(labels, np.argmax(expect, axis=1))
    assert acc.frames_done() == 6
    sizes = [min(batch, 6 - k) for k in range(0, 6, batch)]
    assert [d.size for d in backend.sent] == [n * g.in_bytes for n in sizes]
    acc.clear()
    assert acc.frames_done() == 0
    assert acc.status() == {"busy": False, "short_frame": False, "long_frame": False}


def test_reset_waits_while_busy():
    """reset() polls STATUS until busy drops (weight reads in flight), and says so when
    it never does."""
    g = Geometry(in_elements=8, in_bits=8, classes=2, in_width=32, out_width=32)
    backend = FakeBackend(weighted_sums(2, 8, seed=1), g)
    acc = Accelerator(backend)
    reads = []

    def status_after(busy_reads):
        def read_reg(offset, plain=backend.read_reg):
            if offset == REGISTERS["STATUS"]:
                reads.append(offset)
                return axi.STATUS_BUSY if len(reads) <= busy_reads else 0
            return plain(offset)
        return read_reg

    backend.read_reg = status_after(3)
    acc.reset()
    assert len(reads) == 4
    reads.clear()
    backend.read_reg = status_after(10**9)
    with pytest.raises(AcceleratorError, match="stays busy after a soft reset"):
        acc.reset(polls=50)
    assert len(reads) == 50


def test_pack_layout():
    g = Geometry(in_elements=6, in_bits=12, classes=2, in_width=64)   # 5 codes per beat
    data = driver.pack_frame(np.array([1, 0x234, 0xFFF, 7, 0x100, 0xABC]), g)
    word = 1 | 0x234 << 12 | 0xFFF << 24 | 7 << 36 | 0x100 << 48
    assert data.tolist() == list(word.to_bytes(8, "little")) + [0xBC, 0x0A] + [0] * 6
    g8 = Geometry(in_elements=3, in_bits=8, classes=2)
    assert driver.pack_frame([[9], [8], [7]], g8).tolist() == [9, 8, 7, 0]
    g1 = Geometry(in_elements=40, in_bits=1, classes=2)                # 32 codes per beat
    bits = np.arange(40) % 3 == 0
    data = driver.pack_frame(bits.astype(int), g1)
    assert data.tolist() == list(sum(1 << k for k in range(32) if k % 3 == 0)
                                 .to_bytes(4, "little")) + [0b10010010, 0, 0, 0]   # codes 33, 36, 39
    g3 = Geometry(in_elements=11, in_bits=3, classes=2)                # 10 per beat
    data = driver.pack_frame(np.arange(11) % 8, g3)
    assert int.from_bytes(bytes(data[:4]), "little") == sum((k % 8) << 3 * k for k in range(10))
    assert data[4:].tolist() == [10 % 8, 0, 0, 0]
    two = driver.pack_frames(np.stack([np.arange(11) % 8, np.zeros(11, int)]), g3)
    assert two.tolist() == data.tolist() + [0] * 8
    with pytest.raises(ValueError, match="a frame has 3 input codes, not 2"):
        driver.pack_frame([1, 2], g8)
    with pytest.raises(ValueError, match="input codes must be in 0..255"):
        driver.pack_frame([1, 2, 256], g8)
    g64 = Geometry(in_elements=3, in_bits=8, classes=2, out_width=64)
    out = np.frombuffer((-5).to_bytes(4, "little", signed=True) + (3).to_bytes(4, "little")
                        + (1).to_bytes(4, "little") + bytes(4), dtype=np.uint8)
    scores, label = driver.unpack_output(out, g64)
    assert scores.tolist() == [-5, 3] and label == 1
    with pytest.raises(AcceleratorError, match="an output frame has 12 bytes, not 16"):
        driver.unpack_output(out, g8)


def test_driver_checks():
    g = Geometry(in_elements=4, in_bits=8, classes=3)
    fn = weighted_sums(3, 4, seed=1)
    with pytest.raises(AcceleratorError, match="ID register reads 0x00000000"):
        Accelerator(FakeBackend(fn, g, ident=0))
    acc = Accelerator(FakeBackend(fn, g, corrupt_label=True))
    with pytest.raises(AcceleratorError, match="frame 0: label word"):
        acc.run(np.ones((1, 4), dtype=np.int64))
    acc = Accelerator(FakeBackend(fn, g))
    with pytest.raises(ValueError, match="codes must hold whole frames of 4 codes"):
        acc.run(np.ones(6))
    with pytest.raises(TypeError, match="backend must implement"):
        Accelerator(object())
    with pytest.raises(ValueError, match="in_bits must be at most 16"):
        Geometry(in_elements=4, in_bits=17, classes=3)


class AmaranthBackend:
    """hdl.shell.axi.AxiTop around SumCore in Amaranth's simulator, one simulation per call."""

    def __init__(self, frame, classes, bits=8, in_width=32, out_width=32):
        self.frame, self.classes, self.bits = frame, classes, bits
        self.in_width, self.out_width = in_width, out_width
        self.queue = []
        self.batch = 1

    def _top(self):
        return axi.AxiTop(SumCore(self.frame, self.classes, out_lanes=2, bits=self.bits),
                          frame_elements=self.frame, classes=self.classes,
                          in_width=self.in_width, out_width=self.out_width)

    def read_reg(self, offset):
        top, got = self._top(), []

        async def bench(ctx):
            got.append(await lite_read(ctx, top, offset))

        sim = Simulator(top)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        return got[0]

    def write_reg(self, offset, value):
        if offset == REGISTERS["BATCH"]:
            self.batch = value          # written in the simulation that runs the transfer

    def send_frame(self, data):
        self.queue.append(np.asarray(data, dtype=np.uint8))

    def recv_frame(self, nbytes):
        data = self.queue.pop(0)
        top, got = self._top(), []
        step = self.in_width // 8
        words = [int.from_bytes(bytes(data[k:k + step]), "little")
                 for k in range(0, len(data), step)]
        beats = [(w, int(k == len(words) - 1)) for k, w in enumerate(words)]
        rng = random.Random(len(self.queue))

        started = []

        async def src(ctx):
            await lite_write(ctx, top, REGISTERS["BATCH"], self.batch, rng)
            started.append(1)
            await axis_send(ctx, top, beats, rng, prefix="s_axis_")

        async def sink(ctx):
            while not started:
                await ctx.tick()
            await axis_recv(ctx, top, nbytes * 8 // self.out_width, rng, prefix="m_axis_",
                            out=got)

        sim = Simulator(top)
        sim.add_clock(1e-8)
        sim.add_testbench(src)
        sim.add_testbench(sink)
        sim.run()
        assert got[-1][1] == 1 and all(b[1] == 0 for b in got[:-1])
        return np.frombuffer(b"".join(b[0].to_bytes(self.out_width // 8, "little")
                                      for b in got), dtype=np.uint8)


def test_driver_packing_matches_hdl_axi():
    frame, classes = 10, 4
    acc = Accelerator(AmaranthBackend(frame, classes))
    assert acc.geometry == Geometry(in_elements=frame, in_bits=8, classes=classes)
    codes = np.random.default_rng(2).integers(0, 256, size=(5, frame))
    acc.batch = 3                                   # a batch of 3, then one of 2
    labels, scores = acc.run(codes)
    expect = np.stack([[c[k::classes].sum() for k in range(classes)] for c in codes])
    assert np.array_equal(scores, expect)
    assert np.array_equal(labels, np.argmax(expect, axis=1))


@pytest.mark.parametrize("bits, frame, in_width, out_width", [
    (1, 100, 64, 128),        # 64 one-bit codes per beat, 2 beats a frame
    (3, 50, 128, 64),         # 42 three-bit codes per beat, 2 bits spare
])
def test_driver_dense_packing_matches_hdl_axi(bits, frame, in_width, out_width):
    """The driver's dense packing against the real adapters at wide TDATA (random
    stalls), batches of 2 and 1."""
    classes = 4
    acc = Accelerator(AmaranthBackend(frame, classes, bits, in_width, out_width), batch=2)
    assert acc.geometry == Geometry(in_elements=frame, in_bits=bits, classes=classes,
                                    in_width=in_width, out_width=out_width)
    codes = np.random.default_rng(bits).integers(0, 1 << bits, size=(3, frame))
    labels, scores = acc.run(codes)
    expect = np.stack([[c[k::classes].sum() for k in range(classes)] for c in codes])
    assert np.array_equal(scores, expect)
    assert np.array_equal(labels, np.argmax(expect, axis=1))


# --- PynqBackend against a fake PYNQ: the DMA's ordering rules ------------------------

class _Buffer(np.ndarray):
    def flush(self):
        pass

    def invalidate(self):
        pass

    def freebuffer(self):
        pass


class _FakeDma:
    """Two DMA channels in simple mode and an accelerator holding at most one frame:
    a channel refuses a transfer while busy, and an input transfer can finish only while
    an output transfer takes the previous batch's results (else the board would hang)."""

    def __init__(self, fake: FakeBackend):
        self.fake = fake
        self.log = []
        dma = self

        class Channel:
            def __init__(self, name):
                self.name, self.busy, self.buf = name, False, None

            def transfer(self, buf):
                assert not self.busy, f"{self.name}: transfer while busy"
                self.busy, self.buf = True, buf
                dma.log.append(f"start {self.name}")

            def wait(self):
                if self.busy:
                    dma.finish(self)
                    self.busy = False

        self.sendchannel, self.recvchannel = Channel("mm2s"), Channel("s2mm")
        self.sent = self.received = 0

    def finish(self, ch):
        if ch is self.sendchannel:
            # the accelerator takes a batch only if the previous one's output can leave
            assert self.received >= self.sent - 1 and (
                self.recvchannel.busy or self.received == self.sent), "deadlock: no S2MM"
            self.fake.send_frame(np.asarray(ch.buf))
            self.sent += 1
        else:
            assert self.sent > self.received, "S2MM waits for input that never comes"
            ch.buf[:] = self.fake.recv_frame(ch.buf.nbytes)
            self.received += 1
        self.log.append(f"done {ch.name}")


def test_pynq_backend_pipelines_batches(monkeypatch):
    import sys
    import types
    g = Geometry(in_elements=20, in_bits=2, classes=3, in_width=64, out_width=64)
    fn = weighted_sums(3, 20, seed=4)
    fake = FakeBackend(fn, g)
    dma = _FakeDma(fake)
    pynq = types.ModuleType("pynq")
    pynq.allocate = lambda shape, dtype: np.zeros(shape, dtype).view(_Buffer)
    pynq.Overlay = lambda bitfile, download=True: types.SimpleNamespace(dma=dma, accel=fake)
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    fake.write = fake.write_reg
    fake.read = fake.read_reg
    acc = Accelerator.on_board("x.bit", batch=4)
    codes = np.random.default_rng(1).integers(0, 4, size=(15, 20))
    labels, scores = acc.run(codes)
    expect = np.stack([fn(c) for c in codes])
    assert np.array_equal(scores, expect) and np.array_equal(labels, expect.argmax(axis=1))
    # the second batch is sent before the first one's output is waited for
    assert dma.log[:4] == ["start mm2s", "start s2mm", "done mm2s", "start mm2s"]
    assert dma.sent == dma.received == 4
