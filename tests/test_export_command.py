"""`tickmesh export` as a process, its Parquet read back and compared with GetBars and GetFeatures.

The bar and analytics services run as real processes on the same database; the analytics
consumer starts past every stored change, so it serves the stored rows without rewriting them.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
import pyarrow.parquet as pq
import pytest

from tickmesh.core.db.migrations import migrate
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import (
    analytics_service_pb2,
    analytics_service_pb2_grpc,
    bar_service_pb2,
    bar_service_pb2_grpc,
    market_pb2,
)

from .dataset_helpers import (
    MINUTE,
    START,
    insert_latest,
    insert_versions,
    synthetic_bar,
)
from .mesh_processes import ServiceProcess

BARS = 40
REVISED = 11
CONSUMER = "export-test"


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


async def _tickmesh(*args: str, database_url: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickmesh.mesh.cli",
        *args,
        env={"TICKMESH_DATABASE_URL": database_url, "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.fixture(scope="module")
async def stored(module_database_url: str) -> tuple[str, InstrumentId]:
    """A migrated database with one instrument's 1m series, bar REVISED revised once."""
    instrument = InstrumentId(market_pb2.EXCHANGE_BINANCE_SPOT, f"X{secrets.token_hex(3).upper()}")
    first = [synthetic_bar(i) for i in range(BARS)]
    conn = await asyncpg.connect(module_database_url)
    try:
        await migrate(conn)
        await insert_latest(conn, instrument, first)
        await insert_versions(conn, instrument, first, 0, START + BARS * MINUTE)
        revised = [synthetic_bar(REVISED, bump=3)]
        await insert_latest(conn, instrument, revised, revision=1)
        await insert_versions(conn, instrument, revised, 1, START + (BARS + 1) * MINUTE)
        await conn.execute(
            "INSERT INTO analytics_consumer_state (consumer, last_change_id) "
            "SELECT $1, coalesce(max(change_id), 0) + 1000000 FROM candles",
            CONSUMER,
        )
    finally:
        await conn.close()
    return module_database_url, instrument


@pytest.fixture(scope="module")
async def services(
    stored: tuple[str, InstrumentId], module_redis_url: str
) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess]]:
    """The bar and analytics services on the stored database."""
    database_url, _ = stored
    common = {"TICKMESH_DATABASE_URL": database_url, "TICKMESH_REDIS_URL": module_redis_url}
    bars = ServiceProcess("bars", common)
    await bars.start()
    analytics = ServiceProcess(
        "analytics",
        common
        | {"TICKMESH_BARS_ADDRESS": bars.address, "TICKMESH_ANALYTICS_CONSUMER_NAME": CONSUMER},
    )
    try:
        await analytics.start()
        yield bars, analytics
    finally:
        await analytics.kill()
        await bars.kill()


async def test_export_equals_get_bars_and_get_features(
    stored: tuple[str, InstrumentId],
    services: tuple[ServiceProcess, ServiceProcess],
    tmp_path: Path,
) -> None:
    database_url, instrument = stored
    bars, analytics = services
    out = tmp_path / "latest.parquet"
    end = START + BARS * MINUTE
    code, stderr = await _tickmesh(
        "export",
        "--instrument",
        str(instrument),
        "--timeframe",
        "1m",
        "--from",
        START.isoformat(),
        "--to",
        end.isoformat(),
        "--out",
        str(out),
        database_url=database_url,
    )
    assert code == 0, stderr
    assert f"{BARS} rows (latest)" in stderr
    rows = pq.read_table(out).to_pylist()
    range_ns = {"start_time_ns": _ns(START), "end_time_ns": _ns(end), "limit": 5000}
    async with bars.channel() as channel:
        served = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
            bar_service_pb2.GetBarsRequest(
                instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M, **range_ns
            )
        )
    async with analytics.channel() as channel:
        features = await analytics_service_pb2_grpc.AnalyticsServiceStub(channel).GetFeatures(
            analytics_service_pb2.GetFeaturesRequest(
                instrument=instrument.to_proto(), timeframe=market_pb2.TIMEFRAME_1M, **range_ns
            )
        )
    assert len(served.bars) == len(features.rows) == len(rows) == BARS
    for row, bar, feature in zip(rows, served.bars, features.rows, strict=True):
        assert _ns(row["time"]) == bar.open_time_ns == feature.open_time_ns
        for name in ("open", "high", "low", "close", "volume", "quote_volume"):
            assert row[name] == Decimal(getattr(bar, name)), name
        for name in ("taker_buy_volume", "taker_buy_quote_volume"):
            expected = Decimal(getattr(bar, name)) if bar.HasField(name) else None
            assert row[name] == expected, name
        assert (row["trade_count"], row["vwap"], row["revision"]) == (
            bar.trade_count,
            bar.vwap,
            bar.revision,
        )
        assert row["feature_version"] == feature.feature_version
        exported = {k[5:]: v for k, v in row.items() if k.startswith("feat_") and v is not None}
        assert exported == dict(feature.values)


async def test_as_of_export_keeps_revision_zero_where_latest_has_the_revision(
    stored: tuple[str, InstrumentId], tmp_path: Path
) -> None:
    database_url, instrument = stored
    paths = {mode: tmp_path / f"{mode}.parquet" for mode in ("latest", "as_of")}
    for mode, path in paths.items():
        code, stderr = await _tickmesh(
            "export",
            "--instrument",
            str(instrument),
            "--timeframe",
            "1m",
            "--from",
            "2026-01-01",
            "--to",
            "2026-01-02",
            "--out",
            str(path),
            "--no-progress",
            *(["--as-of", "--compression", "zstd"] if mode == "as_of" else []),
            database_url=database_url,
        )
        assert code == 0, stderr
    codecs = {
        m: pq.ParquetFile(p).metadata.row_group(0).column(0).compression for m, p in paths.items()
    }
    assert codecs == {"latest": "SNAPPY", "as_of": "ZSTD"}
    latest = pq.read_table(paths["latest"]).to_pylist()
    first = (
        pq.read_table(paths["as_of"])
        .drop_columns(["committed_at", "indicators_committed_at", "features_committed_at"])
        .to_pylist()
    )
    assert [i for i, (a, b) in enumerate(zip(first, latest, strict=True)) if a != b] == [REVISED]
    assert (first[REVISED]["revision"], latest[REVISED]["revision"]) == (0, 1)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--instrument", "BTCUSDT", "--from", "2026-01-01", "--to", "2026-01-02"],
            "<venue>:<symbol>",
        ),
        (
            ["--instrument", "binance_spot:BTCUSDT", "--from", "2026-01-02", "--to", "2026-01-01"],
            "must be before",
        ),
        (
            ["--instrument", "binance_spot:BTCUSDT", "--from", "soon", "--to", "2026-01-01"],
            "ISO 8601",
        ),
        (
            [
                *("--instrument", "binance_spot:BTCUSDT", "--compression", "gzip"),
                *("--from", "2026-01-01", "--to", "2026-01-02"),
            ],
            "is not one of snappy, zstd, lz4, none",
        ),
    ],
)
async def test_bad_input_exits_2_naming_the_problem(
    arguments: list[str], message: str, tmp_path: Path
) -> None:
    code, stderr = await _tickmesh(
        "export",
        "--timeframe",
        "1m",
        "--out",
        str(tmp_path / "x.parquet"),
        *arguments,
        database_url="postgresql://nobody@127.0.0.1:1/none",
    )
    assert code == 2
    assert message in stderr
    assert not (tmp_path / "x.parquet").exists()
