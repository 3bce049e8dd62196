"""A small quantized CNN (conv blocks, then fully connected blocks) and its exact path.

Each hidden block is ``QuantConv2d | QuantLinear -> BatchNorm -> QuantAct [-> maxpool]``
and the last layer is a :class:`QuantLinear` with an integer bias. The network reads
input *codes* (``hdl.ir.InputSpec.quantize`` of the raw pixels, as floats in NCHW) and
flattens before the first fully connected layer in ``(y, x, c)`` order, as the IR does.

Two forward passes:

* :meth:`QNet.forward`: float32 fake-quantized (training, quick evaluation);
* :meth:`QNet.forward_exact`: eval mode in float64 through the *integer* accumulator:
  ``acc = sum(w_int * value)`` (exact in float64), then the block's own float BatchNorm
  and activation quantizer (:meth:`Block.codes_from_acc`). The export derives every
  threshold by evaluating that very function, so export and PyTorch eval agree on every
  accumulator, boundary cases included, by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import QuantAct, QuantConv2d, QuantLinear, WeightQuant

__all__ = ["Arch", "QuantSpec", "QNet", "Block"]


@dataclass(frozen=True, kw_only=True)
class Arch:
    """Layer sizes: ``convs`` = ((channels, pool_after), ...), ``fcs`` = hidden widths."""
    convs: tuple[tuple[int, bool], ...] = ((32, False), (32, True), (64, True))
    fcs: tuple[int, ...] = (64,)
    kernel: int = 3
    padding: int = 1

    def __post_init__(self):
        if not self.convs and not self.fcs:
            raise ValueError("an architecture needs at least one conv or fc block")
        for c, _ in self.convs:
            if c < 1:
                raise ValueError(f"conv channels must be positive, not {c}")

    def with_widths(self, convs: list[int], fcs: list[int]) -> "Arch":
        return Arch(convs=tuple((c, p) for c, (_, p) in zip(convs, self.convs)),
                    fcs=tuple(fcs), kernel=self.kernel, padding=self.padding)


@dataclass(frozen=True, kw_only=True)
class QuantSpec:
    """Quantization of a network: hidden/first/last weight kinds, activation bits."""
    weight: tuple[str, int] = ("binary", 1)
    first: tuple[str, int] | None = None      # None: same as ``weight``
    last: tuple[str, int] | None = None
    act_bits: int = 2
    act_clip: float = 2.0
    learn_clip: bool = True
    estimator: str = "ste"
    weight_estimator: str | None = None       # None: same as ``estimator``
    pad_code: int = 0


class Block(nn.Module):
    """``layer -> BatchNorm -> QuantAct [-> maxpool 2]``."""

    def __init__(self, layer, channels: int, act: QuantAct, pool: bool, conv: bool):
        super().__init__()
        self.layer = layer
        self.bn = nn.BatchNorm2d(channels) if conv else nn.BatchNorm1d(channels)
        self.act = act
        self.pool = pool
        self.conv = conv

    def forward(self, x):
        x = self.act(self.bn(self.layer(x)))
        return F.max_pool2d(x, 2) if self.pool else x

    @torch.no_grad()
    def codes_from_acc(self, acc: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Codes from integer accumulators (channel last, float64), eval-mode BN.

        ``s`` (per channel, float64) is the value of one accumulator unit (weight scale
        times input step). This is the one function both the exact forward pass and the
        threshold export evaluate.
        """
        bn = self.bn
        k = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        y = (acc * s - bn.running_mean.double()) * k + bn.bias.double()
        return self.act.codes(y)

    @torch.no_grad()
    def bn_direction(self, s: torch.Tensor) -> torch.Tensor:
        """True for channels whose codes *decrease* with the accumulator."""
        bn = self.bn
        k = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        return (k * s) < 0


class QNet(nn.Module):
    """The quantized CNN. ``in_shape`` is (C, H, W); inputs are codes of ``in_bits``."""

    def __init__(self, arch: Arch, spec: QuantSpec, *, in_shape=(1, 8, 8), in_bits: int = 4,
                 n_classes: int = 10):
        super().__init__()
        self.arch, self.spec = arch, spec
        self.in_shape, self.in_bits, self.n_classes = tuple(in_shape), in_bits, n_classes
        west = spec.weight_estimator or spec.estimator

        def wq(kind_bits, per_channel=True):
            kind, bits = kind_bits
            return WeightQuant(kind, bits, estimator=west, per_channel=per_channel)

        blocks = []
        c, h, w = self.in_shape
        in_bipolar = False
        n_hidden = len(arch.convs) + len(arch.fcs)
        idx = 0
        for ch, pool in arch.convs:
            first = idx == 0
            pad_value = (2 * spec.pad_code - 1) if in_bipolar else spec.pad_code
            layer = QuantConv2d(c, ch, arch.kernel, padding=arch.padding, pad_value=pad_value,
                                weight_quant=wq(spec.first if first and spec.first else spec.weight))
            act = QuantAct(spec.act_bits, clip=spec.act_clip, learn_clip=spec.learn_clip,
                           estimator=spec.estimator)
            blocks.append(Block(layer, ch, act, pool, conv=True))
            h = (h + 2 * arch.padding - arch.kernel) + 1
            w = (w + 2 * arch.padding - arch.kernel) + 1
            if pool:
                h, w = h // 2, w // 2
            c = ch
            in_bipolar = spec.act_bits == 1
            idx += 1
        features = c * h * w
        for width in arch.fcs:
            first = idx == 0
            layer = QuantLinear(features, width,
                                weight_quant=wq(spec.first if first and spec.first else spec.weight))
            act = QuantAct(spec.act_bits, clip=spec.act_clip, learn_clip=spec.learn_clip,
                           estimator=spec.estimator)
            blocks.append(Block(layer, width, act, False, conv=False))
            features = width
            idx += 1
        assert idx == n_hidden
        self.blocks = nn.ModuleList(blocks)
        self.last = QuantLinear(features, n_classes, bias=True, bias_quant=True,
                                weight_quant=wq(spec.last or spec.weight, per_channel=False))

    # --- helpers ----------------------------------------------------------------------
    def quant_layers(self):
        """All conv/linear layers in order (hidden blocks, then the last layer)."""
        return [b.layer for b in self.blocks] + [self.last]

    def set_quant(self, enabled: bool):
        for m in self.modules():
            if isinstance(m, (WeightQuant, QuantAct)):
                m.enabled = enabled

    def apply_masks(self):
        for layer in self.quant_layers():
            layer.apply_mask()

    @torch.no_grad()
    def clamp_latent(self):
        """BNN: keep latent binary weights in [-1, 1] so the clipped estimator can flip them."""
        for layer in self.quant_layers():
            if layer.weight_quant is not None and layer.weight_quant.kind == "binary" \
                    and layer.weight_quant.enabled:
                layer.weight.clamp_(-1, 1)

    def _flatten(self, x):
        return x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x

    # --- forward passes -----------------------------------------------------------------
    def forward(self, x):
        in_step = None
        for block in self.blocks:
            if not block.conv:
                x = self._flatten(x)
            x = block(x)
            in_step = block.act.step()
        x = self._flatten(x)
        if in_step is None:
            in_step = torch.ones(())
        return self.last(x, in_step)

    @torch.no_grad()
    def forward_exact(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode pass through exact integer accumulators, in float64.

        Returns ``(int_scores, out_scale)``: ``int_scores`` (N, classes) float64 holding
        integers (accumulator + integer bias), and the positive scalar ``out_scale``;
        the float scores are ``out_scale * int_scores``.
        """
        h = codes.double()
        in_step = torch.ones((), dtype=torch.float64)
        prev_act = None
        for block in self.blocks:
            vals = prev_act.values(h) if prev_act is not None else h
            w_int, scale = block.layer.integer_weight()
            s = scale * in_step
            if block.conv:
                acc = F.conv2d(block.layer.pad_input(vals), w_int, None, block.layer.stride)
                out = block.codes_from_acc(acc.permute(0, 2, 3, 1), s).permute(0, 3, 1, 2)
                if block.pool:
                    out = F.max_pool2d(out, 2)
            else:
                acc = F.linear(self._flatten(vals), w_int)
                out = block.codes_from_acc(acc, s)
            h, prev_act = out, block.act
            in_step = block.act.step().double()
        vals = prev_act.values(h) if prev_act is not None else h
        w_int, scale = self.last.integer_weight()
        out_scale = (scale * in_step).reshape(())
        acc = F.linear(self._flatten(vals), w_int)
        return acc + self.int_bias(out_scale), out_scale

    @torch.no_grad()
    def int_bias(self, out_scale: torch.Tensor) -> torch.Tensor:
        return torch.round(self.last.bias.double() / out_scale)
