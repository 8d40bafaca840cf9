"""`as_of` on the charts, features and quality routes: validated like the other times, documented."""

from __future__ import annotations

import pytest

from .conftest import Gateway

BTC_USDM = "binance_usdm:BTCUSDT"
ROUTES = ("charts", "features", "quality")


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("value", ["yesterday", "1900-01-01T00:00:00Z", "2300-01-01T00:00:00Z"])
async def test_bad_as_of_is_422_problem_naming_the_field(
    gateway: Gateway, route: str, value: str
) -> None:
    viewer = await gateway.user()
    reply = await gateway.client.get(
        f"/api/v1/{route}/{BTC_USDM}", params={"as_of": value}, headers=viewer.headers
    )
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert "as_of" in reply.json()["detail"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("value", ["2024-08-08T12:00:03.250Z", "1723118403250"])
async def test_good_as_of_reaches_the_backend(gateway: Gateway, route: str, value: str) -> None:
    # The backends are down here: a 503 (not a 422) shows the value was accepted and sent on.
    viewer = await gateway.user()
    reply = await gateway.client.get(
        f"/api/v1/{route}/{BTC_USDM}", params={"as_of": value}, headers=viewer.headers
    )
    assert reply.status_code == 503, reply.text


@pytest.mark.parametrize("route", ROUTES)
def test_openapi_documents_as_of(gateway: Gateway, route: str) -> None:
    operation = gateway.app.openapi()["paths"][f"/api/v1/{route}/{{instrument}}"]["get"]
    (as_of,) = [p for p in operation["parameters"] if p["name"] == "as_of"]
    assert as_of["in"] == "query"
    assert not as_of.get("required", False)
    assert "epoch milliseconds" in as_of["description"]
