"""Grafana dashboards: every PromQL expression queries only metrics some service registers."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from prometheus_client import CollectorRegistry

from tickmesh.analytics.analytics_metrics import AnalyticsMetrics
from tickmesh.bars.bar_cache import BarCache
from tickmesh.bars.bar_metrics import BarMetrics
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.core.metrics import CoreMetrics
from tickmesh.gateway.metrics import GatewayMetrics

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "dashboards"
EXPECTED_DASHBOARDS = {
    "tickmesh-operations",
    "tickmesh-data-quality",
    "tickmesh-circuit-breakers",
    "tickmesh-database-cache",
}

# The series names prometheus_client exposes per metric type (counters add _total itself).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}

PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def _series_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names.update(f"{family.name}{suffix}" for suffix in SUFFIXES[family.type])
    return names


@functools.cache
def exposed_series() -> frozenset[str]:
    """Every series name the four services register, each on a fresh registry like its process."""
    collector = CollectorRegistry()
    CollectorMetrics(collector)
    bars = CoreMetrics()
    BarMetrics(bars)
    BarCache(redis.Redis(), bars, size=10)
    analytics = CoreMetrics()
    AnalyticsMetrics(analytics.registry)
    gateway = CoreMetrics()
    GatewayMetrics(gateway)
    registries = (CoreMetrics().registry, collector, bars.registry, analytics.registry)
    return frozenset().union(*(_series_names(r) for r in (*registries, gateway.registry)))


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels, keywords or ranges)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\$\w+", "", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def _dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _expressions() -> list[tuple[str, str, str]]:
    return [
        (name, panel["title"], target["expr"])
        for name, dashboard in _dashboards().items()
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
    ]


def test_dashboards_are_the_four_of_the_design() -> None:
    dashboards = _dashboards()
    assert set(dashboards) == EXPECTED_DASHBOARDS
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == name
        assert any(panel.get("targets") for panel in dashboard["panels"]), name


def test_dashboard_panels_use_the_provisioned_prometheus_datasource() -> None:
    for name, dashboard in _dashboards().items():
        for panel in _panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, name
            assert panel["targets"], f"{name}: {panel['title']} has no query"


def test_dashboard_panel_ids_are_unique() -> None:
    for name, dashboard in _dashboards().items():
        ids = [panel["id"] for panel in _panels(dashboard)]
        assert len(ids) == len(set(ids)), name


@pytest.mark.parametrize(("dashboard", "title", "expr"), _expressions())
def test_dashboard_query_uses_only_exposed_metrics(dashboard: str, title: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{dashboard}: {title}: no metric in {expr!r}"
    assert names <= exposed_series(), f"{dashboard}: {title}: {sorted(names - exposed_series())}"


def test_dashboards_cover_every_service() -> None:
    queried = set().union(*(metric_names(expr) for _, _, expr in _expressions()))
    for prefix in (
        "tickmesh_collector_",
        "tickmesh_bars_",
        "tickmesh_analytics_",
        "tickmesh_http_",
        "tickmesh_ws_",
        "tickmesh_db_",
        "tickmesh_bar_cache_",
        "tickmesh_grpc_server_",
    ):
        assert any(name.startswith(prefix) for name in queried), prefix


def test_metric_names_finds_selectors_and_skips_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, table) (rate(tickmesh_db_write_latency_seconds_bucket{table="candles"}[$__rate_interval])))'
        " / ignoring(outcome) group_left sum(rate(tickmesh_bars_trades_total[5m])) or vector(0)"
    )
    assert metric_names(expr) == {
        "tickmesh_db_write_latency_seconds_bucket",
        "tickmesh_bars_trades_total",
    }


def test_unregistered_metric_is_caught() -> None:
    names = metric_names("rate(tickmesh_bars_trades[5m]) + tickmesh_nonexistent_seconds")
    assert names - exposed_series() == {"tickmesh_bars_trades", "tickmesh_nonexistent_seconds"}


def test_exposed_series_follow_prometheus_naming() -> None:
    for name in exposed_series():
        assert re.fullmatch(r"tickmesh_[a-z0-9_]+", name), name
        assert not name.endswith("_total_total"), name
