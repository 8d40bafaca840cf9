"""Builders for the dataset tests: a series of bars with indicators and features, and revisions.

Rows go straight into the tables of migrations 0001-0011: the current ones and the version
tables (bar_versions, indicator_versions, feature_versions) as the services write them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tickmesh.core.db.instrument_keys import INSTRUMENT_ID_OF
from tickmesh.core.db.pool import Connection
from tickmesh.core.indicator_names import INDICATOR_NAMES
from tickmesh.core.instruments import InstrumentId

START = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
FEATURE_NAMES = ("return_1", "log_volume", "rsi_14_centered")


async def _add_instrument(conn: Connection, instrument: InstrumentId) -> None:
    await conn.execute(
        "INSERT INTO instruments (exchange, symbol) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        instrument.venue,
        instrument.symbol,
    )


@dataclass(frozen=True)
class BarRow:
    """One stored bar of a synthetic series, with its analytics."""

    time: datetime
    values: dict[str, Decimal | None]
    trade_count: int
    vwap: float
    indicators: dict[str, float | None]
    features: dict[str, float]


def synthetic_bar(index: int, bump: int = 0) -> BarRow:
    """Bar `index` of a series: exact decimals, early bars without some indicators and features."""
    close = Decimal("61837.63") + Decimal(index) / 100 + bump
    values: dict[str, Decimal | None] = {
        "open": close - Decimal("0.5"),
        "high": close + Decimal("1.25"),
        "low": close - Decimal("2.000001"),
        "close": close,
        "volume": Decimal("0.001") * (index + 1) + bump,
        "quote_volume": Decimal("123456789.123456789012345678"),
        "taker_buy_volume": None if index % 4 == 0 else Decimal("0.000000000000000001") * index,
        "taker_buy_quote_volume": None if index % 4 == 0 else Decimal(index),
    }
    indicators = {
        name: (None if index < 3 and name.startswith("sma") else 0.1 * index + k + bump)
        for k, name in enumerate(INDICATOR_NAMES)
    }
    features = {"return_1": index / 3 + bump, "log_volume": 1e-300 * (index + 1)}
    if index >= 5:
        features["rsi_14_centered"] = -index / 7
    return BarRow(
        START + index * MINUTE, values, 10 + index, 61837.5 + index / 9, indicators, features
    )


async def insert_latest(
    conn: Connection, instrument: InstrumentId, rows: list[BarRow], revision: int = 0
) -> None:
    """Upsert `rows` of 1m bars into candles, indicators and ml_features."""
    key = (instrument.venue, instrument.symbol, "1m")
    await _add_instrument(conn, instrument)
    await conn.executemany(
        "INSERT INTO candles (instrument_id, timeframe, time, open, high, low, close, volume, "
        "quote_volume, taker_buy_volume, taker_buy_quote_volume, trade_count, vwap, revision) "
        f"VALUES ({INSTRUMENT_ID_OF},$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) "
        "ON CONFLICT (instrument_id, timeframe, time) DO UPDATE SET open = $5, high = $6, "
        "low = $7, close = $8, volume = $9, quote_volume = $10, taker_buy_volume = $11, "
        "taker_buy_quote_volume = $12, trade_count = $13, vwap = $14, revision = $15",
        [(*key, r.time, *r.values.values(), r.trade_count, r.vwap, revision) for r in rows],
    )
    names = ", ".join(INDICATOR_NAMES)
    marks = ", ".join(f"${i + 5}" for i in range(len(INDICATOR_NAMES)))
    updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in INDICATOR_NAMES)
    await conn.executemany(
        f"INSERT INTO indicators (exchange, symbol, timeframe, time, {names}) "
        f"VALUES ($1, $2, $3, $4, {marks}) "
        f"ON CONFLICT (exchange, symbol, timeframe, time) DO UPDATE SET {updates}",
        [(*key, r.time, *r.indicators.values()) for r in rows],
    )
    await conn.executemany(
        "INSERT INTO ml_features (exchange, symbol, timeframe, time, feature_version, features) "
        "VALUES ($1, $2, $3, $4, '1.1.0', $5) "
        "ON CONFLICT (exchange, symbol, timeframe, time) DO UPDATE SET features = $5",
        [(*key, r.time, json.dumps(r.features)) for r in rows],
    )


async def insert_versions(
    conn: Connection,
    instrument: InstrumentId,
    rows: list[BarRow],
    revision: int,
    committed_at: datetime,
) -> None:
    """Add `rows` to the version tables as `revision`, known at `committed_at`."""
    key = (instrument.venue, instrument.symbol, "1m")
    await _add_instrument(conn, instrument)
    await conn.executemany(
        "INSERT INTO bar_versions (instrument_id, timeframe, time, open, high, low, close, "
        "volume, quote_volume, taker_buy_volume, taker_buy_quote_volume, trade_count, vwap, "
        "revision, change_id, committed_at) VALUES "
        f"({INSTRUMENT_ID_OF},$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,nextval('candle_change_seq'),$16)",
        [
            (*key, r.time, *r.values.values(), r.trade_count, r.vwap, revision, committed_at)
            for r in rows
        ],
    )
    names = ", ".join(INDICATOR_NAMES)
    marks = ", ".join(f"${i + 7}" for i in range(len(INDICATOR_NAMES)))
    await conn.executemany(
        f"INSERT INTO indicator_versions (exchange, symbol, timeframe, time, bar_revision, "
        f"committed_at, {names}) VALUES ($1, $2, $3, $4, $5, $6, {marks})",
        [(*key, r.time, revision, committed_at, *r.indicators.values()) for r in rows],
    )
    await conn.executemany(
        "INSERT INTO feature_versions (exchange, symbol, timeframe, time, bar_revision, "
        "committed_at, feature_version, features) VALUES ($1, $2, $3, $4, $5, $6, '1.1.0', $7)",
        [(*key, r.time, revision, committed_at, json.dumps(r.features)) for r in rows],
    )
