"""deploy/ of a top whose weights stream from DDR: weights.bin beside the driver, and the
board driver (on a NumPy stand-in for pynq) places it in DDR and writes WEIGHT_BASE
HI then LO before any frame; a soft reset waits for STATUS busy to drop."""

import importlib.util
import json
import sys
import types

import numpy as np
import pytest

from hdl import deploy
from hdl.shell.regmap import REGISTERS, STATUS_BUSY
from tests.hdl.shell.test_weight_top import streamed_top


class Buffer(np.ndarray):
    """What ``pynq.allocate`` returns: an array with a physical address."""
    flushed = False
    freed = False

    def flush(self):
        self.flushed = True

    def freebuffer(self):
        self.freed = True


class FakePynq(types.ModuleType):
    """``pynq`` with MMIO registers and an allocator over NumPy."""

    def __init__(self, config, address):
        super().__init__("pynq")
        self.writes, self.buffers, self.address = [], [], address
        self.busy_reads = 0
        values = {config["registers"][k]: v for k, v in config["register_values"].items()}
        fake = self

        class Regs:
            def read(self, offset):
                if offset == REGISTERS["STATUS"] and fake.busy_reads:
                    fake.busy_reads -= 1
                    return STATUS_BUSY
                return values.get(offset, 0)

            def write(self, offset, value):
                fake.writes.append((offset, value))

        class Overlay:
            def __init__(self, bitfile, download=True):
                setattr(self, config["accel"], Regs())
                setattr(self, config["dma"], object())

        self.Overlay = Overlay

    def allocate(self, shape, dtype):
        buf = np.zeros(shape, dtype).view(Buffer)
        buf.physical_address = self.address
        self.buffers.append(buf)
        return buf


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    model, net, top = streamed_top()
    image = net.spec.weight_image()
    out = tmp_path_factory.mktemp("deploy")
    codes = np.zeros((2, *model.input.shape), np.int64)
    deploy.write_deploy(out, top=top, clock_mhz=200, model=model, codes=codes, weight_image=image)
    return out, image


def _driver(folder, monkeypatch, address):
    config = json.loads((folder / "accelerator.json").read_text())
    pynq = FakePynq(config, address)
    monkeypatch.setitem(sys.modules, "pynq", pynq)
    spec = importlib.util.spec_from_file_location("qnn_driver_under_test", folder / "qnn_driver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, pynq


def test_driver_places_the_weights_and_writes_weight_base(deployed, monkeypatch):
    folder, image = deployed
    cfg = json.loads((folder / "accelerator.json").read_text())
    assert cfg["weights"] == {"file": "weights.bin", "bytes": len(image), "align": 4096, "ports": 1}
    assert (folder / "weights.bin").read_bytes() == image
    module, pynq = _driver(folder, monkeypatch, 0x8_7654_3000)
    acc = module.QnnAccelerator()
    (buf,) = pynq.buffers
    assert bytes(buf) == image and buf.flushed
    assert pynq.writes == [(REGISTERS["WEIGHT_BASE_HI"], 0x8), (REGISTERS["WEIGHT_BASE_LO"], 0x7654_3000)]
    # A soft reset waits while STATUS reads busy (the streamers draining their bursts).
    pynq.busy_reads = 3
    acc.reset()
    assert pynq.busy_reads == 0
    acc.free()
    assert buf.freed


def test_driver_refuses_a_misaligned_buffer_and_a_wrong_image(deployed, monkeypatch, tmp_path):
    folder, image = deployed
    module, pynq = _driver(folder, monkeypatch, 0x1000_0800)
    with pytest.raises(module.AcceleratorError, match="not 4096-byte aligned"):
        module.QnnAccelerator()
    assert pynq.buffers[0].freed and pynq.writes == []
    module, pynq = _driver(folder, monkeypatch, 0x1000_0000)
    acc = module.QnnAccelerator()
    short = tmp_path / "short.bin"
    short.write_bytes(image[:-1])
    with pytest.raises(module.AcceleratorError, match=f"has {len(image) - 1} bytes, the build wrote"):
        acc.load_weights(str(short))


def test_write_deploy_needs_the_image_exactly_with_streamers(tmp_path):
    model, net, top = streamed_top()
    with pytest.raises(ValueError, match="weight_image must be given exactly when"):
        deploy.write_deploy(tmp_path, top=top, clock_mhz=200, model=model,
                            codes=np.zeros((1, *model.input.shape), np.int64))
