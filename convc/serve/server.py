"""``serve``: the entry point of ``convc serve`` (needs the ``serve`` extra: kserve)."""
from __future__ import annotations

import sys
from pathlib import Path

from convc.errors import ConvcError
from convc.serve.repository import scan_repository

DEFAULT_MAX_REQUEST_BYTES = 64 << 20


def _import_server():
    """Import the KServe-based server with an empty argv: kserve parses sys.argv on import."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        from convc.serve.modelserver import ConvcModelServer
    except ImportError as err:
        raise ConvcError(f"convc serve needs the serve extra: pip install \"convc[serve]\" ({err})") from None
    finally:
        sys.argv = argv
    return ConvcModelServer


def serve(repository: str | Path, host: str = "0.0.0.0", http_port: int = 8000, grpc_port: int = 8001,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, grace_period: int = 5) -> None:
    """Serve every model version of a Triton-layout ``repository`` until SIGINT/SIGTERM.

    V2 (Open Inference Protocol) REST on ``host:http_port`` and gRPC on ``host:grpc_port``.
    Requests above ``max_request_bytes`` are refused (HTTP 413, gRPC RESOURCE_EXHAUSTED).
    Raises ``RepositoryError``/``LibraryError`` before listening when a model cannot be loaded.
    """
    entries = scan_repository(repository)
    server_class = _import_server()
    server = server_class(host, http_port, grpc_port, max_request_bytes, grace_period)
    server.start(server.load(entries))
