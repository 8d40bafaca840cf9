"""`tickmesh run --bar-shards N`: a collector, a bar service and an analytics service per shard.

Shard i of each listens at its service's base port + 100·i (so shard 0 keeps the usual
address), and every child gets the bar and analytics shards' addresses as
TICKMESH_BARS_ADDRESSES and TICKMESH_ANALYTICS_ADDRESSES.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tickmesh.mesh.supervisor import service_command

SHARDED_SERVICES = ("collector", "bars", "analytics")
PORT_STEP = 100
_DEFAULT_LISTEN = {
    "collector": "127.0.0.1:50051",
    "bars": "127.0.0.1:50052",
    "analytics": "127.0.0.1:50053",
}
_DEFAULT_METRICS_PORT = {"collector": 9101, "bars": 9102, "analytics": 9103}
# The services other processes call by shard: the layout lists their shards' addresses.
_ROUTED_SERVICES = ("bars", "analytics")


@dataclass(frozen=True)
class Child:
    """One supervised process: its name, command and its own settings on top of the common ones."""

    name: str
    command: list[str]
    environment: dict[str, str] = field(default_factory=dict)


def _shifted(address: str, offset: int) -> str:
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + offset}"


def _shard_environment(
    service: str, index: int, count: int, base: Mapping[str, str]
) -> dict[str, str]:
    prefix = f"TICKMESH_{service.upper()}"
    listen = _shifted(base.get(f"{prefix}_LISTEN", _DEFAULT_LISTEN[service]), PORT_STEP * index)
    metrics = int(base.get(f"{prefix}_METRICS_PORT", _DEFAULT_METRICS_PORT[service]))
    return {
        f"{prefix}_LISTEN": listen,
        # 0 asks for a free port, which every shard may do.
        f"{prefix}_METRICS_PORT": str(metrics and metrics + PORT_STEP * index),
        f"{prefix}_SHARD_INDEX": str(index),
        f"{prefix}_SHARD_COUNT": str(count),
    }


def layout(
    services: Sequence[str], bar_shards: int, environment: Mapping[str, str]
) -> tuple[list[Child], dict[str, str]]:
    """The children of `tickmesh run` and the settings they share, for `bar_shards` shards.

    One shard runs each service once, as always. Several run a collector, a bar service and
    an analytics service per shard (collector shard i feeds bar shard i, which analytics shard
    i consumes) and one of every other service.
    """
    if bar_shards < 1:
        raise ValueError("--bar-shards must be at least 1")
    if bar_shards == 1:
        return [Child(name, service_command(name)) for name in services], {}
    for service in _ROUTED_SERVICES:
        listed = f"TICKMESH_{service.upper()}_ADDRESSES"
        for variable in (listed.removesuffix("ES"), listed):
            if variable in environment:
                raise ValueError(f"--bar-shards sets {listed} itself; unset {variable}")
    children: list[Child] = []
    for name in services:
        if name not in SHARDED_SERVICES:
            children.append(Child(name, service_command(name)))
            continue
        for index in range(bar_shards):
            shard = _shard_environment(name, index, bar_shards, environment)
            children.append(Child(f"{name}-{index}", service_command(name), shard))
    shared: dict[str, str] = {}
    for service in _ROUTED_SERVICES:
        prefix = f"TICKMESH_{service.upper()}"
        listen = environment.get(f"{prefix}_LISTEN", _DEFAULT_LISTEN[service])
        addresses = [_shifted(listen, PORT_STEP * i) for i in range(bar_shards)]
        shared[f"{prefix}_ADDRESSES"] = ",".join(addresses)
    return children, shared
