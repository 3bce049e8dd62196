"""Quantization-aware training, pruning and export (PyTorch) to the model file.

* :mod:`quant.quantizers`: staircase quantizers and gradient estimators (clipped STE,
  ApproxSign, SwishSign, and the expectation of a quantizer with logistic noise).
* :mod:`quant.layers`: Brevitas-style ``QuantConv2d``, ``QuantLinear``, ``QuantAct``,
  ``WeightQuant`` (binary, ternary, int-k, power-of-two 4/5-bit).
* :mod:`quant.model`: the small CNN and its exact integer-accumulator eval pass.
* :mod:`quant.export`: BatchNorm + quantizer folded into integer thresholds, CSC for
  sparse layers, integer scores with one ``output_scale``.
* :mod:`quant.loop`: the training loop (``fit``), data preparation and evaluation.
* :mod:`quant.prune` (reversed / peak magnitude pruning, network slimming),
  :mod:`quant.inq` (incremental power-of-two quantization): steps over the loop.
* :mod:`quant.presets`: the recipes over those steps, and ``run_preset`` (train, export,
  measure, write the model file).
* :mod:`quant.arch`: an architecture description (JSON) as a preset.
* :mod:`quant.train`: the CLI, ``python -m quant.train --preset NAME --out DIR`` (or
  ``--arch FILE.json``).

Imports run one way (``tests/quant/test_imports.py``): train -> arch -> presets -> prune,
inq -> loop; presets and prune -> model -> layers -> quantizers; presets -> export -> model.
"""
