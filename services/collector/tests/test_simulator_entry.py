"""The simulator's entry points: argument parsing for `tickmesh simulate` and run_simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tickmesh.collector.simulator import Market, SimulatorConfig, parse_args, run_simulator


def test_simulator_parse_args_files_speed_seed_port() -> None:
    config = parse_args(["a.csv", "b.txt", "--speed", "10x", "--seed", "3", "--port", "0"])
    assert [spec.path for spec in config.sources] == [Path("a.csv"), Path("b.txt")]
    assert config.speed == 10.0
    assert config.seed == 3
    assert config.port == 0
    assert not config.uses_random_walk()


def test_simulator_parse_args_random_walk_full_speed() -> None:
    config = parse_args(["--speed", "max", "--symbols", "btcusdt, solusdt", "--market", "usdm"])
    assert config.speed is None
    assert config.symbols == ["BTCUSDT", "SOLUSDT"]
    assert config.random_walk_market is Market.USDM
    assert config.uses_random_walk()


async def test_simulator_run_until_replay_done_returns_stats() -> None:
    config = SimulatorConfig(symbols=["AUSDT"], random_walk_trades=25, speed=None)
    async with asyncio.timeout(5):
        stats = await run_simulator(config, exit_when_done=True)
    assert stats.trades_emitted == 25
