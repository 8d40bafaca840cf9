"""What stands between a WebSocket client and the live feeds: limits, registry, session watch.

Every refusal is counted (`tickmesh_ws_refused_total{reason}`) and logged once, so an
operator can tell an attack, a misbehaving client and limits set too tight apart.

Refusal reasons:
- `preauth_per_ip`: too many sockets of one address not yet authenticated (HTTP 429);
- `message_too_big`: a client message over `gateway_ws_max_message_bytes` (1009, by uvicorn);
- `connections_per_user`: the user already holds its cap of sockets (1008);
- `message_rate`: the socket's message bucket ran dry (1008);
- `unknown_instrument`: the path names an instrument that is not registered (1008);
- `registry_unavailable`: the registry could not be read yet (1013);
- `token_expired`, `account_disabled`: an open socket whose token or user is no longer good (1008).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from tickmesh.gateway.backends import Backends
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.settings import GatewaySettings
from tickmesh.gateway.ws_limits import MessageBucket, Slots
from tickmesh.gateway.ws_registry import InstrumentRegistry
from tickmesh.gateway.ws_sessions import SessionWatch

log = logging.getLogger("tickmesh.gateway.ws")


@dataclass
class WsGuard:
    """The WebSocket route's limits and checks, one set per gateway process."""

    settings: GatewaySettings
    metrics: GatewayMetrics
    preauth: Slots[str]  # by client address
    per_user: Slots[int]  # by user id
    registry: InstrumentRegistry
    sessions: SessionWatch

    @classmethod
    def build(
        cls,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        pool: asyncpg.Pool,
        backends: Backends,
    ) -> WsGuard:
        """The guard the settings describe."""
        return cls(
            settings=settings,
            metrics=metrics,
            preauth=Slots(settings.gateway_ws_preauth_per_ip),
            per_user=Slots(settings.gateway_ws_connections_per_user),
            registry=InstrumentRegistry(backends, settings.gateway_ws_registry_seconds),
            sessions=SessionWatch(
                pool, settings.gateway_ws_user_check_seconds, metrics.ws_user_check_errors
            ),
        )

    def message_bucket(self) -> MessageBucket:
        """A fresh bucket for one socket's client messages."""
        return MessageBucket(
            self.settings.gateway_ws_messages_per_second, self.settings.gateway_ws_message_burst
        )

    def refused(self, reason: str, client: str, detail: str) -> None:
        """Count and log one refusal (`client`: the address, or the user)."""
        self.metrics.ws_refused.labels(reason=reason).inc()
        log.warning(
            "WebSocket refused (%s) for %s: %s",
            reason,
            client,
            detail,
            extra={"reason": reason, "client": client},
        )
