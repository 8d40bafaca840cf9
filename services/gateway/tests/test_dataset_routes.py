"""`/api/v1/datasets`: Arrow IPC and CSV read back with pyarrow, the row limit and bad input as 422."""

from __future__ import annotations

import io
import secrets
from datetime import datetime

import asyncpg
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from tickmesh.datasets import open_dataset, parse_request

from .conftest import Gateway, GatewayFactory

ROWS = 25
START = "2026-02-01T00:00:00Z"
END = "2026-02-02T00:00:00Z"


async def _stored_instrument(pool: asyncpg.Pool) -> str:
    """A spot instrument with ROWS 1m bars from START, their indicators and features."""
    symbol = f"R{secrets.token_hex(4).upper()}"
    async with pool.acquire() as conn:
        instrument_id = await conn.fetchval(
            "INSERT INTO instruments (exchange, symbol) VALUES ('binance_spot', $1) RETURNING id",
            symbol,
        )
        await conn.execute(
            "INSERT INTO candles (instrument_id, timeframe, time, open, high, low, close, "
            "volume, quote_volume, taker_buy_volume, trade_count, vwap) "
            "SELECT $1, '1m', $2::timestamptz + n * interval '1 minute', "
            "100.25 + n, 101.5 + n, 99.000001 + n, 100.75 + n, 0.001 * n, 12.345678901234567 * n, "
            "CASE WHEN n % 3 = 0 THEN NULL ELSE 0.0005 * n END, n, 100.5 + n / 7.0 "
            "FROM generate_series(0, $3 - 1) AS n",
            instrument_id,
            datetime.fromisoformat(START),
            ROWS,
        )
        await conn.execute(
            "INSERT INTO indicators (exchange, symbol, timeframe, time, rsi, sma_20) "
            "SELECT 'binance_spot', $2, timeframe, time, 50 + trade_count / 3.0, "
            "CASE WHEN trade_count < 5 THEN NULL ELSE vwap END FROM candles "
            "WHERE instrument_id = $1",
            instrument_id,
            symbol,
        )
        await conn.execute(
            "INSERT INTO ml_features (exchange, symbol, timeframe, time, feature_version, features) "
            "SELECT 'binance_spot', $2, timeframe, time, '1.1.0', "
            "jsonb_build_object('return_1', trade_count / 9.0, 'log_volume', 1e-300) "
            "FROM candles WHERE instrument_id = $1",
            instrument_id,
            symbol,
        )
    return f"binance_spot:{symbol}"


async def _direct(pool: asyncpg.Pool, instrument: str) -> pa.Table:
    request = parse_request([instrument], ["1m"], START, END)
    async with open_dataset(pool, request) as reader:
        return pa.Table.from_batches([b async for b in reader.batches()], reader.arrow_schema)


def _query(instrument: str) -> str:
    return f"/api/v1/datasets?instrument={instrument}&timeframe=1m&start={START}&end={END}"


async def test_arrow_stream_reads_back_as_the_dataset(
    gateway: Gateway, db_pool: asyncpg.Pool
) -> None:
    instrument = await _stored_instrument(db_pool)
    viewer = await gateway.user()
    reply = await gateway.client.get(_query(instrument), headers=viewer.headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert reply.headers["x-dataset-rows"] == str(ROWS)
    table = pa.ipc.open_stream(reply.content).read_all()
    assert table.num_rows == ROWS
    assert table.equals(await _direct(db_pool, instrument), check_metadata=True)
    first = table.slice(0, 1).to_pylist()[0]
    assert str(first["open"]) == "100.250000000000000000"
    assert first["taker_buy_volume"] is None
    assert first["feat_log_volume"] == 1e-300


async def test_csv_by_accept_or_format_parses_back_to_the_same_values(
    gateway: Gateway, db_pool: asyncpg.Pool
) -> None:
    instrument = await _stored_instrument(db_pool)
    viewer = await gateway.user()
    direct = await _direct(db_pool, instrument)
    for headers, suffix in (({"Accept": "text/csv"}, ""), ({}, "&format=csv")):
        reply = await gateway.client.get(
            _query(instrument) + suffix, headers=viewer.headers | headers
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("text/csv")
        parsed = pa_csv.read_csv(
            io.BytesIO(reply.content),
            convert_options=pa_csv.ConvertOptions(
                column_types=direct.schema, strings_can_be_null=True
            ),
        )
        assert parsed.column_names == direct.column_names
        assert parsed.to_pylist() == direct.to_pylist()


async def test_range_over_the_row_limit_is_422_naming_the_limit(
    make_gateway: GatewayFactory, db_pool: asyncpg.Pool
) -> None:
    instrument = await _stored_instrument(db_pool)
    gateway = await make_gateway(gateway_dataset_max_rows=ROWS - 1)
    viewer = await gateway.user()
    reply = await gateway.client.get(_query(instrument), headers=viewer.headers)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    detail = reply.json()["detail"]
    assert f"limit of {ROWS - 1} rows" in detail
    assert "TICKMESH_GATEWAY_DATASET_MAX_ROWS" in detail
    narrower = _query(instrument).replace(END, "2026-02-01T00:10:00Z")
    assert (await gateway.client.get(narrower, headers=viewer.headers)).status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"instrument=BTCUSDT&timeframe=1m&start={START}&end={END}", "instrument"),
        (f"instrument=nasdaq:AAPL&timeframe=1m&start={START}&end={END}", "instrument"),
        (f"instrument=binance_spot:BTCUSDT&timeframe=2m&start={START}&end={END}", "timeframe"),
        (f"instrument=binance_spot:BTCUSDT&timeframe=1m&start={END}&end={START}", "before"),
        (f"instrument=binance_spot:BTCUSDT&timeframe=1m&end={END}", "start"),
        (f"timeframe=1m&start={START}&end={END}", "instrument"),
        (
            f"instrument=binance_spot:BTCUSDT&timeframe=1m&start={START}&end={END}&format=xml",
            "format",
        ),
    ],
)
async def test_bad_query_is_422_problem(gateway: Gateway, query: str, field: str) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.get(f"/api/v1/datasets?{query}", headers=viewer.headers)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in reply.json()["detail"]


async def test_without_token_is_401(gateway: Gateway) -> None:
    reply = await gateway.client.get(_query("binance_spot:BTCUSDT"))
    assert reply.status_code == 401


def test_openapi_describes_both_media_types(gateway: Gateway) -> None:
    operation = gateway.app.openapi()["paths"]["/api/v1/datasets"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {
        "application/vnd.apache.arrow.stream",
        "text/csv",
    }
    assert "422" in operation["responses"]
