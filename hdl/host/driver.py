"""Host driver: run frames through the accelerator, on a board or against a simulation.

:class:`Accelerator` packs input codes densely into AXI-Stream beats (the packing of
:mod:`hdl.shell.adapters` and docs/hardware.md; registers from :mod:`hdl.shell.regmap`,
so that no Amaranth is imported here), hands a batch of frames per DMA transfer to a
*backend* (the BATCH register), unpacks the scores and the labels, and reads the
registers (frames done, cycles, status).

A backend implements four calls (:class:`Backend`):

* ``write_reg(offset, value)`` / ``read_reg(offset) -> int``: the AXI4-Lite registers;
* ``send_frame(data)``: one transfer's input beats as bytes (``uint8`` array, a whole
  number of beats: BATCH frames; the last beat carries TLAST);
* ``recv_frame(nbytes) -> uint8 array``: one transfer's output beats (up to TLAST).

A backend with ``pipelined = True`` takes the next transfer's ``send_frame`` before the
previous ``recv_frame`` (it queues input transfers and keeps the output side going), so
that the accelerator never drains between batches; :meth:`Accelerator.run` then keeps
two batches in flight.

:class:`PynqBackend` is the board: a PYNQ ``Overlay`` of the bitstream (``.bit`` with its
``.hwh``), the AXI DMA ``dma`` moving frames, the accelerator's registers at ``accel``.
PYNQ is imported only when a ``PynqBackend`` is made, so this module imports anywhere.
The backend that drives the Verilator simulation of the whole accelerator comes with the
network compiler.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from hdl.shell.regmap import (CONTROL_CLEAR, CONTROL_SOFT_RESET, DEFAULT_IDENT, MAX_BATCH,
                              MAX_CODE_BITS, REGISTERS, STATUS_BUSY, STATUS_ERR_LONG,
                              STATUS_ERR_SHORT, TDATA_WIDTHS, WORD, input_beats_per_frame,
                              output_beats_per_frame, pack_in_format)

__all__ = ["Backend", "PynqBackend", "Accelerator", "Geometry", "pack_frame", "pack_frames",
           "unpack_output", "unpack_outputs", "AcceleratorError", "DEFAULT_BATCH"]

#: Frames per DMA transfer unless ``Accelerator(batch=...)`` says otherwise.
DEFAULT_BATCH = 64


class AcceleratorError(RuntimeError):
    """The hardware answered something the driver cannot accept."""


@runtime_checkable
class Backend(Protocol):
    def write_reg(self, offset: int, value: int) -> None: ...
    def read_reg(self, offset: int) -> int: ...
    def send_frame(self, data: np.ndarray) -> None: ...
    def recv_frame(self, nbytes: int) -> np.ndarray: ...


#: Largest input frame and class count a register may announce (= ``hdl.ir.MAX_ELEMENTS``,
#: the model file's limit); larger values are refused before a buffer is sized from them.
MAX_ELEMENTS = 1 << 26


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """What the driver needs to pack and unpack frames (the IN_* and CLASSES registers)."""

    in_elements: int
    in_bits: int
    classes: int
    in_width: int = 32          # input TDATA bits
    out_width: int = 32         # output TDATA bits

    def __post_init__(self):
        for key in ("in_elements", "in_bits", "classes"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive int, not {value!r}")
            if value > MAX_ELEMENTS:
                raise ValueError(f"{key} must be at most {MAX_ELEMENTS} (the model file's "
                                 f"limit), not {value}")
        if self.in_bits > MAX_CODE_BITS:
            raise ValueError(f"in_bits must be at most {MAX_CODE_BITS}, not {self.in_bits}")
        for key in ("in_width", "out_width"):
            if getattr(self, key) not in TDATA_WIDTHS or isinstance(getattr(self, key), bool):
                raise ValueError(f"{key} must be one of {', '.join(map(str, TDATA_WIDTHS))}, "
                                 f"not {getattr(self, key)!r}")

    @property
    def slot_bits(self) -> int:
        """Bits of TDATA per input code: the code's width (dense packing)."""
        return self.in_bits

    @property
    def codes_per_beat(self) -> int:
        return self.in_width // self.slot_bits

    @property
    def in_beats(self) -> int:
        return input_beats_per_frame(self.in_elements, self.in_bits, self.in_width)

    @property
    def in_bytes(self) -> int:
        """Bytes of one input frame: whole beats."""
        return self.in_beats * self.in_width // 8

    @property
    def out_bytes(self) -> int:
        """Bytes of one output frame: ``classes`` score words and a label word, whole beats."""
        return output_beats_per_frame(self.classes, self.out_width) * self.out_width // 8

    @classmethod
    def from_registers(cls, read_reg) -> "Geometry":
        """The geometry the IN_FORMAT, IN_ELEMENTS and CLASSES registers describe.

        Values out of range (e.g. ``CLASSES = 0xFFFFFFFF``, 16 GiB output frames) raise
        :class:`AcceleratorError` before any buffer is sized from them.
        """
        values = {name: int(read_reg(REGISTERS[name])) for name in ("IN_FORMAT", "IN_ELEMENTS", "CLASSES")}
        fmt = values["IN_FORMAT"]
        regs = ", ".join(f"{k} = {v:#x}" for k, v in values.items())
        try:
            g = cls(in_elements=values["IN_ELEMENTS"], classes=values["CLASSES"],
                    in_bits=fmt & 0xFF, in_width=((fmt >> 16) & 0xFF) * 8,
                    out_width=((fmt >> 24) & 0xFF) * 8)
        except ValueError as exc:
            raise AcceleratorError(f"the registers describe no valid accelerator ({regs}): {exc}") from None
        if (fmt >> 8) & 0xFF != g.slot_bits:
            raise AcceleratorError(f"IN_FORMAT announces {(fmt >> 8) & 0xFF}-bit code slots, "
                                   f"this driver packs {g.slot_bits}-bit codes densely "
                                   f"({regs}): an accelerator of another version")
        return g

    def in_format(self) -> int:
        """The IN_FORMAT register value that matches this geometry."""
        return pack_in_format(self.in_bits, self.in_width, self.out_width)


def pack_frame(codes, geometry: Geometry) -> np.ndarray:
    """One frame's input codes (any shape, tensor order) -> the bytes of its beats.

    ``codes_per_beat = floor(TDATA / bits)`` codes per beat, code ``j`` of a beat in bits
    ``j*bits .. j*bits+bits-1`` (the first code in the lowest bits of the first beat),
    beats little-endian in memory, zeros after the last code up to a whole beat.
    """
    flat = _integer_codes(codes).reshape(-1)
    if flat.size != geometry.in_elements:
        raise ValueError(f"a frame has {geometry.in_elements} input codes, not {flat.size}")
    return pack_frames(flat.reshape(1, -1), geometry)


def pack_frames(codes, geometry: Geometry) -> np.ndarray:
    """``(N, in_elements)`` integer codes -> the bytes of N frames' beats, back to back."""
    g = geometry
    codes = _integer_codes(codes)
    if codes.ndim != 2 or codes.shape[1] != g.in_elements:
        raise ValueError(f"codes must be shaped (N, {g.in_elements}), not {codes.shape}")
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << g.in_bits):
        raise ValueError(f"input codes must be in 0..{(1 << g.in_bits) - 1}")
    n, cpb, slot = len(codes), g.codes_per_beat, g.slot_bits
    padded = np.zeros((n, g.in_beats * cpb), dtype=np.uint32)
    padded[:, :g.in_elements] = codes
    if slot in (8, 16) and cpb * slot == g.in_width:       # whole bytes: a plain view
        return np.ascontiguousarray(padded.astype("<u1" if slot == 8 else "<u2")) \
            .view(np.uint8).reshape(-1)
    bits = ((padded[..., None] >> np.arange(slot, dtype=np.uint32)) & 1).astype(np.uint8)
    beats = np.zeros((n, g.in_beats, g.in_width), dtype=np.uint8)
    beats[..., :cpb * slot] = bits.reshape(n, g.in_beats, cpb * slot)
    return np.packbits(beats, axis=-1, bitorder="little").reshape(-1)


def _integer_codes(codes) -> np.ndarray:
    """``codes`` as an array of an integer dtype (floats, complex, bool, objects refused)."""
    arr = np.asarray(codes)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"input codes must have an integer dtype, not {arr.dtype} "
                        "(quantize first: ir.InputSpec.quantize)")
    return arr


def unpack_output(data, geometry: Geometry) -> tuple[np.ndarray, int]:
    """One frame's output bytes -> (int64 scores, label)."""
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    if data.size != geometry.out_bytes:
        raise AcceleratorError(f"an output frame has {geometry.out_bytes} bytes, "
                               f"not {data.size}")
    scores, labels = unpack_outputs(data, geometry, 1)
    return scores[0], int(labels[0])


def unpack_outputs(data, geometry: Geometry, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` output frames' bytes (one transfer) -> (int64 scores (N, classes),
    labels (N,))."""
    g = geometry
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    if data.size != frames * g.out_bytes:
        raise AcceleratorError(f"{frames} output frames have {frames * g.out_bytes} bytes, "
                               f"not {data.size}")
    words = np.ascontiguousarray(data).view("<u4").reshape(frames, -1)
    scores = words[:, :g.classes].view("<i4").astype(np.int64)
    return scores, words[:, g.classes].astype(np.int64)


class Accelerator:
    """The accelerator seen from the host.

    ``backend`` is a :class:`Backend`; ``geometry`` defaults to what the registers say.
    ``check_label``: raise :class:`AcceleratorError` when the label word disagrees with
    the argmax of the scores (first maximum), or an input frame error flag is raised.
    ``batch``: frames per DMA transfer (written to the BATCH register by :meth:`run`).
    """

    def __init__(self, backend: Backend, *, geometry: Geometry | None = None,
                 ident: int = DEFAULT_IDENT, check_label: bool = True,
                 frame_shape: tuple[int, ...] | None = None, batch: int = DEFAULT_BATCH):
        if not isinstance(backend, Backend):
            raise TypeError("backend must implement write_reg, read_reg, send_frame, "
                            "recv_frame")
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch must be an int in 1..{MAX_BATCH}, not {batch!r}")
        self.batch = batch
        self.backend = backend
        found = backend.read_reg(REGISTERS["ID"])
        if ident is not None and found != ident:
            raise AcceleratorError(f"ID register reads {found:#010x}, expected {ident:#010x}: "
                                   "not this accelerator, or the bitstream is not loaded")
        self.version = backend.read_reg(REGISTERS["VERSION"])
        self.geometry = geometry or Geometry.from_registers(backend.read_reg)
        self.check_label = check_label
        if frame_shape is not None:
            frame_shape = tuple(int(d) for d in frame_shape)
            if int(np.prod(frame_shape)) != self.geometry.in_elements:
                raise ValueError(f"frame_shape {frame_shape} must hold the accelerator's "
                                 f"{self.geometry.in_elements} input codes")
        #: ``(H, W, C)`` of one frame, if given: :meth:`run` then wants exactly ``(N, H, W, C)``.
        self.frame_shape = frame_shape

    @classmethod
    def on_board(cls, bitfile: str, **kwargs) -> "Accelerator":
        """Load ``bitfile`` (and its ``.hwh``) with PYNQ and drive it through the DMA."""
        backend_args = {k: kwargs.pop(k) for k in ("dma", "accel", "download") if k in kwargs}
        return cls(PynqBackend(bitfile, **backend_args), **kwargs)

    # Registers.
    def status(self) -> dict:
        s = self.backend.read_reg(REGISTERS["STATUS"])
        return {"busy": bool(s & STATUS_BUSY), "short_frame": bool(s & STATUS_ERR_SHORT),
                "long_frame": bool(s & STATUS_ERR_LONG)}

    def frames_done(self) -> int:
        return self.backend.read_reg(REGISTERS["FRAMES_DONE"])

    def cycles(self) -> int:
        return self.backend.read_reg(REGISTERS["CYCLES"])

    def reset(self, polls: int = 10_000) -> None:
        """Soft reset of the datapath, and clear the counters and error flags. With weight
        streamers the reset waits for their DDR reads in flight: STATUS reads busy until
        then, and this polls it (at most ``polls`` reads)."""
        self.backend.write_reg(REGISTERS["CONTROL"], CONTROL_SOFT_RESET | CONTROL_CLEAR)
        for _ in range(polls):
            if not self.backend.read_reg(REGISTERS["STATUS"]) & STATUS_BUSY:
                return
        raise AcceleratorError(f"STATUS stays busy after a soft reset ({polls} reads): "
                               "a DDR read of the weight streamers never completed")

    def clear(self) -> None:
        """Clear FRAMES_DONE, CYCLES and the error flags."""
        self.backend.write_reg(REGISTERS["CONTROL"], CONTROL_CLEAR)

    def set_weight_base(self, address: int) -> None:
        """Point the weight streamers at the weight buffer (``NetworkSpec.weight_image``)
        at DDR byte ``address`` and start them: WEIGHT_BASE_HI, then WEIGHT_BASE_LO."""
        if not isinstance(address, int) or address < 0 or address >> 64 or address % 4096:
            raise ValueError(f"address must be a 4 KiB aligned 64-bit DDR address, not {address!r}")
        self.backend.write_reg(REGISTERS["WEIGHT_BASE_HI"], address >> 32)
        self.backend.write_reg(REGISTERS["WEIGHT_BASE_LO"], address & 0xFFFF_FFFF)

    def load_weights(self, image: bytes) -> int:
        """Place the weight buffer in contiguous DDR (the backend's ``place_buffer``) and
        start the streamers on it; returns its physical address."""
        address = self.backend.place_buffer(bytes(image))
        self.set_weight_base(address)
        return address

    # Frames.
    def run(self, codes) -> tuple[np.ndarray, np.ndarray]:
        """Input codes ``(N, ...)`` (each frame ``in_elements`` codes) -> (labels (N,),
        scores (N, classes) int64).

        Every frame is checked (integer dtype, shape, code range) before the first is
        sent; then one DMA transfer each way per ``batch`` frames (the last batch may be
        smaller: BATCH is written before each transfer whose size differs).
        """
        codes = np.asarray(codes)
        frames = self._check_codes(codes)
        g = self.geometry
        labels = np.empty(len(frames), dtype=np.int64)
        scores = np.empty((len(frames), g.classes), dtype=np.int64)
        ahead = 2 if getattr(self.backend, "pipelined", False) else 1
        pending: deque = deque()                   # (first frame, frames) sent, not received

        def receive():
            start, n = pending.popleft()
            s, lab = unpack_outputs(self.backend.recv_frame(n * g.out_bytes), g, n)
            if self.check_label:
                best = np.argmax(s, axis=1)
                bad = np.nonzero(lab != best)[0]
                if len(bad):
                    k = int(bad[0])
                    raise AcceleratorError(f"frame {start + k}: label word {int(lab[k])} is "
                                           f"not the argmax {int(best[k])} of the scores")
            labels[start:start + n], scores[start:start + n] = lab, s

        current = None
        for start in range(0, len(frames), self.batch):
            chunk = frames[start:start + self.batch]
            if len(chunk) != current:              # BATCH changes only with nothing in flight
                while pending:
                    receive()
                current = len(chunk)
                self.backend.write_reg(REGISTERS["BATCH"], current)
            self.backend.send_frame(pack_frames(chunk, g))
            pending.append((start, current))
            if len(pending) >= ahead:
                receive()
        while pending:
            receive()
        if self.check_label:
            st = self.status()
            if st["short_frame"] or st["long_frame"]:
                raise AcceleratorError(f"input frame error flags set: {st}")
        return labels, scores

    def predict(self, codes) -> np.ndarray:
        return self.run(codes)[0]

    def _check_codes(self, codes: np.ndarray) -> np.ndarray:
        """``(N, frame...)`` integer codes in range -> ``(N, in_elements)``; else one error."""
        g = self.geometry
        frame = codes.shape[1:]
        if codes.ndim < 2 or int(np.prod(frame)) != g.in_elements or (
                self.frame_shape is not None and frame != self.frame_shape):
            want = f"(N, {', '.join(map(str, self.frame_shape))})" if self.frame_shape else \
                f"(N, ...) with {g.in_elements} codes per frame"
            raise ValueError(f"codes must hold whole frames of {g.in_elements} codes, shaped "
                             f"{want}, got shape {codes.shape}")
        codes = _integer_codes(codes)
        top = (1 << g.in_bits) - 1
        if codes.size and (codes.min() < 0 or codes.max() > top):
            bad = np.nonzero(((codes < 0) | (codes > top)).reshape(len(codes), -1).any(axis=1))[0]
            raise ValueError(f"input codes must be in 0..{top}; frame {int(bad[0])} is not "
                             "(nothing was sent)")
        return codes.reshape(len(codes), g.in_elements)


class PynqBackend:
    """A PYNQ overlay on the board: registers over MMIO, frames over the AXI DMA.

    Pipelined: ``send_frame`` starts the input (MM2S) transfer, or queues it while one
    runs; ``recv_frame`` starts the output (S2MM) transfer, starts the queued input
    transfer as soon as the running one ends, and waits for its output. An output
    transfer is thus always running while the driver waits for an input transfer, so
    the accelerator's output never blocks its input for good.
    """

    pipelined = True

    def __init__(self, bitfile: str, *, dma: str = "dma", accel: str = "accel",
                 download: bool = True):
        try:
            import pynq
        except ImportError:
            raise AcceleratorError("PynqBackend needs the 'pynq' package (on the board's "
                                   "PYNQ image)") from None
        self._pynq = pynq
        self.overlay = pynq.Overlay(bitfile, download=download)
        self.dma = getattr(self.overlay, dma)
        self.regs = getattr(self.overlay, accel)
        self._in = [None, None]        # input buffers, used in turn
        self._turn = 0
        self._queued = None            # an input buffer waiting for the running transfer
        self._sending = False
        self._out = None

    def write_reg(self, offset: int, value: int) -> None:
        self.regs.write(offset, value)

    def read_reg(self, offset: int) -> int:
        return int(self.regs.read(offset))

    def _buffer(self, current, nbytes):
        if current is None or current.nbytes != nbytes:
            if current is not None:
                current.freebuffer()
            current = self._pynq.allocate(shape=(nbytes,), dtype=np.uint8)
        return current

    def place_buffer(self, image: bytes) -> int:
        """Copy ``image`` into a contiguous DDR buffer (kept alive); its physical address.
        PYNQ's allocator returns page-aligned (4 KiB) buffers."""
        buf = self._pynq.allocate(shape=(len(image),), dtype=np.uint8)
        buf[:] = np.frombuffer(image, np.uint8)
        buf.flush()
        self._weights = buf
        return int(buf.physical_address)

    def send_frame(self, data: np.ndarray) -> None:
        if self._queued is not None:
            raise AcceleratorError("PynqBackend holds one queued input transfer: receive "
                                   "the oldest batch first")
        k = self._turn
        self._turn ^= 1
        self._in[k] = buf = self._buffer(self._in[k], len(data))
        buf[:] = data
        buf.flush()
        if self._sending:
            self._queued = buf
        else:
            self.dma.sendchannel.transfer(buf)         # returns at once; TLAST at its end
            self._sending = True

    def recv_frame(self, nbytes: int) -> np.ndarray:
        self._out = self._buffer(self._out, nbytes)
        self.dma.recvchannel.transfer(self._out)
        if self._sending:
            self.dma.sendchannel.wait()
            self._sending = False
        if self._queued is not None:
            self.dma.sendchannel.transfer(self._queued)
            self._queued, self._sending = None, True
        self.dma.recvchannel.wait()
        self._out.invalidate()
        return np.array(self._out)
