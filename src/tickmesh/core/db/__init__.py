"""PostgreSQL through asyncpg: the pool, versioned migrations and bulk upserts."""
