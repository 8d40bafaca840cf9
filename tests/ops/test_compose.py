"""docker-compose.yml: valid for `docker compose config`, real TICKMESH_* names, ports that line up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .compose_run import (
    REPO_ROOT,
    REQUIRED_SECRETS,
    compose_model,
    make_docker_config,
    run_compose,
)
from .service_settings import (
    GRPC_SERVICES,
    SETTINGS_BY_SERVICE,
    default_port,
    port_of,
    unknown_variables,
)

DEPLOY = REPO_ROOT / "deploy"


@pytest.fixture(scope="module")
def docker_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docker_config(tmp_path_factory.mktemp("docker-config"))


def _compose(docker_config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_compose(docker_config, *args, **env)


@pytest.fixture(scope="module")
def compose(docker_config: Path) -> dict[str, Any]:
    """The compose model as `docker compose config` resolves it."""
    return compose_model(docker_config, **REQUIRED_SECRETS)


@pytest.fixture(scope="module")
def prometheus_targets() -> dict[str, tuple[str, str]]:
    """job name -> (target, metrics path) from deploy/prometheus.yml."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    targets: dict[str, tuple[str, str]] = {}
    for job in config["scrape_configs"]:
        (static,) = job["static_configs"]
        (target,) = static["targets"]
        targets[job["job_name"]] = (target, job.get("metrics_path", "/metrics"))
    return targets


def _environment(compose: dict[str, Any], service: str) -> dict[str, str]:
    environment: dict[str, str] = compose["services"][service]["environment"]
    return environment


def test_compose_config_valid_with_secret_passes(compose: dict[str, Any]) -> None:
    expected = {
        "timescaledb",
        "redis",
        "collector",
        "bars",
        "analytics",
        "gateway",
        "prometheus",
        "grafana",
        "otel-collector",
        "jaeger",
        "certs",
    }
    assert set(compose["services"]) == expected


def test_compose_config_without_jwt_secret_refuses(docker_config: Path) -> None:
    given = {k: v for k, v in REQUIRED_SECRETS.items() if k != "TICKMESH_GATEWAY_JWT_SECRET"}
    result = _compose(docker_config, "config", "--quiet", **given)
    assert result.returncode != 0
    assert "TICKMESH_GATEWAY_JWT_SECRET" in result.stderr


@pytest.mark.parametrize("service", sorted(SETTINGS_BY_SERVICE))
def test_compose_service_variables_are_settings_fields(
    compose: dict[str, Any], service: str
) -> None:
    environment = _environment(compose, service)
    assert unknown_variables(service, set(environment)) == set()


@pytest.mark.parametrize("service", sorted(SETTINGS_BY_SERVICE))
def test_compose_service_environment_builds_its_settings(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("TICKMESH_"):
            monkeypatch.delenv(key)
    for key, value in _environment(compose, service).items():
        monkeypatch.setenv(key, value)
    settings = SETTINGS_BY_SERVICE[service]()
    assert settings.model_dump()["environment"] == "production"


@pytest.mark.parametrize("service", sorted(SETTINGS_BY_SERVICE))
def test_compose_service_runs_its_module_as_non_root_read_only(
    compose: dict[str, Any], service: str
) -> None:
    definition = compose["services"][service]
    assert definition["command"] == ["python", "-m", f"tickmesh.{service}"]
    assert definition["read_only"] is True
    assert definition["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in definition["security_opt"]


@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_compose_grpc_listen_health_and_address_ports_agree(
    compose: dict[str, Any], service: str
) -> None:
    environment = _environment(compose, service)
    listen = port_of(environment[f"TICKMESH_{service.upper()}_LISTEN"])
    assert environment[f"TICKMESH_{service.upper()}_LISTEN"].startswith("0.0.0.0:")
    # The health check has no client certificate: it asks the plaintext health-only port.
    health = port_of(environment["TICKMESH_GRPC_HEALTH_LISTEN"])
    assert port_of(environment["HEALTH_TARGET"]) == health != listen
    # The bar service is named by its list of shards (one here); the others by one address.
    variable = (
        "TICKMESH_BARS_ADDRESSES" if service == "bars" else f"TICKMESH_{service.upper()}_ADDRESS"
    )
    for other in SETTINGS_BY_SERVICE:
        address = _environment(compose, other)[variable]
        assert address == f"{service}:{listen}", other


@pytest.mark.parametrize("service", sorted(SETTINGS_BY_SERVICE))
def test_compose_health_check_is_valid_python(compose: dict[str, Any], service: str) -> None:
    test = compose["services"][service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], f"{service} health check", "exec")


def test_compose_start_order_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for service in SETTINGS_BY_SERVICE:
        depends = services[service]["depends_on"]
        for dependency in ("timescaledb", "redis"):
            if service != "gateway":
                assert depends[dependency]["condition"] == "service_healthy", service
    assert services["collector"]["depends_on"]["bars"]["condition"] == "service_healthy"
    assert services["analytics"]["depends_on"]["bars"]["condition"] == "service_healthy"
    for backend in ("collector", "bars", "analytics"):
        assert services["gateway"]["depends_on"][backend]["condition"] == "service_healthy"
    for service, definition in services.items():
        for dependency, rule in definition.get("depends_on", {}).items():
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{service} -> {dependency}"


@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_prometheus_scrapes_each_grpc_service_metrics_port(
    compose: dict[str, Any], prometheus_targets: dict[str, tuple[str, str]], service: str
) -> None:
    field = f"{service}_metrics_port"
    environment = _environment(compose, service)
    configured = environment.get(f"TICKMESH_{service.upper()}_METRICS_PORT")
    port = default_port(service, field) if configured is None else int(configured)
    assert prometheus_targets[f"tickmesh-{service}"] == (f"{service}:{port}", "/metrics")


def test_prometheus_scrapes_gateway_http_port(
    compose: dict[str, Any], prometheus_targets: dict[str, tuple[str, str]]
) -> None:
    environment = _environment(compose, "gateway")
    assert environment["TICKMESH_GATEWAY_HOST"] == "0.0.0.0"
    port = environment["TICKMESH_GATEWAY_PORT"]
    assert prometheus_targets["tickmesh-gateway"] == (f"gateway:{port}", "/metrics")
    assert compose["services"]["gateway"]["ports"][0]["target"] == int(port)


def test_prometheus_config_is_the_one_compose_mounts(compose: dict[str, Any]) -> None:
    mounts = {
        (volume["source"], volume["target"])
        for volume in compose["services"]["prometheus"]["volumes"]
        if volume["type"] == "bind"
    }
    assert (str(DEPLOY / "prometheus.yml"), "/etc/prometheus/prometheus.yml") in mounts


def test_traces_flow_from_services_through_otel_collector_to_jaeger(
    compose: dict[str, Any],
) -> None:
    otel = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    grpc_endpoint = otel["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    for service in SETTINGS_BY_SERVICE:
        environment = _environment(compose, service)
        assert environment["OTEL_SERVICE_NAME"] == f"tickmesh-{service}"
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
            f"http://otel-collector:{port_of(grpc_endpoint)}"
        )
    pipeline = otel["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    (exporter,) = pipeline["exporters"]
    assert otel["exporters"][exporter]["endpoint"] == "jaeger:4317"
    assert compose["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    mounted = {volume["source"] for volume in compose["services"]["otel-collector"]["volumes"]}
    assert str(DEPLOY / "otel-collector.yaml") in mounted


def test_grafana_provisions_prometheus_and_the_dashboards(compose: dict[str, Any]) -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    prometheus = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    assert prometheus["uid"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "tickmesh.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    mounts = {
        volume["target"]: volume["source"]
        for volume in compose["services"]["grafana"]["volumes"]
        if volume["type"] == "bind"
    }
    assert mounts[path] == str(DEPLOY / "grafana" / "dashboards")
    assert mounts["/etc/grafana/provisioning"] == str(provisioning)


def test_timescaledb_database_matches_the_services_url(compose: dict[str, Any]) -> None:
    database = compose["services"]["timescaledb"]
    assert database["image"].startswith("timescale/timescaledb:")
    environment = database["environment"]
    url = _environment(compose, "bars")["TICKMESH_DATABASE_URL"]
    user, password = environment["POSTGRES_USER"], environment["POSTGRES_PASSWORD"]
    assert url == f"postgresql://{user}:{password}@timescaledb:5432/{environment['POSTGRES_DB']}"
