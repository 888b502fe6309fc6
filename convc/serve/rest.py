"""REST additions to KServe's V2 endpoints: model versions and a request size limit.

KServe's ModelServer answers ``/v2/models/<m>/versions/<v>/...`` with 501, and its infer
route reads a JSON body sent without ``Content-Type: application/json`` (as tritonclient
sends it) as binary and refuses it. These routes, registered on its FastAPI app before its
own, resolve the version through the ``Catalog``, parse a JSON body whatever its content
type, and hand the request to KServe's data plane under that version's registry name.
"""
from __future__ import annotations

import json

from fastapi import FastAPI, Request, Response
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from pydantic import ValidationError

from convc.serve.catalog import Catalog


def add_version_routes(app: FastAPI, dataplane: DataPlane, catalog: Catalog) -> None:
    """Serve model metadata with versions, and per-version readiness and inference."""
    endpoints = V2Endpoints(dataplane)

    async def metadata(model_name: str, model_version: str = "") -> dict:
        key = catalog.resolve(model_name, model_version)
        return catalog.metadata(model_name, await dataplane.model_metadata(key))

    async def ready(model_name: str, model_version: str) -> dict:
        key = catalog.resolve(model_name, model_version)
        if not await dataplane.model_ready(key):
            raise ModelNotReady(model_name)
        return {"name": model_name, "ready": True}

    async def infer(raw_request: Request, raw_response: Response, model_name: str, model_version: str = ""):
        key = catalog.resolve(model_name, model_version)
        body = await raw_request.body()
        if INFERENCE_CONTENT_LENGTH_HEADER not in raw_request.headers:
            try:
                body = InferenceRequest.model_validate_json(body)
            except ValidationError as err:
                raise InvalidInput(f"malformed inference request: {err.errors()[0]['msg']}") from None
        return await endpoints.infer(raw_request, raw_response, key, body)

    prefix = "/v2/models/{model_name}"
    app.add_api_route(prefix, metadata, methods=["GET"])
    app.add_api_route(prefix + "/versions/{model_version}", metadata, methods=["GET"])
    app.add_api_route(prefix + "/versions/{model_version}/ready", ready, methods=["GET"])
    app.add_api_route(prefix + "/infer", infer, methods=["POST"], response_model=None)
    app.add_api_route(prefix + "/versions/{model_version}/infer", infer, methods=["POST"], response_model=None)


class BodyLimit:
    """ASGI middleware: a request body above ``max_bytes`` gets 413 before any handler reads it."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send, int(declared))
        messages, size = [], 0
        while True:  # a body without Content-Length is counted as it arrives
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._refuse(send, size)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send, size: int) -> None:
        body = json.dumps({"error": f"request body of {size} bytes exceeds the server's limit of "
                                    f"{self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
