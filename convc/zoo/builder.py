"""A small writer of CNNs as ONNX graphs, shared by every model of the zoo.

``NetBuilder`` appends ONNX nodes and their deterministic random weights; each method
takes and returns a ``Tensor`` (an ONNX value name with its static N, C, *spatial shape),
so a family module reads like the network's definition. Layout is NCHW (NC + any number
of spatial axes), float32, weights in ONNX layouts: Conv (M, C/g, *k), ConvTranspose
(C, M/g, *k), Gemm (out, in) with ``transB=1``.

Initialisation keeps activations O(1) through deep nets, because the zoo's outputs are
compared by relative L2 error:
- Conv / Gemm weights are He-normal, std = sqrt(2 / fan_in), fan_in = C/g * prod(k);
  a ConvTranspose output sees about C/g * prod(min(k/s, i)) inputs, so that is its fan_in.
- BatchNormalization gets random running mean/var, scale and bias, with the scale
  rescaled so that the mean over channels of scale^2 / (var + eps) equals ``gain^2``:
  a BN layer multiplies the activations' mean square by ``gain^2`` on average.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from convc.errors import ConvcError

DEFAULT_OPSET = 17
MIN_OPSET = 11  # Clip takes its bounds as inputs from opset 11 on
BN_EPSILON = 1e-5


class ZooError(ConvcError):
    """A zoo model was asked for with a name or a setting it does not support."""


@dataclass(frozen=True)
class Tensor:
    """An activation of the graph being built: its ONNX name and static (N, C, *spatial) shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.shape[2:]


def _per_axis(value: int | Sequence[int], rank: int, what: str) -> tuple[int, ...]:
    """Expand an int to one value per spatial axis; check a sequence has one per axis."""
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    assert len(values) == rank, f"{what} {value!r} does not have {rank} spatial axes"
    return values


class NetBuilder:
    """Appends nodes and initializers for one ONNX model; ``model()`` returns the ModelProto.

    ``name`` (the model's name) appears in error messages; ``seed`` fixes every weight.
    Node names are the ``name`` arguments given to the methods; each node's output value
    has the node's name, so names must be unique within a model.
    """

    def __init__(self, name: str, seed: int):
        self.name = name
        self._rng = np.random.default_rng(seed)
        self._inputs: list[onnx.ValueInfoProto] = []
        self._nodes: list[onnx.NodeProto] = []
        self._initializers: dict[str, onnx.TensorProto] = {}
        self._names: set[str] = set()

    # ---- graph plumbing -------------------------------------------------------------

    def input(self, shape: Sequence[int], name: str = "input") -> Tensor:
        """Declare a float32 graph input."""
        shape = tuple(int(d) for d in shape)
        if any(d < 1 for d in shape):
            raise ZooError(f"{self.name}: input {name!r} shape {shape} must have positive sizes "
                           "(check batch and image_size)")
        self._claim(name)
        self._inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        return Tensor(name, shape)

    def model(self, outputs: Sequence[Tensor], opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
        """Finish the graph with ``outputs`` as its outputs, in that order."""
        check_opset(opset)
        graph = helper.make_graph(
            self._nodes, self.name, self._inputs,
            [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, t.shape) for t in outputs],
            initializer=list(self._initializers.values()))
        opset_ids = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=opset_ids, producer_name="convc.zoo")
        # the oldest IR version that carries this opset, so older runtimes load the model too
        model.ir_version = helper.find_min_ir_version_for(opset_ids)
        return model

    def _claim(self, name: str) -> None:
        assert name not in self._names, f"{self.name}: duplicate name {name!r}"
        self._names.add(name)

    def _param(self, name: str, array: np.ndarray) -> str:
        self._claim(name)
        self._initializers[name] = numpy_helper.from_array(np.ascontiguousarray(array), name)
        return name

    def _shared_scalar(self, name: str, value: float) -> str:
        """A float32 scalar initializer shared by every node that names it (Clip bounds)."""
        if name not in self._initializers:
            self._param(name, np.array(value, dtype=np.float32))
        return name

    def _node(self, op: str, inputs: Sequence[str], name: str, shape: Sequence[int],
              **attrs) -> Tensor:
        shape = tuple(shape)
        if any(d < 1 for d in shape):
            raise ZooError(f"{self.name}: node {name!r} ({op}) would have output shape {shape}; "
                           "the input image is too small for this network")
        self._claim(name)
        self._nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        return Tensor(name, shape)

    def _normal(self, shape: Sequence[int], std: float) -> np.ndarray:
        return (self._rng.standard_normal(tuple(shape), dtype=np.float32) * np.float32(std))

    def _uniform(self, n: int, low: float, high: float) -> np.ndarray:
        return self._rng.uniform(low, high, n).astype(np.float32)

    # ---- layers with weights --------------------------------------------------------

    def conv(self, x: Tensor, out_channels: int, kernel: int | Sequence[int], *, name: str,
             stride: int | Sequence[int] = 1, pad: int | Sequence[int] | None = None,
             dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = False) -> Tensor:
        """Conv with symmetric padding ``pad`` per spatial axis (default: d*(k-1)//2, "same")."""
        rank = len(x.spatial)
        k = _per_axis(kernel, rank, "kernel")
        s = _per_axis(stride, rank, "stride")
        d = _per_axis(dilation, rank, "dilation")
        p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d)) if pad is None \
            else _per_axis(pad, rank, "pad")
        assert x.channels % groups == 0 and out_channels % groups == 0, (name, groups)
        fan_in = x.channels // groups * math.prod(k)
        inputs = [x.name, self._param(f"{name}.weight", self._normal(
            (out_channels, x.channels // groups, *k), math.sqrt(2.0 / fan_in)))]
        if bias:
            inputs.append(self._param(f"{name}.bias", self._normal((out_channels,), 0.1)))
        out = tuple((i + 2 * pi - di * (ki - 1) - 1) // si + 1
                    for i, ki, si, pi, di in zip(x.spatial, k, s, p, d))
        return self._node("Conv", inputs, name, (x.shape[0], out_channels, *out),
                          kernel_shape=list(k), strides=list(s), pads=list(p + p),
                          dilations=list(d), group=groups)

    def conv_transpose(self, x: Tensor, out_channels: int, kernel: int | Sequence[int], *,
                       name: str, stride: int | Sequence[int] = 1, pad: int | Sequence[int] = 0,
                       output_padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                       groups: int = 1, bias: bool = False) -> Tensor:
        """ConvTranspose with symmetric ``pad``.

        Output size per axis: s*(i-1) + output_padding + d*(k-1) + 1 - 2*pad.
        """
        rank = len(x.spatial)
        k = _per_axis(kernel, rank, "kernel")
        s = _per_axis(stride, rank, "stride")
        p = _per_axis(pad, rank, "pad")
        op = _per_axis(output_padding, rank, "output_padding")
        d = _per_axis(dilation, rank, "dilation")
        assert x.channels % groups == 0 and out_channels % groups == 0, (name, groups)
        taps = math.prod(min(ki / si, i) for ki, si, i in zip(k, s, x.spatial))
        fan_in = max(1.0, x.channels // groups * taps)
        inputs = [x.name, self._param(f"{name}.weight", self._normal(
            (x.channels, out_channels // groups, *k), math.sqrt(2.0 / fan_in)))]
        if bias:
            inputs.append(self._param(f"{name}.bias", self._normal((out_channels,), 0.1)))
        out = tuple(si * (i - 1) + opi + di * (ki - 1) + 1 - 2 * pi
                    for i, ki, si, pi, opi, di in zip(x.spatial, k, s, p, op, d))
        attrs = dict(kernel_shape=list(k), strides=list(s), pads=list(p + p), dilations=list(d),
                     group=groups)
        if any(op):
            attrs["output_padding"] = list(op)
        return self._node("ConvTranspose", inputs, name, (x.shape[0], out_channels, *out), **attrs)

    def batch_norm(self, x: Tensor, *, name: str, gain: float = 1.0) -> Tensor:
        """Inference BatchNormalization with random statistics (``gain``: see module docstring)."""
        c = x.channels
        var = self._uniform(c, 0.5, 2.0)
        scale = self._uniform(c, 0.5, 1.5)
        scale *= np.float32(gain / math.sqrt(float(np.mean(scale ** 2 / (var + BN_EPSILON)))))
        inputs = [x.name,
                  self._param(f"{name}.weight", scale),
                  self._param(f"{name}.bias", self._normal((c,), 0.2)),
                  self._param(f"{name}.running_mean", self._normal((c,), 0.2)),
                  self._param(f"{name}.running_var", var)]
        return self._node("BatchNormalization", inputs, name, x.shape, epsilon=BN_EPSILON)

    def gemm(self, x: Tensor, out_features: int, *, name: str) -> Tensor:
        """Fully connected layer on an (N, F) tensor: x @ W^T + b, W of shape (out, F)."""
        assert len(x.shape) == 2, (name, x.shape)
        weight = self._normal((out_features, x.shape[1]), math.sqrt(2.0 / x.shape[1]))
        inputs = [x.name, self._param(f"{name}.weight", weight),
                  self._param(f"{name}.bias", self._normal((out_features,), 0.1))]
        return self._node("Gemm", inputs, name, (x.shape[0], out_features), transB=1)

    # ---- layers without weights -----------------------------------------------------

    def relu(self, x: Tensor, *, name: str) -> Tensor:
        return self._node("Relu", [x.name], name, x.shape)

    def tanh(self, x: Tensor, *, name: str) -> Tensor:
        return self._node("Tanh", [x.name], name, x.shape)

    def clip(self, x: Tensor, low: float, high: float, *, name: str) -> Tensor:
        """Clip with bounds as shared scalar initializers (e.g. ReLU6 = clip 0..6)."""
        bounds = [self._shared_scalar(f"clip.{v:g}", v) for v in (low, high)]
        return self._node("Clip", [x.name, *bounds], name, x.shape)

    def add(self, a: Tensor, b: Tensor, *, name: str) -> Tensor:
        assert a.shape == b.shape, (name, a.shape, b.shape)
        return self._node("Add", [a.name, b.name], name, a.shape)

    def concat(self, xs: Sequence[Tensor], *, name: str) -> Tensor:
        """Concatenate along channels."""
        assert len({(t.shape[0], *t.spatial) for t in xs}) == 1, (name, [t.shape for t in xs])
        channels = sum(t.channels for t in xs)
        return self._node("Concat", [t.name for t in xs], name,
                          (xs[0].shape[0], channels, *xs[0].spatial), axis=1)

    def max_pool(self, x: Tensor, kernel: int, *, name: str, stride: int | None = None,
                 pad: int = 0) -> Tensor:
        """MaxPool, same kernel, stride and symmetric pad on every spatial axis (floor mode)."""
        stride = kernel if stride is None else stride
        rank = len(x.spatial)
        out = tuple((i + 2 * pad - kernel) // stride + 1 for i in x.spatial)
        return self._node("MaxPool", [x.name], name, (*x.shape[:2], *out),
                          kernel_shape=[kernel] * rank, strides=[stride] * rank,
                          pads=[pad] * (2 * rank))

    def global_avg_pool(self, x: Tensor, *, name: str) -> Tensor:
        ones = (1,) * len(x.spatial)
        return self._node("GlobalAveragePool", [x.name], name, (*x.shape[:2], *ones))

    def flatten(self, x: Tensor, *, name: str) -> Tensor:
        """Flatten to (N, C * prod(spatial))."""
        return self._node("Flatten", [x.name], name, (x.shape[0], math.prod(x.shape[1:])), axis=1)


# ---- composite helpers ---------------------------------------------------------------

def conv_bn(b: NetBuilder, x: Tensor, out_channels: int, kernel: int, *, name: str,
            stride: int = 1, groups: int = 1, gain: float = 1.0) -> Tensor:
    """Conv (no bias, "same" padding) + BatchNormalization: nodes ``{name}.conv``, ``{name}.bn``."""
    y = b.conv(x, out_channels, kernel, stride=stride, groups=groups, name=f"{name}.conv")
    return b.batch_norm(y, name=f"{name}.bn", gain=gain)


def conv_bn_relu(b: NetBuilder, x: Tensor, out_channels: int, kernel: int, *, name: str,
                 stride: int = 1, groups: int = 1) -> Tensor:
    """Conv + BatchNormalization + Relu."""
    return b.relu(conv_bn(b, x, out_channels, kernel, name=name, stride=stride, groups=groups),
                  name=f"{name}.relu")


def conv_bn_relu6(b: NetBuilder, x: Tensor, out_channels: int, kernel: int, *, name: str,
                  stride: int = 1, groups: int = 1) -> Tensor:
    """Conv + BatchNormalization + Clip(0, 6) (MobileNet's ReLU6)."""
    return b.clip(conv_bn(b, x, out_channels, kernel, name=name, stride=stride, groups=groups),
                  0.0, 6.0, name=f"{name}.relu6")


def check_opset(opset: int) -> None:
    """Raise ZooError unless the zoo can write models for ``opset``."""
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ZooError(f"opset {opset} is not supported by convc.zoo; "
                       f"choose one in {MIN_OPSET}..{newest}")
