"""Domain errors, each mapped once to a gRPC status code and an HTTP status."""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """Base of every error a handler may raise on purpose; the message is shown to the caller."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500


class InvalidArgument(DomainError):
    """The request is malformed; the message names the field."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(DomainError):
    """The named thing does not exist."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class AlreadyExists(DomainError):
    """The thing to create exists already."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class FailedPrecondition(DomainError):
    """The request is valid but not in this state (e.g. a symbol of another shard)."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409


class PermissionDenied(DomainError):
    """The caller may not do this."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class Unauthenticated(DomainError):
    """The caller is not who it says, or did not say."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class ResourceExhausted(DomainError):
    """A limit was hit; retry later."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unavailable(DomainError):
    """A dependency is down; retry later."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
