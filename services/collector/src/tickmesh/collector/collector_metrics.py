"""The collector's Prometheus metrics: sources, gaps, breakers and the acknowledged ingest stream."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds from a batch being handed to the ingest client to its acknowledgement.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

BREAKER_STATES = {"closed": 0, "half-opened": 1, "opened": 2}


class CollectorMetrics:
    """Every metric the collector exposes, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.trades = Counter(
            "tickmesh_collector_trades",
            "Trades seen by source and fate (received, duplicate, backfilled).",
            ["source", "outcome"],
            registry=registry,
        )
        self.frames = Counter(
            "tickmesh_collector_frames",
            "WebSocket frames received, by source.",
            ["source"],
            registry=registry,
        )
        self.parse_errors = Counter(
            "tickmesh_collector_parse_errors",
            "Frames or answers rejected by the decoder, by source and kind.",
            ["source", "kind"],
            registry=registry,
        )
        self.reconnects = Counter(
            "tickmesh_collector_source_reconnects",
            "Source connections re-opened, by source and reason.",
            ["source", "reason"],
            registry=registry,
        )
        self.gaps_found = Counter(
            "tickmesh_collector_gaps_found",
            "Trade-id gaps recorded (reconnects, id jumps, buffer overflow), by source.",
            ["source"],
            registry=registry,
        )
        self.gap_trades_filled = Counter(
            "tickmesh_collector_gap_trades_filled",
            "Trades fetched over REST that filled a recorded gap, by source.",
            ["source"],
            registry=registry,
        )
        self.gap_ids_open = Gauge(
            "tickmesh_collector_gap_ids_open",
            "Trade ids recorded as missing and not yet filled, by source.",
            ["source"],
            registry=registry,
        )
        self.rest_requests = Counter(
            "tickmesh_collector_rest_requests",
            "REST requests by source and outcome (ok, rate_limited, banned, error).",
            ["source", "outcome"],
            registry=registry,
        )
        self.breaker_state = Gauge(
            "tickmesh_collector_breaker_state",
            "Circuit-breaker state per source: 0 closed, 1 half-open, 2 open.",
            ["source"],
            registry=registry,
        )
        self.source_bars = Counter(
            "tickmesh_collector_source_bars",
            "Completed source bars published, by source.",
            ["source"],
            registry=registry,
        )
        self.ingest_batches = Counter(
            "tickmesh_collector_ingest_batches",
            "Batches written to the ingest stream (sent, resent).",
            ["outcome"],
            registry=registry,
        )
        self.ingest_acks = Counter(
            "tickmesh_collector_ingest_acks",
            "Acknowledgements received from the bar service.",
            registry=registry,
        )
        self.ingest_reconnects = Counter(
            "tickmesh_collector_ingest_reconnects",
            "Ingest streams re-opened after a failure.",
            registry=registry,
        )
        self.ingest_dropped_trades = Counter(
            "tickmesh_collector_ingest_dropped_trades",
            "Unsent trades dropped from a full buffer (recorded as gaps and backfilled).",
            registry=registry,
        )
        self.ingest_unacked_batches = Gauge(
            "tickmesh_collector_ingest_unacked_batches",
            "Batches sent and not yet acknowledged.",
            registry=registry,
        )
        self.ingest_buffered_trades = Gauge(
            "tickmesh_collector_ingest_buffered_trades",
            "Trades held by the ingest client (unsent plus unacknowledged).",
            registry=registry,
        )
        self.ingest_lag = Histogram(
            "tickmesh_collector_ingest_lag_seconds",
            "Time from handing trades to the ingest client to their acknowledgement.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.resume_save_errors = Counter(
            "tickmesh_collector_resume_save_errors",
            "Failed writes of the per-symbol resume points to Redis (retried).",
            registry=registry,
        )

    def set_breaker(self, source: str, state: str) -> None:
        """Record a breaker state by purgatory's name (closed, half-opened, opened)."""
        self.breaker_state.labels(source=source).set(BREAKER_STATES.get(state, 2))
