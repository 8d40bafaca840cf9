"""Firings recorded once across replicas and delivered by webhook (with retries) and e-mail."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from tickmesh.gateway.alert_channels import AlertChannels, internal_target
from tickmesh.gateway.alert_engine import AlertEngine
from tickmesh.gateway.alert_store import AlertStore
from tickmesh.gateway.schemas import AlertEventOut, AlertIn
from tickmesh.v1 import market_pb2

from .conftest import Gateway, GatewayFactory
from .grpc_free import free_port

MINUTE_NS = 60 * 1_000_000_000
T0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp()) * 1_000_000_000


def _bar(symbol: str, minute: int, close: float) -> market_pb2.Bar:
    return market_pb2.Bar(
        symbol=symbol,
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=T0 + minute * MINUTE_NS,
        close=close,
        volume=1.0,
        final=True,
    )


async def test_two_replicas_record_a_firing_once(gateway: Gateway) -> None:
    owner = await gateway.user("trader")
    alert = await gateway.services.alerts.create(
        owner.id, AlertIn(symbol="BTCUSDT", condition="price_above", threshold=1.0)
    )
    replicas = [AlertStore(gateway.services.pool) for _ in range(4)]
    bar_time = datetime(2024, 3, 1, tzinfo=UTC)
    results = await asyncio.gather(
        *(store.record_firing(alert.id, bar_time, 2.0, "above") for store in replicas)
    )
    assert sum(result is not None for result in results) == 1


@pytest.fixture
async def webhook_server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook that fails its first call with 503, then accepts; records what it got."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=503 if len(received) == 1 else 200)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/hook", received
    await runner.cleanup()


async def test_engine_fires_webhook_with_retry_and_email_once(
    make_gateway: GatewayFactory, webhook_server: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook_server
    mails: list[Any] = []

    class Recorder(Sink):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope)
            return "250 OK"

    smtp = Controller(Recorder(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        gateway = await make_gateway(
            gateway_webhook_backoff_seconds=0.01,
            gateway_smtp_port=smtp.port,
            gateway_webhook_allow_private=True,  # the test's webhook listens on loopback
        )
        services = gateway.services
        trader = await gateway.user("trader")
        symbol = "ALRT" + secrets.token_hex(4).upper()  # no judged mark left in Redis
        await services.alerts.create(
            trader.id,
            AlertIn(
                symbol=symbol,
                condition="price_crossing",
                threshold=100.0,
                channel="webhook",
                target=url,
            ),
        )
        await services.alerts.create(
            trader.id,
            AlertIn(
                symbol=symbol,
                condition="price_above",
                threshold=100.0,
                channel="email",
                target="ops@example.com",
                one_time=True,
            ),
        )
        async with httpx.AsyncClient() as http:
            engine = AlertEngine(
                services.alerts,
                services.fanout,
                services.backends,
                AlertChannels(services.settings, services.metrics, http),
                services.metrics,
                services.alert_broadcast.publish,
                services.alert_cursor,
            )
            await engine.refresh()
            for minute, close in enumerate((99.0, 101.0, 102.0)):
                await engine.on_final_bar(_bar(symbol, minute, close))
            await services.fanout.close()
        assert len(received) == 2  # one 503, one accepted retry of the same firing
        assert received[1]["text"].endswith(f"{symbol} crossed up through 100 at 101")
        assert len(mails) == 1  # one-shot: the 102 close did not mail again
        assert "ops@example.com" in mails[0].rcpt_tos
    finally:
        smtp.stop()


def _event() -> AlertEventOut:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return AlertEventOut(
        id=1, alert_id=1, bar_time=moment, fired_at=moment, value=1.0, message="test"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
)
async def test_webhook_to_internal_address_refused_by_default(
    make_gateway: GatewayFactory, url: str
) -> None:
    gateway = await make_gateway()
    async with httpx.AsyncClient() as http:
        channels = AlertChannels(gateway.services.settings, gateway.services.metrics, http)
        assert await internal_target(url) is not None
        refused = await channels._webhook(url, _event())
    assert refused is False


async def test_webhook_to_public_address_is_not_refused() -> None:
    assert await internal_target("https://93.184.215.14/hook") is None
