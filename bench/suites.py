"""The benchmark suites: named models, whole networks and per-layer sets."""
from __future__ import annotations

import functools

import onnx

from convc import zoo
from convc.zoo.layers import conv_transpose_layers, resnet50_convs

NETWORKS = ("resnet18", "resnet50", "mobilenetv2", "dcgan", "unet", "vgg")


@functools.cache
def _layers() -> dict[str, tuple[onnx.ModelProto, int]]:
    cases = [*resnet50_convs(), *conv_transpose_layers()]
    return {f"layer:{c.name}": (c.model, c.count) for c in cases}


def layer_names(prefix: str = "") -> list[str]:
    return [n for n in _layers() if n.startswith(f"layer:{prefix}")]


def load_model(name: str) -> onnx.ModelProto:
    """A network from the zoo, or a single layer named ``layer:<name>``."""
    if name.startswith("layer:"):
        return _layers()[name][0]
    return zoo.build(name)
