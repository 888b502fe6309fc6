"""convc: a compiler for convolutional networks on Apache TVM."""
from convc.errors import (CodegenError, ConvcError, InputError, LibraryError, ModelError,
                          ShapeError, UnsupportedAttributeError, UnsupportedOperatorError)

__version__ = "0.1.0"

__all__ = ["ConvcError", "ModelError", "UnsupportedOperatorError", "UnsupportedAttributeError",
           "ShapeError", "InputError", "LibraryError", "CodegenError", "__version__"]
