"""Which settings class each tickmesh service reads, and the TICKMESH_* variables it knows."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from tickmesh.analytics.settings import AnalyticsSettings
from tickmesh.bars.settings import BarsSettings
from tickmesh.collector.settings import CollectorSettings
from tickmesh.core.settings import ENV_PREFIX
from tickmesh.gateway.settings import GatewaySettings

SETTINGS_BY_SERVICE: dict[str, type[BaseSettings]] = {
    "collector": CollectorSettings,
    "bars": BarsSettings,
    "analytics": AnalyticsSettings,
    "gateway": GatewaySettings,
}

# gRPC services: (listen field, metrics port field); the gateway serves /metrics on its HTTP port.
GRPC_SERVICES = ("collector", "bars", "analytics")


def variable_of(field: str) -> str:
    """The environment variable pydantic-settings reads for `field` (bars_listen -> TICKMESH_BARS_LISTEN)."""
    return f"{ENV_PREFIX}{field.upper()}"


def known_variables(service: str) -> set[str]:
    """Every TICKMESH_* variable the service's settings class reads."""
    fields = {variable_of(name) for name in SETTINGS_BY_SERVICE[service].model_fields}
    return fields


def unknown_variables(service: str, variables: set[str]) -> set[str]:
    """The TICKMESH_* names among `variables` that the service's settings class does not read."""
    ours = {name for name in variables if name.startswith(ENV_PREFIX)}
    return ours - known_variables(service)


def default_port(service: str, field: str) -> int:
    """The default of a port field, for ports a deployment leaves unset."""
    default = SETTINGS_BY_SERVICE[service].model_fields[field].default
    assert isinstance(default, int), field
    return default


def port_of(address: str) -> int:
    """The port of a host:port address."""
    return int(address.rsplit(":", 1)[1])
