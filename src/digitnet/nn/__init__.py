"""The hand-written NumPy network: layers, loss, initialisation and the model container."""

from .conv import Conv2D, MaxPool2D
from .layers import LAYER_TYPES, Dense, Flatten, Layer, ReLU, register
from .losses import SoftmaxCrossEntropy, log_softmax, one_hot, softmax
from .network import Network, build_mlp
from .regularization import BatchNorm, Dropout

__all__ = [
    "LAYER_TYPES",
    "BatchNorm",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "MaxPool2D",
    "Network",
    "ReLU",
    "SoftmaxCrossEntropy",
    "build_mlp",
    "log_softmax",
    "one_hot",
    "register",
    "softmax",
]
