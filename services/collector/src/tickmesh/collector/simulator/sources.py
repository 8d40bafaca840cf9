"""Trade sources for the simulator: recorded captures, Binance trade CSVs, a random walk.

Every source is a lazy iterator of ``SimEvent`` ordered by ``at_ns``, the clock the
replay paces itself by (a capture's local receive time, otherwise the trade time).
"""

from __future__ import annotations

import csv
import heapq
import io
import random
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from tickmesh.collector.simulator.config import Market, SimulatorConfig, SourceSpec


@dataclass(frozen=True, slots=True)
class SimTrade:
    """One exchange trade; prices and quantities keep their exchange strings."""

    market: Market
    symbol: str
    trade_id: int
    price: str
    qty: str
    time_ms: int
    is_buyer_maker: bool
    trade_type: str = "MARKET"


@dataclass(frozen=True, slots=True)
class SimAggTrade:
    """One aggregate trade: trades first_id..last_id of one taker at one price."""

    agg_id: int
    price: str
    qty: str
    first_id: int
    last_id: int
    time_ms: int
    is_buyer_maker: bool


@dataclass(frozen=True, slots=True)
class SimEvent:
    """Something to publish on a stream: a trade, a captured aggregate or a raw frame."""

    at_ns: int
    market: Market
    stream: str
    data: str | None = None
    trade: SimTrade | None = None
    agg: SimAggTrade | None = None


class _Line(msgspec.Struct):
    stream: str
    data: msgspec.Raw


class _CapturedTrade(msgspec.Struct):
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool
    X: str = "MARKET"


class _CapturedAgg(msgspec.Struct):
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741 - Binance's field name
    T: int
    m: bool


_line_decoder = msgspec.json.Decoder(_Line)
_trade_decoder = msgspec.json.Decoder(_CapturedTrade)
_agg_decoder = msgspec.json.Decoder(_CapturedAgg)
_STREAM_SYMBOL = re.compile(rb'"stream":"([a-z0-9]+)@')


def _local_ns(token: bytes) -> int:
    """A capture's local timestamp in ns, whatever unit the recorder used."""
    if b"." in token:
        return int(float(token) * 1e9)
    value = int(token)
    if value > 10**17:
        return value
    if value > 10**14:
        return value * 1_000
    if value > 10**11:
        return value * 1_000_000
    return value * 1_000_000_000


def scan_capture(path: Path) -> tuple[Market, set[str]]:
    """Read a capture once to find its venue and its symbols (upper case)."""
    raw = path.read_bytes()
    symbols = {match.decode().upper() for match in _STREAM_SYMBOL.findall(raw)}
    first_line = raw.split(b"\n", 1)[0]
    is_futures = (
        b"fstream" in first_line
        or b'"X":"' in raw
        or b"@depth@0ms" in raw
        or any(word in path.name.lower() for word in ("usdm", "futures"))
    )
    return (Market.USDM if is_futures else Market.SPOT), symbols


def iter_capture(path: Path, market: Market) -> Iterator[SimEvent]:
    """Replay a capture: hftbacktest "<ts> <json>" lines or cryptofeed "<ts>: <json>" lines."""
    with path.open("rb") as handle:
        for line in handle:
            if line.startswith((b"wss://", b"ws://")) or not line.strip():
                continue  # cryptofeed's first line is the subscription URL
            token, _, payload = line.partition(b" ")
            try:
                frame = _line_decoder.decode(payload)
            except msgspec.DecodeError:
                continue  # e.g. a REST depth snapshot the recorder interleaved
            at_ns = _local_ns(token.rstrip(b":"))
            kind = frame.stream.partition("@")[2]
            data = bytes(frame.data).decode()
            if kind == "trade":
                trade = _trade_decoder.decode(frame.data)
                sim = SimTrade(
                    market, trade.s, trade.t, trade.p, trade.q, trade.T, trade.m, trade.X
                )
                yield SimEvent(at_ns, market, frame.stream, data, trade=sim)
            elif kind == "aggTrade":
                agg = _agg_decoder.decode(frame.data)
                sim_agg = SimAggTrade(agg.a, agg.p, agg.q, agg.f, agg.l, agg.T, agg.m)
                yield SimEvent(at_ns, market, frame.stream, data, agg=sim_agg)
            else:
                yield SimEvent(at_ns, market, frame.stream, data)


def _csv_rows(path: Path) -> Iterator[list[str]]:
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            member = next(name for name in archive.namelist() if name.lower().endswith(".csv"))
            with archive.open(member) as raw:
                yield from csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        return
    with path.open(encoding="utf-8", newline="") as text:
        yield from csv.reader(text)


def csv_symbol(path: Path) -> str:
    """The symbol a Binance Vision file name starts with (``BTCUSDT-trades-...``)."""
    return path.name.split("-", 1)[0].split(".", 1)[0].upper()


def iter_trade_csv(path: Path, market: Market, symbol: str) -> Iterator[SimEvent]:
    """Replay Binance's trade CSV: id,price,qty,quote_qty,time,is_buyer_maker[,best_match]."""
    stream = f"{symbol.lower()}@trade"
    for row in _csv_rows(path):
        if not row or not row[0].strip().isdigit():
            continue  # the optional header
        time_value = int(row[4])
        # Binance Vision switched spot files to microseconds in 2025.
        time_ms = time_value // 1000 if time_value > 10**14 else time_value
        is_buyer_maker = row[5].strip().lower() in ("true", "1")
        trade = SimTrade(market, symbol, int(row[0]), row[1], row[2], time_ms, is_buyer_maker)
        yield SimEvent(time_ms * 1_000_000, market, stream, trade=trade)


def _walk_symbol(
    symbol: str, market: Market, seed: int, rate: float, start_ms: int, count: int | None
) -> Iterator[SimEvent]:
    # A string seed is hashed with SHA-512, so the walk is the same in every process.
    rng = random.Random(f"{seed}:{symbol}")
    price_decimals, qty_decimals = (8, 8) if market is Market.SPOT else (2, 3)
    price_cents = rng.randint(1_000, 5_000_000)
    trade_id = rng.randrange(1_000_000, 100_000_000)
    time_ms = start_ms
    stream = f"{symbol.lower()}@trade"
    emitted = 0
    while count is None or emitted < count:
        time_ms += max(1, round(rng.expovariate(rate) * 1000.0))
        is_buyer_maker = rng.random() < 0.5
        price_cents = max(1, price_cents + rng.choice((-3, -2, -1, 0, 1, 2, 3)))
        # A taker order fills one to three makers; later fills may walk the book a tick.
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            if count is not None and emitted >= count:
                break
            if rng.random() < 0.3:
                price_cents = max(1, price_cents + (-1 if is_buyer_maker else 1))
            lots = rng.randint(1, 2_000)
            # Integer arithmetic, never a float: the strings are exact, as Binance's are.
            price = fixed_point(price_cents, 2, price_decimals)
            qty = fixed_point(lots, 3, qty_decimals)
            trade = SimTrade(market, symbol, trade_id, price, qty, time_ms, is_buyer_maker)
            yield SimEvent(time_ms * 1_000_000, market, stream, trade=trade)
            trade_id += 1
            emitted += 1


def fixed_point(mantissa: int, scale: int, decimals: int) -> str:
    """mantissa * 10**-scale written with `decimals` decimals (decimals >= scale)."""
    whole, fraction = divmod(mantissa, 10**scale)
    return f"{whole}.{fraction:0{scale}d}{'0' * (decimals - scale)}"


def random_walk(
    symbols: Iterable[str],
    market: Market,
    *,
    seed: int,
    trades_per_second: float,
    start_ms: int,
    count: int | None = None,
) -> Iterator[SimEvent]:
    """A seeded random walk per symbol with contiguous trade ids, merged by time."""
    walks = [
        _walk_symbol(symbol.upper(), market, seed, trades_per_second, start_ms, count)
        for symbol in symbols
    ]
    return heapq.merge(*walks, key=lambda event: event.at_ns)


# The random walk quotes cents (2 decimals) and lots of 0.001.
WALK_INCREMENTS = ("0.01", "0.001")
_PRICE_QTY = re.compile(rb'"s":"([A-Za-z0-9]+)"[^}]*?"p":"([0-9.]+)","q":"([0-9.]+)"')


def _decimals(text: bytes) -> int:
    return len(text.partition(b".")[2].rstrip(b"0"))


def scan_increments(path: Path) -> dict[str, tuple[str, str]]:
    """Tick and step size per symbol of a capture, from the most decimals its trades carry.

    A real venue's exchangeInfo gives them; for a replayed capture the finest price and
    quantity seen is the tick and step the recorded venue had (as exact as can be known).
    """
    finest: dict[str, tuple[int, int]] = {}
    for match in _PRICE_QTY.finditer(path.read_bytes()):
        symbol = match.group(1).decode().upper()
        price, quantity = _decimals(match.group(2)), _decimals(match.group(3))
        seen = finest.get(symbol, (0, 0))
        finest[symbol] = (max(seen[0], price), max(seen[1], quantity))
    return {
        symbol: (_increment(price), _increment(quantity))
        for symbol, (price, quantity) in finest.items()
    }


def _increment(decimals: int) -> str:
    return "1" if decimals == 0 else f"0.{'0' * (decimals - 1)}1"


def source_increments(config: SimulatorConfig) -> dict[tuple[Market, str], tuple[str, str]]:
    """(tick size, step size) of every symbol the simulator plays, where they can be known.

    Captures are scanned; random-walk symbols use WALK_INCREMENTS. CSV files are not scanned
    (they can hold millions of rows), so their symbols are listed without increments.
    """
    found: dict[tuple[Market, str], tuple[str, str]] = {}
    for spec in config.sources:
        if spec.path.name.lower().endswith((".csv", ".zip")):
            continue
        market = spec.market or scan_capture(spec.path)[0]
        for symbol, increments in scan_increments(spec.path).items():
            found[(market, symbol)] = increments
    if config.uses_random_walk():
        for market in config.walk_markets():
            for symbol in config.symbols:
                found[(market, symbol.upper())] = WALK_INCREMENTS
    if config.whole_market is not None:
        from tickmesh.collector.simulator.whole_market import whole_market_instruments

        for market, names in whole_market_instruments(config.whole_market).items():
            found.update(((market, name), WALK_INCREMENTS) for name in names)
    return found


def open_sources(
    config: SimulatorConfig, now_ms: int
) -> tuple[Iterator[SimEvent], dict[Market, set[str]]]:
    """Every configured source merged by pacing time, and the symbols each venue lists."""
    streams: list[Iterator[SimEvent]] = []
    symbols: dict[Market, set[str]] = {Market.SPOT: set(), Market.USDM: set()}
    for spec in config.sources:
        streams.append(_open_file(spec, symbols))
    if config.whole_market is not None:
        # Imported here: the whole-market source is built on this module's event types.
        from tickmesh.collector.simulator.whole_market import (
            whole_market_events,
            whole_market_instruments,
        )

        for market, names in whole_market_instruments(config.whole_market).items():
            symbols[market].update(names)
        streams.append(
            whole_market_events(
                config.whole_market, seed=config.seed, start_ms=config.start_time_ms
            )
        )
    if config.uses_random_walk():
        names = [symbol.upper() for symbol in config.symbols]
        start = config.start_time_ms if config.start_time_ms is not None else now_ms
        for index, market in enumerate(config.walk_markets()):
            symbols[market].update(names)
            streams.append(
                random_walk(
                    names,
                    market,
                    # Each venue its own walk: the same symbol trades at other prices there.
                    seed=config.seed + index,
                    trades_per_second=config.trades_per_second,
                    start_ms=start,
                    count=config.random_walk_trades,
                )
            )
    return heapq.merge(*streams, key=lambda event: event.at_ns), symbols


def file_instruments(spec: SourceSpec) -> tuple[Market, set[str]]:
    """The venue a recorded file comes from and the symbols it holds (the demo registers them)."""
    if spec.path.name.lower().endswith((".csv", ".zip")):
        symbol = (spec.symbol or csv_symbol(spec.path)).upper()
        # Binance Vision keeps USD-M files under data/futures/um/; its spot files elsewhere.
        path = str(spec.path).lower()
        futures = "futures" in path or "usdm" in path
        return spec.market or (Market.USDM if futures else Market.SPOT), {symbol}
    detected, found = scan_capture(spec.path)
    return spec.market or detected, found


def _open_file(spec: SourceSpec, symbols: dict[Market, set[str]]) -> Iterator[SimEvent]:
    market, found = file_instruments(spec)
    symbols[market].update(found)
    if spec.path.name.lower().endswith((".csv", ".zip")):
        (symbol,) = found
        return iter_trade_csv(spec.path, market, symbol)
    return iter_capture(spec.path, market)
