"""toolkit: train the MNIST CNN, export it, prove accuracy parity on every backend, benchmark it."""

__version__ = "0.1.0"
