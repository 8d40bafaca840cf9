"""Everything the simulator has emitted, queryable as Binance's REST API answers it.

Every trade is recorded when it is due, whatever happens to the frame that
carries it (dropped connection, reordering), so the collector can backfill any
gap with historicalTrades. Aggregates (aggTrades) are built from consecutive
market trades with the same time, price and side, and klines are computed from
the trades (market trades only, as Binance's klines are).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice

from tickmesh.collector.simulator.config import Market
from tickmesh.collector.simulator.sources import SimAggTrade, SimTrade

KLINE_INTERVALS_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}

KlineRow = list[int | str]


def _text(value: Decimal) -> str:
    return format(value, "f")


@dataclass(slots=True)
class _OpenAggregate:
    agg_id: int
    price: str
    qty: Decimal
    first_id: int
    last_id: int
    time_ms: int
    is_buyer_maker: bool

    def close(self) -> SimAggTrade:
        return SimAggTrade(
            self.agg_id,
            self.price,
            _text(self.qty),
            self.first_id,
            self.last_id,
            self.time_ms,
            self.is_buyer_maker,
        )


@dataclass(slots=True)
class _Bucket:
    open: str
    high: str
    low: str
    close: str
    volume: Decimal
    quote_volume: Decimal
    count: int
    taker_buy_volume: Decimal
    taker_buy_quote: Decimal


class SymbolLedger:
    """One symbol's emitted trades and aggregates, ordered by id."""

    def __init__(self, market: Market, symbol: str, keep: int | None = None) -> None:
        self.market = market
        self.symbol = symbol
        # Trades and aggregates kept (None: all); older ones are forgotten in halves.
        self._keep = keep
        self.trades: list[SimTrade] = []
        self._ids: list[int] = []
        # Times clamped to be non-decreasing so bisect works even on a disordered source.
        self._times: list[int] = []
        self.aggregates: list[SimAggTrade] = []
        self._agg_ids: list[int] = []
        self._open: _OpenAggregate | None = None
        self._closed: list[SimAggTrade] = []

    def record_trade(self, trade: SimTrade) -> bool:
        """Store a trade; False (and ignored) when its id is not above the last one."""
        if self._ids and trade.trade_id <= self._ids[-1]:
            return False
        self.trades.append(trade)
        self._ids.append(trade.trade_id)
        self._times.append(max(trade.time_ms, self._times[-1] if self._times else 0))
        if trade.trade_type == "MARKET":
            self._aggregate(trade)
        if self._keep is not None and len(self.trades) >= 2 * self._keep:
            # Trimming only when twice the cap is reached keeps the cost amortised O(1).
            del self.trades[: self._keep], self._ids[: self._keep], self._times[: self._keep]
        return True

    def record_aggregate(self, aggregate: SimAggTrade) -> None:
        """Store an aggregate that a capture recorded as such."""
        if not self._agg_ids or aggregate.agg_id > self._agg_ids[-1]:
            self._append_aggregate(aggregate)

    def _aggregate(self, trade: SimTrade) -> None:
        current = self._open
        if (
            current is not None
            and current.time_ms == trade.time_ms
            and current.price == trade.price
            and current.is_buyer_maker == trade.is_buyer_maker
            and current.last_id + 1 == trade.trade_id
        ):
            current.qty += Decimal(trade.qty)
            current.last_id = trade.trade_id
            return
        if current is not None:
            self._closed.append(current.close())
        next_id = current.agg_id + 1 if current is not None else self._first_agg_id(trade)
        self._open = _OpenAggregate(
            next_id,
            trade.price,
            Decimal(trade.qty),
            trade.trade_id,
            trade.trade_id,
            trade.time_ms,
            trade.is_buyer_maker,
        )

    def _first_agg_id(self, trade: SimTrade) -> int:
        # Aggregate ids are their own sequence on Binance, smaller than the trade ids.
        return self._agg_ids[-1] + 1 if self._agg_ids else max(1, trade.trade_id // 2)

    def flush_aggregates(self, through_ms: int) -> list[SimAggTrade]:
        """Close aggregates that can no longer grow (time <= through_ms) and return them."""
        if self._open is not None and self._open.time_ms <= through_ms:
            self._closed.append(self._open.close())
            self._open = None
        closed, self._closed = self._closed, []
        for aggregate in closed:
            self._append_aggregate(aggregate)
        return closed

    def _append_aggregate(self, aggregate: SimAggTrade) -> None:
        self.aggregates.append(aggregate)
        self._agg_ids.append(aggregate.agg_id)
        if self._keep is not None and len(self.aggregates) >= 2 * self._keep:
            del self.aggregates[: self._keep], self._agg_ids[: self._keep]

    def historical(self, from_id: int | None, limit: int, market_only: bool) -> list[SimTrade]:
        """Trades from from_id (or the most recent ones), as historicalTrades pages them."""
        start = (
            max(0, len(self.trades) - limit) if from_id is None else bisect_left(self._ids, from_id)
        )
        rows: Iterator[SimTrade] = iter(self.trades[start:])
        if market_only:
            rows = (trade for trade in rows if trade.trade_type == "MARKET")
        return list(islice(rows, limit))

    def agg_trades(
        self, from_id: int | None, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[SimAggTrade]:
        """Aggregates by id, by time window, or the most recent ones."""
        if from_id is not None:
            start = bisect_left(self._agg_ids, from_id)
            return self.aggregates[start : start + limit]
        if start_ms is None and end_ms is None:
            return self.aggregates[-limit:]
        low = start_ms if start_ms is not None else 0
        high = end_ms if end_ms is not None else 2**63
        rows = (agg for agg in self.aggregates if low <= agg.time_ms <= high)
        return list(islice(rows, limit))

    def klines(
        self, interval_ms: int, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[KlineRow]:
        """Binance's 12-column klines built from the market trades, flat bars in gaps."""
        if not self.trades:
            return []
        last_bucket = self._times[-1] // interval_ms * interval_ms
        if end_ms is not None:
            last_bucket = min(last_bucket, end_ms // interval_ms * interval_ms)
        if start_ms is not None:
            first_bucket = -(-start_ms // interval_ms) * interval_ms
            last_bucket = min(last_bucket, first_bucket + (limit - 1) * interval_ms)
        else:
            first_bucket = last_bucket - (limit - 1) * interval_ms
        if last_bucket < first_bucket:
            return []
        first_index = bisect_left(self._times, first_bucket)
        buckets: dict[int, _Bucket] = {}
        for trade in self.trades[first_index:]:
            if trade.time_ms >= last_bucket + interval_ms:
                break
            if trade.trade_type == "MARKET" and trade.time_ms >= first_bucket:
                self._add(buckets, trade.time_ms // interval_ms * interval_ms, trade)
        previous_close = self._close_before(first_index)
        rows: list[KlineRow] = []
        for open_time in range(first_bucket, last_bucket + 1, interval_ms):
            bucket = buckets.get(open_time)
            if bucket is None:
                if previous_close is None:
                    continue  # before the symbol's first trade there is no kline at all
                zero = Decimal(0)
                bucket = _Bucket(*(previous_close,) * 4, zero, zero, 0, zero, zero)
            previous_close = bucket.close
            rows.append(self._row(open_time, interval_ms, bucket))
        return rows

    def _close_before(self, index: int) -> str | None:
        for trade in reversed(self.trades[max(0, index - 1000) : index]):
            if trade.trade_type == "MARKET":
                return trade.price
        return None

    @staticmethod
    def _add(buckets: dict[int, _Bucket], open_time: int, trade: SimTrade) -> None:
        price = Decimal(trade.price)
        qty = Decimal(trade.qty)
        bucket = buckets.get(open_time)
        if bucket is None:
            zero = Decimal(0)
            bucket = buckets[open_time] = _Bucket(
                trade.price, trade.price, trade.price, trade.price, zero, zero, 0, zero, zero
            )
        if price > Decimal(bucket.high):
            bucket.high = trade.price
        if price < Decimal(bucket.low):
            bucket.low = trade.price
        bucket.close = trade.price
        bucket.volume += qty
        bucket.quote_volume += price * qty
        bucket.count += 1
        if not trade.is_buyer_maker:
            bucket.taker_buy_volume += qty
            bucket.taker_buy_quote += price * qty

    @staticmethod
    def _row(open_time: int, interval_ms: int, bucket: _Bucket) -> KlineRow:
        return [
            open_time,
            bucket.open,
            bucket.high,
            bucket.low,
            bucket.close,
            _text(bucket.volume),
            open_time + interval_ms - 1,
            _text(bucket.quote_volume),
            bucket.count,
            _text(bucket.taker_buy_volume),
            _text(bucket.taker_buy_quote),
            "0",
        ]


class TradeLedger:
    """Every venue's symbol ledgers."""

    def __init__(self, keep_per_symbol: int | None = None) -> None:
        self._symbols: dict[tuple[Market, str], SymbolLedger] = {}
        self._keep = keep_per_symbol

    def register(self, market: Market, symbol: str) -> SymbolLedger:
        """The ledger of a symbol, created empty if new (so exchangeInfo can list it)."""
        key = (market, symbol.upper())
        ledger = self._symbols.get(key)
        if ledger is None:
            ledger = self._symbols[key] = SymbolLedger(market, symbol.upper(), self._keep)
        return ledger

    def get(self, market: Market, symbol: str) -> SymbolLedger | None:
        """The ledger of a listed symbol, or None."""
        return self._symbols.get((market, symbol.upper()))

    def symbols(self, market: Market) -> list[str]:
        """The symbols listed on a venue, sorted."""
        return sorted(symbol for venue, symbol in self._symbols if venue is market)

    def trade_count(self) -> int:
        """How many trades have been recorded over every symbol."""
        return sum(len(ledger.trades) for ledger in self._symbols.values())
