"""The ONNX importer: ``import_model(path_or_proto, input_shapes=None) -> convc.ir.Graph``."""
from convc.frontends.onnx.importer import import_model

__all__ = ["import_model"]
