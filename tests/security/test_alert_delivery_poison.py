"""Issue 13, item 4: one trader's alert target cannot stop everybody's alert deliveries.

Targets that today's validation refuses may already be stored by older versions, so the
poison rows here go straight into PostgreSQL; a real gateway process must go on delivering
another user's webhook, and finish the poison rows after their attempts.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tickmesh.core.metrics import CoreMetrics
from tickmesh.gateway.metrics import GatewayMetrics

from .alert_gateway import alert_gateway, wait_until
from .alert_targets import serve

BAD_TARGETS = [
    ("webhook", "http://example.com:99999/hook"),
    ("webhook", "http://example.com:0/hook"),
    ("webhook", "ftp://example.com/hook"),
    ("webhook", "http://exa mple.com/hook"),
    ("webhook", "http:///hook"),
    ("email", ":;@example.com"),
    ("email", "ops@example.com\r\nBcc: everyone@example.com"),
    ("email", "ops@localhost"),
]


async def test_alert_targets_with_bad_ports_or_addresses_get_422_naming_target(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with alert_gateway(fresh_database_url, fresh_redis_url, tmp_path / "gw.log") as gw:
        _, trader = await gw.trader()
        for channel, target in BAD_TARGETS:
            reply = await gw.client.post(
                "/api/v1/alerts",
                json={
                    "instrument": "binance_spot:BTCUSDT",
                    "condition": "price_above",
                    "threshold": 1.0,
                    "channel": channel,
                    "target": target,
                    "cooldown": 3600,
                },
                headers=trader,
            )
            assert reply.status_code == 422, (target, reply.text)
            problem = reply.json()
            assert [error["field"] for error in problem["errors"]] == ["body.target"], problem


async def test_poison_rows_do_not_stop_other_users_deliveries(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with (
        serve("ok") as hook,
        alert_gateway(
            fresh_database_url,
            fresh_redis_url,
            tmp_path / "gw.log",
            TICKMESH_GATEWAY_WEBHOOK_ALLOW_PRIVATE="true",  # the good webhook is on loopback
            TICKMESH_GATEWAY_WEBHOOK_ATTEMPTS="2",
            TICKMESH_GATEWAY_SMTP_PORT="1",  # no mail server: e-mail attempts fail, not crash
        ) as gw,
    ):
        attacker, attacker_headers = await gw.trader()
        victim, _ = await gw.trader()
        poison = [
            await gw.insert_alert(attacker, "webhook", "http://127.0.0.1:99999/hook"),
            await gw.insert_alert(attacker, "webhook", "http://[::1/hook"),
            await gw.insert_alert(attacker, "email", ":;@example.com"),
            await gw.insert_alert(attacker, "webhook", hook.url(), parameters='"not an object"'),
        ]
        poison_firings = [await gw.insert_pending_firing(alert_id) for alert_id in poison]
        good = await gw.insert_alert(victim, "webhook", hook.url("/victim"))
        # Due after the poison rows were claimed: a worker they killed would never send it.
        good_firing = await gw.insert_pending_firing(good, due_in_seconds=2.0)

        async def delivered() -> bool:
            return (await gw.delivery(good_firing))[0] == "delivered"

        await wait_until("the victim's webhook delivered", delivered, within_seconds=15)
        assert [head.split(b" ")[1] for head in hook.requests].count(b"/victim") == 1

        async def poison_finished() -> bool:
            states = [await gw.delivery(event) for event in poison_firings]
            return all(state != "pending" for state, _ in states)

        await wait_until("every poison row finished", poison_finished, within_seconds=15)
        for event in poison_firings:
            state, attempts = await gw.delivery(event)
            assert state in ("failed", "delivered"), (event, state)
            assert attempts <= 2, (event, attempts)
        assert gw.process.process.returncode is None
        # The owner of the old rows can still list them (and so delete them): no 500.
        listed = await gw.client.get("/api/v1/alerts", headers=attacker_headers)
        assert listed.status_code == 200, listed.text
        assert {alert["id"] for alert in listed.json()} == set(poison)


async def test_alert_worker_that_ends_is_restarted_and_its_death_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tickmesh.gateway.alerts.supervision import supervise  # new with this fix

    core = CoreMetrics()
    metrics = GatewayMetrics(core)
    runs = 0
    third_run = asyncio.Event()

    async def worker() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise KeyError("a bug in one row's handling")
        if runs == 2:
            return  # ended without being asked to: also a death
        third_run.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR):
        task = asyncio.create_task(supervise("alert-deliveries", worker, metrics, first_delay=0.01))
        await asyncio.wait_for(third_run.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    deaths = core.registry.get_sample_value(
        "tickmesh_alert_worker_deaths_total", {"worker": "alert-deliveries"}
    )
    assert deaths == 2
    assert sum("alert-deliveries" in record.getMessage() for record in caplog.records) == 2
