"""Sampler health in numbers and in words: divergences, tree depth, E-BFMI, r_hat, ESS.

`diagnose` turns a posterior, its sample statistics and the summary table into a
verdict against the configured thresholds; `divergence_report` explains it to a
person: how many divergences, in which chains, where they concentrate, what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from hbreg.config import DiagnosticsConfig

__all__ = ["Diagnostics", "bfmi", "diagnose", "divergence_report"]


@dataclass
class Diagnostics:
    """What `diagnostics.json` holds."""

    divergences: int
    divergences_per_chain: list[int]
    draws_per_chain: int
    tree_depth_hits: int
    tree_depth_fraction: float
    bfmi_per_chain: list[float]
    worst_r_hat: float
    worst_r_hat_parameter: str
    lowest_ess_bulk: float
    lowest_ess_bulk_parameter: str
    lowest_ess_tail: float
    lowest_ess_tail_parameter: str
    thresholds: dict
    failures: list[str] = field(default_factory=list)
    concentrations: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no threshold was missed."""
        return not self.failures

    def to_dict(self) -> dict:
        """The JSON-ready form written to diagnostics.json."""
        return {**asdict(self), "passed": self.passed}


def diagnose(posterior, sample_stats, summary: pd.DataFrame, thresholds: DiagnosticsConfig):
    """Compare the run with the thresholds; every miss becomes one plain sentence."""
    diverging = sample_stats["diverging"].values.astype(bool)
    per_chain = diverging.sum(axis=1).astype(int).tolist()
    hits = (
        sample_stats["reached_max_treedepth"].values.astype(bool)
        if ("reached_max_treedepth" in sample_stats)
        else np.zeros_like(diverging)
    )
    bfmi_values = bfmi(sample_stats["energy"].values) if "energy" in sample_stats else []
    r_hat = summary["r_hat"].fillna(1.0)
    ess_bulk, ess_tail = summary["ess_bulk"].fillna(np.inf), summary["ess_tail"].fillna(np.inf)
    result = Diagnostics(
        divergences=int(diverging.sum()),
        divergences_per_chain=per_chain,
        draws_per_chain=int(diverging.shape[1]),
        tree_depth_hits=int(hits.sum()),
        tree_depth_fraction=float(hits.mean()),
        bfmi_per_chain=[float(b) for b in bfmi_values],
        worst_r_hat=float(r_hat.max()),
        worst_r_hat_parameter=str(r_hat.idxmax()),
        lowest_ess_bulk=float(ess_bulk.min()),
        lowest_ess_bulk_parameter=str(ess_bulk.idxmin()),
        lowest_ess_tail=float(ess_tail.min()),
        lowest_ess_tail_parameter=str(ess_tail.idxmin()),
        thresholds=thresholds.model_dump(),
        concentrations=_concentrations(posterior, diverging) if diverging.any() else [],
    )
    t = thresholds
    checks = [
        (
            result.divergences > t.max_divergences,
            f"{result.divergences} divergent transitions (allowed: {t.max_divergences})",
        ),
        (
            result.worst_r_hat > t.max_r_hat,
            f"r_hat {result.worst_r_hat:.3f} for {result.worst_r_hat_parameter} "
            f"(allowed: {t.max_r_hat})",
        ),
        (
            result.lowest_ess_bulk < t.min_ess_bulk,
            f"bulk ESS {result.lowest_ess_bulk:.0f} for {result.lowest_ess_bulk_parameter} "
            f"(needed: {t.min_ess_bulk:.0f})",
        ),
        (
            result.lowest_ess_tail < t.min_ess_tail,
            f"tail ESS {result.lowest_ess_tail:.0f} for {result.lowest_ess_tail_parameter} "
            f"(needed: {t.min_ess_tail:.0f})",
        ),
        (
            result.tree_depth_fraction > t.max_tree_depth_fraction,
            f"{result.tree_depth_hits} draws hit the maximum tree depth "
            f"({result.tree_depth_fraction:.1%}; allowed: {t.max_tree_depth_fraction:.1%})",
        ),
        (
            any(b < t.min_bfmi for b in result.bfmi_per_chain),
            f"E-BFMI {min(result.bfmi_per_chain, default=1):.2f} in some chain "
            f"(needed: {t.min_bfmi})",
        ),
    ]
    result.failures = [msg for failed, msg in checks if failed]
    return result


def bfmi(energy: np.ndarray) -> np.ndarray:
    """Energy Bayesian fraction of missing information, one value per chain."""
    return np.square(np.diff(energy, axis=1)).mean(axis=1) / energy.var(axis=1, ddof=1)


def _concentrations(posterior, diverging: np.ndarray, top: int = 5) -> list[dict]:
    """Parameters whose divergent draws sit in one tail of their posterior.

    For every scalar (each group element too) the mean posterior quantile of the
    divergent draws is 0.5 when divergences are unrelated to it; far from 0.5 means
    the sampler struggles where that parameter is small (or large).
    """
    flat_div = diverging.ravel()
    rows = []
    for name, var in posterior.data_vars.items():
        values = var.values.reshape(flat_div.size, -1)
        labels = (
            [name]
            if values.shape[1] == 1
            else [f"{name}[{label}]" for label in var[var.dims[2]].values]
        )
        ranks = values.argsort(axis=0).argsort(axis=0) / (len(flat_div) - 1)
        mean_rank = ranks[flat_div].mean(axis=0)
        for label, q in zip(labels, mean_rank, strict=True):
            rows.append({"parameter": label, "mean_quantile": float(q)})
    rows.sort(key=lambda r: -abs(r["mean_quantile"] - 0.5))
    return rows[:top]


def divergence_report(diag: Diagnostics, *, parameterization: str, target_accept: float) -> str:
    """Markdown for a person: what happened, where, and what to try next."""
    lines = ["# Divergences", ""]
    n_total = diag.draws_per_chain * len(diag.divergences_per_chain)
    if diag.divergences == 0:
        lines.append(
            f"No divergent transitions in {n_total:,} draws "
            f"({len(diag.divergences_per_chain)} chains)."
        )
        if not diag.passed:
            lines += ["", "## Slow mixing", ""]
            lines += _remedies(diag, parameterization=parameterization, target_accept=target_accept)
    else:
        lines.append(
            f"**{diag.divergences} divergent transitions** in {n_total:,} draws "
            f"({diag.divergences / n_total:.1%})."
        )
        lines += ["", "| chain | divergences |", "|---|---|"]
        lines += [f"| {i} | {n} |" for i, n in enumerate(diag.divergences_per_chain)]
        lines += ["", "## Where they concentrate", ""]
        lines.append(
            "A divergent draw's quantile in a parameter's posterior averages 0.5 when the "
            "divergences have nothing to do with it. These are furthest from 0.5:"
        )
        lines += ["", "| parameter | mean quantile of divergent draws | reading |", "|---|---|---|"]
        for row in diag.concentrations:
            q = row["mean_quantile"]
            reading = "small values" if q < 0.5 else "large values"
            lines.append(f"| `{row['parameter']}` | {q:.2f} | {reading} |")
        lines += ["", "## What this means and what to do", ""]
        lines += _remedies(diag, parameterization=parameterization, target_accept=target_accept)
    lines += ["", "## Other checks", ""]
    lines.append(f"- worst r_hat: {diag.worst_r_hat:.3f} (`{diag.worst_r_hat_parameter}`)")
    lines.append(
        f"- lowest bulk ESS: {diag.lowest_ess_bulk:.0f} (`{diag.lowest_ess_bulk_parameter}`)"
    )
    lines.append(
        f"- lowest tail ESS: {diag.lowest_ess_tail:.0f} (`{diag.lowest_ess_tail_parameter}`)"
    )
    lines.append(f"- maximum tree depth reached: {diag.tree_depth_hits} draws")
    bfmi = ", ".join(f"{b:.2f}" for b in diag.bfmi_per_chain)
    lines.append(f"- E-BFMI per chain: {bfmi} (below 0.3 suggests poor exploration of the energy)")
    lines += ["", "**Verdict: " + ("pass**" if diag.passed else "fail**")]
    lines += [f"- {f}" for f in diag.failures]
    return "\n".join(lines) + "\n"


def _remedies(diag: Diagnostics, *, parameterization: str, target_accept: float) -> list[str]:
    scales = [
        r["parameter"]
        for r in diag.concentrations
        if r["parameter"].startswith("sigma_") and r["mean_quantile"] < 0.5
    ]
    slow = [
        p
        for p in (diag.lowest_ess_bulk_parameter, diag.worst_r_hat_parameter)
        if p.startswith("sigma_")
    ]
    lines = []
    if not diag.divergences and slow:
        lines.append(
            f"The chains move slowly through `{slow[0]}` (bulk ESS "
            f"{diag.lowest_ess_bulk:.0f}, r_hat {diag.worst_r_hat:.3f}). That is the funnel of a "
            f"{parameterization} hierarchical model: when `{slow[0]}` is small the group "
            "coefficients are squeezed together, the posterior narrows, and NUTS needs tiny "
            "steps to get in and out. The estimates of the scale are unreliable until this "
            "is fixed; divergences usually follow with more draws."
        )
    elif not diag.divergences:
        lines.append(
            f"The chains mix slowly: lowest bulk ESS {diag.lowest_ess_bulk:.0f} "
            f"(`{diag.lowest_ess_bulk_parameter}`), worst r_hat {diag.worst_r_hat:.3f} "
            f"(`{diag.worst_r_hat_parameter}`). Estimates of these parameters are unreliable."
        )
    elif scales:
        lines.append(
            f"The divergences sit where {', '.join(f'`{s}`' for s in scales)} is small: the "
            "group coefficients are squeezed together and the posterior narrows into a funnel "
            "that NUTS cannot follow with one step size. The estimates of these scales (and "
            "anything that depends on them) are biased upward until this is fixed."
        )
    else:
        lines.append(
            "Divergences mean the sampler met curvature too sharp for its step size; the "
            "regions it could not enter are under-represented in the posterior."
        )
    lines.append("")
    if parameterization == "centered":
        lines.append(
            "1. Use `model.parameterization: auto` (the exact marginal model for Gaussian "
            "data: no funnel at all) or `noncentered`."
        )
    elif parameterization == "noncentered":
        lines.append(
            "1. Use `model.parameterization: auto` (the exact marginal model for Gaussian "
            "data), or `centered` if every group has many rows."
        )
    else:
        lines.append(
            "1. Check the priors: a scale prior with much mass near zero, or very wide "
            "priors on weakly identified coefficients, make sharp curvature."
        )
    higher = min(0.99, max(0.95, target_accept + 0.1))
    lines.append(
        f"2. Raise `sampler.target_accept` from {target_accept} to {higher} "
        f"(`--set sampler.target_accept={higher}`): smaller steps, slower sampling."
    )
    lines.append(
        "3. Give the group scales a more informative prior (e.g. HalfNormal(1) on the "
        "scale of the outcome) if the data say little about them."
    )
    return lines
