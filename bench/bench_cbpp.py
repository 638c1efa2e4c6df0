"""cbpp binomial: the whole `hbreg fit` process against the plain PyMC script, interleaved.

Each repetition runs `hbreg fit configs/cbpp_binomial.yaml` (all plots, the full run
directory) and `python bench/pymc_cbpp.py` as separate processes, one after the other,
on the same machine, so both see the same load. Reports each one's median whole-process
wall time, divergences, lowest bulk ESS over the population parameters and ESS per
second of the whole process, and hbreg's ratios to the script. Writes
bench/results/cbpp.md and prints it.

    python bench/bench_cbpp.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def _timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    return time.perf_counter() - start, done.stdout


def hbreg_once(out: Path) -> dict:
    hbreg = str(Path(sys.executable).with_name("hbreg"))
    seconds, _ = _timed([hbreg, "fit", "configs/cbpp_binomial.yaml", "--set", f"output.root={out}"])
    run = sorted(p for p in out.iterdir() if not p.name.startswith("."))[-1]
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    import pandas as pd

    summary = pd.read_csv(run / "summary.csv", index_col=0)
    population = ["mu_intercept", "sigma_intercept", "period_2", "period_3", "period_4"]
    return {
        "seconds": seconds,
        "divergences": diagnostics["divergences"],
        "ess": float(summary.loc[population, "ess_bulk"].min()),
    }


def script_once() -> dict:
    seconds, stdout = _timed([sys.executable, "bench/pymc_cbpp.py"])
    return {
        "seconds": seconds,
        "divergences": int(re.search(r"divergences (\d+)", stdout).group(1)),
        "ess": float(re.search(r"lowest_ess_bulk (\d+)", stdout).group(1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"plain PyMC script (nutpie)": [], "hbreg fit": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            runs["plain PyMC script (nutpie)"].append(script_once())
            runs["hbreg fit"].append(hbreg_once(Path(tmp)))
    rows = {}
    for name, results in runs.items():
        seconds = statistics.median(r["seconds"] for r in results)
        ess = statistics.median(r["ess"] for r in results)
        divergences = max(r["divergences"] for r in results)
        rows[name] = (seconds, ess, divergences, ess / seconds)
    base = rows["plain PyMC script (nutpie)"]
    lines = [
        f"cbpp binomial, 4 x (1000 + 1000), median of {args.repeats} interleaved whole processes",
        "",
        "| | whole process s | lowest bulk ESS | divergences | ESS/s | wall vs script | "
        "ESS/s vs script |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (seconds, ess, divergences, rate) in rows.items():
        lines.append(
            f"| {name} | {seconds:.1f} | {ess:.0f} | {divergences} | {rate:.0f} | "
            f"{seconds / base[0]:.2f}x | {rate / base[3]:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cbpp.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
