"""Board-side driver of a qnn-fpga accelerator (copied into ``deploy/`` by the build).

Needs only NumPy and PYNQ (imported when an overlay is loaded); runs on the Python 3.8
and newer of the PYNQ images (2.7: Python 3.8; 3.0/3.1: Python 3.10) with NumPy 1.x or
2.x. Everything it knows about the hardware comes from ``accelerator.json`` beside it,
which the build writes from the register map and the packing of the generated top.

    from qnn_driver import QnnAccelerator
    acc = QnnAccelerator()                 # loads qnn.bit (and qnn.hwh) beside this file
    labels, scores = acc.run(codes)        # codes: (N, H, W, C) integer input codes

A build whose weights (some of them) stream from DDR ships ``weights.bin``: the driver
places it in a contiguous DDR buffer and writes its address to WEIGHT_BASE_HI/LO when
it starts (:meth:`QnnAccelerator.load_weights`), before any frame.
"""

import json
import os
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "accelerator.json")


class AcceleratorError(RuntimeError):
    """The hardware answered something this driver cannot accept."""


def load_config(path=CONFIG):
    """The build's description of the accelerator (registers, packing, geometry)."""
    with open(path) as f:
        return json.load(f)


def pack_frames(codes, cfg):
    """Input codes ``(N, elements)`` -> the bytes of their beats ``(N, frame_bytes)``.

    Code ``k`` of a frame goes into beat ``k // codes_per_beat`` at bit
    ``(k % codes_per_beat) * slot_bits``, little-endian; unused bits are zero.
    """
    inp = cfg["input"]
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError("input codes must have an integer dtype, not %s" % codes.dtype)
    n = codes.shape[0]
    codes = codes.reshape(n, -1)
    if codes.shape[1] != inp["elements"]:
        raise ValueError("a frame has %d input codes, not %d" % (inp["elements"], codes.shape[1]))
    top = (1 << inp["bits"]) - 1
    if codes.size and (codes.min() < 0 or codes.max() > top):
        raise ValueError("input codes must be in 0..%d" % top)
    slot, per_beat, beats = inp["slot_bits"], inp["codes_per_beat"], inp["beats_per_frame"]
    beat_bits = 8 * inp["beat_bytes"]
    padded = np.zeros((n, beats * per_beat), dtype=np.uint32)
    padded[:, :codes.shape[1]] = codes
    shifts = np.arange(slot, dtype=np.uint32)
    bits = ((padded[:, :, None] >> shifts) & 1).astype(np.uint8)        # (n, codes, slot)
    bits = bits.reshape(n, beats, per_beat * slot)
    if per_beat * slot < beat_bits:
        bits = np.concatenate(
            [bits, np.zeros((n, beats, beat_bits - per_beat * slot), np.uint8)], axis=2)
    return np.packbits(bits, axis=2, bitorder="little").reshape(n, beats * inp["beat_bytes"])


def unpack_frames(data, cfg):
    """Output bytes ``(N, frame_bytes)`` -> (labels (N,), int64 scores (N, classes))."""
    out = cfg["output"]
    data = np.ascontiguousarray(np.asarray(data, dtype=np.uint8)).reshape(-1, out["frame_bytes"])
    words = data.view("<u4")
    scores = words[:, :out["classes"]].view("<i4").astype(np.int64)
    labels = words[:, out["classes"]].astype(np.int64)
    return labels, scores


class QnnAccelerator(object):
    """The accelerator in a PYNQ overlay: registers over MMIO, frames over the AXI DMA.

    ``overlay`` may be given (an already loaded ``pynq.Overlay``); otherwise ``bitfile``
    (default: the one named in ``accelerator.json``, beside this file) is loaded.
    """

    def __init__(self, bitfile=None, config=None, overlay=None, download=True):
        self.config = cfg = load_config(config or CONFIG)
        import pynq
        self._pynq = pynq
        if overlay is None:
            overlay = pynq.Overlay(bitfile or os.path.join(HERE, cfg["bitfile"]),
                                   download=download)
        self.overlay = overlay
        self.dma = getattr(overlay, cfg["dma"])
        self.regs = getattr(overlay, cfg["accel"])
        self._buffers = {}
        self._batch = None          # what BATCH holds, once this driver wrote it
        self._weights = None        # the DDR weight buffer, kept while the driver lives
        self._check_registers()
        if cfg.get("weights"):
            self.load_weights()

    # Registers.
    def read(self, name):
        return int(self.regs.read(self.config["registers"][name]))

    def write(self, name, value):
        self.regs.write(self.config["registers"][name], int(value))

    def _check_registers(self):
        cfg = self.config
        for name, want in sorted(cfg["register_values"].items()):
            got = self.read(name)
            if got != want:
                raise AcceleratorError(
                    "register %s reads %#x, this build wrote %#x: not this accelerator, or "
                    "the bitstream is not loaded" % (name, got, want))

    def status(self):
        s, bits = self.read("STATUS"), self.config["bits"]
        return {"busy": bool(s & bits["STATUS_BUSY"]),
                "short_frame": bool(s & bits["STATUS_ERR_SHORT"]),
                "long_frame": bool(s & bits["STATUS_ERR_LONG"])}

    def frames_done(self):
        return self.read("FRAMES_DONE")

    def cycles(self):
        return self.read("CYCLES")

    def reset(self, polls=10000):
        """Soft reset of the datapath; clears the counters and error flags. With weight
        streamers the reset waits for their DDR reads in flight (STATUS busy until then)."""
        bits = self.config["bits"]
        self.write("CONTROL", bits["CONTROL_SOFT_RESET"] | bits["CONTROL_CLEAR"])
        self._batch = None
        for _ in range(polls):
            if not self.read("STATUS") & bits["STATUS_BUSY"]:
                return
        raise AcceleratorError("STATUS stays busy after a soft reset: a DDR read never completed")

    def clear(self):
        self.write("CONTROL", self.config["bits"]["CONTROL_CLEAR"])

    def load_weights(self, path=None):
        """Place the weight buffer (``weights.bin`` beside this file by default) in
        contiguous DDR and point the streamers at it: WEIGHT_BASE_HI, then
        WEIGHT_BASE_LO (which starts them). Returns the buffer's physical address."""
        spec = self.config.get("weights")
        if not spec:
            raise AcceleratorError("this build streams no weights from DDR")
        with open(path or os.path.join(HERE, spec["file"]), "rb") as f:
            image = np.frombuffer(f.read(), dtype=np.uint8)
        if image.size != spec["bytes"]:
            raise AcceleratorError("the weight image has %d bytes, the build wrote %d"
                                   % (image.size, spec["bytes"]))
        buf = self._pynq.allocate(shape=(image.size,), dtype=np.uint8)
        buf[:] = image
        buf.flush()
        address = int(buf.physical_address)
        if address % spec["align"]:
            buf.freebuffer()
            raise AcceleratorError("the weight buffer at %#x is not %d-byte aligned"
                                   % (address, spec["align"]))
        if self._weights is not None:
            self._weights.freebuffer()
        self._weights = buf
        self.write("WEIGHT_BASE_HI", address >> 32)
        self.write("WEIGHT_BASE_LO", address & 0xFFFFFFFF)
        return address

    # Frames.
    def _buffer(self, key, nbytes):
        buf = self._buffers.get(key)
        if buf is None or buf.nbytes < nbytes:
            if buf is not None:
                buf.freebuffer()
            buf = self._pynq.allocate(shape=(nbytes,), dtype=np.uint8)
            self._buffers[key] = buf
        return buf

    def run(self, codes, batch=256):
        """Input codes ``(N, ...)`` (``elements`` codes per frame) -> (labels (N,),
        scores (N, classes) int64). ``batch`` frames go in one DMA transfer each way (the
        BATCH register tells the accelerator where a transfer ends)."""
        if not 1 <= int(batch) <= self.config["max_batch"]:
            raise ValueError("batch must be in 1..%d, not %r" % (self.config["max_batch"], batch))
        batch = int(batch)
        codes = np.asarray(codes)
        n = codes.shape[0]
        inp, out = self.config["input"], self.config["output"]
        labels = np.empty(n, dtype=np.int64)
        scores = np.empty((n, out["classes"]), dtype=np.int64)
        for lo in range(0, n, batch):
            hi = min(n, lo + batch)
            packed = pack_frames(codes[lo:hi], self.config)
            ibuf = self._buffer("in", packed.size)
            obuf = self._buffer("out", (hi - lo) * out["frame_bytes"])
            ibuf[:packed.size] = packed.reshape(-1)
            ibuf.flush()
            self._stream(ibuf, obuf, hi - lo, inp["frame_bytes"], out["frame_bytes"])
            obuf.invalidate()
            got = np.array(obuf[:(hi - lo) * out["frame_bytes"]])
            labels[lo:hi], scores[lo:hi] = unpack_frames(got, self.config)
        st = self.status()
        if st["short_frame"] or st["long_frame"]:
            raise AcceleratorError("input frame error flags set: %s" % st)
        first_max = np.argmax(scores, axis=1)
        bad = np.nonzero(first_max != labels)[0]
        if len(bad):
            raise AcceleratorError("frame %d: label word %d is not the argmax %d of the scores"
                                   % (bad[0], labels[bad[0]], first_max[bad[0]]))
        return labels, scores

    def _stream(self, ibuf, obuf, frames, in_bytes, out_bytes):
        """One transfer of ``frames`` frames each way; BATCH changes only between
        transfers, with nothing in flight."""
        if self._batch != frames:
            self.write("BATCH", frames)
            self._batch = frames
        send, recv = self.dma.sendchannel, self.dma.recvchannel
        recv.transfer(obuf, start=0, nbytes=frames * out_bytes)
        send.transfer(ibuf, start=0, nbytes=frames * in_bytes)
        send.wait()
        recv.wait()

    def predict(self, codes):
        return self.run(codes)[0]

    def benchmark(self, codes, repeats=1):
        """(frames/s by wall clock, frames/s by the CYCLES register at the build's clock)."""
        self.clear()
        t0 = time.perf_counter()
        for _ in range(repeats):
            self.run(codes)
        seconds = time.perf_counter() - t0
        frames = repeats * len(codes)
        cycles = self.cycles()
        hw = frames * self.config["clock_mhz"] * 1e6 / cycles if cycles else float("nan")
        return frames / seconds, hw

    def free(self):
        for buf in self._buffers.values():
            buf.freebuffer()
        self._buffers = {}
        if self._weights is not None:          # load_weights again before the next frame
            self._weights.freebuffer()
            self._weights = None
