"""Pruning schedules, network slimming and INQ (quant.prune, quant.inq)."""

import dataclasses

import pytest
import torch

from quant import inq, presets, prune
from quant.model import Arch, QNet, QuantSpec
from quant.loop import fit, prepare_data


@pytest.fixture(scope="module")
def small():
    torch.set_num_threads(1)
    d = prepare_data("digits")
    return dataclasses.replace(d, x_train=d.x_train[:300], y_train=d.y_train[:300])


def _net(kind=("pot", 4), act_bits=4):
    torch.manual_seed(0)
    return QNet(Arch(convs=((8, False), (16, True), (16, True)), fcs=(16,)),
                QuantSpec(weight=kind, act_bits=act_bits, act_clip=4.0))


def test_reversed_order_is_fc_first_then_convs_from_the_back():
    net = _net()
    assert prune.layer_order(net, "reversed") == [4, 3, 2, 1, 0]
    assert prune.layer_order(net, "forward") == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="schedule must be"):
        prune.layer_order(net, "sideways")


def test_masks_stay_applied_through_fine_tuning(small):
    net = _net()
    got = prune.reversed_prune(net, small, {3: 0.9, 1: 0.8}, increments=1, epochs=1,
                               progress=False)
    assert got[3] == pytest.approx(0.9, abs=1e-3) and got[1] == pytest.approx(0.8, abs=1e-3)
    fit(net, small, epochs=1, lr=1e-2, seed=1, progress=False)
    layers = net.quant_layers()
    for i, s in ((3, 0.9), (1, 0.8)):
        w_int, _ = layers[i].integer_weight()
        zero = (w_int == 0)
        assert torch.all(zero[~layers[i].mask]) and float((~layers[i].mask).float().mean()) >= s - 1e-3
        assert torch.all(layers[i].weight[~layers[i].mask] == 0)


def test_peak_prune_keeps_validation_accuracy(small):
    net = _net()
    net.set_quant(False)
    fit(net, small, epochs=2, lr=5e-3, seed=0, progress=False)
    part, val = small.split_val(0.2, seed=0)
    res = prune.peak_prune(net, part, val, candidates=(0.5, 0.9), tolerance=0.005, epochs=1,
                           progress=False)
    from quant.loop import evaluate
    acc = evaluate(net, *val)
    assert acc >= res["base_val_accuracy"] - 0.005
    for i, s in res["reached"].items():
        assert s in (0.0, 0.5, 0.9)
        assert float((~net.quant_layers()[i].mask).float().mean()) == pytest.approx(s, abs=1e-3)


def test_slim_per_layer_ratio_rebuilds_smaller_layers():
    net = _net(("binary", 1), 2)
    with torch.no_grad():
        net.blocks[1].bn.weight.copy_(torch.arange(16.0) - 7.5)    # |gamma| smallest near the middle
    small_net = prune.slim(net, 0.5, per_layer=True)
    assert [b.layer.weight.shape[0] for b in small_net.blocks] == [4, 8, 8, 16]
    kept = small_net.blocks[1].bn.weight.detach().abs()
    assert float(kept.min()) >= 3.5
    x = torch.zeros(2, 1, 8, 8)
    assert small_net(x).shape == (2, 10)


def test_inq_freezes_largest_weights_in_steps():
    net = _net()
    seen = []

    def stub_fit(net_, data, *, epochs, lr, seed, desc, progress, after_step):
        layer = net_.quant_layers()[2]
        frozen = layer.weight_quant.inq_frozen
        seen.append(float(frozen.float().mean()))
        before = layer.weight.detach().clone()
        with torch.no_grad():
            layer.weight.add_(0.01)            # a "training step" touches every weight
        after_step("step")
        assert torch.equal(layer.weight[frozen], before[frozen])   # frozen ones held

    class D:
        x_test = torch.zeros(1, 1, 8, 8)
        y_test = torch.zeros(1, dtype=torch.long)

    inq.inq(net, D, epochs_per_step=1, lr=1e-3, seed=0, fit=stub_fit, progress=False)
    assert seen == pytest.approx([0.5, 0.75, 0.875, 1.0], abs=1e-3)
    for layer in net.quant_layers():
        w = layer.weight.detach().double()
        w_int, scale = layer.weight_quant.integer(w)
        assert torch.equal(w_int * scale, w)   # every weight is now exactly a power of two


def test_every_preset_builds():
    d = prepare_data("digits")
    for name in presets.names():
        net = presets.get(name).build(d)
        assert net(d.x_test[:2]).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown preset"):
        presets.get("w9a9")
