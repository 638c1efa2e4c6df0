"""Prior-only runs: draws from the priors and the prior predictive, checked against the data.

`hbreg fit CONFIG --prior-only` (or `sampler.prior_only: true`) answers "do these priors
make sense?" before any fitting: it draws `chains x draws` independent values of every
parameter from its prior (PyMC's forward sampling of the same model, in its explicit
non-centered or centered form, since the marginal form has no observed variable) and
outcomes from the prior predictive on the observed design, and measures how much of the
prior predictive falls outside the range of the observed outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hbreg.config import Config
from hbreg.data import ModelData
from hbreg.names import SAMPLE_DIMS

__all__ = ["PriorCheck", "prior_check", "prior_draws", "prior_report"]

_WIDE = 10.0  # a prior predictive whose 90% range is this many times the data's is flagged


def prior_draws(config: Config, data: ModelData, *, seed: int):
    """(prior, prior_predictive, built): xarray Datasets with (chain, draw) like a posterior."""
    import pymc as pm

    from hbreg.models import build_model
    from hbreg.models.standardize import standardize, to_user_scale

    explicit = "noncentered" if config.model.pooling == "hierarchical" else "centered"
    forward = config.model_copy(deep=True)
    forward.model.parameterization = explicit
    # with model.standardize the priors apply on the standardized scale, as when fitting
    sampled_data, scaling = standardize(config, data)
    built = build_model(forward, sampled_data)
    total = config.sampler.chains * config.sampler.draws
    with built.model:
        tree = pm.sample_prior_predictive(draws=total, random_seed=seed)
    prior = _by_chain(tree["prior"].to_dataset(), config.sampler.chains)
    prior = prior.drop_vars([v for v in built.internal_vars if v in prior])
    predictive = _by_chain(tree["prior_predictive"].to_dataset(), config.sampler.chains)
    if scaling is not None:
        prior = to_user_scale(prior, scaling, data)
        outcome = predictive[data.outcome] * scaling.outcome_sd + scaling.outcome_mean
        predictive = predictive.assign({data.outcome: outcome})
    return prior, predictive, built


def _by_chain(dataset, chains: int):
    """(1, chains * draws, ...) -> (chains, draws, ...), so summaries see several chains."""
    draws = dataset.sizes["draw"] // chains
    return (
        dataset.isel(chain=0, drop=True)
        .assign_coords(draw=np.arange(chains * draws))
        .coarsen(draw=draws)
        .construct(draw=("chain", "draw"))
        .assign_coords(chain=np.arange(chains), draw=np.arange(draws))
        .transpose(*SAMPLE_DIMS, ...)
    )


@dataclass(frozen=True)
class PriorCheck:
    """How the prior predictive compares with the observed outcome."""

    outcome: str
    observed_range: tuple[float, float]
    predictive_interval: tuple[float, float]  # 5% and 95% of all prior predictive values
    predictive_99: tuple[float, float]  # 0.5% and 99.5%: where heavy-tailed priors show
    share_outside: float  # of prior predictive values outside the observed range
    width_ratio: float  # 90% prior predictive width over the observed range

    @property
    def too_wide(self) -> bool:
        """The prior predictive is an order of magnitude (or more) wider than the data."""
        return self.width_ratio >= _WIDE

    def to_dict(self) -> dict:
        """For manifest.json."""
        return {
            "outcome": self.outcome,
            "observed_range": list(self.observed_range),
            "prior_predictive_90": list(self.predictive_interval),
            "prior_predictive_99": list(self.predictive_99),
            "share_outside_observed_range": self.share_outside,
            "width_ratio": self.width_ratio,
            "too_wide": self.too_wide,
        }


def prior_check(predictive, y: np.ndarray, outcome: str) -> PriorCheck:
    """Share of prior predictive values outside [min y, max y], and how wide they spread."""
    values = np.asarray(predictive[outcome].values, dtype=float).ravel()
    low, high = float(np.min(y)), float(np.max(y))
    q005, q05, q95, q995 = (float(v) for v in np.quantile(values, [0.005, 0.05, 0.95, 0.995]))
    outside = float(np.mean((values < low) | (values > high)))
    ratio = (q95 - q05) / (high - low) if high > low else float("inf")
    return PriorCheck(outcome, (low, high), (q05, q95), (q005, q995), outside, float(ratio))


def prior_report(check: PriorCheck, *, draws: int) -> str:
    """prior_predictive.md: what share falls outside the data, and what that means."""
    low, high = check.observed_range
    q05, q95 = check.predictive_interval
    lines = [
        "# Prior predictive check (prior-only run)",
        "",
        f"These draws come from the priors alone ({draws} draws): no data informed them.",
        "",
        f"- observed `{check.outcome}`: from {low:.4g} to {high:.4g}",
        f"- prior predictive, middle 90%: from {q05:.4g} to {q95:.4g} "
        f"({check.width_ratio:.3g} times the observed range)",
        f"- prior predictive, middle 99%: from {check.predictive_99[0]:.4g} to "
        f"{check.predictive_99[1]:.4g}",
        f"- {100 * check.share_outside:.1f}% of prior predictive values fall outside the "
        "observed range",
        "",
    ]
    if check.too_wide:
        lines.append(
            f"**The priors allow outcomes far beyond the data**: the middle 90% of the prior "
            f"predictive is {check.width_ratio:.3g} times as wide as everything observed. "
            "Unless that is meant, tighten the priors on the scale of the outcome and the "
            "predictors: the coefficients, and the scales too (a heavy-tailed HalfCauchy on "
            "`sigma` alone can do this), and run `--prior-only` again."
        )
    else:
        lines.append(
            "The prior predictive is on the scale of the data: the priors are weakly "
            "informative here."
        )
    return "\n".join(lines) + "\n"
