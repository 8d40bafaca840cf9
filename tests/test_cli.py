"""The tickmesh CLI's tool commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tickmesh.analytics.feature_catalog import feature_catalog
from tickmesh.collector.simulator import Market
from tickmesh.core.fixtures import fixtures_root
from tickmesh.mesh.cli import app
from tickmesh.mesh.demo_symbols import demo_instruments


def test_features_lists_every_feature_with_its_version() -> None:
    result = CliRunner().invoke(app, ["features"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    catalog = feature_catalog()
    assert len(catalog) >= 60
    for spec in catalog:
        assert spec.name in result.output
    assert f"{len(catalog)} features, version {catalog[0].version}" in result.output


def test_simulate_help_describes_its_options() -> None:
    result = CliRunner().invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--speed" in result.output
    assert "--market" in result.output
    assert "max" in result.output


def test_demo_help_documents_speed_and_its_defaults() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--speed" in result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "10x for files" in text


def test_demo_registers_each_capture_on_its_own_venue() -> None:
    fixtures = fixtures_root()
    usdm = fixtures / "binance_futures_um/BTCUSDT_ws_trade_2024-08-08T2354_to_2024-08-08T2359.txt"
    spot = fixtures / "binance_spot/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"
    both = (Market.SPOT, Market.USDM)
    assert [str(i) for i in demo_instruments([usdm], ["BTCUSDT"], both)] == ["binance_usdm:BTCUSDT"]
    assert [str(i) for i in demo_instruments([usdm, spot], [], both)] == [
        "binance_spot:ETHUSDT",
        "binance_usdm:BTCUSDT",
    ]
    # No file: the random walk trades every symbol on both venues.
    assert [str(i) for i in demo_instruments([], ["BTCUSDT", "ETHUSDT"], both)] == [
        "binance_spot:BTCUSDT",
        "binance_spot:ETHUSDT",
        "binance_usdm:BTCUSDT",
        "binance_usdm:ETHUSDT",
    ]


def test_demo_refuses_a_bad_speed_naming_the_option() -> None:
    result = CliRunner().invoke(app, ["demo", "--speed", "fast"], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "--speed" in result.output


def test_simulate_logs_json_lines_and_serves_both_venues() -> None:
    tickmesh = Path(sys.executable).parent / "tickmesh"
    process = subprocess.Popen(
        [str(tickmesh), "simulate", "--port", "0", "--speed", "max", "--rate", "50"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        records = [json.loads(process.stderr.readline()) for _ in range(2)]
        assert {record["service"] for record in records} == {"simulator"}
        record = records[-1]
        assert record["level"] == "INFO"
        assert "spot BTCUSDT,ETHUSDT, USD-M BTCUSDT,ETHUSDT" in record["message"]
        assert "speed max" in record["message"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
