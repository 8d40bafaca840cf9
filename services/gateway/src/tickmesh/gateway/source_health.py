"""What the collector says of each market-data source, read from Redis (`system:health`).

The collector writes one JSON field per source, `collector:<source>` (e.g.
`collector:binance_usdm`), holding at least `state` and, after a failure, `error`. The
gateway only reads it: `/api/v1/health` lists the sources, and the dashboard tells the user
plainly when a venue cannot be reached from this machine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as redis

from tickmesh.core.cache import SYSTEM_HEALTH_KEY
from tickmesh.gateway.schemas import SourceHealth

log = logging.getLogger(__name__)

FIELD_PREFIX = "collector:"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _source(name: str, raw: str) -> SourceHealth:
    """One field's state; a field that is not a JSON object is shown as such, not dropped."""
    try:
        decoded: Any = json.loads(raw)
    except ValueError:
        decoded = None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("state"), str):
        log.warning("source health of %s is not a JSON object with a state: %.200s", name, raw)
        return SourceHealth(source=name, state="unknown", error="malformed health record")
    error = decoded.get("error")
    updated = decoded.get("updated_at")
    return SourceHealth(
        source=name,
        state=decoded["state"],
        error=None if error in (None, "") else str(error),
        updated_at=(
            datetime.fromtimestamp(updated, UTC) if isinstance(updated, int | float) else None
        ),
    )


def parse_sources(fields: Mapping[bytes | str, bytes | str]) -> list[SourceHealth]:
    """The `collector:*` fields of the health hash as sources, by name."""
    sources = []
    for key, value in fields.items():
        name = _text(key)
        if name.startswith(FIELD_PREFIX):
            sources.append(_source(name.removeprefix(FIELD_PREFIX), _text(value)))
    return sorted(sources, key=lambda source: source.source)


class SourceHealthReader:
    """Reads the collector's source states from Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def read(self) -> list[SourceHealth]:
        """Every source the collector reported, by name (none while it has not written yet)."""
        fields: Mapping[bytes | str, bytes | str] = await self._client.hgetall(SYSTEM_HEALTH_KEY)
        return parse_sources(fields)
