"""Evaluating active alerts on every final bar, recording each firing once across replicas."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import asyncpg
import redis.asyncio as redis

from tickmesh.core.errors import DomainError
from tickmesh.core.instruments import InstrumentError, InstrumentId
from tickmesh.core.timeframes import from_label, from_proto
from tickmesh.gateway.alerts.conditions import History, MacdPoint, evaluate
from tickmesh.gateway.alerts.cursor import AlertCursor
from tickmesh.gateway.alerts.store import AlertStore
from tickmesh.gateway.backends import Backends
from tickmesh.gateway.fanout import BarFanout
from tickmesh.gateway.market_views import utc_from_ns
from tickmesh.gateway.metrics import GatewayMetrics
from tickmesh.gateway.schemas import AlertEventOut, AlertOut
from tickmesh.v2 import analytics_service_pb2, bar_service_pb2, market_pb2

log = logging.getLogger(__name__)

HISTORY_BARS = 501  # percent_change looks back at most 500 bars
# A store or the bar service down: the engine retries rather than dying or skipping a bar.
TRANSIENT = (asyncpg.PostgresError, asyncpg.InterfaceError, redis.RedisError, OSError)
WebSocketSink = Callable[[int, AlertEventOut], Awaitable[None]]
Series = tuple[InstrumentId, str]  # an instrument and a timeframe label


def _instrument(bar: market_pb2.Bar) -> InstrumentId:
    return InstrumentId(bar.exchange, bar.symbol)


class AlertEngine:
    """Watches the instruments of active alerts through the shared bar fan-out."""

    def __init__(
        self,
        store: AlertStore,
        fanout: BarFanout,
        backends: Backends,
        wake_deliveries: Callable[[], None],
        metrics: GatewayMetrics,
        websocket_sink: WebSocketSink,
        cursor: AlertCursor,
        refresh_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._cursor = cursor
        self._fanout = fanout
        self._backends = backends
        self._wake_deliveries = wake_deliveries
        self._metrics = metrics
        self._sink = websocket_sink
        self._refresh = refresh_seconds
        self._alerts: dict[InstrumentId, list[AlertOut]] = {}
        self._history: dict[Series, deque[market_pb2.Bar]] = {}
        self._marked: set[Series] = set()  # series whose shared mark exists
        self._finals: asyncio.Queue[market_pb2.Bar] = asyncio.Queue()

    def _on_bar(self, bar: market_pb2.Bar) -> None:
        if bar.final:
            self._finals.put_nowait(bar)

    async def run(self) -> None:
        """Refresh the watched alerts and evaluate final bars until cancelled."""
        evaluator = asyncio.create_task(self._evaluate_forever())
        try:
            while True:
                try:
                    await self.refresh()
                except TRANSIENT as error:
                    self._metrics.alert_engine_errors.labels(stage="refresh").inc()
                    log.warning("alerts not refreshed (retrying): %s", error)
                await asyncio.sleep(self._refresh)
        finally:
            evaluator.cancel()
            for instrument in list(self._alerts):
                await self._fanout.remove(instrument, self._on_bar)

    async def refresh(self) -> None:
        """Re-read active alerts; follow new instruments, drop those no alert watches any more."""
        grouped: dict[InstrumentId, list[AlertOut]] = {}
        for alert in await self._store.active():
            try:
                instrument = InstrumentId.parse(alert.instrument)
            except InstrumentError as error:  # a row no API wrote: skip it, judge the rest
                self._metrics.alert_engine_errors.labels(stage="refresh").inc()
                log.warning("alert %d skipped: %s", alert.id, error)
                continue
            grouped.setdefault(instrument, []).append(alert)
        wanted = {(i, a.timeframe) for i, alerts in grouped.items() for a in alerts}
        for series in wanted - self._marked:
            try:
                await self._start_mark(*series)
                self._marked.add(series)
            except DomainError as error:  # tried again on the next refresh
                log.warning("alerts on %s %s: bar service unavailable: %s", *series, error)
        for instrument in set(grouped) - set(self._alerts):
            self._fanout.add(instrument, self._on_bar)
        for instrument in set(self._alerts) - set(grouped):
            await self._fanout.remove(instrument, self._on_bar)
        self._alerts = grouped

    async def _start_mark(self, instrument: InstrumentId, label: str) -> None:
        """A series no replica judged yet is judged from the bars that become final from now on.

        The mark starts at the newest final bar, or at 0 for a series without bars (so its
        first bars are judged even when they become final while no replica is following).
        DomainError when the bar service is down.
        """
        if await self._cursor.judged_through(instrument, label) is not None:
            return
        newest = await self._final_bars(instrument, from_label(label).proto, 0, 0, limit=1)
        await self._cursor.start(instrument, label, newest[-1].open_time_ns if newest else 0)

    async def _evaluate_forever(self) -> None:
        while True:
            bar = await self._finals.get()
            delay = 0.2
            while True:
                try:
                    await self.on_final_bar(bar)
                    break
                except (DomainError, *TRANSIENT) as error:
                    # The bar service or a store is down: forget the series' state and judge
                    # again from the shared mark once it is back (firings are recorded once).
                    instrument = _instrument(bar)
                    self._history.pop((instrument, from_proto(bar.timeframe).label), None)
                    self._metrics.alert_engine_errors.labels(stage="judge").inc()
                    log.warning("alerts on %s not judged yet (retrying): %s", instrument, error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def on_final_bar(self, bar: market_pb2.Bar) -> None:
        """Judge the bar (after any bars missed before it); record firings and hand them on."""
        label = from_proto(bar.timeframe).label
        instrument = _instrument(bar)
        ring = self._history.get((instrument, label))
        if ring is None:
            ring = deque(maxlen=HISTORY_BARS)
            missed = await self._resume(bar, label, ring)
            self._history[(instrument, label)] = ring
        elif ring[-1].open_time_ns >= bar.open_time_ns:
            return  # a revision or replay: alerts judge each bar once, on its first final
        elif bar.open_time_ns > ring[-1].open_time_ns + from_proto(bar.timeframe).duration_ns:
            # The upstream stream broke and came back: judge what it did not carry.
            missed = await self._final_bars(
                instrument, bar.timeframe, ring[-1].open_time_ns + 1, bar.open_time_ns
            )
        else:
            missed = []
        for judged in (*missed, bar):
            ring.append(judged)
            await self._judge(judged, label, ring)
        await self._cursor.advance(instrument, label, bar.open_time_ns)

    async def _resume(
        self, bar: market_pb2.Bar, label: str, ring: deque[market_pb2.Bar]
    ) -> list[market_pb2.Bar]:
        """Seed the history of an (instrument, timeframe) seen first; return the bars to judge late."""
        instrument = _instrument(bar)
        judged_through = await self._cursor.judged_through(instrument, label)
        if judged_through is None:
            # Nothing to catch up: history only helps crossings; judging goes on without it.
            try:
                ring.extend(await self._final_bars(instrument, bar.timeframe, 0, bar.open_time_ns))
            except DomainError as error:
                log.warning("alerts on %s: earlier bars unavailable: %s", instrument, error)
            return []
        history = await self._final_bars(instrument, bar.timeframe, 0, bar.open_time_ns)
        ring.extend(b for b in history if b.open_time_ns <= judged_through)
        missed = [b for b in history if b.open_time_ns > judged_through]
        if missed:
            self._metrics.alert_bars_caught_up.inc(len(missed))
            log.info("judging %d %s %s bars missed while down", len(missed), instrument, label)
        return missed

    async def _final_bars(
        self,
        instrument: InstrumentId,
        timeframe: int,
        start_ns: int,
        end_ns: int,
        limit: int = HISTORY_BARS,
    ) -> list[market_pb2.Bar]:
        """Final bars of a series in [start_ns, end_ns) (0: unbounded), the newest `limit`."""
        shard = self._backends.bar_shard(instrument)
        reply = await shard.call(
            shard.stub.GetBars,
            bar_service_pb2.GetBarsRequest(
                instrument=instrument.to_proto(),
                timeframe=timeframe,  # type: ignore[arg-type]
                start_time_ns=start_ns,
                end_time_ns=end_ns,
                limit=limit,
            ),
        )
        return [b for b in reply.bars if b.final]

    async def _judge(self, bar: market_pb2.Bar, label: str, ring: deque[market_pb2.Bar]) -> None:
        """Evaluate the alerts of the bar's series on the history ending at the bar."""
        alerts = [a for a in self._alerts.get(_instrument(bar), []) if a.timeframe == label]
        if not alerts:
            return
        rsi: float | None = None
        macd: tuple[MacdPoint, ...] = ()
        if any(a.condition.startswith(("rsi", "macd")) for a in alerts):
            rsi, macd = await self._indicators(bar)
        # Floats for judging (thresholds are floats); the messages quote the exact strings.
        history = History(
            closes=[float(b.close) for b in ring],
            volumes=[float(b.volume) for b in ring],
            rsi=rsi,
            macd=macd,
            close_text=bar.close,
            volume_text=bar.volume,
        )
        for alert in alerts:
            firing = evaluate(alert, history)
            if firing is None:
                continue
            recorded = await self._store.record_firing(
                alert.id, utc_from_ns(bar.open_time_ns), firing.value, firing.message
            )
            if recorded is None:
                continue  # another replica recorded it, or the alert is cooling down
            self._metrics.alerts_fired.labels(condition=alert.condition).inc()
            if alert.channel == "websocket":
                await self._sink(alert.user_id, recorded.event)
            else:
                self._wake_deliveries()  # recorded as pending: AlertDeliveries sends it

    async def _indicators(self, bar: market_pb2.Bar) -> tuple[float | None, tuple[MacdPoint, ...]]:
        instrument = _instrument(bar)
        analytics = self._backends.analytics_shard(instrument)
        reply = await analytics.call(
            analytics.stub.GetIndicators,
            analytics_service_pb2.GetIndicatorsRequest(
                instrument=instrument.to_proto(),
                timeframe=bar.timeframe,
                end_time_ns=bar.open_time_ns + 1,
                limit=2,
            ),
        )
        rows = list(reply.rows)
        if not rows or rows[-1].open_time_ns != bar.open_time_ns:
            return None, ()  # analytics has not caught up with this bar: no RSI/MACD verdict
        points = tuple(
            MacdPoint(
                row.macd if row.HasField("macd") else None,
                row.macd_signal if row.HasField("macd_signal") else None,
            )
            for row in rows
        )
        return (rows[-1].rsi if rows[-1].HasField("rsi") else None), points
