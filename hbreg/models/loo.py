"""Cross-validation densities of the Gaussian model with its group coefficients integrated out.

Given the hyperparameters, the rows of group g are jointly Gaussian:
y_g ~ N(W_g c_g, Sigma_g), Sigma_g = sigma^2 I + Z_g L L' Z_g', where c_g is the full coefficient
vector with the prior mean of the varying coefficients in their slots, Z_g the varying columns
of W_g and L the lower Cholesky factor of the k x k prior covariance of the varying coefficients
(diagonal for independent effects, any lower-triangular factor for correlated ones; a zero
scale is allowed). With B_g = I + L' Z_g' Z_g L / sigma^2 and its Cholesky factor C_g, Woodbury
and the determinant lemma give, from per-group sufficient statistics and k x k work only:

- `group_loglik`: log N(y_g | W_g c_g, Sigma_g), the marginal likelihood of each group (the
  factor of `marginal.marginal_loglik`); PSIS over groups of these is leave-one-group-out, the
  density of a *new* group's rows.
- `integrated_loo_loglik`: log p(y_i | y_{g,-i}) for every row, the density of each
  observation given the other rows of its group (Buerkner, Gabry and Vehtari 2020,
  "Efficient leave-one-out cross-validation for Bayesian non-factorized normal and Student-t
  models"): with Q = Sigma_g^{-1} and r = y_g - W_g c_g, y_i | y_{-i} ~ N(y_i - (Qr)_i / Q_ii,
  1 / Q_ii). Here Q_ii = (1 - |u_i|^2 / sigma^2) / sigma^2 and
  (Qr)_i = (r_i - u_i . w_g / sigma^2) / sigma^2 with u_i = C_g^{-1} L' z_i and
  w_g = C_g^{-1} L' Z_g' r, so no n_g x n_g matrix is ever formed.

Both work on chunks of posterior draws so memory stays at about `chunk_values` numbers whatever
the data; the pointwise one is vectorized over rows (each row reads its group's k x k terms).
With no varying coefficient (k = 0, a pooled model) both reduce to the ordinary Gaussian
log-density of each row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hbreg.models.marginal import SufficientStats, sufficient_stats

__all__ = ["GaussianDraws", "group_loglik", "integrated_loo_loglik"]

_LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class GaussianDraws:
    """The hyperparameter draws (flattened over chain x draw) the integrated densities need.

    Attributes
    ----------
    coef_means : callable
        ``coef_means(draws) -> (s, G, p)``: for the selected flat draw indices, each group's
        full coefficient vector with the prior mean of the varying coefficients in their slots
        (population mean plus group-predictor shifts, or a fixed prior mean) and the drawn
        values of the non-varying ones.
    scale_tril : ndarray
        (S, k, k) lower Cholesky factor of the prior covariance of the varying coefficients.
    sigma : ndarray
        (S,) residual sd.
    varying : list of int
        Columns of the design matrix whose coefficients vary by group (k of them).
    """

    coef_means: Callable[[np.ndarray], np.ndarray]
    scale_tril: np.ndarray
    sigma: np.ndarray
    varying: list[int]

    @property
    def n_samples(self) -> int:
        """Number of posterior draws S."""
        return int(self.sigma.shape[0])


def _group_terms(stats: SufficientStats, means: np.ndarray, tril: np.ndarray, s2, varying):
    """Per-group k x k terms for a chunk of draws: H = C^-1 L', w = C^-1 L' Z'r, log|B|, r'r."""
    wtw_c = np.einsum("gpq,sgq->sgp", stats.wtw, means)
    rtr = (
        stats.yty[None]
        - 2 * np.einsum("sgp,gp->sg", means, stats.wty)
        + np.einsum("sgp,sgp->sg", means, wtw_c)
    )
    k = len(varying)
    if k == 0:
        return None, None, 0.0, rtr
    ztz = stats.wtw[:, varying][:, :, varying]  # (G, k, k)
    ztr = stats.wty[None][..., varying] - wtw_c[..., varying]  # (s, G, k)
    inner = np.einsum("sja,gjl,slb->sgab", tril, ztz, tril)  # L' Z'Z L
    b = np.eye(k) + inner / s2[:, None, None, None]
    chol = np.linalg.cholesky(b)  # (s, G, k, k)
    lt = np.broadcast_to(np.swapaxes(tril, -1, -2)[:, None], chol.shape)
    h = np.linalg.solve(chol, lt)  # C^-1 L'  (triangular, but k is tiny)
    w = np.einsum("sgab,sgb->sga", h, ztr)
    logdet_b = 2 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    return h, w, logdet_b, rtr


def _steps(n_samples: int, per_draw: int, chunk_values: int):
    step = max(1, chunk_values // max(1, per_draw))
    for start in range(0, n_samples, step):
        yield np.arange(start, min(start + step, n_samples))


def group_loglik(
    X: np.ndarray,
    y: np.ndarray,
    group_idx: np.ndarray,
    n_groups: int,
    draws: GaussianDraws,
    *,
    chunk_values: int = 2_000_000,
) -> np.ndarray:
    """Log marginal likelihood of each group's rows given each draw's hyperparameters: (S, G).

    Summed over groups it is the marginal log-likelihood the `marginal` parameterization
    samples; each term is the density of that group's rows as a group the model has not seen.
    """
    stats = sufficient_stats(X, y, group_idx, n_groups)
    out = np.empty((draws.n_samples, n_groups))
    k, p = len(draws.varying), X.shape[1]
    for sel in _steps(draws.n_samples, n_groups * (p + k * k + 1), chunk_values):
        s2 = draws.sigma[sel] ** 2
        h, w, logdet_b, rtr = _group_terms(
            stats, draws.coef_means(sel), draws.scale_tril[sel], s2, draws.varying
        )
        quad = rtr if w is None else rtr - (w**2).sum(-1) / s2[:, None]
        logdet = stats.n[None] * np.log(s2)[:, None] + logdet_b
        out[sel] = -0.5 * (stats.n[None] * _LOG_2PI + logdet + quad / s2[:, None])
    return out


def integrated_loo_loglik(
    X: np.ndarray,
    y: np.ndarray,
    group_idx: np.ndarray,
    n_groups: int,
    draws: GaussianDraws,
    *,
    chunk_values: int = 2_000_000,
) -> np.ndarray:
    """Log density of each row given the other rows of its group, per draw: (S, n).

    The group coefficients are integrated out analytically, so a row of a small group no
    longer pulls "its" drawn coefficients toward itself: this is the pointwise likelihood that
    keeps PSIS-LOO's Pareto k low for hierarchical models. A row alone in its group gets the
    density of a new group's row.
    """
    stats = sufficient_stats(X, y, group_idx, n_groups)
    n, p = X.shape
    k = len(draws.varying)
    z = X[:, draws.varying]
    out = np.empty((draws.n_samples, n))
    for sel in _steps(draws.n_samples, n * (p + k + 2) + n_groups * k * k, chunk_values):
        s2 = draws.sigma[sel] ** 2
        means = draws.coef_means(sel)
        h, w, _, _ = _group_terms(stats, means, draws.scale_tril[sel], s2, draws.varying)
        resid = y[None] - np.einsum("snp,np->sn", means[:, group_idx], X)
        s2n = s2[:, None]
        if h is None:
            q_ii = np.broadcast_to(1 / s2n, resid.shape)
            q_r = resid / s2n
        else:
            u = np.einsum("snab,nb->sna", h[:, group_idx], z)  # C^-1 L' z_i
            q_ii = (1 - (u**2).sum(-1) / s2n) / s2n
            q_r = (resid - np.einsum("sna,sna->sn", u, w[:, group_idx]) / s2n) / s2n
        out[sel] = -0.5 * _LOG_2PI + 0.5 * np.log(q_ii) - 0.5 * q_r**2 / q_ii
    return out
