"""VGG-style networks (Simonyan & Zisserman, 2014) with batch norm, as torchvision's vgg*_bn.

Features: 3x3 conv-bn-relu layers and 2x2 max pools from a layout list. Classifier:
Flatten of the last map (7x7x512 at 224x224 for "vgg") and Gemm + Relu layers, then a
Gemm to the classes. That Flatten + Gemm over a 7x7 map is what the fc -> conv rewrite
turns into a 7x7 convolution. Differences from torchvision: no AdaptiveAvgPool (it is
the identity at 224x224), no dropout (identity at inference), and "vgg" uses hidden FC
width 1024 instead of 4096 to keep the model at ~150 MB instead of ~530 MB.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import onnx

from convc.zoo.builder import DEFAULT_OPSET, NetBuilder, conv_bn_relu

POOL = 0  # marks a max pool in a layout


@dataclass(frozen=True)
class VGGSpec:
    """Feature layout (widths, POOL for a 2x2 max pool), hidden FC widths, classes, default size."""

    layout: tuple[int, ...]
    hidden: tuple[int, ...]
    classes: int = 1000
    image_size: int = 224


SPECS = {
    # VGG-11 ("A") features at full width; 224 -> 7 after five pools
    "vgg": VGGSpec((64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
                   (1024, 1024)),
    # 56 -> 7 after three pools; Flatten of 32x7x7 = 1568 features
    "vgg_small": VGGSpec((8, POOL, 16, POOL, 32, 32, POOL), (64,), classes=10, image_size=56),
}


def vgg(spec: VGGSpec, *, batch: int = 1, image_size: int | None = None, seed: int = 0,
        opset: int = DEFAULT_OPSET, name: str = "vgg") -> onnx.ModelProto:
    """Build a VGG; input "input" (batch, 3, size, size), output (batch, classes) logits."""
    size = spec.image_size if image_size is None else image_size
    b = NetBuilder(name, seed)
    x = b.input((batch, 3, size, size))
    for i, width in enumerate(spec.layout):
        x = b.max_pool(x, 2, name=f"features.{i}.pool") if width == POOL \
            else conv_bn_relu(b, x, width, 3, name=f"features.{i}")
    x = b.flatten(x, name="flatten")
    for i, width in enumerate(spec.hidden):
        x = b.relu(b.gemm(x, width, name=f"fc{i}"), name=f"fc{i}.relu")
    return b.model([b.gemm(x, spec.classes, name="classifier")], opset)


MODELS = {name: partial(vgg, spec, name=name) for name, spec in SPECS.items()}
