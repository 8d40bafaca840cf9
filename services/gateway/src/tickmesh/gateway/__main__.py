"""`python -m tickmesh.gateway`: the HTTP gateway process."""

from __future__ import annotations

import uvicorn
from tickmesh.gateway.app import create_app
from tickmesh.gateway.settings import GatewaySettings

from tickmesh.core.logs import configure_logging
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.settings import load_settings_or_exit
from tickmesh.core.tracing import configure_tracing


def main() -> None:
    """Serve the gateway until SIGTERM (uvicorn drains open requests)."""
    settings = load_settings_or_exit(GatewaySettings)
    configure_logging("gateway", settings.log_level)
    configure_tracing("gateway")
    app = create_app(settings, CoreMetrics())
    uvicorn.run(
        app,
        host=settings.gateway_host,
        port=settings.gateway_port,
        log_config=None,
        timeout_graceful_shutdown=int(settings.drain_seconds),
    )


if __name__ == "__main__":
    main()
