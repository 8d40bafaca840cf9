"""Gateway settings (TICKMESH_GATEWAY_* plus the common ones), refusing default secrets in production."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from tickmesh.core.settings import CommonSettings, SettingsError, load_settings_or_exit

# HS256 keys shorter than the hash output weaken the MAC (RFC 7518 section 3.2).
MIN_SECRET_LENGTH = 32


class GatewaySettings(CommonSettings):
    """Where the gateway listens, how it signs tokens, limits clients and pushes updates."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
    # The built dashboard (frontend/dist) served at /; unset serves none. Checked at start.
    gateway_static_dir: Path | None = None

    # The active signing key and its `kid`; older keys stay valid for verifying until removed.
    gateway_jwt_secret: SecretStr | None = Field(default=None, validate_default=True)
    gateway_jwt_kid: str = Field(default="primary", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    gateway_jwt_previous_keys: dict[str, SecretStr] = Field(default_factory=dict)
    gateway_access_token_minutes: int = Field(default=60, ge=1, le=24 * 60)
    gateway_refresh_token_days: int = Field(default=14, ge=1, le=365)
    # However often a login's refresh token is rotated, the login itself ends this long after
    # it began (a stolen, regularly used refresh token does not live forever).
    gateway_refresh_family_max_days: int = Field(default=30, ge=1, le=365)
    gateway_signup_role: Literal["viewer", "trader"] = "viewer"
    gateway_admin_username: str | None = None
    gateway_admin_password: SecretStr | None = None
    # The bootstrap admin is only ever inserted. When a user of that name exists with another
    # password or role the gateway refuses to start, unless this is set: then the configured
    # password and the admin role are written over it and all its sessions end.
    gateway_admin_reset: bool = False

    gateway_rate_limit_per_minute: int = Field(default=100, ge=1, le=1_000_000)
    gateway_auth_rate_limit_per_minute: int = Field(default=20, ge=1, le=1_000_000)
    # Login attempts per username per minute, from any number of addresses.
    gateway_login_attempts_per_minute: int = Field(default=10, ge=1, le=1_000_000)
    # Proxies (IPs or CIDRs) whose X-Forwarded-For names the client; from anyone else the
    # header is ignored, so a client cannot pick its own rate-limit bucket. Empty: none.
    gateway_trusted_proxies: list[str] = Field(default_factory=list)
    # Request bodies larger than this are refused (413) before they are read.
    gateway_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1 << 30)
    # Password hashes at a time (argon2id: 64 MiB each); further logins wait their turn.
    gateway_password_hash_concurrency: int = Field(default=4, ge=1, le=256)
    gateway_cors_origins: list[str] = Field(default_factory=list)
    gateway_backend_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Rows one /api/v1/datasets answer may stream; a larger range is a 422 naming this limit
    # (`tickmesh export` writes any range to Parquet).
    gateway_dataset_max_rows: int = Field(default=1_000_000, ge=1, le=1_000_000_000)
    # Encoded chart answers kept in memory (0 turns the cache off); see chart_cache.py.
    gateway_chart_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=0, le=4 * 1024**3)
    # How long a user row read for a request is reused: a user disabled or demoted through
    # another replica (or in the database) loses access within this bound; this replica's own
    # changes apply at once.
    gateway_user_cache_seconds: float = Field(default=2.0, ge=0, le=60)

    gateway_ws_update_seconds: float = Field(default=1.0, gt=0, le=60)
    gateway_ws_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)
    gateway_ws_send_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    gateway_ws_max_pending_finals: int = Field(default=500, ge=1, le=100_000)
    # Bytes a client's socket has not taken yet past which it is closed as too slow.
    gateway_ws_max_buffered_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=1 << 30)
    gateway_ws_auth_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # `/ws/...?token=`: a credential in a URL ends up in logs and traces of anything on the
    # way (both are redacted here, proxies are not). Unset: accepted except in production,
    # where clients send {"type": "auth", "token": ...} as the dashboard does.
    gateway_ws_query_token: bool | None = None

    # WebSocket limits (see ws_guard.py); the bench raises them for its 5,000 clients.
    # Sockets of one client address that have not authenticated yet (?token= or the first
    # message): past this the handshake is refused with 429.
    gateway_ws_preauth_per_ip: int = Field(default=32, ge=1, le=1_000_000)
    # Largest client->server message (uvicorn's own default is 16 MiB); larger closes 1009.
    gateway_ws_max_message_bytes: int = Field(default=4096, ge=512, le=16 * 1024 * 1024)
    # Open sockets per user on this replica; one more is closed 1008.
    gateway_ws_connections_per_user: int = Field(default=16, ge=1, le=1_000_000)
    # A token bucket per socket for client messages: refill rate and burst; over it, 1008.
    gateway_ws_messages_per_second: float = Field(default=5.0, gt=0, le=100_000)
    gateway_ws_message_burst: int = Field(default=20, ge=1, le=1_000_000)
    # How often the users of open sockets are re-read: a disabled user's sockets close within it.
    gateway_ws_user_check_seconds: float = Field(default=5.0, gt=0, le=3600)
    # How long the instrument registry (the collector's list) is reused for subscriptions.
    gateway_ws_registry_seconds: float = Field(default=30.0, gt=0, le=3600)

    gateway_alerts_enabled: bool = True
    # How often the alert engine re-reads the active alerts (new alerts start being judged).
    gateway_alert_refresh_seconds: float = Field(default=5.0, gt=0, le=3600)
    gateway_webhook_attempts: int = Field(default=3, ge=1, le=10)
    # Webhooks to loopback or private addresses are refused unless this is set (tests, labs).
    gateway_webhook_allow_private: bool = False
    gateway_webhook_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    # One delivery attempt (name lookup, connect, send, answer) ends by this deadline, however
    # slowly a target trickles; kept well under the delivery lease (60 s).
    gateway_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=30)
    # Attempts in flight at once on a replica: slow targets take slots, never the whole worker.
    gateway_alert_delivery_concurrency: int = Field(default=16, ge=1, le=256)
    # Alerts one user may have: each is judged on every final bar and may send messages.
    gateway_alerts_per_user: int = Field(default=100, ge=1, le=100_000)
    # Webhook and e-mail firings reach other people's systems: at most one per this many
    # seconds per alert, whatever cooldown the alert asks for (rows stored with less too).
    gateway_alert_min_cooldown_seconds: int = Field(default=60, ge=0, le=86_400)
    gateway_smtp_host: str = "127.0.0.1"
    gateway_smtp_port: int = Field(default=25, ge=1, le=65535)
    gateway_smtp_sender: str = "alerts@tickmesh.local"

    @field_validator("gateway_trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: list[str]) -> list[str]:
        """Each entry an IP address or network, so a typo does not silently trust nobody."""
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("gateway_jwt_secret")
    @classmethod
    def _secret_required_in_production(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        """Production never runs on a generated secret."""
        if value is None and info.data.get("environment") == "production":
            raise ValueError(
                "required when TICKMESH_ENVIRONMENT=production (no default secret); "
                f"set at least {MIN_SECRET_LENGTH} random characters"
            )
        return value


def query_tokens_allowed(settings: GatewaySettings) -> bool:
    """Whether a WebSocket may authenticate with `?token=`."""
    if settings.gateway_ws_query_token is not None:
        return settings.gateway_ws_query_token
    return settings.environment != "production"


def check_secret_strength(settings: GatewaySettings) -> None:
    """SettingsError when production runs on a short key (checked here so the key is never echoed)."""
    if settings.environment != "production":
        return
    keys: dict[str, SecretStr | None] = {"TICKMESH_GATEWAY_JWT_SECRET": settings.gateway_jwt_secret}
    keys.update(
        {
            f"TICKMESH_GATEWAY_JWT_PREVIOUS_KEYS[{kid}]": key
            for kid, key in settings.gateway_jwt_previous_keys.items()
        }
    )
    for variable, key in keys.items():
        if key is not None and len(key.get_secret_value()) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"{variable}: must be at least {MIN_SECRET_LENGTH} characters in production"
            )


def load_gateway_settings_or_exit() -> GatewaySettings:
    """Settings from the environment, or one line naming the variable and exit status 2."""
    settings = load_settings_or_exit(GatewaySettings)
    try:
        check_secret_strength(settings)
    except SettingsError as error:
        sys.stderr.write(f"tickmesh: invalid setting: {error}\n")
        raise SystemExit(2) from None
    return settings
