"""The runnable examples in examples/ work as scripts and really check their results."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_design_script():
    """Run as a user would: a fresh interpreter, exit status 0, every score matched; the
    layers' figures come from their descriptions, and no engine is left unelaborated."""
    proc = subprocess.run([sys.executable, "-W", "error::amaranth.hdl.UnusedElaboratable",
                           str(EXAMPLES / "custom_design.py"), "--vectors", "6", "--seed", "3"],
                          capture_output=True, text=True, timeout=300, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: 6 vectors, 36 scores match NumPy" in proc.stdout, proc.stdout
    # (16 / 4) * (32 / 8) and (6 / 2) * (16 / 4) cycles per vector
    assert "int mode, 16 cycles/vector" in proc.stdout and "12 cycles/vector" in proc.stdout
    assert "UnusedElaboratable" not in proc.stderr, proc.stderr


def test_custom_design_describes_before_building():
    """Bad layer parameters are refused by the description, before any hardware exists."""
    example = _load("custom_design")
    w1, t1, w2, b2 = example.make_weights(1)
    with pytest.raises(ValueError, match="pot weights must be 0 or"):
        example.describe_layers(w1, t1, w2 + 3, b2)


def test_custom_design_detects_a_mismatch(monkeypatch, capsys):
    """The example's check can fail: a reference that is off by one is reported."""
    example = _load("custom_design")
    right = example.reference
    monkeypatch.setattr(example, "reference", lambda *a: right(*a) + 1)
    assert example.main(["--vectors", "3", "--seed", "2"]) == 1
    assert "MISMATCH at vector 0" in capsys.readouterr().out


def test_custom_design_rejects_bad_arguments():
    example = _load("custom_design")
    with pytest.raises(SystemExit):
        example.main(["--vectors", "0"])
