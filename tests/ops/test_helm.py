"""helm/tickmesh: lints strict, and its rendered objects run the services the code expects."""

from __future__ import annotations

import os
from typing import Any

import helm_python
import pytest

from tickmesh.core.instruments import InstrumentId
from tickmesh.core.settings import CommonSettings
from tickmesh.core.sharding import shard_address, shard_of

from .helm_render import (
    CHART,
    NAMESPACE,
    PREFIX,
    Manifest,
    Rendered,
    container,
    pod_environment,
    pods,
    render,
    service_of,
    workloads_of,
)
from .service_settings import SETTINGS_BY_SERVICE, port_of, unknown_variables

SHARDED = {"collector": {"shards": 3}, "bars": {"shards": 3}}
INSTRUMENTS = tuple(
    InstrumentId.parse(text)
    for text in (
        "binance_spot:BTCUSDT",
        "binance_usdm:BTCUSDT",
        "binance_spot:ETHUSDT",
        "binance_usdm:SOLUSDT",
        "yahoo:AAPL",
        "yahoo:SPY",
        "binance_spot:BNBUSDT",
        "binance_usdm:XRPUSDT",
        "yahoo:MSFT",
    )
)


@pytest.fixture(scope="module")
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(str(CHART))


@pytest.fixture(scope="module")
def default(chart: helm_python.Chart) -> Rendered:
    return render(chart)


@pytest.fixture(scope="module")
def sharded(chart: helm_python.Chart) -> Rendered:
    return render(chart, SHARDED)


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith(("TICKMESH_", "OTEL_")):
            monkeypatch.delenv(key)
    return monkeypatch


def _pod_settings(
    monkeypatch: pytest.MonkeyPatch, service: str, environment: dict[str, str]
) -> Any:
    """The service's settings object as the pod's environment builds it."""
    with monkeypatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        return SETTINGS_BY_SERVICE[service]()


def _settings_of_pod(
    monkeypatch: pytest.MonkeyPatch, service: str, environment: dict[str, str]
) -> dict[str, Any]:
    dumped: dict[str, Any] = _pod_settings(monkeypatch, service, environment).model_dump()
    return dumped


def _headless_dns(rendered: Rendered, workload: Manifest, ordinal: int, port: int) -> str:
    service = rendered.get("Service", workload["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    name = workload["metadata"]["name"]
    return f"{name}-{ordinal}.{service['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{port}"


def test_chart_lints_strict_without_warnings() -> None:
    for values in ({}, SHARDED):
        report = helm_python.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_render_has_the_kinds_of_the_design(default: Rendered) -> None:
    assert set(default.of_kind("StatefulSet")) == {f"{PREFIX}-collector", f"{PREFIX}-bars"}
    assert set(default.of_kind("Deployment")) == {f"{PREFIX}-analytics", f"{PREFIX}-gateway"}
    hpas = default.of_kind("HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == set(
        default.of_kind("Deployment")
    )
    assert {h["spec"]["scaleTargetRef"]["kind"] for h in hpas.values()} == {"Deployment"}
    assert len(default.of_kind("PodDisruptionBudget")) == 4
    assert set(default.of_kind("Secret")) == {f"{PREFIX}-secrets"}
    assert set(default.of_kind("ServiceMonitor")) == {PREFIX}


@pytest.mark.parametrize("variant", ["default", "sharded"])
def test_every_tickmesh_variable_is_a_settings_field(
    variant: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(variant)
    for workload in rendered.workloads().values():
        names = {entry["name"] for entry in container(workload)["env"]}
        assert unknown_variables(service_of(workload), names) == set(), workload["metadata"]
        assert len(names) == len(container(workload)["env"]), "duplicate env names"


@pytest.mark.parametrize("variant", ["default", "sharded"])
def test_every_pod_environment_builds_its_settings(
    variant: str, request: pytest.FixtureRequest, clean_environment: pytest.MonkeyPatch
) -> None:
    rendered: Rendered = request.getfixturevalue(variant)
    for workload in rendered.workloads().values():
        service = service_of(workload)
        for ordinal in pods(workload):
            environment = pod_environment(rendered, workload, ordinal)
            settings = _settings_of_pod(clean_environment, service, environment)
            assert settings["environment"] == "production"


def test_sharded_statefulsets_take_shard_index_from_the_pod_ordinal(
    sharded: Rendered, clean_environment: pytest.MonkeyPatch
) -> None:
    for service in ("collector", "bars"):
        (workload,) = workloads_of(sharded, service)
        assert workload["spec"]["replicas"] == 3
        assert workload["spec"]["podManagementPolicy"] == "Parallel"
        indexes = []
        for ordinal in pods(workload):
            environment = pod_environment(sharded, workload, ordinal)
            settings = _settings_of_pod(clean_environment, service, environment)
            assert settings[f"{service}_shard_count"] == 3
            indexes.append(settings[f"{service}_shard_index"])
        assert indexes == [0, 1, 2]


def _bar_shard_dns(rendered: Rendered) -> list[str]:
    """Each bar pod's headless DNS address, by ordinal."""
    (bars,) = workloads_of(rendered, "bars")
    port = port_of(pod_environment(rendered, bars, 0)["TICKMESH_BARS_LISTEN"])
    return [_headless_dns(rendered, bars, ordinal, port) for ordinal in pods(bars)]


@pytest.mark.parametrize("variant", ["default", "sharded"])
def test_every_pod_lists_every_bar_shard_in_shard_order(
    variant: str, request: pytest.FixtureRequest, clean_environment: pytest.MonkeyPatch
) -> None:
    rendered: Rendered = request.getfixturevalue(variant)
    expected = _bar_shard_dns(rendered)
    assert len(expected) == {"default": 1, "sharded": 3}[variant]
    for workload in rendered.workloads().values():
        for ordinal in pods(workload):
            environment = pod_environment(rendered, workload, ordinal)
            assert "TICKMESH_BARS_ADDRESS" not in environment
            settings = _pod_settings(clean_environment, service_of(workload), environment)
            assert isinstance(settings, CommonSettings)
            assert settings.bar_shard_addresses == tuple(expected), workload["metadata"]["name"]


def test_collector_shard_sends_to_the_bar_shard_that_owns_its_instruments(
    sharded: Rendered, clean_environment: pytest.MonkeyPatch
) -> None:
    (collector,) = workloads_of(sharded, "collector")
    (bars,) = workloads_of(sharded, "bars")
    dns = _bar_shard_dns(sharded)
    for ordinal in pods(collector):
        environment = pod_environment(sharded, collector, ordinal)
        settings = _pod_settings(clean_environment, "collector", environment)
        assert settings.ingest_address == dns[ordinal]
        bar_settings = _settings_of_pod(
            clean_environment, "bars", pod_environment(sharded, bars, ordinal)
        )
        for instrument in INSTRUMENTS:
            collected = shard_of(instrument, settings.collector_shard_count) == ordinal
            owned = (
                shard_of(instrument, bar_settings["bars_shard_count"])
                == (bar_settings["bars_shard_index"])
            )
            assert collected == owned, instrument


def test_gateway_routes_each_instrument_to_the_bar_pod_that_owns_it(
    sharded: Rendered, clean_environment: pytest.MonkeyPatch
) -> None:
    (gateway,) = workloads_of(sharded, "gateway")
    (bars,) = workloads_of(sharded, "bars")
    settings = _pod_settings(clean_environment, "gateway", pod_environment(sharded, gateway, 0))
    dns = _bar_shard_dns(sharded)
    owners = {
        dns[ordinal]: _settings_of_pod(
            clean_environment, "bars", pod_environment(sharded, bars, ordinal)
        )
        for ordinal in pods(bars)
    }
    routed = set()
    for instrument in INSTRUMENTS:
        address = shard_address(instrument, settings.bar_shard_addresses)
        owner = owners[address]
        assert shard_of(instrument, owner["bars_shard_count"]) == owner["bars_shard_index"]
        routed.add(address)
    assert len(routed) > 1  # the instruments spread over several shards


def test_analytics_consumes_every_bar_shard_with_a_resume_point_each(
    sharded: Rendered, clean_environment: pytest.MonkeyPatch
) -> None:
    (analytics,) = workloads_of(sharded, "analytics")
    assert analytics["kind"] == "Deployment"
    settings = _pod_settings(clean_environment, "analytics", pod_environment(sharded, analytics, 0))
    assert settings.bar_shard_addresses == tuple(_bar_shard_dns(sharded))
    assert len(set(settings.resume_point_names)) == 3


def test_sharded_analytics_pairs_pod_i_with_bar_shard_i(
    chart: helm_python.Chart, clean_environment: pytest.MonkeyPatch
) -> None:
    rendered = render(chart, SHARDED | {"analytics": {"sharded": True}})
    (analytics,) = workloads_of(rendered, "analytics")
    assert analytics["kind"] == "StatefulSet"
    assert analytics["spec"]["replicas"] == 3
    assert analytics["metadata"]["name"] not in rendered.of_kind("HorizontalPodAutoscaler")
    port = port_of(pod_environment(rendered, analytics, 0)["TICKMESH_ANALYTICS_LISTEN"])
    dns = [_headless_dns(rendered, analytics, ordinal, port) for ordinal in pods(analytics)]
    for ordinal in pods(analytics):
        settings = _pod_settings(
            clean_environment, "analytics", pod_environment(rendered, analytics, ordinal)
        )
        assert settings.consumed_bar_shards == (ordinal,)
        assert settings.analytics_shard_addresses == tuple(dns)
    # Every pod, the gateway's included, routes an instrument to the analytics pod that computes it.
    (gateway,) = workloads_of(rendered, "gateway")
    environment = pod_environment(rendered, gateway, 0)
    assert "TICKMESH_ANALYTICS_ADDRESS" not in environment
    settings = _pod_settings(clean_environment, "gateway", environment)
    assert settings.analytics_shard_addresses == tuple(dns)
    for instrument in INSTRUMENTS:
        owner = dns.index(shard_address(instrument, settings.analytics_shard_addresses))
        assert owner == shard_of(instrument, 3)


def test_unequal_collector_and_bar_shards_refuse_to_render(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"collector.shards \(2\) must equal"):
        render(chart, {"collector": {"shards": 2}, "bars": {"shards": 3}})


@pytest.mark.parametrize("variant", ["default", "sharded"])
def test_grpc_probes_ask_the_health_port(variant: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(variant)
    for workload in rendered.workloads().values():
        service = service_of(workload)
        if service == "gateway":
            continue
        pod_container = container(workload)
        environment = pod_environment(rendered, workload, 0)
        listen = port_of(environment[f"TICKMESH_{service.upper()}_LISTEN"])
        assert environment[f"TICKMESH_{service.upper()}_LISTEN"] == f"0.0.0.0:{listen}"
        ports = {p["name"]: p["containerPort"] for p in pod_container["ports"]}
        assert ports["grpc"] == listen
        assert ports["metrics"] == int(environment[f"TICKMESH_{service.upper()}_METRICS_PORT"])
        # Probes carry no client certificate: they ask the plaintext health-only listener.
        health = port_of(environment["TICKMESH_GRPC_HEALTH_LISTEN"])
        assert ports["health"] == health != listen
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert pod_container[probe]["grpc"] == {"port": health}, (service, probe)


def test_gateway_http_probes_and_port(default: Rendered) -> None:
    (workload,) = workloads_of(default, "gateway")
    pod_container = container(workload)
    environment = pod_environment(default, workload, 0)
    assert environment["TICKMESH_GATEWAY_HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in pod_container["ports"]}
    assert ports == {"http": int(environment["TICKMESH_GATEWAY_PORT"])}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert pod_container[probe]["httpGet"] == {"path": "/health", "port": "http"}


@pytest.mark.parametrize("variant", ["default", "sharded"])
def test_security_context_is_locked_down(variant: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(variant)
    for workload in rendered.workloads().values():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        pod_container = container(workload)
        context = pod_container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        # /tmp is the only writable place; everything else (the TLS Secret) is read-only.
        (mount,) = [m for m in pod_container["volumeMounts"] if not m.get("readOnly")]
        assert mount["mountPath"] == "/tmp"
        assert "emptyDir" in volumes[mount["name"]]
        assert pod_container["resources"]["requests"]["cpu"]
        assert pod_container["resources"]["limits"]["memory"]


def test_services_route_to_named_container_ports(sharded: Rendered) -> None:
    workloads = sharded.workloads().values()
    for service in sharded.of_kind("Service").values():
        selector = service["spec"]["selector"]
        matched = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched, service["metadata"]["name"]
        for workload in matched:
            names = {p["name"] for p in container(workload)["ports"]}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in names, service["metadata"]["name"]


def test_disruption_budgets_and_selectors_match_theirpods(sharded: Rendered) -> None:
    workloads = sharded.workloads()
    for name, budget in sharded.of_kind("PodDisruptionBudget").items():
        workload = workloads[name]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert (
            workload["spec"]["selector"]["matchLabels"] == budget["spec"]["selector"]["matchLabels"]
        )


def test_service_monitor_scrapes_every_service_metrics_endpoint(default: Rendered) -> None:
    monitor = default.get("ServiceMonitor", PREFIX)
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoints = {(e["port"], e["path"]) for e in monitor["spec"]["endpoints"]}
    scraped = {
        name: service
        for name, service in default.of_kind("Service").items()
        if selector.items() <= service["metadata"]["labels"].items()
    }
    assert set(scraped) == {f"{PREFIX}-{s}" for s in ("collector", "bars", "analytics", "gateway")}
    for name, service in scraped.items():
        port_names = {p["name"] for p in service["spec"]["ports"]}
        expected = ("http" if name.endswith("-gateway") else "metrics", "/metrics")
        assert expected in endpoints
        assert expected[0] in port_names, name


def test_generated_jwt_secret_is_long_enough_for_production(default: Rendered) -> None:
    assert len(default.secret_value(f"{PREFIX}-secrets", "jwt-secret")) >= 32
    assert len(default.secret_value(f"{PREFIX}-secrets", "postgres-password")) >= 24


def test_short_jwt_secret_refuses_to_render(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="at least 32 characters"):
        render(chart, {"secrets": {"jwtSecret": "short"}})


def test_existing_secret_replaces_the_chart_secret(chart: helm_python.Chart) -> None:
    rendered = render(
        chart,
        {
            "secrets": {"existingSecret": "market-secrets"},
            "postgresql": {"existingSecret": "market-secrets"},
            "redis": {"existingSecret": "market-secrets"},
        },
    )
    assert rendered.of_kind("Secret") == {}
    for workload in rendered.workloads().values():
        references = {
            entry["valueFrom"]["secretKeyRef"]["name"]
            for entry in container(workload)["env"]
            if "secretKeyRef" in entry.get("valueFrom", {})
        }
        assert references == {"market-secrets"}


def test_autoscaling_off_sets_replicas_and_drops_hpas(chart: helm_python.Chart) -> None:
    rendered = render(
        chart,
        {
            "analytics": {"autoscaling": {"enabled": False}, "replicas": 2},
            "gateway": {"autoscaling": {"enabled": False}, "replicas": 3},
            "serviceMonitor": {"enabled": False},
        },
    )
    assert rendered.of_kind("HorizontalPodAutoscaler") == {}
    assert rendered.of_kind("ServiceMonitor") == {}
    assert rendered.get("Deployment", f"{PREFIX}-gateway")["spec"]["replicas"] == 3
    assert rendered.get("Deployment", f"{PREFIX}-analytics")["spec"]["replicas"] == 2


def test_values_outside_the_schema_refuse_to_render(chart: helm_python.Chart) -> None:
    for values in (
        {"bars": {"shards": 0}},
        {"environment": "prod"},
        {"collector": {"env": {"COLLECTOR_YAHOO_TICKERS": "AAPL"}}},
    ):
        with pytest.raises(helm_python.HelmValuesError):
            render(chart, values)
