"""The wheel on its own (slow: builds a wheel, a fresh venv, and simulates 50 frames of
the shipped model): ``scripts.check_wheel``."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_wheel_builds_zcu102_outside_the_tree(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "scripts.check_wheel", "--verify", "50",
                           "--work", str(tmp_path), "--json"], capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["ok"] and result["outside_source_tree"]
    assert "w1a2" in result["shipped_models"] and "deploy" in result["outputs"]
    assert result["verify"]["bit_exact"] and result["verify"]["frames"] == 50
    assert result["verify"]["cycles_per_frame"] == result["verify"]["model_cycles_per_frame"]
