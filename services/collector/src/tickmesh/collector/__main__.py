"""`python -m tickmesh.collector`: the collector process."""

from __future__ import annotations

from collections.abc import Sequence

from tickmesh.collector.binance.exchange_info import ExchangeInfoClient
from tickmesh.collector.collector_app import Collector
from tickmesh.collector.collector_metrics import CollectorMetrics
from tickmesh.collector.settings import CollectorSettings
from tickmesh.collector.symbol_registry import SymbolRegistry
from tickmesh.collector.symbol_service import SymbolServicer
from tickmesh.core.grpc_server import ServiceRegistration
from tickmesh.core.runtime import ServiceContext, main_for
from tickmesh.core.settings import load_settings_or_exit
from tickmesh.v2 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc


def build(
    context: ServiceContext, settings: CollectorSettings
) -> tuple[Collector, list[ServiceRegistration]]:
    """Wire the collector's sources and its SymbolService from its settings and dependencies."""
    registry = SymbolRegistry(context.pool)
    exchange_info = ExchangeInfoClient(
        {
            market_pb2.EXCHANGE_BINANCE_SPOT: settings.collector_binance_spot_api_url,
            market_pb2.EXCHANGE_BINANCE_USDM: settings.collector_binance_usdm_api_url,
        }
    )
    collector = Collector(
        settings,
        CollectorMetrics(context.metrics.registry),
        registry,
        context.redis,
        exchange_info,
        context.tls,
    )
    registrations = [
        ServiceRegistration(
            symbol_service_pb2.DESCRIPTOR.services_by_name["SymbolService"].full_name,
            symbol_service_pb2_grpc.add_SymbolServiceServicer_to_server,
            SymbolServicer(registry, exchange_info),
        )
    ]
    return collector, registrations


def main() -> None:
    """Run the collector until SIGTERM."""
    settings = load_settings_or_exit(CollectorSettings)

    async def wire(context: ServiceContext) -> Sequence[ServiceRegistration]:
        collector, registrations = build(context, settings)
        await collector.start()
        context.exit_stack.push_async_callback(collector.stop, settings.drain_seconds)
        return registrations

    main_for(
        "collector", settings, settings.collector_listen, settings.collector_metrics_port, wire
    )


if __name__ == "__main__":
    main()
