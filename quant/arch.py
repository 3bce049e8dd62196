"""Your own architecture without writing Python: ``python -m quant.train --arch FILE.json``.

The file describes the network and its quantization; training follows the QAT recipe
(or INQ for power-of-two weights) of :mod:`quant.presets`::

    {"name": "my_net",
     "layers": [{"conv": 32}, {"conv": 32, "pool": true}, {"conv": 64, "pool": true},
                {"fc": 64}],
     "weights": {"kind": "binary", "bits": 1},
     "first": {"kind": "int", "bits": 8}, "last": {"kind": "int", "bits": 8},
     "act_bits": 2}

``layers``: conv blocks (3x3, padding 1, ``pool`` = 2x2 max-pool after) then fc blocks;
the output layer is added. ``weights``: kind ``binary``, ``ternary``, ``int`` (bits 2..8)
or ``pot`` (bits 4 or 5); ``first``/``last`` override it for the first and output
layers. Optional: ``act_bits`` (1..8, default 2), ``act_clip`` (default 2.0, 4.0 for
pot), ``kernel`` (3), ``padding`` (1), ``epochs``, ``float_epochs``, ``lr``, ``seed``,
``estimator``. Errors name the field: ``arch.layers[2].conv must be ...``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from .model import Arch, QuantSpec
from .presets import Preset

__all__ = ["load_arch", "preset_from_dict"]

_KNOWN = {"name", "layers", "weights", "first", "last", "act_bits", "act_clip", "kernel",
          "padding", "epochs", "float_epochs", "lr", "seed", "estimator"}
_KINDS = {"binary": (1,), "ternary": (2,), "int": tuple(range(2, 9)), "pot": (4, 5)}


def _int(value, where, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{where} must be an integer in {lo}..{hi}, not {value!r}")
    return value


def _num(value, where, lo):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= lo:
        raise ValueError(f"{where} must be a finite number above {lo}, not {value!r}")
    return float(value)


def _weight(value, where) -> tuple[str, int]:
    if not isinstance(value, dict) or set(value) - {"kind", "bits"} or "kind" not in value:
        raise ValueError(f"{where} must be {{\"kind\": ..., \"bits\": ...}}, not {value!r}")
    kind = value["kind"]
    if kind not in _KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(_KINDS)}, not {kind!r}")
    bits = value.get("bits", _KINDS[kind][0] if len(_KINDS[kind]) == 1 else None)
    if bits not in _KINDS[kind] or isinstance(bits, bool):
        raise ValueError(f"{where}.bits must be one of {', '.join(map(str, _KINDS[kind]))} "
                         f"for kind {kind}, not {bits!r}")
    return kind, bits


def preset_from_dict(d: dict, where: str = "arch") -> Preset:
    """A :class:`quant.presets.Preset` from an architecture description (see module doc)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a JSON object")
    extra = sorted(set(d) - _KNOWN)
    if extra:
        raise ValueError(f"{where}: unknown field(s) {', '.join(extra)}")
    name = d.get("name", "arch")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", name):
        raise ValueError(f"{where}.name must be 1..40 letters, digits, '_' or '-', not {name!r}")
    layers = d.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"{where}.layers must be a non-empty list")
    convs, fcs = [], []
    for i, layer in enumerate(layers):
        lw = f"{where}.layers[{i}]"
        if not isinstance(layer, dict) or len(set(layer) & {"conv", "fc"}) != 1 \
                or set(layer) - {"conv", "fc", "pool"}:
            raise ValueError(f"{lw} must be {{\"conv\": channels[, \"pool\": true]}} or {{\"fc\": width}}")
        if "conv" in layer:
            if fcs:
                raise ValueError(f"{lw}: a conv layer after an fc layer")
            pool = layer.get("pool", False)
            if not isinstance(pool, bool):
                raise ValueError(f"{lw}.pool must be true or false, not {pool!r}")
            convs.append((_int(layer["conv"], f"{lw}.conv", 1, 4096), pool))
        else:
            if "pool" in layer:
                raise ValueError(f"{lw}: pool belongs to conv layers")
            fcs.append(_int(layer["fc"], f"{lw}.fc", 1, 16384))
    weight = _weight(d.get("weights", {"kind": "binary"}), f"{where}.weights")
    first = _weight(d["first"], f"{where}.first") if "first" in d else None
    last = _weight(d["last"], f"{where}.last") if "last" in d else None
    pot = weight[0] == "pot"
    act_bits = _int(d.get("act_bits", 4 if pot else 2), f"{where}.act_bits", 1, 8)
    act_clip = _num(d.get("act_clip", 4.0 if pot else 2.0), f"{where}.act_clip", 0)
    estimator = d.get("estimator", "ste")
    if estimator not in ("ste", "approx", "swish", "expect"):
        raise ValueError(f"{where}.estimator must be ste, approx, swish or expect, not {estimator!r}")
    kernel = _int(d.get("kernel", 3), f"{where}.kernel", 1, 11)
    padding = _int(d.get("padding", kernel // 2), f"{where}.padding", 0, kernel - 1)
    arch = Arch(convs=tuple(convs), fcs=tuple(fcs), kernel=kernel, padding=padding)
    spec = QuantSpec(weight=weight, first=first, last=last, act_bits=act_bits, act_clip=act_clip,
                     estimator=estimator)
    kw = {}
    if "epochs" in d:
        kw["epochs"] = _int(d["epochs"], f"{where}.epochs", 1, 10000)
    if "float_epochs" in d:
        kw["float_epochs"] = _int(d["float_epochs"], f"{where}.float_epochs", 1, 10000)
    if "lr" in d:
        kw["lr"] = _num(d["lr"], f"{where}.lr", 0)
    if "seed" in d:
        kw["seed"] = _int(d["seed"], f"{where}.seed", 0, 2 ** 31 - 1)
    if pot:
        kw.setdefault("epochs", 24)
    return Preset(name=name, arch=arch, spec=spec, mode="inq" if pot else "qat", **kw)


def load_arch(path) -> Preset:
    """Read an architecture file (JSON) as a preset; errors name the file and field."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not JSON ({str(exc).splitlines()[0]})") from None
    return preset_from_dict(d, str(path))
