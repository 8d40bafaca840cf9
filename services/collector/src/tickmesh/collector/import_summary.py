"""The `tickmesh import` summary: what was acknowledged, refused and rejected, and by whom.

The bar service's acknowledgement (PublishResponse.acked_sequence) is cumulative and carries
no per-trade counts, so accepted and duplicate trades cannot be told apart here; the
summary says so rather than print "imported N trades" over refused ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from tickmesh.collector.importer import FileResult
from tickmesh.core.instruments import InstrumentId
from tickmesh.v2 import market_pb2


def summary_lines(
    results: Sequence[FileResult], exchange: market_pb2.Exchange.ValueType
) -> list[str]:
    """The import summary, one file per block, saying where each number comes from."""
    lines: list[str] = []
    for result in results:
        instrument = InstrumentId(exchange, result.symbol)
        if result.already_done:
            lines.append(f"{result.key} ({instrument}): already imported, nothing sent")
            continue
        lines.append(f"{result.key} ({instrument}):")
        lines.append(
            f"  acknowledged by the bar service: {result.acknowledged:,} (it sorts them into "
            "accepted, duplicate, quarantined, non-market and too-late trades; its "
            "acknowledgements carry no per-trade counts: see tickmesh_bars_trades_total)"
        )
        lines.append(
            f"  non-market: {result.non_market:,} (Binance trade files hold market trades only)"
        )
        refused = Counter([*reason.split(": ", 2), "other"][1] for reason in result.refused)
        by_field = ", ".join(f"{name} {count:,}" for name, count in sorted(refused.items()))
        lines.append(
            f"  quarantined by the importer (malformed, not sent): {len(result.refused):,}"
            + (f" [{by_field}]" if by_field else "")
        )
        lines.extend(f"    {reason}" for reason in result.refused[:5])
        if len(result.refused) > 5:
            lines.append(f"    … and {len(result.refused) - 5:,} more")
        lines.append(f"  rejected by the bar service: {result.rejected:,}")
        lines.extend(f"    {reason}" for reason in result.rejected_reasons[:5])
        if result.skipped:
            lines.append(f"  skipped (acknowledged by an earlier run): {result.skipped:,}")
    return lines
