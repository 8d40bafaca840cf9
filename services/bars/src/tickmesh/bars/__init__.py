"""tickmesh bars service."""
