"""Binance's public daily trade files (data.binance.vision): fetched, verified, cached.

Layout: `{base}/data/spot/daily/{kind}/{SYMBOL}/{SYMBOL}-{kind}-{YYYY-MM-DD}.zip` for spot and
`{base}/data/futures/um/daily/...` for USD-M futures, each beside a `.zip.CHECKSUM` file
holding "<sha256>  <file name>". A file is cached under the state directory only once its
sha256 matches, so a cached zip is always a verified one and a rerun downloads nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from tickmesh.collector.binance_csv import CsvKind

DEFAULT_BASE_URL = "https://data.binance.vision"
MARKET_PREFIXES = {"spot": "data/spot", "usdm": "data/futures/um"}
_CHUNK_BYTES = 1 << 20

# Bytes of the file being downloaded so far, and its size when the server says.
ProgressCallback = Callable[[int, int | None], None]


class VisionError(Exception):
    """A daily file that could not be had."""


class MissingDayError(VisionError):
    """The server has no file for that day (404): not listed yet, or no trading."""


class ChecksumMismatchError(VisionError):
    """A downloaded file whose sha256 differs from its CHECKSUM file; it is not kept."""


@dataclass(frozen=True, slots=True)
class DailyFile:
    """One daily file of one symbol on one market."""

    market: str
    kind: CsvKind
    symbol: str
    day: dt.date

    @property
    def name(self) -> str:
        """The zip's file name, e.g. BTCUSDT-trades-2024-08-08.zip."""
        return f"{self.symbol}-{self.kind.value}-{self.day.isoformat()}.zip"

    @property
    def member(self) -> str:
        """The CSV inside the zip."""
        return self.name.removesuffix(".zip") + ".csv"

    @property
    def path(self) -> str:
        """The path under the base URL (and under the cache directory)."""
        prefix = MARKET_PREFIXES[self.market]
        return f"{prefix}/daily/{self.kind.value}/{self.symbol}/{self.name}"


@dataclass(frozen=True, slots=True)
class VisionConfig:
    """Where the files come from, where they are kept, and how hard to try."""

    cache_dir: Path
    base_url: str = DEFAULT_BASE_URL
    attempts: int = 5
    timeout_s: float = 60.0
    backoff_max_s: float = 30.0


def _transient(error: BaseException) -> bool:
    """Worth another attempt: the network, a timeout, throttling or a server error."""
    if isinstance(error, httpx.TransportError):
        return True
    if isinstance(error, httpx.HTTPStatusError):
        status = error.response.status_code
        return status == 429 or status >= 500
    return False


def parse_checksum(text: str, name: str) -> str:
    """The sha256 hex of a CHECKSUM file ("<sha256>  <name>"); VisionError when unreadable."""
    fields = text.split()
    digest = fields[0].lower() if fields else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise VisionError(f"{name}.CHECKSUM: not a sha256 line: {text[:80]!r}")
    return digest


class VisionClient:
    """Fetches daily files over HTTP into the cache, verified against their CHECKSUM."""

    def __init__(self, config: VisionConfig, http: httpx.AsyncClient) -> None:
        self._config = config
        self._http = http

    def cached(self, file: DailyFile) -> Path:
        """Where the verified zip is kept."""
        return self._config.cache_dir / file.path

    async def fetch(self, file: DailyFile, on_progress: ProgressCallback | None = None) -> Path:
        """The verified zip of one day, from the cache or downloaded (with retries).

        MissingDayError on a 404, ChecksumMismatchError when the bytes do not match.
        """
        target = self.cached(file)
        if target.exists():
            return target
        url = f"{self._config.base_url.rstrip('/')}/{file.path}"
        retrying = AsyncRetrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self._config.attempts),
            wait=wait_exponential(multiplier=0.2, max=self._config.backoff_max_s),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                digest = parse_checksum(await self._get_text(f"{url}.CHECKSUM"), file.name)
                await self._download(url, target, digest, on_progress)
        return target

    async def _get_text(self, url: str) -> str:
        response = await self._http.get(url, timeout=self._config.timeout_s)
        if response.status_code == 404:
            raise MissingDayError(f"{url}: 404, no such file")
        response.raise_for_status()
        return response.text

    async def _download(
        self, url: str, target: Path, digest: str, on_progress: ProgressCallback | None
    ) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        sha = hashlib.sha256()
        try:
            async with self._http.stream("GET", url, timeout=self._config.timeout_s) as response:
                if response.status_code == 404:
                    raise MissingDayError(f"{url}: 404, no such file")
                response.raise_for_status()
                size = response.headers.get("content-length")
                total = int(size) if size is not None and size.isdigit() else None
                done = 0
                with partial.open("wb") as handle:
                    async for chunk in response.aiter_bytes(_CHUNK_BYTES):
                        handle.write(chunk)
                        sha.update(chunk)
                        done += len(chunk)
                        if on_progress is not None:
                            on_progress(done, total)
            if sha.hexdigest() != digest:
                raise ChecksumMismatchError(
                    f"{url}: sha256 {sha.hexdigest()} does not match its CHECKSUM {digest}"
                )
            # Only a verified file gets the cached name: a cached zip needs no second check.
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from start to end, both included; ValueError when end precedes start."""
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    return [start + dt.timedelta(days=offset) for offset in range((end - start).days + 1)]
