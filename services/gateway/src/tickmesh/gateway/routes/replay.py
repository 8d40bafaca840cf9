"""`/ws/replay/{instrument}`: stored history played back in the live socket's own messages.

The client authenticates as on `/ws/{instrument}`, then sends `start` (timeframe, from, to,
speed) and may later send `pause`, `resume`, `seek`, `speed` or another `start`. The gateway
plays BarService.Replay and AnalyticsService.Replay merged in commit-time order (`MergedReplay`)
on its own clock (`ReplayClock`) and sends `bars` and `indicators` messages shaped exactly as
the live socket's, plus `replay` status messages (state, position, speed). A browser that does
not keep up holds the replay: nothing more is read from the upstreams until its socket drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from tickmesh.core.timeframes import BY_LABEL, from_proto
from tickmesh.gateway.bar_json import bars_message_text, pushed_bar_json
from tickmesh.gateway.deps import GatewayServices, get_services
from tickmesh.gateway.market_views import indicators_message, ns_from_utc, utc_from_ns
from tickmesh.gateway.replay_clock import ReplayClock
from tickmesh.gateway.replay_feed import MergedReplay, ReplayItem, UpstreamFailed
from tickmesh.gateway.replay_protocol import (
    ClientMessage,
    PauseMessage,
    PingMessage,
    ResumeMessage,
    SeekMessage,
    Speed,
    SpeedMessage,
    StartMessage,
    parse_message,
    speed_value,
)
from tickmesh.gateway.ws_admission import (
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    Admission,
    admitted,
    close_or_abort,
)

router = APIRouter(tags=["websocket"])
log = logging.getLogger(__name__)

ROUTE = "/ws/replay/{instrument}"
# Bytes the browser may leave untaken before the replay holds: a few hundred messages.
MAX_UNSENT_BYTES = 256 * 1024
_DRAIN_POLL_SECONDS = 0.01
_STATUS_EVERY_SECONDS = 1.0


@dataclass
class _Playback:
    """One started replay: its range, its merged upstreams, its clock and the task playing it."""

    start: StartMessage
    start_ns: int
    end_ns: int
    feed: MergedReplay
    clock: ReplayClock
    task: asyncio.Task[None] | None = None
    ended: bool = False

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.feed.close()


class _ReplaySession:
    """A client's replay socket: its control loop and at most one playback at a time."""

    def __init__(
        self, websocket: WebSocket, services: GatewayServices, admission: Admission
    ) -> None:
        self.websocket = websocket
        self.services = services
        self.admission = admission
        self.instrument = str(admission.instrument)
        self.playback: _Playback | None = None
        self.changed = asyncio.Event()  # wakes a waiting player on pause, resume or speed
        self.last_status = 0.0
        self.bucket = services.ws_guard.message_bucket()
        self.ending: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()

    def end(self, reason: str, text: str) -> None:
        """End the session with a 1008 close saying `text` (the first call wins)."""
        if not self.ending.done():
            self.ending.set_result((reason, text))

    async def send(self, message: dict[str, Any] | str, kind: str) -> None:
        """Send once the browser has taken what came before: a slow reader holds the replay."""
        frames = self.admission.frames
        # Polled: the transport's write buffer offers no drain event through the frame writer.
        while frames.buffered() > MAX_UNSENT_BYTES:  # noqa: ASYNC110
            await asyncio.sleep(_DRAIN_POLL_SECONDS)
        text = message if isinstance(message, str) else json.dumps(message)
        await self.websocket.send_text(text)
        self.services.metrics.ws_messages.labels(type=kind).inc()

    async def status(self, state: str | None = None) -> None:
        """Tell the client where the replay is."""
        playback = self.playback
        if playback is None:
            return
        clock = playback.clock
        if state is None:
            state = "ended" if playback.ended else "paused" if clock.paused else "playing"
        self.last_status = time.monotonic()
        speed: Speed = "max" if clock.speed == 0 else clock.speed
        end = utc_from_ns(playback.end_ns).isoformat()
        await self.send(
            {
                "type": "replay",
                "state": state,
                "instrument": self.instrument,
                "timeframe": playback.start.timeframe,
                "from": utc_from_ns(playback.start_ns).isoformat(),
                "to": end,
                "speed": speed,
                "position": utc_from_ns(max(clock.position_ns(), 0)).isoformat(),
            },
            "replay",
        )

    async def error(self, detail: str) -> None:
        """Answer a bad message; the session goes on."""
        await self.send({"type": "error", "detail": detail}, "error")

    async def receive_loop(self) -> None:
        """Handle the client's messages until it leaves."""
        while True:
            try:
                raw = await self.websocket.receive_text()
            except WebSocketDisconnect as gone:
                if gone.code == MESSAGE_TOO_BIG:
                    self.services.ws_guard.refused(
                        "message_too_big", self.instrument, "oversized message"
                    )
                raise
            if not self.bucket.take():
                self.end("message_rate", f"message rate over {self.bucket.per_second:g} per second")
                return
            message = parse_message(raw)
            if isinstance(message, str):
                await self.error(message)
                continue
            await self.handle(message)

    async def handle(self, message: ClientMessage) -> None:
        """Apply one valid client message."""
        if isinstance(message, PingMessage):
            await self.send({"type": "pong"}, "pong")
            return
        if isinstance(message, StartMessage):
            start_ns = ns_from_utc(message.start)
            # No `to`: up to now, fixed here so that a later seek replays the same range.
            end_ns = time.time_ns() if message.end is None else ns_from_utc(message.end)
            if start_ns >= end_ns:
                await self.error("from: after now, so there is nothing to replay yet")
                return
            await self.begin(message, start_ns, end_ns, start_ns, None)
            return
        playback = self.playback
        if playback is None:
            await self.error(f"{message.type}: no replay yet; send start first")
            return
        clock = playback.clock
        if isinstance(message, PauseMessage):
            clock.pause()
        elif isinstance(message, ResumeMessage):
            clock.resume()
        elif isinstance(message, SpeedMessage):
            clock.set_speed(speed_value(message.speed))
        elif isinstance(message, SeekMessage):
            at_ns = ns_from_utc(message.time)
            if not playback.start_ns <= at_ns < playback.end_ns:
                await self.error("time: outside the replayed range [from, to)")
                return
            await self.begin(playback.start, playback.start_ns, playback.end_ns, at_ns, clock)
            return
        self.changed.set()
        await self.status()

    async def begin(
        self,
        start: StartMessage,
        start_ns: int,
        end_ns: int,
        at_ns: int,
        clock: ReplayClock | None,
    ) -> None:
        """(Re)open the upstreams at `at_ns` and play; a seek keeps the clock's state."""
        if self.playback is not None:
            await self.playback.stop()
            self.playback = None
        if clock is None:
            clock = ReplayClock(at_ns, speed_value(start.speed))
        else:
            clock.seek(at_ns)
        feed = MergedReplay(
            self.services.backends,
            self.admission.instrument,
            BY_LABEL[start.timeframe].proto,
            at_ns,
            end_ns,
        )
        self.playback = _Playback(start, start_ns, end_ns, feed, clock)
        await self.status()
        self.playback.task = asyncio.create_task(self.play(self.playback), name="replay-play")

    async def play(self, playback: _Playback) -> None:
        """Send the merged stream, each item when the clock reaches its commit time."""
        feed, clock = playback.feed, playback.clock
        try:
            while True:
                item = await feed.next()
                while feed.warnings:
                    await self.send({"type": "warning", "detail": feed.warnings.pop(0)}, "warning")
                if item is None:
                    playback.ended = True
                    await self.status()
                    return
                key = item.committed_at_ns or clock.position_ns()
                await self.wait_until_due(clock, key)
                held = self.admission.frames.buffered() > MAX_UNSENT_BYTES
                await self.send(
                    self.message(item), "bars" if item.bar is not None else "indicators"
                )
                if held:
                    clock.seek(key)  # the browser held us: go on from here, no catch-up burst
                clock.delivered(key)
                await self.tick()
        except UpstreamFailed as failed:
            playback.ended = True
            await self.error(str(failed))
            await self.status("failed")

    async def tick(self) -> None:
        """A status at most every second while playing, so the client's position moves."""
        if time.monotonic() - self.last_status >= _STATUS_EVERY_SECONDS:
            await self.status()

    async def wait_until_due(self, clock: ReplayClock, committed_at_ns: int) -> None:
        """Sleep until the item is due; pause, resume and speed changes wake the wait."""
        while (delay := clock.delay_seconds(committed_at_ns)) > 0:
            self.changed.clear()
            paused = delay == float("inf")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.changed.wait(), None if paused else min(delay, _STATUS_EVERY_SECONDS)
                )
            if not paused and not clock.paused:
                await self.tick()

    def message(self, item: ReplayItem) -> dict[str, Any] | str:
        """The live socket's message for one replayed item."""
        if item.bar is not None:
            fragment = pushed_bar_json(item.bar).decode()
            label = from_proto(item.bar.timeframe).label
            return bars_message_text(self.instrument, label, (fragment,))
        assert item.indicators is not None
        return indicators_message(self.instrument, item.indicators)

    async def stop(self) -> None:
        """Stop playing and close the upstreams."""
        if self.playback is not None:
            await self.playback.stop()
            self.playback = None


@router.websocket(ROUTE)
async def replay_socket(websocket: WebSocket, instrument: str) -> None:
    """Replay stored history of `instrument`: authenticate, then send `start`."""
    services = get_services(websocket)
    async with admitted(websocket, services, instrument, ROUTE) as admission:
        if admission is not None:
            await _serve(websocket, services, admission)


async def _serve(websocket: WebSocket, services: GatewayServices, admission: Admission) -> None:
    """Run a replay session until the client leaves or a limit or check ends it."""
    user = admission.user
    decision = await services.rate_limiter.take(f"user:{user.id}", "ws")
    if not decision.allowed:
        await websocket.close(TRY_AGAIN_LATER, "rate limited")
        return
    session = _ReplaySession(websocket, services, admission)
    watched = services.ws_guard.sessions.add(user.id, admission.expires_at, session.end)
    services.metrics.ws_clients.inc()
    receiver = asyncio.create_task(session.receive_loop())
    try:
        await session.send(
            {"type": "welcome", "instrument": session.instrument, "user": user.username}, "welcome"
        )
        waiting: set[asyncio.Future[Any]] = {receiver, session.ending}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if session.ending in done:
            reason, text = session.ending.result()
            services.ws_guard.refused(reason, f"user {user.username}", text)
            await close_or_abort(websocket, services, admission.frames, POLICY_VIOLATION, text)
    except WebSocketDisconnect:
        pass  # the client left; cleanup below
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        await session.stop()
        services.ws_guard.sessions.remove(watched)
        services.metrics.ws_clients.dec()
