"""Every fault mode of the simulator is observable from a real client."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import websockets
from websockets.asyncio.client import ClientConnection

from tickmesh.collector.binance import BinanceStreamDecoder, DecodeErrorKind
from tickmesh.collector.simulator import ExchangeSimulator, FaultConfig, Market, SimulatorConfig
from tickmesh.v2 import market_pb2

SYMBOLS = ["AAAUSDT", "BBBUSDT"]
STREAMS = "stream?streams=aaausdt@trade/bbbusdt@trade"


def _walk(trades: int, faults: FaultConfig, **overrides: object) -> SimulatorConfig:
    config = SimulatorConfig(
        symbols=SYMBOLS,
        random_walk_trades=trades,
        speed=None,
        paused=True,
        seed=11,
        faults=faults,
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


async def _frames_until_idle(ws: ClientConnection, idle_s: float = 0.4) -> list[str | bytes]:
    frames: list[str | bytes] = []
    with contextlib.suppress(TimeoutError):
        while True:
            async with asyncio.timeout(idle_s):
                frames.append(await ws.recv())
    return frames


async def _replay_to_one_client(sim: ExchangeSimulator) -> list[str | bytes]:
    async with websockets.connect(sim.ws_url + STREAMS) as ws:
        await asyncio.sleep(0.05)
        sim.resume()
        async with asyncio.timeout(10):
            await sim.wait_replay_done()
        return await _frames_until_idle(ws)


async def _history_ids(sim: ExchangeSimulator, symbol: str) -> list[int]:
    ids: list[int] = []
    ledger = sim.ledger.get(Market.SPOT, symbol)
    assert ledger is not None
    from_id = ledger.trades[0].trade_id
    async with aiohttp.ClientSession() as session:
        while True:
            url = f"{sim.api_url}/v3/historicalTrades?symbol={symbol}&fromId={from_id}&limit=1000"
            async with session.get(url) as response:
                rows = await response.json()
            if not rows:
                return ids
            ids += [row["id"] for row in rows]
            from_id = ids[-1] + 1


async def _read_until_replay_done(sim: ExchangeSimulator, received: dict[str, set[int]]) -> None:
    async with websockets.connect(sim.ws_url + STREAMS) as ws:
        if sim.replay.paused:
            await asyncio.sleep(0.05)
            sim.resume()
        while True:
            try:
                async with asyncio.timeout(0.3):
                    frame = await ws.recv()
            except TimeoutError:
                if sim.replay.done.is_set():
                    return
                continue
            data = json.loads(frame)["data"]
            received[data["s"]].add(data["t"])


async def test_simulator_dropped_connections_gap_backfilled_by_history() -> None:
    faults = FaultConfig(seed=5, drop_connections=2, drop_within_trades=600)
    async with ExchangeSimulator(_walk(400, faults)) as sim:
        received: dict[str, set[int]] = {symbol: set() for symbol in SYMBOLS}
        closes = 0
        async with asyncio.timeout(15):
            while True:
                try:
                    await _read_until_replay_done(sim, received)
                    break
                except websockets.ConnectionClosed:
                    closes += 1  # reconnect, as the collector does
        assert sim.stats.drop_events == 2
        assert closes >= 1
        for symbol in SYMBOLS:
            history = await _history_ids(sim, symbol)
            assert len(history) == 400
            assert history == list(range(history[0], history[0] + 400))
            missed = set(history) - received[symbol]
            assert received[symbol] <= set(history)
            # Whatever the drops cost, historicalTrades has it, so a backfill is complete.
            assert received[symbol] | missed == set(history)
        assert sum(len(ids) for ids in received.values()) < 800


async def test_simulator_drop_points_repeat_for_same_seed() -> None:
    plans = []
    for _ in range(2):
        sim = ExchangeSimulator(_walk(10, FaultConfig(seed=42)))
        plans.append(sim.replay.schedule_drops(3, 10_000))
    assert plans[0] == plans[1]
    assert len(set(plans[0])) == 3


async def test_simulator_malformed_frames_counted_by_decoder_trades_intact() -> None:
    faults = FaultConfig(seed=1, malformed_rate=0.2)
    async with ExchangeSimulator(_walk(150, faults)) as sim:
        frames = await _replay_to_one_client(sim)
    decoder = BinanceStreamDecoder(market_pb2.EXCHANGE_BINANCE_SPOT)
    errors = decoder.feed_many(frames)
    assert len(errors) == sim.stats.malformed_sent > 0
    kinds = {error.kind for error in errors}
    assert kinds <= {
        DecodeErrorKind.BAD_JSON,
        DecodeErrorKind.MISSING_FIELD,
        DecodeErrorKind.INVALID_VALUE,
    }
    assert decoder.stats.trades == 300


async def test_simulator_duplicates_and_reordering_observable() -> None:
    faults = FaultConfig(seed=2, duplicate_rate=0.1, reorder_rate=0.1)
    async with ExchangeSimulator(_walk(200, faults)) as sim:
        frames = await _replay_to_one_client(sim)
    assert sim.stats.duplicates_sent > 0
    assert sim.stats.reordered > 0
    by_symbol: dict[str, list[int]] = {symbol: [] for symbol in SYMBOLS}
    for frame in frames:
        data = json.loads(frame)["data"]
        by_symbol[data["s"]].append(data["t"])
    for ids in by_symbol.values():
        assert len(ids) - len(set(ids)) > 0  # duplicates arrived
        assert ids != sorted(ids)  # and some arrived out of order
        assert sorted(set(ids)) == list(range(min(ids), min(ids) + 200))  # nothing lost
    assert sum(len(ids) for ids in by_symbol.values()) == 400 + sim.stats.duplicates_sent


async def test_simulator_unanswered_client_pings_close_websockets_client() -> None:
    faults = FaultConfig(answer_pings=False)
    async with ExchangeSimulator(SimulatorConfig(speed=1.0, faults=faults)) as sim:
        url = sim.ws_url + "ws"
        async with websockets.connect(url, ping_interval=0.1, ping_timeout=0.2) as ws:
            async with asyncio.timeout(3):
                await ws.wait_closed()
            # websockets gave up on its keepalive (1011 sent, no close frame back: 1006).
            assert ws.close_code in (1006, 1011)
        assert sim.stats.pings_unanswered > 0


async def test_simulator_stop_pinging_sends_no_pings() -> None:
    faults = FaultConfig(send_pings=False)
    config = SimulatorConfig(speed=1.0, ping_interval_s=0.05, pong_timeout_s=0.1, faults=faults)
    async with ExchangeSimulator(config) as sim, aiohttp.ClientSession() as session:
        async with session.ws_connect(sim.ws_url + "ws", autoping=False) as ws:
            with contextlib.suppress(TimeoutError):
                message = await ws.receive(timeout=0.4)
                raise AssertionError(f"expected silence, got {message.type}")
            assert not ws.closed
        assert sim.stats.pings_sent == 0
        assert sim.stats.closed_for_pong_timeout == 0


async def test_simulator_connection_lifetime_closes_like_24_hour_limit() -> None:
    faults = FaultConfig(max_connection_lifetime_s=0.3)
    async with ExchangeSimulator(SimulatorConfig(speed=1.0, faults=faults)) as sim:
        async with websockets.connect(sim.ws_url + "ws") as ws:
            async with asyncio.timeout(3):
                await ws.wait_closed()
            assert ws.close_code == 1001
        assert sim.stats.closed_for_lifetime == 1


async def test_simulator_control_endpoint_sets_faults_and_drops() -> None:
    async with ExchangeSimulator(SimulatorConfig(speed=1.0)) as sim:
        async with aiohttp.ClientSession() as session:
            async with session.post(sim.rest_url + "/sim/faults", json={"rest_429": 1}) as reply:
                assert reply.status == 200
            async with session.get(sim.api_url + "/v3/time") as reply:
                assert reply.status == 429
            async with session.post(sim.rest_url + "/sim/faults", json={"bogus": 1}) as reply:
                assert reply.status == 400
            async with websockets.connect(sim.ws_url + "ws") as ws:
                async with session.post(sim.rest_url + "/sim/drop") as reply:
                    assert await reply.json() == {"dropped": 1}
                async with asyncio.timeout(3):
                    await ws.wait_closed()
                assert ws.close_code == 1006  # aborted without a close frame
            async with session.get(sim.rest_url + "/sim/status") as reply:
                status = await reply.json()
        assert status["stats"]["connections_dropped"] == 1
        assert status["stats"]["rest_429"] == 1
