"""Export: PyTorch eval (own float BatchNorm and quantizers) vs the golden model on the file."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from hdl import ir
from quant import presets, prune
from quant.export import export, storage_report
from quant.loop import fit, prepare_data
from sim import golden


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    return prepare_data("digits")


_CACHE = {}


def _train(name, data, seed=0):
    """A 1-epoch network per preset, trained once per test session (copies handed out)."""
    if name not in _CACHE:
        torch.manual_seed(seed)
        small = dataclasses.replace(data, x_train=data.x_train[:400], y_train=data.y_train[:400])
        net = presets.get(name).build(small)
        net.set_quant(False)
        fit(net, small, epochs=1, lr=5e-3, seed=seed, progress=False)
        net.set_quant(True)
        fit(net, small, epochs=1, lr=3e-3, seed=seed, progress=False)
        _CACHE[name] = net
    net = copy.deepcopy(_CACHE[name])
    net.eval()
    return net


def _check_against_golden(net, data, tmp_path, check_f32=True):
    model = export(net, data.input_spec, data.classes, name="t")
    path = ir.save(model, tmp_path / "m")
    model = ir.load(path)
    codes = data.codes_test
    # the network's own input path gives the same codes
    assert np.array_equal(codes.transpose(0, 3, 1, 2), data.x_test.numpy().astype(np.uint8))
    int_scores, out_scale = net.forward_exact(data.x_test)
    torch_scores = (out_scale * int_scores).numpy()
    g_scores = golden.run(model, codes)
    g_labels = golden.predict(model, codes)
    assert np.array_equal(g_labels, int_scores.argmax(1).numpy()), "labels differ"
    # integer scores map onto PyTorch's float scores by the exported scale
    assert model.output_scale == pytest.approx(float(out_scale), rel=0, abs=0)
    np.testing.assert_allclose(model.output_scale * g_scores, torch_scores, rtol=1e-12, atol=1e-12)
    if not check_f32:
        return model
    # and the float32 fake-quantized pass agrees with them up to float32 rounding
    with torch.no_grad():
        f32 = net(data.x_test).double().numpy()
    close = np.isclose(f32, torch_scores, rtol=1e-3, atol=1e-3 * np.abs(torch_scores).max())
    assert close.all(axis=1).mean() > 0.97
    return model


@pytest.mark.parametrize("name", ["w1a1", "w1a2", "w2a2", "pot4"])
def test_export_matches_golden(name, data, tmp_path):
    net = _train(name, data)
    model = _check_against_golden(net, data, tmp_path)
    kinds = {l.weights.kind for l in model.layers if isinstance(l, (ir.Conv, ir.FC))}
    assert kinds == {"w1a1": {"binary", "int"}, "w1a2": {"binary", "int"},
                     "w2a2": {"ternary", "int"}, "pot4": {"pot"}}[name]


def test_negative_bn_scales_and_boundary_ties(data, tmp_path):
    """Negative gammas and accumulators that land exactly on a code boundary.

    All scales are made powers of two so that ``y = (acc*s - m)*k + b`` is exact in
    float64: with ``k = ±1``, ``m = 3 s`` and ``b = step/2``, ``acc = 3`` sits exactly on
    the boundary of code 1 in every even channel.
    """
    net = _train("w1a2", data)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for block in net.blocks:
            w = block.layer.weight
            if block.layer.weight_quant.kind == "int":      # int8 first layer: scale 2**-7
                w.copy_(torch.randint(-127, 128, w.shape, generator=g).float() * 2.0 ** -7)
                w.view(w.shape[0], -1)[:, 0] = 127 * 2.0 ** -7
            else:                                            # binary: mean|w| = 0.5
                w.copy_(torch.where(torch.rand(w.shape, generator=g) < 0.5, 0.5, -0.5))
            block.act.clip.fill_(3.0)                        # 2-bit: step 1
            c = block.bn.num_features
            block.bn.eps = 0.0
            block.bn.running_var.fill_(1.0)
            block.bn.weight.copy_(torch.where(torch.rand(c, generator=g) < 0.5, -1.0, 1.0))
            block.bn.bias.copy_(torch.randint(-3, 4, (c,), generator=g).float())
            block.bn.running_mean.copy_(torch.randint(-8, 9, (c,), generator=g).float() * 2.0 ** -7)
    in_step = torch.ones((), dtype=torch.float64)
    for block in net.blocks:
        w_int, scale = block.layer.integer_weight()
        s = scale * in_step
        assert torch.all(torch.log2(s) == torch.round(torch.log2(s)))
        with torch.no_grad():
            block.bn.bias[::2] = 0.5 * float(block.act.step())
            block.bn.running_mean[::2] = (3 * s[::2]).float()
        in_step = block.act.step().double()
    # (ties flip float32 codes wholesale, so only the float64 exact pass is compared)
    model = _check_against_golden(net, data, tmp_path, check_f32=False)
    # exhaustive: every reachable accumulator of every channel codes alike in both worlds
    specs = model.specs()
    in_step = torch.ones((), dtype=torch.float64)
    li = 0
    for block in net.blocks:
        while not isinstance(model.layers[li], (ir.Conv, ir.FC)):
            li += 1
        layer, th = model.layers[li], model.layers[li + 1]
        lo, hi = ir.layer_acc_range(layer, specs[li].bits)
        w_int, scale = block.layer.integer_weight()
        s = scale * in_step
        neg = block.bn_direction(s).numpy()
        assert neg.any() and (~neg).any()
        span = np.arange(lo.min(), hi.max() + 1)
        acc = torch.from_numpy(np.where(neg[None, :], -span[:, None], span[:, None]).astype(np.float64))
        want = block.codes_from_acc(acc, s).numpy().astype(np.int64)       # (A, C)
        got = golden.threshold(span[:, None].repeat(len(lo), 1), th.thresholds)
        inside = (span[:, None] >= lo[None, :]) & (span[:, None] <= hi[None, :])
        assert np.array_equal(np.where(inside, got, 0), np.where(inside, want, 0))
        in_step = block.act.step().double()
        li += 2


def test_sparse_layers_export_as_csc(data, tmp_path):
    net = _train("pot4", data)
    layers = net.quant_layers()
    for i in (1, 2, 3):
        prune.prune_layer(layers[i], 0.95)
    model = _check_against_golden(net, data, tmp_path)
    conv = [l for l in model.layers if isinstance(l, (ir.Conv, ir.FC))]
    assert [l.weights.sparse for l in conv] == [False, True, True, True, False]
    rep = storage_report(model)
    assert rep["sparsity"]["conv1"] >= 0.949 and rep["compression_ratio"] > 8


def test_slim_rebuild_is_smaller_and_exports(data, tmp_path):
    net = _train("w1a2", data)
    small = prune.slim(net, 0.5)
    assert prune.conv_channels(small) <= 0.5 * prune.conv_channels(net) + 1
    small.eval()
    model = _check_against_golden(small, data, tmp_path)
    assert model.layers[0].out_channels == small.blocks[0].layer.out_channels
