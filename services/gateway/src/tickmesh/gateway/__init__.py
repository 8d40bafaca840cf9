"""tickmesh gateway service."""
