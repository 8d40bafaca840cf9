"""Bars service settings (TICKMESH_BARS_* plus the common ones)."""

from __future__ import annotations

from pydantic import Field

from tickmesh.core.settings import CommonSettings


class BarsSettings(CommonSettings):
    """Where the bars service listens and exposes metrics."""

    bars_listen: str = "127.0.0.1:50052"
    bars_metrics_port: int = Field(default=9102, ge=0, le=65535)
