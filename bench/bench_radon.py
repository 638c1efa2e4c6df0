"""Radon hierarchical model: hbreg (marginal, non-centered, centered) against plain PyMC.

Every variant runs in its own process on the same machine in one invocation, with
4 chains x (1000 tune + 1000 draws). For each: wall time of the fit (build + compile
+ sample, plus the exact conditional draws for the marginal model), divergences, the
lowest bulk ESS over all parameters, ESS per second, and ratios against the PyMC
script. Writes bench/results/radon.{csv,md} and prints the table.

    python bench/bench_radon.py [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent / "results"
VARIANTS = ["pymc_script", "hbreg_marginal", "hbreg_noncentered", "hbreg_centered"]


def run_variant(variant: str, seed: int) -> dict:
    """Fit one variant in this process and return its measurements."""
    import arviz as az

    if variant == "pymc_script":
        sys.path.insert(0, str(Path(__file__).parent))
        from pymc_radon_notebook import fit

        idata, seconds = fit(seed=seed)
        posterior = idata.posterior.to_dataset()
        posterior = posterior.drop_vars([v for v in posterior.data_vars if v.endswith("_offset")])
        divergences = int(idata.sample_stats.diverging.sum())
    else:
        from hbreg.config import load_config
        from hbreg.data import load_model_data
        from hbreg.inference import sample
        from hbreg.models import build_model, complete_posterior

        parameterization = variant.removeprefix("hbreg_")
        config = load_config(
            Path(__file__).parent.parent / "configs" / "radon_hier.yaml",
            [f"model.parameterization={parameterization}", f"sampler.seed={seed}"],
        )
        data = load_model_data(config)
        start = time.perf_counter()
        built = build_model(config, data)
        result = sample(built.model, config.sampler, seed=seed)
        posterior = complete_posterior(built, config, data, result.posterior, seed=seed + 1)
        seconds = time.perf_counter() - start
        divergences = int(result.sample_stats.diverging.sum())
    ess = az.ess(posterior)
    lowest = min((float(ess[v].min()), v) for v in ess.data_vars)
    rhat = az.rhat(posterior)
    return {
        "variant": variant,
        "seconds": round(seconds, 2),
        "divergences": divergences,
        "lowest_ess_bulk": round(lowest[0]),
        "lowest_ess_parameter": lowest[1],
        "worst_r_hat": round(max(float(rhat[v].max()) for v in rhat.data_vars), 4),
        "ess_per_second": round(lowest[0] / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.seed)))
        return
    rows = []
    for variant in VARIANTS:
        print(f"running {variant} ...", file=sys.stderr, flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--variant", variant, "--seed", str(args.seed)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = pd.DataFrame(rows).set_index("variant")
    base = table.loc["pymc_script"]
    table["speedup_wall"] = (base["seconds"] / table["seconds"]).round(2)
    table["ess_per_second_ratio"] = (table["ess_per_second"] / base["ess_per_second"]).round(2)
    write(table, "radon", "Radon hierarchical: 4 chains x (1000 tune + 1000 draws)")


def write(table: pd.DataFrame, stem: str, title: str) -> None:
    """Print the table and save it as csv and markdown under bench/results/."""
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / f"{stem}.csv")
    import os
    import platform

    header = (
        f"# {title}\n\nMachine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M')}\n\n"
    )
    (RESULTS / f"{stem}.md").write_text(header + markdown(table) + "\n")
    print(header + table.to_string())


def markdown(table: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which hbreg does not depend on)."""
    frame = table.reset_index()
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
