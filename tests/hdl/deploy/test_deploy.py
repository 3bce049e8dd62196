"""deploy/ and ``--verify``: the board driver (NumPy and PYNQ only, Python 3.8 syntax)
and the verification of the generated top, both against the Verilator simulation.

One Verilator build (the tiny model below at a fixed folding) serves every test here.
"""

import ast
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hdl import deploy
from hdl.flow import verify
from hdl.flow.network import NetworkSpec
from hdl.host.driver import Geometry, pack_frame
from sim import golden
from sim import random_model as rm

FOLDING = {"conv0": {"pe": 1, "simd": 1, "ram_style": "distributed"}, "pool0": {"pe": 1, "simd": 1},
           "fc1": {"pe": 1, "simd": 1, "ram_style": "distributed"}}
PLANS = [rm.LayerPlan(op="conv", out=4, kind="binary", act_bits=2, padding=1, pool=2),
         rm.LayerPlan(op="fc", out=4, kind="ternary", act_bits=None, bias=True)]
#: Python of the oldest PYNQ image this driver targets (PYNQ 2.7, Ubuntu 20.04).
PYNQ_PYTHON = (3, 8)
NP126 = Path(os.environ.get("QNN_NP126_VENV", "/tmp/np126")) / "bin" / "python"


def tiny(seed=5):
    return rm.build_model(PLANS, input_shape=(4, 4, 1), input_bits=4, seed=seed, name="tiny")


@pytest.fixture(scope="module")
def spec():
    return NetworkSpec(tiny(), FOLDING)


@pytest.fixture(scope="module")
def top(spec):
    """The generated top (one object: the simulation elaborates it)."""
    return verify.accelerator_top(spec)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, spec, top):
    codes, _, _ = verify.frames_for(spec.model, 24, "random", seed=3)
    out = tmp_path_factory.mktemp("deploy")
    deploy.write_deploy(out, top=top, clock_mhz=200, model=spec.model, codes=codes)
    return out


def test_config_comes_from_the_register_map_and_the_top(deployed, top):
    from hdl.shell import regmap
    cfg = json.loads((deployed / "accelerator.json").read_text())
    assert cfg["registers"] == regmap.REGISTERS
    assert cfg["register_values"]["IN_FORMAT"] == top.register_values.in_format
    assert cfg["register_values"]["IN_ELEMENTS"] == 16 and cfg["register_values"]["CLASSES"] == 4
    assert cfg["input"]["slot_bits"] == top.input_format.slot
    assert cfg["input"]["frame_bytes"] == Geometry(in_elements=16, in_bits=4, classes=4).in_bytes
    assert cfg["bits"]["CONTROL_CLEAR"] == regmap.CONTROL_CLEAR


def test_driver_syntax_and_imports_fit_pynq_images():
    """Python 3.8 grammar; imports: the standard library, numpy and pynq only."""
    allowed = {"json", "os", "sys", "time", "argparse", "numpy", "pynq", "qnn_driver"}
    for path in (deploy.DRIVER, deploy.VALIDATE):
        tree = ast.parse(path.read_text(), feature_version=PYNQ_PYTHON)
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert names <= allowed, (path.name, names - allowed)
    with pytest.raises(SyntaxError):          # the check does reject newer syntax
        ast.parse("match x:\n    case 1: pass\n", feature_version=PYNQ_PYTHON)


def _pack_script(deployed, codes_file):
    return (f"import sys, numpy as np; sys.path.insert(0, {str(deployed)!r}); "
            "import qnn_driver as d; cfg = d.load_config(); "
            f"c = np.load({str(codes_file)!r}); p = d.pack_frames(c, cfg); "
            "sys.stdout.buffer.write(p.tobytes())")


def _packing(deployed, tmp_path):
    """(codes file, hdl.host.driver's packing of the deployed test frames)."""
    codes = np.load(deployed / "testdata.npz")["codes"].astype(np.int64)
    g = Geometry(in_elements=16, in_bits=4, classes=4)
    np.save(tmp_path / "codes.npy", codes)
    return tmp_path / "codes.npy", np.stack([pack_frame(c, g) for c in codes])


def test_driver_packs_like_the_host_driver(deployed, tmp_path):
    """The board driver's packing equals hdl.host.driver's."""
    codes, want = _packing(deployed, tmp_path)
    out = subprocess.run([sys.executable, "-c", _pack_script(deployed, codes)],
                         capture_output=True, check=True).stdout
    assert np.array_equal(np.frombuffer(out, np.uint8).reshape(want.shape), want)


def test_driver_packs_alike_under_numpy_126(deployed, tmp_path):
    """The same under NumPy 1.26 (PYNQ images' NumPy). Needs a venv with it, made outside
    the tests since nothing downloads at run time; skipped without one."""
    if not NP126.exists():
        pytest.skip(f"no NumPy 1.26 venv at {NP126.parent.parent} (python3 -m venv /tmp/np126 "
                    "&& /tmp/np126/bin/pip install numpy==1.26.4)")
    codes, want = _packing(deployed, tmp_path)
    version = subprocess.run([str(NP126), "-c", "import numpy; print(numpy.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version.startswith("1.26"), version
    out = subprocess.run([str(NP126), "-c", _pack_script(deployed, codes)],
                         capture_output=True, check=True, env={"PATH": os.environ["PATH"]}).stdout
    assert np.array_equal(np.frombuffer(out, np.uint8).reshape(want.shape), want)


def _deployed_run(deployed, top, frames, batch):
    from sim.harness import run_cocotb
    with verify._quick_build():          # the build --verify makes: one build for this module
        return run_cocotb(top, name="verify_tiny_576",
                          test_module="tests.hdl.deploy.cocotb_deploy",
                          parameters={"deploy": str(deployed), "frames": frames, "batch": batch,
                                      "validate_frames": 6},
                          seeds=(2,))


def test_deployed_driver_on_the_simulated_top(deployed, top):
    """QnnAccelerator through a stand-in pynq whose MMIO and DMA are the Verilator
    simulation: every frame's scores equal the golden model's, in batches of 5."""
    data = np.load(deployed / "testdata.npz")
    rep = _deployed_run(deployed, top, frames=12, batch=5).report
    assert np.array_equal(np.array(rep["scores"]), data["golden_scores"][:12])
    assert np.array_equal(np.array(rep["labels"]), data["golden_labels"][:12])
    assert rep["frames_done"] == 12
    assert rep["status"] == {"busy": False, "short_frame": False, "long_frame": False}
    # validate.py on the same simulated board: every frame bit-exact, exit status 0
    assert rep["validate_code"] == 0
    assert rep["validate"]["frames"] == rep["validate"]["bit_exact_frames"] == 6
    assert rep["validate"]["golden_agreement"] == 1.0 and rep["validate"]["frames_per_s"] > 0


def test_verify_bit_exact_then_a_wrong_layer_is_named(spec):
    codes, _, _ = verify.frames_for(spec.model, 10, "random", seed=4)
    good = verify.verify(spec, codes, seed=3)
    assert good["bit_exact"] and good["first_mismatch"] is None and good["frames"] == 10
    assert good["cycles_per_frame"] == spec.cycles_per_frame == good["model_cycles_per_frame"]
    # A golden model whose last layer differs: the first differing frame, and fc1 named.
    other = tiny(seed=6)
    changed = dataclasses.replace(spec.model, layers=[*spec.model.layers[:-1], other.layers[-1]])
    want = golden.run(changed, codes)
    first = int(np.nonzero((want != golden.run(spec.model, codes)).any(axis=1))[0][0])
    bad = verify.verify(spec, codes, golden_model=changed, seed=3)
    assert not bad["bit_exact"] and bad["first_mismatch"]["frame"] == first
    assert bad["first_mismatch"]["layer"].startswith("layer 'fc1'"), bad["first_mismatch"]
    assert verify.locate(spec, spec.model, codes[first]).startswith("every stage matches")
