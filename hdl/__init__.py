"""qnn-fpga's hardware side, by layer:

* ``hdl.ir``: the model file, the one contract between training, golden model and hardware;
* ``hdl.flow``: the network compiler, synthesis, Vivado project and reports;
* ``hdl.engines``: the per-layer gateware (MVTU, shift MAC, sparse, window, pool);
* ``hdl.shell``: the AXI top around the network;
* ``hdl.host``: the driver on the processing system.
"""

#: The package version (``pyproject.toml`` reads it from here).
__version__ = "0.1.0"
