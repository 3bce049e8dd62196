"""Benchmarks; each prints its figures with a JSON object on the last line."""

from __future__ import annotations

import hashlib
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path


def command(name: str, argv: list[str] | None = None) -> str:
    """The command line that reproduces a benchmark's results file (its ``"command"`` key)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", f"bench.{name}", *(shlex.quote(str(a)) for a in args)])


#: The sources the generated hardware depends on. A stored figure records the hash of
#: those its design uses (:func:`design_sources`), or of all of them.
GENERATOR_SOURCES = ("hdl/engines", "hdl/shell", "hdl/flow/network.py", "hdl/ir.py", "boards")

_ROOT = Path(__file__).resolve().parent.parent


def generator_files() -> list[str]:
    """The ``*.py`` files of :data:`GENERATOR_SOURCES`, as sorted paths from the checkout."""
    files = []
    for source in GENERATOR_SOURCES:
        path = _ROOT / source
        files += [f.relative_to(_ROOT).as_posix()
                  for f in (path.rglob("*.py") if path.is_dir() else [path])]
    return sorted(files)


def generator_version(files: list[str] | None = None) -> str:
    """A short SHA-256 of generator source ``files`` (by path and content; default all of
    :func:`generator_files`): stored beside a benchmark's figures, so that the report can
    tell figures measured on other generators from current ones."""
    digest = hashlib.sha256()
    for file in sorted(generator_files() if files is None else files):
        path = _ROOT / file
        digest.update(file.encode() + b"\0")
        digest.update((path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
    return digest.hexdigest()[:12]


@contextmanager
def design_sources(*classes):
    """Collects, into the yielded set, the generator source files whose code runs in
    the block (functions, methods and the code that dataclasses generate for them), and
    those that define ``classes`` or their bases (a board's data runs no code). Around a
    design's planning and elaboration, these are the files its Verilog depends on: a
    change elsewhere cannot change it."""
    known = {str(_ROOT / f): f for f in generator_files()}
    used: set[str] = {known[file] for cls in classes for base in cls.__mro__
                      if (file := sys.modules[base.__module__].__dict__.get("__file__")) in known}

    def profile(frame, event, arg):
        if event == "call":
            file = known.get(frame.f_code.co_filename) or known.get(frame.f_globals.get("__file__"))
            if file is not None:
                used.add(file)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield used
    finally:
        sys.setprofile(previous)
