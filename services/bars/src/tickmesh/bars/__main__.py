"""`python -m tickmesh.bars`: the bars service process."""

from __future__ import annotations

from collections.abc import Sequence

from tickmesh.bars.settings import BarsSettings

from tickmesh.core.grpc_server import ServiceRegistration
from tickmesh.core.runtime import ServiceContext, main_for
from tickmesh.core.settings import load_settings_or_exit


async def wire(context: ServiceContext) -> Sequence[ServiceRegistration]:
    """Build the bars service's servicers from its dependencies (health and reflection come with every server)."""
    return []


def main() -> None:
    """Run the bars service until SIGTERM."""
    settings = load_settings_or_exit(BarsSettings)
    main_for("bars", settings, settings.bars_listen, settings.bars_metrics_port, wire)


if __name__ == "__main__":
    main()
