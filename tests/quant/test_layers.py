"""Weight quantizers and layers (quant.layers)."""

import math

import numpy as np
import pytest
import torch

from hdl import ir
from quant.layers import QuantAct, QuantConv2d, QuantLinear, WeightQuant


def test_binary_weights_are_scaled_signs():
    w = torch.tensor([[0.5, -0.25, 0.0, 0.25], [-1.0, -1.0, 1.0, 2.0]])
    w_int, scale = WeightQuant("binary").integer(w)
    assert w_int.tolist() == [[1, -1, 1, 1], [-1, -1, 1, 1]]
    assert scale.tolist() == pytest.approx([0.25, 1.25])


def test_ternary_and_int_ranges():
    torch.manual_seed(0)
    w = torch.randn(8, 50)
    t, _ = WeightQuant("ternary").integer(w)
    assert set(t.unique().tolist()) == {-1.0, 0.0, 1.0}
    i, scale = WeightQuant("int", 4).integer(w)
    assert i.abs().max() == 7 and scale.shape == (8,)
    # int weights reproduce w within half a step
    assert torch.all((i * scale[:, None] - w.double()).abs() <= scale[:, None] / 2 + 1e-12)


@pytest.mark.parametrize("bits", [4, 5])
def test_pot_window_and_inq_rounding(bits):
    w = torch.tensor([1.0, -0.74, 0.76, 0.3, 1e-4, -0.0])
    wq = WeightQuant("pot", bits)
    w_int, scale = wq.integer(w)
    levels = (1 << (bits - 1)) - 1
    # e_max = floor(log2(4/3 * 1.0)) = 0, e_min = -(levels - 1)
    assert float(scale) == 2.0 ** -(levels - 1)
    vals = (w_int * scale).tolist()
    assert vals[:4] == [1.0, -0.5, 1.0, 0.25]      # 3/4 2^e <= |w| < 3/2 2^e -> 2^e
    e = math.floor(math.log2(4 / 3 * 1e-4))
    assert vals[4] == (2.0 ** e if e >= -(levels - 1) else 0.0)   # pot4: 0, pot5: 2**-13
    # the integer values are valid IR codes
    codes = ir.pot_encode(w_int.long().numpy(), bits)
    assert np.array_equal(ir.pot_decode(codes, bits), w_int.long().numpy())


def test_conv_pads_with_the_pad_value_not_zero():
    conv = QuantConv2d(1, 1, 3, padding=1, pad_value=-1.0)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    y = conv(torch.ones(1, 1, 4, 4)).detach()
    assert float(y[0, 0, 0, 0]) == 4 - 5       # 4 inputs +1, 5 padding positions -1
    assert float(y[0, 0, 1, 1]) == 9
    conv0 = QuantConv2d(1, 1, 3, padding=1, pad_value=0.0)
    conv0.load_state_dict(conv.state_dict())
    assert float(conv0(torch.ones(1, 1, 4, 4)).detach()[0, 0, 0, 0]) == 4


def test_masked_weights_stay_zero_after_quantization():
    lin = QuantLinear(6, 3, weight_quant=WeightQuant("binary"))
    lin.mask[0, :3] = False
    w_int, _ = lin.integer_weight()
    assert w_int[0, :3].abs().sum() == 0 and torch.all(w_int[1:].abs() == 1)


def test_act_codes_and_values():
    act = QuantAct(2, clip=3.0)
    y = torch.tensor([-1.0, 0.49, 0.5, 1.5, 2.6, 10.0], dtype=torch.float64)
    assert act.codes(y).tolist() == [0, 0, 1, 2, 3, 3]
    assert act(y.float()).tolist() == [0, 0, 1, 2, 3, 3]
    bip = QuantAct(1)
    assert bip.codes(torch.tensor([-0.1, 0.0])).tolist() == [0, 1]
    assert bip.values(torch.tensor([0.0, 1.0])).tolist() == [-1, 1]


def test_parameter_checks():
    with pytest.raises(ValueError, match="pot weights take bits in"):
        WeightQuant("pot", 3)
    with pytest.raises(ValueError, match="kind must be one of"):
        WeightQuant("float8")
    with pytest.raises(TypeError, match="bits must be an int"):
        WeightQuant("int", 4.0)
    with pytest.raises(ValueError, match="padding must be in 0..2, not 3"):
        QuantConv2d(1, 1, 3, padding=3)
