"""The real yfinance code path against recorded Yahoo chart answers served on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import yfinance as yf
from aiohttp import web
from prometheus_client import CollectorRegistry

from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.collector.yahoo.session import RedirectingSession, rewrite_yahoo_url
from tickmesh.collector.yahoo.source import YahooSource, price_text, volume_text
from tickmesh.v2 import market_pb2

NOW_NS = 1_800_000_000 * 1_000_000_000  # long after every recorded bar


class FakeYahoo:
    """Answers `/`, `/v1/test/getcrumb` and `/v8/finance/chart/SYM` from fixture bodies."""

    def __init__(self, charts: dict[str, Path]) -> None:
        self.charts = charts
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self._cookie),
                web.get("/v1/test/getcrumb", self._crumb),
                web.get("/v8/finance/chart/{symbol}", self._chart),
            ]
        )
        return app

    async def _cookie(self, request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.set_cookie("A3", "d=tickmesh")
        return response

    async def _crumb(self, request: web.Request) -> web.Response:
        return web.Response(text="tickmesh-crumb")

    async def _chart(self, request: web.Request) -> web.Response:
        self.requests += 1
        path = self.charts.get(request.match_info["symbol"])
        if path is None:
            return web.Response(status=500, text="boom")
        return web.Response(text=path.read_text(), content_type="application/json")


@pytest.fixture
async def yahoo_url(fixtures_dir: Path, tmp_path: Path) -> AsyncIterator[tuple[str, FakeYahoo]]:
    yf.set_tz_cache_location(str(tmp_path / "tz"))
    charts = fixtures_dir / "yahoo_chart"
    fake = FakeYahoo(
        {
            "AAPL": charts / "AAPL_1m_2024-10-02.fixture.body.json",
            "WKND": charts / "AAPL_1m_2025-02-01_weekend_empty.fixture.body.json",
        }
    )
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", fake
    await runner.cleanup()


def _source(base_url: str) -> tuple[YahooSource, IngestClient]:
    metrics = CollectorMetrics(CollectorRegistry())
    ingest = IngestClient(IngestConfig("127.0.0.1:1", "yahoo-test"), metrics)
    source = YahooSource(
        ingest, metrics, lambda: RedirectingSession(base_url), clock_ns=lambda: NOW_NS
    )
    return source, ingest


def _pending_bars(ingest: IngestClient) -> list[market_pb2.SourceBar]:
    return [item.bar for item in ingest._pending if item.bar is not None]


def test_rewrite_yahoo_url_keeps_path_and_query_others_untouched() -> None:
    url = "https://query2.finance.yahoo.com/v8/finance/chart/AAPL?interval=1m"
    assert rewrite_yahoo_url(url, "http://h:1") == "http://h:1/v8/finance/chart/AAPL?interval=1m"
    assert rewrite_yahoo_url("https://example.com/x", "http://h:1") == "https://example.com/x"


async def test_yahoo_poll_fixture_publishes_each_completed_bar_once(
    yahoo_url: tuple[str, FakeYahoo], fixtures_dir: Path
) -> None:
    base, _ = yahoo_url
    source, ingest = _source(base)
    session = RedirectingSession(base)
    assert await source.poll("AAPL", session) == 389
    bars = _pending_bars(ingest)
    body = json.loads(
        (fixtures_dir / "yahoo_chart/AAPL_1m_2024-10-02.fixture.body.json").read_text()
    )
    result = body["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    first = bars[0]
    assert first.open_time_ns == result["timestamp"][0] * 1_000_000_000
    got = [first.open, first.high, first.low, first.close, first.volume]
    # Yahoo's floats went through float32 (225.88999938964844): each price is rounded to the
    # chart's priceHint decimals (2), the volume to whole shares, giving exact decimals.
    assert result["meta"]["priceHint"] == 2
    want = [quote[name][0] for name in ("open", "high", "low", "close", "volume")]
    assert got == [f"{value:.2f}".rstrip("0").rstrip(".") for value in want[:4]] + [
        str(round(want[4]))
    ]
    assert got[0] == "225.89"
    assert all(Decimal(bar.close) == Decimal(bar.close).quantize(Decimal("0.01")) for bar in bars)
    assert all(bar.timeframe == market_pb2.TIMEFRAME_1M for bar in bars)
    assert all(bar.exchange == market_pb2.EXCHANGE_YAHOO for bar in bars)
    # The all-null minute (15:15 UTC) and Yahoo's trailing live bar are not bars.
    assert 1727882100 * 1_000_000_000 not in {bar.open_time_ns for bar in bars}
    # A second poll of the same answer sends nothing again.
    assert await source.poll("AAPL", session) == 0
    assert source.health()["state"] == "up"


async def test_yahoo_weekend_empty_and_errors_survive(yahoo_url: tuple[str, FakeYahoo]) -> None:
    base, fake = yahoo_url
    source, ingest = _source(base)
    session = RedirectingSession(base)
    assert await source.poll("WKND", session) == 0
    assert await source.poll("FAIL", session) == 0
    assert _pending_bars(ingest) == []
    assert source.polls == 2
    assert fake.requests >= 2  # both reached the server; neither produced a bar or an exception


def test_yahoo_price_text_rounds_float32_artifacts_to_the_price_hint() -> None:
    assert price_text(226.7899932861328, 2) == "226.79"
    assert price_text(226.80000305175781, 2) == "226.8"
    assert price_text(0.123449999, 4) == "0.1234"
    assert volume_text(1205461.0) == "1205461"
    assert volume_text(float("nan")) == "0"
