"""Configuration of the exchange simulator: sources, pacing, Binance limits, faults."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class Market(enum.StrEnum):
    """Which Binance venue a symbol trades on; it picks the wire format and the URL prefix."""

    SPOT = "spot"
    USDM = "usdm"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A recorded file to replay: a "<ts> <json>" capture, or Binance's trade CSV (or .zip).

    market=None detects the venue from the file; symbol=None takes a CSV's symbol from
    its file name (Binance Vision names files ``BTCUSDT-trades-2024-08-08.csv``).
    """

    path: Path
    market: Market | None = None
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class WholeMarket:
    """A synthetic whole market: many instruments over spot and USD-M, skewed, with bursts.

    Instrument i (0-based) is ``W<i>USDT``, on spot when i is even and on USD-M when odd;
    its share of the trades is proportional to 1 / (i + 1) ** skew (Zipf), so a few are
    very busy and most are thin. The total rate is `rate` trades/s, except for `burst_s`
    seconds at the end of every `burst_every_s` seconds, when it is `burst_rate`.
    """

    instruments: int
    rate: float = 20_000.0
    burst_rate: float = 100_000.0
    burst_s: float = 10.0
    burst_every_s: float = 300.0
    skew: float = 1.1
    # Stop after this many trades (None: never), as random_walk_trades does for the walk.
    trades: int | None = None


@dataclass(slots=True)
class FaultConfig:
    """Faults to inject; every random choice comes from ``seed`` so runs repeat exactly."""

    seed: int = 0
    # Abort every WebSocket connection this many times, at trade counts drawn from
    # [1, drop_within_trades]; the trades in flight stay queryable over REST.
    drop_connections: int = 0
    drop_within_trades: int = 1000
    # Probabilities per trade frame.
    malformed_rate: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    # Keepalive faults: stop answering the client's pings, or stop pinging the client.
    answer_pings: bool = True
    send_pings: bool = True
    # Binance closes every connection after 24 hours.
    max_connection_lifetime_s: float = 24 * 3600.0
    # Answer the next N REST requests with 429 and Retry-After: retry_after_s.
    rest_429: int = 0
    retry_after_s: int = 1


@dataclass(slots=True)
class SimulatorConfig:
    """Everything the simulator needs; the defaults mirror Binance's production limits."""

    host: str = "127.0.0.1"
    port: int = 0
    sources: list[SourceSpec] = field(default_factory=list)
    # Replay speed: 1.0 real time, N times faster, None as fast as clients read.
    speed: float | None = 1.0
    # Seeded random walk, used when no sources are given (or random_walk=True).
    random_walk: bool | None = None
    symbols: list[str] = field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    random_walk_market: Market = Market.SPOT
    # Random-walk on each of these venues instead (the demo walks spot and USD-M side by side).
    random_walk_markets: tuple[Market, ...] = ()
    trades_per_second: float = 5.0
    # A synthetic whole market instead of the random walk of `symbols` (when set).
    whole_market: WholeMarket | None = None
    # Trades kept per instrument for REST (None: all); a long whole-market run caps it.
    ledger_trades_per_symbol: int | None = None
    random_walk_trades: int | None = None
    start_time_ms: int | None = None
    seed: int = 0
    # Start with the replay paused (tests subscribe first, then resume).
    paused: bool = False
    # WebSocket limits and keepalive (Binance spot: ping every 20 s, 1 min to answer).
    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_streams_per_connection: int = 1024
    max_incoming_per_second: int = 5
    # A client that lets this many frames pile up unread is disconnected.
    max_send_backlog: int = 200_000
    # REST request weights per window (Binance: spot 6000/min, USD-M 2400/min).
    spot_weight_limit: int = 6000
    futures_weight_limit: int = 2400
    weight_window_s: float = 60.0
    # Requests after a 429 before the client is banned with 418, and the ban length.
    requests_before_ban: int = 5
    ban_s: float = 120.0
    faults: FaultConfig = field(default_factory=FaultConfig)

    def walk_markets(self) -> tuple[Market, ...]:
        """The venues the random walk trades on."""
        return self.random_walk_markets or (self.random_walk_market,)

    def uses_random_walk(self) -> bool:
        """Whether the random walk runs: explicitly, or because no file nor whole market was given."""
        if self.random_walk is not None:
            return self.random_walk
        return not self.sources and self.whole_market is None
