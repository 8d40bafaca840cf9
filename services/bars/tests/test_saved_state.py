"""The engine state as the bar service saves it: MessagePack, JSON when an integer outgrows it."""

from __future__ import annotations

import json

from tickmesh.bars import saved_state
from tickmesh.bars.engine import BarEngine
from tickmesh.bars.trades import TradeRun


def test_heads_and_final_rows_come_back_as_their_json_did(xrpeth_trades: TradeRun) -> None:
    engine = BarEngine()
    engine.apply_trades(xrpeth_trades)
    heads, finals = engine.snapshot_changes()
    rows = [row for _, _, _, row in finals]
    assert heads
    assert rows
    # What the JSON the service stored before gave back is the reference.
    assert [saved_state.decode(saved_state.encode(h)) for h in heads] == json.loads(
        json.dumps(heads)
    )
    assert [saved_state.decode(saved_state.encode(r)) for r in rows] == json.loads(json.dumps(rows))
    assert all(len(saved_state.encode(h)) < len(json.dumps(h)) for h in heads)


def test_a_value_with_an_integer_over_64_bits_is_saved_as_json() -> None:
    head = {"version": 2, "books": {"1d": {"bars": [[1, 2**64, -(2**63) - 1, True, None]]}}}
    data = saved_state.encode(head)
    assert data[:1] == b"{"
    assert saved_state.decode(data) == head


def test_json_text_of_a_head_stored_before_migration_0013_is_read() -> None:
    # PostgreSQL prints JSONB with a space after each separator; 0013 kept that text.
    head = {"exchange": 2, "symbol": "BTCUSDT", "order_key": [1, 150], "frontier_ns": None}
    assert saved_state.decode(json.dumps(head).encode()) == head
    assert saved_state.decode(b"[60000000000, 1, 0.1, true]") == [60000000000, 1, 0.1, True]
