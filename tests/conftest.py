"""Shared fixtures: writing configs to temporary files and running the CLI in-process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("MPLBACKEND", "Agg")

# Small but real sampling for plumbing tests; recovery tests set their own draws.
FAST_SAMPLER = {"draws": 300, "tune": 300, "chains": 2, "seed": 7}


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a config mapping (or raw text) to a YAML file; outputs go under tmp_path."""

    def write(config: dict | str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        if isinstance(config, str):
            path.write_text(config)
            return path
        config = {**config}
        config.setdefault("output", {"root": str(tmp_path / "outputs"), "plots": []})
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture
def radon_hier_config() -> dict:
    """The radon hierarchical experiment with fast sampler settings."""
    return {
        "name": "radon_hier",
        "data": {
            "dataset": "radon",
            "outcome": "log_radon",
            "predictors": ["floor"],
            "group": "county",
        },
        "model": {"pooling": "hierarchical"},
        "sampler": dict(FAST_SAMPLER),
    }


@pytest.fixture
def cli():
    """Invoke the hbreg CLI in-process; returns the click Result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from hbreg.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke
