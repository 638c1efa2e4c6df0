"""How well did the fits find the truth: per-parameter recovery, coverage, ranks, reports.

The truth of a posterior parameter comes from the generating model:

- a group value `<coef>[<group>]` is the simulated coefficient of that group;
- `mu_<coef>` / `sigma_<coef>` of a hierarchical fit are the population mean and
  between-group sd that generated the groups (none exist when the truth was given
  as explicit per-group coefficients, so those rows are left out);
- a coefficient that a fit treats as common to all groups (every coefficient of a
  pooled fit, the non-varying ones of the others) is compared with the
  row-weighted mean of the group values: what a pooled least-squares fit
  estimates when the predictors are independent of the group (0 for the
  notebook's two-group example, whose groups have opposite weights);
- `sigma` is the residual sd of the generator, even for fits that are
  misspecified (a pooled fit of varying coefficients puts the group differences
  into `sigma`: that shows as a miss, and is the point).

A coefficient the generator does not have (an intercept fitted to data made
without one) is 0 in every group, with population sd 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hbreg.config import coefficient_names, parameter_names, varying_names
from hbreg.names import parse
from hbreg.plots.common import save
from hbreg.simulate.plots import plot_ranks, plot_recovery
from hbreg.simulate.render import recovery_markdown

__all__ = [
    "COVERAGE_COLUMNS",
    "RECOVERY_COLUMNS",
    "SimulationResult",
    "assemble_results",
    "coverage",
    "recover",
    "truth_for",
]

RECOVERY_COLUMNS = [
    "experiment",
    "pooling",
    "replicate",
    "seed",
    "parameter",
    "level",
    "truth",
    "mean",
    "sd",
    "lower_90",
    "upper_90",
    "inside_90",
    "lower_50",
    "upper_50",
    "inside_50",
    "error",
    "rank",
    "n_draws",
    "diagnostics_passed",  # False: the fit missed its diagnostic thresholds, distrust the row
]
COVERAGE_COLUMNS = [
    "experiment",
    "parameter",
    "level",
    "fits",
    "coverage_50",
    "coverage_90",
    "mean_error",
    "rmse",
    "mean_sd",
    "truth_mean",
    "failed_diagnostics",  # replicates whose fit missed its diagnostic thresholds
    "coverage_50_passed",  # coverage over the fits that passed their diagnostics only
    "coverage_90_passed",
]


def truth_for(sim, config) -> dict[str, float]:
    """True values of the posterior parameters of `config`'s fit (see the module docstring)."""
    labels = list(sim.sizes)
    sizes = np.array([sim.sizes[g] for g in labels], dtype=float)
    varying = varying_names(config)
    hierarchical = config.model.pooling == "hierarchical"

    def values(coef: str) -> np.ndarray:
        known = sim.coefficients.get(coef)
        return np.array([known[g] for g in labels]) if known else np.zeros(len(labels))

    truth: dict[str, float] = {}
    for name in parameter_names(config):
        parsed = parse(name, coefficient_names(config))
        if parsed is None or parsed.kind == "residual_sd":  # the family's own parameters
            if name in sim.parameters:
                truth[name] = float(sim.parameters[name])
        elif parsed.kind in ("population_mean", "group_sd") and hierarchical:
            if name in sim.parameters:
                truth[name] = float(sim.parameters[name])
            elif parsed.coef not in sim.coefficients:
                truth[name] = 0.0  # a coefficient the generator does not have
        elif parsed.kind == "coefficient" and name not in varying:
            truth[name] = float(np.sum(sizes * values(name)) / sizes.sum())
    for coef in varying:
        for label, value in zip(labels, values(coef), strict=True):
            truth[f"{coef}[{label}]"] = float(value)
    return truth


def recover(posterior, truth: dict[str, float], *, group_dim: str | None) -> list[dict]:
    """Posterior mean, sd, 50% and 90% central intervals and the truth's rank, per parameter.

    Each variable is summarized in one pass over all its groups (170 look-ups and quantiles
    one group at a time were 35 ms of every radon-like fit in `hbreg simulate`).
    """
    by_var: dict[str, list[tuple[str, str]]] = {}
    for name in truth:
        var, _, label = name.partition("[")
        by_var.setdefault(var, []).append((name, label.rstrip("]")))
    found = {}
    for var, entries in by_var.items():
        values = posterior[var]
        if entries[0][1]:
            labels = [label for _, label in entries]
            index = values.indexes[group_dim].get_indexer(labels)
            if (index < 0).any():
                missing = [lab for lab, i in zip(labels, index, strict=True) if i < 0]
                raise KeyError(f"{var}: no {group_dim} {', '.join(missing)}")
            values = values.transpose("chain", "draw", group_dim).values
            draws = values.reshape(-1, values.shape[-1])[:, index].astype(float)
        else:
            draws = np.asarray(values.values, dtype=float).reshape(-1, 1)
        true = np.array([truth[name] for name, _ in entries])
        q05, q25, q75, q95 = np.quantile(draws, [0.05, 0.25, 0.75, 0.95], axis=0)
        mean = draws.mean(axis=0)
        sd = draws.std(axis=0, ddof=1)
        rank = (draws < true).sum(axis=0)
        for k, (name, label) in enumerate(entries):
            found[name] = {
                "parameter": name,
                "level": "group" if label else "population",
                "truth": truth[name],
                "mean": float(mean[k]),
                "sd": float(sd[k]),
                "lower_90": float(q05[k]),
                "upper_90": float(q95[k]),
                "inside_90": bool(q05[k] <= true[k] <= q95[k]),
                "lower_50": float(q25[k]),
                "upper_50": float(q75[k]),
                "inside_50": bool(q25[k] <= true[k] <= q75[k]),
                "error": float(mean[k]) - truth[name],
                "rank": int(rank[k]),
                "n_draws": int(draws.shape[0]),
            }
    return [found[name] for name in truth]


def coverage(recovery: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and population parameter (and per coefficient over all groups, `c[*]`).

    Coverage is given over every fit and over the fits that passed their diagnostics
    only (`*_passed`, empty when none did), with the number of replicates that failed.
    """
    if recovery.empty:
        return pd.DataFrame(columns=COVERAGE_COLUMNS)
    frame = recovery.copy()
    group = frame["level"] == "group"
    frame.loc[group, "parameter"] = frame.loc[group, "parameter"].str.replace(
        r"\[.*\]$", "[*]", regex=True
    )
    passed = frame["diagnostics_passed"].astype(bool)
    frame["_failed_replicate"] = frame["replicate"].where(~passed)
    frame["_inside_50_passed"] = frame["inside_50"].where(passed).astype(float)
    frame["_inside_90_passed"] = frame["inside_90"].where(passed).astype(float)
    table = (
        frame.groupby(["experiment", "parameter", "level"], sort=False)  # first-seen order
        .agg(
            fits=("truth", "size"),
            coverage_50=("inside_50", "mean"),
            coverage_90=("inside_90", "mean"),
            mean_error=("error", "mean"),
            rmse=("error", lambda e: float(np.sqrt(np.mean(np.square(e))))),
            mean_sd=("sd", "mean"),
            truth_mean=("truth", "mean"),
            failed_diagnostics=("_failed_replicate", "nunique"),
            coverage_50_passed=("_inside_50_passed", "mean"),
            coverage_90_passed=("_inside_90_passed", "mean"),
        )
        .reset_index()
    )
    experiments = list(dict.fromkeys(recovery["experiment"]))
    table["_e"] = table["experiment"].map(experiments.index)
    table["_l"] = (table["level"] == "group").astype(int)
    return table.sort_values(["_e", "_l"], kind="stable").reset_index(drop=True)[COVERAGE_COLUMNS]


@dataclass
class SimulationResult:
    """What `hbreg simulate` shows and where it was written."""

    path: Path
    name: str
    seed: int
    replicates: int
    truth_kind: str
    experiments: list[str]
    recovery: pd.DataFrame
    coverage: pd.DataFrame | None
    failures: list[dict] = field(default_factory=list)
    # fits that ran but missed their diagnostic thresholds: replicate, seed, experiment,
    # problems, fit (its run directory inside the simulation directory)
    diagnostic_failures: list[dict] = field(default_factory=list)
    fit_dirs: dict[str, str] = field(default_factory=dict)  # single replicate: experiment -> dir
    n_ok: int = 0
    seconds: float = 0.0

    @property
    def n_fits(self) -> int:
        """Fits attempted: replicates times experiments."""
        return self.replicates * len(self.experiments)


def assemble_results(spec, outcomes, run, *, seconds: float, figures=None) -> SimulationResult:
    """Write recovery.csv, coverage.csv, truth.json, recovery.md and the figures.

    `figures` (a `PlotWorkers`) draws the two figures at once while the files are written;
    without it they are drawn here.
    """
    rows = [row for o in outcomes for row in o.rows]
    recovery = pd.DataFrame(rows, columns=RECOVERY_COLUMNS)
    failures = [
        {
            "replicate": o.replicate,
            "seed": o.seed,
            "experiment": e["experiment"],
            "error": e["error"],
        }
        for o in outcomes
        for e in o.errors
    ]
    single = spec.replicates == 1
    diagnostic_failures = [
        {
            "replicate": o.replicate,
            "seed": o.seed,
            "experiment": name,
            "problems": "; ".join(verdict["failures"]),
            "fit": "fits/" + ("" if single else f"rep_{o.replicate:03d}/") + o.fit_dirs[name],
        }
        for o in outcomes
        for name, verdict in o.diagnostics.items()
        if not verdict["passed"]
    ]
    result = SimulationResult(
        path=run.path,
        name=spec.name,
        seed=spec.seed,
        replicates=spec.replicates,
        truth_kind=spec.truth_kind(),
        experiments=[e.name for e in spec.experiments],
        recovery=recovery,
        coverage=None if single else coverage(recovery),
        failures=failures,
        diagnostic_failures=diagnostic_failures,
        fit_dirs={k: f"fits/{v}" for o in outcomes for k, v in o.fit_dirs.items()}
        if single
        else {},
        n_ok=int(recovery.groupby(["replicate", "experiment"]).ngroups) if len(recovery) else 0,
        seconds=seconds,
    )
    if single:
        truth = {
            "kind": result.truth_kind,
            "seed": spec.seed,
            **(outcomes[0].truth or {"groups": {}, "parameters": {}}),
        }
    else:
        truth = {
            "kind": result.truth_kind,
            "seed": spec.seed,
            "replicates": [
                {"replicate": o.replicate, "seed": o.seed, **(o.truth or {})} for o in outcomes
            ],
        }
    drawn = [(plot_recovery, {"single": single}, "recovery.png")] if len(recovery) else []
    if drawn and not single:
        drawn.append((plot_ranks, {}, "ranks.png"))
    if figures is not None:  # drawn by the worker while the files below are written
        for make, options, name in drawn:
            figures.save(make, recovery, path=run.path / name, **options)
    run.write_json("truth.json", truth)
    run.write_text("recovery.csv", recovery.to_csv(index=False, float_format="%.17g"))
    if result.coverage is not None:
        run.write_text("coverage.csv", result.coverage.to_csv(index=False, float_format="%.17g"))
    run.write_text("recovery.md", recovery_markdown(result))
    if figures is not None:
        figures.wait()
    else:
        for make, options, name in drawn:
            save(make(recovery, **options), run.path / name)
    return result
