"""The tickmesh CLI's tool commands."""

from __future__ import annotations

from typer.testing import CliRunner

from tickmesh.analytics.feature_catalog import feature_catalog
from tickmesh.mesh.cli import app


def test_features_lists_every_feature_with_its_version() -> None:
    result = CliRunner().invoke(app, ["features"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    catalog = feature_catalog()
    assert len(catalog) >= 60
    for spec in catalog:
        assert spec.name in result.output
    assert f"{len(catalog)} features, version {catalog[0].version}" in result.output


def test_simulate_help_describes_its_options() -> None:
    result = CliRunner().invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    assert "--speed" in result.output
