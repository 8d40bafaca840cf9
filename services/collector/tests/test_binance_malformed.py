"""Malformed frames are counted by kind and returned, never raised out of the decoder."""

from __future__ import annotations

import pytest

from tickmesh.collector.binance import BinanceStreamDecoder, DecodeErrorKind
from tickmesh.v2 import market_pb2

from .exact_values import decimals, prices

GOOD = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":%d,'
    '"p":"%s","q":"%s","T":1,"m":true,"M":true}}'
)

MALFORMED: list[tuple[str, bytes | str, DecodeErrorKind]] = [
    ("truncated", b'{"stream":"btcusdt@trade","data":{"e":"tra', DecodeErrorKind.BAD_JSON),
    ("not json", b"hello", DecodeErrorKind.BAD_JSON),
    ("empty", b"", DecodeErrorKind.BAD_JSON),
    ("binary garbage", b"\xff\xfe\x00", DecodeErrorKind.BAD_JSON),
    (
        "missing price",
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,'
        '"q":"1","T":1,"m":true}}',
        DecodeErrorKind.MISSING_FIELD,
    ),
    (
        "side not bool",
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,'
        '"p":"1","q":"1","T":1,"m":[1]}}',
        DecodeErrorKind.WRONG_TYPE,
    ),
    ("price zero", GOOD % (1, "0.00000000", "1"), DecodeErrorKind.INVALID_VALUE),
    ("negative quantity", GOOD % (1, "10", "-0.5"), DecodeErrorKind.INVALID_VALUE),
    ("nan price", GOOD % (1, "nan", "1"), DecodeErrorKind.INVALID_VALUE),
    ("id beyond int64", GOOD % (2**63, "10", "1"), DecodeErrorKind.INVALID_VALUE),
    (
        "unknown stream",
        '{"stream":"btcusdt@rumours","data":{"e":"rumour"}}',
        DecodeErrorKind.UNKNOWN_STREAM,
    ),
    ("no stream or event", '{"hello":"world"}', DecodeErrorKind.UNKNOWN_STREAM),
    ("unknown raw event", '{"e":"gossip","s":"BTCUSDT"}', DecodeErrorKind.UNKNOWN_STREAM),
    (
        "error reply",
        '{"error":{"code":2,"msg":"Invalid request"},"id":3}',
        DecodeErrorKind.EXCHANGE_ERROR,
    ),
    ("data not object", '{"stream":"btcusdt@trade","data":[1,2]}', DecodeErrorKind.WRONG_TYPE),
]


@pytest.mark.parametrize(("label", "frame", "kind"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_decoder_malformed_frame_returns_error_kind(
    label: str, frame: bytes | str, kind: DecodeErrorKind
) -> None:
    decoder = BinanceStreamDecoder(market_pb2.EXCHANGE_BINANCE_SPOT)
    error = decoder.feed(frame)
    assert error is not None, label
    assert error.kind == kind
    assert len(error.sample) <= 200
    assert decoder.stats.errors[kind] == 1
    assert decoder.stats.last_errors[kind] == error
    assert decoder.stats.trades == 0
    assert decoder.take() == []


def test_decoder_malformed_between_good_frames_keeps_columns_aligned() -> None:
    decoder = BinanceStreamDecoder(market_pb2.EXCHANGE_BINANCE_SPOT)
    frames: list[bytes | str] = [GOOD % (1, "10", "1")]
    frames += [frame for _, frame, _ in MALFORMED]
    frames.append(GOOD % (2, "11", "2"))
    errors = decoder.feed_many(frames)
    assert len(errors) == len(MALFORMED)
    assert decoder.stats.error_count == len(MALFORMED)
    (run,) = decoder.take()
    assert list(run.trade_ids) == [1, 2]
    assert prices(run) == decimals("10.0", "11.0")
    lengths = {len(run.prices), len(run.quantities), len(run.sides), len(run.event_time_ns)}
    assert lengths == {2}
    assert len(run.receive_time_ns) == len(run.types) == 2


def test_decoder_subscribe_reply_counted_as_control() -> None:
    decoder = BinanceStreamDecoder(market_pb2.EXCHANGE_BINANCE_SPOT)
    assert decoder.feed('{"result":null,"id":1}') is None
    assert decoder.feed('{"result":["btcusdt@trade"],"id":2}') is None
    assert decoder.stats.control_replies == 2
    assert decoder.stats.error_count == 0


def test_decoder_usdm_trade_without_x_rejected_as_missing_field() -> None:
    decoder = BinanceStreamDecoder(market_pb2.EXCHANGE_BINANCE_USDM)
    error = decoder.feed(GOOD % (1, "10", "1"))
    assert error is not None
    assert error.kind == DecodeErrorKind.MISSING_FIELD
    assert "X" in error.message
