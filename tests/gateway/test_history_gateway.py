"""History through the gateway, on real processes: `as_of` REST reads and `/ws/replay/{instrument}`.

One mesh per module (collector, bars, analytics, gateway). A bar is made final, then revised by
a late trade; the tests read it as of just before and just after the revision, replay it over
the WebSocket at maximum speed and at a pace, steer the replay, and hold it with a client that
stops reading.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tickmesh.v2 import market_pb2

from ..ingest_helpers import publish_until_acked
from .processes import BarsAnalyticsGateway, bars_analytics_gateway

MINUTE_NS = 60 * 1_000_000_000
START_NS = int(datetime(2024, 8, 8, tzinfo=UTC).timestamp()) * 1_000_000_000
START_S = START_NS // 1_000_000_000
WITHIN_SECONDS = 30.0
START = {"type": "start", "timeframe": "1m", "from": "2024-08-08"}
BAR_FIELDS = {
    "time", "open_time", "open", "high", "low", "close", "volume", "quote_volume",
    "taker_buy_volume", "taker_buy_quote_volume", "trade_count", "vwap", "final", "revision",
    "instrument", "timeframe",
}  # fmt: skip


@pytest.fixture(scope="module")
async def mesh(
    module_database_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[BarsAnalyticsGateway]:
    """Bars, analytics, a collector and a gateway on them."""
    async with bars_analytics_gateway(
        module_database_url,
        module_redis_url,
        tmp_path_factory.mktemp("history") / "gateway.log",
        TICKMESH_GATEWAY_WS_MESSAGES_PER_SECOND="50",
    ) as running:
        yield running


def _batch(
    symbol: str, sequence: int, seconds: list[int], price: int = 100
) -> market_pb2.TradeBatch:
    """One batch of `symbol` with a trade at each of `seconds` after START_NS."""
    times = [START_NS + second * 1_000_000_000 for second in seconds]
    first_id = sequence * 1000
    run = market_pb2.SymbolTrades(
        exchange=market_pb2.EXCHANGE_SIMULATOR,
        symbol=symbol,
        trade_ids=list(range(first_id, first_id + len(times))),
        prices=[price + i for i in range(len(times))],
        quantities=[1] * len(times),
        event_time_ns=times,
        receive_time_ns=times,
    )
    return market_pb2.TradeBatch(stream_id=f"hist-{symbol}", sequence=sequence, trades=[run])


@dataclass
class Revised:
    """An instrument whose minute-0 bar was made final, then revised by a late trade."""

    instrument: str
    before_any: datetime  # before the instrument had any bar
    first: datetime  # a commit time range starting here holds both versions
    between: datetime  # after revision 0 and its analytics, before the late trade
    after: datetime  # after revision 1 and its analytics


async def _until(check: Any, what: str) -> Any:
    """Poll `check()` until it returns something truthy."""
    deadline = time.monotonic() + WITHIN_SECONDS
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"not seen within {WITHIN_SECONDS:.0f} s: {what}")
        await asyncio.sleep(0.1)


async def _make_revised(mesh: BarsAnalyticsGateway, late_after_seconds: float = 0.0) -> Revised:
    symbol = f"HI{secrets.token_hex(3).upper()}"
    instrument = f"simulator:{symbol}"
    await mesh.register(instrument)
    before_any = datetime.now(UTC)
    await asyncio.sleep(0.01)
    address = mesh.bars.address
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url, headers=mesh.headers) as client:

        async def minute0(revision: int) -> bool:
            reply = await client.get(
                f"/api/v1/features/{instrument}",
                params={"start": START_S, "end": START_S + 60, "timeframe": "1m"},
            )
            chart = await client.get(
                f"/api/v1/charts/{instrument}",
                params={"start": START_S, "end": START_S + 60, "indicators": "false"},
            )
            bars = chart.json()["bars"] if chart.status_code == 200 else []
            return (
                reply.status_code == 200
                and len(reply.json()["rows"]) == 1
                and [bar["revision"] for bar in bars] == [revision]
            )

        first = datetime.now(UTC)
        # Minute 0, then a trade in minute 3 moves the watermark past it: minute 0 is final.
        await publish_until_acked(address, [_batch(symbol, 1, [5, 20, 40, 180])])
        await _until(lambda: minute0(0), "revision 0 of minute 0 and its features")
        await asyncio.sleep(late_after_seconds)
        between = datetime.now(UTC)
        await asyncio.sleep(0.05)
        # A late trade in minute 0, after it was final: revision 1 with another close.
        batches = [_batch(symbol, 1, [5, 20, 40, 180]), _batch(symbol, 2, [50], price=150)]
        await publish_until_acked(address, batches)
        await _until(lambda: minute0(1), "revision 1 of minute 0")
        await asyncio.sleep(1.0)  # its analytics rows
        after = datetime.now(UTC)
    return Revised(instrument, before_any, first, between, after)


@pytest.fixture(scope="module")
async def revised(mesh: BarsAnalyticsGateway) -> Revised:
    """One revised instrument shared by the module's tests."""
    return await _make_revised(mesh)


def _ws_url(mesh: BarsAnalyticsGateway, instrument: str, token: str | None = None) -> str:
    url = mesh.gateway.base_url.replace("http://", "ws://") + f"/ws/replay/{instrument}"
    return url if token is None else f"{url}?token={token}"


async def _next(
    ws: ClientConnection, *kinds: str, within: float = WITHIN_SECONDS
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if message["type"] in kinds:
            return dict(message)


async def _play_to_the_end(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every bars and indicators message until the replay says it ended."""
    received: list[dict[str, Any]] = []
    while True:
        message = await _next(ws, "bars", "indicators", "replay", "error")
        assert message["type"] != "error", message
        if message["type"] == "replay":
            if message["state"] == "ended":
                return received
            assert message["state"] in ("playing", "paused"), message
            continue
        received.append(message)


# ---- as_of on REST ----------------------------------------------------------------------------


async def test_chart_as_of_before_and_after_a_revision(
    mesh: BarsAnalyticsGateway, revised: Revised
) -> None:
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url, headers=mesh.headers) as client:
        answers = {}
        for name, as_of in (
            ("before_any", revised.before_any.isoformat()),
            ("between", revised.between.isoformat()),
            ("between_ms", str(int(revised.between.timestamp() * 1000))),
            ("after", revised.after.isoformat()),
        ):
            reply = await client.get(
                f"/api/v1/charts/{revised.instrument}",
                params={"start": START_S, "end": START_S + 60, "as_of": as_of},
            )
            assert reply.status_code == 200, reply.text
            answers[name] = reply.json()
        latest = await client.get(
            f"/api/v1/charts/{revised.instrument}", params={"start": START_S, "end": START_S + 60}
        )
    assert answers["before_any"]["bars"] == []  # before any data: empty, not an error
    assert [bar["revision"] for bar in answers["between"]["bars"]] == [0]
    assert answers["between_ms"]["bars"] == answers["between"]["bars"]
    assert [bar["revision"] for bar in answers["after"]["bars"]] == [1]
    assert answers["between"]["bars"][0]["close"] != answers["after"]["bars"][0]["close"]
    assert answers["after"]["bars"] == latest.json()["bars"]
    # The indicators of the same answer are those of the version then known.
    assert answers["between"]["indicators"] != answers["after"]["indicators"]


async def test_features_as_of_before_and_after_a_revision(
    mesh: BarsAnalyticsGateway, revised: Revised
) -> None:
    rows = {}
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url, headers=mesh.headers) as client:
        for name, as_of in (("before_any", revised.before_any), ("between", revised.between), ("after", revised.after)):  # fmt: skip
            reply = await client.get(
                f"/api/v1/features/{revised.instrument}",
                params={"start": START_S, "end": START_S + 60, "as_of": as_of.isoformat()},
            )
            assert reply.status_code == 200, reply.text
            rows[name] = reply.json()["rows"]
        quality = await client.get(
            f"/api/v1/quality/{revised.instrument}", params={"as_of": revised.after.isoformat()}
        )
    assert rows["before_any"] == []
    assert len(rows["between"]) == len(rows["after"]) == 1
    assert rows["between"][0]["values"] != rows["after"][0]["values"]
    assert quality.status_code == 200, quality.text


# ---- the replay WebSocket: admission and bad input ------------------------------------------


async def test_replay_without_a_token_is_closed_1008(mesh: BarsAnalyticsGateway) -> None:
    async with websockets.connect(_ws_url(mesh, "simulator:NOPE")) as ws:
        await ws.send(json.dumps({"type": "start", "timeframe": "1m", "from": "2024-08-08"}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert "access token" in closed.value.rcvd.reason


async def test_replay_of_an_unregistered_instrument_is_refused_naming_it(
    mesh: BarsAnalyticsGateway,
) -> None:
    async with websockets.connect(_ws_url(mesh, "simulator:NOSUCH1", mesh.token)) as ws:
        said = await _next(ws, "error")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert said["detail"] == "instrument simulator:NOSUCH1 is not registered"


async def test_replay_bad_messages_are_answered_with_clear_errors(
    mesh: BarsAnalyticsGateway,
) -> None:
    instrument = f"simulator:BAD{secrets.token_hex(2).upper()}"
    await mesh.register(instrument)
    async with websockets.connect(_ws_url(mesh, instrument, mesh.token)) as ws:
        assert (await _next(ws, "welcome"))["instrument"] == instrument
        for sent, said in (
            ("nonsense", "messages are JSON objects"),
            ({"type": "play"}, "type: one of start, pause, resume, seek, speed, ping"),
            ({"type": "pause"}, "pause: no replay yet; send start first"),
            ({"type": "seek", "time": "2024-08-08T00:00:00Z"}, "seek: no replay yet"),
            ({"type": "start", "timeframe": "2m", "from": "2024-08-08"}, "timeframe:"),
            (
                {"type": "start", "timeframe": "1m", "from": "2024-08-09", "to": "2024-08-08"},
                "from must be before to",
            ),
            (
                {"type": "start", "timeframe": "1m", "from": "2024-08-08", "speed": -1},
                'speed: "max", or a number',
            ),
            (
                {"type": "start", "timeframe": "1m", "from": "2199-01-01"},
                "from: after now, so there is nothing to replay yet",
            ),
        ):
            await ws.send(sent if isinstance(sent, str) else json.dumps(sent))
            error = await _next(ws, "error")
            assert said in error["detail"], (sent, error)
        await ws.send(json.dumps({"type": "ping"}))
        assert (await _next(ws, "pong"))["type"] == "pong"


# ---- the replay WebSocket: playing (needs BarService.Replay and AnalyticsService.Replay) -------


async def test_replay_at_max_speed_plays_finals_and_the_revision_in_commit_order(
    mesh: BarsAnalyticsGateway, revised: Revised
) -> None:
    async with websockets.connect(_ws_url(mesh, revised.instrument, mesh.token)) as ws:
        await ws.send(
            json.dumps(
                {
                    "type": "start",
                    "timeframe": "1m",
                    "from": revised.first.isoformat(),
                    "to": revised.after.isoformat(),
                    "speed": "max",
                }
            )
        )
        started = await _next(ws, "replay")
        assert (started["state"], started["speed"], started["timeframe"]) == (
            "playing",
            "max",
            "1m",
        )
        received = await _play_to_the_end(ws)
    bars = [
        (m["bars"][0]["time"], m["bars"][0]["revision"]) for m in received if m["type"] == "bars"
    ]
    # Minute 0 final, later minute 0 revised: in the order they were committed.
    assert bars.index((START_S, 0)) < bars.index((START_S, 1))
    for message in received:
        assert message["instrument"] == revised.instrument
        assert message["timeframe"] == "1m"
        if message["type"] == "bars":
            assert set(message["bars"][0]) >= BAR_FIELDS - {"traceparent"}
    # Each indicator row comes after the bar it was computed from.
    indicator_times = [m["indicators"]["time"] for m in received if m["type"] == "indicators"]
    assert indicator_times.count(START_S) >= 2  # one per version of minute 0
    for index, message in enumerate(received):
        if message["type"] == "indicators":
            earlier = [m["bars"][0]["time"] for m in received[:index] if m["type"] == "bars"]
            assert message["indicators"]["time"] in earlier
    # The last version of each bar is what GetBars answers now.
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url, headers=mesh.headers) as client:
        chart = (
            await client.get(
                f"/api/v1/charts/{revised.instrument}",
                params={"start": START_S, "indicators": "false"},
            )
        ).json()
    last: dict[int, dict[str, Any]] = {}
    for message in received:
        if message["type"] == "bars":
            bar = dict(message["bars"][0])
            bar.pop("instrument"), bar.pop("timeframe"), bar.pop("traceparent", None)
            last[bar["time"]] = bar
    assert [last[bar["time"]] for bar in chart["bars"] if bar["time"] in last] == [
        bar for bar in chart["bars"] if bar["time"] in last
    ]
    assert START_S in last


async def _state(ws: ClientConnection, state: str) -> dict[str, Any]:
    """The next `replay` status message in `state` (periodic ones before it are skipped)."""
    while True:
        message = await _next(ws, "replay")
        if message["state"] == state:
            return message


async def test_replay_is_paced_and_steered(mesh: BarsAnalyticsGateway) -> None:
    # Revision 1 is committed about 3 s after revision 0: at 6x they come about 0.5 s apart.
    spaced = await _make_revised(mesh, late_after_seconds=3.0)
    paced = START | {"from": spaced.first.isoformat(), "to": spaced.after.isoformat(), "speed": 6}
    async with websockets.connect(_ws_url(mesh, spaced.instrument, mesh.token)) as ws:
        await ws.send(json.dumps(paced))
        seen: dict[tuple[int, int], float] = {}
        while (START_S, 1) not in seen:
            bar = (await _next(ws, "bars"))["bars"][0]
            seen.setdefault((bar["time"], bar["revision"]), time.monotonic())
        gap = seen[(START_S, 1)] - seen[(START_S, 0)]
        assert 0.2 < gap < 2.5, gap

        # From `between` at 1x the revision is due after about 3 s; paused, it never comes.
        await ws.send(json.dumps(paced | {"from": spaced.between.isoformat(), "speed": 1}))
        await _state(ws, "playing")
        await ws.send(json.dumps({"type": "pause"}))
        await _state(ws, "paused")
        with pytest.raises(TimeoutError):
            await _next(ws, "bars", within=4.5)
        await ws.send(json.dumps({"type": "speed", "speed": "max"}))
        assert (await _state(ws, "paused"))["speed"] == "max"
        await ws.send(json.dumps({"type": "resume"}))
        bar = (await _next(ws, "bars", within=5.0))["bars"][0]
        assert (bar["time"], bar["revision"]) == (START_S, 1)

        # Seek outside the range is refused; inside, the replay goes on from there.
        await ws.send(json.dumps({"type": "seek", "time": "2000-01-01T00:00:00Z"}))
        assert "outside the replayed range" in (await _next(ws, "error"))["detail"]
        await ws.send(json.dumps({"type": "seek", "time": spaced.between.isoformat()}))
        bar = (await _next(ws, "bars", within=5.0))["bars"][0]
        assert (bar["time"], bar["revision"]) == (START_S, 1)


async def _sent_bars(mesh: BarsAnalyticsGateway) -> float:
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url) as client:
        text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith('tickmesh_ws_messages_sent_total{type="bars"}'):
            return float(line.split()[1])
    return 0.0


async def test_replay_to_a_client_that_stops_reading_is_held_not_buffered(
    mesh: BarsAnalyticsGateway,
) -> None:
    symbol = f"FL{secrets.token_hex(3).upper()}"
    instrument = f"simulator:{symbol}"
    await mesh.register(instrument)
    # ~7 MB of bar messages: about twice what the loopback socket buffers can hold.
    minutes = 16_000
    first = datetime.now(UTC)
    batches = [
        _batch(symbol, n + 1, [60 * m + 1 for m in range(n * 1000, (n + 1) * 1000)])
        for n in range(minutes // 1000)
    ]
    await publish_until_acked(mesh.bars.address, batches)
    async with httpx.AsyncClient(base_url=mesh.gateway.base_url, headers=mesh.headers) as client:

        async def all_final() -> bool:
            reply = await client.get(
                f"/api/v1/charts/{instrument}",
                params={"start": START_S + 60 * (minutes - 3), "indicators": "false"},
            )
            return reply.status_code == 200 and len(reply.json()["bars"]) >= 2

        await _until(all_final, "the last bars final")
    await asyncio.sleep(1.0)
    end = datetime.now(UTC)
    # A small receive buffer, so the kernel cannot hide unbounded sending from the test.
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    host, port = mesh.gateway.base_url.removeprefix("http://").split(":")
    raw.connect((host, int(port)))
    sent_before = await _sent_bars(mesh)
    async with websockets.connect(
        _ws_url(mesh, instrument, mesh.token), sock=raw, max_queue=4, max_size=2**20
    ) as ws:
        start = {
            "type": "start",
            "timeframe": "1m",
            "from": first.isoformat(),
            "to": end.isoformat(),
        }
        await ws.send(json.dumps(start | {"speed": "max"}))
        # Not reading: the count of bars sent must come to rest where the socket buffers
        # filled (the kernel's, a few MB, and the gateway's bound), well before the end of
        # the range; an unbounded sender would go on writing to the end.
        counts = [-1.0, await _sent_bars(mesh) - sent_before]
        deadline = time.monotonic() + WITHIN_SECONDS
        while counts[-1] != counts[-2] and time.monotonic() < deadline:
            await asyncio.sleep(1.5)
            counts.append(await _sent_bars(mesh) - sent_before)
        held = counts[-1]
        assert held == counts[-2], f"still sending to a client that reads nothing: {counts}"
        assert held < minutes * 0.9, counts
        received = [m for m in await _play_to_the_end(ws) if m["type"] == "bars"]
    times = [m["bars"][0]["time"] for m in received if m["bars"][0]["final"]]
    assert len(set(times)) >= minutes - 1  # all of it, once the client reads again
    assert times == sorted(times)
