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

from hbreg.config import parameter_names, varying_names

__all__ = ["SimulationResult", "assemble_results", "recover", "render_recovery", "truth_for"]

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
]
_MAX_GROUP_ROWS = 12  # group values shown one by one up to this many per fit, else summarized


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
        hyper = hierarchical and name.startswith(("mu_", "sigma_")) and name != "sigma"
        coef = name.partition("_")[2] if hyper else name
        if name == "sigma":
            truth[name] = float(sim.parameters["sigma"])
        elif hyper and coef in varying:
            if name in sim.parameters:
                truth[name] = float(sim.parameters[name])
            elif coef not in sim.coefficients:
                truth[name] = 0.0
        elif name not in varying:
            truth[name] = float(np.sum(sizes * values(name)) / sizes.sum())
    for coef in varying:
        for label, value in zip(labels, values(coef), strict=True):
            truth[f"{coef}[{label}]"] = float(value)
    return truth


def recover(posterior, truth: dict[str, float], *, group_dim: str | None) -> list[dict]:
    """Posterior mean, sd, 50% and 90% central intervals and the truth's rank, per parameter."""
    rows = []
    for name, true in truth.items():
        var, _, label = name.partition("[")
        draws = posterior[var]
        if label:
            draws = draws.sel({group_dim: label.rstrip("]")})
        draws = np.asarray(draws.values, dtype=float).ravel()
        q05, q25, q75, q95 = np.quantile(draws, [0.05, 0.25, 0.75, 0.95])
        mean = float(draws.mean())
        rows.append(
            {
                "parameter": name,
                "level": "group" if label else "population",
                "truth": true,
                "mean": mean,
                "sd": float(draws.std(ddof=1)),
                "lower_90": float(q05),
                "upper_90": float(q95),
                "inside_90": bool(q05 <= true <= q95),
                "lower_50": float(q25),
                "upper_50": float(q75),
                "inside_50": bool(q25 <= true <= q75),
                "error": mean - true,
                "rank": int(np.sum(draws < true)),
                "n_draws": int(draws.size),
            }
        )
    return rows


def coverage(recovery: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and population parameter (and per coefficient over all groups, `c[*]`)."""
    if recovery.empty:
        return pd.DataFrame(columns=COVERAGE_COLUMNS)
    frame = recovery.copy()
    group = frame["level"] == "group"
    frame.loc[group, "parameter"] = frame.loc[group, "parameter"].str.replace(
        r"\[.*\]$", "[*]", regex=True
    )
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
    fit_dirs: dict[str, str] = field(default_factory=dict)  # single replicate: experiment -> dir
    n_ok: int = 0
    seconds: float = 0.0


def assemble_results(spec, outcomes, run, *, seconds: float) -> SimulationResult:
    """Write recovery.csv, coverage.csv, truth.json, recovery.md and the figures."""
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
    run.write_json("truth.json", truth)
    run.write_text("recovery.csv", recovery.to_csv(index=False, float_format="%.17g"))
    if result.coverage is not None:
        run.write_text("coverage.csv", result.coverage.to_csv(index=False, float_format="%.17g"))
    run.write_text("recovery.md", recovery_markdown(result))
    if len(recovery):
        _save(plot_recovery(recovery, single=single), run.path / "recovery.png")
        if not single:
            _save(plot_ranks(recovery), run.path / "ranks.png")
    return result


# ----------------------------------------------------------------------------- text


def _recovery_cells(r) -> list[str]:
    """parameter, truth, mean, 90% interval, inside?, error: one table row as text."""
    interval = f"[{_fmt(r['lower_90'])}, {_fmt(r['upper_90'])}]"
    inside = "yes" if r["inside_90"] else "NO"
    return [r["parameter"], _fmt(r["truth"]), _fmt(r["mean"]), interval, inside, _fmt(r["error"])]


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def recovery_lines(recovery: pd.DataFrame, experiment: str) -> tuple[list[list[str]], str]:
    """Rows (parameter, truth, mean, 90% interval, inside, error) of one single-replicate fit.

    Group values are listed one by one when there are few, else one line per coefficient.
    """
    part = recovery[recovery["experiment"] == experiment]
    rows = []
    for _, r in part[part["level"] == "population"].iterrows():
        rows.append(_recovery_cells(r))
    groups = part[part["level"] == "group"]
    if len(groups) <= _MAX_GROUP_ROWS:
        for _, r in groups.iterrows():
            rows.append(_recovery_cells(r))
    else:
        coef = groups["parameter"].str.replace(r"\[.*\]$", "", regex=True)
        for name, g in groups.groupby(coef, sort=False):
            rows.append(
                [
                    f"{name}[{len(g)} groups]",
                    "-",
                    "-",
                    "-",
                    f"{int(g['inside_90'].sum())}/{len(g)}",
                    f"rmse {np.sqrt(np.mean(np.square(g['error']))):.3f}",
                ]
            )
    inside = int(part["inside_90"].sum())
    return rows, f"{inside} of {len(part)} true values inside their 90% interval"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


_RECOVERY_HEADER = ["parameter", "truth", "mean", "90% interval", "inside", "error"]
_COVERAGE_HEADER = [
    "parameter",
    "fits",
    "50% coverage",
    "90% coverage",
    "mean error",
    "rmse",
    "mean sd",
]


def _coverage_rows(table: pd.DataFrame, experiment: str) -> list[list[str]]:
    part = table[table["experiment"] == experiment]
    return [
        [
            r["parameter"],
            str(int(r["fits"])),
            _fmt(r["coverage_50"], 2),
            _fmt(r["coverage_90"], 2),
            _fmt(r["mean_error"]),
            _fmt(r["rmse"]),
            _fmt(r["mean_sd"]),
        ]
        for _, r in part.iterrows()
    ]


def recovery_markdown(result: SimulationResult) -> str:
    """recovery.md: what was simulated, what each fit recovered, what failed."""
    out = [f"# Recovery: {result.name}", ""]
    out.append(
        f"Seed {result.seed}, {result.replicates} replicate(s), truth: "
        f"{result.truth_kind}, {result.seconds:.0f} s."
    )
    out += [
        "",
        "Truth of each posterior parameter: group values are the simulated ones; "
        "`mu_*`/`sigma_*` the generating population mean and between-group sd (none when "
        "the truth was given as per-group coefficients); a coefficient the fit takes as "
        "common to all groups (all of a pooled fit's) is compared with the row-weighted "
        "mean of the group values; `sigma` is the generating residual sd. Intervals are "
        "central (equal-tailed) posterior intervals; the full table is `recovery.csv`.",
        "",
    ]
    for exp in result.experiments:
        out.append(f"## {exp}")
        if exp in result.fit_dirs:
            out.append(f"Fit: `{result.fit_dirs[exp]}`")
        out.append("")
        if result.coverage is None:
            rows, verdict = recovery_lines(result.recovery, exp)
            out += [_markdown_table(_RECOVERY_HEADER, rows), "", verdict, ""]
        else:
            out += [_markdown_table(_COVERAGE_HEADER, _coverage_rows(result.coverage, exp)), ""]
    if result.coverage is not None:
        out += [
            "## Ranks",
            "`ranks.png`: for each population parameter, the rank of the truth among the "
            "posterior draws (as a fraction of the draws), one per replicate. They are "
            "uniform for a calibrated model only when the truth is drawn from the fitted "
            "model's own prior (`truth: prior`, simulation-based calibration); with a fixed "
            f"truth (this run: `{result.truth_kind}`) they are drawn anyway, for a look, and "
            "need not be uniform. Ranks of autocorrelated draws are noisier than those of "
            "independent ones.",
            "",
        ]
    if result.failures:
        out += [
            "## Failures",
            "",
            _markdown_table(
                ["replicate", "seed", "experiment", "error"],
                [
                    [
                        f["replicate"],
                        f["seed"],
                        f["experiment"] or "(data)",
                        f["error"].replace("|", "\\|"),
                    ]
                    for f in result.failures
                ],
            ),
            "",
            "A replicate is fully determined by its seed: `hbreg simulate CONFIG --set "
            "seed=SEED --replicates 1` runs that one again.",
            "",
        ]
    return "\n".join(out)


def render_recovery(console, result: SimulationResult) -> None:
    """Recovery (one replicate) or coverage (several) per experiment; the directory last."""
    from rich.markup import escape
    from rich.table import Table

    if result.coverage is None:
        for exp in result.experiments:
            rows, verdict = recovery_lines(result.recovery, exp)
            if not rows:
                continue
            table = Table(title=f"Recovery: {exp}", caption=verdict)
            for col in _RECOVERY_HEADER:
                table.add_column(col, justify="left" if col == "parameter" else "right")
            for row in rows:
                style = "red" if row[4] == "NO" else None
                table.add_row(*map(escape, row), style=style)
            console.print(table)
    else:
        table = Table(
            title=f"Coverage over {result.replicates} replicates (truth: {result.truth_kind})"
        )
        for col in ["parameter", "fits", "cov 50%", "cov 90%", "mean err", "rmse", "mean sd"]:
            table.add_column(col, justify="left" if col == "parameter" else "right")
        for exp in result.experiments:
            table.add_row(f"[bold]{escape(exp)}[/]")
            rows = _coverage_rows(result.coverage, exp)
            for k, row in enumerate(rows):
                table.add_row(*map(escape, row), end_section=k == len(rows) - 1)
        console.print(table)
    for f in result.failures:
        what = f"experiment {f['experiment']}" if f["experiment"] else "data generation"
        console.print(
            f"[red]failed:[/] replicate {f['replicate']} (seed {f['seed']}), "
            f"{escape(what)}: {escape(f['error'])}",
            highlight=False,
        )
    console.print(f"time: {result.seconds:.1f}s", highlight=False)
    console.print(f"simulation directory: [bold]{escape(str(result.path))}[/]", highlight=False)


# ----------------------------------------------------------------------------- figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=100)
    fig.clear()


def plot_recovery(recovery: pd.DataFrame, *, single: bool):
    """Truth (x) against posterior mean (y) with 90% intervals, one panel per experiment.

    One replicate: every parameter, misses in red. Several: the population parameters of
    every replicate, one colour per parameter.
    """
    experiments = list(dict.fromkeys(recovery["experiment"]))
    fig = _figure(4.2 * len(experiments), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(experiments), squeeze=False)[0])
    for ax, exp in zip(axes, experiments, strict=True):
        part = recovery[recovery["experiment"] == exp]
        if not single:
            part = part[part["level"] == "population"]
        lo = min(part["truth"].min(), part["lower_90"].min())
        hi = max(part["truth"].max(), part["upper_90"].max())
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, ls="--", zorder=0)
        if single:
            for inside, color in ((True, "#1f4e79"), (False, "#c0392b")):
                sel = part[part["inside_90"] == inside]
                ax.errorbar(
                    sel["truth"],
                    sel["mean"],
                    yerr=[sel["mean"] - sel["lower_90"], sel["upper_90"] - sel["mean"]],
                    fmt="o",
                    ms=3,
                    lw=0.8,
                    color=color,
                    alpha=0.8,
                    label="truth inside 90%" if inside else "outside",
                )
        else:
            for name, sel in part.groupby("parameter", sort=False):
                ax.errorbar(
                    sel["truth"],
                    sel["mean"],
                    yerr=[sel["mean"] - sel["lower_90"], sel["upper_90"] - sel["mean"]],
                    fmt="o",
                    ms=3,
                    lw=0.8,
                    alpha=0.7,
                    label=name,
                )
        ax.set_title(f"{exp} ({part['pooling'].iloc[0]})" if len(part) else exp)
        ax.set_xlabel("truth")
        ax.set_ylabel("posterior mean, 90% interval")
        ax.legend(fontsize=7, loc="best")
    return fig


def plot_ranks(recovery: pd.DataFrame):
    """Histogram of the truth's rank among the draws, per experiment and population parameter."""
    population = recovery[recovery["level"] == "population"]
    experiments = list(dict.fromkeys(population["experiment"]))
    params = {
        e: list(dict.fromkeys(population.loc[population["experiment"] == e, "parameter"]))
        for e in experiments
    }
    ncol = max((len(p) for p in params.values()), default=1)
    fig = _figure(2.6 * ncol, 2.2 * max(len(experiments), 1))
    axes = fig.subplots(max(len(experiments), 1), ncol, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for i, exp in enumerate(experiments):
        for j, name in enumerate(params[exp]):
            sel = population[(population["experiment"] == exp) & (population["parameter"] == name)]
            fraction = (sel["rank"] / sel["n_draws"]).to_numpy()
            bins = int(np.clip(len(fraction) // 2, 2, 20))
            ax = axes[i, j]
            ax.set_axis_on()
            ax.hist(fraction, bins=bins, range=(0, 1), color="#1f4e79", alpha=0.8)
            ax.axhline(len(fraction) / bins, color="0.4", ls="--", lw=1)
            ax.set_title(f"{exp}: {name}", fontsize=8)
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=7)
    fig.suptitle("Rank of the truth among the posterior draws (uniform under SBC)", fontsize=9)
    return fig
