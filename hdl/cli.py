"""What every command line of qnn-fpga shares: options, logging, JSON output, exit codes.

Each CLI builds its parser with :func:`parser` (``--version``, ``-v/--verbose``,
``-q/--quiet``, ``--json`` and the exit codes in ``--help``) and runs its body through
:func:`run`, which maps the exceptions below to distinct exit codes and prints one line
on stderr. Human output goes through :mod:`logging` to stderr; with ``--json`` the only
thing on stdout is one JSON document (:func:`emit_json`). Progress bars appear only on a
terminal (:func:`progress`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_BAD_INPUT", "EXIT_DOES_NOT_FIT",
           "EXIT_TOOL_FAILED", "EXIT_MISMATCH", "EXIT_INTERRUPTED", "EXIT_CODES", "CliError",
           "BadInput", "DoesNotFit", "ToolFailed", "Mismatch", "version", "parser", "run",
           "emit_json", "progress", "plain_text"]

EXIT_OK = 0
EXIT_ERROR = 1            # an unexpected error (a bug): traceback with -v
EXIT_USAGE = 2            # argparse: unknown option, missing argument
EXIT_BAD_INPUT = 3        # a bad model file, data set, number, path or folding
EXIT_DOES_NOT_FIT = 4     # the design does not fit the board, or a target cannot be met
EXIT_TOOL_FAILED = 5      # Yosys, Verilator or Vivado failed, or is missing
EXIT_MISMATCH = 6         # the hardware's results differ from the golden model's
EXIT_INTERRUPTED = 130    # Ctrl-C

#: (code, meaning) as ``--help`` lists them.
EXIT_CODES = (
    (EXIT_OK, "success"),
    (EXIT_ERROR, "unexpected error (a bug; -v shows the traceback)"),
    (EXIT_USAGE, "usage error (unknown option, missing argument)"),
    (EXIT_BAD_INPUT, "bad input (model file, data set, number, path, folding)"),
    (EXIT_DOES_NOT_FIT, "the design does not fit the board, or the target cannot be met"),
    (EXIT_TOOL_FAILED, "an external tool (Yosys, Verilator, Vivado) failed or is missing"),
    (EXIT_MISMATCH, "verification: hardware and golden model differ"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)

log = logging.getLogger("qnn")


class CliError(Exception):
    """A failure a CLI reports in one line and an exit code."""

    exit_code = EXIT_BAD_INPUT


class BadInput(CliError):
    exit_code = EXIT_BAD_INPUT


class DoesNotFit(CliError):
    exit_code = EXIT_DOES_NOT_FIT


class ToolFailed(CliError):
    exit_code = EXIT_TOOL_FAILED


class Mismatch(CliError):
    exit_code = EXIT_MISMATCH


def version() -> str:
    """The installed distribution's version, or the source tree's."""
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
        try:
            return dist_version("qnn-fpga")
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    from hdl import __version__
    return __version__


def plain_text(text: str) -> str:
    """reST inline markup (````code````, ``:func:`x```) as plain terminal text."""
    import re
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "'")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2) and help text kept as written."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def parser(prog: str, description: str, *, json_help: str = "write only JSON to stdout",
           exit_codes=EXIT_CODES, epilog: str = "") -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the shared options and the exit codes in its help.

    ``description`` may hold reST inline markup (a module docstring): it is shown plain.
    """
    import os
    import textwrap
    called = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if called.startswith("qnn-"):           # an entry point: qnn-build, not python -m ...
        prog = called
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in exit_codes)
    text = "\n\n".join(textwrap.fill(part, 79) for part in plain_text(description).split("\n\n"))
    p = _Parser(prog=prog, description=text,
                epilog=(plain_text(epilog) + "\n\n" if epilog else "") + "exit codes:\n" + codes,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s (qnn-fpga) {version()}")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more detail on stderr (-vv: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr")
    p.add_argument("--json", action="store_true", help=json_help)
    return p


def _setup_logging(args) -> None:
    level = (logging.ERROR if getattr(args, "quiet", False) else
             logging.DEBUG if getattr(args, "verbose", 0) >= 2 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("qnn")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def run(body, args, *, bad_input: tuple = ()) -> int:
    """``body(args)`` with logging set up from ``-v/-q``; exceptions become exit codes.

    ``body`` returns an exit code (None means 0). :class:`CliError` and the exception
    types in ``bad_input`` (exit 3; an ``OSError`` shows its reason and file) print one
    line; ``KeyboardInterrupt`` exits 130; anything else is a bug: one line, exit 1, the
    traceback with ``-v``.
    """
    _setup_logging(args)
    try:
        code = body(args)
    except CliError as exc:
        log.error("error: %s", one_line(exc))
        return exc.exit_code
    except bad_input as exc:
        if isinstance(exc, OSError) and exc.strerror:
            where = f" ({exc.filename})" if exc.filename else ""
            log.error("error: %s%s", exc.strerror, where)
        else:
            log.error("error: %s", one_line(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        log.error("error: interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:                    # noqa: BLE001 - the last resort of a CLI
        log.error("error: %s: %s", type(exc).__name__, one_line(exc),
                  exc_info=getattr(args, "verbose", 0) > 0)
        return EXIT_ERROR
    return EXIT_OK if code is None else int(code)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def emit_json(value) -> None:
    """One JSON document on stdout (the only thing a ``--json`` run writes there)."""
    sys.stdout.write(json.dumps(value, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def _default(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


class _Silent:
    """A progress object that draws nothing (not a terminal, quiet, or no tqdm)."""

    def __init__(self, iterable=None):
        self.n, self._it = 0, iterable

    def __iter__(self):
        return iter(self._it)

    def update(self, k=1):
        self.n += k

    def set_postfix_str(self, s):
        pass

    def close(self):
        pass


def progress(iterable=None, *, total=None, desc: str = "", unit: str = "step"):
    """A tqdm bar on stderr when stderr is a terminal and logging shows INFO; else a
    silent stand-in with the same ``update``/``close``/``set_postfix_str`` methods."""
    if not sys.stderr.isatty() or not log.isEnabledFor(logging.INFO):
        return _Silent(iterable)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)


class _LastLineRouter:
    """stdout of a benchmark: every line but the latest goes on to ``human`` (stderr, or
    nowhere with -q) as it comes; the latest is held back until the end."""

    def __init__(self, human):
        self.human, self.partial, self.pending = human, "", None

    def write(self, text):
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            if self.pending is not None and self.human is not None:
                self.human.write(self.pending + "\n")
                self.human.flush()
            self.pending = line
        return len(text)

    def flush(self):
        pass

    def last(self):
        if self.partial:
            self.write("\n")
        return self.pending


def json_last_line(main):
    """Wrap the ``main(argv)`` of a benchmark, whose last stdout line is its JSON: with
    ``--json`` only that line reaches stdout (the others go to stderr as they come); with
    ``-q`` the others are dropped. The parser must be :func:`parser`'s."""
    import contextlib
    import functools

    @functools.wraps(main)
    def wrapped(argv=None):
        given = list(sys.argv[1:] if argv is None else argv)
        quiet = "-q" in given or "--quiet" in given
        if "--json" not in given and not quiet:
            return main(argv)
        stdout = sys.stdout
        router = _LastLineRouter(None if quiet else sys.stderr)
        try:
            with contextlib.redirect_stdout(router):
                code = main(argv)
        finally:
            last = router.last()
            if last is not None:
                try:
                    json.loads(last)
                    stdout.write(last + "\n")
                except ValueError:
                    if not quiet:
                        sys.stderr.write(last + "\n")
            stdout.flush()
        return code
    return wrapped
