"""Issue 13 item 2: the chart's NetworkPolicies deny by default and admit only the mesh's
real edges (gateway -> collector/bars/analytics, collector -> bars, analytics -> bars,
Prometheus -> metrics, the ingress controller -> gateway HTTP, kubelet -> health ports), and
egress only to DNS, PostgreSQL, Redis, the OTel collector, the market-data sources (collector)
and webhook/SMTP targets (gateway)."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from ..ops.helm_render import CHART, NAMESPACE, Rendered, render
from .helm_fixtures import load_chart, pod_endpoints, policies
from .network_policy import Endpoint, PolicySet

SHARDED = {"collector": {"shards": 2}, "bars": {"shards": 2}}
BINANCE = Endpoint("api.binance.com", ip="52.84.150.34")
WEBHOOK = Endpoint("hooks.slack.com", ip="54.192.30.10")
INTERNAL_HTTP = Endpoint("an internal service", ip="10.96.0.40")
DATABASE = Endpoint("postgresql", ip="10.96.0.50")
REDIS = Endpoint("redis", ip="10.96.0.51")
OTEL = Endpoint("otel collector", ip="10.96.0.52")
KUBE_DNS = Endpoint(
    "kube-dns",
    ip="10.96.0.10",
    namespace="kube-system",
    labels={"k8s-app": "kube-dns"},
    ports={"dns": (53, "UDP"), "dns-tcp": (53, "TCP")},
)
PROMETHEUS = Endpoint(
    "prometheus",
    ip="10.244.9.9",
    namespace="monitoring",
    labels={"app.kubernetes.io/name": "prometheus"},
)
INGRESS_CONTROLLER = Endpoint(
    "ingress-nginx",
    ip="10.244.8.8",
    namespace="ingress-nginx",
    labels={"app.kubernetes.io/name": "ingress-nginx"},
)
# A pod in the release's namespace that no policy names: it must reach nothing of ours.
STRANGER = Endpoint("debug pod", ip="10.244.7.7", namespace=NAMESPACE, labels={"run": "debug"})
OTHER_NAMESPACE = Endpoint(
    "other tenant", ip="10.244.6.6", namespace="tenant", labels={"app.kubernetes.io/name": "x"}
)
NODE = Endpoint("a node's kubelet", ip="192.168.10.5")


@pytest.fixture(scope="module")
def chart() -> helm_python.Chart:
    return load_chart()


@pytest.fixture(scope="module")
def default(chart: helm_python.Chart) -> Rendered:
    return render(chart, SHARDED)


@pytest.fixture(scope="module")
def pods(default: Rendered) -> dict[str, Endpoint]:
    return pod_endpoints(default)


@pytest.fixture(scope="module")
def mesh(default: Rendered) -> PolicySet:
    return policies(default)


def _port(pod: Endpoint, name: str) -> int:
    return pod.ports[name][0]


def _callers(mesh: PolicySet, pods: dict[str, Endpoint], target: str, port: str) -> set[str]:
    """Who, among the mesh's pods and the outsiders, may open `port` of `target`."""
    candidates = [*pods.values(), PROMETHEUS, INGRESS_CONTROLLER, STRANGER, OTHER_NAMESPACE]
    destination = pods[target]
    return {c.name for c in candidates if mesh.allows(c, destination, _port(destination, port))}


def test_network_policies_render_and_lint_strict(default: Rendered) -> None:
    report = helm_python.lint(str(CHART), SHARDED, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert default.of_kind("NetworkPolicy"), "the chart renders no NetworkPolicy"


def test_every_pod_is_isolated_both_ways(mesh: PolicySet, pods: dict[str, Endpoint]) -> None:
    assert set(pods) == {"collector", "bars", "analytics", "gateway"}
    for pod in pods.values():
        assert mesh.isolated(pod, "Ingress"), pod.name
        assert mesh.isolated(pod, "Egress"), pod.name


def test_collector_grpc_admits_only_the_gateway(mesh: PolicySet, pods: dict[str, Endpoint]) -> None:
    assert _callers(mesh, pods, "collector", "grpc") == {"gateway"}


def test_bars_grpc_admits_collector_analytics_and_gateway(
    mesh: PolicySet, pods: dict[str, Endpoint]
) -> None:
    assert _callers(mesh, pods, "bars", "grpc") == {"collector", "analytics", "gateway"}


def test_analytics_grpc_admits_only_the_gateway(mesh: PolicySet, pods: dict[str, Endpoint]) -> None:
    assert _callers(mesh, pods, "analytics", "grpc") == {"gateway"}


def test_gateway_http_admits_the_ingress_controller_and_prometheus(
    mesh: PolicySet, pods: dict[str, Endpoint]
) -> None:
    # Prometheus scrapes /metrics on the HTTP port; nobody else in the cluster gets in.
    assert _callers(mesh, pods, "gateway", "http") == {"ingress-nginx", "prometheus"}


@pytest.mark.parametrize("service", ["collector", "bars", "analytics"])
def test_metrics_ports_admit_only_prometheus(
    mesh: PolicySet, pods: dict[str, Endpoint], service: str
) -> None:
    assert _callers(mesh, pods, service, "metrics") == {"prometheus"}


@pytest.mark.parametrize("service", ["collector", "bars", "analytics"])
def test_plaintext_health_ports_admit_no_pod(
    mesh: PolicySet, pods: dict[str, Endpoint], service: str
) -> None:
    # The kubelet probes from the pod's own node, which NetworkPolicies never block; no pod,
    # ours or a stranger, reaches the plaintext health port.
    assert _callers(mesh, pods, service, "health") == set()


def test_probe_sources_admit_the_health_ports_only(chart: helm_python.Chart) -> None:
    rendered = render(
        chart, {"networkPolicy": {"probeFrom": [{"ipBlock": {"cidr": "192.168.0.0/16"}}]}}
    )
    mesh, pods = policies(rendered), pod_endpoints(rendered)
    for service in ("collector", "bars", "analytics"):
        pod = pods[service]
        assert mesh.allows(NODE, pod, _port(pod, "health")), service
        assert not mesh.allows(NODE, pod, _port(pod, "grpc")), service
        assert not mesh.allows(NODE, pod, _port(pod, "metrics")), service
    assert mesh.allows(NODE, pods["gateway"], _port(pods["gateway"], "http"))


def test_mesh_calls_go_only_along_real_edges(mesh: PolicySet, pods: dict[str, Endpoint]) -> None:
    edges = {
        (caller, callee)
        for caller in pods
        for callee in ("collector", "bars", "analytics")
        if caller != callee and mesh.allows(pods[caller], pods[callee], _port(pods[callee], "grpc"))
    }
    assert edges == {
        ("gateway", "collector"),
        ("gateway", "bars"),
        ("gateway", "analytics"),
        ("collector", "bars"),
        ("analytics", "bars"),
    }


@pytest.mark.parametrize("service", ["collector", "bars", "analytics", "gateway"])
def test_every_pod_resolves_names_and_reaches_its_stores(
    mesh: PolicySet, pods: dict[str, Endpoint], service: str
) -> None:
    pod = pods[service]
    assert mesh.allows(pod, KUBE_DNS, 53, "UDP")
    assert mesh.allows(pod, KUBE_DNS, 53, "TCP")
    assert mesh.allows(pod, DATABASE, 5432)
    assert mesh.allows(pod, REDIS, 6379)
    assert mesh.allows(pod, OTEL, 4317)
    assert not mesh.allows(pod, DATABASE, 22)
    assert not mesh.allows(pod, STRANGER, 8080)
    assert not mesh.allows(pod, OTHER_NAMESPACE, 443)


def test_only_the_collector_reaches_the_market_data_sources(
    mesh: PolicySet, pods: dict[str, Endpoint]
) -> None:
    for port in (443, 9443):  # Binance REST and USD-M streams on 443, spot streams on 9443
        assert mesh.allows(pods["collector"], BINANCE, port)
    for service in ("bars", "analytics"):
        assert not mesh.allows(pods[service], BINANCE, 443), service
    assert not mesh.allows(pods["collector"], INTERNAL_HTTP, 443)


def test_gateway_reaches_public_webhooks_not_internal_addresses(
    mesh: PolicySet, pods: dict[str, Endpoint]
) -> None:
    gateway = pods["gateway"]
    assert mesh.allows(gateway, WEBHOOK, 443)
    assert mesh.allows(gateway, WEBHOOK, 80)
    assert not mesh.allows(gateway, INTERNAL_HTTP, 443)
    assert not mesh.allows(gateway, WEBHOOK, 25)  # SMTP is off until configured
    for service in ("collector", "bars", "analytics"):
        assert not mesh.allows(pods[service], WEBHOOK, 80), service


def test_smtp_and_store_targets_are_values(chart: helm_python.Chart) -> None:
    relay = Endpoint("smtp relay", ip="10.20.0.25")
    values: dict[str, Any] = {
        "networkPolicy": {
            "egress": {
                "smtp": {
                    "enabled": True,
                    "ports": [587],
                    "to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}],
                },
                "postgresql": [{"ipBlock": {"cidr": "10.30.0.0/24"}}],
            }
        }
    }
    rendered = render(chart, values)
    mesh, pods = policies(rendered), pod_endpoints(rendered)
    assert mesh.allows(pods["gateway"], relay, 587)
    assert not mesh.allows(pods["bars"], relay, 587)
    assert mesh.allows(pods["bars"], Endpoint("db", ip="10.30.0.5"), 5432)
    assert not mesh.allows(pods["bars"], DATABASE, 5432)


def test_prometheus_selector_is_a_value(chart: helm_python.Chart) -> None:
    own = Endpoint(
        "own prometheus", ip="10.244.5.5", namespace="observability", labels={"app": "prom"}
    )
    rendered = render(
        chart,
        {
            "networkPolicy": {
                "prometheusFrom": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "observability"}
                        },
                        "podSelector": {"matchLabels": {"app": "prom"}},
                    }
                ]
            }
        },
    )
    mesh, pods = policies(rendered), pod_endpoints(rendered)
    bars = pods["bars"]
    assert mesh.allows(own, bars, _port(bars, "metrics"))
    assert not mesh.allows(PROMETHEUS, bars, _port(bars, "metrics"))
    assert not mesh.allows(own, bars, _port(bars, "grpc"))


def test_extra_grpc_clients_reach_bars_and_analytics_only(chart: helm_python.Chart) -> None:
    # The importer (`tickmesh import` as a Job) and third-party readers are named explicitly.
    importer = Endpoint(
        "importer", ip="10.244.4.4", namespace=NAMESPACE, labels={"app": "importer"}
    )
    peer = [{"podSelector": {"matchLabels": {"app": "importer"}}}]
    rendered = render(chart, {"networkPolicy": {"grpcClients": {"bars": peer}}})
    mesh, pods = policies(rendered), pod_endpoints(rendered)
    assert mesh.allows(importer, pods["bars"], _port(pods["bars"], "grpc"))
    assert not mesh.allows(importer, pods["collector"], _port(pods["collector"], "grpc"))
    assert not mesh.allows(importer, pods["analytics"], _port(pods["analytics"], "grpc"))
