"""A local exchange simulator speaking Binance's WebSocket and REST protocols.

Start it in-process (``async with ExchangeSimulator(config) as sim``), point the
collector or python-binance at ``sim.ws_url`` / ``sim.api_url``, and inject faults
through ``config.faults`` or the ``/sim/*`` control endpoints.
"""

from tickmesh.collector.simulator.config import (
    FaultConfig,
    Market,
    SimulatorConfig,
    SourceSpec,
    WholeMarket,
)
from tickmesh.collector.simulator.hub import SimulatorStats
from tickmesh.collector.simulator.server import (
    ExchangeSimulator,
    main,
    parse_args,
    parse_speed,
    run_simulator,
    serve_until_signalled,
)
from tickmesh.collector.simulator.sources import file_instruments

__all__ = [
    "ExchangeSimulator",
    "FaultConfig",
    "Market",
    "SimulatorConfig",
    "SimulatorStats",
    "SourceSpec",
    "WholeMarket",
    "file_instruments",
    "main",
    "parse_args",
    "parse_speed",
    "run_simulator",
    "serve_until_signalled",
]
