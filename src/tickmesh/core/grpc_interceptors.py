"""One server interceptor that maps domain errors to status codes and counts every RPC."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from tickmesh.core.errors import DomainError
from tickmesh.core.metrics import CoreMetrics

log = logging.getLogger(__name__)

Behavior = Callable[..., Any]


class StatusInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Maps DomainError to its gRPC code, logs unexpected errors once, records counts and latency."""

    def __init__(self, metrics: CoreMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the handler's behaviour of whichever of the four RPC shapes it has."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method: str = handler_call_details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap_unary(method, handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap_stream(method, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap_unary(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: aio.ServicerContext) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await behavior(request, context)
            except DomainError as error:
                code = error.grpc_code
                await context.abort(code, str(error))
            except Exception as error:
                code = _code_of(error, context)
                raise
            finally:
                self._record(method, code, started)

        return wrapped

    def _wrap_stream(self, method: str, behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for response in result:
                        yield response
                else:
                    await result
            except DomainError as error:
                code = error.grpc_code
                await context.abort(code, str(error))
            except Exception as error:
                code = _code_of(error, context)
                raise
            finally:
                self._record(method, code, started)

        return wrapped

    def _record(self, method: str, code: grpc.StatusCode, started: float) -> None:
        self._metrics.grpc_requests.labels(method=method, code=code.name).inc()
        self._metrics.grpc_latency.labels(method=method).observe(time.perf_counter() - started)


def _code_of(error: Exception, context: aio.ServicerContext) -> grpc.StatusCode:
    """The status an escaping exception ends the call with (abort() raises; others are INTERNAL)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(error, aio.AbortError | aio.UsageError):
        return grpc.StatusCode.UNKNOWN
    if isinstance(error, TimeoutError | ConnectionError):
        return grpc.StatusCode.UNAVAILABLE
    log.exception("unhandled error in rpc handler")
    return grpc.StatusCode.INTERNAL
