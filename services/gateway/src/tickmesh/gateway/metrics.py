"""The gateway's own metrics, registered beside the core ones in the process registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tickmesh.core.metrics import LATENCY_BUCKETS, CoreMetrics


class GatewayMetrics:
    """API latency, rate limiting, WebSocket clients and pushes, alert firings and deliveries."""

    def __init__(self, core: CoreMetrics) -> None:
        self.core = core
        registry = core.registry
        self.http_requests = Counter(
            "tickmesh_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "tickmesh_http_latency_seconds",
            "HTTP request handling time, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "tickmesh_rate_limited_requests",
            "Requests refused with 429, by route class.",
            ["route_class"],
            registry=registry,
        )
        self.rate_limiter_errors = Counter(
            "tickmesh_rate_limiter_errors",
            "Requests admitted because Redis could not be asked.",
            registry=registry,
        )
        self.invalid_input = Counter(
            "tickmesh_http_invalid_input",
            "Requests refused as invalid input (422, or a WebSocket closed with 1008), by route "
            "template and where the bad field was (path, query, body).",
            ["route", "location"],
            registry=registry,
        )
        self.ws_clients = Gauge(
            "tickmesh_ws_clients", "Open WebSocket connections.", registry=registry
        )
        self.ws_messages = Counter(
            "tickmesh_ws_messages_sent",
            "WebSocket messages pushed, by type.",
            ["type"],
            registry=registry,
        )
        self.ws_slow_closed = Counter(
            "tickmesh_ws_slow_clients_closed",
            "WebSocket clients closed for not keeping up.",
            registry=registry,
        )
        self.ws_refused = Counter(
            "tickmesh_ws_refused",
            "WebSocket connections refused or closed by a limit or check, by reason "
            "(see ws_guard.py).",
            ["reason"],
            registry=registry,
        )
        self.ws_user_check_errors = Counter(
            "tickmesh_ws_user_check_errors",
            "Rounds of re-checking the users of open WebSockets that failed on the database.",
            registry=registry,
        )
        self.bar_upstreams = Gauge(
            "tickmesh_ws_bar_upstreams",
            "Open BarService.Subscribe streams (one per bar shard with watched instruments).",
            registry=registry,
        )
        self.upstream_errors = Counter(
            "tickmesh_ws_bar_upstream_errors",
            "BarService.Subscribe streams that ended in an error, by status code.",
            ["code"],
            registry=registry,
        )
        self.indicator_upstreams = Gauge(
            "tickmesh_ws_indicator_upstreams",
            "Open AnalyticsService.Subscribe streams (one per analytics shard with watched instruments).",
            registry=registry,
        )
        self.indicator_upstream_errors = Counter(
            "tickmesh_ws_indicator_upstream_errors",
            "AnalyticsService.Subscribe streams that ended, by status code (OK: ended cleanly).",
            ["code"],
            registry=registry,
        )
        self.chart_cache = Counter(
            "tickmesh_chart_cache_lookups",
            "Chart bar lookups of the gateway's encoded-response cache, by result (hit or miss).",
            ["result"],
            registry=registry,
        )
        self.chart_cache_streams = Counter(
            "tickmesh_chart_cache_stream_ends",
            "Change streams of the chart cache that ended (its entries were dropped), by code.",
            ["code"],
            registry=registry,
        )
        self.alerts_fired = Counter(
            "tickmesh_alerts_fired",
            "Alert firings recorded by this replica, by condition.",
            ["condition"],
            registry=registry,
        )
        self.alert_bars_caught_up = Counter(
            "tickmesh_alert_bars_caught_up",
            "Final bars judged late for alerts: they became final while no replica was judging.",
            registry=registry,
        )
        self.alert_broadcast_failures = Counter(
            "tickmesh_alert_broadcast_failures",
            "Alert firings that could not go through Redis pub/sub (or came back malformed).",
            registry=registry,
        )
        self.alert_engine_errors = Counter(
            "tickmesh_alert_engine_errors",
            "Alert engine steps that failed on a store or the bar service and were retried.",
            ["stage"],
            registry=registry,
        )
        self.alert_worker_deaths = Counter(
            "tickmesh_alert_worker_deaths",
            "Alert background workers that raised or ended and were restarted, by worker.",
            ["worker"],
            registry=registry,
        )
        self.notifications = Counter(
            "tickmesh_alert_notifications",
            "Alert deliveries, by channel and outcome.",
            ["channel", "outcome"],
            registry=registry,
        )
