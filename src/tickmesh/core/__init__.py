"""tickmesh core: settings, telemetry, storage, cache, resilience and the gRPC bootstrap shared by every service."""
