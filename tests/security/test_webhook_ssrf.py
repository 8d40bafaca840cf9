"""Issue 13, item 5: a webhook cannot reach inside, nor tie up the gateway that sends it.

A real gateway process delivers firings (rows written straight into PostgreSQL) to real
local HTTP servers: a slow one, one with an endless body, a proxy it must not use. The
address pinning is shown in-process with a resolver function injected in place of DNS.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from tickmesh.core.metrics import CoreMetrics
from tickmesh.gateway.alerts.channels import AlertChannels, Outcome
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.schemas import AlertEventOut, AlertOut
from tickmesh.gateway.settings import GatewaySettings

from .alert_gateway import alert_gateway, wait_until
from .alert_targets import serve

# Internal addresses in the forms that slip past a plain "is it global?" test.
INTERNAL_LITERALS = [
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254 (cloud metadata)
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[64:ff9b:1::a00:1]",  # local-use NAT64 of 10.0.0.1
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[2002:a9fe:a9fe::1]",  # 6to4 of 169.254.169.254
    "[::127.0.0.1]",  # IPv4-compatible 127.0.0.1
    "[::a9fe:a9fe]",  # IPv4-compatible 169.254.169.254
    "[::ffff:127.0.0.1]",  # IPv4-mapped 127.0.0.1
    "[fec0::1]",  # site-local
    "224.0.0.1",  # multicast
]


async def test_webhook_to_internal_address_forms_is_refused_at_creation(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with alert_gateway(fresh_database_url, fresh_redis_url, tmp_path / "gw.log") as gw:
        _, trader = await gw.trader()
        for literal in INTERNAL_LITERALS:
            reply = await gw.client.post(
                "/api/v1/alerts",
                json={
                    "instrument": "binance_spot:BTCUSDT",
                    "condition": "price_above",
                    "threshold": 1.0,
                    "channel": "webhook",
                    "target": f"http://{literal}:8080/hook",
                    "cooldown": 3600,
                },
                headers=trader,
            )
            assert reply.status_code == 422, (literal, reply.text)
            assert [e["field"] for e in reply.json()["errors"]] == ["body.target"]


async def test_stored_webhooks_to_internal_address_forms_are_never_called(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with (
        serve("ok") as local,
        alert_gateway(fresh_database_url, fresh_redis_url, tmp_path / "gw.log") as gw,
    ):
        user, _ = await gw.trader()
        firings = []
        for literal in [*INTERNAL_LITERALS, "[::ffff:127.0.0.1]", "127.0.0.1"]:
            alert = await gw.insert_alert(user, "webhook", f"http://{literal}:{local.port}/hook")
            firings.append(await gw.insert_pending_firing(alert))

        async def all_refused() -> bool:
            states = [await gw.delivery(event) for event in firings]
            return all(state == "failed" for state, _ in states)

        await wait_until("every internal webhook refused", all_refused, within_seconds=15)
        # Refused outright (no later attempt can pass the check), not retried as if down.
        assert [(await gw.delivery(event))[1] for event in firings] == [1] * len(firings)
        assert local.requests == []


async def test_webhook_ignores_proxies_from_the_environment(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with serve("ok") as hook, serve("proxy") as proxy:
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        async with alert_gateway(
            fresh_database_url,
            fresh_redis_url,
            tmp_path / "gw.log",
            TICKMESH_GATEWAY_WEBHOOK_ALLOW_PRIVATE="true",
            HTTP_PROXY=proxy_url,
            HTTPS_PROXY=proxy_url,
            ALL_PROXY=proxy_url,
            NO_PROXY="",
        ) as gw:
            user, _ = await gw.trader()
            firing = await gw.insert_pending_firing(
                await gw.insert_alert(user, "webhook", hook.url())
            )

            async def delivered() -> bool:
                return (await gw.delivery(firing))[0] == "delivered"

            await wait_until("the webhook delivered", delivered, within_seconds=10)
        assert proxy.requests == []
        assert len(hook.requests) == 1


async def test_slow_target_does_not_hold_up_other_deliveries(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with (
        serve("drip") as slow,
        serve("ok") as fast,
        alert_gateway(
            fresh_database_url,
            fresh_redis_url,
            tmp_path / "gw.log",
            TICKMESH_GATEWAY_WEBHOOK_ALLOW_PRIVATE="true",
            TICKMESH_GATEWAY_WEBHOOK_ATTEMPTS="1",
            TICKMESH_GATEWAY_WEBHOOK_TIMEOUT_SECONDS="3",
        ) as gw,
    ):
        user, _ = await gw.trader()
        slow_firing = await gw.insert_pending_firing(
            await gw.insert_alert(user, "webhook", slow.url())
        )
        await wait_until("the slow target called", lambda: _called(slow.requests))
        fast_firing = await gw.insert_pending_firing(
            await gw.insert_alert(user, "webhook", fast.url())
        )

        async def fast_delivered() -> bool:
            return (await gw.delivery(fast_firing))[0] == "delivered"

        await wait_until("the fast webhook delivered", fast_delivered, within_seconds=2.5)
        assert (await gw.delivery(slow_firing))[0] == "pending"  # still dripping

        async def slow_given_up() -> bool:
            return (await gw.delivery(slow_firing))[0] == "failed"

        # One attempt of at most the 3 s deadline, though every read makes progress.
        await wait_until("the slow attempt cut at its deadline", slow_given_up, within_seconds=5)


async def _called(requests: list[bytes]) -> bool:
    return bool(requests)


async def test_endless_response_body_is_not_read(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with (
        serve("endless") as endless,
        alert_gateway(
            fresh_database_url,
            fresh_redis_url,
            tmp_path / "gw.log",
            TICKMESH_GATEWAY_WEBHOOK_ALLOW_PRIVATE="true",
        ) as gw,
    ):
        user, _ = await gw.trader()
        firing = await gw.insert_pending_firing(
            await gw.insert_alert(user, "webhook", endless.url())
        )

        async def delivered() -> bool:
            return (await gw.delivery(firing))[0] == "delivered"

        await wait_until("the webhook answered 200 counted as delivered", delivered, 5)
    # What the kernel's socket buffers took, not a body read to its end.
    assert endless.body_bytes_sent < 16 * 1024 * 1024


def _firing(target: str) -> tuple[AlertOut, AlertEventOut]:
    now = datetime.now(UTC)
    alert = AlertOut(
        id=1,
        user_id=1,
        instrument="binance_spot:BTCUSDT",
        condition="price_above",
        threshold=1.0,
        channel="webhook",
        target=target,
        cooldown=3600,
        last_triggered=None,
        created_at=now,
    )
    event = AlertEventOut(id=1, alert_id=1, bar_time=now, fired_at=now, value=2.0, message="up")
    return alert, event


async def test_webhook_connects_to_the_checked_address_not_a_second_answer() -> None:
    """DNS rebinding: the name answers a checked address first, an internal one after."""
    async with serve("ok", "127.0.0.1") as checked:
        rebound_server = serve("ok", "127.0.0.2", checked.port)
        async with rebound_server as rebound:
            questions: list[str] = []

            async def rebinding(host: str, port: int) -> list[str]:
                questions.append(host)
                return ["127.0.0.1"] if len(questions) == 1 else ["127.0.0.2"]

            settings = GatewaySettings(
                environment="test",
                gateway_jwt_secret="x" * 32,
                gateway_webhook_allow_private=True,  # both answers are on loopback
            )
            channels = AlertChannels(settings, GatewayMetrics(CoreMetrics()), resolver=rebinding)
            try:
                alert, event = _firing(checked.url(host="hooks.example.test"))
                assert await channels.attempt(alert, event) is Outcome.DELIVERED
            finally:
                await channels.close()
    assert questions == ["hooks.example.test"]  # asked once: no second answer to follow
    assert rebound.requests == []
    assert len(checked.requests) == 1
    assert f"host: hooks.example.test:{checked.port}".encode() in checked.requests[0].lower()


async def test_checked_name_with_any_internal_answer_is_refused_without_connecting() -> None:
    async with serve("ok") as local:

        async def split_answer(host: str, port: int) -> list[str]:
            return ["93.184.216.34", "127.0.0.1"]

        settings = GatewaySettings(environment="test", gateway_jwt_secret="x" * 32)
        channels = AlertChannels(settings, GatewayMetrics(CoreMetrics()), resolver=split_answer)
        try:
            alert, event = _firing(local.url(host="hooks.example.test"))
            started = time.monotonic()
            assert await channels.attempt(alert, event) is Outcome.REFUSED
            assert time.monotonic() - started < 1.0
        finally:
            await channels.close()
    assert local.requests == []
