"""Render helm/tickmesh offline and read the result as Kubernetes would: objects by kind and
name, each pod's environment with fieldRefs, secretKeyRefs and $(VAR) references resolved."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "helm" / "tickmesh"
RELEASE = "prod"
NAMESPACE = "markets"
PREFIX = f"{RELEASE}-tickmesh"
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
GRPC_ROLES = ("collector", "bars", "analytics")
ROLES = (*GRPC_ROLES, "gateway")

Manifest = dict[str, Any]


class Rendered:
    """The objects of one render, by kind and name."""

    def __init__(self, documents: list[Manifest]) -> None:
        self.objects = documents

    def of_kind(self, kind: str) -> dict[str, Manifest]:
        return {o["metadata"]["name"]: o for o in self.objects if o["kind"] == kind}

    def get(self, kind: str, name: str) -> Manifest:
        return self.of_kind(kind)[name]

    def workloads(self) -> dict[str, Manifest]:
        return {**self.of_kind("StatefulSet"), **self.of_kind("Deployment")}

    def secret_value(self, name: str, key: str) -> str:
        data = self.get("Secret", name)["data"]
        return base64.b64decode(data[key]).decode()


def render(chart: helm_python.Chart, values: dict[str, Any] | None = None) -> Rendered:
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    documents = [
        document
        for path, text in manifests.items()
        if path.endswith((".yaml", ".yml"))
        for document in yaml.safe_load_all(text)
        if document
    ]
    return Rendered(documents)


def container(workload: Manifest) -> Manifest:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    result: Manifest = only
    return result


def service_of(workload: Manifest) -> str:
    command = container(workload)["command"]
    assert command[:2] == ["python", "-m"]
    module: str = command[2]
    return module.removeprefix("tickmesh.")


def workloads_of(rendered: Rendered, service: str) -> list[Manifest]:
    return [w for w in rendered.workloads().values() if service_of(w) == service]


def workload_of(rendered: Rendered, service: str) -> Manifest:
    (workload,) = workloads_of(rendered, service)
    return workload


def _expand(value: str, resolved: dict[str, str]) -> str:
    # Kubernetes expands $(VAR) from variables defined earlier in the same list.
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: resolved[m.group(1)], value)


def pod_environment(rendered: Rendered, workload: Manifest, ordinal: int) -> dict[str, str]:
    """The environment Kubernetes gives pod `ordinal`: fieldRefs, secretKeyRefs, $(VAR) expanded."""
    resolved: dict[str, str] = {}
    for entry in container(workload)["env"]:
        if "value" in entry:
            resolved[entry["name"]] = _expand(str(entry["value"]), resolved)
            continue
        source = entry["valueFrom"]
        if "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            pod_name = f"{workload['metadata']['name']}-{ordinal}"
            resolved[entry["name"]] = {"metadata.name": pod_name, POD_INDEX: str(ordinal)}[path]
        else:
            reference = source["secretKeyRef"]
            resolved[entry["name"]] = rendered.secret_value(reference["name"], reference["key"])
    return resolved


def pods(workload: Manifest) -> range:
    if workload["kind"] == "StatefulSet":
        return range(workload["spec"]["replicas"])
    return range(1)
