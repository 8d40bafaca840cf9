"""Dockerfile: locked uv install, non-root runtime, context paths that exist and are not ignored."""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from .service_settings import SETTINGS_BY_SERVICE

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, argument in _instructions():
        if instruction == "FROM":
            current = []
            stages[argument.split(" AS ")[-1].strip()] = current
        else:
            current.append((instruction, argument))
    return stages


def _ignored(path: str) -> bool:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, pattern) for pattern in patterns for prefix in prefixes)


def test_dockerfile_has_frontend_build_and_runtime_stages() -> None:
    assert list(_stages()) == ["frontend", "python-build", "runtime"]


def test_context_copies_exist_and_are_not_ignored() -> None:
    for instruction, argument in _instructions():
        if instruction != "COPY" or argument.startswith("--from"):
            continue
        *sources, _ = argument.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), source
            assert not _ignored(source.rstrip("/")), source


def test_python_install_is_the_locked_workspace_without_dev_tools() -> None:
    runs = [argument for instruction, argument in _stages()["python-build"] if instruction == "RUN"]
    syncs = [run for run in runs if "uv sync" in run]
    assert syncs, "no uv sync"
    for sync in syncs:
        assert "--frozen" in sync
        assert "--no-dev" in sync
        assert "--all-packages" in sync
    makefile_uv = re.search(r"uv==([\d.]+)", (REPO_ROOT / "Makefile").read_text())
    assert makefile_uv is not None
    assert any(f"uv=={makefile_uv.group(1)}" in run for run in runs)


def test_frontend_stage_builds_with_npm_ci_and_vite_and_ships_dist() -> None:
    (build,) = [a for i, a in _stages()["frontend"] if i == "RUN"]
    assert "frontend/package.json" in build
    assert "npm ci" in build
    assert "vite build" in build
    copies = [a for i, a in _stages()["runtime"] if i == "COPY"]
    assert "--from=frontend /build/dist /app/frontend/dist" in copies


def test_runtime_runs_as_the_chart_and_compose_non_root_user() -> None:
    runtime = _stages()["runtime"]
    users = [argument for instruction, argument in runtime if instruction == "USER"]
    assert users == ["10001:10001"]
    values = yaml.safe_load((REPO_ROOT / "helm" / "tickmesh" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == 10001
    assert values["podSecurityContext"]["runAsGroup"] == 10001


@pytest.mark.parametrize("service", sorted(SETTINGS_BY_SERVICE))
def test_each_service_module_runs_with_python_m(service: str) -> None:
    assert importlib.util.find_spec(f"tickmesh.{service}.__main__") is not None
