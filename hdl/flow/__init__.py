"""The toolflow: network compiler (``network``), Yosys synthesis (``synth``), the Vivado
project (``vivado``), reports (``report``), tool discovery (``toolchain``) and the build
behind ``python -m hdl.build`` (``build``)."""
