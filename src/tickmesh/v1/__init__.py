"""Generated from proto/tickmesh/v1 by `make proto`. Do not edit."""
