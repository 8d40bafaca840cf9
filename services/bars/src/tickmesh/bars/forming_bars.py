"""A forming bar that changed, named by its book and open time; its update is made when sent.

Forming changes are taken every 10 ms but sent at most once per instrument and timeframe per
250 ms, so at a whole market most of them are replaced before they are sent: making each
one's `BarUpdate` (vwap, twenty fields) when it changed cost more than building the bars. The
ones sent become messages straight from the engine's bar, without the `BarUpdate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from tickmesh.bars.bar_state import BarUpdate
from tickmesh.bars.forming_throttle import BarKey
from tickmesh.v2 import market_pb2

if TYPE_CHECKING:
    from tickmesh.bars.rollup import TimeframeBook


class FormingBar(NamedTuple):
    """The bar of `book` opening at `open_time_ns`, which changed while forming."""

    book: TimeframeBook
    open_time_ns: int

    def key(self) -> BarKey:
        """The throttle key: one forming update per instrument and timeframe per interval."""
        return self.book.forming_key

    def update(self) -> BarUpdate | None:
        """The bar's forming update as it is now; None once it is final or pruned."""
        return self.book.forming_update(self.open_time_ns)

    def message(self) -> market_pb2.Bar | None:
        """The bar's forming message as it is now (`update().to_proto()`); None once final."""
        return self.book.forming_message(self.open_time_ns)
