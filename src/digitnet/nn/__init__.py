"""The hand-written NumPy network: layers, loss, initialisation and the model container."""

from .layers import LAYER_TYPES, Dense, Flatten, Layer, ReLU, register
from .losses import SoftmaxCrossEntropy, log_softmax, one_hot, softmax
from .network import Network, build_mlp

__all__ = ["LAYER_TYPES", "Dense", "Flatten", "Layer", "Network", "ReLU", "SoftmaxCrossEntropy",
           "build_mlp", "log_softmax", "one_hot", "register", "softmax"]
