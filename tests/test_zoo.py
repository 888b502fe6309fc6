"""convc.zoo's networks, checked by onnx's checker, onnxruntime and published numbers."""
from __future__ import annotations

import functools
import math
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from convc import zoo
from convc.errors import ConvcError
from convc.zoo import layers

# Output shapes at batch 1 and default sizes, written down from the architectures.
EXPECTED_OUTPUT = {
    "resnet18": (1, 1000), "resnet50": (1, 1000), "resnet_small": (1, 10),
    "mobilenetv2": (1, 1000), "mobilenet_small": (1, 10),
    "dcgan": (1, 3, 64, 64), "dcgan_small": (1, 3, 32, 32),
    "unet": (1, 2, 128, 128), "unet_small": (1, 2, 32, 32),
    "vgg": (1, 1000), "vgg_small": (1, 10),
    "tiny": (1, 10),
}
SMALL = ["resnet_small", "mobilenet_small", "dcgan_small", "unet_small", "vgg_small", "tiny"]

# torchvision's published parameter counts (weights, biases, BN scale and shift).
PUBLISHED_PARAMETERS = {"resnet18": 11_689_512, "resnet50": 25_557_032, "mobilenetv2": 3_504_872}


@functools.cache
def model(name: str) -> onnx.ModelProto:
    return zoo.build(name)


def session(m: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def declared_shape(value: onnx.ValueInfoProto) -> tuple[int, ...]:
    return tuple(d.dim_value for d in value.type.tensor_type.shape.dim)


@functools.cache
def run(name: str) -> tuple[list[np.ndarray], dict[str, float]]:
    """The model's outputs in onnxruntime, and the RMS of every intermediate value."""
    m = onnx.ModelProto()
    m.CopyFrom(model(name))
    outputs = [o.name for o in m.graph.output]
    inferred = onnx.shape_inference.infer_shapes(m)
    m.graph.output.extend(v for v in inferred.graph.value_info if v.name not in outputs)
    sess = session(m)
    values = dict(zip([o.name for o in sess.get_outputs()],
                      sess.run(None, zoo.random_inputs(m, seed=1))))
    rms = {k: float(np.sqrt(np.mean(np.square(v, dtype=np.float64)))) for k, v in values.items()}
    return [values[o] for o in outputs], rms


def ops(m: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in m.graph.node}


def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def count_parameters(m: onnx.ModelProto) -> int:
    """Trainable parameters: weights and biases of Conv/ConvTranspose/Gemm, BN scale and bias."""
    sizes = {t.name: math.prod(t.dims) for t in m.graph.initializer}
    trainable = {"Conv": slice(1, None), "ConvTranspose": slice(1, None), "Gemm": slice(1, None),
                 "BatchNormalization": slice(1, 3)}
    return sum(sizes[i] for n in m.graph.node if n.op_type in trainable
               for i in n.input[trainable[n.op_type]])


def test_the_zoo_has_every_model():
    assert set(zoo.MODELS) == set(EXPECTED_OUTPUT)


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_model_passes_the_onnx_checker(name):
    m = model(name)
    onnx.checker.check_model(m, full_check=True)
    assert [i.name for i in m.graph.input] == ["input"]
    assert m.opset_import[0].version == zoo.DEFAULT_OPSET == 17


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_model_runs_in_onnxruntime_with_finite_outputs_of_the_expected_shape(name):
    (out,), _ = run(name)
    assert out.shape == EXPECTED_OUTPUT[name] == declared_shape(model(name).graph.output[0])
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.std() > 1e-3, "a constant output would hide wrong layers"


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTPUT))
def test_activations_stay_order_one_through_the_network(name):
    _, rms = run(name)
    low, high = min(rms, key=rms.get), max(rms, key=rms.get)
    assert rms[low] > 0.1 and rms[high] < 20, (low, rms[low], high, rms[high])


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_parameter_count_matches_the_published_one(name):
    assert count_parameters(model(name)) == PUBLISHED_PARAMETERS[name]


def _has_depthwise(m):
    shapes = {t.name: tuple(t.dims) for t in m.graph.initializer}
    return any(n.op_type == "Conv" and attrs(n)["group"] > 1
               and attrs(n)["group"] == shapes[n.input[1]][0] and shapes[n.input[1]][1] == 1
               for n in m.graph.node)


def _has_output_padding_variants(m):
    paddings = {tuple(attrs(n).get("output_padding", (0, 0)))
                for n in m.graph.node if n.op_type == "ConvTranspose"}
    return (0, 0) in paddings and (1, 1) in paddings


def _flatten_over_7x7(m):
    inferred = onnx.shape_inference.infer_shapes(m)
    shapes = {v.name: declared_shape(v) for v in inferred.graph.value_info}
    return any(n.op_type == "Flatten" and shapes[n.input[0]][2:] == (7, 7)
               for n in m.graph.node)


# What each small variant must keep from its family.
SMALL_FEATURES = {
    "resnet_small": lambda m: {"Add", "Gemm", "GlobalAveragePool", "MaxPool"} <= ops(m),
    "mobilenet_small": lambda m: {"Clip", "Add", "Gemm"} <= ops(m) and _has_depthwise(m),
    "dcgan_small": lambda m: {"ConvTranspose", "Tanh"} <= ops(m)
    and _has_output_padding_variants(m),
    "unet_small": lambda m: {"ConvTranspose", "Concat", "MaxPool"} <= ops(m),
    "vgg_small": lambda m: "Gemm" in ops(m) and _flatten_over_7x7(m),
    "tiny": lambda m: {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "Gemm"} <= ops(m),
}


@pytest.mark.parametrize("name", SMALL)
def test_small_variant_keeps_the_features_of_its_family(name):
    assert SMALL_FEATURES[name](model(name))


def test_full_models_have_the_features_too():
    assert _has_depthwise(model("mobilenetv2")) and "Clip" in ops(model("mobilenetv2"))
    assert _flatten_over_7x7(model("vgg"))
    assert {"ConvTranspose", "Concat"} <= ops(model("unet"))


@pytest.mark.parametrize("name", SMALL)
def test_small_variant_runs_well_under_a_second(name):
    sess = session(model(name))
    feeds = zoo.random_inputs(model(name))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.25


def test_build_is_deterministic_in_the_seed():
    def serialized(seed):
        return zoo.build("tiny", seed=seed).SerializeToString()

    assert serialized(3) == serialized(3)
    assert serialized(3) != serialized(4)


@pytest.mark.parametrize("name, kwargs, shape", [
    ("tiny", dict(batch=3), (3, 10)),
    ("resnet_small", dict(image_size=32), (1, 10)),
    ("unet_small", dict(batch=2, image_size=48), (2, 2, 48, 48)),
    ("vgg_small", dict(image_size=112), (1, 10)),
    ("dcgan_small", dict(batch=2, image_size=32), (2, 3, 32, 32)),
    ("mobilenet_small", dict(opset=13), (1, 10)),
    ("tiny", dict(opset=21), (1, 10)),
])
def test_build_options_give_models_that_run(name, kwargs, shape):
    m = zoo.build(name, **kwargs)
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version == kwargs.get("opset", 17)
    (out,) = session(m).run(None, zoo.random_inputs(m))
    assert out.shape == shape == declared_shape(m.graph.output[0])


@pytest.mark.parametrize("name, kwargs, words", [
    ("resnet51", {}, ["resnet51", "resnet50"]),
    ("unet_small", dict(image_size=30), ["image_size 30", "multiple of 4"]),
    ("dcgan", dict(image_size=128), ["64x64", "image_size 128"]),
    ("tiny", dict(batch=0), ["batch"]),
    ("tiny", dict(image_size=0), ["input", "image_size"]),
    ("vgg_small", dict(image_size=4), ["features.6.pool", "too small"]),
    ("tiny", dict(opset=7), ["opset 7"]),
])
def test_bad_requests_raise_a_zoo_error_that_says_what_is_wrong(name, kwargs, words):
    with pytest.raises(zoo.ZooError) as info:
        zoo.build(name, **kwargs)
    assert isinstance(info.value, ConvcError)
    for word in words:
        assert word in str(info.value)


def test_random_inputs_cover_every_graph_input_with_float32():
    m = zoo.build("dcgan_small", batch=2)
    feeds = zoo.random_inputs(m, seed=5)
    assert list(feeds) == ["input"]
    assert feeds["input"].dtype == np.float32 and feeds["input"].shape == (2, 16, 1, 1)
    assert np.array_equal(feeds["input"], zoo.random_inputs(m, seed=5)["input"])
    assert not np.array_equal(feeds["input"], zoo.random_inputs(m, seed=6)["input"])


def test_random_inputs_reject_inputs_it_cannot_fill():
    x = helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["ids"], ["y"])], "g", [x], [y])
    with pytest.raises(zoo.ZooError, match="'ids'.*INT64"):
        zoo.random_inputs(helper.make_model(graph))
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    with pytest.raises(zoo.ZooError, match="'x'.*static"):
        zoo.random_inputs(helper.make_model(graph))


def _single_node(case: layers.LayerCase, op_type: str) -> onnx.NodeProto:
    onnx.checker.check_model(case.model, full_check=True)
    (node,) = case.model.graph.node
    assert node.op_type == op_type
    return node


def test_resnet50_convs_cover_the_network_once():
    cases = layers.resnet50_convs()
    assert len({c.name for c in cases}) == len(cases)
    macs = 0
    for case in cases:
        node = _single_node(case, "Conv")
        weight = next(t for t in case.model.graph.initializer if t.name == node.input[1])
        (out,) = session(case.model).run(None, zoo.random_inputs(case.model))
        assert out.shape == declared_shape(case.model.graph.output[0])
        macs += case.count * math.prod(out.shape) * math.prod(weight.dims[1:])
    # 1 stem conv + 16 bottlenecks x 3 + 4 projection shortcuts
    assert sum(c.count for c in cases) == 53
    # ResNet-50 is ~4.09 GMACs at 224x224, nearly all of it in the convs (the fc adds 2M)
    assert abs(macs - 4.09e9) / 4.09e9 < 0.01


def test_conv_transpose_layers_are_the_promised_ones():
    expected = [  # (kernel, strides, pads, output_padding, output shape)
        ([4, 4], [2, 2], [1, 1, 1, 1], [0, 0], (1, 128, 32, 32)),
        ([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], (1, 32, 56, 56)),
        ([2, 2], [2, 2], [0, 0, 0, 0], [0, 0], (1, 64, 64, 64)),
        ([8], [4], [2, 2], [0], (1, 64, 1024)),
    ]
    cases = layers.conv_transpose_layers()
    assert len(cases) == len(expected)
    for case, (kernel, strides, pads, output_padding, shape) in zip(cases, expected):
        a = attrs(_single_node(case, "ConvTranspose"))
        assert (a["kernel_shape"], a["strides"], a["pads"]) == (kernel, strides, pads)
        assert a.get("output_padding", [0] * len(kernel)) == output_padding
        (out,) = session(case.model).run(None, zoo.random_inputs(case.model))
        assert out.shape == shape == declared_shape(case.model.graph.output[0])
        assert case.count == 1
