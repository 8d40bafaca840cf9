"""The mesh one chaos run drives: the exchange simulator and the four service processes.

The simulator replays the capture over Binance's WebSocket and REST protocols; a real
collector follows the registry, feeds a real bar service, analytics consumes the bars and a
gateway judges price alerts on them. Everything the run leaves behind (final bars,
analytics rows, alert firings) is read back for the comparison.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import httpx

from tickmesh.collector.simulator import ExchangeSimulator
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

from .gateway.processes import ADMIN, SECRET
from .mesh_processes import GatewayServiceProcess, ServiceProcess, simulator_urls
from .tls_helpers import TestPki

INSTRUMENT = InstrumentId(market_pb2.EXCHANGE_BINANCE_USDM, "BTCUSDT")
# Closes of the capture's minutes run 28,140.6 .. 28,155.2: each rule fires a few times.
ALERTS: tuple[dict[str, Any], ...] = (
    {"condition": "price_above", "threshold": 28150.0},
    {"condition": "price_below", "threshold": 28145.0},
    {"condition": "price_crossing", "threshold": 28148.0},
    {"condition": "percent_change", "threshold": 0.01, "lookback_bars": 1},
    {"condition": "price_above", "threshold": 28145.0, "timeframe": "5m"},
)
ANALYTICS_TABLES = ("indicators", "ml_features")
RowKey = tuple[str, str, str]
Row = tuple[Any, ...]
FiringKey = tuple[str, float, str, str]  # condition, threshold, timeframe, bar time


@dataclass
class Mesh:
    """The service processes of one run, in start order."""

    bars: ServiceProcess
    analytics: ServiceProcess
    collector: ServiceProcess
    gateway: GatewayServiceProcess

    @property
    def services(self) -> dict[str, ServiceProcess]:
        """The processes by name."""
        return {
            "bars": self.bars,
            "analytics": self.analytics,
            "collector": self.collector,
            "gateway": self.gateway,
        }


def build_mesh(
    common: dict[str, str],
    sim: ExchangeSimulator,
    pki: TestPki | None = None,
    quick_timings: bool = True,
    bars_settings: dict[str, str] | None = None,
) -> Mesh:
    """The four processes, wired to each other and to the simulator (not started).

    With `pki` every process has its role's certificate and the mesh speaks mutual TLS, as
    `tickmesh run` and a cluster do. `quick_timings` shortens commit, poll and retry intervals
    so a test sees results sooner; a benchmark turns it off to measure the services' defaults.
    `bars_settings` go to the bar service alone (a benchmark's allowed lateness, say).
    """
    quick = quick_timings
    bars = ServiceProcess(
        "bars",
        {
            **common,
            **_when(quick, TICKMESH_BARS_COMMIT_INTERVAL_MS="20"),
            **(bars_settings or {}),
        },
        pki,
    )
    analytics = ServiceProcess(
        "analytics",
        {
            **common,
            "TICKMESH_BARS_ADDRESS": bars.address,
            **_when(quick, TICKMESH_ANALYTICS_RECONNECT_MAX_SECONDS="0.5"),
        },
        pki,
    )
    collector = ServiceProcess(
        "collector",
        {
            **common,
            "TICKMESH_BARS_ADDRESS": bars.address,
            **simulator_urls(sim),
            **_when(
                quick,
                TICKMESH_COLLECTOR_REGISTRY_POLL_SECONDS="0.5",
                TICKMESH_COLLECTOR_BACKFILL_GRACE_MS="200",
            ),
        },
        pki,
    )
    gateway = GatewayServiceProcess(
        {
            **common,
            "TICKMESH_GATEWAY_JWT_SECRET": SECRET,
            "TICKMESH_GATEWAY_ADMIN_USERNAME": ADMIN[0],
            "TICKMESH_GATEWAY_ADMIN_PASSWORD": ADMIN[1],
            **_when(quick, TICKMESH_GATEWAY_ALERT_REFRESH_SECONDS="0.5"),
            "TICKMESH_GATEWAY_BACKEND_TIMEOUT_SECONDS": "5",
            "TICKMESH_COLLECTOR_ADDRESS": collector.address,
            "TICKMESH_BARS_ADDRESS": bars.address,
            "TICKMESH_ANALYTICS_ADDRESS": analytics.address,
        },
        pki,
    )
    return Mesh(bars, analytics, collector, gateway)


def _when(wanted: bool, **settings: str) -> dict[str, str]:
    """`settings` when wanted, else nothing."""
    return settings if wanted else {}


async def register_instrument_and_alerts(mesh: Mesh) -> None:
    """Add the instrument through the collector's SymbolService and the alerts through the gateway."""
    # Registering is the gateway's right (SymbolService admits only the gateway role).
    async with mesh.collector.channel("gateway") as channel:
        await symbol_service_pb2_grpc.SymbolServiceStub(channel).AddSymbol(
            symbol_service_pb2.AddSymbolRequest(
                symbol=INSTRUMENT.symbol,
                exchange=market_pb2.Exchange.ValueType(INSTRUMENT.exchange),
                asset_type="crypto",
            )
        )
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url, timeout=10) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for rule in ALERTS:
            reply = await client.post(
                "/api/v1/alerts",
                json={
                    "instrument": str(INSTRUMENT),
                    "channel": "websocket",
                    "cooldown": 0,
                    **rule,
                },
                headers=headers,
            )
            reply.raise_for_status()


async def wait_subscribed(sim: ExchangeSimulator, within_s: float = 60.0) -> None:
    """Wait until the collector's connection subscribed to the instrument's stream."""
    async with asyncio.timeout(within_s):
        while not any(c.subscriptions for c in sim.hub.connections):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _normalise(value: Any) -> Any:
    """Floats to 10 significant digits, JSON documents parsed: equal results compare equal."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, str) and value[:1] in "{[":
        return _normalise(json.loads(value))
    if isinstance(value, dict):
        return tuple(sorted((k, _normalise(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_normalise(v) for v in value)
    return value


async def analytics_rows(database_url: str) -> dict[RowKey, Row]:
    """Every indicator and feature row of the instrument, by (table, timeframe, time)."""
    rows: dict[RowKey, Row] = {}
    conn = await asyncpg.connect(database_url)
    try:
        for table in ANALYTICS_TABLES:
            query = f"SELECT * FROM {table} WHERE exchange = $1 AND symbol = $2"
            for record in await conn.fetch(query, INSTRUMENT.venue, INSTRUMENT.symbol):
                key = (table, str(record["timeframe"]), record["time"].isoformat())
                rows[key] = tuple(
                    _normalise(v)
                    for name, v in record.items()
                    if name not in ("time", "exchange", "symbol", "timeframe")
                )
    finally:
        await conn.close()
    return rows


async def alert_firings(database_url: str) -> dict[FiringKey, int]:
    """How many times each rule fired on each bar (1 everywhere, or something was doubled)."""
    conn = await asyncpg.connect(database_url)
    try:
        records = await conn.fetch(
            "SELECT a.condition, a.threshold, a.parameters->>'timeframe' AS timeframe,"
            " e.bar_time, count(*) AS n"
            " FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
            " GROUP BY 1, 2, 3, 4"
        )
    finally:
        await conn.close()
    return {
        (r["condition"], float(r["threshold"]), str(r["timeframe"]), _iso(r["bar_time"])): int(
            r["n"]
        )
        for r in records
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat()
