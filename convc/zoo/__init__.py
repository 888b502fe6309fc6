"""Example CNNs written as ONNX models in code, with deterministic random weights.

    from convc import zoo
    model = zoo.build("resnet18", batch=1, seed=0)     # onnx.ModelProto, input "input"
    feeds = zoo.random_inputs(model)                   # {"input": float32 array}

Models (``zoo.MODELS``): resnet18, resnet50, mobilenetv2, dcgan, unet, vgg, their small
variants resnet_small, mobilenet_small, dcgan_small, unet_small, vgg_small, and tiny
(the quickstart's net). ``zoo.layers`` holds single-layer models for benchmarks.
"""
from convc.zoo.builder import DEFAULT_OPSET, ZooError
from convc.zoo.inputs import random_inputs
from convc.zoo.registry import MODELS, build

__all__ = ["MODELS", "build", "random_inputs", "ZooError", "DEFAULT_OPSET"]
