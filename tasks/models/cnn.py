"""CNN family: the small digits CNN, the XConv MNIST net and CIFAR ConvNet, the ULR seeds' VGG-8 and
ResNet-5, ResNet-9 (ALR) and a ResNet-18 for 224² inputs.

Every model is an ``nn.Sequential`` of blocks; block 0 is the parameter-free ``Normalize``. Where the
seeds' papers do not spell the architecture out (VGG-8, ResNet-5) the layout below is our
reconstruction, chosen so that the number of parametric blocks matches the seeds' per-block copy
lists (8 for VGG-8, 5 for ResNet-5).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..errors import TaskError
from .layers import Normalize, Residual, channel_norm, check_norm, make_activation


def _spatial(input_shape: Sequence[int]) -> tuple[int, int]:
    return int(input_shape[1]), int(input_shape[2])


def conv_block(cin: int, cout: int, spatial: tuple[int, int], *, kernel: int = 3, stride: int = 1,
               norm: str = "none", act: str = "relu", pool: str | None = None) -> tuple[nn.Sequential, tuple[int, int]]:
    """Conv(k, 'same' padding, stride) [+ norm] + act [+ 2×2 max/avg pool]; returns (block, output H×W)."""
    h, w = spatial
    h, w = (h + stride - 1) // stride, (w + stride - 1) // stride
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2,
                                         bias=norm != "batch")]
    layers += channel_norm(norm, cout, (h, w))
    layers.append(make_activation(act))
    if pool == "max":
        layers.append(nn.MaxPool2d(2))
    elif pool == "avg":
        layers.append(nn.AvgPool2d(2))
    if pool:
        h, w = h // 2, w // 2
    return nn.Sequential(*layers), (h, w)


def _head(features: int, num_classes: int, flatten: bool = True) -> nn.Sequential:
    return nn.Sequential(*([nn.Flatten()] if flatten else []), nn.Linear(features, num_classes))


def build_plain_cnn(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
                    channels: Sequence[int] = (16, 32), kernel: int = 3, pool: str = "max",
                    activation: str = "relu", norm: str = "none") -> nn.Sequential:
    """Conv blocks each followed by a 2×2 pool, then Flatten + Linear. With the defaults on 8×8 digits:
    Conv(1→16) pool → 4×4, Conv(16→32) pool → 2×2, Linear(128→10) (≈6k parameters). The XConv MNIST
    net is this with channels (16, 32, 32) on 28×28: 28→14→7→3, Linear(288→10)."""
    check_norm(norm)
    blocks: list[nn.Module] = [Normalize(mean, std)]
    cin, spatial = int(input_shape[0]), _spatial(input_shape)
    for cout in channels:
        block, spatial = conv_block(cin, int(cout), spatial, kernel=kernel, norm=norm, act=activation, pool=pool)
        blocks.append(block)
        cin = int(cout)
    blocks.append(_head(cin * spatial[0] * spatial[1], num_classes))
    return nn.Sequential(*blocks)


def build_xconv_convnet(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
                        channels: Sequence[int] = (16, 32, 32, 32), kernel: int = 5,
                        activation: str = "relu", norm: str = "none") -> nn.Sequential:
    """The XConv CIFAR-10 ConvNet: conv 3→16 (5×5), 16→32, avgpool, 32→32, 32→32, avgpool, FC 2048→10."""
    if len(channels) != 4:
        raise TaskError(f"convnet needs 4 channel widths, got {list(channels)}")
    blocks: list[nn.Module] = [Normalize(mean, std)]
    cin, spatial = int(input_shape[0]), _spatial(input_shape)
    for i, cout in enumerate(channels):
        block, spatial = conv_block(cin, int(cout), spatial, kernel=kernel, norm=norm, act=activation,
                                    pool="avg" if i in (1, 3) else None)
        blocks.append(block)
        cin = int(cout)
    blocks.append(_head(cin * spatial[0] * spatial[1], num_classes))
    return nn.Sequential(*blocks)


def build_vgg8(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
               channels: Sequence[int] = (32, 32, 64, 64, 128, 128), hidden: int = 256,
               activation: str = "relu", norm: str = "batch") -> nn.Sequential:
    """VGG-8: six 3×3 conv blocks (a 2×2 max-pool after every second), a hidden FC block and the
    classifier: 8 parametric blocks (the seeds' copies [100,200,400,800,400,200,100,50] map onto them)."""
    blocks: list[nn.Module] = [Normalize(mean, std)]
    cin, spatial = int(input_shape[0]), _spatial(input_shape)
    for i, cout in enumerate(channels):
        block, spatial = conv_block(cin, int(cout), spatial, norm=norm, act=activation,
                                    pool="max" if i % 2 == 1 else None)
        blocks.append(block)
        cin = int(cout)
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(cin * spatial[0] * spatial[1], int(hidden)),
                                make_activation(activation)))
    blocks.append(nn.Linear(int(hidden), num_classes))
    return nn.Sequential(*blocks)


def residual_block(cin: int, cout: int, spatial: tuple[int, int], *, stride: int = 1, convs: int = 2,
                   norm: str = "batch", act: str = "relu") -> tuple[Residual, tuple[int, int]]:
    """A residual block: ``convs`` 3×3 convs (first with ``stride``), shortcut = identity or 1×1 conv
    [+ norm] when the shape changes, activation after the sum."""
    body: list[nn.Module] = []
    c, sp = cin, spatial
    for j in range(convs):
        s = stride if j == 0 else 1
        h, w = (sp[0] + s - 1) // s, (sp[1] + s - 1) // s
        sp = (h, w)
        body.append(nn.Conv2d(c, cout, 3, stride=s, padding=1, bias=norm != "batch"))
        body += channel_norm(norm, cout, sp)
        if j < convs - 1:
            body.append(make_activation(act))
        c = cout
    shortcut = None
    if stride != 1 or cin != cout:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=norm != "batch"),
                                 *channel_norm(norm, cout, sp))
    return Residual(nn.Sequential(*body), shortcut, make_activation(act)), sp


def _pooled_head(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features, num_classes))


def build_resnet5(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
                  channels: Sequence[int] = (32, 32, 64, 128), activation: str = "relu",
                  norm: str = "batch") -> nn.Sequential:
    """ResNet-5: a 3×3 conv stem, three single-conv residual blocks (stride 1, 2, 2; 1×1 conv shortcut
    when the shape changes), global average pool + FC: five weighted stages = 5 parametric blocks
    (the seeds' copies [800,800,800,800,100])."""
    blocks: list[nn.Module] = [Normalize(mean, std)]
    stem, spatial = conv_block(int(input_shape[0]), int(channels[0]), _spatial(input_shape), norm=norm,
                               act=activation)
    blocks.append(stem)
    cin = int(channels[0])
    for i, cout in enumerate(channels[1:]):
        block, spatial = residual_block(cin, int(cout), spatial, stride=1 if i == 0 else 2, convs=1,
                                        norm=norm, act=activation)
        blocks.append(block)
        cin = int(cout)
    blocks.append(_pooled_head(cin, num_classes))
    return nn.Sequential(*blocks)


def build_resnet9(input_shape: Sequence[int], num_classes: int, mean: Sequence[float], std: Sequence[float], *,
                  width: int = 64, activation: str = "relu", norm: str = "batch") -> nn.Sequential:
    """ResNet-9 (the DAWNBench/Myrtle layout used by ALR): prep conv(w), conv(2w)+pool, residual(2w),
    conv(4w)+pool, conv(8w)+pool, residual(8w), global max-pool + FC. 6.6M parameters at w=64."""
    w = int(width)
    blocks: list[nn.Module] = [Normalize(mean, std)]
    spatial = _spatial(input_shape)
    prep, spatial = conv_block(int(input_shape[0]), w, spatial, norm=norm, act=activation)
    layer1, spatial = conv_block(w, 2 * w, spatial, norm=norm, act=activation, pool="max")
    res1, spatial = residual_block(2 * w, 2 * w, spatial, norm=norm, act=activation)
    layer2, spatial = conv_block(2 * w, 4 * w, spatial, norm=norm, act=activation, pool="max")
    layer3, spatial = conv_block(4 * w, 8 * w, spatial, norm=norm, act=activation, pool="max")
    res2, spatial = residual_block(8 * w, 8 * w, spatial, norm=norm, act=activation)
    head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes))
    blocks += [prep, layer1, res1, layer2, layer3, res2, head]
    return nn.Sequential(*blocks)


def build_resnet18(input_shape: Sequence[int] = (3, 224, 224), num_classes: int = 1000,
                   mean: Sequence[float] = (0.485, 0.456, 0.406), std: Sequence[float] = (0.229, 0.224, 0.225), *,
                   width: int = 64, activation: str = "relu", norm: str = "batch") -> nn.Sequential:
    """ResNet-18 for 224² inputs (torchvision layout: 7×7/2 stem + max-pool, 4 stages of 2 basic blocks,
    average pool + FC): 11.7M parameters at width 64 and 1000 classes. Blocks: Normalize, stem,
    8 basic blocks, head."""
    w = int(width)
    h, wd = _spatial(input_shape)
    h, wd = (h + 1) // 2, (wd + 1) // 2
    stem = nn.Sequential(nn.Conv2d(int(input_shape[0]), w, 7, stride=2, padding=3, bias=norm != "batch"),
                         *channel_norm(norm, w, (h, wd)), make_activation(activation),
                         nn.MaxPool2d(3, stride=2, padding=1))
    spatial = ((h + 1) // 2, (wd + 1) // 2)
    blocks: list[nn.Module] = [Normalize(mean, std), stem]
    cin = w
    for stage, mult in enumerate((1, 2, 4, 8)):
        for j in range(2):
            stride = 2 if stage > 0 and j == 0 else 1
            block, spatial = residual_block(cin, w * mult, spatial, stride=stride, norm=norm, act=activation)
            blocks.append(block)
            cin = w * mult
    blocks.append(_pooled_head(cin, num_classes))
    return nn.Sequential(*blocks)
