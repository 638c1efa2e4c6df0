"""The Gaussian model with its group coefficients integrated out.

For y_g = W_g c_g + e with the varying part b_g ~ N(m_g, T), T = diag(tau) R diag(tau)
(R = I for independent effects, an LKJ correlation matrix for correlated ones), and
e ~ N(0, sigma^2 I), the marginal density of y_g is N(W_g c_g(m_g), sigma^2 I + Z_g T Z_g').
With the matrix determinant lemma and Woodbury it needs only per-group sufficient
statistics (n, W'W, W'y, y'y) and a k x k Cholesky factor per group, k being the
number of varying coefficients, so its cost does not grow with the number of rows.
NUTS then samples only the few hyperparameters; `draw_group_coefficients` draws
b_g exactly from its Gaussian conditional for every posterior draw.

The Cholesky factor is unrolled into elementwise operations over groups (k is small
and known when the model is built), which keeps the gradient graph cheap on every
backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SufficientStats",
    "draw_group_coefficients",
    "marginal_loglik",
    "outcome_shift",
    "sufficient_stats",
]

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class SufficientStats:
    """Per-group n, W'W, W'y and y'y: all the likelihood needs to know about the rows."""

    n: np.ndarray  # (G,)
    wtw: np.ndarray  # (G, p, p)
    wty: np.ndarray  # (G, p)
    yty: np.ndarray  # (G,)


def sufficient_stats(X: np.ndarray, y: np.ndarray, group_idx: np.ndarray, n_groups: int):
    """One pass of bincounts over the rows (no (n, p, p) temporaries)."""
    p = X.shape[1]
    wtw = np.empty((n_groups, p, p))
    for a in range(p):
        for b in range(a, p):
            wtw[:, a, b] = wtw[:, b, a] = np.bincount(
                group_idx, weights=X[:, a] * X[:, b], minlength=n_groups
            )
    wty = np.stack(
        [np.bincount(group_idx, weights=X[:, a] * y, minlength=n_groups) for a in range(p)], axis=1
    )
    yty = np.bincount(group_idx, weights=y * y, minlength=n_groups)
    n = np.bincount(group_idx, minlength=n_groups).astype(float)
    return SufficientStats(n=n, wtw=wtw, wty=wty, yty=yty)


def outcome_shift(
    X: np.ndarray, y: np.ndarray, group_idx: np.ndarray, n_groups: int, intercept: int | None
) -> np.ndarray | None:
    """Per-group means of y to subtract before the sufficient statistics are formed.

    The residual sum of squares is assembled as y'y - 2c'W'y + c'W'Wc, which cancels
    catastrophically when y is far from zero: the terms grow with the square of the
    outcome's mean, the difference with its residual variance. Shifting y_g by a
    constant s_g and the intercept's prior mean for group g by the same s_g (its column
    is all ones) leaves every group's likelihood exactly as it was, so the posterior is
    the same and only the arithmetic is better. Measured on radon (draws 200, tune 200,
    4 chains, seed 1) with the outcome + 1e9: without the shift 599 divergences, r_hat
    5.8, sigma 4.7 instead of 0.75; with it 0 divergences, r_hat 1.008, sigma 0.751.
    None when the model has no intercept column of ones.
    """
    if intercept is None or not np.all(X[:, intercept] == 1):
        return None
    n = np.bincount(group_idx, minlength=n_groups)
    return np.bincount(group_idx, weights=y, minlength=n_groups) / np.maximum(n, 1)


def marginal_loglik(
    stats: SufficientStats, coef_means, tau, sigma, varying: list[int], xp, *, corr_chol=None
):
    """Marginal log-likelihood summed over groups, written for numpy or pytensor (`xp`).

    coef_means: list of p arrays (each (G,) or scalar): the full coefficient vector with
    the prior means of the varying coefficients in their slots. tau: list of k prior sds
    of the varying coefficients. sigma: residual sd. corr_chol: the lower Cholesky factor
    L of the k x k prior correlation matrix R = L L' (indexable as `corr_chol[a][b]`), or
    None for independent varying coefficients.
    """
    p = len(coef_means)
    wtw_c = [sum(stats.wtw[:, a, b] * coef_means[b] for b in range(p)) for a in range(p)]
    rtr = (
        stats.yty
        - 2 * sum(coef_means[a] * stats.wty[:, a] for a in range(p))
        + sum(coef_means[a] * wtw_c[a] for a in range(p))
    )
    s2 = sigma**2
    ztr = [stats.wty[:, i] - wtw_c[i] for i in varying]
    k = len(varying)
    if corr_chol is None:
        prior_precision = [[1 / tau[a] ** 2 if a == b else 0 for b in range(k)] for a in range(k)]
    else:
        prior_precision, prior_logdet = _prior_precision(tau, corr_chol, k, xp)
    precision = [
        [stats.wtw[:, i, j] / s2 + prior_precision[a][b] for b, j in enumerate(varying)]
        for a, i in enumerate(varying)
    ]
    chol = _cholesky(precision, xp)
    if corr_chol is None:  # summed as before correlations existed: same rounding, same draws
        logdet = stats.n * xp.log(s2) + sum(
            2 * xp.log(tau[a]) + 2 * xp.log(chol[a][a]) for a in range(k)
        )
    else:
        logdet = stats.n * xp.log(s2) + prior_logdet + sum(2 * xp.log(chol[a][a]) for a in range(k))
    v = _forward_solve(chol, ztr, xp)
    quad = rtr / s2 - sum(vi**2 for vi in v) / s2**2
    return -0.5 * xp.sum(stats.n * _LOG_2PI + logdet + quad)


def _prior_precision(tau, corr_chol, k: int, xp):
    """T^-1 as a k x k nested list and log det T, for T = diag(tau) L L' diag(tau) (k > 1).

    With L lower triangular, R^-1 = M' M for M = L^-1, and log det R = 2 sum log L_aa.
    """
    logdet = sum(2 * xp.log(tau[a]) for a in range(k))
    low = [[corr_chol[a][b] for b in range(a + 1)] for a in range(k)]
    inv = _lower_inverse(low)
    precision = [
        [
            sum(inv[m][a] * inv[m][b] for m in range(max(a, b), k)) / (tau[a] * tau[b])
            for b in range(k)
        ]
        for a in range(k)
    ]
    return precision, logdet + sum(2 * xp.log(low[a][a]) for a in range(k))


def _lower_inverse(low):
    """Inverse of a lower-triangular k x k nested list (entries scalars or tensors)."""
    k = len(low)
    inv = [[0] * k for _ in range(k)]
    for i in range(k):
        inv[i][i] = 1 / low[i][i]
        for j in range(i):
            inv[i][j] = -sum(low[i][m] * inv[m][j] for m in range(j, i)) / low[i][i]
    return inv


def _cholesky(a, xp):
    """Lower Cholesky factor of a k x k matrix whose entries are arrays over groups."""
    k = len(a)
    low = [[None] * k for _ in range(k)]
    for j in range(k):
        low[j][j] = xp.sqrt(a[j][j] - sum(low[j][m] ** 2 for m in range(j)))
        for i in range(j + 1, k):
            low[i][j] = (a[i][j] - sum(low[i][m] * low[j][m] for m in range(j))) / low[j][j]
    return low


def _forward_solve(low, b, xp):
    v = []
    for i in range(len(b)):
        v.append((b[i] - sum(low[i][m] * v[m] for m in range(i))) / low[i][i])
    return v


def draw_group_coefficients(
    stats: SufficientStats,
    coef_means: np.ndarray,
    tau: np.ndarray,
    sigma: np.ndarray,
    varying: list[int],
    rng: np.random.Generator,
    chunk: int = 256,
    *,
    corr: np.ndarray | None = None,
    wty: np.ndarray | None = None,
) -> np.ndarray:
    """Exact draws of the varying coefficients given each posterior draw's hyperparameters.

    coef_means: (S, G, p) coefficient vectors with prior means in the varying slots;
    tau: (S, k); sigma: (S,); corr: (S, k, k) prior correlation matrices, or None for
    independent varying coefficients; wty: (S, G, p) per-draw W'y, for a model whose outcome
    is shifted by a per-draw offset (other grouping factors), else `stats.wty`. Returns
    (S, G, k).
    """
    n_draws, n_groups, _ = coef_means.shape
    k = len(varying)
    out = np.empty((n_draws, n_groups, k))
    ztz = stats.wtw[:, varying][:, :, varying]  # (G, k, k)
    for start in range(0, n_draws, chunk):
        sl = slice(start, start + chunk)
        c = coef_means[sl]  # (s, G, p)
        s2 = (sigma[sl] ** 2)[:, None, None]
        base = stats.wty[None] if wty is None else wty[sl]
        resid = base[..., varying] - np.einsum("gvp,sgp->sgv", stats.wtw[:, varying], c)
        if corr is None:
            prior_precision = _diag(1 / tau[sl] ** 2)
        else:
            scale = tau[sl][:, :, None] * tau[sl][:, None, :]
            prior_precision = np.linalg.inv(corr[sl]) / scale
        precision = ztz[None] / s2[..., None] + prior_precision[:, None]
        z = rng.standard_normal(resid.shape)
        mean_shift, noise = _solve_and_noise(precision, resid / s2, z)
        out[sl] = c[..., varying] + mean_shift + noise
    return out


def _solve_and_noise(precision: np.ndarray, rhs: np.ndarray, z: np.ndarray):
    """A^-1 rhs and L^-T z for stacks of small SPD matrices A = L L' (..., k, k).

    The Cholesky factor and the triangular solves are unrolled over k (small, known when
    the model is built) and vectorized over the stack: numpy's batched LAPACK calls cost
    about a microsecond per 2 x 2 matrix, 0.08 s of the radon fit's 4,000 x 85 draws
    (now 0.007 s). L^-T z with z standard normal has covariance A^-1, the conditional's.
    """
    k = precision.shape[-1]
    low = np.zeros_like(precision)
    for i in range(k):
        for j in range(i + 1):
            value = precision[..., i, j] - sum(low[..., i, m] * low[..., j, m] for m in range(j))
            low[..., i, j] = np.sqrt(value) if i == j else value / low[..., j, j]
    forward = np.empty_like(rhs)  # L y = rhs
    for i in range(k):
        done = sum(low[..., i, m] * forward[..., m] for m in range(i))
        forward[..., i] = (rhs[..., i] - done) / low[..., i, i]

    def backward(right: np.ndarray) -> np.ndarray:  # L' x = right
        x = np.empty_like(right)
        for i in reversed(range(k)):
            done = sum(low[..., m, i] * x[..., m] for m in range(i + 1, k))
            x[..., i] = (right[..., i] - done) / low[..., i, i]
        return x

    return backward(forward), backward(z)


def _diag(v: np.ndarray) -> np.ndarray:
    """(s, k) -> (s, k, k) diagonal matrices."""
    eye = np.eye(v.shape[-1])
    return v[..., None] * eye
