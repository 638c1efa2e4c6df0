"""The posterior summary table, vectorized over every parameter at once.

`summarize` returns the table that
``pd.DataFrame(az.summary(posterior, round_to="none", ci_prob=0.9, ci_kind="eti")).astype(float)``
returns with ArviZ 1.3 (arviz_stats), with the same row labels, column names and
order, and the same numbers up to floating-point rounding (observed: at most
2e-14 relative), but without looping over parameters in Python and without importing
arviz: arviz_stats ranks and computes ESS/R-hat one parameter at a time, which
takes seconds for a few thousand parameters; here every step (ranking, normal
scores, split chains, FFT autocovariance, Geyer's truncation) runs on a whole
block of parameters at once.

The formulas follow ``arviz_stats.base.diagnostics._DiagnosticsBase`` exactly:

* ``mean``, ``sd`` (ddof=1) and the equal-tailed interval (numpy "linear"
  quantiles, type 7) over all chains and draws together.
* Chains are split into halves of ``draws // 2`` draws (for an odd number of
  draws the middle draw is left out of the split chains, as ArviZ does).
* ``ess_bulk``: ESS of the rank-normalized split chains (average ranks for ties,
  Blom's offset 3/8, standard normal quantile).
* ``ess_tail``: the smaller ESS of the split-chain indicators ``x <= q`` for the
  quantiles ``1 - p`` and ``p`` of all draws, where ``p`` is ArviZ's
  ``rcParams["stats.ci_prob"]`` (default 0.89): `az.summary` does not pass its
  ``ci_prob`` on to the tail ESS, so the tail quantiles are 0.11 and 0.89, not
  0.05 and 0.95.
* ``r_hat``: the larger of the rank-normalized split R-hat and the folded
  (``|x - median|``) rank-normalized split R-hat.
* ``mcse_mean``: ``sd / sqrt(ESS of the raw split chains)``.
* ``mcse_sd``: ArviZ's delta-method formula with the ESS of the split squared
  deviations from the mean.
* A parameter with any NaN draw gets NaN diagnostics (and NaN statistics),
  fewer than 4 draws gives NaN diagnostics, fewer than 2 chains a NaN ``r_hat``;
  an ESS input that is constant (range below float resolution) has ESS equal to
  its size.

Draws are converted to float64 first, so float32 draws give az.summary's table
of the float64-converted draws (az.summary on the float32 draws themselves
differs from that by about 1e-8 relative: it keeps some steps in float32).

One deliberate difference: ArviZ labels the rows of a variable whose own
dimension order differs from the order of those dimensions in the dataset with
the labels of one order and the numbers of the other (its values are stacked in
dataset order, its labels in variable order). Here every label belongs to its
numbers: ``x[a, b]`` is always ``x.sel(dim0=a, dim1=b)`` in the variable's own
dimension order.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import product

import numpy as np
import pandas as pd
from scipy.special import ndtri

__all__ = ["summarize"]

_SAMPLE_DIMS = ("chain", "draw")
_BLOM_C = 3 / 8
# az.summary's tail ESS uses arviz_base's rcParams["stats.ci_prob"] (default 0.89), not its ci_prob
_ARVIZ_TAIL_PROB = 0.89
_BLOCK_VALUES = 1 << 16  # draws per block of parameters: keeps the work arrays in cache


def summarize(
    posterior, *, ci_prob: float = 0.9, tail_prob: float = _ARVIZ_TAIL_PROB
) -> pd.DataFrame:
    """Mean, sd, equal-tailed interval, ESS, R-hat and MCSE of every parameter.

    Parameters
    ----------
    posterior : xarray.Dataset
        Every data variable has ``chain`` and ``draw`` dimensions; any further
        dimensions are parameters (one row per element).
    ci_prob : float, default 0.9
        Probability mass of the equal-tailed interval; the columns are named
        ``eti{int(100 * ci_prob)}_lb`` and ``..._ub`` as in ArviZ.
    tail_prob : float, default 0.89
        The tail ESS uses the quantiles ``1 - tail_prob`` and ``tail_prob``;
        0.89 is what `az.summary` uses (its ``rcParams["stats.ci_prob"]``).

    Returns
    -------
    pandas.DataFrame
        One row per scalar parameter, labelled ``name`` or ``name[c1, c2]`` with
        the coordinate values; columns ``mean, sd, eti90_lb, eti90_ub, ess_bulk,
        ess_tail, r_hat, mcse_mean, mcse_sd``; float64 throughout.
    """
    labels, blocks = [], []
    n_chain = n_draw = None
    for name, var in posterior.data_vars.items():
        missing = [dim for dim in _SAMPLE_DIMS if dim not in var.dims]
        if missing:
            raise ValueError(f"variable {name!r} lacks the dimension(s) {missing}")
        other = [dim for dim in var.dims if dim not in _SAMPLE_DIMS]
        values = np.asarray(var.transpose(*_SAMPLE_DIMS, *other).values, dtype=np.float64)
        n_chain, n_draw = values.shape[:2]
        blocks.append(values.reshape(n_chain, n_draw, -1))
        if other:
            coords = [var[dim].values for dim in other]
            labels.extend(
                f"{name}[{', '.join(f'{v}' for v in combo)}]" for combo in product(*coords)
            )
        else:
            labels.append(str(name))

    edge = (1 - ci_prob) / 2
    perc = int(ci_prob * 100)
    columns = ["mean", "sd", f"eti{perc}_lb", f"eti{perc}_ub"]
    columns += ["ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]
    if not labels:
        return pd.DataFrame(np.empty((0, len(columns))), index=pd.Index([]), columns=columns)

    probs = sorted((tail_prob, 1 - tail_prob))
    quantiles = [edge, 1 - edge, *probs]
    table = np.full((len(labels), len(columns)), np.nan)
    step = max(1, _BLOCK_VALUES // max(1, n_chain * n_draw))
    for start in range(0, len(labels), step):
        block = _gather(blocks, start, min(start + step, len(labels)))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN/inf draws
            table[start : start + len(block)] = _summarize_block(block, quantiles)
    return pd.DataFrame(table, index=pd.Index(labels), columns=columns)


def _gather(blocks: list[np.ndarray], start: int, stop: int) -> np.ndarray:
    """Parameters ``start:stop`` of the (chain, draw, parameter) blocks, (parameter, chain, draw).

    Transposing one block of parameters at a time is several times faster than all at once.
    """
    pieces, offset = [], 0
    for values in blocks:
        width = values.shape[-1]
        lo, hi = max(start - offset, 0), min(stop - offset, width)
        if lo < hi:
            pieces.append(values[:, :, lo:hi])
        offset += width
        if offset >= stop:
            break
    joined = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=-1)
    return np.ascontiguousarray(joined.transpose(2, 0, 1))


def _summarize_block(x: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """The nine summary columns for a block ``x`` of shape (parameter, chain, draw)."""
    n_par, n_chain, n_draw = x.shape
    flat = x.reshape(n_par, n_chain * n_draw)
    out = np.full((n_par, 9), np.nan)
    out[:, 0] = flat.mean(axis=1)
    if flat.shape[1] >= 2:
        out[:, 1] = flat.std(axis=1, ddof=1)
    if flat.shape[1] == 0:
        return out

    valid = ~np.isnan(flat).any(axis=1)
    half = n_draw // 2
    if n_draw < 4 or not valid.any():
        out[:, 2:4] = np.quantile(flat, quantiles[:2], axis=-1).T
        return out

    # split chains: (parameter, 2 * chain, half), the middle draw of an odd chain left out.
    # The five series whose ESS is needed share one (5, parameter, 2 * chain, half) array,
    # so that a single batch of FFTs serves them all.
    n_split = 2 * n_chain * half
    series = np.empty((5, n_par, 2 * n_chain, half))
    split = series[3]
    split[:, :n_chain] = x[:, :, :half]
    split[:, n_chain:] = x[:, :, n_draw - half :]
    split_flat = split.reshape(n_par, n_split)
    order = np.argsort(split_flat, axis=-1)
    ranked = np.take_along_axis(split_flat, order, axis=-1)

    # The split chains hold every draw when the draw count is even: quantiles from the sorted copy.
    qsource = ranked if n_draw % 2 == 0 else flat
    q = np.quantile(qsource, quantiles, axis=-1)  # (4, parameter)
    out[:, 2], out[:, 3] = q[0], q[1]

    # 0: rank-normalized split chains (bulk ESS)
    _normal_scores(ranked, order, out=series[0].reshape(n_par, n_split))
    # 1, 2: indicators of the low and high tail quantiles (tail ESS)
    np.less_equal(split, q[2][:, None, None], out=series[1])
    np.less_equal(split, q[3][:, None, None], out=series[2])
    # 4: squared deviations from the mean (mcse_sd); 3 is the raw split chains (mcse_mean)
    np.square(split - out[:, 0, None, None], out=series[4])
    ess = _ess(series.reshape(5 * n_par, 2 * n_chain, half)).reshape(5, n_par)
    ess_bulk, ess_low, ess_high, ess_mean, ess_sd = ess

    ess_tail = np.where(ess_high < ess_low, ess_high, ess_low)  # Python's min(low, high)
    sq = np.square(flat - out[:, 0, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        mcse_mean = out[:, 1] / np.sqrt(ess_mean)
        evar = sq.mean(axis=1)
        # (x^2)^2 rather than x**4: ten times faster, within an ulp of it
        varvar = ((sq * sq).mean(axis=1) - evar**2) / ess_sd
        mcse_sd = np.sqrt(varvar / evar / 4)

    out[:, 4] = np.where(valid, ess_bulk, np.nan)
    out[:, 5] = np.where(valid, ess_tail, np.nan)
    if n_chain >= 2:
        median = (ranked[:, n_split // 2 - 1] + ranked[:, n_split // 2]) / 2  # n_split is even
        folded = np.abs(ranked - median[:, None])  # V-shaped along the sorted axis
        order_fold = np.argsort(folded, axis=-1, kind="stable")  # two sorted runs: merges fast
        z_fold = _normal_scores(
            np.take_along_axis(folded, order_fold, axis=-1),
            np.take_along_axis(order, order_fold, axis=-1),
        ).reshape(split.shape)
        rhat_bulk, rhat_tail = _rhat(series[0]), _rhat(z_fold)
        rhat = np.where(rhat_tail > rhat_bulk, rhat_tail, rhat_bulk)  # Python's max(bulk, tail)
        out[:, 6] = np.where(valid, rhat, np.nan)
    out[:, 7] = np.where(valid, mcse_mean, np.nan)
    out[:, 8] = np.where(valid, mcse_sd, np.nan)
    return out


def _normal_scores(ranked: np.ndarray, order: np.ndarray, out: np.ndarray | None = None):
    """Blom normal scores of the values, given sorted along the last axis.

    ``ranked`` holds each row's values in ascending order and ``order`` their
    positions in the row; the scores come back in the original positions (in
    ``out`` if given). Ties get their average rank (scipy's
    ``rankdata(method="average")``), so every score is
    ``ndtri((rank - 3/8) / (n - 3/4 + 1))`` bit for bit as ArviZ computes it.
    """
    size = ranked.shape[-1]
    scores = _untied_scores(size)
    ties = ranked[:, 1:] == ranked[:, :-1]  # position c and c + 1 hold equal values
    if ties.any():
        rows, cols = np.nonzero(ties)
        flat = rows * size + cols
        new_group = np.concatenate(([True], np.diff(flat) != 1))
        group = np.cumsum(new_group) - 1
        first = cols[new_group]
        last = np.zeros_like(first)
        np.maximum.at(last, group, cols + 1)
        rank = (first + last)[group] / 2 + 1  # average of the 1-based ranks first+1 .. last+1
        tied = ndtri((rank - _BLOM_C) / (size - 2 * _BLOM_C + 1))
        scores = np.array(np.broadcast_to(scores, ranked.shape))
        scores[rows, cols] = tied
        scores[rows, cols + 1] = tied
    z = np.empty(ranked.shape) if out is None else out
    np.put_along_axis(z, order, np.broadcast_to(scores, ranked.shape), axis=-1)
    return z


@lru_cache(maxsize=8)
def _untied_scores(size: int) -> np.ndarray:
    """``ndtri((rank - 3/8) / (size - 3/4 + 1))`` for the ranks 1..size (read-only)."""
    ranks = np.arange(1, size + 1, dtype=np.float64)
    scores = ndtri((ranks - _BLOM_C) / (size - 2 * _BLOM_C + 1))
    scores.setflags(write=False)
    return scores


def _rhat(z: np.ndarray) -> np.ndarray:
    """Split R-hat of (parameter, chain, draw) values, ArviZ's `_rhat` per parameter."""
    n = z.shape[-1]
    chain_mean = z.mean(axis=-1)
    chain_var = z.var(axis=-1, ddof=1)
    between = n * chain_mean.var(axis=-1, ddof=1)
    within = chain_var.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _next_fast_len(target: int) -> int:
    """Smallest 2^a 3^b 5^c >= target (scipy.fftpack.next_fast_len, which ArviZ pads to)."""
    if target <= 6:
        return target
    best = 1 << (target - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            quotient = -(-target // p35)  # ceil
            p2 = 1 << (quotient - 1).bit_length()
            best = min(best, p2 * p35)
            p35 *= 3
        p5 *= 5
    return best


def _mean_autocov(a: np.ndarray) -> np.ndarray:
    """Autocovariance at every lag along the last axis, averaged over the chain axis (-2).

    ArviZ's `autocov` (FFT, zero-padded to ``next_fast_len(2 n)``) followed by the
    mean over chains, which is all `_ess` uses; averaging the power spectra before
    the inverse transform needs one inverse FFT per parameter instead of one per
    chain (the same numbers up to rounding).
    """
    n = a.shape[-1]
    m = _next_fast_len(2 * n)
    padded = np.zeros((*a.shape[:-1], m))
    np.subtract(a, a.mean(axis=-1, keepdims=True), out=padded[..., :n])
    spec = np.fft.rfft(padded, axis=-1)
    # chain-summed |spec|^2 without a complex product (several times faster)
    power = np.einsum("...ck,...ck->...k", spec.real, spec.real)
    power += np.einsum("...ck,...ck->...k", spec.imag, spec.imag)
    power /= a.shape[-2]
    cov = np.fft.irfft(power, n=m, axis=-1)[..., :n]
    cov /= n
    return cov


def _ess(a: np.ndarray) -> np.ndarray:
    """ESS of (parameter, chain, draw) values: ArviZ's `_ess`, vectorized over parameters.

    Geyer's initial positive sequence stops at the first pair of autocorrelations
    (lags 2j, 2j+1) whose sum is not positive; the initial monotone sequence is a
    running minimum of the pair sums. Both are evaluated with masks instead of the
    per-parameter loops, replaying ArviZ's loop bounds and assignments exactly.
    """
    n_par, n_chain, n = a.shape
    size = n_chain * n
    rows = np.arange(n_par)
    with np.errstate(divide="ignore", invalid="ignore"):
        constant = (a.max(axis=(1, 2)) - a.min(axis=(1, 2))) < np.finfo(float).resolution
        mean_acov = _mean_autocov(a)  # (parameter, lag)
        chain_mean = a.mean(axis=-1)
        mean_var = mean_acov[:, 0] * n / (n - 1.0)
        var_plus = mean_var * (n - 1.0) / n
        if n_chain > 1:
            var_plus += chain_mean.var(axis=-1, ddof=1)
        rho_all = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]

        # pair sums: S_0 = 1 + rho_1, S_j = rho_2j + rho_2j+1 for the j ArviZ's loop can reach
        n_pairs = len(range(1, n - 3, 2))
        pair_sum = np.empty((n_par, n_pairs + 1))
        pair_sum[:, 0] = 1.0 + rho_all[:, 1]
        if n_pairs:
            lags = 2 * np.arange(1, n_pairs + 1)
            pair_sum[:, 1:] = rho_all[:, lags] + rho_all[:, lags + 1]
        # number of loop iterations: leading run of positive sums among S_0..S_{n_pairs-1}
        n_iter = np.cumprod(pair_sum[:, :n_pairs] > 0, axis=1).sum(axis=1)
        last_sum = pair_sum[rows, n_iter]

        lag_pair = np.arange(n) // 2
        keep = (lag_pair >= 1) & (
            (lag_pair < n_iter[:, None])
            | ((lag_pair == n_iter[:, None]) & (last_sum >= 0)[:, None])
        )
        rho = np.where(keep, rho_all, 0.0)
        rho[:, 0] = 1.0
        rho[:, 1] = rho_all[:, 1]
        # "improve estimation": the last even autocorrelation, if positive
        last_even = np.where(n_iter > 0, rho_all[rows, 2 * n_iter], 1.0)
        improve = last_even > 0
        rho[rows[improve], 2 * n_iter[improve]] = last_even[improve]

        # Geyer's initial monotone sequence over pairs 0..n_iter-1
        if n_pairs > 1:
            pairs = rho[:, : 2 * n_pairs].reshape(n_par, n_pairs, 2)
            sums = pairs[..., 0] + pairs[..., 1]
            running_min = np.minimum.accumulate(sums, axis=1)
            k = np.arange(1, n_pairs)
            lower = (k < n_iter[:, None]) & (sums[:, 1:] > running_min[:, :-1])
            fill = np.where(lower, running_min[:, :-1] / 2.0, pairs[:, 1:, 0])
            pairs[:, 1:, 0] = fill
            pairs[:, 1:, 1] = np.where(lower, fill, pairs[:, 1:, 1])
            rho[:, : 2 * n_pairs] = pairs.reshape(n_par, 2 * n_pairs)

        max_t = 2 * n_iter - 1
        inside = np.arange(n) <= max_t[:, None]
        tau = -1.0 + 2.0 * np.where(inside, rho, 0.0).sum(axis=1) + rho[rows, max_t + 1]
        floor = 1 / np.log10(size)
        tau = np.where(floor > tau, floor, tau)
        ess = size / tau
    ess = np.where(np.isnan(rho).any(axis=1), np.nan, ess)
    return np.where(constant, float(size), ess)
