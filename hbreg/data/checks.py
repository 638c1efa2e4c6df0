"""What the design can and cannot identify, said before anything is sampled.

Each check reads the encoded design (`ModelData`) and returns `DesignCheck`s: a
*warning* where part of the model is decided by the prior alone or sampling will
struggle, a *note* where that is expected and harmless but worth knowing. Nothing here
raises: every prior hbreg accepts is proper, so every design it accepts can be fitted;
the data layer already refuses what cannot (a constant predictor, a constant outcome).
`hbreg validate` and `hbreg fit` print them, and the run's manifest keeps them under
`design_checks`.

- `collinearity`: a predictor that is (almost) a linear combination of the ones before
  it. Scale- and shift-invariant: columns are centred (when the model has an intercept)
  and scaled to unit sd, then regressed in design order on the columns already kept
  (Gram-Schmidt on the correlation matrix, an unpivoted QR). A column whose residual sd
  is below `NEAR_EXACT` (0.1%) of its own sd is reported with its relation to the
  others. 0.1% is a variance inflation of 10^6: the likelihood along that direction is
  so flat that any prior hbreg allows decides it, while a column that is merely strongly
  correlated (residual 1%, VIF 10^4) is left alone. O(n p^2), one pass over the rows.
- `uninformed_slopes`: varying slopes whose predictor does not vary within a group
  (then its rows cannot tell that group's slope from its intercept), and predictors
  constant within every group next to unpooled intercepts.
- `scale_spread`: predictors whose standard deviations are `SCALE_RATIO` (1000) or
  more apart; `model.standardize: true` is the remedy.
- `separation`: for 0/1 (or successes-of-trials) outcomes, a predictor, a linear
  combination of predictors (a linear programme) or a group that separates the 0s
  from the 1s, so that a coefficient runs off to where its prior stops it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from hbreg.names import INTERCEPT, group_sd, population_mean

__all__ = [
    "NEAR_EXACT",
    "SCALE_RATIO",
    "DesignCheck",
    "check_design",
    "collinearity",
    "scale_spread",
    "separation",
    "uninformed_slopes",
]

NEAR_EXACT = 1e-3  # residual sd / column sd below which a column counts as collinear
_EXACT = 1e-9  # ... below which it is exact (floating-point noise)
SCALE_RATIO = 1e3  # predictor sds this far apart make NUTS adapt slowly
_CONSTANT = 1e-12  # within-group range / overall sd below which a column is constant
_LP_MAX_ROWS = 200_000  # the separation linear programme is skipped above this


@dataclass(frozen=True)
class DesignCheck:
    """One finding about the design: which check, how serious, which columns, what to do."""

    check: Literal["collinearity", "confounded_slope", "slope_not_varying", "scale", "separation"]
    level: Literal["note", "warning"]
    columns: tuple[str, ...]
    message: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict for the manifest."""
        out = asdict(self)
        out["columns"] = list(self.columns)
        return out


def check_design(config, data) -> list[DesignCheck]:
    """Every design check that applies to `config` on `data` (a `ModelData`), warnings first."""
    pooling = config.model.pooling
    checks = collinearity(data.X, data.coef_names)
    if data.group_X is not None and data.group_X.shape[1] > 1:
        # group-level design: one row per group; an intercept always goes with it
        group_design = np.column_stack([np.ones(len(data.group_X)), data.group_X])
        checks += collinearity(
            group_design, [INTERCEPT, *data.group_predictor_names], prefix="group-level "
        )
    factors = [(f.varying, f.idx, f.labels, f.name) for f in data.factors] or [
        (data.varying, data.group_idx, data.group_labels, data.group_dim)
    ]
    for varying, group_idx, labels, group in factors:
        checks += uninformed_slopes(
            data.X,
            data.coef_names,
            varying=varying,
            group_idx=group_idx,
            group_labels=labels,
            group=group,
            pooling=pooling,
            several=bool(data.factors),
        )
    if not config.model.standardize:
        checks += scale_spread(data.X, data.coef_names)
    if config.model.family in ("bernoulli", "binomial"):
        checks += separation(
            data.X,
            data.coef_names,
            data.y,
            trials=getattr(data, "trials", None),
            group_idx=data.group_idx if INTERCEPT in data.varying else None,
            group_labels=data.group_labels,
            group=data.group_dim,
            pooling=pooling,
        )
    return sorted(checks, key=lambda c: c.level != "warning")


def _number(value: float) -> str:
    text = f"{value:.4g}"
    return text + ".0" if re.fullmatch(r"-?\d+", text) else text


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.2g}%"


def collinearity(
    X: np.ndarray, names: list[str], *, tolerance: float = NEAR_EXACT, prefix: str = ""
) -> list[DesignCheck]:
    """Columns of the design that are (nearly) linear combinations of earlier columns.

    `X` is the design in `names` order, with a column of ones named `intercept` when the
    model has one. Each collinear column is reported once, written as a combination of
    the columns kept before it (`floor2 ≈ 2.0 × floor`), so the later, usually derived,
    column is the one named first.
    """
    X = np.asarray(X, dtype=float)
    has_constant = INTERCEPT in names
    cols = [j for j, name in enumerate(names) if name != INTERCEPT]
    if not cols or len(X) < 2:
        return []
    Z = X[:, cols]
    center = Z.mean(axis=0) if has_constant else np.zeros(len(cols))
    Zc = Z - center
    scale = np.sqrt(np.mean(Zc**2, axis=0))
    checks: list[DesignCheck] = []
    usable = scale > 0  # a zero column (no intercept) informs nothing: the data layer's job
    S = np.where(usable, Zc / np.where(usable, scale, 1.0), 0.0)
    gram = S.T @ S / len(S)
    basis: list[int] = []
    for j in range(len(cols)):
        if not usable[j]:
            continue
        coef = np.linalg.solve(gram[np.ix_(basis, basis)], gram[basis, j]) if basis else []
        residual_var = gram[j, j] - (gram[basis, j] @ coef if basis else 0.0)
        if residual_var >= tolerance**2:
            basis.append(j)
            continue
        # confirmed on the rows themselves: the Gram matrix loses digits near zero
        residual = np.sqrt(np.mean((S[:, j] - S[:, basis] @ coef) ** 2))
        if residual >= tolerance:
            basis.append(j)
            continue
        checks.append(
            _collinear(
                names[cols[j]],
                [names[cols[b]] for b in basis],
                coef * scale[j] / scale[basis],
                coef,
                center[j] - (coef * scale[j] / scale[basis]) @ center[basis],
                center[j],
                scale[j],
                residual,
                has_constant=has_constant,
                prefix=prefix,
            )
        )
    return checks


def _collinear(
    target,
    others,
    factors,
    scaled,
    constant,
    target_mean,
    target_sd,
    residual,
    *,
    has_constant,
    prefix,
):
    # terms (and a constant) smaller than the misfit of the relation are noise
    noise = max(_EXACT, residual)
    terms = [(n, f) for n, f, c in zip(others, factors, scaled, strict=True) if abs(c) > noise]
    text = []
    if has_constant and abs(constant) > noise * (abs(target_mean) + target_sd):
        text.append(_number(constant))
    for name, f in terms:
        piece = f"{_number(abs(f))} × {name}"
        if not text:
            text.append(piece if f >= 0 else f"-{piece}")
        else:
            text.append(("+ " if f >= 0 else "- ") + piece)
    relation = f"{target} ≈ {' '.join(text) or '0'}"
    exact = residual < _EXACT
    how = "exactly, in every row" if exact else f"to within {_percent(residual)} of its sd"
    involved = [target] + [n for n, _ in terms]
    direction = ", ".join(
        [f"{target} +1"] + [f"{n} {'-' if f >= 0 else '+'}{_number(abs(f))}" for n, f in terms]
    )
    flat = "flat" if exact else "nearly flat"
    message = (
        f"{prefix}columns {_join(involved)} are collinear: {relation} ({how}). The likelihood "
        f"is {flat} along the direction that moves the coefficients by ({direction}), so there "
        "the prior alone decides: expect wide, strongly correlated posteriors and a low ESS "
        f"for them. Drop '{target}' (or one of the others), or combine them into one column."
    )
    return DesignCheck(
        "collinearity",
        "warning",
        tuple(involved),
        message,
        {
            "relation": relation,
            "column": target,
            "factors": {n: float(f) for n, f in terms},
            "constant": float(constant) if has_constant else 0.0,
            "residual_sd_fraction": float(residual),
            "exact": bool(exact),
        },
    )


def _join(names) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _constant_within(values: np.ndarray, group_idx: np.ndarray, n_groups: int) -> np.ndarray:
    """(G, k) booleans: column k takes a single value in every row of group g."""
    frame = pd.DataFrame(values).groupby(group_idx)
    spread = (frame.max() - frame.min()).reindex(range(n_groups)).to_numpy()
    sd = values.std(axis=0)
    return spread <= _CONSTANT * np.where(sd > 0, sd, 1.0)


def uninformed_slopes(
    X: np.ndarray,
    names: list[str],
    *,
    varying: list[str],
    group_idx: np.ndarray | None,
    group_labels: list[str],
    group: str | None,
    pooling: str,
    several: bool = False,
) -> list[DesignCheck]:
    """Group-level coefficients that a group's own rows cannot inform.

    A varying slope in a group where its predictor takes a single value (a single-row
    group is one case) cannot be told apart from that group's varying intercept: there
    it is decided by the population (hierarchical) or its prior (unpooled). Where that
    holds in every group, the slope is confounded with the intercept: a warning. Without
    a varying intercept the slope is uninformed only where its predictor is 0 throughout
    the group. With unpooled intercepts, a predictor constant within every group is
    confounded with them even when its coefficient does not vary.
    """
    if pooling == "pooled" or group_idx is None:
        return []
    n_groups = len(group_labels)
    cols = [j for j, name in enumerate(names) if name != INTERCEPT]
    if not cols:
        return []
    values = np.asarray(X, dtype=float)[:, cols]
    constant = _constant_within(values, group_idx, n_groups)
    sizes = np.bincount(group_idx, minlength=n_groups)
    intercept_varies = INTERCEPT in varying
    decided_by = (
        "the population distribution ({mu}, {sd})" if pooling == "hierarchical" else "its prior"
    )
    if several:  # one factor among several: its sd is named by names.factor_sd
        decided_by = "the population distribution of its '{group}' effects"
    checks = []
    for k, j in enumerate(cols):
        name = names[j]
        if name in varying:
            uninformed = constant[:, k]
            if not intercept_varies:
                first = pd.Series(values[:, k]).groupby(group_idx).first()
                zero = first.reindex(range(n_groups)).to_numpy() == 0
                uninformed = uninformed & zero
            count = int(uninformed.sum())
            if count == 0:
                continue
            who = decided_by.format(mu=population_mean(name), sd=group_sd(name), group=group)
            if count == n_groups and intercept_varies:
                checks.append(
                    DesignCheck(
                        "confounded_slope",
                        "warning",
                        (name, group),
                        f"'{name}' is constant within every {group}, so its varying slope is "
                        f"confounded with the varying intercept: each {group}'s rows inform "
                        f"only intercept + slope × {name}, not the two apart, and the "
                        f"{group} slopes of '{name}' are decided by {who} alone. Remove "
                        f"'{name}' from model.varying (its population slope stays) or make "
                        f"it a group-level predictor (data.group_predictors).",
                        {"groups": count, "of": n_groups},
                    )
                )
                continue
            single = int((uninformed & (sizes == 1)).sum())
            single_text = (
                f" ({single} of them with a single row)"
                if single and single < count
                else (" (all with a single row)" if single else "")
            )
            what = "does not vary" if intercept_varies else "is 0 throughout"
            level = "warning" if count == n_groups else "note"
            checks.append(
                DesignCheck(
                    "slope_not_varying",
                    level,
                    (name, group),
                    f"'{name}' {what} within {count} of {n_groups} groups of '{group}'"
                    f"{single_text}; there the group's slope of '{name}' is informed by "
                    f"{who} alone, not by its own rows",
                    {
                        "groups": count,
                        "of": n_groups,
                        "single_row": single,
                        "examples": [group_labels[g] for g in np.flatnonzero(uninformed)[:5]],
                    },
                )
            )
        elif pooling == "unpooled" and intercept_varies and constant[:, k].all():
            checks.append(
                DesignCheck(
                    "confounded_slope",
                    "warning",
                    (name, group),
                    f"'{name}' is constant within every {group}, so its coefficient is "
                    f"confounded with the unpooled {group} intercepts: the data inform only "
                    f"intercept + coefficient × {name} per {group}, and the coefficient is "
                    f"decided by the priors alone. Use model.pooling: hierarchical (then "
                    f"'{name}' explains differences between groups) or drop it.",
                    {"groups": n_groups, "of": n_groups},
                )
            )
    return checks


def scale_spread(X: np.ndarray, names: list[str], *, ratio: float = SCALE_RATIO):
    """A warning when the predictors' standard deviations are `ratio` or more apart."""
    cols = [j for j, name in enumerate(names) if name != INTERCEPT]
    sds = {names[j]: float(np.std(X[:, j])) for j in cols}
    sds = {name: sd for name, sd in sds.items() if sd > 0}
    if len(sds) < 2:
        return []
    small = min(sds, key=sds.get)
    large = max(sds, key=sds.get)
    spread = sds[large] / sds[small]
    if spread < ratio:
        return []
    far = [n for n, sd in sds.items() if sd / sds[small] >= ratio or sds[large] / sd >= ratio]
    return [
        DesignCheck(
            "scale",
            "warning",
            tuple(far),
            f"predictors on very different scales: '{small}' has sd {sds[small]:.3g} and "
            f"'{large}' sd {sds[large]:.3g}, a factor {spread:.2g} apart. NUTS adapts slowly "
            "to such a posterior and one coefficient prior cannot suit both. Set "
            "model.standardize: true (sampling on centred, scaled columns, results reported "
            "on your scale) or rescale the columns.",
            {"sd": sds, "ratio": spread},
        )
    ]


def separation(
    X: np.ndarray,
    names: list[str],
    y: np.ndarray,
    *,
    trials: np.ndarray | None = None,
    group_idx: np.ndarray | None = None,
    group_labels: list[str] | None = None,
    group: str | None = None,
    pooling: str = "pooled",
) -> list[DesignCheck]:
    """Predictors, combinations of predictors and groups that separate 0s from 1s.

    `y` holds 0/1 outcomes, or success counts out of `trials`. A row counts as a 1 when
    it has a success and as a 0 when it has a failure (a binomial row with both is
    both). Where the 1s and 0s can be split by a threshold on a predictor (or on a linear
    combination of predictors: a linear programme, for up to 200,000 rows), the
    likelihood keeps growing as that coefficient grows: only the prior stops it. `group_idx`
    (given when the intercept varies) adds groups whose outcomes are all 0 or all 1.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    n_trials = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
    ones = y > 0
    zeros = y < n_trials
    checks: list[DesignCheck] = []
    if not ones.any() or not zeros.any():
        return checks  # a constant outcome is the data layer's to refuse
    has_constant = INTERCEPT in names
    for j, name in enumerate(names):
        if name == INTERCEPT or not has_constant:
            continue
        found = _split(X[ones, j], X[zeros, j])
        if found:
            side, threshold, kind = found
            t = _number(threshold)
            high, low = ("1", "0") if side == ">" else ("0", "1")
            where = (
                f"every row with {name} > {t} is a {high} and every other row a {low}"
                if kind == "completely"
                else f"every row with {name} > {t} is a {high} and every row with {name} < {t} "
                f"a {low} (rows at {t} have both)"
            )
            checks.append(
                DesignCheck(
                    "separation",
                    "warning",
                    (name,),
                    f"'{name}' separates the outcome {kind}: {where}. The likelihood keeps "
                    f"rising as the coefficient of '{name}' grows, so its prior alone decides "
                    "how large it is. Use a tighter prior on it (priors.overrides) or drop or "
                    "coarsen the column.",
                    {"threshold": float(threshold), "kind": kind, "ones_above": side == ">"},
                )
            )
    if not checks and len(y) <= _LP_MAX_ROWS:
        direction = _separating_direction(X, ones, zeros)
        if direction is not None:
            involved = [n for n, b in zip(names, direction, strict=True) if n != INTERCEPT and b]
            checks.append(
                DesignCheck(
                    "separation",
                    "warning",
                    tuple(involved),
                    f"a combination of {_join(involved)} separates the 0s from the 1s: the "
                    "likelihood keeps rising along it, so the priors alone decide how far. "
                    "Use tighter priors on these coefficients or drop one of the columns.",
                    {},
                )
            )
    if group_idx is not None and group_labels:
        n_groups = len(group_labels)
        has_one = np.bincount(group_idx, weights=ones, minlength=n_groups) > 0
        has_zero = np.bincount(group_idx, weights=zeros, minlength=n_groups) > 0
        pure = ~(has_one & has_zero)
        if pure.any():
            who = "the population distribution" if pooling == "hierarchical" else "its prior"
            checks.append(
                DesignCheck(
                    "separation",
                    "note" if pooling == "hierarchical" else "warning",
                    (group,),
                    f"{int(pure.sum())} of {n_groups} groups of '{group}' have outcomes all 0 "
                    f"or all 1; there the group's intercept is decided by {who} alone",
                    {"examples": [group_labels[g] for g in np.flatnonzero(pure)[:5]]},
                )
            )
    return checks


def _split(x_one: np.ndarray, x_zero: np.ndarray):
    """(side, threshold, kind) when a threshold on x splits the 1s from the 0s, else None.

    side '>' means the 1s lie above the threshold. Quasi-complete: the two sides meet at
    the threshold, where both outcomes occur, and some rows lie beyond it.
    """
    if not len(x_one) or not len(x_zero):
        return None
    for side, high, low in ((">", x_one, x_zero), ("<", x_zero, x_one)):
        if low.max() < high.min():
            return side, (low.max() + high.min()) / 2, "completely"
        t = low.max()
        if t == high.min() and ((low < t).any() or (high > t).any()):
            return side, t, "quasi-completely"
    return None


def _separating_direction(X: np.ndarray, ones: np.ndarray, zeros: np.ndarray):
    """A direction b != 0 with x'b >= 0 on every 1 and <= 0 on every 0, or None.

    Maximises the summed margins under those constraints with |b_j| <= 1 on columns
    scaled to unit RMS; a positive optimum is a separating direction (quasi- or
    complete separation, Konis 2007).
    """
    from scipy.optimize import linprog

    rms = np.sqrt(np.mean(X**2, axis=0))
    S = X / np.where(rms > 0, rms, 1.0)
    A = np.vstack([S[ones], -S[zeros]])  # rows with a_i'b >= 0
    result = linprog(
        -A.sum(axis=0),
        A_ub=-A,
        b_ub=np.zeros(len(A)),
        bounds=[(-1, 1)] * X.shape[1],
        method="highs",
    )
    if result.status != 0 or -result.fun <= 1e-6 * len(A):
        return None
    b = result.x
    return np.abs(b) > 1e-6 * np.abs(b).max()
