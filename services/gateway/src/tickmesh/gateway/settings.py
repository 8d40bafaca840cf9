"""Gateway settings (TICKMESH_GATEWAY_* plus the common ones)."""

from __future__ import annotations

from pydantic import Field

from tickmesh.core.settings import CommonSettings


class GatewaySettings(CommonSettings):
    """Where the gateway listens."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
