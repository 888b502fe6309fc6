"""Whole networks: compile, export, reload, run, and match onnxruntime (relative L2 <= 1e-4)."""
import numpy as np
import pytest

import convc
from convc import zoo
from convc.compiler import lower_to_ir
from convc.ir import Op
from oracles import onnxruntime_outputs, relative_l2

NETWORKS = ["tiny", "resnet_small", "mobilenet_small", "dcgan_small", "unet_small", "vgg_small"]


@pytest.mark.parametrize("name", NETWORKS)
def test_network_matches_onnxruntime_after_export_and_reload(name, tmp_path):
    model = zoo.build(name)
    inputs = zoo.random_inputs(model, seed=1)
    expected = onnxruntime_outputs(model, inputs)
    library = tmp_path / f"{name}.so"
    convc.compile(model).export_library(library)
    outputs = convc.load(library).run(inputs)
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected):
        assert got.shape == want.shape and got.dtype == want.dtype
        assert relative_l2(got, want) <= 1e-4, f"{name}: relative L2 {relative_l2(got, want):.2e}"


@pytest.mark.parametrize("name", NETWORKS)
def test_only_plain_convolutions_reach_the_backend(name):
    graph = lower_to_ir(zoo.build(name))
    ops = {node.op for node in graph.nodes}
    assert Op.CONV in ops
    assert not ops & {Op.CONV_TRANSPOSE, Op.BATCH_NORM}
    assert not any(node.op is Op.MATMUL and any(graph.is_constant(v) for v in node.inputs)
                   for node in graph.nodes)


def test_vgg_head_becomes_a_conv_over_the_whole_map():
    graph = lower_to_ir(zoo.build("vgg_small"))
    convs = [n for n in graph.nodes if n.op is Op.CONV]
    head = [n for n in convs if n.inputs[1].shape[2:] == n.inputs[0].shape[2:] == (7, 7)]
    assert head, "the Flatten+Gemm over the 7x7 map should be a conv whose kernel covers the map"


def test_batch_of_two_matches_onnxruntime():
    model = zoo.build("resnet_small", batch=2)
    inputs = zoo.random_inputs(model, seed=2)
    (want,) = onnxruntime_outputs(model, inputs)
    (got,) = convc.compile(model).run(inputs)
    assert relative_l2(got, want) <= 1e-4
    assert not np.allclose(got[0], got[1]), "both batch entries computed separately"
