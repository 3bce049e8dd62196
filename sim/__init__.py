"""Bit-exact golden model and the cocotb verification harness."""
