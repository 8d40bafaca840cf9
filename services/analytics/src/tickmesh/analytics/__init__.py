"""tickmesh analytics service."""
