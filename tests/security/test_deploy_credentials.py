"""Issue 13 item 3: PostgreSQL and Redis need passwords that come from Secrets (Helm) or from
the operator's shell (compose), nothing has a default password, and the monitoring ports of
compose answer on the loopback interface only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python
import pytest
import yaml

from ..ops.compose_run import (
    COMPOSE_FILE,
    REQUIRED_SECRETS,
    compose_model,
    make_docker_config,
    run_compose,
)
from ..ops.helm_render import CHART, PREFIX, Rendered, container, pod_environment, pods, render
from .helm_fixtures import load_chart

PASSWORDS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
# A URL whose user-info carries a password that is not a $(VAR) reference.
LITERAL_PASSWORD_IN_URL = re.compile(r"://[^/@\s:]*:(?!\$\()[^@\s/]+@")
# The compose services whose published port is the public edge (the dashboard and API).
PUBLIC_EDGE = {"gateway"}


@pytest.fixture(scope="module")
def chart() -> helm_python.Chart:
    return load_chart()


@pytest.fixture(scope="module")
def default(chart: helm_python.Chart) -> Rendered:
    return render(chart)


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for key, value in node.items() for item in _walk(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [
            item for index, value in enumerate(node) for item in _walk(value, f"{path}[{index}]")
        ]
    return [(path, node)]


def test_chart_values_hold_no_password() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path, value in _walk(values):
        if re.search(r"password|secret", path, re.IGNORECASE) and isinstance(value, str):
            assert not value or path.endswith(("existingSecret", "Key")), path
        if isinstance(value, str):
            assert not LITERAL_PASSWORD_IN_URL.search(value), path


def test_default_render_has_no_plaintext_password(default: Rendered) -> None:
    for workload in default.workloads().values():
        for entry in container(workload)["env"]:
            if "value" in entry:
                assert not LITERAL_PASSWORD_IN_URL.search(str(entry["value"])), entry["name"]
    assert default.of_kind("ConfigMap") == {}


def test_database_and_redis_urls_carry_the_generated_secret_passwords(
    default: Rendered,
) -> None:
    secret = f"{PREFIX}-secrets"
    database_password = default.secret_value(secret, "postgres-password")
    redis_password = default.secret_value(secret, "redis-password")
    assert len(database_password) >= 24
    assert len(redis_password) >= 24
    assert database_password != redis_password
    for workload in default.workloads().values():
        for ordinal in pods(workload):
            environment = pod_environment(default, workload, ordinal)
            database = urlsplit(environment["TICKMESH_DATABASE_URL"])
            assert (database.scheme, database.password) == ("postgresql", database_password)
            cache = urlsplit(environment["TICKMESH_REDIS_URL"])
            assert (cache.scheme, cache.password) == ("redis", redis_password)


def test_existing_credential_secrets_are_referenced_not_copied(chart: helm_python.Chart) -> None:
    rendered = render(
        chart,
        {
            "secrets": {"existingSecret": "gateway-jwt"},
            "postgresql": {"existingSecret": "pg-credentials", "passwordKey": "password"},
            "redis": {"existingSecret": "redis-credentials", "passwordKey": "password"},
        },
    )
    assert rendered.of_kind("Secret") == {}
    for workload in rendered.workloads().values():
        references = {
            (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container(workload)["env"]
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        expected = {("pg-credentials", "password"), ("redis-credentials", "password")}
        if workload["metadata"]["name"].endswith("-gateway"):
            expected.add(("gateway-jwt", "jwt-secret"))
        assert references == expected, workload["metadata"]["name"]


def test_generated_secret_is_kept_across_upgrades(default: Rendered) -> None:
    secret = default.get("Secret", f"{PREFIX}-secrets")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.fixture(scope="module")
def docker_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docker_config(tmp_path_factory.mktemp("docker-config"))


@pytest.fixture(scope="module")
def compose(docker_config: Path) -> dict[str, Any]:
    return compose_model(docker_config, **REQUIRED_SECRETS)


@pytest.mark.parametrize("missing", PASSWORDS)
def test_compose_refuses_to_start_without_each_password(docker_config: Path, missing: str) -> None:
    given = {k: v for k, v in REQUIRED_SECRETS.items() if k != missing}
    result = run_compose(docker_config, "config", "--quiet", **given)
    assert result.returncode != 0
    assert missing in result.stderr
    assert "set " in result.stderr  # the message says what to do, not only what is missing


def test_compose_file_has_no_default_password() -> None:
    text = COMPOSE_FILE.read_text()
    for variable in (*PASSWORDS, "TICKMESH_GATEWAY_JWT_SECRET"):
        assert f"${{{variable}:-" not in text, variable
        assert f"${{{variable}-" not in text, variable
        assert f"${{{variable}:?" in text, variable


def test_compose_services_use_the_given_passwords(compose: dict[str, Any]) -> None:
    services = compose["services"]
    database = services["timescaledb"]["environment"]
    assert database["POSTGRES_PASSWORD"] == REQUIRED_SECRETS["POSTGRES_PASSWORD"]
    for role in ("collector", "bars", "analytics", "gateway"):
        environment = services[role]["environment"]
        url = urlsplit(environment["TICKMESH_DATABASE_URL"])
        assert url.password == REQUIRED_SECRETS["POSTGRES_PASSWORD"], role
        assert (
            urlsplit(environment["TICKMESH_REDIS_URL"]).password
            == REQUIRED_SECRETS["REDIS_PASSWORD"]
        ), role
    redis = services["redis"]
    assert "--requirepass" in " ".join(redis["command"])
    assert redis["environment"]["REDIS_PASSWORD"] == REQUIRED_SECRETS["REDIS_PASSWORD"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == REQUIRED_SECRETS["GRAFANA_ADMIN_PASSWORD"]


def test_compose_monitoring_ports_bind_loopback(compose: dict[str, Any]) -> None:
    published = {
        (name, port["target"]): port.get("host_ip", "0.0.0.0")
        for name, service in compose["services"].items()
        if name not in PUBLIC_EDGE
        for port in service.get("ports", [])
    }
    assert {name for name, _ in published} >= {"prometheus", "grafana", "jaeger"}
    assert {k: v for k, v in published.items() if v != "127.0.0.1"} == {}
