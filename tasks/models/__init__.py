"""Model families (MLP, CNN, RNN, ViT): every model is an ``nn.Sequential`` of blocks whose parametric
modules are ones the estimators know."""

from .cnn import (build_plain_cnn, build_resnet5, build_resnet9, build_resnet18, build_vgg8,
                  build_xconv_convnet)
from .layers import ACTIVATIONS, NORMS, Normalize, Residual, count_parameters
from .mlp import build_mlp

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "Normalize",
    "Residual",
    "build_mlp",
    "build_plain_cnn",
    "build_resnet5",
    "build_resnet9",
    "build_resnet18",
    "build_vgg8",
    "build_xconv_convnet",
    "count_parameters",
]
