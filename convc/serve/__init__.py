"""Serving convc libraries over the Open Inference Protocol (V2), on KServe's ModelServer.

    convc compile model.onnx --repo models/resnet/1      # models/resnet/1/model.so + models/resnet/config.pbtxt
    convc serve models [--host 0.0.0.0 --port 8000 --grpc-port 8001]

The model repository has Triton's layout: ``REPO/<model>/config.pbtxt`` and one folder per
version, ``REPO/<model>/<version>/model.so``. Every version of every model is served;
a request without a version gets the highest one. ``config.py`` and ``repository.py`` need
only convc; the server itself (``server.serve``) needs the ``serve`` extra
(``pip install "convc[serve]"``, which brings ``kserve``).
"""
from convc.serve.config import ModelConfig, read_config, write_config
from convc.serve.repository import ModelVersion, scan_repository

__all__ = ["ModelConfig", "ModelVersion", "read_config", "scan_repository", "write_config"]
