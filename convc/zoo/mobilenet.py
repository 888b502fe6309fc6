"""MobileNetV2 as torchvision writes it (Sandler et al., 2018).

Stem: 3x3/2 conv + BN + ReLU6 (Clip 0..6). Inverted residual blocks (t, c, n, s): a 1x1
expansion to t*C channels + BN + ReLU6 (absent when t = 1), a 3x3 depthwise conv
(group = channels) with stride s + BN + ReLU6, a 1x1 linear projection to c channels +
BN, and a residual Add when the stride is 1 and the channels do not change. Then a 1x1
conv to the last width + BN + ReLU6, GlobalAveragePool, Flatten and Gemm (the classifier's
dropout is the identity at inference and is left out).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import onnx

from convc.zoo.builder import (DEFAULT_OPSET, NetBuilder, Tensor, conv_bn, conv_bn_relu6)

# Gain of the projection BN in a block with a residual Add (see resnet.RESIDUAL_GAIN).
RESIDUAL_GAIN = 0.5


def inverted_residual(b: NetBuilder, x: Tensor, expand: int, out_channels: int, stride: int,
                      name: str) -> Tensor:
    """One MobileNetV2 block; ``expand`` is the expansion ratio t."""
    residual = stride == 1 and x.channels == out_channels
    y = x
    if expand != 1:
        y = conv_bn_relu6(b, y, x.channels * expand, 1, name=f"{name}.expand")
    y = conv_bn_relu6(b, y, y.channels, 3, stride=stride, groups=y.channels,
                      name=f"{name}.dw")
    y = conv_bn(b, y, out_channels, 1, name=f"{name}.project",
                gain=RESIDUAL_GAIN if residual else 1.0)
    return b.add(y, x, name=f"{name}.add") if residual else y


@dataclass(frozen=True)
class MobileNetSpec:
    """Stem width, blocks as (t, c, n, s) rows, last conv width, classes, default size."""

    stem: int
    blocks: tuple[tuple[int, int, int, int], ...]
    last: int
    classes: int = 1000
    image_size: int = 224


SPECS = {
    "mobilenetv2": MobileNetSpec(32, ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                                      (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                                      (6, 320, 1, 1)), 1280),
    # 32x32 input: stem -> 16x16, blocks at 16, 8, 4; residual Adds in rows 2 and 3
    "mobilenet_small": MobileNetSpec(8, ((1, 8, 1, 1), (4, 16, 2, 2), (4, 24, 2, 2)), 64,
                                     classes=10, image_size=32),
}


def mobilenet(spec: MobileNetSpec, *, batch: int = 1, image_size: int | None = None,
              seed: int = 0, opset: int = DEFAULT_OPSET,
              name: str = "mobilenet") -> onnx.ModelProto:
    """Build a MobileNetV2; input "input" (batch, 3, size, size), output (batch, classes)."""
    size = spec.image_size if image_size is None else image_size
    b = NetBuilder(name, seed)
    x = b.input((batch, 3, size, size))
    x = conv_bn_relu6(b, x, spec.stem, 3, stride=2, name="stem")
    for row, (t, c, n, s) in enumerate(spec.blocks):
        for i in range(n):
            x = inverted_residual(b, x, t, c, s if i == 0 else 1, f"block{row}.{i}")
    x = conv_bn_relu6(b, x, spec.last, 1, name="last")
    x = b.flatten(b.global_avg_pool(x, name="avgpool"), name="flatten")
    return b.model([b.gemm(x, spec.classes, name="classifier")], opset)


MODELS = {name: partial(mobilenet, spec, name=name) for name, spec in SPECS.items()}
