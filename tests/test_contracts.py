"""The protobuf contracts: buf lint, buf breaking against main, generated code up to date."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest

from tickmesh.mesh.protogen import OUTPUT_DIR, generate

REPO_ROOT = Path(__file__).resolve().parents[1]
BUF = REPO_ROOT / "node_modules" / ".bin" / "buf"
CURRENT_PACKAGE = "tickmesh/v2"
PREVIOUS_PACKAGE = "tickmesh/v1"


def _buf(*args: str) -> subprocess.CompletedProcess[str]:
    if not BUF.exists():
        pytest.fail("buf is missing: run `make setup` (npm ci installs @bufbuild/buf)")
    return subprocess.run(
        [str(BUF), *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )


def test_buf_lint_passes() -> None:
    result = _buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def _main_has(path: str) -> bool:
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", "main", path],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return bool(listed.stdout.strip())


def test_buf_breaking_against_main_passes() -> None:
    """The current major version (tickmesh.v2) has no breaking change against main.

    A break is allowed only as a new major version: while main still holds only the previous
    one (tickmesh.v1, replaced by v2 for venue-qualified instruments and exact decimals), there
    is nothing of v2 to compare, and the test checks that the move is exactly that.
    """
    has_main = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "main"], cwd=REPO_ROOT, check=False
    )
    assert has_main.returncode == 0, "the main branch must exist to check breaking changes"
    if not _main_has(f"proto/{CURRENT_PACKAGE}"):
        assert _main_has(f"proto/{PREVIOUS_PACKAGE}"), "a new major version replaces the last"
        assert not (REPO_ROOT / "proto" / PREVIOUS_PACKAGE).exists()
        return
    result = _buf("breaking", "--against", ".git#branch=main", "--path", f"proto/{CURRENT_PACKAGE}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    fresh = tmp_path / "v2"
    generate(fresh)
    comparison = filecmp.dircmp(fresh, OUTPUT_DIR, ignore=["__pycache__"])
    stale = comparison.diff_files + comparison.left_only + comparison.right_only
    assert not stale, f"src/tickmesh/v2 is stale ({stale}): run `make proto`"
    shutil.rmtree(fresh)
