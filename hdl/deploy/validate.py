"""Run the model's test frames on the board: accuracy and frames/s against the golden
labels shipped beside this script (``testdata.npz``, written by the build).

    python3 validate.py [--frames N] [--batch B] [--bitfile qnn.bit] [--json]

Exit status 0 when every frame's scores equal the golden model's, 6 when they differ.
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from qnn_driver import QnnAccelerator  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description="Run the shipped test frames on the accelerator.")
    ap.add_argument("--frames", type=int, default=None, help="frames to run (default: all)")
    ap.add_argument("--batch", type=int, default=256, help="frames per DMA buffer")
    ap.add_argument("--bitfile", default=None, help="bitstream (default: the one beside this)")
    ap.add_argument("--data", default=os.path.join(HERE, "testdata.npz"))
    ap.add_argument("--json", action="store_true", help="print only JSON")
    args = ap.parse_args(argv)
    data = np.load(args.data)
    n = len(data["codes"]) if args.frames is None else min(args.frames, len(data["codes"]))
    codes = data["codes"][:n]
    acc = QnnAccelerator(bitfile=args.bitfile)
    acc.reset()
    fps, hw_fps = acc.benchmark(codes)
    labels, scores = acc.run(codes, batch=args.batch)
    result = {
        "frames": int(n),
        "bit_exact_frames": int((scores == data["golden_scores"][:n]).all(axis=1).sum()),
        "golden_agreement": float(np.mean(labels == data["golden_labels"][:n])),
        "accuracy": (float(np.mean(labels == data["labels"][:n])) if "labels" in data.files
                     else None),
        "golden_accuracy": (float(np.mean(data["golden_labels"][:n] == data["labels"][:n]))
                            if "labels" in data.files else None),
        "frames_per_s": fps, "frames_per_s_hw": hw_fps,
    }
    if args.json:
        print(json.dumps(result))
    else:
        acc_text = ("accuracy %.2f%% (golden model %.2f%%), " % (100 * result["accuracy"],
                                                                100 * result["golden_accuracy"])
                    if result["accuracy"] is not None else "")
        print("%d frames: %s%d bit-exact with the golden model, %.0f frames/s "
              "(%.0f by the CYCLES register)" % (n, acc_text, result["bit_exact_frames"],
                                                  fps, hw_fps))
    acc.free()
    return 0 if result["bit_exact_frames"] == n else 6


if __name__ == "__main__":
    sys.exit(main())
