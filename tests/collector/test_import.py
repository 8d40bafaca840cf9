"""`tickmesh import`: a Binance trades CSV through the IngestClient into a real bar service.

The spot ETHUSDT capture is written out as Binance's public trades CSV (plain, or zipped
with a header and microsecond times, as since 2025); the bar service's persisted final 1m
bars must equal the bars computed from the capture, also after an interrupted import is
resumed (nothing lost, nothing doubled).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import grpc

from tickmesh.collector.importer import FileResult, import_files
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import shard_of
from tickmesh.v2 import bar_service_pb2, bar_service_pb2_grpc, market_pb2

from ..grpc_helpers import dial
from ..ingest_helpers import fixtures_root
from ..mesh_processes import ServiceProcess
from ..tls_helpers import TestPki
from .harness import MINUTE_NS, MinuteBar, capture_minutes

SPOT_CAPTURE = "binance_spot/ETHUSDT_ws_trade_2024-08-08T2354_to_2024-08-09T0005.txt"
# Full minutes (epoch ns) 23:55..00:04.
MINUTES = [(1_723_161_300 + 60 * i) * 1_000_000_000 for i in range(10)]
SPOT = market_pb2.EXCHANGE_BINANCE_SPOT
HEADER = "id,price,qty,quote_qty,time,is_buyer_maker,is_best_match"


def _csv_rows(micros: bool) -> list[str]:
    rows = []
    path = fixtures_root() / SPOT_CAPTURE
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            data = json.loads(line.partition(" ")[2])["data"]
            price, qty = data["p"], data["q"]
            when = data["T"] * 1000 if micros else data["T"]
            quote = Decimal(price) * Decimal(qty)
            maker = "True" if data["m"] else "False"
            rows.append(f"{data['t']},{price},{qty},{quote},{when},{maker},True")
    return rows


async def _wait_bars(
    address: str,
    expected: dict[int, MinuteBar],
    symbol: str = "ETHUSDT",
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    wrong = ["not read yet"]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while wrong:
                async with dial(address, credentials) as channel:
                    response = await bar_service_pb2_grpc.BarServiceStub(channel).GetBars(
                        bar_service_pb2.GetBarsRequest(
                            instrument=InstrumentId(SPOT, symbol).to_proto(),
                            timeframe=market_pb2.TIMEFRAME_1M,
                            start_time_ns=MINUTES[0],
                            end_time_ns=MINUTES[-1] + MINUTE_NS,
                            limit=100,
                        )
                    )
                built = {bar.open_time_ns: bar for bar in response.bars if bar.final}
                wrong = []
                for minute in MINUTES:
                    bar, want = built.get(minute), expected[minute]
                    # Exact decimals, no tolerance: the CSV's strings summed as integers.
                    texts = () if bar is None else (bar.open, bar.high, bar.low, bar.close)
                    got = tuple(Decimal(text) for text in texts)
                    if (
                        bar is None
                        or got != (want.open, want.high, want.low, want.close)
                        or bar.trade_count != want.count
                        or Decimal(bar.volume) != want.volume
                    ):
                        wrong.append(f"{minute}: {bar} != {want}")
                if wrong:
                    await asyncio.sleep(0.2)
    assert wrong == []


async def test_import_resumes_after_interruption_without_doubling(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    rows = _csv_rows(micros=False)
    csv_path = tmp_path / "ETHUSDT-trades-2024-08-08.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    state = tmp_path / "state.json"

    async def run(max_trades: int | None = None) -> list[FileResult]:
        return await import_files(
            [csv_path],
            bars.address,
            state_path=state,
            max_trades=max_trades,
            chunk_rows=1000,
            show_progress=False,
        )

    first = await run(max_trades=6000)
    assert first[0].submitted == 6000
    saved = json.loads(state.read_text())["files"][str(csv_path.resolve())]
    assert saved == {"last_id": int(rows[5999].split(",")[0]), "done": False}

    second = await run()
    assert (second[0].skipped, second[0].submitted) == (6000, len(rows) - 6000)
    assert json.loads(state.read_text())["files"][str(csv_path.resolve())]["done"] is True

    third = await run()
    assert third[0].already_done
    assert third[0].submitted == 0

    expected, _ = capture_minutes(fixtures_root() / SPOT_CAPTURE)
    await _wait_bars(bars.address, expected)
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"') == len(rows)
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="duplicate"') == 0


async def test_import_command_loads_zipped_csv_with_header(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    archive = tmp_path / "ETHUSDT-trades-2024-08-08.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        content = "\n".join([HEADER, *_csv_rows(micros=True)]) + "\n"
        handle.writestr("ETHUSDT-trades-2024-08-08.csv", content)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickmesh.mesh.cli",
        "import",
        str(archive),
        "--state",
        str(tmp_path / "state.json"),
        env={**os.environ, "TICKMESH_BARS_ADDRESS": bars.address},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, output.decode(errors="replace")
    text = output.decode(errors="replace")
    assert "acknowledged by the bar service: 14,515" in text
    assert "quarantined by the importer (malformed, not sent): 0" in text
    assert "imported" not in text
    expected, _ = capture_minutes(fixtures_root() / SPOT_CAPTURE)
    await _wait_bars(bars.address, expected)


async def test_import_command_sends_each_file_to_its_symbols_bar_shard(
    fresh_database_url: str, fresh_redis_url: str, tmp_path: Path
) -> None:
    # With mutual TLS, as `tickmesh run` serves: the import calls as the importer role.
    pki = TestPki(tmp_path / "tls")
    shards = [
        ServiceProcess(
            "bars",
            {
                "TICKMESH_DATABASE_URL": fresh_database_url,
                "TICKMESH_REDIS_URL": fresh_redis_url,
                "TICKMESH_BARS_COMMIT_INTERVAL_MS": "20",
                "TICKMESH_BARS_SHARD_INDEX": str(index),
                "TICKMESH_BARS_SHARD_COUNT": "2",
            },
            pki,
        )
        for index in range(2)
    ]
    # The same trades under two names, one instrument per shard.
    symbols = ("BTCUSDT", "ETHUSDT")
    assert [shard_of(InstrumentId(SPOT, symbol), 2) for symbol in symbols] == [0, 1]
    rows = _csv_rows(micros=False)
    files = [tmp_path / f"{symbol}-trades-2024-08-08.csv" for symbol in symbols]
    for path in files:
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    try:
        await asyncio.gather(*(shard.start() for shard in shards))
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TICKMESH_")}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tickmesh.mesh.cli",
            "import",
            *map(str, files),
            "--state",
            str(tmp_path / "state.json"),
            "--no-progress",
            env=environment
            | {
                "TICKMESH_BARS_ADDRESSES": ",".join(s.address for s in shards),
                "TICKMESH_IMPORT_TLS_DIR": str(pki.tls_dir("importer")),
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, output.decode(errors="replace")
        expected, _ = capture_minutes(fixtures_root() / SPOT_CAPTURE)
        for shard, symbol in zip(shards, symbols, strict=True):
            await _wait_bars(shard.address, expected, symbol, shard.credentials("reader"))
            accepted = await shard.metric("tickmesh_bars_trades_total", 'outcome="accepted"')
            assert accepted == len(rows), symbol
    finally:
        for shard in shards:
            await shard.kill()


async def test_import_summary_counts_quarantined_rows_with_reasons(
    bars: ServiceProcess, tmp_path: Path
) -> None:
    rows = _csv_rows(micros=False)[:3000]
    first_id = int(rows[0].split(",")[0])
    # Two refused rows the exchange could not have sent: a zero price, a quantity in exponent form.
    rows[10] = rows[10].replace(rows[10].split(",")[1], "0", 1)
    parts = rows[20].split(",")
    rows[20] = ",".join([parts[0], parts[1], "1e-3", *parts[3:]])
    csv_path = tmp_path / "ETHUSDT-trades-2024-08-08.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tickmesh.mesh.cli",
        "import",
        str(csv_path),
        "--state",
        str(tmp_path / "state.json"),
        "--no-progress",
        env={**os.environ, "TICKMESH_BARS_ADDRESS": bars.address},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "(binance_spot:ETHUSDT)" in text
    assert "acknowledged by the bar service: 2,998" in text
    assert "non-market: 0" in text
    assert "quarantined by the importer (malformed, not sent): 2 [price 1, qty 1]" in text
    assert f"row {first_id + 10}: price:" in text
    assert f"row {first_id + 20}: qty:" in text
    assert "rejected by the bar service: 0" in text
    assert "imported" not in text
    assert await bars.metric("tickmesh_bars_trades_total", 'outcome="accepted"') == 2998
