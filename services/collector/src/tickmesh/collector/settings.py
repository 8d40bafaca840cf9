"""Collector settings (TICKMESH_COLLECTOR_* plus the common ones)."""

from __future__ import annotations

from pydantic import Field

from tickmesh.core.settings import CommonSettings


class CollectorSettings(CommonSettings):
    """Where the collector listens and exposes metrics."""

    collector_listen: str = "127.0.0.1:50051"
    collector_metrics_port: int = Field(default=9101, ge=0, le=65535)
