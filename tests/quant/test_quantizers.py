"""Quantizer forward rules and gradient estimators (quant.quantizers, quant.layers.QuantAct)."""

import math

import pytest
import torch

from quant.layers import QuantAct
from quant.quantizers import ESTIMATORS, EXPECT_SCALE, grid_quant, kernel, sign_quant


def _grad_sign(x: float, est: str) -> float:
    t = torch.tensor([x], requires_grad=True)
    sign_quant(t, est).sum().backward()
    return float(t.grad[0])


def _grad_act(y: float, est: str, bits=2, clip=3.0) -> float:
    act = QuantAct(bits, clip=clip, estimator=est)
    t = torch.tensor([y], requires_grad=True)
    act(t).sum().backward()
    return float(t.grad[0])


@pytest.mark.parametrize("est", ESTIMATORS)
def test_kernel_has_unit_area(est):
    v = torch.linspace(-40, 40, 400001, dtype=torch.float64)
    area = float(torch.trapezoid(kernel(v, est), v))
    assert area == pytest.approx(1.0, abs=2e-3)


def test_forward_rules_ties_go_up():
    u = torch.tensor([-0.6, -0.5, 0.49, 0.5, 1.5, 2.5, 9.0])
    assert grid_quant(u, 0, 3).tolist() == [0, 0, 0, 1, 2, 3, 3]
    assert sign_quant(torch.tensor([-1e-30, 0.0, 2.0])).tolist() == [-1, 1, 1]


def test_outside_clip_expectation_gradient_alive_where_ste_is_dead():
    # Binary sign, clip range |x| <= 1: at x = 1.5 the clipped STE passes nothing.
    assert _grad_sign(1.5, "ste") == 0.0
    g = _grad_sign(1.5, "expect")
    # d/dx E[sign(x + n)], n ~ Logistic(0, s): E = 2 sigmoid(x/s) - 1.
    s = EXPECT_SCALE
    sig = 1 / (1 + math.exp(-1.5 / s))
    assert g == pytest.approx(2 * sig * (1 - sig) / s, rel=1e-5)
    assert g > 0.05
    # 2-bit activation, clip 3 (step 1): above the clip and below zero.
    for y in (4.0, -1.0):
        assert _grad_act(y, "ste") == 0.0
        assert _grad_act(y, "expect") > 1e-3


def test_expectation_gradient_matches_expectation_of_stochastic_quantizer():
    # Monte-Carlo derivative of E[Q(y + n)] for the 2-bit quantizer, step 1, noise scale s*w.
    torch.manual_seed(0)
    s = EXPECT_SCALE * 0.5
    u = torch.rand(400000, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
    noise = s * torch.log(u / (1 - u))
    y, h = 1.3, 1e-2

    def expect(v):
        return float(torch.clamp(torch.floor(v + noise + 0.5), 0, 3).mean())

    # common random numbers keep the finite difference precise
    fd = (expect(y + h) - expect(y - h)) / (2 * h)
    assert _grad_act(y, "expect") == pytest.approx(fd, abs=0.05)


def test_ste_and_approx_shapes():
    assert _grad_sign(0.5, "ste") == 1.0
    assert _grad_sign(0.25, "approx") == pytest.approx(1.5)   # Bi-Real: 2 - 2|x|
    assert _grad_sign(1.2, "approx") == 0.0
    assert _grad_sign(0.0, "swish") == pytest.approx(5.0)     # SignSwish peak = beta
    assert _grad_act(1.2, "ste") == 1.0                         # inside [0, clip]


def test_pact_clip_gradient_is_one_above_clip():
    act = QuantAct(2, clip=3.0, learn_clip=True)
    y = torch.tensor([5.0, 7.0])
    act(y).sum().backward()
    assert float(act.clip.grad) == pytest.approx(2.0)


def test_bad_estimator_message():
    with pytest.raises(ValueError, match="estimator must be one of"):
        QuantAct(2, estimator="magic")
    with pytest.raises(ValueError, match="bits must be in 1..8, not 9"):
        QuantAct(9)
