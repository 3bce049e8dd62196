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
    """Run as a user would: a fresh interpreter, exit status 0, every score matched."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / "custom_design.py"), "--vectors", "6",
                           "--seed", "3"], capture_output=True, text=True, timeout=300,
                          cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: 6 vectors, 36 scores match NumPy" in proc.stdout, proc.stdout


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
