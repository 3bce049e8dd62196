"""Driver input checks (issue 15): integer codes only, exact frame shapes, every frame
checked before the first is sent, register values range-checked; SimBackend never
wraps bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hdl.host import driver
from hdl.host.driver import Accelerator, AcceleratorError, Geometry, pack_frame

REGISTERS = driver.REGISTERS        # wherever the register map lives, the driver's view of it


class Recorder:
    """Registers of a given geometry; frames are recorded, scores are the codes' sums."""

    def __init__(self, g: Geometry, **overrides):
        self.g = g
        self.regs = {REGISTERS["ID"]: driver.DEFAULT_IDENT, REGISTERS["VERSION"]: 1,
                     REGISTERS["IN_ELEMENTS"]: g.in_elements, REGISTERS["CLASSES"]: g.classes,
                     REGISTERS["IN_FORMAT"]: g.in_format()}
        self.regs.update({REGISTERS[k]: v for k, v in overrides.items()})
        self.sent = []

    def write_reg(self, offset, value):
        self.regs[offset] = value

    def read_reg(self, offset):
        return self.regs.get(offset, 0)

    def send_frame(self, data):
        self.sent.append(np.asarray(data).copy())

    def recv_frame(self, nbytes):
        g, out = self.g, b""
        bits = np.unpackbits(self.sent[-1].astype(np.uint8), bitorder="little")
        frames = bits.reshape(self.regs[REGISTERS["BATCH"]], -1)
        for f in frames:          # codes of in_bits bits, g.codes_per_beat per beat
            beats = f.reshape(-1, g.in_width)[:, :g.codes_per_beat * g.in_bits]
            codes = (beats.reshape(-1, g.in_bits) << np.arange(g.in_bits)).sum(axis=1)
            total = int(codes[:g.in_elements].sum())
            scores = [total] + [0] * (g.classes - 1)
            label = 0 if total >= 0 else 1
            words = [s & 0xFFFFFFFF for s in scores] + [label]
            frame = b"".join(w.to_bytes(4, "little") for w in words)
            out += frame + bytes(g.out_bytes - len(frame))
        assert len(out) == nbytes
        return np.frombuffer(out, np.uint8)


G = Geometry(in_elements=8 * 8 * 1, in_bits=4, classes=2)


def make(**kw):
    rec = Recorder(G)
    return Accelerator(rec, **kw), rec


@pytest.mark.parametrize("codes, error, match", [
    (np.full((2, 64), 1.5), TypeError, "integer dtype, not float64"),
    (np.full((2, 64), np.nan), TypeError, "integer dtype, not float64"),
    (np.ones((2, 64), np.complex128), TypeError, "integer dtype, not complex128"),
    (np.ones((2, 64), bool), TypeError, "integer dtype, not bool"),
    (np.ones((2, 64), object), TypeError, "integer dtype, not object"),
    (np.ones((5, 8, 8, 2), np.uint8), ValueError, r"got shape \(5, 8, 8, 2\)"),
    (np.ones((2, 32), np.uint8), ValueError, r"got shape \(2, 32\)"),
    (np.ones(64, np.uint8), ValueError, r"got shape \(64,\)"),
    (np.ones((0, 3), np.uint8), ValueError, r"got shape \(0, 3\)"),
])
def test_bad_codes_are_refused_before_sending(codes, error, match):
    acc, rec = make()
    with pytest.raises(error, match=match):
        acc.run(codes)
    assert rec.sent == []


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(1, 6), data=st.data())
def test_a_bad_code_in_any_frame_sends_nothing(n, data):
    acc, rec = make()
    codes = np.asarray(data.draw(st.lists(st.lists(st.integers(0, 15), min_size=64, max_size=64),
                                          min_size=n, max_size=n)), dtype=np.int64)
    frame = data.draw(st.integers(0, n - 1))
    codes[frame, data.draw(st.integers(0, 63))] = data.draw(st.sampled_from([-1, 16, 255, 2**40]))
    with pytest.raises(ValueError, match=f"input codes must be in 0..15; frame {frame} is not"):
        acc.run(codes)
    assert rec.sent == []


def test_good_codes_in_any_layout_of_whole_frames():
    acc, rec = make()
    codes = np.arange(3 * 64, dtype=np.uint16).reshape(3, 8, 8, 1) % 16
    labels, scores = acc.run(codes)
    assert scores[:, 0].tolist() == [int(c.sum()) for c in codes] and labels.tolist() == [0, 0, 0]
    assert len(rec.sent) == 1                       # one transfer: a batch of 3
    flat, _ = acc.run(codes.reshape(3, 64).astype(np.int8))
    assert flat.tolist() == [0, 0, 0]


def test_exact_frame_shape():
    acc, rec = make(frame_shape=(8, 8, 1))
    acc.run(np.zeros((2, 8, 8, 1), np.uint8))
    for shape in [(2, 64), (2, 8, 1, 8), (2, 1, 8, 8)]:
        with pytest.raises(ValueError, match=r"shaped \(N, 8, 8, 1\)"):
            acc.run(np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match="frame_shape"):
        make(frame_shape=(8, 8, 2))


def test_pack_frame_refuses_floats():
    with pytest.raises(TypeError, match="integer dtype"):
        pack_frame(np.full(64, 1.0), G)


@pytest.mark.parametrize("reg, value, match", [
    ("CLASSES", 0xFFFFFFFF, "classes must be at most"),
    ("CLASSES", 0, "classes must be a positive int"),
    ("IN_ELEMENTS", 1 << 31, "in_elements must be at most"),
    ("IN_FORMAT", 0x04040120, "in_bits must be at most 16"),
    ("IN_FORMAT", 0x04030404, "in_width must be one of 32, 64, 128"),
])
def test_register_values_are_range_checked(reg, value, match):
    rec = Recorder(G, **{reg: value})
    with pytest.raises(AcceleratorError, match=f"{reg} = {value:#x}.*{match}"):
        Accelerator(rec)


def test_old_packing_is_refused():
    """An accelerator announcing byte slots for 4-bit codes (version 1) is refused."""
    rec = Recorder(G, IN_FORMAT=0x04040804)
    with pytest.raises(AcceleratorError, match="8-bit code slots, this driver packs 4-bit"):
        Accelerator(rec)


def test_batch_parameter():
    with pytest.raises(ValueError, match="batch must be an int in 1..65535, not 0"):
        make(batch=0)
    acc, rec = make(batch=2)
    codes = np.arange(5 * 64).reshape(5, 64) % 16
    _, scores = acc.run(codes)
    assert scores[:, 0].tolist() == codes.sum(axis=1).tolist()
    assert [d.size for d in rec.sent] == [2 * G.in_bytes, 2 * G.in_bytes, G.in_bytes]
    assert rec.regs[REGISTERS["BATCH"]] == 1


def test_limit_is_the_model_files():
    from hdl import ir
    assert driver.MAX_ELEMENTS == ir.MAX_ELEMENTS


# --- SimBackend frame bytes -----------------------------------------------------------

def _beats(data, in_bytes=4):
    from sim.backend import SimBackend
    backend = SimBackend.__new__(SimBackend)       # _bytes() needs only the beat width
    backend.in_bytes = in_bytes
    raw = backend._bytes(data)
    return [int.from_bytes(raw[k:k + in_bytes], "little") for k in range(0, len(raw), in_bytes)]


def test_beats_refuse_out_of_range_bytes():
    assert _beats([1, 2, 3, 4, 255, 0, 0, 0]) == [0x04030201, 0xFF]
    for bad in ([300, 0, 0, 0], [-1, 0, 0, 0]):
        with pytest.raises(ValueError, match="frame bytes must be in 0..255"):
            _beats(bad)
    with pytest.raises(TypeError, match="integer dtype"):
        _beats(np.ones(4))
