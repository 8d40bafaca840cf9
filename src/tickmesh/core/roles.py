"""Who is who inside the mesh: the roles a certificate can name, and who may call which service.

A certificate names its role in a URI SAN `spiffe://tickmesh/ROLE`. The table here is the
one place that says which roles may call each gRPC service; servers enforce it with
tickmesh.core.caller_authorization.
"""

from __future__ import annotations

from collections.abc import Mapping

COLLECTOR = "collector"
BARS = "bars"
ANALYTICS = "analytics"
GATEWAY = "gateway"
IMPORTER = "importer"  # the `tickmesh import` CLI
READER = "reader"  # a third-party client, e.g. the README's grpcurl example
ROLES = (COLLECTOR, BARS, ANALYTICS, GATEWAY, IMPORTER, READER)

ROLE_URI_PREFIX = "spiffe://tickmesh/"

# Any caller with a certificate of the mesh's CA: health checks and (outside production)
# reflection carry no data worth guarding, and every role needs them.
ANY_ROLE: frozenset[str] = frozenset(ROLES)

# Which roles may call each service. A service missing here admits nobody over TLS: a new
# service has to say who its callers are before anyone reaches it.
ALLOWED_CALLERS: Mapping[str, frozenset[str]] = {
    "tickmesh.v2.IngestService": frozenset({COLLECTOR, IMPORTER}),
    "tickmesh.v2.SymbolService": frozenset({GATEWAY}),
    "tickmesh.v2.BarService": frozenset({GATEWAY, ANALYTICS, READER}),
    "tickmesh.v2.AnalyticsService": frozenset({GATEWAY, READER}),
    "grpc.health.v1.Health": ANY_ROLE,
    "grpc.reflection.v1alpha.ServerReflection": ANY_ROLE,
    "grpc.reflection.v1.ServerReflection": ANY_ROLE,
}


def role_uri(role: str) -> str:
    """The URI SAN that names `role`."""
    return f"{ROLE_URI_PREFIX}{role}"


def role_of_uri(uri: str) -> str | None:
    """The role a URI SAN names, or None if it is not a mesh role URI."""
    if not uri.startswith(ROLE_URI_PREFIX):
        return None
    role = uri.removeprefix(ROLE_URI_PREFIX)
    return role if role in ROLES else None
