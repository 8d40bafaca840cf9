"""Live bars for every WebSocket client of an instrument: one push schedule per timeframe, one frame.

The upstream carries every timeframe of an instrument (forming bars of six timeframes per
trade), and a client usually wants one or two. Each watched instrument and timeframe is a
channel: its
outbox coalesces forming bars and keeps every final bar, at most one push per interval; when
a push is due, its message is encoded and framed once and written to every subscriber's socket
in one pass, with no task woken per client. A client that joins mid-interval gets the next
push; each client thus still gets at most one update per interval and timeframe.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import Counter

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.timeframes import from_proto
from tickmesh.gateway.bar_json import PushEncoder
from tickmesh.gateway.fanout import BarFanout
from tickmesh.gateway.frame_protocol import FrameWriter, text_frame
from tickmesh.gateway.outbox import Outbox
from tickmesh.v2 import market_pb2

# uvloop's timers may fire up to a millisecond early; a push must never precede its interval.
_TIMER_SLACK_SECONDS = 0.002


class ClientSocket:
    """A client's end of the channels: frames go straight to its socket unless it is behind.

    A client whose socket has not taken the previous frames skips forming-only updates (the
    next one carries the latest forming bar); final bars are always written; past
    `max_buffered` bytes not taken, the client is marked slow and `on_slow` is called once.
    """

    def __init__(self, frames: FrameWriter, max_buffered: int, on_slow: Callable[[], None]) -> None:
        self._frames = frames
        self._max_buffered = max_buffered
        self._on_slow = on_slow
        self.slow = False

    def push(self, frame: bytes, has_final: bool) -> bool:
        """Write a `bars` frame, skip it, or refuse it; never block."""
        if self.slow:
            return False
        buffered = self._frames.buffered()
        if buffered > self._max_buffered:
            self.slow = True
            self._on_slow()
            return False
        if buffered and not has_final:
            return False
        return self._frames.write(frame)


@dataclass
class _Channel:
    outbox: Outbox
    subscribers: dict[ClientSocket, None] = field(default_factory=dict)  # an ordered set
    timer: asyncio.TimerHandle | None = None
    timer_due: float = float("inf")  # the due time the timer is set for

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass
class _Feed:
    instrument: InstrumentId
    text: str  # the instrument's text form, as the messages name it
    feeds: InstrumentFeeds
    clients: int = 0
    channels: dict[int, _Channel] = field(default_factory=dict)

    def on_bar(self, bar: market_pb2.Bar) -> None:
        channel = self.channels.get(bar.timeframe)
        if channel is None:
            return
        now = time.monotonic()
        due = channel.outbox.offer(bar, now)
        if due is not None:
            self.schedule(channel, due, now)

    def schedule(self, channel: _Channel, due: float, now: float) -> None:
        if channel.timer is not None:
            if channel.timer_due <= due:
                return  # a push is set already, no later than this one is due
            channel.timer.cancel()  # a closed bar is due before the scheduled forming push
        loop = asyncio.get_running_loop()
        # A due time already past still waits for the loop's next turn, so that the bars of
        # one upstream burst go out together.
        delay = due - now + _TIMER_SLACK_SECONDS if due > now else 0.0
        channel.timer = loop.call_at(loop.time() + delay, self.push, channel)
        channel.timer_due = due

    def push(self, channel: _Channel) -> None:
        channel.timer = None
        now = time.monotonic()
        for label, bars in channel.outbox.due(now):
            frame = text_frame(self.feeds.encoder.bars_message(self.text, label, bars))
            has_final = any(bar.final for bar in bars)
            written = 0
            for subscriber in tuple(channel.subscribers):
                written += subscriber.push(frame, has_final)
            self.feeds.sent.inc(written)
        pending = channel.outbox.next_due()
        if pending is not None:
            self.schedule(channel, pending, now)


class InstrumentFeeds:
    """Feeds by instrument; its fan-out stream is open while any client is attached."""

    def __init__(self, encoder: PushEncoder, interval_seconds: float, sent: Counter) -> None:
        self.encoder = encoder
        self.sent = sent
        self._interval = interval_seconds
        self._feeds: dict[InstrumentId, _Feed] = {}

    def attach(self, fanout: BarFanout, instrument: InstrumentId) -> None:
        """A client of `instrument` connected (the upstream opens with the first)."""
        feed = self._feeds.get(instrument)
        if feed is None:
            feed = self._feeds[instrument] = _Feed(instrument, str(instrument), self)
            fanout.add(instrument, feed.on_bar)
        feed.clients += 1

    def subscribe(self, instrument: InstrumentId, timeframe: int, subscriber: ClientSocket) -> None:
        """Push `instrument`'s bars of `timeframe` to `subscriber` from the next push on."""
        channels = self._feeds[instrument].channels
        channel = channels.get(timeframe)
        if channel is None:
            outbox = Outbox(self._interval)
            outbox.subscribe(from_proto(timeframe).label)
            channel = channels[timeframe] = _Channel(outbox)
        channel.subscribers[subscriber] = None

    def unsubscribe(
        self, instrument: InstrumentId, timeframe: int, subscriber: ClientSocket
    ) -> None:
        """Stop pushing bars of `timeframe` to `subscriber`; the last one ends the channel."""
        feed = self._feeds.get(instrument)
        channel = None if feed is None else feed.channels.get(timeframe)
        if feed is None or channel is None:
            return
        channel.subscribers.pop(subscriber, None)
        if not channel.subscribers:
            channel.close()
            del feed.channels[timeframe]

    async def detach(
        self, fanout: BarFanout, instrument: InstrumentId, subscriber: ClientSocket
    ) -> None:
        """A client left: drop its subscriptions; the last one closes the upstream."""
        feed = self._feeds.get(instrument)
        if feed is None:
            return
        for timeframe in list(feed.channels):
            self.unsubscribe(instrument, timeframe, subscriber)
        feed.clients -= 1
        if feed.clients <= 0:
            for channel in feed.channels.values():
                channel.close()
            del self._feeds[instrument]
            await fanout.remove(instrument, feed.on_bar)
