"""Typed settings from TICKMESH_* environment variables, validated at start with a one-line error."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    bars_address: str = "127.0.0.1:50052"
    analytics_address: str = "127.0.0.1:50053"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


S = TypeVar("S", bound=BaseSettings)


def describe_validation_error(error: ValidationError, prefix: str = ENV_PREFIX) -> str:
    """Turn pydantic's error into one line naming the first bad variable."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "?"
    variable = f"{prefix}{field.upper()}"
    value = first.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
    return f"{variable}: {first['msg']}{shown}"


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
