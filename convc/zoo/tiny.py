"""The quickstart's network: four convs and a Gemm over a 1x3x32x32 image.

conv-bn-relu (16) -> max pool -> residual block (two 3x3 conv-bn, Add, Relu) ->
strided conv-bn-relu (32) -> GlobalAveragePool -> Flatten -> Gemm (10 classes).
"""
from __future__ import annotations

import onnx

from convc.zoo.builder import DEFAULT_OPSET, NetBuilder, conv_bn, conv_bn_relu


def tiny(*, batch: int = 1, image_size: int | None = None, seed: int = 0,
         opset: int = DEFAULT_OPSET, name: str = "tiny") -> onnx.ModelProto:
    """Build the quickstart CNN; input "input" (batch, 3, 32, 32), output (batch, 10) logits."""
    size = 32 if image_size is None else image_size
    b = NetBuilder(name, seed)
    x = b.input((batch, 3, size, size))
    x = conv_bn_relu(b, x, 16, 3, name="conv1")
    x = b.max_pool(x, 2, name="pool")
    y = conv_bn_relu(b, x, 16, 3, name="res.1")
    y = conv_bn(b, y, 16, 3, name="res.2", gain=0.5)
    x = b.relu(b.add(y, x, name="res.add"), name="res.relu")
    x = conv_bn_relu(b, x, 32, 3, stride=2, name="conv2")
    x = b.flatten(b.global_avg_pool(x, name="avgpool"), name="flatten")
    return b.model([b.gemm(x, 10, name="fc")], opset)


MODELS = {"tiny": tiny}
