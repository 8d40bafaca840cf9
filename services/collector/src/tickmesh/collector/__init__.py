"""tickmesh collector service."""
