"""Versioned SQL migrations, applied at start in one transaction under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from tickmesh.core.db.pool import Connection

log = logging.getLogger(__name__)

# Any constant works; every tickmesh process takes the same one so only one migrates at a time.
MIGRATION_LOCK_KEY = 0x7469636B6D657368  # "tickmesh"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One versioned step: the plain-PostgreSQL SQL and, optionally, its TimescaleDB companions.

    `timescale_pre_sql` runs before the plain SQL (e.g. to decompress chunks whose columns
    change), `timescale_sql` after it.
    """

    version: int
    name: str
    sql: str
    timescale_sql: str | None
    timescale_pre_sql: str | None = None

    @property
    def checksum(self) -> str:
        """SHA-256 of the plain SQL, to notice a migration edited after it was applied."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(Exception):
    """The schema and the migrations disagree; nothing was changed."""


def load_migrations() -> list[Migration]:
    """Read the migrations shipped in tickmesh/core/db/sql, in version order."""
    folder = resources.files("tickmesh.core.db") / "sql"
    migrations = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        companion = folder / entry.name.replace(".sql", ".timescale.sql")
        pre_companion = folder / entry.name.replace(".sql", ".timescale-pre.sql")
        migrations.append(
            Migration(
                version=int(match.group(1)),
                name=match.group(2),
                sql=entry.read_text(),
                timescale_sql=companion.read_text() if companion.is_file() else None,
                timescale_pre_sql=pre_companion.read_text() if pre_companion.is_file() else None,
            )
        )
    migrations.sort(key=lambda m: m.version)
    return migrations


async def timescale_loaded(conn: Connection) -> bool:
    """True when the timescaledb extension is available and preloaded (so it can be created)."""
    available = await conn.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    preload = await conn.fetchval("SELECT current_setting('shared_preload_libraries', true)")
    return bool(available) and "timescaledb" in (preload or "")


async def migrate(conn: Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending migrations (the shipped ones by default); return the versions applied. All or nothing."""
    if migrations is None:
        migrations = load_migrations()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     INTEGER PRIMARY KEY,
                name        TEXT NOT NULL,
                checksum    TEXT NOT NULL,
                timescale   BOOLEAN NOT NULL,
                applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {row["version"]: row["checksum"] for row in rows}
        for migration in migrations:
            recorded = applied.get(migration.version)
            if recorded is not None and recorded != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was changed after it "
                    "was applied; add a new migration instead"
                )
        pending = [m for m in migrations if m.version not in applied]
        if not pending:
            return []
        with_timescale = await timescale_loaded(conn)
        for migration in pending:
            log.info("applying migration %04d_%s", migration.version, migration.name)
            if with_timescale and migration.timescale_pre_sql is not None:
                await conn.execute(migration.timescale_pre_sql)
            await conn.execute(migration.sql)
            if with_timescale and migration.timescale_sql is not None:
                await conn.execute(migration.timescale_sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, timescale) "
                "VALUES ($1, $2, $3, $4)",
                migration.version,
                migration.name,
                migration.checksum,
                with_timescale,
            )
        return [m.version for m in pending]


async def migrate_pool(pool: asyncpg.Pool) -> list[int]:
    """Apply pending migrations on a connection of `pool`."""
    async with pool.acquire() as conn:
        return await migrate(conn)
