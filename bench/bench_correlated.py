"""Correlated radon: `hbreg fit` (marginal, and non-centered) against a plain PyMC LKJ script.

Each variant is one whole process, start to exit, measured from outside in the same
invocation on the same machine (DESIGN.md, "How performance is measured"): the PyMC
script `bench/pymc_radon_lkj.py` (non-centered, LKJCholeskyCov, PyMC's NUTS) and
`hbreg fit configs/radon_corr.yaml` with the marginal and the non-centered
parameterization. ESS is the lowest bulk ESS over every stored parameter (group
coefficients and the correlation included); ESS/s divides it by the whole process
time. Compile caches (numba's for nutpie, PyTensor's C cache for PyMC) are as the
machine has them; the compile time is in the table. Writes
bench/results/correlated.{csv,md}.

    python bench/bench_correlated.py [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_radon import RESULTS, write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_script(seed: int) -> dict:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pymc_radon_lkj.py"), str(seed)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    return {"process_seconds": round(seconds, 1), **json.loads(out.stdout.strip().splitlines()[-1])}


def run_hbreg(config: Path, seed: int, *overrides: str) -> dict:
    hbreg = Path(sys.executable).with_name("hbreg")
    args = [str(hbreg), "fit", str(config), "--set", f"sampler.seed={seed}"]
    args += ["--set", f"output.root={RESULTS / 'correlated_runs'}"]
    for item in overrides:
        args += ["--set", item]
    start = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    run_dir = Path(out.stdout.strip().splitlines()[-1].split("run directory:")[-1].strip())
    diagnostics = json.loads((run_dir / "diagnostics.json").read_text())
    timings = json.loads((run_dir / "manifest.json").read_text())["timings"]
    return {
        "process_seconds": round(seconds, 1),
        "lowest_ess_bulk": round(diagnostics["lowest_ess_bulk"]),
        "lowest_ess_parameter": diagnostics.get("lowest_ess_bulk_parameter", ""),
        "divergences": diagnostics["divergences"],
        "compile_seconds": timings.get("compile"),
        "sample_seconds": timings.get("sample"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = ROOT / "configs" / "radon_corr.yaml"
    rows = {}
    for variant, run in [
        ("pymc_lkj_script", lambda: run_script(args.seed)),
        ("hbreg_marginal", lambda: run_hbreg(config, args.seed)),
        (
            "hbreg_noncentered",
            lambda: run_hbreg(config, args.seed, "model.parameterization=noncentered"),
        ),
    ]:
        print(f"running {variant} ...", file=sys.stderr, flush=True)
        rows[variant] = run()
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["ess_per_second"] = (table["lowest_ess_bulk"] / table["process_seconds"]).round(1)
    base = table.loc["pymc_lkj_script"]
    table["ess_per_second_ratio"] = (table["ess_per_second"] / base["ess_per_second"]).round(2)
    table["process_speedup"] = (base["process_seconds"] / table["process_seconds"]).round(2)
    write(
        table,
        "correlated",
        "Correlated radon, log_radon ~ floor + (1 + floor | county): 4 chains x (1000 tune + "
        "1000 draws), whole processes",
    )


if __name__ == "__main__":
    main()
