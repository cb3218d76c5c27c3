"""snnmap: compile quantized CNNs into lossless scatter-and-gather spiking networks for crossbar chips."""

__version__ = "0.1.0"
