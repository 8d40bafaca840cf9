"""Issue 13, item 10 (alerts): alerts cannot be turned into a spammer.

A user has a bounded number of alerts; webhook and e-mail alerts fire at most once per a
minimum cooldown (also rows an older version stored with less); a disabled or demoted user's
alerts neither fire nor deliver. Real bar service, real gateway, real webhook servers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ..gateway.test_alert_catch_up import SYMBOL, _minutes
from ..ingest_helpers import publish
from ..mesh_processes import ServiceProcess
from .alert_gateway import alert_gateway, wait_until
from .alert_targets import serve


def _alert(**fields: Any) -> dict[str, Any]:
    return {
        "instrument": "binance_spot:BTCUSDT",
        "condition": "price_above",
        "threshold": 1.0,
    } | fields


async def test_alerts_per_user_are_capped_even_when_created_at_once(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with alert_gateway(
        fresh_database_url,
        fresh_redis_url,
        tmp_path / "gw.log",
        TICKMESH_GATEWAY_ALERTS_PER_USER="3",
    ) as gw:
        _, trader = await gw.trader()
        _, other = await gw.trader()
        replies = await asyncio.gather(
            *(gw.client.post("/api/v1/alerts", json=_alert(), headers=trader) for _ in range(8))
        )
        assert sorted(reply.status_code for reply in replies) == [201] * 3 + [409] * 5
        refused = next(reply for reply in replies if reply.status_code == 409)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "3 alerts" in refused.json()["detail"]
        # The cap is per user, and deleting an alert makes room again.
        assert (
            await gw.client.post("/api/v1/alerts", json=_alert(), headers=other)
        ).status_code == 201
        first = next(reply for reply in replies if reply.status_code == 201).json()["id"]
        assert (
            await gw.client.delete(f"/api/v1/alerts/{first}", headers=trader)
        ).status_code == 204
        assert (
            await gw.client.post("/api/v1/alerts", json=_alert(), headers=trader)
        ).status_code == 201


async def test_webhook_and_email_alerts_need_the_minimum_cooldown(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    async with alert_gateway(
        fresh_database_url,
        fresh_redis_url,
        tmp_path / "gw.log",
        TICKMESH_GATEWAY_ALERT_MIN_COOLDOWN_SECONDS="600",
    ) as gw:
        _, trader = await gw.trader()
        for channel, target in (
            ("webhook", "https://hooks.example.com/x"),
            ("email", "a@example.com"),
        ):
            reply = await gw.client.post(
                "/api/v1/alerts",
                json=_alert(channel=channel, target=target, cooldown=599),
                headers=trader,
            )
            assert reply.status_code == 422, reply.text
            assert [e["field"] for e in reply.json()["errors"]] == ["body.cooldown"]
            assert "600" in reply.json()["detail"]
            ok = await gw.client.post(
                "/api/v1/alerts",
                json=_alert(channel=channel, target=target, cooldown=600),
                headers=trader,
            )
            assert ok.status_code == 201, ok.text
        # WebSocket firings cost nobody else anything: no minimum.
        websocket = await gw.client.post("/api/v1/alerts", json=_alert(cooldown=0), headers=trader)
        assert websocket.status_code == 201, websocket.text


async def test_old_rows_keep_the_minimum_and_disabled_or_demoted_users_stop_firing(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    common = {"TICKMESH_DATABASE_URL": fresh_database_url, "TICKMESH_REDIS_URL": fresh_redis_url}
    bars = ServiceProcess("bars", common | {"TICKMESH_BARS_COMMIT_INTERVAL_MS": "20"})
    await bars.start()
    try:
        async with (
            serve("ok") as hook,
            alert_gateway(
                fresh_database_url,
                fresh_redis_url,
                tmp_path / "gw.log",
                TICKMESH_BARS_ADDRESS=bars.address,
                TICKMESH_GATEWAY_BACKEND_TIMEOUT_SECONDS="5",
                TICKMESH_GATEWAY_ALERT_REFRESH_SECONDS="0.2",
                TICKMESH_GATEWAY_WEBHOOK_ALLOW_PRIVATE="true",
                TICKMESH_GATEWAY_ALERT_MIN_COOLDOWN_SECONDS="600",
            ) as gw,
        ):
            active, _ = await gw.trader()
            disabled, _ = await gw.trader()
            demoted, _ = await gw.trader()
            alerts = {}
            for name, user in (("active", active), ("disabled", disabled), ("demoted", demoted)):
                # Cooldown 0: stored before the minimum existed.
                alerts[name] = await gw.insert_alert(
                    user, "webhook", hook.url(f"/{name}"), symbol=SYMBOL, threshold=150, cooldown=0
                )
            # A firing of the disabled user recorded before the change, not yet sent.
            queued = await gw.insert_pending_firing(alerts["disabled"], due_in_seconds=1.5)
            for user, change in ((disabled, {"disabled": True}), (demoted, {"role": "viewer"})):
                reply = await gw.client.patch(
                    f"/api/v1/users/{user}", json=change, headers=gw.admin
                )
                assert reply.status_code == 200, reply.text
            await asyncio.sleep(1.0)  # the engine re-reads the alerts and follows the symbol

            # Minutes 1..4 close above 150, one minute apart (bar time): a cooldown of 0
            # would fire four times. Minute 6's trade makes minute 5 final.
            closes: dict[int, float] = {0: 100, 1: 200, 2: 201, 3: 202, 4: 203, 5: 100, 6: 100}
            await publish(bars.address, [_minutes("spam", 1, closes)])

            async def active_called() -> bool:
                return any(b" /active " in head for head in hook.requests)

            await wait_until("the active user's webhook", active_called, within_seconds=20)

            async def queued_finished() -> bool:
                return (await gw.delivery(queued))[0] != "pending"

            await wait_until("the disabled user's queued firing", queued_finished)
            await asyncio.sleep(2.0)  # time for any further (wrong) firing to arrive
            paths = [head.split(b" ")[1].decode() for head in hook.requests]
            assert paths == ["/active"]
            assert (await gw.delivery(queued))[0] == "failed"
            fired = await gw.pool.fetch(
                "SELECT alert_id, count(*) AS n FROM alert_events WHERE id <> $1 GROUP BY 1",
                queued,
            )
            assert {row["alert_id"]: row["n"] for row in fired} == {alerts["active"]: 1}
    finally:
        await bars.kill()
