"""Alert conditions as pure functions of recent final bars."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tickmesh.gateway.alerts.conditions import History, MacdPoint, evaluate
from tickmesh.gateway.schemas import AlertOut


def _alert(**fields: Any) -> AlertOut:
    base: dict[str, Any] = {
        "id": 1,
        "user_id": 1,
        "instrument": "binance_usdm:BTCUSDT",
        "threshold": 100.0,
        "last_triggered": None,
        "created_at": datetime.now(UTC),
    }
    return AlertOut.model_validate(base | fields)


def test_price_above_and_below() -> None:
    assert evaluate(_alert(condition="price_above"), History([99, 101], [1, 1])) is not None
    assert evaluate(_alert(condition="price_above"), History([101, 99], [1, 1])) is None
    assert evaluate(_alert(condition="price_below"), History([101, 99], [1, 1])) is not None


def test_price_crossing_respects_direction() -> None:
    up = History([99, 101], [1, 1])
    down = History([101, 99], [1, 1])
    assert evaluate(_alert(condition="price_crossing", direction="up"), up) is not None
    assert evaluate(_alert(condition="price_crossing", direction="up"), down) is None
    assert evaluate(_alert(condition="price_crossing", direction="any"), down) is not None
    assert evaluate(_alert(condition="price_crossing"), History([101, 102], [1, 1])) is None


def test_percent_change_over_lookback() -> None:
    alert = _alert(condition="percent_change", threshold=5.0, lookback_bars=2)
    fired = evaluate(alert, History([100, 101, 106], [1, 1, 1]))
    assert fired is not None
    assert round(fired.value, 6) == 6.0
    assert evaluate(alert, History([100, 101, 104], [1, 1, 1])) is None
    assert evaluate(alert, History([100, 106], [1, 1])) is None


def test_rsi_and_macd_cross() -> None:
    assert (
        evaluate(_alert(condition="rsi_above", threshold=70), History([1], [1], rsi=75)) is not None
    )
    assert evaluate(_alert(condition="rsi_below", threshold=30), History([1], [1], rsi=35)) is None
    bullish = History([1], [1], macd=(MacdPoint(-1.0, 0.0), MacdPoint(1.0, 0.5)))
    fired = evaluate(_alert(condition="macd_cross", direction="up"), bullish)
    assert fired is not None
    assert "bullish" in fired.message
    assert evaluate(_alert(condition="macd_cross", direction="down"), bullish) is None
    assert (
        evaluate(_alert(condition="macd_cross"), History([1], [1], macd=(MacdPoint(None, 1.0),)))
        is None
    )


def test_volume_spike_against_20_bar_average() -> None:
    alert = _alert(condition="volume_spike", threshold=3.0)
    assert evaluate(alert, History([1] * 21, [10.0] * 20 + [35.0])) is not None
    assert evaluate(alert, History([1] * 21, [10.0] * 20 + [25.0])) is None
    assert evaluate(alert, History([1] * 5, [10.0] * 4 + [100.0])) is None
