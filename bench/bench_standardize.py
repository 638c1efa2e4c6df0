"""`model.standardize: true` against sampling on the user's scale, on predictors 10^7 apart.

Simulated data with an awkward but mistake-free design: 40 groups x 25 rows, a
concentration `conc` (mean 0.003, sd 0.001) and an income `income` (mean 50,000, sd
10,000), each moving y by a fraction of its sd. The coefficient prior is Normal(0, 10^4)
in both runs, weak on either scale, so both fits target (nearly) the same posterior.

Three cases: a varying intercept, and a varying intercept plus income slope, both with
the group effects integrated out (the default); and the varying intercept sampled
non-centered (every group offset by NUTS). Every fit is a whole `hbreg fit` process
(4 chains, 1000 tune + 1000 draws), run alternately with and without standardization,
`--repeats` times. Reported per case (medians): whole-process wall time, sampling time
(manifest timings, compile excluded), lowest bulk ESS over the population-level
parameters and over everything, and ESS per second of sampling. Writes
bench/results/standardize.{csv,md} and standardize_runs.csv (every run).

    python bench/bench_standardize.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

RESULTS = Path(__file__).parent / "results"
# the hbreg importable here (a worktree on PYTHONPATH or the installed one)
HBREG = [sys.executable, "-c", "from hbreg.cli import app; app(prog_name='hbreg')"]


def make_data(path: Path, seed: int = 17) -> None:
    rng = np.random.default_rng(seed)
    groups, size = 40, 25
    g = np.repeat(np.arange(groups), size)
    conc = rng.normal(0.003, 0.001, groups * size)
    income = rng.normal(50_000, 10_000, groups * size)
    slope = 3e-5 + 1e-5 * rng.normal(size=groups)
    y = (
        1.0
        + 0.5 * rng.normal(size=groups)[g]
        + 300 * conc
        + slope[g] * income
        + rng.normal(0, 1, groups * size)
    )
    pd.DataFrame({"y": y, "conc": conc, "income": income, "g": [f"g{i}" for i in g]}).to_csv(
        path, index=False
    )


def config(data: Path, root: Path, varying: list[str]) -> dict:
    return {
        "name": "scales",
        "data": {"path": str(data), "outcome": "y", "predictors": ["conc", "income"], "group": "g"},
        "model": {"pooling": "hierarchical", "varying": varying},
        "priors": {
            "coefficient": {"dist": "Normal", "mu": 0, "sigma": 10_000},
            "group_sd": {"dist": "HalfNormal", "sigma": 10},
            "sigma": {"dist": "HalfNormal", "sigma": 10},
        },
        "sampler": {"draws": 1000, "tune": 1000, "chains": 4, "seed": 5},
        "output": {"root": str(root), "plots": []},
    }


def fit_once(path: Path, standardize: bool, seed: int) -> dict:
    start = time.perf_counter()
    subprocess.run(
        [
            *HBREG,
            "fit",
            str(path),
            "--set",
            f"model.standardize={'true' if standardize else 'false'}",
            "--set",
            f"sampler.seed={seed}",
        ],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - start
    root = Path(yaml.safe_load(path.read_text())["output"]["root"])
    run = max(root.glob("*_scales*"), key=lambda p: p.stat().st_mtime)
    manifest = json.loads((run / "manifest.json").read_text())
    summary = pd.read_csv(run / "summary.csv", index_col=0)
    hyper = summary[~summary.index.str.contains(r"\[")]
    timings = manifest["timings"]
    return {
        "standardize": standardize,
        "wall_s": wall,
        "sample_s": timings["sample"],
        "min_ess_hyper": hyper["ess_bulk"].min(),
        "min_ess_all": summary["ess_bulk"].min(),
        "worst_param": hyper["ess_bulk"].idxmin(),
        "divergences": manifest["diagnostics"]["divergences"],
        "mean_conc": summary.loc["conc", "mean"] if "conc" in summary.index else None,
        "mean_income": summary.loc["income", "mean"]
        if "income" in summary.index
        else summary.loc["mu_income", "mean"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_data(tmp / "scales.csv")
        cases = {
            "varying intercept (marginal)": (["intercept"], "auto"),
            "varying intercept + income slope (marginal)": (None, "auto"),
            "varying intercept (noncentered NUTS)": (["intercept"], "noncentered"),
        }
        for case, (varying, parameterization) in cases.items():
            path = tmp / "scales.yaml"
            spec = config(tmp / "scales.csv", tmp / "out", varying)
            spec["model"]["parameterization"] = parameterization
            path.write_text(yaml.safe_dump(spec))
            for rep in range(args.repeats):
                for standardize in (False, True):
                    row = fit_once(path, standardize, seed=100 + rep)
                    rows.append({"case": case, "repeat": rep, **row})
                    print(row, flush=True)
    from bench_radon import write

    table = pd.DataFrame(rows)
    table["ess_per_s"] = table["min_ess_hyper"] / table["sample_s"]
    table.to_csv(RESULTS / "standardize_runs.csv", index=False)
    summary = table.groupby(["case", "standardize"], sort=False)[
        ["wall_s", "sample_s", "min_ess_hyper", "min_ess_all", "ess_per_s", "divergences"]
    ].median()
    write(summary.round(2), "standardize", "model.standardize on predictors 10^7 apart (medians)")


if __name__ == "__main__":
    main()
