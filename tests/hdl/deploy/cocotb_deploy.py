"""cocotb side of tests/hdl/deploy/test_deploy.py: the deployed board driver
(``deploy/qnn_driver.py``) against the Verilator simulation of the generated top, through
a stand-in ``pynq`` module whose MMIO and DMA are the simulated AXI ports.

Parameters: ``deploy`` (the deploy folder), ``frames``, ``batch``.
"""

import contextlib
import importlib.util
import io
import json
import sys
import types

import cocotb
import numpy as np
from cocotb.task import bridge

from sim.backend import SimBackend
from sim.harness import params, report, seed
from sim.streams import reset


class _Buffer(np.ndarray):
    """``pynq.allocate``'s buffer: an ndarray with cache maintenance calls."""

    def flush(self):
        pass

    def invalidate(self):
        pass

    def freebuffer(self):
        pass


class _Channel:
    def __init__(self, backend, direction):
        self.backend, self.direction, self.pending = backend, direction, None

    def transfer(self, array, start=0, nbytes=0):
        nbytes = nbytes or array.nbytes - start
        if self.direction == "send":          # MM2S: the frame's beats go out at once
            self.backend.send_frame(np.array(array[start:start + nbytes]))
        else:                                 # S2MM: filled when the frame has come
            self.pending = (array, start, nbytes)

    def wait(self):
        if self.direction == "recv" and self.pending is not None:
            array, start, nbytes = self.pending
            array[start:start + nbytes] = self.backend.recv_frame(nbytes)
            self.pending = None


class _Mmio:
    def __init__(self, backend):
        self.backend = backend

    def read(self, offset):
        return self.backend.read_reg(offset)

    def write(self, offset, value):
        self.backend.write_reg(offset, value)


def stand_in_pynq(backend):
    """A module with ``Overlay``, ``allocate`` and the DMA/MMIO calls the driver uses."""
    pynq = types.ModuleType("pynq")

    class Overlay:
        def __init__(self, bitfile, download=True):
            self.bitfile = bitfile
            self.accel = _Mmio(backend)
            self.dma = types.SimpleNamespace(sendchannel=_Channel(backend, "send"),
                                             recvchannel=_Channel(backend, "recv"))

    def allocate(shape, dtype):
        return np.zeros(shape, dtype=dtype).view(_Buffer)

    pynq.Overlay, pynq.allocate = Overlay, allocate
    return pynq


@cocotb.test()
async def deployed_driver(dut):
    """validate.py's path: QnnAccelerator on the stand-in pynq, frames in batches."""
    from cocotb.clock import Clock
    p = params()
    Clock(dut.clk, 10, unit="ns").start()
    backend = SimBackend(dut, seed=seed(), gap_prob=0.2, stall_prob=0.2)
    await reset(dut)
    sys.modules["pynq"] = stand_in_pynq(backend)
    spec = importlib.util.spec_from_file_location("qnn_driver", f"{p['deploy']}/qnn_driver.py")
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    codes = np.load(f"{p['deploy']}/testdata.npz")["codes"][:int(p["frames"])]

    def host():
        acc = driver.QnnAccelerator()
        acc.reset()
        labels, scores = acc.run(codes, batch=int(p["batch"]))
        return labels, scores, acc.frames_done(), acc.status()

    labels, scores, done, status = await bridge(host)()
    report(labels=labels.tolist(), scores=scores.tolist(), frames_done=done, status=status)

    # validate.py, as a user runs it on the board (its JSON line)
    vspec = importlib.util.spec_from_file_location("validate", f"{p['deploy']}/validate.py")
    validate = importlib.util.module_from_spec(vspec)
    vspec.loader.exec_module(validate)

    def run_validate():
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = validate.main(["--frames", str(p["validate_frames"]), "--json"])
        return code, out.getvalue()

    code, text = await bridge(run_validate)()
    report(validate_code=code, validate=json.loads(text))
