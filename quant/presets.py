"""Training presets: architecture, quantization and recipe, with fixed default seeds.

Every preset starts with a float pretraining of the same network (quantizers disabled;
``float_accuracy``), then:

* ``w1a1``, ``w1a2``, ``w1a3``, ``w2a2``: quantization-aware training (binary / binary /
  binary / ternary hidden weights; 1-, 2-, 3-, 2-bit activations; int8 first and last
  layers, the MVTU int mode's job);
* ``pot4``: INQ to 4-bit power-of-two weights, 4-bit activations;
* ``pot4-sparse``: reversed-order magnitude pruning (then peak pruning of the remaining
  layers), then INQ with the masks held;
* ``pot4-block``: the ``pot4`` network (like for like in hardware) with whole
  ``rows x cols`` blocks of the weight matrices of conv1, conv2 and fc3 pruned
  (:func:`quant.prune.block_prune`, for the tile-skipping dense engines; conv0 and the
  output layer stay dense), then INQ with the masks held. Block shape, sparsity and
  schedule were chosen with ``python -m bench.blockprune`` (docs/benchmarks.md);
* ``slim``: ``w1a2`` with an L1 penalty on BatchNorm gamma, channel removal
  (network slimming) and fine-tuning of the smaller network.

:func:`run_preset` trains one preset, exports it with :func:`quant.export.export`, and
writes ``DIR/model.npz`` and ``DIR/metrics.json``; ``accuracy`` there comes from the
golden model (``sim.golden.predict``) on the exported file, on the test split.

Layering: the recipes sit above :mod:`quant.loop` (training loop, data, evaluation) and
the steps :mod:`quant.prune` and :mod:`quant.inq`; the CLI :mod:`quant.train` sits above.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hdl import ir

from . import inq, prune
from .export import export, predict, storage_report
from .loop import evaluate, evaluate_exact, fit, prepare_data
from .model import Arch, QNet, QuantSpec

__all__ = ["Preset", "PRESETS", "get", "names", "run_preset"]


@dataclass(frozen=True, kw_only=True)
class Preset:
    name: str
    arch: Arch = Arch()
    spec: QuantSpec
    mode: str = "qat"                 # qat | inq | sparse | block | slim
    float_epochs: int = 30
    epochs: int = 60                  # main phase (QAT, or total INQ retraining)
    lr_float: float = 5e-3
    lr: float = 3e-3
    seed: int = 0
    options: dict = field(default_factory=dict)

    def with_estimator(self, estimator: str) -> "Preset":
        return dataclasses.replace(self, spec=dataclasses.replace(self.spec, estimator=estimator))

    def build(self, data) -> QNet:
        c, h, w = data.x_train.shape[1:]
        return QNet(self.arch, self.spec, in_shape=(c, h, w), in_bits=data.input_spec.bits,
                    n_classes=len(data.classes))

    def train(self, data, *, epochs: int | None = None, seed: int | None = None,
              progress: bool = True, pretrained: dict | None = None):
        """Train on ``data``; returns ``(net, info)``. ``epochs`` rescales every phase.

        ``pretrained``: ``(state_dict, float_accuracy)`` of this network's float
        pretraining on the same data (skips that phase; sweeps share one).
        """
        seed = self.seed if seed is None else seed
        main_ep = self.epochs if epochs is None else epochs
        f = main_ep / self.epochs

        def sc(n):
            return max(1, round(n * f))

        net = self.build(data)
        info = {"epochs": main_ep}
        full = data
        if self.mode == "sparse":
            # peak pruning judges on a validation split that training never sees
            data, val = full.split_val(0.15, seed)
        net.set_quant(False)
        if pretrained is None:
            fit(net, data, epochs=sc(self.float_epochs), lr=self.lr_float, seed=seed,
                desc=f"{self.name} float", progress=progress)
            info["float_accuracy"] = evaluate(net, data.x_test, data.y_test)
        else:
            net.load_state_dict(pretrained[0])
            info["float_accuracy"] = pretrained[1]
        o = self.options
        if self.mode == "qat":
            net.set_quant(True)
            fit(net, data, epochs=main_ep, lr=self.lr, seed=seed + 1, desc=f"{self.name} QAT",
                progress=progress)
        elif self.mode == "inq":
            info["inq"] = inq.inq(net, data, epochs_per_step=sc(self.epochs // 4), lr=self.lr,
                                  seed=seed + 1, progress=progress)
        elif self.mode == "sparse":
            part = data
            base = evaluate(net, *val)
            targets = {int(k): v for k, v in o["targets"].items()}
            reached = prune.reversed_prune(net, part, targets, epochs=sc(o.get("prune_epochs", 4)),
                                           increments=o.get("increments", 2),
                                           lr=self.lr_float / 2, seed=seed + 2, progress=progress)
            info["reversed"] = {str(k): round(v, 4) for k, v in reached.items()}
            if o.get("peak"):
                pk = prune.peak_prune(net, part, val, candidates=tuple(o["peak"]), base=base,
                                      epochs=sc(o.get("peak_epochs", 3)), lr=self.lr_float / 2,
                                      seed=seed + 3, progress=progress)
                info["peak"] = {"base_val_accuracy": pk["base_val_accuracy"],
                                "reached": {str(k): v for k, v in pk["reached"].items()}}
            info["pruned_float_accuracy"] = evaluate(net, data.x_test, data.y_test)
            info["inq"] = inq.inq(net, data, epochs_per_step=sc(self.epochs // 4), lr=self.lr,
                                  seed=seed + 4, progress=progress)
        elif self.mode == "block":
            targets = {int(k): v for k, v in o["targets"].items()}
            reached = prune.block_prune(net, data, targets, o["block"], norm=o.get("norm", "l2"),
                                        increments=o.get("increments", 3),
                                        ramp=o.get("ramp", "linear"),
                                        epochs=sc(o.get("prune_epochs", 3)), lr=self.lr_float / 2,
                                        seed=seed + 2, progress=progress)
            info["block_sparsity_pruned"] = {str(k): round(v, 4) for k, v in reached.items()}
            info["pruned_float_accuracy"] = evaluate(net, data.x_test, data.y_test)
            info["inq"] = inq.inq(net, data, epochs_per_step=sc(self.epochs // 4), lr=self.lr,
                                  seed=seed + 4, progress=progress)
        elif self.mode == "slim":
            net.set_quant(True)
            fit(net, data, epochs=main_ep, lr=self.lr, seed=seed + 1, gamma_l1=o["gamma_l1"],
                desc=f"{self.name} QAT+L1", progress=progress)
            before = prune.conv_channels(net)
            info["before_slim_accuracy"] = evaluate(net, data.x_test, data.y_test)
            net = prune.slim(net, o["ratio"], per_layer=o.get("per_layer", False))
            info["conv_channels"] = [before, prune.conv_channels(net)]
            info["conv_channels_removed"] = round(1 - info["conv_channels"][1] / before, 4)
            info["widths"] = [b.layer.weight.shape[0] for b in net.blocks]
            fit(net, data, epochs=sc(o.get("finetune", 30)), lr=self.lr, seed=seed + 2,
                desc=f"{self.name} fine-tune", progress=progress)
        else:
            raise ValueError(f"unknown preset mode {self.mode!r}")
        return net, info


_W1 = dict(first=("int", 8), last=("int", 8))

PRESETS = {p.name: p for p in [
    Preset(name="w1a1", spec=QuantSpec(weight=("binary", 1), act_bits=1, estimator="ste", **_W1),
           arch=Arch(convs=((64, False), (64, True), (128, True)), fcs=(128,))),
    Preset(name="w1a2", spec=QuantSpec(weight=("binary", 1), act_bits=2, estimator="ste", **_W1)),
    Preset(name="w1a3", spec=QuantSpec(weight=("binary", 1), act_bits=3, estimator="ste", **_W1)),
    Preset(name="w2a2", spec=QuantSpec(weight=("ternary", 2), act_bits=2, estimator="ste", **_W1)),
    Preset(name="pot4", mode="inq", spec=QuantSpec(weight=("pot", 4), act_bits=4, act_clip=4.0),
           epochs=24),
    Preset(name="pot4-sparse", mode="sparse",
           spec=QuantSpec(weight=("pot", 4), act_bits=4, act_clip=4.0),
           arch=Arch(convs=((32, False), (64, True), (64, True)), fcs=(64,)),
           epochs=24,
           options={"targets": {4: 0.6, 3: 0.95, 2: 0.95, 1: 0.92, 0: 0.5},
                    "increments": 3, "prune_epochs": 6,
                    "peak": (0.96, 0.97, 0.98), "peak_epochs": 3}),
    Preset(name="pot4-block", mode="block",
           spec=QuantSpec(weight=("pot", 4), act_bits=4, act_clip=4.0),
           epochs=24,
           options={"block": (4, 16), "norm": "l2", "targets": {1: 0.9, 2: 0.9, 3: 0.9},
                    "increments": 4, "ramp": "cubic", "prune_epochs": 8}),
    Preset(name="slim", mode="slim",
           spec=QuantSpec(weight=("binary", 1), act_bits=2, estimator="ste", **_W1),
           options={"gamma_l1": 1e-4, "ratio": 0.42, "per_layer": True, "finetune": 50}),
]}


def block_report(model: ir.Model, block) -> dict:
    """Fraction of non-zero ``block``s (layers it tiles) and of non-zero weights, per layer."""
    bd, wd = {}, {}
    for layer in model.layers:
        if isinstance(layer, (ir.Conv, ir.FC)):
            m = layer.weights.matrix()
            if m.shape[0] % block[0] == 0 and m.shape[1] % block[1] == 0:
                bd[layer.name] = round(1 - prune.zero_blocks(m, block), 6)
            wd[layer.name] = round(float(np.count_nonzero(m)) / m.size, 6)
    return {"block": list(block), "block_density": bd, "weight_density": wd}


def names() -> list[str]:
    return list(PRESETS)


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def run_preset(preset: "str | Preset", out, *, epochs: int | None = None, seed: int | None = None,
               data: str = "digits", progress: bool = True, estimator: str | None = None,
               command: str | None = None) -> dict:
    """Train, export and measure one preset (a name, or a :class:`Preset` such as
    ``quant.arch.load_arch`` gives); writes ``out/model.npz`` and ``metrics.json``."""
    p = preset if isinstance(preset, Preset) else get(preset)
    preset = p.name
    if estimator is not None:
        p = p.with_estimator(estimator)
    seed = p.seed if seed is None else seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(1)  # the cores are shared: OpenMP threads spin on a busy machine
    d = prepare_data(data)
    t0, c0 = time.time(), time.process_time()
    net, info = p.train(d, epochs=epochs, seed=seed, progress=progress)
    train_s, train_cpu = time.time() - t0, time.process_time() - c0
    meta = {"preset": preset, "seed": seed, "epochs": info["epochs"],
            "estimator": p.spec.estimator, "data": d.name}
    model = export(net, d.input_spec, d.classes, name=f"{d.name}_{preset}", metadata=meta)
    out = Path(out)
    # Old metrics go first: an interruption then never pairs new weights with old metrics.
    (out / "metrics.json").unlink(missing_ok=True)
    path = ir.save(model, out)
    labels = predict(ir.load(path), d.codes_test)
    acc = float(np.mean(labels == d.y_test.numpy()))
    rep = storage_report(model)
    cmd = f"python -m quant.train --preset {preset} --out {out}"
    cmd += "".join(f" --{k} {v}" for k, v in (("epochs", epochs), ("seed", seed if seed != p.seed else None),
                                              ("data", data if data != "digits" else None),
                                              ("estimator", estimator)) if v is not None)
    cmd = command or cmd
    metrics = {
        "command": cmd,
        "preset": preset, "data": d.name, "seed": seed, "epochs": info["epochs"],
        "estimator": p.spec.estimator,
        "accuracy": acc,
        "accuracy_pytorch_exact": evaluate_exact(net, d.x_test, d.y_test),
        "float_accuracy": info.get("float_accuracy"),
        **rep,
        "train_seconds": round(train_s, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "input": {"bits": d.input_spec.bits, "scale": d.input_spec.scale,
                  "offset": d.input_spec.offset},
        **{k: v for k, v in info.items() if k not in ("epochs", "float_accuracy")},
    }
    if p.mode == "block":
        metrics.update(block_report(model, p.options["block"]))
    tmp = out / f".metrics.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "metrics.json")                # whole, and after model.npz
    return metrics
