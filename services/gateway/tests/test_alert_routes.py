"""Alert rules over the app: traders own theirs, inputs validated, history from alert_events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from .conftest import Gateway

RULE: dict[str, Any] = {
    "instrument": "binance_usdm:BTCUSDT",
    "timeframe": "1m",
    "condition": "price_above",
    "threshold": 65000.0,
    "channel": "webhook",
    "target": "https://hooks.example.com/T000/B000",
    "cooldown": 60,
}


async def test_trader_creates_lists_replaces_and_deletes_alert(gateway: Gateway) -> None:
    trader = await gateway.user("trader")
    created = await gateway.client.post("/api/v1/alerts", json=RULE, headers=trader.headers)
    assert created.status_code == 201, created.text
    alert = created.json()
    assert alert["user_id"] == trader.id
    assert alert["instrument"] == "binance_usdm:BTCUSDT"
    stored = await gateway.services.pool.fetchrow(
        "SELECT exchange, symbol FROM alerts WHERE id = $1", alert["id"]
    )
    assert stored is not None
    assert tuple(stored) == ("binance_usdm", "BTCUSDT")
    assert alert["active"] is True
    listed = await gateway.client.get("/api/v1/alerts", headers=trader.headers)
    assert [a["id"] for a in listed.json()] == [alert["id"]]
    replaced = await gateway.client.put(
        f"/api/v1/alerts/{alert['id']}",
        json=RULE
        | {
            "instrument": "binance_spot:BTCUSDT",
            "condition": "rsi_below",
            "threshold": 30,
            "one_time": True,
        },
        headers=trader.headers,
    )
    assert replaced.status_code == 200
    assert replaced.json()["condition"] == "rsi_below"
    assert replaced.json()["instrument"] == "binance_spot:BTCUSDT"
    assert replaced.json()["one_time"] is True
    deleted = await gateway.client.delete(f"/api/v1/alerts/{alert['id']}", headers=trader.headers)
    assert deleted.status_code == 204
    missing = await gateway.client.get(f"/api/v1/alerts/{alert['id']}", headers=trader.headers)
    assert missing.status_code == 404


async def test_other_users_alert_is_404(gateway: Gateway) -> None:
    owner = await gateway.user("trader")
    other = await gateway.user("trader")
    alert = (await gateway.client.post("/api/v1/alerts", json=RULE, headers=owner.headers)).json()
    for method in ("GET", "DELETE"):
        reply = await gateway.client.request(
            method, f"/api/v1/alerts/{alert['id']}", headers=other.headers
        )
        assert reply.status_code == 404
    events = await gateway.client.get(f"/api/v1/alerts/{alert['id']}/events", headers=other.headers)
    assert events.status_code == 404


async def test_viewer_cannot_create_alert(gateway: Gateway) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.post("/api/v1/alerts", json=RULE, headers=viewer.headers)
    assert reply.status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"instrument": "binance_usdm:btc usdt"}, "instrument"),
        ({"instrument": "BTCUSDT"}, "instrument"),
        ({"instrument": "kraken:BTCUSDT"}, "instrument"),
        ({"symbol": "BTCUSDT"}, "symbol"),
        ({"timeframe": "2m"}, "timeframe"),
        ({"condition": "moon"}, "condition"),
        ({"threshold": "NaN"}, "threshold"),
        ({"channel": "email", "target": "not-an-address"}, "target"),
        ({"target": "ftp://example.com/x"}, "target"),
        ({"condition": "rsi_above", "threshold": 150}, "threshold"),
        ({"cooldown": -1}, "cooldown"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_invalid_alert_is_422_naming_field(
    gateway: Gateway, change: dict[str, Any], field: str
) -> None:
    trader = await gateway.user("trader")
    reply = await gateway.client.post("/api/v1/alerts", json=RULE | change, headers=trader.headers)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in reply.json()["detail"]


async def test_alert_events_lists_recorded_firings_once(gateway: Gateway) -> None:
    trader = await gateway.user("trader")
    alert = (await gateway.client.post("/api/v1/alerts", json=RULE, headers=trader.headers)).json()
    bar_time = datetime(2024, 8, 8, 23, 55, tzinfo=UTC)
    first = await gateway.services.alerts.record_firing(alert["id"], bar_time, 65100.0, "above")
    again = await gateway.services.alerts.record_firing(alert["id"], bar_time, 65100.0, "above")
    assert first is not None
    assert again is None
    events = await gateway.client.get(
        f"/api/v1/alerts/{alert['id']}/events", headers=trader.headers
    )
    assert events.status_code == 200
    assert [(e["value"], e["message"]) for e in events.json()] == [(65100.0, "above")]
