"""Running the mesh: the CLI, the supervisor, embedded PostgreSQL and Redis, code generation."""
