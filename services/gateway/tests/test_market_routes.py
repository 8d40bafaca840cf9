"""Charts, features, quality, symbols and health when the gRPC backends are down: 503 problems."""

from __future__ import annotations

import pytest

from .conftest import Gateway


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/charts/BTCUSDT?timeframe=5m&limit=10",
        "/api/v1/features/BTCUSDT",
        "/api/v1/quality/BTCUSDT?timeframe=1h",
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
        ("/api/v1/charts/btc$?timeframe=1m", "symbol"),
        ("/api/v1/charts/BTCUSDT?timeframe=7m", "timeframe"),
        ("/api/v1/charts/BTCUSDT?limit=0", "limit"),
        ("/api/v1/charts/BTCUSDT?limit=5001", "limit"),
        ("/api/v1/charts/BTCUSDT?start=yesterday", "start"),
        ("/api/v1/charts/BTCUSDT?start=1900-01-01T00:00:00Z", "start"),
    ],
)
async def test_bad_chart_query_is_422_naming_field(gateway: Gateway, path: str, field: str) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.get(path, headers=viewer.headers)
    assert reply.status_code == 422
    assert field in reply.json()["detail"]


async def test_chart_start_after_end_is_400(gateway: Gateway) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.get(
        "/api/v1/charts/BTCUSDT?start=2024-08-09T00:00:00Z&end=2024-08-08T00:00:00Z",
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
