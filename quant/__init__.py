"""Quantization-aware training, pruning and export (PyTorch) to the model file.

* :mod:`quant.quantizers`: staircase quantizers and gradient estimators (clipped STE,
  ApproxSign, SwishSign, and the expectation of a quantizer with logistic noise).
* :mod:`quant.layers`: Brevitas-style ``QuantConv2d``, ``QuantLinear``, ``QuantAct``,
  ``WeightQuant`` (binary, ternary, int-k, power-of-two 4/5-bit).
* :mod:`quant.model`: the small CNN and its exact integer-accumulator eval pass.
* :mod:`quant.export`: BatchNorm + quantizer folded into integer thresholds, CSC for
  sparse layers, integer scores with one ``output_scale``.
* :mod:`quant.prune` (reversed / peak magnitude pruning, network slimming),
  :mod:`quant.inq` (incremental power-of-two quantization).
* :mod:`quant.presets` and ``python -m quant.train --preset NAME --out DIR``.
"""
