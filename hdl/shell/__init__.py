"""The board shell: AXI-Stream in and out and the AXI4-Lite registers around the network.

* :mod:`hdl.shell.regmap`: the register map and packing constants (no Amaranth: the host
  driver imports it; keep this package's ``__init__`` free of imports for that reason);
* :mod:`hdl.shell.registers`: the AXI4-Lite register block;
* :mod:`hdl.shell.adapters`: AXI-Stream beats <-> the network's streams;
* :mod:`hdl.shell.axi`: the top with Xilinx-named ports and its Verilog wrapper.
"""
