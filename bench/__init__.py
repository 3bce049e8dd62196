"""Benchmarks; each prints its figures with a JSON object on the last line."""

from __future__ import annotations

import shlex
import sys


def command(name: str, argv: list[str] | None = None) -> str:
    """The command line that reproduces a benchmark's results file (its ``"command"`` key)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", f"bench.{name}", *(shlex.quote(str(a)) for a in args)])
