"""bar_versions on a real PostgreSQL: retention keeps every bar's latest version, and candles
stored before history began answer as_of honestly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tickmesh.bars.bar_history import fetch_as_of, history_start_ns
from tickmesh.bars.bar_rows import datetime_to_ns
from tickmesh.bars.history_retention import NS_PER_DAY, HistoryRetention
from tickmesh.bars.version_log import BarVersionLog
from tickmesh.core.db.migrations import load_migrations, migrate
from tickmesh.core.errors import FailedPrecondition
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.protowire import embedded
from tickmesh.core.sharding import Shard
from tickmesh.v2 import bar_service_pb2, market_pb2

BTC = InstrumentId.of("binance_usdm", "BTCUSDT")
NOW = datetime(2026, 3, 1, tzinfo=UTC)
NOW_NS = datetime_to_ns(NOW)
OPEN = datetime(2026, 1, 1, tzinfo=UTC)
OPEN_NS = datetime_to_ns(OPEN)
FAR_NS = 2**62
# The id of the instrument $1:$2 in `instruments`, added if new (see instrument_ids).
_ADD_INSTRUMENT = (
    "INSERT INTO instruments (exchange, symbol) VALUES ($1, $2) ON CONFLICT (exchange, symbol) "
    "DO UPDATE SET symbol = EXCLUDED.symbol RETURNING id"
)


async def _pool(url: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    return pool


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a freshly migrated database of its own."""
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await _pool(fresh_database_url)
    yield pool
    await pool.close()


async def _version(
    pool: asyncpg.Pool, open_time: datetime, revision: int, close: str, days_ago: float
) -> None:
    await pool.execute(
        "INSERT INTO bar_versions (instrument_id, timeframe, time, open, high, low, close, "
        "volume, quote_volume, trade_count, vwap, revision, change_id, committed_at) "
        "VALUES ($1, '1m', $2, 1, 2, 1, $3::numeric, 1, 1, 1, 1.5, $4, "
        "nextval('candle_change_seq'), $5)",
        await pool.fetchval(_ADD_INSTRUMENT, BTC.venue, BTC.symbol),
        open_time,
        close,
        revision,
        NOW - timedelta(days=days_ago),
    )


async def _closes(pool: asyncpg.Pool, as_of_ns: int) -> dict[int, tuple[int, str]]:
    bars = await fetch_as_of(pool, BTC, "1m", 0, FAR_NS, 100, as_of_ns)
    return {bar.open_time_ns: (bar.revision, bar.close) for bar in bars}


async def test_retention_drops_superseded_old_versions_and_keeps_every_bars_latest(
    pool: asyncpg.Pool,
) -> None:
    later = OPEN + timedelta(minutes=1)
    await _version(pool, OPEN, 0, "10", days_ago=40)
    await _version(pool, OPEN, 1, "11", days_ago=39)  # superseded before the horizon too
    await _version(pool, OPEN, 2, "12", days_ago=35)  # the latest before the horizon: kept
    await _version(pool, OPEN, 3, "13", days_ago=1)  # after the horizon: kept
    await _version(pool, later, 0, "20", days_ago=40)  # never revised: kept
    retention = HistoryRetention(pool, days=30, clock_ns=lambda: NOW_NS)
    assert await retention.run_once() == 2
    rows = await pool.fetch("SELECT time, revision FROM bar_versions ORDER BY time, revision")
    assert [(r["time"], r["revision"]) for r in rows] == [
        (OPEN, 2),
        (OPEN, 3),
        (later, 0),
    ]
    horizon = NOW_NS - 30 * NS_PER_DAY
    assert await history_start_ns(pool) == horizon
    # From the horizon on, as_of is exact; before it, refused rather than answered partly.
    assert await _closes(pool, horizon) == {OPEN_NS: (2, "12"), OPEN_NS + 60 * 10**9: (0, "20")}
    assert (await _closes(pool, NOW_NS))[OPEN_NS] == (3, "13")
    with pytest.raises(FailedPrecondition, match="bar history is kept from"):
        await _closes(pool, horizon - 1)
    # A second run finds nothing more to drop.
    assert await retention.run_once() == 0


async def test_retention_of_zero_days_keeps_every_version(pool: asyncpg.Pool) -> None:
    await _version(pool, OPEN, 0, "10", days_ago=400)
    await _version(pool, OPEN, 1, "11", days_ago=399)
    assert await HistoryRetention(pool, days=0, clock_ns=lambda: NOW_NS).run_once() == 0
    assert await pool.fetchval("SELECT count(*) FROM bar_versions") == 2
    assert await history_start_ns(pool) is None


async def test_candles_from_before_history_get_one_version_and_a_history_start(
    fresh_database_url: str,
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await migrate(conn, [m for m in load_migrations() if m.version <= 7])
        await conn.execute(
            "INSERT INTO candles (time, symbol, timeframe, exchange, open, high, low, close, "
            "volume, quote_volume, trade_count, vwap, revision) VALUES "
            "($1, 'BTCUSDT', '1m', 'binance_usdm', 1, 2, 1, 1.5, 3, 4.5, 7, 1.5, 1)",
            OPEN,
        )
        await migrate(conn)
    finally:
        await conn.close()
    pool = await _pool(fresh_database_url)
    try:
        started = await history_start_ns(pool)
        assert started is not None
        bars = await fetch_as_of(pool, BTC, "1m", 0, FAR_NS, 10, started)
        # Its values as stored, with no commit time: when it became known is not recorded.
        assert [(b.revision, b.close, b.volume, b.committed_at_ns) for b in bars] == [
            (1, "1.5", "3", 0)
        ]
        with pytest.raises(FailedPrecondition):
            await fetch_as_of(pool, BTC, "1m", 0, FAR_NS, 10, started - 1)
    finally:
        await pool.close()


async def test_as_of_on_a_database_without_history_before_any_data_is_empty(
    pool: asyncpg.Pool,
) -> None:
    assert await history_start_ns(pool) is None
    assert await _closes(pool, 1) == {}


async def test_version_log_frames_bars_as_the_field_and_a_shard_reads_only_its_own(
    pool: asyncpg.Pool,
) -> None:
    symbols = [f"SYM{i}USDT" for i in range(8)]
    for index, symbol in enumerate(symbols):
        # Long enough (> 127 bytes) that the length takes two varint bytes for some.
        bar = market_pb2.Bar(symbol=symbol, open="1" * (60 + 20 * index), final=True)
        await pool.execute(
            "INSERT INTO bar_versions (instrument_id, timeframe, time, open, high, low, "
            "close, volume, quote_volume, trade_count, vwap, revision, change_id, "
            "committed_at, message) VALUES ($1, '1m', $2, 1, 1, 1, 1, 1, 1, "
            "1, 1, 0, $3, $2, $4)",
            await pool.fetchval(_ADD_INSTRUMENT, "binance_usdm", symbol),
            OPEN + timedelta(seconds=index),
            index + 1,
            bar.SerializeToString(),
        )
    everything = BarVersionLog(pool, [], [], Shard(), None)
    page = await everything.page(await everything.position_before(0), FAR_NS, 100)
    assert page.positions == list(range(1, 9))
    assert page.committed_at_ns == [OPEN_NS + i * 10**9 for i in range(8)]
    # Each message is the Bar as stored; framed as SubscribeResponse.bar it is a whole response.
    assert [_symbol(embedded(1, [m])) for m in page.messages] == symbols
    batch = bar_service_pb2.SubscribeResponse.FromString(embedded(2, page.messages))
    assert [bar.symbol for bar in batch.bars] == symbols
    owned: list[str] = []
    for index in range(2):
        shard = Shard(index, 2)
        log = BarVersionLog(pool, [], [], shard, None)
        mine: list[str] = []
        page = await log.page(0, FAR_NS, 3)  # short pages: the shard's filter pages on
        while page:
            mine.extend(_symbol(embedded(1, [m])) for m in page.messages)
            page = await log.page(page.positions[-1], FAR_NS, 3)
        await log.close()
        assert all(shard.owns(InstrumentId.of("binance_usdm", symbol)) for symbol in mine)
        owned.extend(mine)
    assert sorted(owned) == symbols


def _symbol(framed: bytes) -> str:
    return bar_service_pb2.SubscribeResponse.FromString(framed).bar.symbol
