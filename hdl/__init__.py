"""Hardware generators (Amaranth) and the model file (``hdl.ir``)."""
