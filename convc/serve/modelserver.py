"""``ConvcModelServer``: KServe's ModelServer with a host to bind, model versions and a body limit.

Imports ``kserve``, whose ``model_server`` module parses ``sys.argv`` when first imported:
import this through ``server.serve``, which hides convc's own arguments from it.
"""
from __future__ import annotations

import asyncio

from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.model_server import app
from kserve.protocol.rest.server import RESTServer

from convc.serve.catalog import Catalog, registry_key
from convc.serve.grpc_service import VersionedGRPCServer
from convc.serve.model import ConvcModel, ServedLibrary
from convc.serve.repository import ModelVersion
from convc.serve.rest import BodyLimit, add_version_routes


class ConvcModelServer(ModelServer):
    """Serves every version of every model of a repository over REST and gRPC (V2 protocol)."""

    def __init__(self, host: str, http_port: int, grpc_port: int, max_request_bytes: int, grace_period: int):
        super().__init__(http_port=http_port, grpc_port=grpc_port, workers=1, enable_grpc=True,
                         enable_docs_url=False, enable_latency_logging=False, grace_period=grace_period)
        self.host = host
        self.max_request_bytes = max_request_bytes

    def load(self, entries: list[ModelVersion]) -> list[ConvcModel]:
        """One KServe model per version (registry name ``model/version``); the highest version also
        answers under the bare model name."""
        models = [ConvcModel(registry_key(e.name, e.version), ServedLibrary(e)) for e in entries]
        latest = {m.library.entry.name: m for m in models}  # entries are sorted by version
        return models + [ConvcModel(name, m.library) for name, m in latest.items()]

    def start(self, models: list[ConvcModel]) -> None:
        """Register ``models`` and serve until SIGINT/SIGTERM (ModelServer.start, with our servers)."""
        self._register_and_check_atleast_one_model_is_ready(models)
        versions: dict[str, list[int]] = {}
        for m in models:
            versions.setdefault(m.library.entry.name, []).append(m.library.entry.version)
        catalog = Catalog({name: tuple(sorted(set(vs))) for name, vs in versions.items()})
        add_version_routes(app, self.dataplane, catalog)
        app.add_middleware(BodyLimit, max_bytes=self.max_request_bytes)
        self._rest_server = RESTServer(FASTAPI_APP_IMPORT_STRING, self.dataplane, self.model_repository_extension,
                                       self.http_port, grace_period=self.grace_period)
        self._rest_server.config.host = self.host
        self._grpc_server = VersionedGRPCServer(self.host, self.grpc_port, self.dataplane,
                                                self.model_repository_extension, catalog,
                                                self.max_request_bytes, self.grace_period)
        self.servers += [self._rest_server.start(), self._grpc_server.start(self.max_threads)]
        self.setup_event_loop()
        self.register_signal_handler()
        asyncio.run(self._serve())
