"""Firings recorded once across replicas and delivered from the table by webhook and e-mail."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from tickmesh.gateway.alerts.addresses import parse_address, refusal
from tickmesh.gateway.alerts.channels import AlertChannels, Outcome
from tickmesh.gateway.alerts.delivery import AlertDeliveries
from tickmesh.gateway.alerts.engine import AlertEngine
from tickmesh.gateway.alerts.store import AlertStore
from tickmesh.gateway.schemas import AlertEventOut, AlertIn
from tickmesh.v2 import market_pb2

from .conftest import Gateway, GatewayFactory
from .grpc_free import free_port

MINUTE_NS = 60 * 1_000_000_000
T0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp()) * 1_000_000_000


def _bar(symbol: str, minute: int, close: str) -> market_pb2.Bar:
    return market_pb2.Bar(
        symbol=symbol,
        exchange=market_pb2.EXCHANGE_BINANCE_USDM,
        timeframe=market_pb2.TIMEFRAME_1M,
        open_time_ns=T0 + minute * MINUTE_NS,
        close=close,
        volume="1",
        final=True,
    )


async def test_two_replicas_record_a_firing_once(gateway: Gateway) -> None:
    owner = await gateway.user("trader")
    alert = await gateway.services.alerts.create(
        owner.id, AlertIn(instrument="binance_usdm:BTCUSDT", condition="price_above", threshold=1.0)
    )
    replicas = [AlertStore(gateway.services.pool) for _ in range(4)]
    bar_time = datetime(2024, 3, 1, tzinfo=UTC)
    results = await asyncio.gather(
        *(store.record_firing(alert.id, bar_time, 2.0, "above") for store in replicas)
    )
    assert sum(result is not None for result in results) == 1


Hook = tuple[str, list[dict[str, Any]]]


@dataclass
class Hang:
    """The first call waits: `reached` when it arrives, until `released`."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


async def _serve_hook(statuses: list[int], hang: Hang | None = None) -> tuple[web.AppRunner, Hook]:
    """A webhook answering the given statuses in turn (then 200); records what it got."""
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        if hang is not None and len(received) == 1:
            hang.reached.set()
            await hang.released.wait()  # the sender is killed while waiting here
        status = statuses[len(received) - 1] if len(received) <= len(statuses) else 200
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, (f"http://127.0.0.1:{port}/hook", received)


@pytest.fixture
async def webhook_server() -> AsyncIterator[Hook]:
    """A webhook that fails its first call with 503, then accepts."""
    runner, hook = await _serve_hook([503])
    yield hook
    await runner.cleanup()


async def _deliveries_of(pool: asyncpg.Pool, alert_id: int) -> list[tuple[str, int]]:
    rows = await pool.fetch(
        "SELECT delivery, delivery_attempts FROM alert_events WHERE alert_id = $1 ORDER BY id",
        alert_id,
    )
    return [(row["delivery"], row["delivery_attempts"]) for row in rows]


async def _drain(deliveries: AlertDeliveries, pool: asyncpg.Pool, alert_ids: list[int]) -> None:
    """Attempt due deliveries until none of these alerts' firings is pending."""
    async with asyncio.timeout(10):
        while True:
            await deliveries.deliver_due()
            states = [d for a in alert_ids for d, _ in await _deliveries_of(pool, a)]
            if "pending" not in states:
                return
            await asyncio.sleep(0.02)


async def test_engine_fires_webhook_with_retry_and_email_once(
    make_gateway: GatewayFactory, webhook_server: Hook
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
        hooked = await services.alerts.create(
            trader.id,
            AlertIn(
                instrument=f"binance_usdm:{symbol}",
                condition="price_crossing",
                threshold=100.0,
                channel="webhook",
                target=url,
            ),
        )
        mailed = await services.alerts.create(
            trader.id,
            AlertIn(
                instrument=f"binance_usdm:{symbol}",
                condition="price_above",
                threshold=100.0,
                channel="email",
                target="ops@example.com",
                one_time=True,
            ),
        )
        async with _delivering(gateway) as deliveries:
            engine = AlertEngine(
                services.alerts,
                services.fanout,
                services.backends,
                deliveries.wake,
                services.metrics,
                services.alert_broadcast.publish,
                services.alert_cursor,
            )
            await engine.refresh()
            for minute, close in enumerate(("99", "101.00", "102")):
                await engine.on_final_bar(_bar(symbol, minute, close))
            await services.fanout.close()
            await _drain(deliveries, services.pool, [hooked.id, mailed.id])
        assert len(received) == 2  # one 503, one accepted retry of the same firing
        # The message names the instrument and quotes the close exactly as the bar has it.
        assert received[1]["text"].endswith(
            f"binance_usdm:{symbol} crossed up through 100 at 101.00"
        )
        assert len(mails) == 1  # one-shot: the 102 close did not mail again
        assert "ops@example.com" in mails[0].rcpt_tos
        assert await _deliveries_of(services.pool, hooked.id) == [("delivered", 2)]
        assert await _deliveries_of(services.pool, mailed.id) == [("delivered", 1)]
    finally:
        smtp.stop()


@contextlib.asynccontextmanager
async def _delivering(gateway: Gateway, lease: float = 60.0) -> AsyncIterator[AlertDeliveries]:
    """A delivery worker on the gateway's store; its webhook client is closed afterwards."""
    services = gateway.services
    channels = AlertChannels(services.settings, services.metrics)
    try:
        yield AlertDeliveries(
            services.pool,
            services.alerts,
            channels,
            services.settings,
            services.metrics,
            lease_seconds=lease,
        )
    finally:
        await channels.close()


async def _webhook_firing(gateway: Gateway, url: str) -> int:
    """A recorded, not yet sent webhook firing (as left by a replica killed right after)."""
    trader = await gateway.user("trader")
    alert = await gateway.services.alerts.create(
        trader.id,
        AlertIn(
            instrument="binance_usdm:BTCUSDT",
            condition="price_above",
            threshold=1.0,
            channel="webhook",
            target=url,
        ),
    )
    recorded = await gateway.services.alerts.record_firing(
        alert.id, datetime(2024, 3, 1, tzinfo=UTC), 2.0, "BTCUSDT above 1"
    )
    assert recorded is not None
    return alert.id


async def test_a_firing_left_pending_is_sent_once_by_another_replica(
    make_gateway: GatewayFactory,
) -> None:
    runner, (url, received) = await _serve_hook([])
    try:
        gateway = await make_gateway(gateway_webhook_allow_private=True)
        alert_id = await _webhook_firing(gateway, url)
        async with (
            _delivering(gateway) as one,
            _delivering(gateway) as two,
            _delivering(gateway) as three,
        ):
            await asyncio.gather(*(replica.deliver_due() for replica in (one, two, three)))
        assert len(received) == 1  # claimed by one replica under its row lock
        assert await _deliveries_of(gateway.services.pool, alert_id) == [("delivered", 1)]
    finally:
        await runner.cleanup()


async def test_a_replica_killed_mid_send_is_taken_over_after_its_lease(
    make_gateway: GatewayFactory,
) -> None:
    hang = Hang()
    runner, (url, received) = await _serve_hook([], hang)
    try:
        gateway = await make_gateway(gateway_webhook_allow_private=True)
        alert_id = await _webhook_firing(gateway, url)
        async with _delivering(gateway, lease=0.5) as dying_replica, _delivering(gateway) as other:
            dying = asyncio.create_task(dying_replica.deliver_due())
            async with asyncio.timeout(5):
                await hang.reached.wait()
            dying.cancel()  # killed while its webhook call hangs: nothing marked
            assert await other.deliver_due() == 0  # the lease still holds
            await asyncio.sleep(0.6)
            assert await other.deliver_due() == 1
        assert len(received) == 2  # at least once: the hung call, then the takeover
        assert await _deliveries_of(gateway.services.pool, alert_id) == [("delivered", 2)]
    finally:
        hang.released.set()
        await runner.cleanup()


async def test_delivery_gives_up_after_its_attempts_or_on_a_refusal(
    make_gateway: GatewayFactory,
) -> None:
    runner, (url, received) = await _serve_hook([503, 503, 503])
    refusing, (refused_url, refused) = await _serve_hook([404])
    try:
        gateway = await make_gateway(
            gateway_webhook_allow_private=True,
            gateway_webhook_attempts=2,
            gateway_webhook_backoff_seconds=0.01,
        )
        down = await _webhook_firing(gateway, url)
        gone = await _webhook_firing(gateway, refused_url)
        async with _delivering(gateway) as deliveries:
            await _drain(deliveries, gateway.services.pool, [down, gone])
        assert len(received) == 2
        assert len(refused) == 1  # a 404 is not retried
        assert await _deliveries_of(gateway.services.pool, down) == [("failed", 2)]
        assert await _deliveries_of(gateway.services.pool, gone) == [("failed", 1)]
    finally:
        await runner.cleanup()
        await refusing.cleanup()


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
    channels = AlertChannels(gateway.services.settings, gateway.services.metrics)
    try:
        outcome = await channels._webhook(url, _event())
    finally:
        await channels.close()
    assert outcome is Outcome.REFUSED


async def test_webhook_to_public_address_is_not_refused() -> None:
    address = parse_address("93.184.215.14")
    assert address is not None
    assert refusal(address) is None
