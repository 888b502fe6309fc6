"""DCGAN generators (Radford et al., 2015), as in the PyTorch DCGAN example.

The input is a latent code of shape (N, latent, 1, 1). A ConvTranspose 4x4 with stride 1
and no padding makes a 4x4 map; each further layer is a strided ConvTranspose that
doubles the map (k4 s2 p1, or k3 s2 p1 / k5 s2 p2 with output_padding 1 in the small
variant), followed by BN + Relu; the last one produces 3 channels and ends in Tanh.
ConvTransposes have no bias, as in the reference implementation.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import onnx

from convc.zoo.builder import DEFAULT_OPSET, NetBuilder, ZooError


@dataclass(frozen=True)
class UpLayer:
    """One ConvTranspose of the generator."""

    channels: int
    kernel: int
    stride: int
    pad: int
    output_padding: int = 0


@dataclass(frozen=True)
class DCGANSpec:
    """Latent size and the ConvTranspose stack; the last layer's channels are the image's."""

    latent: int
    layers: tuple[UpLayer, ...]


SPECS = {
    # 1 -> 4 -> 8 -> 16 -> 32 -> 64
    "dcgan": DCGANSpec(100, (UpLayer(512, 4, 1, 0), UpLayer(256, 4, 2, 1), UpLayer(128, 4, 2, 1),
                             UpLayer(64, 4, 2, 1), UpLayer(3, 4, 2, 1))),
    # 1 -> 4 -> 8 (k3 s2 p1 op1) -> 16 (k4 s2 p1) -> 32 (k5 s2 p2 op1)
    "dcgan_small": DCGANSpec(16, (UpLayer(32, 4, 1, 0), UpLayer(16, 3, 2, 1, 1),
                                  UpLayer(8, 4, 2, 1), UpLayer(3, 5, 2, 2, 1))),
}


def output_size(spec: DCGANSpec) -> int:
    """Side of the generated image."""
    size = 1
    for layer in spec.layers:
        size = layer.stride * (size - 1) + layer.output_padding + layer.kernel - 2 * layer.pad
    return size


def dcgan(spec: DCGANSpec, *, batch: int = 1, image_size: int | None = None, seed: int = 0,
          opset: int = DEFAULT_OPSET, name: str = "dcgan") -> onnx.ModelProto:
    """Build a generator; input "input" (batch, latent, 1, 1), output (batch, 3, size, size).

    The image size is fixed by the architecture; ``image_size`` may only restate it.
    """
    size = output_size(spec)
    if image_size is not None and image_size != size:
        raise ZooError(f"{name}: the generator's output is {size}x{size}; "
                       f"image_size {image_size} cannot be chosen")
    b = NetBuilder(name, seed)
    x = b.input((batch, spec.latent, 1, 1))
    last = len(spec.layers) - 1
    for i, layer in enumerate(spec.layers):
        x = b.conv_transpose(x, layer.channels, layer.kernel, stride=layer.stride, pad=layer.pad,
                             output_padding=layer.output_padding, name=f"up{i}.convt")
        if i == last:
            x = b.tanh(x, name="tanh")
        else:
            x = b.relu(b.batch_norm(x, name=f"up{i}.bn"), name=f"up{i}.relu")
    return b.model([x], opset)


MODELS = {name: partial(dcgan, spec, name=name) for name, spec in SPECS.items()}
