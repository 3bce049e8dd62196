"""``python -m hdl.build BOARD``: a model file becomes a board project (see :mod:`hdl.flow.build`).

Errors (unknown board, bad model file, bad numbers or paths, impossible folding or
target, a design that does not fit) print one line and exit 2; Ctrl-C exits 130. A
finished build writes ``build_complete.json`` last; a failed one leaves no outputs.
"""

from __future__ import annotations

import argparse
import sys

import boards
from hdl import ir
from hdl.flow.build import DEFAULT_MODEL, DEFAULT_TARGET_FPS, REPO, BuildError, build, parse_folding

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (no usage block)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see python -m hdl.build --help)\n")


def main(argv=None) -> int:
    parser = _Parser(
        prog="python -m hdl.build",
        description="Build a streaming accelerator for a Zynq board from a model file: "
                    "Verilog, Vivado project, Yosys estimates and a report.")
    parser.add_argument("board", help=f"board name: {', '.join(boards.BOARDS)}")
    parser.add_argument("--model", default=None,
                        help=f"model directory, .npz or QONNX .onnx (default: {DEFAULT_MODEL.relative_to(REPO)})")
    parser.add_argument("--clock", type=float, default=None, metavar="MHZ",
                        help="fabric clock (default: the board's)")
    parser.add_argument("--target-fps", type=float, default=None, metavar="N",
                        help=f"target frame rate (default: {DEFAULT_TARGET_FPS:,})")
    parser.add_argument("--max-fit", action="store_true",
                        help="largest frame rate whose layers fit the board's LUT and BRAM")
    parser.add_argument("--folding", default=None, metavar="JSON",
                        help='per-layer overrides, inline or a file: {"conv0": {"pe": 4, "simd": 1}}')
    parser.add_argument("--out", default=None, metavar="DIR", help="output directory (default: build/BOARD)")
    parser.add_argument("--no-synth", action="store_true", help="skip the Yosys estimates and the report")
    args = parser.parse_args(argv)
    try:
        build(args.board, model_path=args.model, clock_mhz=args.clock, target_fps=args.target_fps,
              max_fit=args.max_fit, folding=parse_folding(args.folding), out_dir=args.out,
              run_synth=not args.no_synth)
    except (BuildError, ir.IRError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:                      # disk full, a folder removed under us, ...
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or type(exc).__name__}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the output folder holds no finished build", file=sys.stderr)
        return 130
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
