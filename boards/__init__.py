"""Xilinx Zynq board definitions."""
