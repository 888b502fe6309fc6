"""convc: a compiler for convolutional networks on Apache TVM.

    import convc
    cm = convc.compile("model.onnx")          # or an onnx.ModelProto; target="llvm"
    outputs = cm.run({"input": x})            # list of np.ndarray, in ONNX output order
    cm.export_library("model.so")
    convc.load("model.so").run({"input": x})
"""
from convc.errors import (CodegenError, ConvcError, InputError, LibraryError, ModelError,
                          ShapeError, UnsupportedAttributeError, UnsupportedOperatorError)

__version__ = "0.1.0"


def compile(model, target="llvm", input_shapes=None, dump_ir=None, schedule=None, disable_passes=(),
            tuning_db=None, dtype="float32"):
    """Compile an ONNX model; see ``convc.compiler.compile``."""
    from convc.compiler import compile as _compile
    return _compile(model, target=target, input_shapes=input_shapes, dump_ir=dump_ir, schedule=schedule,
                    disable_passes=disable_passes, tuning_db=tuning_db, dtype=dtype)


def load(path, device=None):
    """Load a library written by ``CompiledModel.export_library``; see ``convc.runtime.load``."""
    from convc.runtime import load as _load
    return _load(path, device=device)


__all__ = ["compile", "load", "ConvcError", "ModelError", "UnsupportedOperatorError",
           "UnsupportedAttributeError", "ShapeError", "InputError", "LibraryError", "CodegenError",
           "__version__"]
