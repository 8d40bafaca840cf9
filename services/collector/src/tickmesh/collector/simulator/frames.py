"""Binance's JSON for simulated trades: stream payloads, REST rows, malformed variants."""

from __future__ import annotations

import json
import random
from decimal import Decimal

from tickmesh.collector.simulator.config import Market
from tickmesh.collector.simulator.sources import SimAggTrade, SimTrade


def _bool(value: bool) -> str:
    return "true" if value else "false"


def trade_payload(trade: SimTrade) -> str:
    """The @trade payload in the venue's own field order (USD-M carries X, spot M)."""
    symbol, side = trade.symbol, _bool(trade.is_buyer_maker)
    if trade.market is Market.USDM:
        return (
            f'{{"e":"trade","E":{trade.time_ms},"T":{trade.time_ms},"s":"{symbol}",'
            f'"t":{trade.trade_id},"p":"{trade.price}","q":"{trade.qty}",'
            f'"X":"{trade.trade_type}","m":{side}}}'
        )
    return (
        f'{{"e":"trade","E":{trade.time_ms},"s":"{symbol}","t":{trade.trade_id},'
        f'"p":"{trade.price}","q":"{trade.qty}","T":{trade.time_ms},"m":{side},"M":true}}'
    )


def agg_trade_payload(market: Market, symbol: str, agg: SimAggTrade) -> str:
    """The @aggTrade payload (spot adds the M field)."""
    best_match = ',"M":true' if market is Market.SPOT else ""
    return (
        f'{{"e":"aggTrade","E":{agg.time_ms},"s":"{symbol}","a":{agg.agg_id},'
        f'"p":"{agg.price}","q":"{agg.qty}","f":{agg.first_id},"l":{agg.last_id},'
        f'"T":{agg.time_ms},"m":{_bool(agg.is_buyer_maker)}{best_match}}}'
    )


def _quote(price: str, qty: str) -> str:
    return format(Decimal(price) * Decimal(qty), "f")


def historical_trade_row(trade: SimTrade) -> dict[str, object]:
    """A row of /api/v3/historicalTrades or /fapi/v1/historicalTrades."""
    row: dict[str, object] = {
        "id": trade.trade_id,
        "price": trade.price,
        "qty": trade.qty,
        "quoteQty": _quote(trade.price, trade.qty),
        "time": trade.time_ms,
        "isBuyerMaker": trade.is_buyer_maker,
    }
    if trade.market is Market.SPOT:
        row["isBestMatch"] = True
    return row


def agg_trade_row(market: Market, agg: SimAggTrade) -> dict[str, object]:
    """A row of /api/v3/aggTrades or /fapi/v1/aggTrades."""
    row: dict[str, object] = {
        "a": agg.agg_id,
        "p": agg.price,
        "q": agg.qty,
        "f": agg.first_id,
        "l": agg.last_id,
        "T": agg.time_ms,
        "m": agg.is_buyer_maker,
    }
    if market is Market.SPOT:
        row["M"] = True
    return row


MALFORMED_KINDS = ("truncated", "missing_price", "zero_price", "negative_qty", "not_json")


def malformed_payload(data: str, rng: random.Random) -> tuple[str, str]:
    """A broken copy of a trade payload, of a kind drawn from rng; returns (kind, payload)."""
    kind = rng.choice(MALFORMED_KINDS)
    if kind == "truncated":
        return kind, data[: len(data) // 2]
    if kind == "not_json":
        return kind, "\x00not json"
    payload = json.loads(data)
    if kind == "missing_price":
        payload.pop("p", None)
    elif kind == "zero_price":
        payload["p"] = "0.00000000"
    else:
        payload["q"] = "-" + str(payload.get("q", "1"))
    return kind, json.dumps(payload, separators=(",", ":"))
