"""The gateway serves the built dashboard at / without shadowing the API."""

from __future__ import annotations

from pathlib import Path

from .conftest import GatewayFactory


async def test_static_dir_served_at_root_api_and_health_still_answer(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>tickmesh</title>")
    gateway = await make_gateway(gateway_static_dir=tmp_path)
    page = await gateway.client.get("/")
    assert page.status_code == 200
    assert "<title>tickmesh</title>" in page.text
    assert (await gateway.client.get("/health")).json() == {"status": "ok"}
    unauthenticated = await gateway.client.get("/api/v1/symbols")
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["content-type"].startswith("application/problem+json")


async def test_without_static_dir_root_is_a_problem_404(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    response = await gateway.client.get("/")
    assert response.status_code == 404
