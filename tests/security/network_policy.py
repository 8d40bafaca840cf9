"""A small evaluator of Kubernetes NetworkPolicy semantics, to ask a rendered chart "may A
reach B on port P?" the way a conforming CNI plugin answers it.

Semantics (networking.k8s.io/v1): a pod selected by no policy of a direction is open in that
direction; once selected, a connection is allowed only if some rule of some selecting policy
admits it (policies are additive). A connection needs both the source's egress and the
destination's ingress. Peers: podSelector (in the policy's namespace unless a
namespaceSelector is given), namespaceSelector, ipBlock (cidr minus except).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (labels and namespace set) or an address outside the cluster's pods (ip only)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Named container ports: name -> (port, protocol).
    ports: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None


def selector_matches(selector: Manifest | None, labels: dict[str, str]) -> bool:
    """A LabelSelector; an empty selector matches everything, a missing one nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _namespace_labels(namespace: str) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": namespace}


def _peer_matches(peer: Manifest, policy_namespace: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        address = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(c) for c in block.get("except") or [])
    if not other.is_pod:
        return False
    assert other.namespace is not None
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], _namespace_labels(other.namespace)):
            return False
    elif other.namespace != policy_namespace:
        return False
    if "podSelector" in peer:
        return selector_matches(peer["podSelector"], other.labels)
    return True


def _port_matches(rule_port: Manifest, destination: Endpoint, port: int, protocol: str) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    wanted: int | str | None = rule_port.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str):
        named = destination.ports.get(wanted)
        return named is not None and named == (port, protocol)
    end = int(rule_port.get("endPort", wanted))
    return wanted <= port <= end


def _rule_admits(
    rule: Manifest,
    peers_key: str,
    namespace: str,
    other: Endpoint,
    destination: Endpoint,
    port: int,
    protocol: str,
) -> bool:
    peers = rule.get(peers_key)
    if peers and not any(_peer_matches(p, namespace, other) for p in peers):
        return False
    ports = rule.get("ports")
    return not ports or any(_port_matches(p, destination, port, protocol) for p in ports)


class PolicySet:
    """The NetworkPolicies of one render, all in `namespace`."""

    def __init__(self, policies: list[Manifest], namespace: str) -> None:
        self.policies = policies
        self.namespace = namespace

    def _selecting(self, pod: Endpoint, direction: str) -> list[Manifest]:
        if pod.namespace != self.namespace:
            return []
        return [
            p
            for p in self.policies
            if direction in p["spec"].get("policyTypes", ["Ingress"])
            and selector_matches(p["spec"]["podSelector"], pod.labels)
        ]

    def isolated(self, pod: Endpoint, direction: str) -> bool:
        return bool(self._selecting(pod, direction))

    def _direction_allows(
        self,
        pod: Endpoint,
        direction: str,
        other: Endpoint,
        destination: Endpoint,
        port: int,
        protocol: str,
    ) -> bool:
        selecting = self._selecting(pod, direction)
        if not selecting:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        return any(
            _rule_admits(rule, peers_key, self.namespace, other, destination, port, protocol)
            for policy in selecting
            for rule in policy["spec"].get(key) or []
        )

    def allows(
        self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
    ) -> bool:
        """Whether `source` may open a connection to `destination` on `port`."""
        egress = not source.is_pod or self._direction_allows(
            source, "Egress", destination, destination, port, protocol
        )
        ingress = not destination.is_pod or self._direction_allows(
            destination, "Ingress", source, destination, port, protocol
        )
        return egress and ingress
