"""Alerts watch an instrument: the same symbol on another venue neither fires them nor moves
their judged-through mark."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import redis.asyncio as redis

from tickmesh.core.cache import alerts_judged_key
from tickmesh.core.instruments import InstrumentId
from tickmesh.gateway.alerts.cursor import AlertCursor
from tickmesh.gateway.alerts.engine import AlertEngine
from tickmesh.gateway.schemas import AlertEventOut, AlertIn
from tickmesh.v2 import market_pb2

from .conftest import Gateway

MINUTE_NS = 60 * 1_000_000_000
T0 = int(datetime(2024, 8, 8, tzinfo=UTC).timestamp()) * 1_000_000_000


def _bar(exchange: int, symbol: str, minute: int, close: str) -> market_pb2.Bar:
    return market_pb2.Bar(
        exchange=exchange,  # type: ignore[arg-type]
        symbol=symbol,
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=T0 + minute * MINUTE_NS,
        open=close,
        high=close,
        low=close,
        close=close,
        volume="1",
        final=True,
    )


async def test_cursor_keeps_one_mark_per_instrument(redis_client: redis.Redis) -> None:
    symbol = "CUR" + secrets.token_hex(3).upper()
    spot = InstrumentId.of("binance_spot", symbol)
    usdm = InstrumentId.of("binance_usdm", symbol)
    cursor = AlertCursor(redis_client)
    await cursor.start(spot, "1m", 5 * MINUTE_NS)
    await cursor.advance(usdm, "1m", 9 * MINUTE_NS)
    await cursor.advance(usdm, "1m", 7 * MINUTE_NS)  # never moves back
    assert await cursor.judged_through(spot, "1m") == 5 * MINUTE_NS
    assert await cursor.judged_through(usdm, "1m") == 9 * MINUTE_NS
    assert await cursor.judged_through(usdm, "5m") is None
    member = f"binance_usdm:{symbol}:1m"
    assert await redis_client.zscore(alerts_judged_key(), member) == 9 * MINUTE_NS // 1_000_000
    await redis_client.zrem(alerts_judged_key(), member, f"binance_spot:{symbol}:1m")


async def test_engine_judges_the_alerts_instrument_only(gateway: Gateway) -> None:
    services = gateway.services
    trader = await gateway.user("trader")
    symbol = "ENG" + secrets.token_hex(3).upper()  # no judged mark left in Redis
    usdm = InstrumentId.of("binance_usdm", symbol)
    alert = await services.alerts.create(
        trader.id,
        AlertIn(instrument=f"binance_usdm:{symbol}", condition="price_above", threshold=100.0),
    )
    fired: list[tuple[int, AlertEventOut]] = []

    async def sink(user_id: int, event: AlertEventOut) -> None:
        fired.append((user_id, event))

    engine = AlertEngine(
        services.alerts,
        services.fanout,
        services.backends,  # the bar service is down: judging goes on without history
        lambda: None,
        services.metrics,
        sink,
        services.alert_cursor,
    )
    try:
        await engine.refresh()
        # A spot close above the threshold: another instrument, no firing.
        await engine.on_final_bar(_bar(market_pb2.EXCHANGE_BINANCE_SPOT, symbol, 0, "150.5"))
        assert fired == []
        assert await services.alert_cursor.judged_through(usdm, "1m") is None
        await engine.on_final_bar(_bar(market_pb2.EXCHANGE_BINANCE_USDM, symbol, 1, "100.25"))
    finally:
        await services.fanout.close()
    assert [(user, event.alert_id) for user, event in fired] == [(trader.id, alert.id)]
    assert fired[0][1].message == f"binance_usdm:{symbol} closed at 100.25, above 100"
    assert await services.alert_cursor.judged_through(usdm, "1m") == T0 + MINUTE_NS
