"""The simulator's WebSocket streams, driven by real clients over 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tickmesh.collector.binance import BinanceStreamDecoder
from tickmesh.collector.simulator import ExchangeSimulator, Market, SimulatorConfig, SourceSpec
from tickmesh.v2 import market_pb2

USDM_2023 = "binance_futures_um/BTCUSDT_ws_trade_2023-04-04T2358_to_2023-04-05T0006.txt"


async def _recv_json(ws: ClientConnection) -> dict[str, object]:
    async with asyncio.timeout(2.0):
        message = await ws.recv()
    decoded = json.loads(message)
    assert isinstance(decoded, dict)
    return decoded


async def _drain(ws: ClientConnection, idle_s: float = 0.5) -> list[str | bytes]:
    frames: list[str | bytes] = []
    while True:
        try:
            frames.append(await asyncio.wait_for(ws.recv(), idle_s))
        except TimeoutError:
            return frames


async def _collect_for(ws: ClientConnection, seconds: float) -> list[str | bytes]:
    frames: list[str | bytes] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                frames.append(await ws.recv())
    return frames


async def test_simulator_capture_replay_every_trade_in_order(fixtures_dir: Path) -> None:
    config = SimulatorConfig(
        sources=[SourceSpec(fixtures_dir / USDM_2023)],
        speed=None,
        paused=True,
        # Pongs count against 5 incoming messages per second, as on Binance.
        ping_interval_s=0.3,
        pong_timeout_s=1.0,
    )
    async with ExchangeSimulator(config) as sim:
        assert sim.ledger.symbols(Market.USDM) == ["BTCUSDT"]
        url = sim.futures_ws_url + "stream?streams=btcusdt@trade"
        async with websockets.connect(url) as ws:
            await asyncio.sleep(0.05)  # let the server register the subscription
            sim.resume()
            async with asyncio.timeout(20):
                await sim.wait_replay_done()
            frames = await _drain(ws)
        assert sim.stats.pings_sent > 0
        assert sim.stats.pongs_received > 0  # websockets answers the server's pings
        assert sim.stats.closed_for_pong_timeout == 0
    source_lines = (fixtures_dir / USDM_2023).read_text().splitlines()
    # The capture's frames arrive byte for byte, in order.
    assert frames == [line.split(" ", 1)[1] for line in source_lines]
    decoder = BinanceStreamDecoder(market_pb2.EXCHANGE_BINANCE_USDM)
    assert decoder.feed_many(frames) == []
    (run,) = decoder.take()
    assert list(run.trade_ids) == list(range(3535186032, 3535198966 + 1))
    assert list(run.types).count(market_pb2.TRADE_TYPE_INSURANCE_FUND) == 1


async def test_simulator_subscribe_unsubscribe_live_changes_streams() -> None:
    config = SimulatorConfig(
        symbols=["AAAUSDT", "BBBUSDT"], trades_per_second=200.0, speed=1.0, seed=3
    )
    async with ExchangeSimulator(config) as sim, websockets.connect(sim.ws_url + "ws") as ws:
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["aaausdt@trade"], "id": 1}))
        assert await _recv_json(ws) == {"result": None, "id": 1}
        first = await _recv_json(ws)
        assert first["e"] == "trade"  # a raw /ws connection gets unwrapped payloads
        assert first["s"] == "AAAUSDT"
        await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["BBBUSDT@trade"], "id": 2}))
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
        replies: list[dict[str, object]] = []
        async with asyncio.timeout(3):
            while len(replies) < 2:
                message = await _recv_json(ws)
                if "id" in message:
                    replies.append(message)
        assert replies == [
            {"result": None, "id": 2},
            {"result": ["aaausdt@trade", "bbbusdt@trade"], "id": 3},
        ]
        await asyncio.sleep(0.3)  # stay under 5 messages per second
        await ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["aaausdt@trade"], "id": 4}))
        async with asyncio.timeout(3):
            while (await _recv_json(ws)).get("id") != 4:
                pass
        after = [json.loads(frame) for frame in await _collect_for(ws, 0.3)]
        assert after
        assert {frame["s"] for frame in after} == {"BBBUSDT"}


async def test_simulator_control_errors_answered_with_codes() -> None:
    simulator = ExchangeSimulator(SimulatorConfig(speed=1.0))
    async with simulator as sim, websockets.connect(sim.ws_url + "ws") as ws:
        await ws.send("{not json")
        error = await _recv_json(ws)
        assert error["id"] is None
        assert isinstance(error["error"], dict)
        assert error["error"]["code"] == 3
        await ws.send(json.dumps({"method": "RESUBSCRIBE", "params": [], "id": 5}))
        error = await _recv_json(ws)
        assert error["id"] == 5
        assert isinstance(error["error"], dict)
        assert error["error"]["code"] == 2
        await ws.send(json.dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 6}))
        assert await _recv_json(ws) == {"result": None, "id": 6}
        await asyncio.sleep(1.0)  # stay under 5 messages per second
        await ws.send(json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 7}))
        assert await _recv_json(ws) == {"result": True, "id": 7}


async def _recv_until_closed(ws: ClientConnection) -> None:
    async with asyncio.timeout(3):
        while True:
            await ws.recv()


async def test_simulator_more_than_five_messages_per_second_disconnects() -> None:
    async with ExchangeSimulator(SimulatorConfig(speed=1.0)) as sim:
        async with websockets.connect(sim.ws_url + "ws") as ws:
            for request_id in range(6):
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": request_id}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await _recv_until_closed(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert sim.stats.closed_for_rate_limit == 1


async def test_simulator_stream_limit_refuses_connection_and_subscribe() -> None:
    config = SimulatorConfig(speed=1.0, max_streams_per_connection=3)
    async with ExchangeSimulator(config) as sim:
        names = "/".join(f"s{i}usdt@trade" for i in range(4))
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(sim.ws_url + "stream?streams=" + names)
        async with websockets.connect(sim.ws_url + "stream?streams=ausdt@trade") as ws:
            params = [f"s{i}usdt@trade" for i in range(3)]
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": params, "id": 9}))
            reply = await _recv_json(ws)
            assert reply["id"] == 9
            assert reply["error"] == {"code": 2, "msg": "Invalid request: too many streams"}


async def test_simulator_server_pings_and_drops_client_that_never_pongs() -> None:
    config = SimulatorConfig(speed=1.0, ping_interval_s=0.1, pong_timeout_s=0.3)
    async with ExchangeSimulator(config) as sim, aiohttp.ClientSession() as session:
        # autoping=False: this client sees the pings and deliberately never answers.
        async with session.ws_connect(sim.ws_url + "ws", autoping=False) as ws:
            first = await ws.receive(timeout=2)
            assert first.type == aiohttp.WSMsgType.PING
            async with asyncio.timeout(3):
                while not ws.closed:
                    message = await ws.receive()
                    if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
        assert sim.stats.closed_for_pong_timeout == 1
