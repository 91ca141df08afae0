"""digitnet: a neural network written from scratch in NumPy that reads handwritten digits."""

__version__ = "0.1.0"
