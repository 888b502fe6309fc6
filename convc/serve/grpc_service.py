"""gRPC additions to KServe's V2 service: requests honour ``model_version`` through the ``Catalog``."""
from __future__ import annotations

from concurrent import futures

from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer

from convc.serve.catalog import Catalog


class VersionedServicer(InferenceServicer):
    """KServe's servicer, with (model, version) resolved to a registry name first."""

    def __init__(self, data_plane, model_repository_extension, catalog: Catalog):
        super().__init__(data_plane, model_repository_extension)
        self._catalog = catalog

    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        request.model_name = self._catalog.resolve(request.model_name, request.model_version)
        return await super().ModelInfer(request, context)

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        key = self._catalog.resolve(request.name, request.version)
        return pb.ModelReadyResponse(ready=await self._data_plane.model_ready(model_name=key))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        key = self._catalog.resolve(request.name, request.version)
        metadata = self._catalog.metadata(request.name, await self._data_plane.model_metadata(key))
        return pb.ModelMetadataResponse(**metadata)


class VersionedGRPCServer(GRPCServer):
    """KServe's gRPC server on ``host`` (it binds every interface) with the ``VersionedServicer``."""

    def __init__(self, host: str, port: int, data_plane, model_repository_extension, catalog: Catalog,
                 max_message_bytes: int, grace_period: int):
        super().__init__(port, data_plane, model_repository_extension, kwargs={}, grace_period=grace_period)
        self._host = host
        self._catalog = catalog
        self._max_message_bytes = max_message_bytes

    async def start(self, max_workers: int) -> None:
        servicer = VersionedServicer(self._data_plane, self._model_repository_extension, self._catalog)
        self._server = aio.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  interceptors=(ExceptionToStatusInterceptor(),),
                                  options=[("grpc.max_send_message_length", self._max_message_bytes),
                                           ("grpc.max_receive_message_length", self._max_message_bytes)])
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"{self._host}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()
