"""Brevitas BNN-PYNQ models through QONNX into model files, checked against QONNX's executor.

    python -m bench.interop [--frames 1000] [--models tfc_1w1a,...] [--no-build] [--no-sim]

For each of TFC-1W1A, TFC-2W2A, SFC-1W1A, LFC-1W1A, CNV-1W1A and CNV-2W2A
(``brevitas_examples.bnn_pynq``, random weights, random BatchNorm statistics and affine
parameters with about half of the scales negative, random TensorNorm): export with
``brevitas.export.export_qonnx``, import with :func:`hdl.qonnx.import_with_trace`, and
run ``--frames`` random 8-bit images (``k/255``) through ``qonnx.core.onnx_exec.execute_onnx``
and the golden model. Every activation code the import produced (input codes, each
threshold and max-pool output) is compared with the one QONNX computed, and the golden
label with QONNX's argmax. A frame is a *float tie* when some exact pre-quantizer value
(from the golden model's integer accumulators, float64) lies within ``2**-20`` (16 float32
ulps) of its terms' magnitude of a quantizer boundary: there QONNX's float32 evaluation
(a handful of roundings of 2**-24 each) may round across.
Then each imported model is built with ``hdl.build pynq-z2 --no-synth`` and the TFC
models are simulated (Verilator, the whole accelerator behind its AXI shell, a few frames
with stalls) bit-exact against the golden model.

JSON keys: ``models`` (per model ``frames``, ``label_agreement``, ``code_mismatches``
(frames with any differing code), ``code_mismatches_outside_ties``, ``float_ties``,
``imported``, ``built``, ``simulated_frames``), ``all_labels_equal``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from bench import command

RESULTS = Path(__file__).resolve().parent / "results" / "interop.json"
MODELS = ("tfc_1w1a", "tfc_2w2a", "sfc_1w1a", "lfc_1w1a", "cnv_1w1a", "cnv_2w2a")
SIMULATED = ("tfc_1w1a", "tfc_2w2a")
#: A float tie: within 16 float32 ulps (2**-20 relative) of the magnitudes involved.
TIE_REL = 2.0 ** -20


def input_shape(name: str) -> tuple[int, int, int]:
    return (3, 32, 32) if name.startswith("cnv") else (1, 28, 28)


def brevitas_onnx(name: str, path, *, seed: int = 0, batch: int = 100, dynamo: bool = True) -> Path:
    """Export a randomly initialised BNN-PYNQ model (random BN incl. negative scales).

    ``dynamo``: torch's default exporter (``torch.export``), else the TorchScript one
    (about 4x faster; the tests use it).
    """
    import torch
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net, _ = model_with_cfg(name, False)
    prev_fan_in = None
    with torch.no_grad():
        for mod in net.modules():
            if hasattr(mod, "weight") and mod.weight is not None and mod.weight.dim() >= 2:
                prev_fan_in = mod.weight[0].numel()
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) or \
                    type(mod).__name__ == "TensorNorm":
                n = mod.running_mean.numel()
                spread = float(np.sqrt(prev_fan_in or 1))
                mod.running_mean.copy_(torch.randn(n, generator=gen) * 0.5 * spread)
                mod.running_var.copy_((torch.rand(n, generator=gen) + 0.25) * spread ** 2)
                sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
                mod.weight.copy_(sign * (torch.rand(n, generator=gen) * 1.5 + 0.25))
                mod.bias.copy_(torch.randn(n, generator=gen) * 0.5)
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(net, torch.zeros((batch, *input_shape(name))), str(path), dynamo=dynamo)
    return Path(path)


def random_images(name: str, frames: int, seed: int = 1) -> np.ndarray:
    """Random 8-bit images as float32 ``k/255``, NCHW."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(frames, *input_shape(name))) / 255.0).astype(np.float32)


def _execute(onnx_path, x: np.ndarray, tensors: list[str], batch: int) -> dict:
    """QONNX's executor on ``x`` in batches of ``batch``: the named tensors, concatenated."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    wrapper = ModelWrapper(str(onnx_path))
    wrapper = wrapper.transform(InferShapes())
    inp = wrapper.graph.input[0].name
    out = wrapper.graph.output[0].name
    parts = {t: [] for t in tensors + [out]}
    for i in range(0, len(x), batch):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx = execute_onnx(wrapper, {inp: x[i:i + batch]}, return_full_exec_context=True)
        for t in parts:
            parts[t].append(np.asarray(ctx[t]))
    res = {t: np.concatenate(v) for t, v in parts.items()}
    res["__output__"] = res[out]
    return res


def compare(model, probes, onnx_path, x: np.ndarray, *, batch: int) -> dict:
    """Codes, labels and float ties of ``model`` (imported from ``onnx_path``) on ``x``."""
    from sim import golden

    raw = x.transpose(0, 2, 3, 1).astype(np.float64)
    codes = model.input.quantize(raw)
    outs = golden.run(model, codes, all_layers=True)
    labels = np.argmax(outs[-1].reshape(len(x), -1), axis=1)
    got = _execute(onnx_path, x, [p.tensor for p in probes], batch)
    scores = got["__output__"].reshape(len(x), -1)
    q_labels = np.argmax(scores, axis=1)
    n = len(x)
    mismatch = np.zeros(n, dtype=bool)
    ties = np.zeros(n, dtype=bool)
    per_layer, per_layer_ties = {}, {}
    for p in probes:
        want = codes if p.layer < 0 else outs[p.layer]
        have = p.codes(got[p.tensor])
        diff = (want.reshape(n, -1) != have.reshape(n, -1)).any(axis=1)
        mismatch |= diff
        name = "input" if p.layer < 0 else model.layers[p.layer].name
        per_layer[name] = int(diff.sum())
        if p.layer < 0:
            u = raw * model.input.scale + model.input.offset       # boundaries: 1 .. 2**bits - 1
            k = np.rint(u)
            near = (np.abs(u - k) <= TIE_REL * (np.abs(u) + 1)) & (k >= 1) & (k <= (1 << p.bits) - 1)
            tie_here = near.reshape(n, -1).any(axis=1)
            per_layer_ties["input"] = int(tie_here.sum())
            ties |= tie_here
        elif p.bounds is not None:
            acc = outs[p.layer - 1].astype(np.float64)           # (N, H, W, C), rows negated as imported
            sv = np.sqrt(p.V)
            y = (p.P * acc + p.Q) / sv + p.R
            mag = (np.abs(p.P * acc) + np.abs(p.Q)) / sv + np.abs(p.R)
            dist = np.min(np.abs(y[..., None] - p.bounds), axis=-1)
            tol = TIE_REL * (mag + np.max(np.abs(p.bounds), axis=-1) + 1e-30)
            tie_here = (dist <= tol).reshape(n, -1).any(axis=1)
            per_layer_ties[name] = int(tie_here.sum())
            ties |= tie_here
    # labels: equal integer scores are exact ties (both sides take the lowest index);
    # different integer scores whose float32 values (nearly) coincide are float ties
    ints = outs[-1].reshape(n, -1)
    top2 = np.sort(scores, axis=1)[:, -2:]
    int_top2 = np.sort(ints, axis=1)[:, -2:]
    ties |= (np.abs(top2[:, 1] - top2[:, 0]) <= TIE_REL * (np.abs(top2[:, 1]) + 1e-30)) & \
        (int_top2[:, 1] != int_top2[:, 0])
    agree = labels == q_labels
    return {"frames": n, "label_agreement": float(np.mean(agree)),
            "label_mismatches": int((~agree).sum()),
            "label_mismatches_outside_ties": int((~agree & ~ties).sum()),
            "code_mismatches": int(mismatch.sum()),
            "code_mismatches_outside_ties": int((mismatch & ~ties).sum()),
            "float_ties": int(ties.sum()), "mismatching_frames_by_layer": per_layer,
            "tie_frames_by_layer": per_layer_ties}


def build(model_dir: Path, out: Path) -> dict:
    """``python -m hdl.build pynq-z2 --model DIR --no-synth``; returns cycles and folding."""
    from hdl.flow.build import build as run_build
    res = run_build("pynq-z2", model_path=model_dir, out_dir=out, run_synth=False, quiet=True)
    return {"cycles_per_frame": int(res.cycles_per_frame)}


def simulate(model, name: str, x: np.ndarray, frames: int = 6) -> int:
    """Frames of ``x`` through the generated accelerator (Verilator), bit-exact with the
    golden model under stalls; returns the number of frames checked."""
    from hdl.flow.network import Network, choose_folding
    from hdl.shell.axi import DEFAULT_IDENT, DEFAULT_VERSION, AxiTop
    from sim import golden
    from sim.harness import run_cocotb

    codes = model.input.quantize(x[:max(frames, 8)].transpose(0, 2, 3, 1).astype(np.float64))
    scores = golden.run(model, codes)
    labels = golden.predict(model, codes)
    net = Network(model, choose_folding(model, 4096))
    top = AxiTop(net, frame_elements=int(np.prod(model.input.shape)), classes=len(model.classes))
    parameters = {
        "codes": codes.reshape(len(codes), -1).astype(np.int64),
        "scores": scores.astype(np.int64), "labels": labels.astype(np.int64),
        "input_shape": list(model.input.shape), "in_bits": model.input.bits,
        "classes": len(model.classes), "cycles_per_frame": net.cycles_per_frame,
        "latency_bound": net.latency_bound, "stalled": frames, "timing_frames": 4,
        "after_reset": 2, "driver_frames": 3, "ident": DEFAULT_IDENT, "version": DEFAULT_VERSION,
    }
    flags = os.environ.get("MAKEFLAGS", "")
    if "OPT_" not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O0".strip()
    result = run_cocotb(top, name=f"interop_{name}", test_module="tests.cocotb_accelerator",
                        parameters=parameters, seeds=(1,))
    if not np.array_equal(result.report["driver_labels"], labels[:3]):
        raise AssertionError(f"{name}: driver labels {result.report['driver_labels']} != {labels[:3]}")
    return frames


def run_model(name: str, frames: int, work: Path, *, do_build: bool, do_sim: bool,
              batch: int = 100) -> dict:
    from hdl import ir
    from hdl.qonnx import import_with_trace

    t0 = time.time()
    onnx_path = brevitas_onnx(name, work / f"{name}.onnx", batch=batch)
    model, probes = import_with_trace(onnx_path, name=name)
    model_dir = work / name
    ir.save(model, model_dir)
    row = {"imported": True, "layers": len(model.layers), "input_bits": model.input.bits}
    x = random_images(name, frames)
    row.update(compare(model, probes, onnx_path, x, batch=batch))
    row["seconds_compare"] = round(time.time() - t0, 1)
    row["built"] = False
    if do_build:
        t1 = time.time()
        row.update(build(model_dir, work / f"build_{name}"))
        row["built"] = True
        row["seconds_build"] = round(time.time() - t1, 1)
    if do_sim and name in SIMULATED:
        t1 = time.time()
        row["simulated_frames"] = simulate(model, name, x)
        row["seconds_sim"] = round(time.time() - t1, 1)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.interop", description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-sim", action="store_true")
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        print(f"error: unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    if args.frames < 1 or args.frames % 100:
        print("error: --frames must be a positive multiple of 100 (the export batch)", file=sys.stderr)
        return 2
    rows = {}
    with tempfile.TemporaryDirectory(prefix="interop_") as tmp:
        for name in names:
            rows[name] = run_model(name, args.frames, Path(tmp), do_build=not args.no_build,
                                   do_sim=not args.no_sim)
            r = rows[name]
            print(f"{name}: {r['frames']} frames, labels agree {r['label_agreement']:.4f}, "
                  f"code mismatches {r['code_mismatches']} ({r['code_mismatches_outside_ties']} "
                  f"outside ties), float ties {r['float_ties']}, built {r['built']}"
                  + (f", simulated {r['simulated_frames']} frames" if "simulated_frames" in r else ""),
                  flush=True)
    result = {"bench": "interop", "command": command("interop", argv), "models": rows,
              "all_labels_equal": all(r["label_agreement"] == 1.0 for r in rows.values()),
              "no_mismatch_outside_ties": all(r["code_mismatches_outside_ties"] == 0
                                              and r["label_mismatches_outside_ties"] == 0
                                              for r in rows.values())}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
