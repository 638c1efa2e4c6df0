"""Shared fixtures (configs in temporary files, the CLI in-process) and the test tiers.

Every test carries exactly one tier marker, saying what it costs (README, "Tests"):
`unit` (no sampler, no subprocess), `sampling` (a sampler in this process) or `process`
(subprocesses or process pools). Collection fails for a test with none or two, and a `unit`
test that starts a sampler, a Python/hbreg subprocess or a multiprocessing worker fails, so
`make test-fast` (`-m "unit and not slow"`) stays fast as tests are added.
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("MPLBACKEND", "Agg")

TIERS = ("unit", "sampling", "process")


def pytest_collection_modifyitems(config, items):
    """Refuse a test without exactly one tier marker, so `-m unit` selects just the cheap ones."""
    wrong = []
    for item in items:
        tiers = sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"  {item.nodeid}: {', '.join(tiers) or 'no tier'}")
    if wrong:
        raise pytest.UsageError(
            f"every test needs exactly one of the markers {', '.join(TIERS)}"
            " (a module-level pytestmark or a decorator):\n" + "\n".join(wrong)
        )


@pytest.fixture(autouse=True)
def _unit_tests_stay_cheap(request, monkeypatch):
    """Make a `unit` test fail if it samples or starts a Python/hbreg process or a worker.

    Other subprocesses (PyTensor calling the C compiler on a cold cache) are allowed: they
    are a cost of compiling, which unit tests may do.
    """
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(what: str, tier: str):
        pytest.fail(f"{request.node.nodeid} is marked unit but {what}; mark it {tier}")

    import hbreg.inference

    for backend in ("_sample_nutpie", "_sample_pymc"):
        monkeypatch.setattr(
            hbreg.inference, backend, lambda *a, **k: refuse("calls a sampler", "sampling")
        )

    popen_init = subprocess.Popen.__init__

    def guarded_popen(self, args, *rest, **kwargs):
        program = args if isinstance(args, str | os.PathLike) else args[0]
        name = Path(str(program).split()[0]).name
        if name == "hbreg" or name.startswith("python") or name == Path(sys.executable).name:
            refuse(f"starts a subprocess ({program})", "process")
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_popen)
    monkeypatch.setattr(
        multiprocessing.process.BaseProcess,
        "start",
        lambda self: refuse("starts a worker process", "process"),
    )


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
