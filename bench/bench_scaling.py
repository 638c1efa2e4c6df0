"""Scaling: the hierarchical Gaussian model on 10k, 100k and 1M rows in 1,000 groups.

Each case is a real `hbreg fit` process on synthetic data (a varying intercept and
slope) written to parquet first; its wall time and peak memory (the process's max
RSS) are measured from outside, the lowest bulk ESS and divergences are read from
the run directory. The non-centered model is skipped above the size where it would
take more than a few minutes (`--noncentered-max-rows`), and the table says so.

    python bench/bench_scaling.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from bench_radon import RESULTS, write  # noqa: E402

N_GROUPS = 1000


def make_data(n_rows: int, seed: int = 0) -> Path:
    """Synthetic rows: y = a_g + b_g x + e, a_g ~ N(1, 0.5), b_g ~ N(-0.5, 0.3), e ~ N(0, 1)."""
    path = RESULTS / f"scaling_{n_rows}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    group = rng.integers(0, N_GROUPS, n_rows)
    a = rng.normal(1.0, 0.5, N_GROUPS)
    b = rng.normal(-0.5, 0.3, N_GROUPS)
    x = rng.normal(0, 1, n_rows)
    y = a[group] + b[group] * x + rng.normal(0, 1, n_rows)
    frame = pd.DataFrame({"y": y, "x": x, "group": np.char.add("g", group.astype(str))})
    RESULTS.mkdir(exist_ok=True)
    frame.to_parquet(path)
    return path


def run_fit(data_path: Path, parameterization: str, timeout: float) -> dict:
    """One `hbreg fit` process; wall time and peak RSS measured with wait4."""
    root = RESULTS / "scaling_runs"
    config = {
        "name": f"scaling_{parameterization}",
        "data": {"path": str(data_path), "outcome": "y", "predictors": ["x"], "group": "group"},
        "model": {"pooling": "hierarchical", "parameterization": parameterization},
        "priors": {
            "coefficient": {"dist": "Normal", "mu": 0, "sigma": 5},
            "group_sd": {"dist": "HalfNormal", "sigma": 2},
            "sigma": {"dist": "HalfNormal", "sigma": 2},
        },
        "sampler": {"draws": 1000, "tune": 1000, "chains": 4, "seed": 1},
        "output": {"root": str(root)},
    }
    config_path = RESULTS / f"scaling_{parameterization}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    hbreg = Path(sys.executable).with_name("hbreg")
    log_path = RESULTS / f"scaling_{parameterization}_{data_path.stem}.log"
    start = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(hbreg), "fit", str(config_path)], stdout=log, stderr=subprocess.STDOUT
        )
        returncode, usage = wait_with_usage(proc, timeout)
    seconds = time.perf_counter() - start
    out = log_path.read_text()
    if returncode is None:
        return {"status": f"stopped after {timeout:.0f} s"}
    if returncode != 0:
        return {"status": f"failed ({returncode}): {out[-300:]}"}
    run_dir = Path(out.strip().splitlines()[-1].split("run directory:")[-1].strip())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    timings = manifest["timings"]
    return {
        "status": "ok",
        "process_seconds": round(seconds, 1),
        "fit_seconds": round(timings["build"] + timings["compile"] + timings["sample"], 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "divergences": diagnostics["divergences"],
        "lowest_ess_bulk": round(diagnostics["lowest_ess_bulk"]),
    }


def wait_with_usage(proc: subprocess.Popen, timeout: float):
    """Reap the child ourselves so its own peak RSS can be read (ru_maxrss, KiB)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage
        time.sleep(0.05)
    proc.kill()
    os.wait4(proc.pid, 0)
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--noncentered-max-rows", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=480)
    args = parser.parse_args()
    rows = []
    for n_rows in args.sizes:
        data_path = make_data(n_rows)
        for parameterization in ("marginal", "noncentered"):
            print(f"running {parameterization} on {n_rows:,} rows ...", file=sys.stderr, flush=True)
            if parameterization == "noncentered" and n_rows > args.noncentered_max_rows:
                result = {"status": f"skipped: above {args.noncentered_max_rows:,} rows"}
            else:
                result = run_fit(data_path, parameterization, args.timeout)
            rows.append({"rows": n_rows, "parameterization": parameterization, **result})
    table = pd.DataFrame(rows).set_index(["rows", "parameterization"])
    wall = table["process_seconds"].unstack()
    if "noncentered" in wall:
        ratio = (wall["noncentered"] / wall["marginal"]).round(1)
        table["noncentered_over_marginal"] = [ratio.get(r) for r, _ in table.index]
    write(
        table, "scaling", f"Hierarchical Gaussian, varying intercept and slope, {N_GROUPS:,} groups"
    )


if __name__ == "__main__":
    main()
