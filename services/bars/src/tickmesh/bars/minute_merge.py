"""Merging one batch's minute aggregates into a timeframe's book, one merge per bucket.

A thin symbol's batch spans several minutes; on a 5m-1d book most of them share a bucket.
Merging a bar is associative and the minutes are in time order, so the minutes of one bucket
are combined in local variables and merged once: a merge call (seventeen arguments, the
bar's comparisons, the revision bookkeeping) costs several times the few additions it saves.
"""

from __future__ import annotations

from tickmesh.bars.minutes import MinuteAggregates
from tickmesh.bars.rollup import TimeframeBook

# open, high, low, close, open event and trade id, close event and trade id, volume, quote
# volume, trade count, from source: the leading arguments of BarAccumulator.merge.
PartialBar = tuple[int, int, int, int, int, int, int, int, int, int, int, bool]


def merge_minutes(book: TimeframeBook, minutes: MinuteAggregates, revised: set[int]) -> None:
    """Merge every minute of `minutes` (in time order) into `book`, bucket by bucket."""
    times, highs, lows = minutes.open_time_ns, minutes.high, minutes.low
    volumes, quotes, counts = minutes.volume, minutes.quote_volume, minutes.trade_count
    late, buys, buy_quotes = (
        minutes.out_of_order_trades,
        minutes.taker_buy_volume,
        minutes.taker_buy_quote_volume,
    )
    duration = book.duration_ns
    size = len(times)
    first = 0
    while first < size:
        bucket = times[first] - times[first] % duration
        high, low = highs[first], lows[first]
        volume, quote, count, late_count = volumes[first], quotes[first], counts[first], late[first]
        buy, buy_quote = buys[first], buy_quotes[first]
        last = first
        while last + 1 < size and times[last + 1] - times[last + 1] % duration == bucket:
            last += 1
            if highs[last] > high:
                high = highs[last]
            if lows[last] < low:
                low = lows[last]
            volume += volumes[last]
            quote += quotes[last]
            count += counts[last]
            late_count += late[last]
            # One batch's minutes come from one run: all know their sides, or none do.
            if buy is not None and buy_quote is not None:
                buy += buys[last] or 0
                buy_quote += buy_quotes[last] or 0
        merged = (
            minutes.open[first],
            high,
            low,
            minutes.close[last],
            minutes.open_event_ns[first],
            minutes.open_trade_id[first],
            minutes.close_event_ns[last],
            minutes.close_trade_id[last],
            volume,
            quote,
            count,
            False,
        )
        _merge_bucket(book, times[first], bucket, merged, late_count, buy, buy_quote, revised)
        first = last + 1


def _merge_bucket(
    book: TimeframeBook,
    minute_ns: int,
    bucket: int,
    merged: PartialBar,
    late_count: int,
    buy: int | None,
    buy_quote: int | None,
    revised: set[int],
) -> None:
    """Merge a partial bar starting at `minute_ns` into the book's bar at `bucket`."""
    bar = book.bars.get(bucket)
    until = book.emitted_until
    if bar is not None and until is not None and bucket >= until:
        # A forming bar that exists (nearly every merge of a busy symbol): merge into it
        # here, one call of seventeen arguments fewer than book.merge, same bookkeeping.
        bar.merge(*merged, 0, late_count, buy, buy_quote)
        book.forming_changed.add(bucket)
    else:
        book.merge(minute_ns, *merged, revised, late_count, buy, buy_quote)


def merge_minute(
    books: tuple[TimeframeBook, ...],
    minute_ns: int,
    merged: PartialBar,
    buy: int | None,
    buy_quote: int | None,
    revised: list[set[int]],
) -> None:
    """Merge one minute's partial bar, with no out-of-order trades, into every book."""
    for book, book_revised in zip(books, revised, strict=True):
        bucket = minute_ns - minute_ns % book.duration_ns
        _merge_bucket(book, minute_ns, bucket, merged, 0, buy, buy_quote, book_revised)
