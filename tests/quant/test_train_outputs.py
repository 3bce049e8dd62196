"""``quant.train`` outputs (issue 15): never new weights beside old metrics; bad ``--data``
is one line naming the file and field."""

from __future__ import annotations

import json

import numpy as np

from hdl import ir
from quant import train


def test_interrupted_overwrite_never_pairs_new_weights_with_old_metrics(tmp_path, monkeypatch):
    out = tmp_path / "m"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "old": True}))
    real_save = ir.save
    seen = {}

    def save_then_stop(model, path):
        seen["metrics_before_save"] = (out / "metrics.json").exists()
        written = real_save(model, path)
        raise KeyboardInterrupt                         # the run stops right after the weights

    monkeypatch.setattr(ir, "save", save_then_stop)
    try:
        train.run_preset("slim", out, epochs=1, progress=False)
    except KeyboardInterrupt:
        pass
    assert seen == {"metrics_before_save": False}
    assert ir.load(out).name == "digits_slim" and not (out / "metrics.json").exists()
    monkeypatch.setattr(ir, "save", real_save)
    metrics = train.run_preset("slim", out, epochs=1, progress=False)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.npz"]


def test_bad_data_is_one_line(tmp_path, capsys):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 3, 3)), y_train=np.array([0, 1, 10**12, 0]),
             x_test=np.zeros((2, 3, 3)), y_test=np.array([0, 1]))
    code = train.main(["--preset", "slim", "--out", str(tmp_path / "o"), "--data", str(path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1          # bad input
    assert str(path) in err[0] and "field 'y_train' holds label 1000000000000" in err[0]
