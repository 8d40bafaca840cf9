"""Charts, features, quality, symbols and health when the gRPC backends are down: 503 problems.

Also the one text form of an instrument in every path ("<venue>:<symbol>"): a malformed one
or an unknown venue is a 422 problem naming the field, counted and logged, never a 500.
"""

from __future__ import annotations

import json

import pytest
import redis.asyncio as redis

from tickmesh.core.cache import SYSTEM_HEALTH_KEY

from .conftest import Gateway

BTC_USDM = "binance_usdm:BTCUSDT"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/charts/{BTC_USDM}?timeframe=5m&limit=10",
        "/api/v1/features/binance_spot:BTCUSDT",
        "/api/v1/quality/yahoo:AAPL?timeframe=1h",
        "/api/v1/symbols",
    ],
)
async def test_backend_down_is_503_problem(gateway: Gateway, path: str) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.get(path, headers=viewer.headers)
    assert reply.status_code == 503
    assert reply.headers["content-type"] == "application/problem+json"
    assert "unavailable" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/charts/binance_usdm:btc$?timeframe=1m", "path.instrument"),
        ("/api/v1/charts/BTCUSDT?timeframe=1m", "path.instrument"),
        ("/api/v1/charts/kraken:BTCUSDT", "path.instrument"),
        ("/api/v1/features/nasdaq:AAPL", "path.instrument"),
        ("/api/v1/quality/:AAPL", "path.instrument"),
        (f"/api/v1/charts/{BTC_USDM}?timeframe=7m", "timeframe"),
        (f"/api/v1/charts/{BTC_USDM}?limit=0", "limit"),
        (f"/api/v1/charts/{BTC_USDM}?limit=5001", "limit"),
        (f"/api/v1/charts/{BTC_USDM}?start=yesterday", "start"),
        (f"/api/v1/charts/{BTC_USDM}?start=1900-01-01T00:00:00Z", "start"),
    ],
)
async def test_bad_chart_query_is_422_naming_field(gateway: Gateway, path: str, field: str) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.get(path, headers=viewer.headers)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in reply.json()["detail"]


async def test_unknown_venue_names_the_venues_accepted_and_is_counted(gateway: Gateway) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.get("/api/v1/charts/kraken:BTCUSDT", headers=viewer.headers)
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert "kraken" in detail
    assert "binance_usdm" in detail
    counted = gateway.services.metrics.invalid_input.labels(
        route="/api/v1/charts/{instrument}", location="path"
    )
    assert counted._value.get() == 1


async def test_bad_instrument_in_an_alert_body_is_422_naming_the_field(gateway: Gateway) -> None:
    trader = await gateway.user("trader")
    for instrument in ("BTCUSDT", "kraken:BTCUSDT", "binance_spot:btc usdt"):
        reply = await gateway.client.post(
            "/api/v1/alerts",
            json={"instrument": instrument, "condition": "price_above", "threshold": 1},
            headers=trader.headers,
        )
        assert reply.status_code == 422, reply.text
        assert "body.instrument" in reply.json()["detail"]


async def test_admin_deactivating_a_malformed_instrument_is_422(gateway: Gateway) -> None:
    admin = await gateway.user("admin")
    reply = await gateway.client.delete("/api/v1/symbols/BTCUSDT", headers=admin.headers)
    assert reply.status_code == 422
    assert "path.instrument" in reply.json()["detail"]
    refused = await gateway.client.post(
        "/api/v1/symbols",
        json={"exchange": "kraken", "symbol": "BTCUSDT", "asset_type": "crypto"},
        headers=admin.headers,
    )
    assert refused.status_code == 422
    assert "body.exchange" in refused.json()["detail"]


async def test_chart_start_after_end_is_400(gateway: Gateway) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.get(
        f"/api/v1/charts/{BTC_USDM}?start=2024-08-09T00:00:00Z&end=2024-08-08T00:00:00Z",
        headers=viewer.headers,
    )
    assert reply.status_code == 400
    assert reply.json()["detail"] == "start must be before end"


async def test_mesh_health_reports_each_component_with_latency(gateway: Gateway) -> None:
    reply = await gateway.client.get("/api/v1/health")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status"] == "degraded"
    components = body["components"]
    assert set(components) == {"collector", "bars", "analytics", "postgresql", "redis"}
    assert components["postgresql"]["status"] == "serving"
    assert components["redis"]["status"] == "serving"
    assert components["bars"]["status"] == "unreachable"
    assert all(c["latency_ms"] >= 0 for c in components.values())


async def test_unknown_path_is_404_problem(gateway: Gateway) -> None:
    reply = await gateway.client.get("/api/v1/nothing-here")
    assert reply.status_code == 404
    assert reply.headers["content-type"] == "application/problem+json"


async def test_mesh_health_lists_each_source_the_collector_reported(
    gateway: Gateway, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        await client.delete(SYSTEM_HEALTH_KEY)
        await client.hset(
            SYSTEM_HEALTH_KEY,
            mapping={
                "collector:binance_usdm": json.dumps(
                    {"state": "unreachable", "error": "ConnectError: no route", "updated_at": 1.5}
                ),
                "collector:binance_spot": json.dumps({"state": "up", "updated_at": 2.0}),
                "collector:yahoo": "not json",
                "bars:0": json.dumps({"state": "up"}),  # not a source: left out
            },
        )
        reply = await gateway.client.get("/api/v1/health")
    finally:
        await client.delete(SYSTEM_HEALTH_KEY)
        await client.aclose()
    assert reply.status_code == 200
    sources = {source["source"]: source for source in reply.json()["sources"]}
    assert set(sources) == {"binance_spot", "binance_usdm", "yahoo"}
    assert sources["binance_usdm"]["state"] == "unreachable"
    assert sources["binance_usdm"]["error"] == "ConnectError: no route"
    assert sources["binance_usdm"]["updated_at"].startswith("1970-01-01T00:00:01.5")
    assert (sources["binance_spot"]["state"], sources["binance_spot"]["error"]) == ("up", None)
    assert sources["yahoo"]["state"] == "unknown"


async def test_deactivating_an_unregistered_instrument_documents_404(gateway: Gateway) -> None:
    # Found by tests/security/test_openapi_fuzz.py, which runs a real collector: its NOT_FOUND
    # for an unregistered instrument reached clients as a 404 the OpenAPI did not list.
    documented = gateway.app.openapi()["paths"]["/api/v1/symbols/{instrument}"]["delete"]
    assert "application/problem+json" in documented["responses"]["404"]["content"]
