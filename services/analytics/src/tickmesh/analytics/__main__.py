"""`python -m tickmesh.analytics`: the analytics service process."""

from __future__ import annotations

from collections.abc import Sequence

from tickmesh.analytics.settings import AnalyticsSettings

from tickmesh.core.grpc_server import ServiceRegistration
from tickmesh.core.runtime import ServiceContext, main_for
from tickmesh.core.settings import load_settings_or_exit


async def wire(context: ServiceContext) -> Sequence[ServiceRegistration]:
    """Build the analytics service's servicers from its dependencies (health and reflection come with every server)."""
    return []


def main() -> None:
    """Run the analytics service until SIGTERM."""
    settings = load_settings_or_exit(AnalyticsSettings)
    main_for(
        "analytics", settings, settings.analytics_listen, settings.analytics_metrics_port, wire
    )


if __name__ == "__main__":
    main()
