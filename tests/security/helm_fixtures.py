"""Chart fixtures the security tests share (issue 13): the chart, its default render, and pods
of a render as network endpoints."""

from __future__ import annotations

import itertools

import helm_python

from ..ops.helm_render import CHART, NAMESPACE, Rendered, container, service_of
from .network_policy import Endpoint, PolicySet

MESH_SUBNET = "10.244.{}.{}"


def load_chart() -> helm_python.Chart:
    return helm_python.Chart.load(str(CHART))


def pod_endpoints(rendered: Rendered) -> dict[str, Endpoint]:
    """One pod per service, with its template's labels and named container ports."""
    endpoints: dict[str, Endpoint] = {}
    addresses = itertools.count(10)
    for workload in rendered.workloads().values():
        service = service_of(workload)
        ports = {
            p["name"]: (int(p["containerPort"]), p.get("protocol", "TCP"))
            for p in container(workload).get("ports", [])
        }
        endpoints[service] = Endpoint(
            name=service,
            ip=MESH_SUBNET.format(1, next(addresses)),
            namespace=NAMESPACE,
            labels=dict(workload["spec"]["template"]["metadata"]["labels"]),
            ports=ports,
        )
    return endpoints


def policies(rendered: Rendered) -> PolicySet:
    return PolicySet(list(rendered.of_kind("NetworkPolicy").values()), NAMESPACE)
