"""QONNX import and export (``hdl.qonnx``, issue 16): exact round trip of models trained
here, Brevitas BNN-PYNQ graphs and a hand-written QONNX graph against QONNX's own
executor, one-line refusals. The full 1,000-input sweep is ``python -m bench.interop``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hdl import ir

onnx = pytest.importorskip("onnx")
pytest.importorskip("qonnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bench import interop  # noqa: E402
from hdl import qonnx as hq  # noqa: E402
from sim import golden  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "models"
QD = hq.QONNX_DOMAIN


def _same(a: ir.Model, b: ir.Model):
    ha, aa = ir._to_file_dicts(a)
    hb, ab = ir._to_file_dicts(b)
    assert ha == hb
    assert sorted(aa) == sorted(ab)
    for k in aa:
        assert aa[k].dtype == ab[k].dtype and np.array_equal(aa[k], ab[k]), k
    assert ir._content_hash(ha, aa) == ir._content_hash(hb, ab)


@pytest.mark.parametrize("name", ["w1a2", "pot4"])
def test_round_trip_is_identical_and_qonnx_runs_it(name, tmp_path):
    from sim.data import load_dataset
    model = ir.load(MODELS / name)
    path = tmp_path / f"{name}.onnx"
    assert hq.main(["export", str(MODELS / name), "--out", str(path)]) == 0
    onnx.checker.check_model(onnx.load(str(path)))          # a well-formed ONNX file (Netron)
    assert hq.main(["import", str(path), "--out", str(tmp_path / "back")]) == 0
    _same(model, ir.load(tmp_path / "back"))
    # QONNX's executor: the same labels, and scores = output_scale * integer scores
    raw = load_dataset("digits").x_test[:12].astype(np.float32)
    hq.export_onnx(model, tmp_path / "b12.onnx", batch=len(raw))
    back, probes = hq.import_with_trace(tmp_path / "b12.onnx")
    _same(model, back)
    res = interop._execute(tmp_path / "b12.onnx", raw.transpose(0, 3, 1, 2), [p.tensor for p in probes],
                           batch=len(raw))
    codes = model.input.quantize(raw)
    ints = golden.run(model, codes)
    assert np.array_equal(res["__output__"].reshape(len(raw), -1), ints * model.output_scale)
    outs = golden.run(model, codes, all_layers=True)
    assert len(probes) == sum(layer.op in ("threshold", "maxpool") for layer in model.layers) + 1
    for p in probes:                                    # every activation code, too
        assert np.array_equal(p.codes(res[p.tensor]), codes if p.layer < 0 else outs[p.layer]), p.tensor


@pytest.mark.parametrize("name", ["tfc_2w2a", "tfc_1w1a"])
def test_brevitas_model_agrees_with_execute_onnx(name, tmp_path):
    pytest.importorskip("brevitas")
    path = interop.brevitas_onnx(name, tmp_path / f"{name}.onnx", seed=3, batch=40, dynamo=False)
    model, probes = hq.import_with_trace(path)
    r = interop.compare(model, probes, path, interop.random_images(name, 40, seed=4), batch=40)
    assert r["code_mismatches_outside_ties"] == 0 and r["label_mismatches_outside_ties"] == 0, r
    assert r["float_ties"] <= 2, r
    assert len(probes) == 4                              # input + three hidden quantizers
    # the random BatchNorm has negative scales: some rows were negated, thresholds spread
    first = model.layers[0].weights.matrix()
    w = numpy_helper.to_array(next(t for t in onnx.load(str(path)).graph.initializer
                                   if t.name == "features.2.weight"))
    q = np.where(w >= 0, 1, -1) if name == "tfc_1w1a" else np.clip(np.round(w), -1, 1)
    negated = np.all(first == -q.astype(np.int64), axis=1)
    assert 0 < negated.sum() < len(first)
    th = model.layers[1].thresholds
    lo, hi = ir.layer_acc_range(model.layers[0], model.input.bits)
    assert np.all((th >= lo[:, None]) & (th <= hi[:, None] + 1)) and len(np.unique(th)) > 20


def test_brevitas_cnv_imports(tmp_path):
    pytest.importorskip("brevitas")
    path = interop.brevitas_onnx("cnv_1w1a", tmp_path / "cnv.onnx", seed=5, batch=2, dynamo=False)
    model = hq.load_model(path)
    ops = [layer.op for layer in model.layers]
    assert ops.count("conv") == 6 and ops.count("maxpool") == 2 and ops.count("fc") == 3
    assert model.input.bits == 8 and model.input.scale == 256.0 and model.input.offset == 0.5
    assert model.specs()[-1].shape == (1, 1, 10)


def _graph(nodes, inits, in_shape, out_shape, name="g"):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QD, 1)])


def _handmade(rng):
    """Input Mul/Sub + 4-bit Quant, padded Conv with per-channel 3-bit weights, BN with
    negative scales, Relu, unsigned 3-bit Quant, MaxPool, Flatten, Gemm with a bias, Mul."""
    w = rng.integers(-4, 4, size=(6, 2, 3, 3)).astype(np.float32)
    ws = (2.0 ** rng.integers(-3, 1, size=(6, 1, 1, 1))).astype(np.float32)
    g = (rng.uniform(0.3, 1.5, 6) * np.where(np.arange(6) % 2, -1, 1)).astype(np.float32)
    fc = rng.integers(-2, 2, size=(5, 6 * 3 * 3)).astype(np.float32)
    inits = {"two": 2.0, "one": 1.0, "s_in": 2.0 ** -3, "zero": 0.0, "b4": 4.0, "b3": 3.0, "b2": 2.0,
             "w": w * ws, "ws": ws, "bn_g": g, "bn_b": rng.normal(0, 0.5, 6), "bn_m": rng.normal(0, 2, 6),
             "bn_v": rng.uniform(1, 4, 6), "s_act": 0.25, "fc": fc * 0.5, "s_fc": 0.5,
             "fc_b": rng.integers(-3, 3, 5) * 0.125, "k": 0.75}
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["x2"], name="mul_in"),
        helper.make_node("Sub", ["x2", "one"], ["xs"], name="sub_in"),
        helper.make_node("Quant", ["xs", "s_in", "zero", "b4"], ["xq"], name="quant_in", domain=QD,
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Quant", ["w", "ws", "zero", "b3"], ["wq"], name="quant_w", domain=QD,
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Conv", ["xq", "wq"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_g", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Quant", ["r", "s_act", "zero", "b3"], ["a"], name="act", domain=QD,
                         signed=0, narrow=0, rounding_mode="ROUND"),
        helper.make_node("MaxPool", ["a"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
        helper.make_node("Quant", ["fc", "s_fc", "zero", "b2"], ["fcq"], name="quant_fc", domain=QD,
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Gemm", ["f", "fcq", "fc_b"], ["o"], name="fc", transB=1),
        helper.make_node("Mul", ["o", "k"], ["y"], name="scale_out"),
    ]
    return _graph(nodes, inits, [20, 2, 6, 6], [20, 5]), w, g


def test_handmade_qonnx_graph(tmp_path):
    rng = np.random.default_rng(7)
    proto, w, g = _handmade(rng)
    path = tmp_path / "h.onnx"
    onnx.save(proto, str(path))
    model, probes = hq.import_with_trace(path)
    assert [layer.op for layer in model.layers] == ["conv", "threshold", "maxpool", "fc"]
    conv = model.layers[0]
    assert conv.padding == 1 and conv.pad_value == 8           # value 0 of the 4-bit signed input
    m = conv.weights.matrix()
    expect = w.transpose(0, 2, 3, 1).reshape(6, -1).astype(np.int64)
    assert np.array_equal(m, np.where((g < 0)[:, None], -expect, expect))   # negative BN: rows negated
    assert model.input.scale == 16.0 and model.input.offset == 0.5 and model.input.bits == 4
    assert model.output_scale == 0.75 * 0.25 * 0.5 and model.layers[-1].bias is not None
    x = rng.uniform(0, 1, size=(20, 2, 6, 6)).astype(np.float32)
    r = interop.compare(model, probes, path, x, batch=20)
    assert r["code_mismatches_outside_ties"] == 0 and r["label_mismatches_outside_ties"] == 0, r
    assert r["float_ties"] <= 2, r


def _refusal(nodes, inits, in_shape=(1, 4), out_shape=(1, 2)):
    return _graph(nodes, inits, list(in_shape), list(out_shape))


def _q(inp, out, name, bits="b2", signed=1):
    return helper.make_node("Quant", [inp, "s", "z", bits], [out], name=name, domain=QD,
                            signed=signed, narrow=0, rounding_mode="ROUND")


BASE = {"s": 1.0, "z": 0.0, "b2": 2.0, "w": np.ones((2, 4)), "w2": np.ones((2, 2))}


@pytest.mark.parametrize("nodes, extra, match", [
    ([_q("x", "xq", "qin"), helper.make_node("MatMul", ["xq", "wt"], ["h"], name="mm"),
      _q("h", "hq", "qh"), helper.make_node("Add", ["hq", "hq"], ["y"], name="residual")],
     {"wt": np.ones((4, 2))}, "node 'residual' \\(Add\\): combines two computed tensors"),
    ([_q("x", "xq", "qin"), helper.make_node("Softmax", ["xq"], ["y"], name="sm")], {},
     "node 'sm' \\(Softmax\\): unsupported operation"),
    ([helper.make_node("MatMul", ["x", "wt"], ["y"], name="mm")], {"wt": np.ones((4, 2))},
     "node 'mm' \\(MatMul\\): reads the raw input"),
    ([helper.make_node("MultiThreshold", ["x", "t"], ["xq"], name="mt", domain=QD, out_dtype="UINT2"),
      helper.make_node("MatMul", ["xq", "wt"], ["y"], name="mm")],
     {"t": np.array([[0.1, 0.2, 0.7]]), "wt": np.ones((4, 2))},
     "node 'mt' \\(MultiThreshold\\): input thresholds are not evenly spaced"),
    ([_q("x", "xq", "qin"), helper.make_node("MatMul", ["xq", "wt"], ["h"], name="mm"),
      helper.make_node("Quant", ["h", "sc", "z", "b2"], ["hq"], name="qch", domain=QD),
      helper.make_node("MatMul", ["hq", "w2"], ["y"], name="mm2")],
     {"wt": np.ones((4, 2)), "sc": np.array([1.0, 0.5])}, "node 'qch' \\(Quant\\): the scale must be one number"),
    ([_q("x", "xq", "qin"), helper.make_node("MatMul", ["xq", "wt"], ["y"], name="mm")],
     {"wt": np.full((4, 2), 0.3)}, "node 'mm' \\(MatMul\\): weights 'wt' are neither quantized nor integers"),
])
def test_refusals_name_the_node(nodes, extra, match, tmp_path):
    path = tmp_path / "bad.onnx"
    onnx.save(_refusal(nodes, {**BASE, **extra}), str(path))
    with pytest.raises(hq.QONNXError, match=match):
        hq.import_onnx(path)
    assert hq.main(["import", str(path), "--out", str(tmp_path / "o")]) == 2


def test_golden_cli_reads_onnx(tmp_path, capsys):
    path = tmp_path / "w1a2.onnx"
    hq.export_onnx(ir.load(MODELS / "w1a2"), path)
    assert golden.main([str(path), "--reps", "1", "--json"]) == 0
    direct = golden.main([str(MODELS / "w1a2"), "--reps", "1", "--json"])
    out = capsys.readouterr().out
    import json
    first, end = json.JSONDecoder().raw_decode(out)     # --json: only JSON on stdout
    second = json.loads(out[end:])
    assert direct == 0 and first["accuracy"] == second["accuracy"]


def test_base_install_needs_no_onnx():
    code = ("import sys, hdl.ir, hdl.qonnx, sim.golden, hdl.flow.build; "
            "assert 'onnx' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=MODELS.parent)
