"""``python -m hdl.build BOARD`` (or ``qnn-build BOARD``): a model file becomes a board
project (see :mod:`hdl.flow.build`).

Every error prints one line on stderr and exits with the code of its kind (listed in
``--help``, from :mod:`hdl.cli`). A finished build writes ``build_complete.json`` last;
a failed one leaves no outputs, except a finished build that does not fit, fails in
Vivado or differs from the golden model: its report stays to explain why.
"""

from __future__ import annotations

import sys

import boards
from hdl import cli, ir
from hdl.flow.build import DEFAULT_MODEL, DEFAULT_TARGET_FPS, REPO, build, parse_folding

__all__ = ["main"]


def _parser():
    p = cli.parser(
        "python -m hdl.build",
        "Build a streaming accelerator for a Zynq board from a model file: Verilog, Vivado "
        "project, Yosys estimates, a report, and deploy/ for a PYNQ board.",
        json_help="write only the build's summary as JSON to stdout")
    p.add_argument("board", help=f"board name: {', '.join(boards.BOARDS)}")
    p.add_argument("--model", default=None,
                   help=f"model directory, .npz or QONNX .onnx (default: the shipped {DEFAULT_MODEL.relative_to(REPO)})")
    p.add_argument("--clock", type=float, default=None, metavar="MHZ",
                   help="fabric clock (default: the board's)")
    p.add_argument("--target-fps", type=float, default=None, metavar="N",
                   help=f"target frame rate (default: {DEFAULT_TARGET_FPS:,})")
    p.add_argument("--max-fit", action="store_true",
                   help="largest frame rate whose layers fit the board's LUT and BRAM")
    p.add_argument("--folding", default=None, metavar="JSON",
                   help='per-layer overrides, inline or a file: {"conv0": {"pe": 4, "simd": 1}}')
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: build/BOARD in the working directory)")
    p.add_argument("--no-synth", action="store_true", help="skip the Yosys estimates and the report")
    p.add_argument("--verify", type=int, default=0, metavar="N",
                   help="simulate the accelerator (Verilator) on N frames with random stalls; "
                        "bit-exactness, accuracy and measured cycles/frame go into report.json")
    p.add_argument("--verify-data", default=None, metavar="DATA",
                   help="frames for --verify and deploy/: 'digits', 'random' or an .npz "
                        "(default: the digits test split when the model takes 8x8 images)")
    p.add_argument("--seed", type=int, default=1, help="seed of the stalls and random frames")
    p.add_argument("--no-deploy", action="store_true", help="do not write deploy/")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the Yosys jobs on this Dask scheduler's workers (docs/cluster.md)")
    return p


def _body(args) -> int:
    result = build(args.board, model_path=args.model, clock_mhz=args.clock,
                   target_fps=args.target_fps, max_fit=args.max_fit,
                   folding=parse_folding(args.folding), out_dir=args.out,
                   run_synth=not args.no_synth, verify=args.verify,
                   verify_data=args.verify_data, seed=args.seed, deploy=not args.no_deploy,
                   scheduler=args.scheduler)
    if args.json:
        cli.emit_json({
            "out_dir": str(result.out_dir), "folding": result.folding,
            "cycles_per_frame": result.cycles_per_frame,
            "report": result.report.to_json() if result.report is not None else None,
            "verify": result.verify, "vivado": result.vivado, "messages": list(result.messages)})
    return cli.EXIT_OK


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    return cli.run(_body, args, bad_input=(ir.IRError, OSError))


if __name__ == "__main__":
    sys.exit(main())
