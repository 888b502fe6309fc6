"""ResNets as torchvision writes them (He et al., 2015, "v1.5": the stride sits on the 3x3).

Stem: 7x7/2 conv + BN + Relu, 3x3/2 max pool. Then four stages of BasicBlocks
(two 3x3 convs) or Bottlenecks (1x1 reduce, 3x3, 1x1 expand x4); the first block of a
stage that changes stride or width has a projection shortcut (1x1 conv + BN). Each block
ends with residual Add then Relu. Head: GlobalAveragePool, Flatten, Gemm. Convs have no
bias, as in torchvision, so the parameter counts match the published ones.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import onnx

from convc.zoo.builder import (DEFAULT_OPSET, NetBuilder, Tensor, conv_bn,
                               conv_bn_relu)

# Gain of the last BN in a residual branch: the branch adds ~gain^2 of the trunk's mean
# square per block, so activations grow slowly instead of doubling block after block.
RESIDUAL_GAIN = 0.5

Block = Callable[[NetBuilder, Tensor, int, int, str], Tensor]


def _shortcut(b: NetBuilder, x: Tensor, out_channels: int, stride: int, name: str) -> Tensor:
    if stride == 1 and x.channels == out_channels:
        return x
    return conv_bn(b, x, out_channels, 1, stride=stride, name=f"{name}.downsample",
                   gain=RESIDUAL_GAIN)


def basic_block(b: NetBuilder, x: Tensor, width: int, stride: int, name: str) -> Tensor:
    """3x3 conv-bn-relu, 3x3 conv-bn, + shortcut, relu; output channels = width."""
    y = conv_bn_relu(b, x, width, 3, stride=stride, name=f"{name}.1")
    y = conv_bn(b, y, width, 3, name=f"{name}.2", gain=RESIDUAL_GAIN)
    y = b.add(y, _shortcut(b, x, width, stride, name), name=f"{name}.add")
    return b.relu(y, name=f"{name}.relu")


def bottleneck(b: NetBuilder, x: Tensor, width: int, stride: int, name: str) -> Tensor:
    """1x1 reduce, 3x3 (strided), 1x1 expand to 4*width, + shortcut, relu."""
    y = conv_bn_relu(b, x, width, 1, name=f"{name}.1")
    y = conv_bn_relu(b, y, width, 3, stride=stride, name=f"{name}.2")
    y = conv_bn(b, y, 4 * width, 1, name=f"{name}.3", gain=RESIDUAL_GAIN)
    y = b.add(y, _shortcut(b, x, 4 * width, stride, name), name=f"{name}.add")
    return b.relu(y, name=f"{name}.relu")


@dataclass(frozen=True)
class ResNetSpec:
    """A ResNet: block kind, blocks per stage, stage widths, stem width, classes, default size."""

    block: Block
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    stem: int = 64
    classes: int = 1000
    image_size: int = 224


SPECS = {
    "resnet18": ResNetSpec(basic_block, (2, 2, 2, 2), (64, 128, 256, 512)),
    "resnet50": ResNetSpec(bottleneck, (3, 4, 6, 3), (64, 128, 256, 512)),
    # 64x64 input: stem -> 16x16, stages at 16, 8, 4; projection shortcuts in stages 2, 3
    "resnet_small": ResNetSpec(basic_block, (1, 1, 1), (16, 32, 64), stem=16, classes=10,
                               image_size=64),
}


def resnet(spec: ResNetSpec, *, batch: int = 1, image_size: int | None = None, seed: int = 0,
           opset: int = DEFAULT_OPSET, name: str = "resnet") -> onnx.ModelProto:
    """Build a ResNet; input "input" (batch, 3, size, size), output (batch, classes) logits."""
    size = spec.image_size if image_size is None else image_size
    b = NetBuilder(name, seed)
    x = b.input((batch, 3, size, size))
    x = conv_bn_relu(b, x, spec.stem, 7, stride=2, name="stem")
    x = b.max_pool(x, 3, stride=2, pad=1, name="stem.pool")
    for stage, (depth, width) in enumerate(zip(spec.depths, spec.widths), start=1):
        for i in range(depth):
            stride = 2 if stage > 1 and i == 0 else 1
            x = spec.block(b, x, width, stride, f"layer{stage}.{i}")
    x = b.flatten(b.global_avg_pool(x, name="avgpool"), name="flatten")
    return b.model([b.gemm(x, spec.classes, name="fc")], opset)


MODELS = {name: partial(resnet, spec, name=name) for name, spec in SPECS.items()}
