"""Check the wheel on its own: build it, install it into a fresh virtual environment
outside the source tree, and run the main job there from an empty working directory.

    python -m scripts.check_wheel [--verify N] [--work DIR]

The fresh environment gets the wheel (``pip install --no-deps``) and sees the already
installed dependencies of the current one through a ``.pth`` file (nothing is
downloaded). Checks: ``qnn-build --version``; ``qnn-build zcu102 --no-synth --verify N``
on the shipped model writes ``build/zcu102`` into the working directory, with
``deploy/`` and a bit-exact ``verify.json``; ``qnn-golden`` reads a shipped model from
the installed package. Prints one JSON line; exit status 0 when every check passed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from hdl import cli

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kw):
    print("$ " + " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def check(work: Path, verify: int) -> dict:
    # The fresh environment must not see this checkout (nor its .egg-info) on PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels = work / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", wheels, ROOT])
    wheel = next(wheels.glob("qnn_fpga-*.whl"))
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", venv], env=env)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, env=env).stdout.strip())
    _run([py, "-m", "pip", "install", "--no-deps", "-q", wheel], env=env)
    # after the install: pip would take the parent's (editable) qnn-fpga as installed
    (site / "_deps_from_parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run_dir = work / "run"
    run_dir.mkdir()
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    where = subprocess.run([py, "-c", "import hdl, models, os; print(hdl.__file__); "
                            "print(sorted(os.listdir(list(models.__path__)[0])))"],
                           cwd=run_dir, env=env, capture_output=True, text=True, check=True)
    hdl_file, shipped = where.stdout.splitlines()
    version = _run([venv / "bin" / "qnn-build", "--version"], cwd=run_dir, env=env,
                   capture_output=True, text=True).stdout.strip()
    _run([venv / "bin" / "qnn-build", "zcu102", "--no-synth", "--verify", verify], cwd=run_dir,
         env=env)
    out = run_dir / "build" / "zcu102"
    verified = json.loads((out / "verify.json").read_text())
    golden = json.loads(_run([venv / "bin" / "qnn-golden", str(Path(hdl_file).parents[1] / "models" / "w1a2"),
                              "--json", "--reps", "1"], cwd=run_dir, env=env,
                             capture_output=True, text=True).stdout)
    return {
        "wheel": wheel.name, "installed_at": str(Path(hdl_file).parent),
        "outside_source_tree": not Path(hdl_file).resolve().is_relative_to(ROOT),
        "shipped_models": json.loads(shipped.replace("'", '"')), "version": version,
        "outputs": sorted(p.name for p in out.iterdir()),
        "deploy": sorted(p.name for p in (out / "deploy").iterdir()),
        "verify": {k: verified[k] for k in ("frames", "bit_exact", "accuracy",
                                            "cycles_per_frame", "model_cycles_per_frame")},
        "golden_accuracy": golden["accuracy"],
    }


@cli.json_last_line
def main(argv=None) -> int:
    p = cli.parser("python -m scripts.check_wheel", __doc__.split("\n\n")[0])
    p.add_argument("--verify", type=int, default=50, help="frames for --verify (default 50)")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    args = p.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="qnn_wheel_"))
    try:
        result = check(work, args.verify)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    ok = (result["outside_source_tree"] and result["verify"]["bit_exact"]
          and "deploy" in result["outputs"] and "w1a2" in result["shipped_models"])
    print(json.dumps({"ok": ok, **result}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
