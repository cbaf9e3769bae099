"""Model families (MLP, CNN, RNN, ViT): every model is an ``nn.Sequential`` of blocks whose parametric
modules are ones the estimators know."""

from .cnn import (
    build_plain_cnn,
    build_resnet5,
    build_resnet9,
    build_resnet18,
    build_vgg8,
    build_xconv_convnet,
)
from .layers import ACTIVATIONS, NORMS, Normalize, Residual, count_parameters
from .mlp import build_mlp
from .rnn import CELLS, ElmanCell, GRUCell, LSTMCell, Recurrent, build_char_rnn, build_row_rnn
from .vit import SelfAttention, build_vit

__all__ = [
    "ACTIVATIONS",
    "CELLS",
    "NORMS",
    "ElmanCell",
    "GRUCell",
    "LSTMCell",
    "Normalize",
    "Recurrent",
    "Residual",
    "SelfAttention",
    "build_char_rnn",
    "build_mlp",
    "build_plain_cnn",
    "build_resnet5",
    "build_resnet9",
    "build_resnet18",
    "build_row_rnn",
    "build_vgg8",
    "build_vit",
    "build_xconv_convnet",
    "count_parameters",
]
