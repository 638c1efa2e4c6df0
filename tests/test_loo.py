"""The closed-form CV densities of `hbreg.models.loo` against dense multivariate normals.

Three groups (5 rows, 1 row, 8 rows), two of three coefficients varying with a full prior
covariance, three draws: every leave-one-out density is checked against conditioning the
dense group covariance with scipy, every group factor against the dense marginal density and,
summed over groups, against `marginal_loglik` (the likelihood the marginal model samples).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hbreg.models.loo import GaussianDraws, group_loglik, integrated_loo_loglik
from hbreg.models.marginal import marginal_loglik, sufficient_stats

pytestmark = pytest.mark.unit
N_GROUPS, VARYING = 3, [0, 2]
GROUP = np.array([0] * 5 + [1] + [2] * 8)


def _case(seed: int, *, correlated: bool):
    rng = np.random.default_rng(seed)
    n, draws = len(GROUP), 3
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    y = rng.normal(size=n) * 2 + 1
    fixed = rng.normal(size=(draws, 3))
    means = rng.normal(size=(draws, N_GROUPS, 2))
    sd = rng.uniform(0.3, 2.0, size=(draws, 2))
    corr = np.broadcast_to(np.eye(2), (draws, 2, 2)).copy()
    if correlated:
        corr[:, 0, 1] = corr[:, 1, 0] = rng.uniform(-0.9, 0.9, size=draws)
    cov = sd[:, :, None] * corr * sd[:, None, :]
    sigma = rng.uniform(0.5, 1.5, size=draws)

    def coef_means(sel):
        out = np.repeat(fixed[sel][:, None], N_GROUPS, axis=1)
        out[..., VARYING] = means[sel]
        return out

    tril = np.linalg.cholesky(cov)
    return X, y, GaussianDraws(coef_means, tril, sigma, VARYING), cov, sd, corr


def _dense(X, y, draws, cov, s, g):
    rows = np.flatnonzero(GROUP == g)
    z = X[rows][:, VARYING]
    sigma = draws.sigma[s] ** 2 * np.eye(len(rows)) + z @ cov[s] @ z.T
    mean = X[rows] @ draws.coef_means(np.array([s]))[0, g]
    return rows, mean, sigma


@pytest.mark.parametrize("correlated", [False, True])
def test_loo_density_matches_dense_conditioning(correlated):
    X, y, draws, cov, _, _ = _case(1, correlated=correlated)
    got = integrated_loo_loglik(X, y, GROUP, N_GROUPS, draws, chunk_values=50)  # chunks of 1
    assert got.shape == (3, len(y))
    for s in range(3):
        for g in range(N_GROUPS):
            rows, mean, sigma = _dense(X, y, draws, cov, s, g)
            for a, i in enumerate(rows):
                rest = [b for b in range(len(rows)) if b != a]
                gain = sigma[a, rest] @ np.linalg.inv(sigma[np.ix_(rest, rest)])
                cond_mean = mean[a] + gain @ (y[rows][rest] - mean[rest])
                cond_var = sigma[a, a] - gain @ sigma[rest, a]
                want = stats.norm(cond_mean, np.sqrt(cond_var)).logpdf(y[i])
                assert got[s, i] == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("correlated", [False, True])
def test_group_factor_is_the_marginal_likelihood(correlated):
    X, y, draws, cov, sd, corr = _case(2, correlated=correlated)
    got = group_loglik(X, y, GROUP, N_GROUPS, draws, chunk_values=10)
    assert got.shape == (3, N_GROUPS)
    suff = sufficient_stats(X, y, GROUP, N_GROUPS)
    for s in range(3):
        for g in range(N_GROUPS):
            rows, mean, sigma = _dense(X, y, draws, cov, s, g)
            want = stats.multivariate_normal(mean, sigma).logpdf(y[rows])
            assert got[s, g] == pytest.approx(want, rel=1e-10)
        c = draws.coef_means(np.array([s]))[0]
        chol = np.linalg.cholesky(corr[s]) if correlated else None
        total = marginal_loglik(
            suff, list(c.T), list(sd[s]), draws.sigma[s], VARYING, np, corr_chol=chol
        )
        assert got[s].sum() == pytest.approx(float(total), rel=1e-10)


def test_no_varying_coefficient_is_the_plain_gaussian_density():
    """k = 0 (pooled) and a zero prior scale both give the row densities, summed per group."""
    X, y, draws, *_ = _case(3, correlated=False)
    pooled = GaussianDraws(draws.coef_means, np.zeros((3, 0, 0)), draws.sigma, [])
    flat = GaussianDraws(draws.coef_means, np.zeros((3, 2, 2)), draws.sigma, VARYING)
    mean = np.einsum("snp,np->sn", draws.coef_means(np.arange(3))[:, GROUP], X)
    rows = stats.norm(mean, draws.sigma[:, None]).logpdf(y)
    for d in (pooled, flat):
        assert np.allclose(integrated_loo_loglik(X, y, GROUP, N_GROUPS, d), rows)
        per_group = np.stack([rows[:, GROUP == g].sum(1) for g in range(N_GROUPS)], axis=1)
        assert np.allclose(group_loglik(X, y, GROUP, N_GROUPS, d), per_group)
