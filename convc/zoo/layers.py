"""Single-layer ONNX models for per-layer benchmarks.

``resnet50_convs()`` gives one single-Conv model per distinct conv of ResNet-50 at
224x224 (read off the zoo's resnet50 graph, so it cannot drift from it) with how often
that conv occurs; ``conv_transpose_layers()`` gives the transposed convs the zoo's
generators and U-Nets use. Every model has input "input" and one output.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import onnx
from onnx import helper, shape_inference

from convc.zoo.builder import DEFAULT_OPSET, NetBuilder
from convc.zoo.registry import build


@dataclass(frozen=True)
class LayerCase:
    """A single-layer model and how many times that layer occurs in its network."""

    name: str
    model: onnx.ModelProto
    count: int


@dataclass(frozen=True)
class _ConvShape:
    input: tuple[int, ...]
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    groups: int

    @property
    def name(self) -> str:
        _, c, *hw = self.input
        k, s = "x".join(map(str, self.kernel)), "x".join(map(str, self.stride))
        return f"conv{k}_s{s}_{c}to{self.out_channels}_{'x'.join(map(str, hw))}"


def _conv_shapes(model: onnx.ModelProto) -> Counter[_ConvShape]:
    """Count the model's Conv nodes by (input shape, weight, stride, pad, group)."""
    inferred = shape_inference.infer_shapes(model)
    shapes = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
              for v in [*inferred.graph.input, *inferred.graph.value_info]}
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    found: Counter[_ConvShape] = Counter()
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight = weights[node.input[1]]
        rank = len(weight) - 2
        pads = tuple(attrs["pads"])
        assert pads[:rank] == pads[rank:], f"{node.name}: asymmetric pads {pads}"
        found[_ConvShape(shapes[node.input[0]], weight[0], weight[2:], tuple(attrs["strides"]),
                         pads[:rank], attrs["group"])] += 1
    return found


def resnet50_convs(*, batch: int = 1, seed: int = 0,
                   opset: int = DEFAULT_OPSET) -> list[LayerCase]:
    """One single-Conv model (no bias) per distinct conv of ResNet-50, in network order."""
    cases = []
    for i, (shape, count) in enumerate(_conv_shapes(build("resnet50", batch=batch)).items()):
        b = NetBuilder(shape.name, seed + i)
        x = b.input(shape.input)
        y = b.conv(x, shape.out_channels, shape.kernel, stride=shape.stride, pad=shape.pad,
                   groups=shape.groups, name="conv")
        cases.append(LayerCase(shape.name, b.model([y], opset), count))
    return cases


@dataclass(frozen=True)
class _ConvTransposeCase:
    name: str
    input: tuple[int, ...]  # without the batch axis
    out_channels: int
    kernel: int
    stride: int
    pad: int
    output_padding: int = 0


_CONV_TRANSPOSES = (
    _ConvTransposeCase("convt4x4_s2_p1_256to128_16x16", (256, 16, 16), 128, 4, 2, 1),  # DCGAN
    _ConvTransposeCase("convt3x3_s2_p1_op1_64to32_28x28", (64, 28, 28), 32, 3, 2, 1, 1),
    _ConvTransposeCase("convt2x2_s2_128to64_32x32", (128, 32, 32), 64, 2, 2, 0),       # U-Net
    _ConvTransposeCase("convt1d_k8_s4_p2_128to64_256", (128, 256), 64, 8, 4, 2),       # audio
)


def conv_transpose_layers(*, batch: int = 1, seed: int = 0,
                          opset: int = DEFAULT_OPSET) -> list[LayerCase]:
    """Single-ConvTranspose models (no bias): k4s2p1, k3s2p1 with output_padding 1 and
    k2s2 in 2-D, and k8s4p2 in 1-D; each has count 1."""
    cases = []
    for i, case in enumerate(_CONV_TRANSPOSES):
        b = NetBuilder(case.name, seed + i)
        x = b.input((batch, *case.input))
        y = b.conv_transpose(x, case.out_channels, case.kernel, stride=case.stride, pad=case.pad,
                             output_padding=case.output_padding, name="convt")
        cases.append(LayerCase(case.name, b.model([y], opset), 1))
    return cases
