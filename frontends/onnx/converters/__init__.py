"""One small converter per ONNX op, grouped by family; importing this package registers them."""
from convc.frontends.onnx.converters import (conv, elementwise, linalg, normalization, pool,  # noqa: F401
                                             reduce, resize, shape, tensor)
