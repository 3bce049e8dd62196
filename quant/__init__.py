"""Quantization-aware training, pruning and export (PyTorch) to the model file."""
