"""A server interceptor that admits a call only from the roles allowed to call its service.

The TLS handshake already proved the caller holds a certificate of the mesh's CA; this
decides what that caller may do, from the role its certificate names in a URI SAN
`spiffe://tickmesh/ROLE` (tickmesh.core.roles). Anything else ends with PERMISSION_DENIED.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from cryptography import x509
from grpc import aio

from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.roles import role_of_uri

log = logging.getLogger(__name__)

Behavior = Callable[..., Any]
NO_ROLE = "none"


@functools.lru_cache(maxsize=256)
def role_of_certificate(pem: bytes) -> str | None:
    """The mesh role a PEM certificate names in its URI SANs, or None.

    Cached by the certificate's bytes: a caller presents the same certificate on every call,
    and parsing it each time would cost more than the unary call it guards.
    """
    try:
        cert = x509.load_pem_x509_certificate(pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    roles = {role_of_uri(uri) for uri in sans.get_values_for_type(x509.UniformResourceIdentifier)}
    roles.discard(None)
    # A certificate naming two roles is ambiguous: trust neither.
    return roles.pop() if len(roles) == 1 else None


def caller_role(context: aio.ServicerContext) -> str | None:
    """The role of the peer of a call on a mutual-TLS port, or None."""
    pems = context.auth_context().get("x509_pem_cert") or []
    return role_of_certificate(pems[0]) if pems else None


class CallerAuthorization(aio.ServerInterceptor):  # type: ignore[misc]
    """Admit each call only if its caller's role may call the method's service.

    `allowed` maps a full service name to its roles; a service it does not name admits
    nobody, so a new service is closed until someone says who may call it.
    """

    def __init__(self, allowed: Mapping[str, frozenset[str]], metrics: CoreMetrics) -> None:
        self._allowed = allowed
        self._metrics = metrics
        # One log line per (caller, service): a misconfigured client retrying in a loop must
        # not flood the log; the metric counts every refusal.
        self._logged: set[tuple[str, str]] = set()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """Wrap the handler of whichever of the four RPC shapes with the caller check."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service = str(handler_call_details.method).lstrip("/").split("/", 1)[0]
        allowed = self._allowed.get(service, frozenset())
        shapes = (
            (handler.unary_unary, grpc.unary_unary_rpc_method_handler, False),
            (handler.stream_unary, grpc.stream_unary_rpc_method_handler, False),
            (handler.unary_stream, grpc.unary_stream_rpc_method_handler, True),
            (handler.stream_stream, grpc.stream_stream_rpc_method_handler, True),
        )
        for behavior, make_handler, streams in shapes:
            if behavior is not None:
                wrap = self._wrap_stream if streams else self._wrap_unary
                return make_handler(
                    wrap(service, allowed, behavior),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler

    async def _admit(
        self, service: str, allowed: frozenset[str], context: aio.ServicerContext
    ) -> None:
        role = caller_role(context)
        if role is not None and role in allowed:
            return
        shown = role or NO_ROLE
        self._metrics.grpc_denied.labels(role=shown, service=service).inc()
        if (shown, service) not in self._logged:
            self._logged.add((shown, service))
            log.warning(
                "caller refused: role %s may not call %s",
                shown,
                service,
                extra={"role": shown, "service": service, "peer": context.peer()},
            )
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"role {shown!r} may not call {service}; allowed: {', '.join(sorted(allowed)) or 'none'}",
        )

    def _wrap_unary(self, service: str, allowed: frozenset[str], behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: aio.ServicerContext) -> Any:
            await self._admit(service, allowed, context)
            return await behavior(request, context)

        return wrapped

    def _wrap_stream(self, service: str, allowed: frozenset[str], behavior: Behavior) -> Behavior:
        async def wrapped(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            await self._admit(service, allowed, context)
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            else:
                await result

        return wrapped
