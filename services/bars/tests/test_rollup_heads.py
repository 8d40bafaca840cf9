"""A head holds exactly a book's forming bars, however many final bars retention keeps."""

from __future__ import annotations

from tickmesh.bars.rollup import TimeframeBook
from tickmesh.core.timeframes import NS_PER_MINUTE, TIMEFRAMES

MINUTE = TIMEFRAMES[0]
FIVE = next(spec for spec in TIMEFRAMES if spec.label == "5m")
DAY_MINUTES = 26 * 60


def merge_minute(book: TimeframeBook, minute: int, close: int) -> None:
    """One minute of trading (one trade's worth of values) merged into the book."""
    at = minute * NS_PER_MINUTE
    book.merge(at, close, close, close, close, at, minute, at, minute, 1, close, 1, False, set())


def day_of_bars(spec_label: str = "1m") -> TimeframeBook:
    """A book with 26 hours of final bars and the two minutes after them forming."""
    spec = next(spec for spec in TIMEFRAMES if spec.label == spec_label)
    book = TimeframeBook(1, "BTCUSDT", spec, True)
    for minute in range(DAY_MINUTES):
        merge_minute(book, minute, 100 + minute % 7)
    book.finalize(DAY_MINUTES * NS_PER_MINUTE, 0, [])
    merge_minute(book, DAY_MINUTES, 90)
    merge_minute(book, DAY_MINUTES + 1, 91)
    return book


def head_times(book: TimeframeBook) -> list[int]:
    return [row[0] for row in book.to_dict(with_finals=False)["bars"]]


def forming_times(book: TimeframeBook) -> list[int]:
    until = book.emitted_until
    assert until is not None
    return sorted(key for key in book.bars if key >= until)


def test_head_of_a_day_of_finals_is_its_forming_bars() -> None:
    book = day_of_bars()
    assert len(book.bars) == DAY_MINUTES + 2
    assert (
        head_times(book)
        == forming_times(book)
        == [
            DAY_MINUTES * NS_PER_MINUTE,
            (DAY_MINUTES + 1) * NS_PER_MINUTE,
        ]
    )


def test_head_keeps_a_bar_far_ahead_and_the_gap_before_it() -> None:
    book = day_of_bars()
    far = DAY_MINUTES + 3 * 24 * 60  # a clock days ahead: more buckets than bars in between
    merge_minute(book, far, 95)
    assert head_times(book) == forming_times(book)
    assert head_times(book)[-1] == far * NS_PER_MINUTE


def test_head_of_a_longer_timeframe_and_after_restore() -> None:
    book = day_of_bars("5m")
    assert head_times(book) == forming_times(book) == [DAY_MINUTES * NS_PER_MINUTE]
    restored = TimeframeBook.from_dict(
        1, "BTCUSDT", FIVE, True, book.to_dict(with_finals=False), book.scales
    )
    restored.add_final_rows(book.take_final_rows())
    assert len(restored.bars) == len(book.bars)
    merge_minute(restored, DAY_MINUTES + 5, 99)
    assert head_times(restored) == forming_times(restored)
    assert len(head_times(restored)) == 2
