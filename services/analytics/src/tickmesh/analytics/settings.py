"""Analytics service settings (TICKMESH_ANALYTICS_* plus the common ones)."""

from __future__ import annotations

from pydantic import Field

from tickmesh.core.settings import CommonSettings


class AnalyticsSettings(CommonSettings):
    """Where the analytics service listens and exposes metrics."""

    analytics_listen: str = "127.0.0.1:50053"
    analytics_metrics_port: int = Field(default=9103, ge=0, le=65535)
