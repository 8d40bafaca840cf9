"""`tickmesh import`: Binance public trade or aggTrade CSV files into the bar service.

Files from data.binance.vision (`<SYMBOL>-trades-<date>.csv` with columns id, price, qty,
quote_qty, time, is_buyer_maker[, is_best_match], or `<SYMBOL>-aggTrades-<date>.csv` with
agg_trade_id, price, quantity, first_trade_id, last_trade_id, transact_time,
is_buyer_maker[, is_best_match]), with or without a header, plain or inside a .zip, are read
in chunks and published through the collector's own IngestClient: numbered batches the bar
service acknowledges once durable, under a fresh stream id per run. The last acknowledged
trade id of every file is kept in a small JSON state file, so a rerun after an interruption
skips what was acknowledged (Binance's files are in id order); the bar service drops any
trade id it already applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import secrets
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tickmesh.collector.binance_csv import (
    CsvKind,
    ImportFileError,
    detect_kind,
    is_header,
    rows_to_run,
)
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.import_state import ImportState, default_state_path, file_key
from tickmesh.collector.ingest_client import IngestClient, IngestConfig
from tickmesh.core.grpc_client import open_channel
from tickmesh.core.instruments import InstrumentId
from tickmesh.core.sharding import shard_address
from tickmesh.core.tls import TlsMaterial
from tickmesh.v2 import market_pb2

EXCHANGES = {
    "spot": market_pb2.EXCHANGE_BINANCE_SPOT,
    "usdm": market_pb2.EXCHANGE_BINANCE_USDM,
}
_SAVE_INTERVAL_S = 0.5


@dataclass(frozen=True, slots=True)
class _Source:
    path: Path
    member: str | None
    symbol: str

    @property
    def key(self) -> str:
        return file_key(self.path, self.member)

    @property
    def label(self) -> str:
        return self.path.name if self.member is None else f"{self.path.name}:{self.member}"


@dataclass(slots=True)
class FileResult:
    """What one import run did with one file (or zip member)."""

    key: str
    symbol: str
    submitted: int = 0
    skipped: int = 0
    last_acked_id: int | None = None
    already_done: bool = False
    # Counted by the importer: trades the bar service acknowledged as durable. Its acks are
    # cumulative sequence numbers (PublishResponse.acked_sequence) and do not say how many
    # of a batch were new or duplicates of trades it already had.
    acknowledged: int = 0
    # Counted by the importer: rows refused before sending (malformed or non-positive values),
    # with the reason of each ("<field>: why").
    refused: list[str] = field(default_factory=list)
    # Trades of batches the bar service rejected (INVALID_ARGUMENT and the like), with its reason.
    rejected: int = 0
    rejected_reasons: list[str] = field(default_factory=list)
    # Binance's public trade files hold market trades only (no X column): always 0 here.
    non_market: int = 0


def symbol_from_name(name: str) -> str:
    """The symbol of a Binance public data file name, e.g. 'BTCUSDT-trades-2024-08-08.csv'."""
    return Path(name).name.split("-", 1)[0].split(".", 1)[0].upper()


def _sources(path: Path, symbol: str | None) -> list[_Source]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [
                info.filename
                for info in archive.infolist()
                if not info.is_dir() and info.filename.lower().endswith(".csv")
            ]
        if not members:
            raise ImportFileError(f"{path}: no .csv inside the zip")
        return [_Source(path, member, symbol or symbol_from_name(member)) for member in members]
    return [_Source(path, None, symbol or symbol_from_name(path.name))]


class _CountingLines:
    """Decoded lines of a binary stream, counting the bytes read (for the progress bar)."""

    def __init__(self, binary: IO[bytes]) -> None:
        self._binary = binary
        self.bytes_read = 0

    def __iter__(self) -> Iterator[str]:
        for raw in self._binary:
            self.bytes_read += len(raw)
            yield raw.decode("utf-8").lstrip("\ufeff")


@contextlib.contextmanager
def _open_binary(source: _Source) -> Iterator[tuple[IO[bytes], int]]:
    if source.member is None:
        with source.path.open("rb") as handle:
            yield handle, source.path.stat().st_size
        return
    with zipfile.ZipFile(source.path) as archive:
        info = archive.getinfo(source.member)
        with archive.open(info) as handle:
            yield handle, info.file_size


class _Importer:
    def __init__(
        self,
        ingest_config: IngestConfig,
        state: ImportState,
        exchange: market_pb2.Exchange.ValueType,
        kind: CsvKind | None,
        chunk_rows: int,
        progress: Progress,
        max_trades: int | None,
        tls: TlsMaterial | None = None,
    ) -> None:
        self._state = state
        self._remaining = max_trades
        self._exchange = exchange
        self._kind = kind
        self._chunk_rows = chunk_rows
        self._progress = progress
        self.ingest = IngestClient(
            ingest_config,
            CollectorMetrics(CollectorRegistry()),
            on_acked=self._on_acked,
            on_rejected=self._on_rejected,
            # The bar service admits the import by the importer's certificate.
            channel_factory=functools.partial(open_channel, tls=tls),
        )
        self._current: FileResult | None = None
        self._task: TaskID | None = None
        self._acked = 0
        self._saved_at = 0.0

    def _on_acked(self, batches: list[market_pb2.TradeBatch]) -> None:
        current = self._current
        if current is None:
            return
        for batch in batches:
            for run in batch.trades:
                if len(run.trade_ids):
                    self._acked += len(run.trade_ids)
                    current.acknowledged += len(run.trade_ids)
                    last = int(run.trade_ids[-1])
                    if current.last_acked_id is None or last > current.last_acked_id:
                        current.last_acked_id = last
        self._state.record(current.key, current.last_acked_id)
        if self._task is not None:
            self._progress.update(self._task, acked=self._acked)
        now = time.monotonic()
        if now - self._saved_at >= _SAVE_INTERVAL_S:
            self._state.save()
            self._saved_at = now

    async def _on_rejected(self, batch: market_pb2.TradeBatch, reason: str) -> None:
        current = self._current
        if current is None:
            return
        current.rejected += sum(len(run.trade_ids) for run in batch.trades)
        if reason not in current.rejected_reasons:
            current.rejected_reasons.append(reason)

    @property
    def remaining(self) -> int | None:
        """Trades this run may still submit (None: no limit)."""
        return self._remaining

    @property
    def progress(self) -> Progress:
        """The progress display the import shows."""
        return self._progress

    def save_state(self) -> None:
        """Write the resume state now."""
        self._state.save()

    @property
    def exhausted(self) -> bool:
        """Whether this run submitted as many trades as it may."""
        return self._remaining is not None and self._remaining <= 0

    async def import_source(self, source: _Source) -> FileResult:
        result = FileResult(source.key, source.symbol)
        if self._state.done(source.key):
            result.already_done = True
            result.last_acked_id = self._state.last_id(source.key)
            return result
        after = self._state.last_id(source.key)
        result.last_acked_id = after
        self._current = result
        self._acked = 0
        with _open_binary(source) as (binary, size):
            self._task = self._progress.add_task(source.label, total=size, acked=0)
            complete = False
            lines = _CountingLines(binary)
            reader = csv.reader(lines)
            kind = self._kind
            chunk: list[list[str]] = []
            for row in reader:
                if self._remaining is not None and len(chunk) >= self._remaining:
                    break
                if not row or not row[0].strip():
                    continue
                if kind is None:
                    kind = detect_kind(row)
                    if is_header(row):
                        continue
                elif is_header(row):
                    continue
                if after is not None and int(row[0]) <= after:
                    result.skipped += 1
                    continue
                chunk.append(row)
                if len(chunk) >= self._chunk_rows:
                    await self._submit(chunk, kind, source.symbol, result)
                    chunk = []
                    self._progress.update(self._task, completed=lines.bytes_read)
            else:
                complete = True
            if chunk:
                assert kind is not None
                await self._submit(chunk, kind, source.symbol, result)
            self._progress.update(self._task, completed=lines.bytes_read)
        await self.ingest.flush()
        # A rejected batch is answered with an error, not an ack: let its callback land.
        await asyncio.sleep(0)
        self._state.record(source.key, result.last_acked_id, done=complete)
        self._state.save()
        self._current = None
        return result

    async def _submit(
        self, rows: list[list[str]], kind: CsvKind, symbol: str, result: FileResult
    ) -> None:
        await self.ingest.wait_room(len(rows))
        chunk = rows_to_run(rows, kind, self._exchange, symbol)
        result.refused += chunk.refused
        if len(chunk.run.trade_ids):
            self.ingest.submit([chunk.run])
        result.submitted += len(chunk.run.trade_ids)
        if self._remaining is not None:
            self._remaining -= len(rows)


def import_progress(console: Console, show: bool) -> Progress:
    """The import's progress display: bytes read and trades acknowledged per file."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[acked]:,} trades acked"),
        TimeRemainingColumn(),
        console=console,
        disable=not show,
    )


async def import_files(
    paths: Sequence[Path],
    bars_address: str | Sequence[str],
    *,
    state_path: Path | None = None,
    exchange: market_pb2.Exchange.ValueType = market_pb2.EXCHANGE_BINANCE_SPOT,
    symbol: str | None = None,
    kind: CsvKind | None = None,
    chunk_rows: int = 5000,
    max_trades: int | None = None,
    max_buffered_trades: int = 200_000,
    connect_timeout_s: float = 30.0,
    show_progress: bool = True,
    console: Console | None = None,
    tls: TlsMaterial | None = None,
    progress: Progress | None = None,
) -> list[FileResult]:
    """Import Binance trade/aggTrade CSVs (or zips) resumably; stop after `max_trades` new ones.

    `bars_address` is one bar service, or every bar shard's address in shard order: each
    file then goes to the shard owning its instrument (tickmesh.core.sharding). A caller's
    `progress` (already started, with an `acked` field) is shared rather than made here.
    """
    addresses = (bars_address,) if isinstance(bars_address, str) else tuple(bars_address)
    state = ImportState.load(state_path or default_state_path())
    sources = [source for path in paths for source in _sources(path, symbol)]
    by_shard: dict[str, list[_Source]] = {}
    for source in sources:
        instrument = InstrumentId(exchange, source.symbol)
        by_shard.setdefault(shard_address(instrument, addresses), []).append(source)
    shared = progress is not None
    if progress is None:
        progress = import_progress(console or Console(stderr=True), show_progress)
    results: list[FileResult] = []
    remaining = max_trades
    for address, shard_sources in by_shard.items():
        config = IngestConfig(
            address,
            f"import-{secrets.token_hex(6)}",
            max_buffered_trades=max(max_buffered_trades, chunk_rows),
        )
        importer = _Importer(config, state, exchange, kind, chunk_rows, progress, remaining, tls)
        results += await _import_to_shard(
            importer, address, shard_sources, connect_timeout_s, shared
        )
        remaining = importer.remaining
        if importer.exhausted:
            break
    return results


async def _import_to_shard(
    importer: _Importer,
    address: str,
    sources: list[_Source],
    connect_timeout_s: float,
    shared_progress: bool = False,
) -> list[FileResult]:
    """Import `sources` over one ingest stream to the bar service at `address`."""
    runner = asyncio.create_task(importer.ingest.run(), name="import-ingest")
    results: list[FileResult] = []
    try:
        try:
            async with asyncio.timeout(connect_timeout_s):
                await importer.ingest.wait_connected()
        except TimeoutError:
            raise ConnectionError(f"the bar service at {address} is unreachable") from None
        with contextlib.nullcontext() if shared_progress else importer.progress:
            for source in sources:
                if importer.exhausted:
                    break
                results.append(await importer.import_source(source))
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        importer.save_state()
    return results
