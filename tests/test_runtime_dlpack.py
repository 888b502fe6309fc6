"""The runtime's inputs and outputs: NumPy arrays and DLPack producers, without copies where
TVM allows; checked on the CPU with NumPy's own DLPack support, against onnxruntime."""
import numpy as np
import onnxruntime as ort
import pytest

import convc
from convc import zoo
from convc.errors import ConvcError, InputError

ALIGNMENT = 64  # what TVM's kernels assume of their data


class Producer:
    """Any DLPack producer: only the two DLPack methods of an array, nothing NumPy-specific."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def aligned(shape, offset_bytes: int = 0) -> np.ndarray:
    """A float32 array of ``shape`` whose data starts ``offset_bytes`` after a 64-byte boundary."""
    size = int(np.prod(shape))
    raw = np.zeros(size * 4 + 2 * ALIGNMENT, np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT + offset_bytes
    array = raw[start:start + size * 4].view(np.float32).reshape(shape)
    assert array.ctypes.data % ALIGNMENT == offset_bytes % ALIGNMENT
    return array


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    model = zoo.build("tiny")
    x = zoo.random_inputs(model, seed=3)["input"]
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})
    compiled = convc.compile(model)
    path = tmp_path_factory.mktemp("dlpack") / "tiny.so"
    compiled.export_library(path)
    return compiled, convc.load(path), x, expected


@pytest.fixture(params=["built", "loaded"])
def model(case, request):
    return case[0] if request.param == "built" else case[1]


def rel_l2(got, expected) -> float:
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


def test_an_aligned_numpy_input_is_passed_without_a_copy(model, case):
    x = aligned(case[2].shape)
    x[...] = case[2]
    (tensor,) = model.device_inputs({"input": x})
    assert tensor.data_ptr() == x.ctypes.data
    assert rel_l2(model.run({"input": x})[0], case[3][0]) <= 1e-5


@pytest.mark.parametrize("offset", [0, 4])
def test_a_dlpack_producer_is_read_without_a_copy_when_aligned(model, case, offset):
    x = aligned(case[2].shape, offset)
    x[...] = case[2]
    (tensor,) = model.device_inputs({"input": Producer(x)})
    assert (tensor.data_ptr() == x.ctypes.data) == (offset == 0)  # unaligned data is copied
    assert rel_l2(model.run({"input": Producer(x)})[0], case[3][0]) <= 1e-5


def test_strided_unaligned_and_read_only_host_inputs_are_copied(model, case):
    strided = np.repeat(case[2], 2, axis=3)[..., ::2]
    assert np.array_equal(strided, case[2]) and not strided.flags.c_contiguous
    (tensor,) = model.device_inputs({"input": Producer(strided)})
    assert tensor.data_ptr() != strided.ctypes.data
    assert rel_l2(model.run({"input": Producer(strided)})[0], case[3][0]) <= 1e-5
    x = aligned(case[2].shape, 4)
    x[...] = case[2]
    assert rel_l2(model.run({"input": x})[0], case[3][0]) <= 1e-5
    frozen = case[2].copy()
    frozen.flags.writeable = False
    assert rel_l2(model.run({"input": frozen})[0], case[3][0]) <= 1e-5


def test_dlpack_outputs_are_the_device_tensors(model, case):
    outs = model.run({"input": case[2]}, output="dlpack")
    assert len(outs) == len(case[3])
    for out, expected in zip(outs, case[3]):
        assert out.__dlpack_device__() == (1, 0)  # kDLCPU, device 0
        array = np.from_dlpack(out)
        assert array.ctypes.data == out.data_ptr()  # a view, not a copy
        assert rel_l2(array, expected) <= 1e-5
    assert np.array_equal(np.from_dlpack(outs[0]), model.run({"input": case[2]})[0])


def test_an_unknown_output_form_is_refused(model, case):
    with pytest.raises(ConvcError, match="output='torch'.*numpy, dlpack"):
        model.run({"input": case[2]}, output="torch")


@pytest.mark.parametrize("bad, what", [
    (lambda x: Producer(x.astype(np.float64)), r"expected float32\[1, 3, 32, 32\], got float64"),
    (lambda x: Producer(x[:, :, :16]), r"expected float32\[1, 3, 32, 32\], got float32\[1, 3, 16, 32\]"),
])
def test_a_wrong_dlpack_input_is_an_input_error_naming_it(model, case, bad, what):
    with pytest.raises(InputError, match=f"input 'input'.*{what}"):
        model.run({"input": bad(case[2])})


def test_a_cpu_library_refuses_the_cuda_device(tmp_path, case):
    path = tmp_path / "tiny.so"
    case[0].export_library(path)
    with pytest.raises(ConvcError, match="compiled for cpu.*cannot run on device 'cuda'"):
        convc.load(path, device="cuda")
    with pytest.raises(ConvcError, match="unknown device 'tpu'"):
        convc.load(path, device="tpu")
    assert convc.load(path, device="cpu").device == "cpu"
