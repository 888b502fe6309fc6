"""A small U-Net (Ronneberger et al., 2015) with "same" padding and batch norm.

Encoder: ``levels`` blocks of (3x3 conv-bn-relu) x2 with widths base, 2*base, ..., each
followed by a 2x2 max pool; a bottleneck block at base * 2^levels. Decoder: per level a
ConvTranspose k2 s2 (with bias) halving the width and doubling the map, Concat with the
encoder's skip (skip first), and a block. A final 1x1 conv (with bias) gives the classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import onnx

from convc.zoo.builder import DEFAULT_OPSET, NetBuilder, Tensor, ZooError, conv_bn_relu


@dataclass(frozen=True)
class UNetSpec:
    """Downsampling levels, first width, input channels, output classes, default size."""

    levels: int
    base: int
    in_channels: int = 3
    classes: int = 2
    image_size: int = 128


SPECS = {
    "unet": UNetSpec(3, 32),                          # 128 -> 64 -> 32 -> 16, widths 32..256
    "unet_small": UNetSpec(2, 8, image_size=32),      # 32 -> 16 -> 8, widths 8..32
}


def double_conv(b: NetBuilder, x: Tensor, channels: int, name: str) -> Tensor:
    """Two 3x3 conv-bn-relu layers."""
    return conv_bn_relu(b, conv_bn_relu(b, x, channels, 3, name=f"{name}.1"), channels, 3,
                        name=f"{name}.2")


def unet(spec: UNetSpec, *, batch: int = 1, image_size: int | None = None, seed: int = 0,
         opset: int = DEFAULT_OPSET, name: str = "unet") -> onnx.ModelProto:
    """Build a U-Net; input "input" (N, in_channels, S, S), output (N, classes, S, S).

    ``image_size`` must be divisible by 2^levels so that the skips line up.
    """
    size = spec.image_size if image_size is None else image_size
    if size < 1 or size % 2 ** spec.levels:
        raise ZooError(f"{name}: image_size {size} must be a positive multiple of "
                       f"{2 ** spec.levels} (2^levels)")
    b = NetBuilder(name, seed)
    x = b.input((batch, spec.in_channels, size, size))
    skips = []
    for level in range(spec.levels):
        x = double_conv(b, x, spec.base * 2 ** level, f"down{level}")
        skips.append(x)
        x = b.max_pool(x, 2, name=f"down{level}.pool")
    x = double_conv(b, x, spec.base * 2 ** spec.levels, "bottleneck")
    for level in reversed(range(spec.levels)):
        x = b.conv_transpose(x, spec.base * 2 ** level, 2, stride=2, bias=True,
                             name=f"up{level}.convt")
        x = b.concat([skips[level], x], name=f"up{level}.concat")
        x = double_conv(b, x, spec.base * 2 ** level, f"up{level}")
    return b.model([b.conv(x, spec.classes, 1, bias=True, name="head")], opset)


MODELS = {name: partial(unet, spec, name=name) for name, spec in SPECS.items()}
