"""Fixtures every test level shares: a real PostgreSQL database and a real Redis per test run.

TICKMESH_TEST_DATABASE_URL / TICKMESH_TEST_REDIS_URL point at servers (CI uses the machine's);
without them the embedded servers start. Each run creates its own database, so runs never
collide, and drops it at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as redis

from tickmesh.core.db.migrations import migrate
from tickmesh.mesh.embedded import EmbeddedServers

REPO_ROOT = Path(__file__).resolve().parent

# A collector on an empty registry registers the default watchlist (live Binance and Yahoo
# instruments). Tests choose their instruments themselves, and their child processes inherit
# this; the tests of the watchlist itself set the variable explicitly.
os.environ.setdefault("TICKMESH_COLLECTOR_DEFAULT_WATCHLIST", "")
# Service processes refuse to start without TLS material. Tests that are not about the
# transport run them plaintext; the mesh, chaos, `tickmesh run`/`demo` and security tests
# give them certificates (tests/tls_helpers.py) and unset this for their children.
os.environ.setdefault("TICKMESH_GRPC_INSECURE", "true")


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def embedded_servers() -> Iterator[EmbeddedServers]:
    """Embedded PostgreSQL and Redis in a temporary directory, started on first use."""
    with (
        tempfile.TemporaryDirectory(prefix="tickmesh-test-") as state,
        EmbeddedServers(Path(state)) as servers,
    ):
        yield servers


@pytest.fixture(scope="session")
def server_database_url(request: pytest.FixtureRequest) -> str:
    """A URL of a PostgreSQL server we may create databases on."""
    configured = os.environ.get("TICKMESH_TEST_DATABASE_URL")
    if configured:
        return configured
    servers: EmbeddedServers = request.getfixturevalue("embedded_servers")
    return servers.start_postgres()


@pytest.fixture(scope="session")
async def database_url(server_database_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test run, dropped at the end."""
    name = f"tickmesh_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(server_database_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield url
    admin = await asyncpg.connect(server_database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the run's database."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """A Redis URL for this run: the configured server (database 15 by default) or an embedded one."""
    configured = os.environ.get("TICKMESH_TEST_REDIS_URL")
    if configured:
        return configured
    servers: EmbeddedServers = request.getfixturevalue("embedded_servers")
    return servers.start_redis()


_redis_databases = itertools.cycle(range(1, 16))


@pytest.fixture
async def fresh_redis_url(redis_url: str) -> str:
    """The run's Redis server on its own logical database, emptied first.

    Service processes on fresh PostgreSQL databases need a Redis of their own too: two bar
    services caching `bars:BTCUSDT:1m` in one Redis database would serve each other's bars.
    Tests run one at a time, so cycling through databases 1-15 keeps them apart.
    """
    return await _fresh_redis(redis_url)


@pytest.fixture(scope="module")
async def module_redis_url(redis_url: str) -> str:
    """A Redis logical database for one test module's processes, emptied first."""
    return await _fresh_redis(redis_url)


async def _fresh_redis(redis_url: str) -> str:
    parts = urlsplit(redis_url)
    index = next(_redis_databases)
    if parts.scheme == "unix":
        query = "&".join(p for p in parts.query.split("&") if p and not p.startswith("db="))
        url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, f"{query}&db={index}".lstrip("&"), "")
        )
    else:
        url = urlunsplit((parts.scheme, parts.netloc, f"/{index}", parts.query, parts.fragment))
    client = redis.Redis.from_url(url)
    await client.flushdb()
    await client.aclose()
    return url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A client on the run's Redis; every key a test writes is under a fresh prefix it chooses."""
    client = redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


FreshDatabase = Callable[[], Awaitable[str]]


@contextlib.asynccontextmanager
async def _database_factory(server_database_url: str) -> AsyncIterator[FreshDatabase]:
    created: list[str] = []

    async def make() -> str:
        name = f"tickmesh_fresh_{os.getpid()}_{secrets.token_hex(4)}"
        admin = await asyncpg.connect(server_database_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        created.append(name)
        return _with_database(server_database_url, name)

    try:
        yield make
    finally:
        admin = await asyncpg.connect(server_database_url)
        try:
            for name in created:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
async def make_fresh_database(server_database_url: str) -> AsyncIterator[FreshDatabase]:
    """A factory of empty databases (not migrated), all dropped after the test."""
    async with _database_factory(server_database_url) as make:
        yield make


@pytest.fixture(scope="module")
async def module_database_url(server_database_url: str) -> AsyncIterator[str]:
    """An empty database for one test module's processes, dropped after the module."""
    async with _database_factory(server_database_url) as make:
        yield await make()


@pytest.fixture
async def fresh_database_url(make_fresh_database: FreshDatabase) -> str:
    """An empty database (not migrated) for tests of the schema itself, dropped afterwards."""
    return await make_fresh_database()
