"""The analytics store, cache and group commit against the run's real PostgreSQL and Redis."""

from __future__ import annotations

import json
import logging
import math
import struct

import asyncpg
import pytest
import redis.asyncio as redis

from tickmesh.analytics.consumer import RejectionLog
from tickmesh.analytics.engine import PendingBatch
from tickmesh.analytics.features import FEATURE_VERSION
from tickmesh.analytics.quality import CHECK_NON_FINITE
from tickmesh.analytics.results import Features
from tickmesh.analytics.rows import feature_row
from tickmesh.analytics.store import RangeQuery
from tickmesh.core.cache import features_key, indicators_key
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import market_pb2

from .service_helpers import (
    NS_PER_MINUTE,
    decimal_text,
    replace_bar,
    service_parts,
    unique_instrument,
    value,
    walk_bars,
)


async def _count(pool: asyncpg.Pool, table: str, instrument: InstrumentId) -> int:
    return int(
        await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE exchange = $1 AND symbol = $2",
            instrument.venue,
            instrument.symbol,
        )
    )


async def test_group_commit_writes_rows_resume_point_and_cache(
    db_pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    parts = service_parts(db_pool, redis_client)
    instrument = unique_instrument()
    bars = walk_bars(instrument, 30, seed=1, first_change_id=101)
    await parts.feed(bars)

    assert await parts.store.load_resume_point() == 130
    for table in ("indicators", "ml_features", "data_quality_metrics"):
        assert await _count(db_pool, table, instrument) == 30
    rows = await db_pool.fetch(
        "SELECT sma_20, sma_50 FROM indicators WHERE exchange = $1 AND symbol = $2 ORDER BY time",
        instrument.venue,
        instrument.symbol,
    )
    # Too little history is NULL, never NaN.
    assert [r["sma_20"] for r in rows[:19]] == [None] * 19
    assert all(r["sma_20"] is not None and math.isfinite(r["sma_20"]) for r in rows[19:])
    assert all(r["sma_50"] is None for r in rows)
    feature = await db_pool.fetchrow(
        "SELECT feature_version, features FROM ml_features WHERE exchange = $1 AND symbol = $2 "
        "ORDER BY time DESC",
        instrument.venue,
        instrument.symbol,
    )
    assert feature is not None
    assert feature["feature_version"] == FEATURE_VERSION
    assert json.loads(feature["features"])["return_1"] == pytest.approx(
        value(bars[-1], "close") / value(bars[-2], "close") - 1.0
    )
    cached = await redis_client.hgetall(indicators_key(instrument, "1m"))
    assert cached[b"open_time_ns"] == str(bars[-1].open_time_ns).encode()
    assert float(cached[b"sma_20"]) == rows[-1]["sma_20"]
    assert b"sma_50" not in cached
    cached_features = await redis_client.hgetall(features_key(instrument, "1m"))
    assert cached_features[b"feature_version"] == FEATURE_VERSION.encode()


async def test_group_commit_packs_each_feature_row_as_its_json_says(
    db_pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    parts = service_parts(db_pool, redis_client)
    instrument = unique_instrument()
    await parts.feed(walk_bars(instrument, 30, seed=4))

    for table in ("ml_features", "feature_versions"):
        rows = await db_pool.fetch(
            f"SELECT t.features, t.feature_values, l.names FROM {table} t "
            "JOIN feature_layouts l ON l.id = t.feature_layout "
            "WHERE t.exchange = $1 AND t.symbol = $2 ORDER BY t.time",
            instrument.venue,
            instrument.symbol,
        )
        assert len(rows) == 30
        for row in rows:
            packed = struct.unpack(f">{len(row['names'])}d", row["feature_values"])
            from_json = json.loads(row["features"])
            # The layout lists every computed name; one without a value yet is NaN packed
            # and absent from the JSON.
            assert set(from_json) <= set(row["names"])
            for name, number in zip(row["names"], packed, strict=True):
                if name in from_json:
                    assert number == from_json[name]
                else:
                    assert math.isnan(number)
    # A layout per name set (names join as their history fills), not one per row.
    counts = await db_pool.fetchrow(
        "SELECT count(DISTINCT feature_layout) AS layouts, "
        "count(DISTINCT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(features) k)) "
        "AS name_sets FROM ml_features WHERE exchange = $1 AND symbol = $2",
        instrument.venue,
        instrument.symbol,
    )
    assert counts is not None
    assert counts["layouts"] == counts["name_sets"] < 30


async def test_group_commit_same_rows_twice_is_idempotent(
    db_pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    parts = service_parts(db_pool, redis_client)
    instrument = unique_instrument()
    bars = walk_bars(instrument, 25, seed=2, first_change_id=11)
    await parts.feed(bars)
    before = await parts.store.fetch_indicators(RangeQuery(instrument, "1m", 0, 0, 5000))

    # A restart that re-reads the same bars recomputes the same rows; upserts overwrite them.
    consumer = "again-" + instrument.symbol
    await service_parts(db_pool, redis_client, consumer).feed(bars)
    await service_parts(db_pool, redis_client, consumer).feed(bars)

    assert await _count(db_pool, "indicators", instrument) == 25
    assert await _count(db_pool, "data_quality_metrics", instrument) == 25
    assert await parts.store.fetch_indicators(RangeQuery(instrument, "1m", 0, 0, 5000)) == before


async def test_resume_point_never_moves_back(
    db_pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    parts = service_parts(db_pool, redis_client)
    await parts.store.commit(PendingBatch(last_change_id=500))
    await parts.store.commit(PendingBatch(last_change_id=400))
    assert await parts.store.load_resume_point() == 500


async def test_bad_bar_not_used_for_indicators_but_flagged_and_logged_once(
    db_pool: asyncpg.Pool, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    parts = service_parts(db_pool, redis_client)
    instrument = unique_instrument()
    bars = walk_bars(instrument, 40, seed=3)
    bad = [
        replace_bar(bars[20], close="12..5"),  # not a decimal: a defect naming the field
        replace_bar(bars[21], high=decimal_text(value(bars[21], "low") - 1.0)),
        replace_bar(bars[22], volume="-5"),
    ]
    rejections = RejectionLog()
    reasons: list[str] = []
    stream = [*bars[:20], *bad, *bars[23:]]
    with caplog.at_level(logging.WARNING, logger="tickmesh.analytics.consumer"):
        for bar in stream:
            key = parts.engine.key_of(bar)
            if not parts.engine.knows(key):
                parts.engine.warm(key)
            result = parts.engine.process(bar)
            if result.rejection is not None:
                reasons.append(result.rejection)
                rejections.note(bar, result.rejection)
                assert rejections.note(bar, result.rejection) is False  # once per key
            parts.committer.batch.add(result, bar)
        await parts.committer.flush()

    logged = [r for r in caplog.records if r.getMessage() == "bar rejected for indicators"]
    assert [(r.__dict__["symbol"], r.__dict__["open_time_ns"]) for r in logged] == [
        (instrument.symbol, b.open_time_ns) for b in bad
    ]
    assert reasons[0] == "close: '12..5' is not a decimal"
    stored = await parts.store.fetch_indicators(RangeQuery(instrument, "1m", 0, 0, 5000))
    assert [row.open_time_ns for row in stored] == [
        b.open_time_ns for b in [*bars[:20], *bars[23:]]
    ]
    after_bad = await db_pool.fetchrow(
        "SELECT failed_checks FROM data_quality_metrics WHERE exchange = $1 AND symbol = $2 "
        "AND time = to_timestamp($3::double precision)",
        instrument.venue,
        instrument.symbol,
        (bars[20].open_time_ns + NS_PER_MINUTE) / 1e9,
    )
    assert after_bad is not None
    assert CHECK_NON_FINITE in after_bad["failed_checks"]
    assert await parts.store.load_resume_point() == stream[-1].change_id


def test_feature_row_is_compact_json_and_drops_non_finite_values() -> None:
    instrument = InstrumentId(market_pb2.EXCHANGE_BINANCE_SPOT, "BTCUSDT")
    clean = Features(instrument, market_pb2.TIMEFRAME_1M, 0, FEATURE_VERSION, {"a": 0.5})
    packed_half = b"\x3f\xe0" + bytes(6)  # 0.5 as big-endian IEEE 754 double
    assert feature_row(clean, 7)[1:] == (
        "binance_spot",
        "BTCUSDT",
        "1m",
        FEATURE_VERSION,
        '{"a":0.5}',
        7,
        packed_half,
    )
    values = {"a": math.nan, "b": math.inf, "c": -2.0}
    dirty = Features(instrument, market_pb2.TIMEFRAME_1M, 0, FEATURE_VERSION, values)
    row = feature_row(dirty, 8)
    assert row[5] == '{"c":-2.0}'
    # Packed, a value that is not finite is NaN, as a missing key reads in the JSON.
    assert isinstance(row[7], bytes)
    packed = struct.unpack(">3d", row[7])
    assert math.isnan(packed[0])
    assert math.isnan(packed[1])
    assert packed[2] == -2.0
