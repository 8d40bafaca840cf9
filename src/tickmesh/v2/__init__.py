"""Generated from proto/tickmesh/v2 by `make proto`. Do not edit."""
