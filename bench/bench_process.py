"""Whole processes, start to exit, as a user waits: hbreg against the plain PyMC script.

Everything runs in this one invocation on this one machine, the timed commands interleaved
(plain, hbreg, plain, hbreg, ...) so that load from other processes hits both alike; the
table reports medians and ratios within the run:

- ``python bench/pymc_radon_notebook.py``: the plain PyMC script of the radon hierarchical
  model (non-centered, 4 x (1000 + 1000)), as a user would write it;
- ``hbreg fit configs/radon_hier.yaml``: all plots, the full run directory, warm caches;
- both once more with empty caches (hbreg's compile cache and PyTensor's compiledir in fresh
  temporary directories): the first run on a new machine;
- ``hbreg --help`` and ``hbreg validate configs/radon_hier.yaml``;
- ``hbreg simulate configs/simulate_radon_like.yaml --replicates 20`` against one fit of
  the same model (skip with ``--no-simulate``).

ESS per second is the lowest bulk ESS over all parameters divided by the whole-process wall.
hbreg's ESS is read from the run's diagnostics.json; the plain script's comes from one more,
untimed process that runs the script's ``fit()`` with the same seed (PyMC's draws are
reproducible, so it is the ESS of the timed runs). hbreg's in-process split comes from the
run manifests; "startup" is the whole process minus the steps the manifest times.

    python bench/bench_process.py [--repeats 5] [--no-simulate]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_radon import RESULTS, markdown  # noqa: E402

ROOT = HERE.parent
HBREG = Path(sys.executable).with_name("hbreg")
PLAIN = [sys.executable, str(HERE / "pymc_radon_notebook.py")]
STEPS = ["load", "build", "compile", "sample", "report"]


def timed(command: list[str], env: dict | None = None) -> float:
    """Seconds from start to exit of `command`; raise if it fails."""
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return seconds


def hbreg_fit(root: Path, env: dict | None = None) -> tuple[float, dict]:
    """Time one `hbreg fit` into a new output root; return (seconds, its manifest+diagnostics)."""
    root.mkdir(parents=True)
    seconds = timed(
        [str(HBREG), "fit", "configs/radon_hier.yaml", "--set", f"output.root={root}"], env
    )
    (run,) = [p for p in root.iterdir() if p.is_dir()]
    manifest = json.loads((run / "manifest.json").read_text())
    diagnostics = json.loads((run / "diagnostics.json").read_text())
    return seconds, {**manifest, "lowest_ess_bulk": diagnostics["lowest_ess_bulk"]}


def plain_ess(seed: int = 1) -> float:
    """Lowest bulk ESS of the plain script's fit with `seed`, in its own (untimed) process."""
    code = (
        "import sys, json; sys.path.insert(0, 'bench')\n"
        "import arviz as az\n"
        "from pymc_radon_notebook import fit\n"
        f"idata, _ = fit(seed={seed})\n"
        "post = idata.posterior.to_dataset()\n"
        "post = post.drop_vars([v for v in post.data_vars if v.endswith('_offset')])\n"
        "ess = az.ess(post)\n"
        "print(json.dumps(min(float(ess[v].min()) for v in ess.data_vars)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def cold_env(scratch: Path) -> dict:
    """Environment with empty hbreg and PyTensor caches."""
    hbreg_cache = Path(tempfile.mkdtemp(prefix="hbreg-cache-", dir=scratch))
    pytensor_dir = Path(tempfile.mkdtemp(prefix="pytensor-", dir=scratch))
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    flags = ",".join(filter(None, [flags, f"base_compiledir={pytensor_dir}"]))
    return {**os.environ, "HBREG_CACHE_DIR": str(hbreg_cache), "PYTENSOR_FLAGS": flags}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-simulate", action="store_true")
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    manifests: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="hbreg-bench-") as tmp:
        scratch = Path(tmp)

        def note(name: str, seconds: float) -> None:
            rows.setdefault(name, []).append(seconds)
            print(f"{name:<40} {seconds:7.2f} s", file=sys.stderr, flush=True)

        # Cold first: each in fresh cache directories.
        note("plain PyMC script, cold caches", timed(PLAIN, cold_env(scratch)))
        seconds, cold = hbreg_fit(scratch / "cold", cold_env(scratch))
        note("hbreg fit, cold caches", seconds)
        # Warm-up (untimed): the user's caches hold this model from now on.
        timed(PLAIN)
        hbreg_fit(scratch / "warmup")
        for i in range(args.repeats):
            note("plain PyMC script", timed(PLAIN))
            seconds, manifest = hbreg_fit(scratch / f"warm{i}")
            note("hbreg fit", seconds)
            manifests.append(manifest)
            note("hbreg --help", timed([str(HBREG), "--help"]))
            note("hbreg validate", timed([str(HBREG), "validate", "configs/radon_hier.yaml"]))
        if not args.no_simulate:
            out = scratch / "simulate"
            note(
                "hbreg simulate --replicates 20",
                timed(
                    [
                        str(HBREG),
                        "simulate",
                        "configs/simulate_radon_like.yaml",
                        "--replicates",
                        "20",
                        "--set",
                        f"output.root={out}",
                    ]
                ),
            )
        ess_plain = plain_ess()
    ess_hbreg = statistics.median(m["lowest_ess_bulk"] for m in manifests)
    median = {name: statistics.median(values) for name, values in rows.items()}
    plain = median["plain PyMC script"]
    fit = median["hbreg fit"]
    table = pd.DataFrame(
        [
            {
                "command": name,
                "runs": len(rows[name]),
                "median_s": round(seconds, 2),
                "min_s": round(min(rows[name]), 2),
                "max_s": round(max(rows[name]), 2),
                "vs_plain_script": round(seconds / plain, 2) if "--help" not in name else "",
            }
            for name, seconds in median.items()
        ]
    ).set_index("command")
    ess = pd.DataFrame(
        [
            {"command": "plain PyMC script", "lowest_ess_bulk": round(ess_plain)},
            {"command": "hbreg fit", "lowest_ess_bulk": round(ess_hbreg)},
        ]
    ).set_index("command")
    ess["whole_process_ess_per_s"] = [round(ess_plain / plain, 1), round(ess_hbreg / fit, 1)]
    ess["vs_plain_script"] = (ess["whole_process_ess_per_s"] / (ess_plain / plain)).round(1)
    split = {
        step: statistics.median(m["timings"].get(step, 0.0) for m in manifests) for step in STEPS
    }
    split = {"startup, imports, exit": fit - sum(split.values()), **split}
    split_table = pd.DataFrame(
        [{"step": k, "seconds": round(v, 2)} for k, v in split.items()]
        + [{"step": "whole process (median)", "seconds": round(fit, 2)}]
    ).set_index("step")
    cold_split = {k: cold["timings"].get(k) for k in STEPS}
    text = [
        "## Whole processes (start to exit), medians",
        markdown(table),
        "## ESS per second of the whole process",
        markdown(ess),
        "## hbreg fit, in-process split of the median warm run (manifest timings)",
        markdown(split_table),
        f"Cold-cache hbreg fit, manifest timings: {cold_split}",
    ]
    if not args.no_simulate:
        ratio = median["hbreg simulate --replicates 20"] / fit
        text.append(f"simulate --replicates 20 / one hbreg fit: {ratio:.1f}x")
    write("\n\n".join(text), "process", "radon hierarchical, whole processes")


def write(body: str, stem: str, title: str) -> None:
    """Print the tables and save them as markdown under bench/results/."""
    import platform

    RESULTS.mkdir(exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (
        f"# {title}\n\nMachine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end; "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n\n"
    )
    (RESULTS / f"{stem}.md").write_text(header + body + "\n")
    print(header + body)


if __name__ == "__main__":
    main()
