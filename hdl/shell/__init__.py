"""The board shell: AXI-Stream in and out and the AXI4-Lite registers around the network."""
