"""Registering the demo's symbols through the collector's SymbolService once it is up."""

from __future__ import annotations

import logging
import os

from tickmesh.core.grpc_client import open_channel
from tickmesh.v1 import market_pb2, symbol_service_pb2, symbol_service_pb2_grpc

log = logging.getLogger(__name__)


async def register_symbols(symbols: list[str], within_seconds: float = 120.0) -> None:
    """Add each symbol as a Binance spot instrument (the simulator's default market)."""
    address = os.environ.get("TICKMESH_COLLECTOR_ADDRESS", "127.0.0.1:50051")
    async with open_channel(address) as channel:
        stub = symbol_service_pb2_grpc.SymbolServiceStub(channel)
        for symbol in symbols:
            await stub.AddSymbol(
                symbol_service_pb2.AddSymbolRequest(
                    symbol=symbol, exchange=market_pb2.EXCHANGE_BINANCE_SPOT, asset_type="crypto"
                ),
                wait_for_ready=True,
                timeout=within_seconds,
            )
    log.info("registered %s", ", ".join(symbols))
