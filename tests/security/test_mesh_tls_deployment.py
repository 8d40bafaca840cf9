"""Issue 13 item 1, the deployment half: every service gets its role's certificate (Helm from
a Secret or a cert-manager Certificate, compose from a one-shot `certs` service) under
TICKMESH_TLS_DIR, runs in production (no reflection), and is probed on its plaintext
health-only port (sec-plan "Contracts")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python
import pytest

from ..ops.compose_run import REQUIRED_SECRETS, compose_model, make_docker_config
from ..ops.helm_render import (
    GRPC_ROLES,
    PREFIX,
    ROLES,
    Manifest,
    Rendered,
    container,
    pod_environment,
    pods,
    render,
    service_of,
    workload_of,
)
from ..ops.service_settings import port_of
from .helm_fixtures import load_chart

SHARDED = {"collector": {"shards": 3}, "bars": {"shards": 3}}
CERT_MANAGER = {
    **SHARDED,
    "tls": {
        "certManager": {"enabled": True, "issuerRef": {"name": "mesh-ca", "kind": "ClusterIssuer"}}
    },
}
HEALTH_PORT_OFFSET = 100  # sec-plan: the health-only listener is on grpcPort + 100


@pytest.fixture(scope="module")
def chart() -> helm_python.Chart:
    return load_chart()


@pytest.fixture(scope="module")
def sharded(chart: helm_python.Chart) -> Rendered:
    return render(chart, SHARDED)


@pytest.fixture(scope="module")
def with_cert_manager(chart: helm_python.Chart) -> Rendered:
    return render(chart, CERT_MANAGER)


def _tls_secret_mounted_at(workload: Manifest, path: str) -> str:
    """The Secret mounted read-only at `path` in the workload's container."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in container(workload)["volumeMounts"] if m["mountPath"] == path]
    assert mount.get("readOnly") is True, workload["metadata"]["name"]
    secret: str = volumes[mount["name"]]["secret"]["secretName"]
    return secret


def _mounted_tls_secrets(rendered: Rendered) -> dict[str, str]:
    """role -> the Secret its pods mount at TICKMESH_TLS_DIR."""
    mounted = {}
    for workload in rendered.workloads().values():
        for ordinal in pods(workload):
            tls_dir = pod_environment(rendered, workload, ordinal)["TICKMESH_TLS_DIR"]
            mounted[service_of(workload)] = _tls_secret_mounted_at(workload, tls_dir)
    return mounted


def test_every_service_mounts_its_role_secret_at_tls_dir(sharded: Rendered) -> None:
    assert _mounted_tls_secrets(sharded) == {role: f"{PREFIX}-{role}-tls" for role in ROLES}


def test_existing_tls_secrets_are_mounted_by_name(chart: helm_python.Chart) -> None:
    names = {role: f"mesh-{role}-cert" for role in ROLES}
    rendered = render(chart, {"tls": {"existingSecrets": names}})
    assert _mounted_tls_secrets(rendered) == names
    assert rendered.of_kind("Certificate") == {}


def _hosts_dialled(rendered: Rendered) -> dict[str, set[str]]:
    """role -> every host name a client of that role's service dials (from the gateway's env)."""
    environment = pod_environment(rendered, workload_of(rendered, "gateway"), 0)
    bars = environment["TICKMESH_BARS_ADDRESSES"].split(",")
    return {
        "collector": {environment["TICKMESH_COLLECTOR_ADDRESS"].rsplit(":", 1)[0]},
        "bars": {address.rsplit(":", 1)[0] for address in bars},
        "analytics": {environment["TICKMESH_ANALYTICS_ADDRESS"].rsplit(":", 1)[0]},
    }


def test_cert_manager_certificates_name_the_role_and_the_service_names(
    with_cert_manager: Rendered,
) -> None:
    certificates = with_cert_manager.of_kind("Certificate")
    mounted = _mounted_tls_secrets(with_cert_manager)
    by_secret = {c["spec"]["secretName"]: c for c in certificates.values()}
    assert set(by_secret) == set(mounted.values())
    dialled = _hosts_dialled(with_cert_manager)
    assert len(dialled["bars"]) == 3
    for role, secret in mounted.items():
        spec = by_secret[secret]["spec"]
        assert spec["uris"] == [f"spiffe://tickmesh/{role}"], role
        assert dialled.get(role, set()) <= set(spec["dnsNames"]), role
        assert {"server auth", "client auth"} <= set(spec["usages"]), role
        assert spec["issuerRef"] == {
            "name": "mesh-ca",
            "kind": "ClusterIssuer",
            "group": "cert-manager.io",
        }
        assert spec["privateKey"]["rotationPolicy"] == "Always"


def test_cert_manager_without_an_issuer_refuses_to_render(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"tls\.certManager\.issuerRef\.name"):
        render(chart, {"tls": {"certManager": {"enabled": True}}})


def test_every_pod_runs_in_production_without_insecure_grpc(sharded: Rendered) -> None:
    # Reflection is served only outside production; TICKMESH_GRPC_INSECURE is for tests.
    for workload in sharded.workloads().values():
        for ordinal in pods(workload):
            environment = pod_environment(sharded, workload, ordinal)
            assert environment["TICKMESH_ENVIRONMENT"] == "production"
            assert "TICKMESH_GRPC_INSECURE" not in environment


@pytest.mark.parametrize("role", GRPC_ROLES)
def test_grpc_probes_ask_the_plaintext_health_port(sharded: Rendered, role: str) -> None:
    workload = workload_of(sharded, role)
    environment = pod_environment(sharded, workload, 0)
    listen = port_of(environment[f"TICKMESH_{role.upper()}_LISTEN"])
    health = listen + HEALTH_PORT_OFFSET
    assert environment["TICKMESH_GRPC_HEALTH_LISTEN"] == f"0.0.0.0:{health}"
    ports = {p["name"]: p["containerPort"] for p in container(workload)["ports"]}
    assert ports["health"] == health
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container(workload)[probe]["grpc"] == {"port": health}, probe
    # Probes reach the pod directly; no Service exposes the plaintext port.
    for service in sharded.of_kind("Service").values():
        assert "health" not in {p["targetPort"] for p in service["spec"]["ports"]}


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    docker_config = make_docker_config(tmp_path_factory.mktemp("docker-config"))
    return compose_model(docker_config, **REQUIRED_SECRETS)


def test_compose_certs_service_issues_every_role_once(compose: dict[str, Any]) -> None:
    certs = compose["services"]["certs"]
    script = " ".join(certs["command"])
    assert "tickmesh certs init /certs" in script
    for role in ROLES:
        assert f"tickmesh certs issue /certs {role} --dns {role}" in script, role
    mounts = {(v["source"], v["target"]) for v in certs["volumes"]}
    assert ("certs", "/certs") in mounts
    assert certs.get("restart", "no") == "no"


@pytest.mark.parametrize("role", ROLES)
def test_compose_service_mounts_only_its_role_directory(compose: dict[str, Any], role: str) -> None:
    service = compose["services"][role]
    environment = service["environment"]
    (mount,) = [v for v in service["volumes"] if v["target"] == environment["TICKMESH_TLS_DIR"]]
    # A subpath keeps the CA's key and the other roles' keys out of this container.
    assert (mount["source"], mount["volume"]["subpath"], mount["read_only"]) == (
        "certs",
        role,
        True,
    )
    assert service["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    assert environment["TICKMESH_ENVIRONMENT"] == "production"
    assert "TICKMESH_GRPC_INSECURE" not in environment


@pytest.mark.parametrize("role", GRPC_ROLES)
def test_compose_health_checks_ask_the_plaintext_health_port(
    compose: dict[str, Any], role: str
) -> None:
    environment = compose["services"][role]["environment"]
    health = port_of(environment[f"TICKMESH_{role.upper()}_LISTEN"]) + HEALTH_PORT_OFFSET
    assert environment["TICKMESH_GRPC_HEALTH_LISTEN"] == f"0.0.0.0:{health}"
    assert environment["HEALTH_TARGET"] == f"127.0.0.1:{health}"


def test_image_owns_the_certs_mount_point() -> None:
    # A fresh named volume copies the ownership of its mount point from the image, so the
    # non-root `certs` service can write into it.
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert "install -d -o 10001 -g 10001 -m 0700 /certs" in dockerfile
