"""Encoded chart bars cached per query, dropped as soon as the bar service changes a bar.

Why an entry is never stale. The bar service makes a final bar or a revision durable, puts it
in its Redis cache (what GetBars reads) and only then publishes it, with a `change_id` taken
from one sequence by its single commit pipeline, so a instrument's changes get increasing ids in
commit order. Per instrument this cache keeps one `BarService.Subscribe` open with
`resume_after_change_id` (replay from the database, then live, no gap; resumed from the last id
after a reconnect), and every bar it receives bumps the generation of that bar's timeframe.

- The first answer of an instrument up to now starts the watcher at the newest `change_id` in it:
  every change GetBars did not see was committed later, so it has a larger id and reaches the
  watcher. (This leans on one commit pipeline per instrument: the bar service's shard that owns it.)
- An answer is stored only if its timeframe's generation did not move while GetBars ran (a
  change that arrived before the request was sent is in the answer; one that arrives after is
  either in it or drops it).
- An entry is served only while its generation is current and the watcher's stream is open;
  when the stream breaks every entry of the instrument is dropped and nothing is cached until the
  watcher has subscribed again (resuming from the last id, so no change is missed meanwhile).
- The WebSocket fan-out also reports the final bars it receives (`bar_changed`), so a REST
  re-read after a pushed final bar never answers without it, whichever stream is first.

Memory is bounded by `max_bytes` (least recently used entries go first); an instrument nobody asked
for in `idle_seconds` has its watcher closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from grpc import aio

from tickmesh.core.instruments import InstrumentId
from tickmesh.gateway.backends import Backends
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.shard_streams import follow_stream
from tickmesh.v2 import bar_service_pb2, market_pb2

log = logging.getLogger(__name__)

_SWEEP_EVERY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ChartKey:
    """One GetBars query: what an entry answers."""

    instrument: InstrumentId
    timeframe: int
    start_ns: int
    end_ns: int
    limit: int


@dataclass(slots=True)
class _Watch:
    """The change stream of one instrument and the generation of each of its timeframes."""

    resume_after: int
    live: bool = False
    generations: dict[int, int] = field(default_factory=dict)
    last_used: float = 0.0
    task: asyncio.Task[None] | None = None

    def generation(self, timeframe: int) -> int:
        return self.generations.get(timeframe, 0)

    def bump(self, timeframe: int) -> None:
        self.generations[timeframe] = self.generation(timeframe) + 1

    def bump_all(self) -> None:
        for timeframe in self.generations:
            self.bump(timeframe)
        self.generations[-1] = self.generation(-1) + 1  # also ends timeframes not seen yet


@dataclass(frozen=True, slots=True)
class _Entry:
    watch: _Watch
    generation: int
    reset: int
    body: bytes


Fetch = Callable[[], Awaitable[bar_service_pb2.GetBarsResponse]]
Encode = Callable[[bar_service_pb2.GetBarsResponse], bytes]


class ChartCache:
    """Encoded GetBars answers by query; `max_bytes` 0 turns caching off."""

    def __init__(
        self,
        backends: Backends,
        metrics: GatewayMetrics,
        max_bytes: int,
        idle_seconds: float = 300.0,
    ) -> None:
        self._backends = backends
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._idle_seconds = idle_seconds
        self._entries: OrderedDict[ChartKey, _Entry] = OrderedDict()
        self._bytes = 0
        self._watches: dict[InstrumentId, _Watch] = {}
        self._swept = time.monotonic()

    async def get(self, key: ChartKey, fetch: Fetch, encode: Encode) -> bytes:
        """The encoded bars of `key`: from the cache when current, else fetched and stored."""
        if self._max_bytes <= 0:
            return encode(await fetch())
        now = time.monotonic()
        self._sweep(now)
        watch = self._watches.get(key.instrument)
        if watch is not None:
            watch.last_used = now
            entry = self._entries.get(key)
            if entry is not None and self._current(entry, key):
                self._entries.move_to_end(key)
                self._metrics.chart_cache.labels(result="hit").inc()
                return entry.body
        self._metrics.chart_cache.labels(result="miss").inc()
        before = (watch.generation(key.timeframe), watch.generation(-1)) if watch else None
        live_before = watch is not None and watch.live
        reply = await fetch()
        body = encode(reply)
        newest = max((bar.change_id for bar in reply.bars), default=0)
        current = self._watches.get(key.instrument)
        if current is None:
            # Only an answer up to now starts a watcher: its newest change is recent, so the
            # replay is short (a historical range would replay everything since). Without a
            # change id there is no safe resume point at all.
            if newest > 0 and key.end_ns == 0:
                current = self._watch(key.instrument, newest, now)
                self._store(key, _Entry(current, 0, 0, body))
        elif (
            current is watch
            and live_before
            and current.live
            and before == (current.generation(key.timeframe), current.generation(-1))
        ):
            self._store(key, _Entry(current, before[0], before[1], body))
        return body

    def bar_changed(self, bar: market_pb2.Bar) -> None:
        """A final or revised bar seen elsewhere (the WebSocket upstream): drop what it changes."""
        if not bar.final or not self._watches:
            return
        watch = self._watches.get(InstrumentId(bar.exchange, bar.symbol))
        if watch is not None:
            watch.bump(bar.timeframe)

    def entry_count(self) -> int:
        """Entries held (current or not yet evicted)."""
        return len(self._entries)

    async def close(self) -> None:
        """Close every watcher stream."""
        for instrument in list(self._watches):
            await self._unwatch(instrument)

    def _current(self, entry: _Entry, key: ChartKey) -> bool:
        watch = entry.watch
        return (
            watch.live
            and self._watches.get(key.instrument) is watch
            and entry.generation == watch.generation(key.timeframe)
            and entry.reset == watch.generation(-1)
        )

    def _store(self, key: ChartKey, entry: _Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        if len(entry.body) > self._max_bytes:
            return
        self._entries[key] = entry
        self._bytes += len(entry.body)
        while self._bytes > self._max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    def _watch(self, instrument: InstrumentId, resume_after: int, now: float) -> _Watch:
        watch = _Watch(resume_after=resume_after, last_used=now)
        self._watches[instrument] = watch
        watch.task = asyncio.create_task(
            self._pump(instrument, watch), name=f"chart-cache-{instrument}"
        )
        # The call is made before the task first runs; until then nothing is served or stored.
        return watch

    def _sweep(self, now: float) -> None:
        """Close watchers of instruments idle for `idle_seconds` and forget their entries."""
        if now - self._swept < _SWEEP_EVERY_SECONDS:
            return
        self._swept = now
        idle = [s for s, w in self._watches.items() if now - w.last_used > self._idle_seconds]
        for instrument in idle:
            watch = self._watches.pop(instrument)
            if watch.task is not None:
                watch.task.cancel()
        gone = set(idle)
        for key in [key for key in self._entries if key.instrument in gone]:
            self._bytes -= len(self._entries.pop(key).body)

    async def _unwatch(self, instrument: InstrumentId) -> None:
        watch = self._watches.pop(instrument, None)
        if watch is None or watch.task is None:
            return
        watch.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch.task

    async def _pump(self, instrument: InstrumentId, watch: _Watch) -> None:
        stub = self._backends.bar_shard(instrument).stub  # the shard owning the instrument

        def subscribe() -> aio.UnaryStreamCall[object, bar_service_pb2.SubscribeResponse]:
            # Every change after resume_after reaches this stream (replay, then live).
            return stub.Subscribe(
                bar_service_pb2.SubscribeRequest(
                    instruments=[instrument.to_proto()],
                    include_forming=False,
                    resume_after_change_id=watch.resume_after,
                )
            )

        def changed(response: bar_service_pb2.SubscribeResponse) -> None:
            watch.resume_after = max(watch.resume_after, response.bar.change_id)
            watch.bump(response.bar.timeframe)

        def opened() -> None:
            watch.live = True

        def closed() -> None:
            watch.live = False
            watch.bump_all()

        await follow_stream(
            f"chart cache stream of {instrument}",
            subscribe,
            changed,
            self._metrics.chart_cache_streams,
            on_open=opened,
            on_close=closed,
        )
