"""`python -m tickmesh.collector`: the collector process."""

from __future__ import annotations

from collections.abc import Sequence

from tickmesh.collector.settings import CollectorSettings
from tickmesh.collector.symbol_registry import SymbolRegistry
from tickmesh.collector.symbol_service import SymbolServicer

from tickmesh.core.grpc_server import ServiceRegistration
from tickmesh.core.runtime import ServiceContext, main_for
from tickmesh.core.settings import load_settings_or_exit
from tickmesh.v1 import symbol_service_pb2, symbol_service_pb2_grpc


async def wire(context: ServiceContext) -> Sequence[ServiceRegistration]:
    """Build the collector's servicers from its dependencies."""
    registry = SymbolRegistry(context.pool)
    return [
        ServiceRegistration(
            symbol_service_pb2.DESCRIPTOR.services_by_name["SymbolService"].full_name,
            symbol_service_pb2_grpc.add_SymbolServiceServicer_to_server,
            SymbolServicer(registry),
        )
    ]


def main() -> None:
    """Run the collector until SIGTERM."""
    settings = load_settings_or_exit(CollectorSettings)
    main_for(
        "collector", settings, settings.collector_listen, settings.collector_metrics_port, wire
    )


if __name__ == "__main__":
    main()
