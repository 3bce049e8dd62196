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


def _blockwise_constant(m, r, c):
    b = m.reshape(m.shape[0] // r, r, m.shape[1] // c, c)
    return bool(torch.all(b == b[:, :1, :, :1]))


def test_block_shape_must_tile_the_matrix():
    layers = _net().quant_layers()
    assert prune.check_block(layers[1], (4, 8)) == (4, 8)
    with pytest.raises(ValueError, match="block rows must divide the output channels 16, not 3"):
        prune.check_block(layers[1], (3, 8))
    with pytest.raises(ValueError, match="block cols must divide the input channels 8, not 16"):
        prune.check_block(layers[1], (4, 16))       # would straddle two kernel positions
    with pytest.raises(ValueError, match="block cols must divide the input width 64, not 48"):
        prune.check_block(layers[3], (4, 48))
    with pytest.raises(TypeError, match="block must be a"):
        prune.check_block(layers[1], 4)
    with pytest.raises(ValueError, match="norm must be"):
        prune.block_norms(layers[1], (4, 8), "l3")


def test_conv_matrix_columns_are_ky_kx_channel_like_the_export():
    layer = _net().quant_layers()[1]                # 16 x 8 x 3 x 3
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[5, 3, 2, 1] = 1.0
    m = prune.weight_matrix(layer.weight)
    assert m.shape == (16, 72)
    assert torch.nonzero(m).tolist() == [[5, (2 * 3 + 1) * 8 + 3]]


def test_prune_blocks_removes_whole_blocks_of_smallest_norm():
    layer = _net().quant_layers()[1]                # matrix 16 x 72: 4 x 9 blocks of 4 x 8
    norms = torch.randperm(36).double().reshape(4, 9) + 1.0
    with torch.no_grad():
        # each block holds one weight of magnitude = its rank (L1 = L2 = that value)
        m = torch.zeros(16, 72)
        for i in range(4):
            for j in range(9):
                m[4 * i + 1, 8 * j + 2] = -float(norms[i, j])
        layer.weight.copy_(m.reshape(16, 3, 3, 8).permute(0, 3, 1, 2))
        layer.weight.add_(1e-3 * torch.rand_like(layer.weight))
    got = prune.prune_blocks(layer, 0.5, (4, 8), "l1")
    assert got == 0.5
    keep = prune.block_keep(layer, (4, 8))
    assert torch.equal(keep, norms > 18)            # the 18 smallest blocks went
    mask = prune.weight_matrix(layer.mask)
    assert _blockwise_constant(mask, 4, 8)
    assert prune.zero_blocks(prune.weight_matrix(layer.weight.detach()), (4, 8)) == 0.5
    # never unprunes: a lower target leaves the mask alone, a higher one adds blocks
    assert prune.prune_blocks(layer, 0.25, (4, 8)) == 0.5
    assert torch.equal(prune.weight_matrix(layer.mask), mask)
    assert prune.prune_blocks(layer, 0.75, (4, 8), "l2") == 0.75
    assert torch.all(prune.block_keep(layer, (4, 8)) <= keep)


def test_block_schedule_ramps_to_its_target():
    assert prune.block_schedule(0.8, 4) == pytest.approx([0.2, 0.4, 0.6, 0.8])
    cubic = prune.block_schedule(0.8, 4, "cubic")
    assert cubic[-1] == pytest.approx(0.8) and cubic[0] == pytest.approx(0.8 * (1 - 0.75 ** 3))
    assert all(a < b for a, b in zip(cubic, cubic[1:]))
    with pytest.raises(ValueError, match="increments must be a positive int, not 0"):
        prune.block_schedule(0.8, 0)
    with pytest.raises(ValueError, match="ramp must be"):
        prune.block_schedule(0.8, 2, "steep")


def test_block_prune_reaches_its_targets_and_exports_whole_zero_blocks(small, tmp_path):
    from hdl import ir
    from quant.export import export
    net = _net()
    targets = {1: 0.75, 2: 0.8, 3: 0.875}
    got = prune.block_prune(net, small, targets, (4, 8), increments=2, epochs=1,
                            progress=False)
    layers = net.quant_layers()
    for i, t in targets.items():
        n = prune.block_keep(layers[i], (4, 8)).numel()
        assert got[i] == round(t * n) / n
        assert _blockwise_constant(prune.weight_matrix(layers[i].mask), 4, 8)
    net.set_quant(True)
    d = small
    ir.save(export(net, d.input_spec, d.classes, name="tiny"), tmp_path)
    model = ir.load(tmp_path)
    mats = {l.name: l.weights.matrix() for l in model.layers if isinstance(l, (ir.Conv, ir.FC))}
    for i, name in ((1, "conv1"), (2, "conv2"), (3, "fc3")):
        assert prune.zero_blocks(mats[name], (4, 8)) >= got[i]
    assert prune.zero_blocks(mats["conv0"], (4, 9)) == 0.0
    rep = presets.block_report(model, (4, 8))
    assert set(rep["block_density"]) == {"conv1", "conv2", "fc3"}
    assert rep["block_density"]["fc3"] == pytest.approx(1 - prune.zero_blocks(mats["fc3"], (4, 8)))


def test_pot4_block_has_the_pot4_network():
    a, b = presets.get("pot4"), presets.get("pot4-block")
    assert a.arch == b.arch and a.spec == b.spec
    d = prepare_data("digits")
    layers = b.build(d).quant_layers()
    for i in b.options["targets"]:
        prune.check_block(layers[i], b.options["block"])
