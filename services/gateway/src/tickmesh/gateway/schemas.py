"""Request and response bodies of the REST API: every input bounded and validated here."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from tickmesh.core.exchanges import PROTO_BY_LABEL
from tickmesh.core.timeframes import BY_LABEL
from tickmesh.gateway.tokens import Role

# The registry's rule (SymbolService.AddSymbol): 1-20 of A-Z, 0-9, '.', '-', '^', '='.
SYMBOL_PATTERN = r"^[A-Z0-9.\-^=]{1,20}$"
TIMEFRAME_PATTERN = "^(" + "|".join(BY_LABEL) + ")$"
EXCHANGE_PATTERN = "^(" + "|".join(PROTO_BY_LABEL) + ")$"
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,64}$"
EMAIL_PATTERN = r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,63}$"
# Nanosecond int64 times end in 2262; bounds keep every conversion inside it.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _utc_in_range(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # a time without zone is read as UTC
    if not EARLIEST <= value < LATEST:
        raise ValueError("must be between 1970-01-01 and 2200-01-01 UTC")
    return value.astimezone(UTC)


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and " " not in value


Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])]
TimeframeLabel = Annotated[str, Field(pattern=TIMEFRAME_PATTERN, examples=["1m"])]
UtcTime = Annotated[datetime, AfterValidator(_utc_in_range)]
Password = Annotated[str, Field(min_length=8, max_length=128)]
Username = Annotated[str, Field(pattern=USERNAME_PATTERN, examples=["alice"])]


class StrictModel(BaseModel):
    """A request body: unknown fields are refused rather than silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Credentials(StrictModel):
    """A username and password (register and login)."""

    username: Username
    password: Password


class RefreshRequest(StrictModel):
    """A refresh token to rotate or revoke."""

    refresh_token: Annotated[str, Field(min_length=16, max_length=256)]


class TokenPair(BaseModel):
    """An access token (JWT, Bearer) and the refresh token that renews it."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str
    refresh_expires_at: datetime


class UserOut(BaseModel):
    """A user as the API shows it."""

    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime


class UserUpdate(StrictModel):
    """An admin's change to a user."""

    role: Role | None = None
    disabled: bool | None = None


class SymbolOut(BaseModel):
    """A registered symbol."""

    symbol: str
    exchange: str
    asset_type: str
    active: bool
    created_at: datetime


class SymbolCreate(StrictModel):
    """A symbol to register (or reactivate)."""

    symbol: Symbol
    exchange: Annotated[str, Field(pattern=EXCHANGE_PATTERN, examples=["binance_spot"])]
    asset_type: Literal["crypto", "stock", "etf"]


class BarOut(BaseModel):
    """One OHLCV bar; `time` is its open time in Unix seconds (what chart libraries take)."""

    time: int
    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trade_count: int
    vwap: float
    final: bool
    revision: int


class IndicatorsOut(BaseModel):
    """The indicators of one bar; a value is null while there is too little history."""

    time: int
    rsi: float | None = None
    macd: float | None = None
    macd_signal: float | None = None
    macd_histogram: float | None = None
    bb_upper: float | None = None
    bb_middle: float | None = None
    bb_lower: float | None = None
    sma_20: float | None = None
    sma_50: float | None = None
    sma_100: float | None = None
    sma_200: float | None = None
    ema_12: float | None = None
    ema_26: float | None = None
    ema_50: float | None = None
    vwap: float | None = None
    stoch_k: float | None = None
    stoch_d: float | None = None
    atr: float | None = None
    adx: float | None = None
    volume_sma: float | None = None


class ChartOut(BaseModel):
    """Bars of a symbol and timeframe plus their indicator series."""

    symbol: str
    timeframe: str
    bars: list[BarOut]
    indicators: list[IndicatorsOut] | None = Field(
        description="Null when not asked for or when the analytics service is unavailable."
    )
    warnings: list[str] = Field(default_factory=list)


class FeaturesOut(BaseModel):
    """The ML features of one bar."""

    time: int
    feature_version: str
    values: dict[str, float]


class FeatureSeriesOut(BaseModel):
    """Feature rows of a symbol and timeframe, oldest first."""

    symbol: str
    timeframe: str
    rows: list[FeaturesOut]


class AnomalyOut(BaseModel):
    """One data-quality finding."""

    check: str
    time: datetime
    detail: str


class QualityOut(BaseModel):
    """The latest data-quality assessment of a symbol and timeframe."""

    symbol: str
    timeframe: str
    time: datetime
    score: float
    checks_passed: list[str]
    checks_failed: list[str]
    anomalies: list[AnomalyOut]


AlertCondition = Literal[
    "price_above",
    "price_below",
    "price_crossing",
    "percent_change",
    "rsi_above",
    "rsi_below",
    "macd_cross",
    "volume_spike",
]
AlertChannel = Literal["websocket", "webhook", "email"]


class AlertIn(StrictModel):
    """An alert rule: a condition on a symbol's final bars, where to say it fired, how often."""

    symbol: Symbol
    timeframe: TimeframeLabel = "1m"
    condition: AlertCondition
    threshold: Annotated[
        float,
        Field(
            allow_inf_nan=False,
            ge=-1e12,
            le=1e12,
            description=(
                "price (price_*), percent (percent_change, absolute move), RSI level "
                "(rsi_*), multiple of the 20-bar average volume (volume_spike); "
                "ignored by macd_cross"
            ),
        ),
    ]
    direction: Literal["up", "down", "any"] = Field(
        default="any", description="price_crossing and macd_cross: which way counts."
    )
    lookback_bars: int = Field(
        default=1, ge=1, le=500, description="percent_change: bars to compare against."
    )
    channel: AlertChannel = "websocket"
    target: Annotated[str, Field(max_length=2048)] | None = Field(
        default=None, description="The webhook URL or e-mail address (websocket: none)."
    )
    cooldown: int = Field(default=300, ge=0, le=7 * 86400, description="Seconds between firings.")
    one_time: bool = False
    active: bool = True

    @model_validator(mode="after")
    def _target_matches_channel(self) -> AlertIn:
        """A webhook needs an http(s) URL, e-mail an address, WebSocket nothing."""
        if self.channel == "webhook":
            if self.target is None or not _is_http_url(self.target):
                raise ValueError("target: a webhook alert needs an http(s) URL")
        elif self.channel == "email":
            if self.target is None or re.match(EMAIL_PATTERN, self.target) is None:
                raise ValueError("target: an email alert needs an e-mail address")
        elif self.target is not None:
            raise ValueError("target: a websocket alert takes no target")
        if self.condition.startswith("rsi_") and not 0 <= self.threshold <= 100:
            raise ValueError("threshold: an RSI level is between 0 and 100")
        if self.condition in ("percent_change", "volume_spike") and self.threshold <= 0:
            raise ValueError("threshold: must be positive for this condition")
        return self


class AlertOut(AlertIn):
    """An alert as stored."""

    model_config = ConfigDict(extra="ignore")

    id: int
    user_id: int
    last_triggered: datetime | None
    created_at: datetime


class AlertEventOut(BaseModel):
    """One firing of an alert."""

    id: int
    alert_id: int
    bar_time: datetime
    fired_at: datetime
    value: float
    message: str


class ComponentHealth(BaseModel):
    """One dependency's state and how long asking it took."""

    status: str
    latency_ms: float
    detail: str | None = None


class HealthOut(BaseModel):
    """The gateway's view of the mesh: ok only when every component is."""

    status: Literal["ok", "degraded"]
    components: dict[str, ComponentHealth]
