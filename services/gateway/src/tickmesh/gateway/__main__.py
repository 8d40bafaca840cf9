"""`python -m tickmesh.gateway`: the HTTP gateway process."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from contextlib import AsyncExitStack
from types import FrameType

import uvicorn
import uvloop
from opentelemetry.sdk.trace import TracerProvider

from tickmesh.core.errors import Unavailable
from tickmesh.core.logs import configure_logging
from tickmesh.core.long_lived import freeze_survivors
from tickmesh.core.metrics import CoreMetrics
from tickmesh.core.runtime import mesh_tls_or_exit
from tickmesh.core.tls import TlsMaterial
from tickmesh.core.tracing import configure_tracing, exporting
from tickmesh.gateway.admin_bootstrap import AdminMismatch
from tickmesh.gateway.app import create_app
from tickmesh.gateway.frame_protocol import FrameWritingProtocol
from tickmesh.gateway.query_redaction import install_log_redaction
from tickmesh.gateway.settings import GatewaySettings, load_gateway_settings_or_exit
from tickmesh.gateway.wiring import open_services

log = logging.getLogger("tickmesh.gateway")


async def serve(
    settings: GatewaySettings,
    tracer_provider: TracerProvider | None = None,
    tls: TlsMaterial | None = None,
) -> None:
    """Open the dependencies, serve HTTP until SIGTERM/SIGINT (uvicorn drains), close everything."""
    async with AsyncExitStack() as stack:
        services = await open_services(settings, CoreMetrics(), stack, tls)
        app = create_app(services, tracer_provider)
        _tune_garbage_collector()
        config = uvicorn.Config(
            app,
            host=settings.gateway_host,
            port=settings.gateway_port,
            log_config=None,
            timeout_graceful_shutdown=int(settings.drain_seconds),
            ws=FrameWritingProtocol,  # bars are framed once and written to every client
            ws_per_message_deflate=False,  # a compressed frame could not be shared
            ws_ping_interval=settings.gateway_ws_heartbeat_seconds,
            # X-Forwarded-For is handled by the app from TICKMESH_GATEWAY_TRUSTED_PROXIES;
            # uvicorn's default would trust it from 127.0.0.1 whatever the setting says.
            proxy_headers=False,
            # Client messages are small (auth, subscribe); uvicorn's default is 16 MiB.
            ws_max_size=settings.gateway_ws_max_message_bytes,
        )
        install_log_redaction()  # `?token=` out of uvicorn's access and WebSocket lines
        # uvicorn drains on SIGTERM/SIGINT, restores the previous handlers and re-raises the
        # signal; these handlers make that re-raise a no-op, so the exit stack closes the pool,
        # Redis and channels and the process exits 0 like the gRPC services do.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _drained)
        await uvicorn.Server(config).serve()


def _tune_garbage_collector() -> None:
    """Keep full collections off the push path of thousands of WebSocket clients.

    Each open WebSocket holds a few hundred objects. With the default thresholds (700, 10, 10)
    the objects alive in the middle of a push round survive young collections, pile up in the
    old generation and set off full collections of about a second with 5,000 clients, stalling
    every push (bench_gateway measured it). Young collections every 50,000 allocations let a
    round's objects die young; what the process holds at start is frozen out of every scan.
    """
    freeze_survivors()
    gc.set_threshold(50_000, 20, 100)


def _drained(signum: int, frame: FrameType | None) -> None:
    log.info("gateway drained after %s", signal.Signals(signum).name)


def main() -> None:
    """Run the gateway; exit 2 on bad settings, 1 with one line when a dependency is down."""
    settings = load_gateway_settings_or_exit()
    static_dir = settings.gateway_static_dir
    if static_dir is not None and not static_dir.is_dir():
        sys.stderr.write(
            f"tickmesh: invalid setting: TICKMESH_GATEWAY_STATIC_DIR: {static_dir} is not a directory\n"
        )
        raise SystemExit(2)
    # The gateway calls the mesh as the `gateway` role: its certificate is its identity.
    tls = mesh_tls_or_exit(settings)
    configure_logging("gateway", settings.log_level)
    provider = configure_tracing("gateway")
    try:
        # uvloop (from uvicorn[standard]): uvicorn picks it only in uvicorn.run, not in serve().
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings, provider if exporting(provider) else None, tls))
    except Unavailable as error:
        log.error("cannot start: %s", error)
        raise SystemExit(1) from None
    except AdminMismatch as error:
        # A configuration conflict, like an invalid setting: exit 2 with one line.
        log.error("cannot start: %s", error)
        raise SystemExit(2) from None
    finally:
        provider.shutdown()


if __name__ == "__main__":
    main()
