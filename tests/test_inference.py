"""The sampler layer: nutpie's draws converted without ArviZ, and commands that import only
what they use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["pymc", "pytensor", "nutpie", "numba", "arviz", "scipy", "matplotlib", "xarray"]


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.process
@pytest.mark.parametrize(
    "argv",
    [["--help"], ["validate", "configs/radon_hier.yaml"], ["datasets"]],
    ids=["help", "validate", "datasets"],
)
def test_light_commands_import_no_modelling_library(argv):
    code = (  # the click command, as the console script runs it but without its fast exit
        "import typer\nfrom hbreg.cli import app\n"
        f"code = typer.main.get_command(app).main({argv!r}, standalone_mode=False)\n"
        "assert not code, code\n"
    )
    loaded = {name.split(".")[0] for name in _modules_after(code)}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.sampling
@pytest.mark.slow
def test_nutpie_draws_converted_without_arviz_match_nutpie_s_conversion():
    import numpy as np
    import nutpie
    import pymc as pm
    import pytensor
    import xarray as xr

    from hbreg.compile_cache import compile_nutpie
    from hbreg.inference import _NUTPIE_STATS, _nutpie_datasets

    with pm.Model(coords={"group": ["a", "b", "c"]}) as model:
        mu = pm.Normal("mu", 0, 5)
        scale = pm.HalfNormal("scale", 2)
        effect = pm.Normal("effect", mu, scale, dims="group")
        pm.Deterministic("shifted", effect + 1, dims="group")
        pm.Normal("y", effect[np.array([0, 1, 2, 2])], 1, observed=[0.1, 1.0, 2.0, 2.2])
    with pytensor.config.change_flags(numba__fastmath=False):
        compiled = compile_nutpie(model)
    settings = dict(draws=40, tune=40, chains=2, cores=1, seed=11, progress_bar=False)
    raw = nutpie.sample(compiled, return_raw_trace=True, **settings)
    posterior, stats = _nutpie_datasets(raw, compiled)
    theirs = nutpie.sample(compiled, **settings)
    xr.testing.assert_identical(posterior, theirs.posterior.to_dataset().drop_attrs())
    want = theirs.sample_stats.to_dataset()
    want = want[[k for k in _NUTPIE_STATS if k in want]].rename(
        {k: v for k, v in _NUTPIE_STATS.items() if k in want}
    )
    xr.testing.assert_identical(stats, want.drop_attrs())
