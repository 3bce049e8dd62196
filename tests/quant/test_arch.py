"""``python -m quant.train --arch FILE.json`` (issue 16): an architecture description
instead of a preset; bad descriptions are one line naming the field; the w1a3 preset."""

from __future__ import annotations

import json

import pytest

from hdl import ir
from hdl.cli import EXIT_BAD_INPUT
from quant import presets, train
from quant.arch import preset_from_dict

SMALL = {"name": "tiny", "layers": [{"conv": 4, "pool": True}, {"fc": 8}],
         "weights": {"kind": "ternary"}, "first": {"kind": "int", "bits": 4},
         "last": {"kind": "int", "bits": 6}, "act_bits": 3, "epochs": 1, "float_epochs": 1}


def test_arch_file_trains_the_described_network(tmp_path, capsys):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(SMALL))
    assert train.main(["--arch", str(path), "--out", str(tmp_path / "m"), "--quiet"]) == 0
    model = ir.load(tmp_path / "m")
    ops = [(layer.op, getattr(layer, "out_channels", getattr(layer, "out_features", None)))
           for layer in model.layers]
    assert ops == [("conv", 4), ("threshold", None), ("maxpool", None), ("fc", 8),
                   ("threshold", None), ("fc", 10)]
    kinds = [(layer.weights.kind, layer.weights.bits) for layer in model.layers if hasattr(layer, "weights")]
    assert kinds == [("int", 4), ("ternary", 2), ("int", 6)]
    assert [layer.bits for layer in model.layers if layer.op == "threshold"] == [3, 3]
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["preset"] == "tiny" and metrics["command"].startswith("python -m quant.train --arch")
    assert 0.0 <= metrics["accuracy"] <= 1.0


@pytest.mark.parametrize("change, message", [
    ({"layers": [{"fc": 8}, {"conv": 4}]}, "arch.layers[1]: a conv layer after an fc layer"),
    ({"layers": [{"conv": 0}]}, "arch.layers[0].conv must be an integer in 1..4096, not 0"),
    ({"weights": {"kind": "int", "bits": 9}}, "arch.weights.bits must be one of 2, 3, 4, 5, 6, 7, 8"),
    ({"act_bits": 9}, "arch.act_bits must be an integer in 1..8, not 9"),
    ({"colour": 1}, "arch: unknown field(s) colour"),
])
def test_bad_arch_names_the_field(change, message):
    with pytest.raises(ValueError) as exc:
        preset_from_dict({**SMALL, **change})
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_bad_arch_file_is_one_line(tmp_path, capsys):
    path = tmp_path / "a.json"
    path.write_text(json.dumps({**SMALL, "act_bits": 0}))
    assert train.main(["--arch", str(path), "--out", str(tmp_path / "m")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}.act_bits must be an integer in 1..8, not 0"


def test_w1a3_preset():
    p = presets.get("w1a3")
    assert p.spec.act_bits == 3 and p.spec.weight == ("binary", 1) and p.mode == "qat"
