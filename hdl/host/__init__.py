"""Host side: the driver that runs the accelerator from the ARM (PYNQ) or a simulation."""
