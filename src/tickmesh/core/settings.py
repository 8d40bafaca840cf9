"""Typed settings from TICKMESH_* environment variables, validated at start with a one-line error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Self, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickmesh.core.sharding import parse_shard_addresses

ENV_PREFIX = "TICKMESH_"


class CommonSettings(BaseSettings):
    """Settings every service reads; each service subclasses it with its own fields."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    environment: str = Field(default="development", pattern="^(development|test|production)$")
    database_url: str = "postgresql://postgres@127.0.0.1:5432/tickmesh"
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    database_pool_min: int = Field(default=1, ge=1, le=100)
    database_pool_max: int = Field(default=10, ge=1, le=200)
    startup_retry_seconds: float = Field(default=60.0, gt=0)
    drain_seconds: float = Field(default=5.0, ge=0, le=120)
    # Containers set 0.0.0.0 so Prometheus can scrape from outside the pod.
    metrics_host: str = "127.0.0.1"
    collector_address: str = "127.0.0.1:50051"
    # The one bar service, when there is one shard; TICKMESH_BARS_ADDRESSES names several.
    bars_address: str = "127.0.0.1:50052"
    # Every bar shard's host:port in shard order (shard i at position i), comma-separated; a
    # symbol's shard is crc32(symbol) mod the count (README "Sharding"). Empty: bars_address.
    bars_addresses: str = ""
    # The one analytics service, when there is one shard; TICKMESH_ANALYTICS_ADDRESSES names
    # several: analytics shard i consumes bar shard i, so the list pairs with the bar shards'.
    analytics_address: str = "127.0.0.1:50053"
    analytics_addresses: str = ""
    # Mutual TLS between the services (tickmesh.core.tls): a directory with ca.crt, tls.crt
    # and tls.key. A service refuses to start without it unless grpc_insecure is set, which
    # is for tests and refused in production.
    tls_dir: Path | None = None
    grpc_insecure: bool = False
    # host:port of a plaintext listener serving grpc.health.v1.Health alone, for probes that
    # cannot present a client certificate (kubelet, compose); empty: none.
    grpc_health_listen: str = ""

    @field_validator("tls_dir", mode="before")
    @classmethod
    def _empty_tls_dir_is_none(cls, value: object) -> object:
        # Compose and Helm pass TICKMESH_TLS_DIR="" to mean "not set", not the current directory.
        return None if value == "" else value

    @field_validator("bars_addresses", "analytics_addresses")
    @classmethod
    def _shard_addresses_well_formed(cls, value: str) -> str:
        if value.strip():
            parse_shard_addresses(value)
        return value

    @model_validator(mode="after")
    def _shards_named_one_way(self) -> Self:
        # Two sources for one list would leave the reader guessing which one a process used.
        for service, shard in (("bars", "bar"), ("analytics", "analytics")):
            if getattr(self, f"{service}_addresses").strip() and (
                f"{service}_address" in self.model_fields_set
            ):
                variable = f"TICKMESH_{service.upper()}_ADDRESS"
                raise ValueError(
                    f"{variable} and {variable}ES are both set: "
                    f"list every {shard} shard in {variable}ES alone"
                )
        if self.analytics_addresses.strip() and len(self.analytics_shard_addresses) not in (
            1,
            len(self.bar_shard_addresses),
        ):
            raise ValueError(
                f"TICKMESH_ANALYTICS_ADDRESSES lists {len(self.analytics_shard_addresses)} "
                f"shards and TICKMESH_BARS_ADDRESSES {len(self.bar_shard_addresses)}: analytics "
                "shard i consumes bar shard i, so list one analytics service or one per bar shard"
            )
        return self

    @property
    def bar_shard_addresses(self) -> tuple[str, ...]:
        """Every bar shard's address in shard order: TICKMESH_BARS_ADDRESSES, else the one address."""
        if self.bars_addresses.strip():
            return parse_shard_addresses(self.bars_addresses)
        return (self.bars_address,)

    @property
    def analytics_shard_addresses(self) -> tuple[str, ...]:
        """Every analytics shard's address in shard order: TICKMESH_ANALYTICS_ADDRESSES, else the one."""
        if self.analytics_addresses.strip():
            return parse_shard_addresses(self.analytics_addresses)
        return (self.analytics_address,)


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


S = TypeVar("S", bound=BaseSettings)


def describe_validation_error(error: ValidationError, prefix: str = ENV_PREFIX) -> str:
    """Turn pydantic's error into one line naming the first bad variable."""
    first = error.errors()[0]
    message = str(first["msg"]).removeprefix("Value error, ")
    if not first["loc"]:
        # A check across fields (a model validator) names its variables in the message.
        return message
    field = ".".join(str(part) for part in first["loc"])
    variable = f"{prefix}{field.upper()}"
    value = first.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
    return f"{variable}: {message}{shown}"


def load_settings(settings_type: type[S]) -> S:
    """Build settings from the environment; SettingsError with one clear line on bad values."""
    try:
        return settings_type()
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None


def load_settings_or_exit(settings_type: type[S]) -> S:
    """Build settings, or print one line naming the variable and exit with status 2."""
    try:
        return load_settings(settings_type)
    except SettingsError as error:
        sys.stderr.write(f"tickmesh: invalid setting: {error}\n")
        raise SystemExit(2) from None
