"""Request and response bodies of the REST API: every input bounded and validated here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tickmesh.core.exchanges import PROTO_BY_LABEL
from tickmesh.core.instruments import INSTRUMENT_PATTERN, InstrumentError, InstrumentId
from tickmesh.core.instruments import SYMBOL_PATTERN as _VENUE_SYMBOL
from tickmesh.core.timeframes import BY_LABEL
from tickmesh.gateway.alerts.targets import email_address, webhook_url
from tickmesh.gateway.tokens import Role

# The registry's rule (SymbolService.AddSymbol): 1-20 of A-Z, 0-9, '.', '-', '^', '='.
SYMBOL_PATTERN = rf"^{_VENUE_SYMBOL}$"
TIMEFRAME_PATTERN = "^(" + "|".join(BY_LABEL) + ")$"
EXCHANGE_PATTERN = "^(" + "|".join(PROTO_BY_LABEL) + ")$"
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]{3,64}$"
# Nanosecond int64 times end in 2262; bounds keep every conversion inside it.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _utc_in_range(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # a time without zone is read as UTC
    if not EARLIEST <= value < LATEST:
        raise ValueError("must be between 1970-01-01 and 2200-01-01 UTC")
    return value.astimezone(UTC)


def _instrument_text(value: str) -> str:
    """Check "<venue>:<symbol>" with the message of InstrumentId.parse (it names the venues)."""
    try:
        return str(InstrumentId.parse(value))
    except InstrumentError as error:
        raise ValueError(str(error)) from None


Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, examples=["BTCUSDT"])]
INSTRUMENT_DESCRIPTION = (
    'An instrument: "<venue>:<symbol>", the venue being one of '
    + ", ".join(PROTO_BY_LABEL)
    + ' (e.g. "binance_usdm:BTCUSDT", the USD-M perpetual; "binance_spot:BTCUSDT", spot).'
)
# Checked by a validator rather than the pattern alone, so a bad value gets a message that
# says which part is wrong (an unknown venue names the accepted ones); the pattern documents it.
Instrument = Annotated[
    str,
    AfterValidator(_instrument_text),
    Field(
        max_length=64,
        description=INSTRUMENT_DESCRIPTION,
        examples=["binance_usdm:BTCUSDT"],
        json_schema_extra={"pattern": INSTRUMENT_PATTERN},
    ),
]
Venue = Annotated[
    str,
    Field(
        pattern=EXCHANGE_PATTERN,
        description="A venue label: " + ", ".join(PROTO_BY_LABEL) + ".",
        examples=["binance_usdm"],
    ),
]
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


class PasswordChange(StrictModel):
    """The caller's current password and the one to replace it."""

    current_password: Annotated[str, Field(min_length=1, max_length=128)]
    new_password: Password


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
    """A registered instrument: its text form, venue and the venue's symbol."""

    instrument: str = Field(examples=["binance_usdm:BTCUSDT"])
    exchange: str = Field(description="The venue label.", examples=["binance_usdm"])
    symbol: str = Field(examples=["BTCUSDT"])
    asset_type: str
    active: bool
    created_at: datetime
    price_increment: str | None = Field(
        default=None,
        description="The venue's tick size as an exact decimal string; null when unknown.",
        examples=["0.1"],
    )
    quantity_increment: str | None = Field(
        default=None,
        description="The venue's step size as an exact decimal string; null when unknown.",
        examples=["0.001"],
    )


class SymbolCreate(StrictModel):
    """An instrument to register (or reactivate): the venue and the venue's symbol."""

    exchange: Venue
    symbol: Symbol
    asset_type: Literal["crypto", "stock", "etf"]


# Exact values: the bar service's decimal strings, passed through untouched (never a float).
DecimalText = Annotated[
    str,
    Field(
        description="An exact decimal string, as the venue writes it (no exponent).",
        examples=["61700.8"],
    ),
]


class BarOut(BaseModel):
    """One OHLCV bar; `time` is its open time in Unix seconds (what chart libraries take).

    Prices and volumes are exact decimal strings ("61700.8", "203.143"), equal to the venue's
    own kline fields; `vwap` is a float (a statistic). Taker-buy volumes are null when unknown
    (bars of sources without an aggressor side, rows stored before they were recorded).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "time": 1723161300,
                    "open_time": "2024-08-08T23:55:00Z",
                    "open": "61700.8",
                    "high": "61744.1",
                    "low": "61690",
                    "close": "61735.2",
                    "volume": "203.143",
                    "quote_volume": "12538004.1284",
                    "taker_buy_volume": "120.016",
                    "taker_buy_quote_volume": "7407630.5521",
                    "trade_count": 2481,
                    "vwap": 61720.43,
                    "final": True,
                    "revision": 0,
                }
            ]
        }
    )

    time: int
    open_time: datetime
    open: DecimalText
    high: DecimalText
    low: DecimalText
    close: DecimalText
    volume: DecimalText
    quote_volume: DecimalText
    taker_buy_volume: DecimalText | None
    taker_buy_quote_volume: DecimalText | None
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
    """Bars of an instrument and timeframe plus their indicator series."""

    instrument: str = Field(examples=["binance_usdm:BTCUSDT"])
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
    """Feature rows of an instrument and timeframe, oldest first."""

    instrument: str = Field(examples=["binance_usdm:BTCUSDT"])
    timeframe: str
    rows: list[FeaturesOut]


class AnomalyOut(BaseModel):
    """One data-quality finding."""

    check: str
    time: datetime
    detail: str


class QualityOut(BaseModel):
    """The latest data-quality assessment of an instrument and timeframe."""

    instrument: str = Field(examples=["binance_usdm:BTCUSDT"])
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


class AlertRule(BaseModel):
    """The fields of an alert rule, shared by what a client sends and what the API shows."""

    instrument: Instrument
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
        default=None,
        validate_default=True,  # so a webhook or e-mail alert without one is refused
        description="The webhook URL (http or https, a public host) or e-mail address "
        "(websocket: none).",
    )
    cooldown: int = Field(
        default=300,
        ge=0,
        le=7 * 86400,
        description="Seconds between firings (webhook and e-mail: at least the gateway's "
        "minimum, 60 s by default).",
    )
    one_time: bool = False
    active: bool = True


class AlertIn(AlertRule):
    """An alert rule: a condition on an instrument's final bars, where to say it fired, how often."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("target")
    @classmethod
    def _target_matches_channel(cls, target: str | None, info: ValidationInfo) -> str | None:
        """A webhook needs an http(s) URL, e-mail an address, WebSocket nothing.

        A field validator (not a model one) so a refusal names `target` in the problem.
        """
        channel = info.data.get("channel")
        if channel is None:
            return target  # the channel itself was refused; that error says enough
        if channel == "webhook":
            if target is None:
                raise ValueError("a webhook alert needs an http(s) URL")
            return webhook_url(target)
        if channel == "email":
            if target is None:
                raise ValueError("an email alert needs an e-mail address")
            return email_address(target)
        if target is not None:
            raise ValueError("a websocket alert takes no target")
        return target

    @model_validator(mode="after")
    def _threshold_fits_condition(self) -> AlertIn:
        """RSI levels are 0-100; percent changes and volume multiples are positive."""
        if self.condition.startswith("rsi_") and not 0 <= self.threshold <= 100:
            raise ValueError("threshold: an RSI level is between 0 and 100")
        if self.condition in ("percent_change", "volume_spike") and self.threshold <= 0:
            raise ValueError("threshold: must be positive for this condition")
        return self


class AlertOut(AlertRule):
    """An alert as stored (rows of older versions are shown as they are, not re-judged)."""

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


class SourceHealth(BaseModel):
    """One market-data source as the collector last reported it (`system:health`)."""

    source: str = Field(
        description="The source: a venue label (binance_spot, binance_usdm, yahoo) or another "
        "collector part.",
        examples=["binance_usdm"],
    )
    state: str = Field(
        description="up, connecting, unreachable (cannot be reached from this machine), "
        "degraded or idle (nothing to collect).",
        examples=["up"],
    )
    error: str | None = Field(default=None, description="The last failure, when there is one.")
    updated_at: datetime | None = Field(
        default=None, description="When the collector wrote this state."
    )


class HealthOut(BaseModel):
    """The gateway's view of the mesh: ok only when every component is.

    `sources` says what the collector reports of each source; a source that is idle or
    unreachable (no internet: use `make demo`) does not make the mesh itself degraded.
    """

    status: Literal["ok", "degraded"]
    components: dict[str, ComponentHealth]
    sources: list[SourceHealth] = Field(default_factory=list)
