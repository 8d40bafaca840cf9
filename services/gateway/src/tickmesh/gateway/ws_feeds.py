"""One fan-out listener per watched symbol for all WebSocket clients, split by timeframe.

The upstream carries every timeframe of a symbol (forming bars of six timeframes per trade),
and a client usually wants one or two. Registering each client with the fan-out handed every
bar to every client; here a symbol's feed hands a bar only to the clients subscribed to its
timeframe, so thousands of clients cost one dictionary lookup per upstream bar, not thousands of
calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tickmesh.gateway.fanout import BarFanout, BarListener
from tickmesh.v1 import market_pb2


@dataclass
class _Feed:
    clients: int = 0
    by_timeframe: dict[int, set[BarListener]] = field(default_factory=dict)

    def on_bar(self, bar: market_pb2.Bar) -> None:
        for listener in tuple(self.by_timeframe.get(bar.timeframe, ())):
            listener(bar)


class SymbolFeeds:
    """Feeds by symbol; the fan-out stream of a symbol is open while any client is attached."""

    def __init__(self) -> None:
        self._feeds: dict[str, _Feed] = {}

    def attach(self, fanout: BarFanout, symbol: str) -> None:
        """A client of `symbol` connected (the upstream opens with the first)."""
        feed = self._feeds.get(symbol)
        if feed is None:
            feed = self._feeds[symbol] = _Feed()
            fanout.add(symbol, feed.on_bar)
        feed.clients += 1

    def subscribe(self, symbol: str, timeframe: int, listener: BarListener) -> None:
        """Hand `symbol`'s bars of `timeframe` to `listener` (which must not block)."""
        self._feeds[symbol].by_timeframe.setdefault(timeframe, set()).add(listener)

    def unsubscribe(self, symbol: str, timeframe: int, listener: BarListener) -> None:
        """Stop handing bars of `timeframe` to `listener`."""
        feed = self._feeds.get(symbol)
        listeners = None if feed is None else feed.by_timeframe.get(timeframe)
        if listeners is not None:
            listeners.discard(listener)

    async def detach(self, fanout: BarFanout, symbol: str, listener: BarListener) -> None:
        """A client left: drop its subscriptions; the last one closes the upstream."""
        feed = self._feeds.get(symbol)
        if feed is None:
            return
        for listeners in feed.by_timeframe.values():
            listeners.discard(listener)
        feed.clients -= 1
        if feed.clients <= 0:
            del self._feeds[symbol]
            await fanout.remove(symbol, feed.on_bar)
