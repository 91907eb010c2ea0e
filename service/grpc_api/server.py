"""``inference.GRPCInferenceService`` on grpc.aio, in each worker process beside its HTTP server.

Each worker runs its own gRPC server on the same port: gRPC sets SO_REUSEPORT by default, so the
kernel spreads connections across the workers, as it does for HTTP (service/supervisor.py).
Every RPC goes through ``Guard``: the API keys (``x-api-key`` or ``authorization: Bearer``
metadata), the per-client limit, the request timeout, metrics and the access log, as HTTP's
middleware does, and each ``ServiceError`` becomes its status code with the same message.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import grpc
import grpc.aio
from google.protobuf import json_format

from service import errors, metrics
from service.deadlines import Deadlines
from service.grpc_api import tensors
from service.grpc_api.proto import model_config_pb2, service_pb2
from service.inference import Classifier
from service.runtime import Runtime
from service.v2 import encode, parse, spec, stats

log = logging.getLogger("service")
access_log = logging.getLogger("service.access")

SERVICE: Final = "inference.GRPCInferenceService"
#: gRPC's status for each HTTP status the service's errors carry.
STATUS_CODES: Final = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
#: Probes: open without an API key and never throttled, like /v2/health/* over HTTP.
PROBES: Final = ("ServerLive", "ServerReady")
#: ``ipv4:127.0.0.1:5555`` or ``ipv6:[::1]:5555``: the client's address, as HTTP's limit keys it.
PEER: Final = re.compile(r"^ipv[46]:\[?(?P<host>[^\]]*?)\]?:\d+$")
#: Room in a message beyond the body limit for the protobuf framing around the tensor bytes.
FRAMING_BYTES: Final = 64 * 1024

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


def client_host(peer: str) -> str:
    match = PEER.match(peer)
    return match.group("host") if match else peer


class Guard:
    """What every RPC needs before and after its handler, as ServiceMiddleware does for HTTP."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.keys = [key.encode() for key in settings.api_keys]
        self.per_client = settings.max_concurrent_per_client
        self.timeout = settings.request_timeout_s
        self.deadlines = Deadlines(self.timeout)

    def authorised(self, metadata: dict[str, str]) -> bool:
        given = metadata.get("x-api-key")
        if given is None:
            auth = metadata.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
        if not given:
            return False
        # Compare against every key, in constant time, without stopping at the first match.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(given.encode(), key)
        return matched

    def wrap(self, method: str, handler: Handler) -> Handler:
        route = f"/{SERVICE}/{method}"
        probe = method in PROBES

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            status = 200
            client = client_host(context.peer())
            counted = False
            try:
                metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
                if self.keys and not probe and not self.authorised(metadata):
                    raise errors.Unauthorized(errors.MISSING_API_KEY)
                if self.per_client and not probe:
                    self.runtime.admit(client, self.per_client)
                    counted = True
                try:
                    # One timer for every request of the worker, as over HTTP (service/deadlines.py).
                    return await self.deadlines.within(handler(request, context))
                except TimeoutError:
                    raise errors.Timeout(errors.REQUEST_TIMEOUT.format(seconds=self.timeout)) from None
            except errors.ServiceError as exc:
                status = exc.status_code
                if 400 <= status < 500:
                    metrics.REJECTED.labels(str(status)).inc()
                code = STATUS_CODES.get(status, grpc.StatusCode.INTERNAL)
                await context.abort(code, exc.detail)
            except grpc.aio.AbortError:
                raise
            except Exception:
                status = 500
                log.exception("unhandled error on %s", route)
                await context.abort(grpc.StatusCode.INTERNAL, errors.INTERNAL_ERROR)
            finally:
                if counted:
                    self.runtime.release(client)
                elapsed = time.perf_counter() - started
                metrics.observe_request(route, "GRPC", status, elapsed)
                if access_log.isEnabledFor(logging.INFO):
                    self.runtime.access_log.record(
                        method="GRPC",
                        path=route,
                        route=route,
                        status=status,
                        duration_ms=round(elapsed * 1000, 3),
                        client=client,
                    )

        return guarded


class InferenceServicer:
    """The RPCs of ``inference.GRPCInferenceService`` that this server has (the rest answer UNIMPLEMENTED).

    Each answers what its HTTP v2 route answers, built by the same functions (``service.v2``); an
    empty version (gRPC's default) names the served one, as a path without ``/versions`` does.
    """

    def __init__(self, runtime: Runtime, version: str) -> None:
        self.runtime = runtime
        self.version = version

    def _model(self, name: str, version: str) -> tuple[Classifier, spec.ModelSpec]:
        return parse.served_model(self.runtime, name, version or None)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        # Like /v2/health/ready, but a probe here reads a boolean rather than a status.
        return service_pb2.ServerReadyResponse(ready=self.runtime.serving)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        self._model(request.name, request.version)
        return service_pb2.ModelReadyResponse(ready=self.runtime.serving)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerMetadataResponse(name=spec.SERVER_NAME, version=self.version, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        classifier, model = self._model(request.name, request.version)
        metadata = encode.model_metadata(model, spec.protocol_version(classifier.version))
        return json_format.ParseDict(metadata, service_pb2.ModelMetadataResponse())

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        classifier, model = self._model(request.name, request.version)
        config = encode.model_config(model, classifier, self.runtime.settings)
        return service_pb2.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        models = encode.repository_index(self.runtime, request.ready)
        return json_format.ParseDict({"models": models}, service_pb2.RepositoryIndexResponse())

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        # The Prometheus-backed numbers of /v2/models/stats: HTTP and gRPC count into the same ones.
        if request.name:
            classifier, model = self._model(request.name, request.version)
            names = [model.name]
        elif self.runtime.classifier is None:
            raise errors.Unavailable(errors.MODEL_NOT_READY)
        else:
            classifier = self.runtime.classifier
            names = list(spec.served_models(classifier.name))
        values = await asyncio.to_thread(stats.snapshot)
        report = {
            "model_stats": [
                stats.model_stats(name, spec.protocol_version(classifier.version), values) for name in names
            ]
        }
        return json_format.ParseDict(report, service_pb2.ModelStatisticsResponse())

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        classifier, model = self._model(request.model_name, request.model_version)
        settings = self.runtime.settings
        timer = stats.Timer(model.name)
        try:
            if request.ByteSize() > settings.max_body_bytes:
                # HTTP's limit on a body; gRPC itself refuses messages over it by more than the framing.
                raise errors.PayloadTooLarge(errors.BODY_TOO_LARGE.format(limit=settings.max_body_bytes))
            outputs = tensors.requested_outputs(request)
            prepare = tensors.inference_work(request, model, settings)
            _, probabilities, digit_score = await self.runtime.predict(timer.timed(prepare))
            timer.mark_inferred()
            response = service_pb2.ModelInferResponse(
                model_name=model.name, model_version=spec.protocol_version(classifier.version), id=request.id
            )
            tensors.fill_response(
                response,
                encode.output_tensors(probabilities, digit_score, digit_score >= self.runtime.strictness),
                outputs,
            )
        except BaseException:
            # As over HTTP: bad inputs, timeouts and cancellations count as failed requests.
            timer.failed()
            raise
        timer.succeeded(len(probabilities))
        return response


#: The protocol extensions of HTTP v2 that this gRPC server has (binary tensor data is gRPC's own form).
EXTENSIONS: Final = [name for name in spec.EXTENSIONS if name != "binary_tensor_data"]
#: The unary RPCs served, with their request message types.
RPCS: Final = {
    "ServerLive": service_pb2.ServerLiveRequest,
    "ServerReady": service_pb2.ServerReadyRequest,
    "ModelReady": service_pb2.ModelReadyRequest,
    "ServerMetadata": service_pb2.ServerMetadataRequest,
    "ModelMetadata": service_pb2.ModelMetadataRequest,
    "ModelInfer": service_pb2.ModelInferRequest,
    "ModelConfig": service_pb2.ModelConfigRequest,
    "ModelStatistics": service_pb2.ModelStatisticsRequest,
    "RepositoryIndex": service_pb2.RepositoryIndexRequest,
}


def generic_handler(runtime: Runtime, version: str) -> grpc.GenericRpcHandler:
    servicer = InferenceServicer(runtime, version)
    guard = Guard(runtime)
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            guard.wrap(method, getattr(servicer, method)),
            request_deserializer=message.FromString,
            response_serializer=lambda response: response.SerializeToString(),
        )
        for method, message in RPCS.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


async def serve(runtime: Runtime, version: str) -> grpc.aio.Server:
    """Start this worker's gRPC server on ``settings.grpc_port`` (SO_REUSEPORT: every worker binds it)."""
    settings = runtime.settings
    limit = settings.max_body_bytes + FRAMING_BYTES
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.so_reuseport", 1),
        ]
    )
    server.add_generic_rpc_handlers([generic_handler(runtime, version)])
    address = (
        f"[{settings.host}]:{settings.grpc_port}" if ":" in settings.host else f"{settings.host}:{settings.grpc_port}"
    )
    server.add_insecure_port(address)
    await server.start()
    log.info("gRPC (KServe v2) listening on %s", address)
    return server
