"""One Binance combined-stream WebSocket: subscribe live, keep alive, hand frames to a decoder.

Built on the `websockets` library rather than python-binance's socket manager, because
the collector must know exactly when a connection was lost (to backfill the gap), must
pace SUBSCRIBE/UNSUBSCRIBE within Binance's 5 incoming messages per second, must open a
replacement before the 24-hour server close and overlap the two, and must never have
frames dropped by a bounded internal queue; python-binance's ReconnectingWebsocket hides
reconnects, caps reconnect attempts and drops messages when its queue fills.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import websockets
from aiolimiter import AsyncLimiter
from websockets.asyncio.client import ClientConnection

from tickmesh.collector.binance.decoder import BinanceStreamDecoder, DecodeError

log = logging.getLogger(__name__)

FrameSink = Callable[["BinanceConnection"], None]
ErrorSink = Callable[[DecodeError], None]


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """Timing and limits of a Binance stream connection."""

    stream_url: str
    max_streams: int = 1024
    # Binance closes every connection after 24 h; replace it earlier, with an overlap.
    max_age_s: float = 23.5 * 3600
    overlap_s: float = 2.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    # No frame at all for this long (data or control) means a dead connection.
    silence_s: float = 120.0
    # Our SUBSCRIBE/UNSUBSCRIBE messages per second; one of Binance's 5 is left for pongs and pings.
    control_per_second: float = 3.0
    params_per_message: int = 200
    url_streams: int = 100
    open_timeout_s: float = 10.0
    flush_trades: int = 1000


class ConnectionLost(Exception):
    """The connection ended (network, silence, server close); `reason` names why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BinanceConnection:
    """A combined-stream connection whose subscriptions can change while it runs."""

    _request_ids = itertools.count(1)

    def __init__(
        self,
        config: ConnectionConfig,
        decoder: BinanceStreamDecoder,
        streams: Iterable[str],
        on_frames: FrameSink,
        on_error: ErrorSink,
    ) -> None:
        self.config = config
        self.decoder = decoder
        self.wanted: set[str] = set(streams)
        self.subscribed: set[str] = set()
        self._on_frames = on_frames
        self._on_error = on_error
        self._limiter = AsyncLimiter(config.control_per_second, 1.0)
        self._changed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self.opened_at: float | None = None
        self.ready = asyncio.Event()
        self.frames = 0
        # Frames already reported to the frames metric (the sink reports the difference).
        self.frames_counted = 0

    def update(self, streams: Iterable[str]) -> None:
        """Set the streams this connection should carry (applied by SUBSCRIBE/UNSUBSCRIBE)."""
        self.wanted = set(streams)
        self._changed.set()

    async def run(self) -> None:
        """Connect, subscribe and read until the connection ends; raise ConnectionLost."""
        initial = sorted(self.wanted)[: self.config.url_streams]
        url = self.config.stream_url.rstrip("/") + "/stream"
        if initial:
            url += "?streams=" + "/".join(initial)
        try:
            async with websockets.connect(
                url,
                ping_interval=self.config.ping_interval_s,
                ping_timeout=self.config.ping_timeout_s,
                open_timeout=self.config.open_timeout_s,
                close_timeout=1.0,
                max_size=1 << 22,
                max_queue=None,
            ) as ws:
                self._ws = ws
                self.opened_at = time.monotonic()
                self.subscribed = set(initial)
                self.ready.set()
                self._changed.set()  # subscribe what the URL could not carry
                control = asyncio.create_task(self._control_loop(ws), name="binance-control")
                try:
                    await self._read(ws, control)
                finally:
                    control.cancel()
                    await asyncio.gather(control, return_exceptions=True)
        except websockets.ConnectionClosed as closed:
            raise ConnectionLost(
                f"closed ({closed.rcvd.code if closed.rcvd else 'no frame'})"
            ) from closed
        except (OSError, websockets.InvalidHandshake, websockets.InvalidURI) as error:
            raise ConnectionLost(f"connect failed: {error}") from error
        except TimeoutError as error:
            raise ConnectionLost("connect timed out") from error
        finally:
            self._ws = None
            self._flush()

    async def _read(self, ws: ClientConnection, control: asyncio.Task[None]) -> None:
        decoder = self.decoder
        feed = decoder.feed
        flush_at = self.config.flush_trades
        silence = self.config.silence_s
        while True:
            try:
                async with asyncio.timeout(silence):
                    frame = await ws.recv()
            except TimeoutError:
                raise ConnectionLost("silence") from None
            self.frames += 1
            error = feed(frame, time.time_ns())
            if error is not None:
                self._on_error(error)
            elif decoder.pending >= flush_at:
                self._on_frames(self)
            if control.done():
                control.result()

    def _flush(self) -> None:
        if self.decoder.pending or self.frames > self.frames_counted:
            self._on_frames(self)

    def flush(self) -> None:
        """Hand pending trades to the sink (the source's batching timer calls this)."""
        self._flush()

    async def close(self) -> None:
        """Close the connection cleanly (after a replacement took over)."""
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def _control_loop(self, ws: ClientConnection) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._sync(ws)

    async def _sync(self, ws: ClientConnection) -> None:
        add = sorted(self.wanted - self.subscribed)
        remove = sorted(self.subscribed - self.wanted)
        chunk = self.config.params_per_message
        for method, streams in (("UNSUBSCRIBE", remove), ("SUBSCRIBE", add)):
            for start in range(0, len(streams), chunk):
                params = streams[start : start + chunk]
                await self._limiter.acquire()
                message = {"method": method, "params": params, "id": next(self._request_ids)}
                await ws.send(json.dumps(message))
                if method == "SUBSCRIBE":
                    self.subscribed.update(params)
                else:
                    self.subscribed.difference_update(params)
        if self.wanted != self.subscribed:
            self._changed.set()
