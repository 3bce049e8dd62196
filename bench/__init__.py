"""Benchmarks; each prints its figures with a JSON object on the last line."""

from __future__ import annotations

import shlex
import sys


def command(name: str, argv: list[str] | None = None) -> str:
    """The command line that reproduces a benchmark's results file (its ``"command"`` key)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", f"bench.{name}", *(shlex.quote(str(a)) for a in args)])


#: The sources the generated hardware depends on: a change in them may change the
#: Verilog of every row, so a stored figure records their hash.
GENERATOR_SOURCES = ("hdl/engines", "hdl/shell", "hdl/flow/network.py", "hdl/ir.py", "boards")


def generator_version() -> str:
    """A short SHA-256 of :data:`GENERATOR_SOURCES` (``*.py`` files, by path and content):
    stored beside a benchmark's figures, so that the report can tell figures measured on
    other generators from current ones."""
    import hashlib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for source in GENERATOR_SOURCES:
        path = root / source
        for file in sorted(path.rglob("*.py") if path.is_dir() else [path]):
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]
