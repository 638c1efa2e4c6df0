"""Priors scaled to the data where the config gives none, and prior–data conflict checks.

A fixed default such as Normal(0, 10) is weak for an outcome around 1 and decisive for one
around 1,500 (lme4's Dyestuff: the intercept cannot reach 1,527 and the between-batch sd
swallows the difference). So, as rstanarm, brms and bambi do, a parameter whose prior the
config does not state gets one on the scale of the data (Gaussian outcome y, predictor x,
``s_y = sd(y)``, ``s_x = sd(x)``, both with ddof=1 as R's ``sd``):

- coefficient of x (and ``mu_x``): Normal(0, 2.5 s_y / s_x) — rstanarm's default ``prior``;
- intercept (and ``mu_intercept``): Normal(mean(y), sqrt((2.5 s_y)^2 + sum_x (2.5 s_y / s_x
  * mean(x))^2)). rstanarm puts Normal(mean(y), 2.5 s_y) on the intercept of *centred*
  predictors; hbreg's intercept is the value at x = 0, and the sum is what that prior and the
  coefficient priors imply for it (bambi's ``get_intercept_stats`` makes the same
  adjustment);
- residual sd ``sigma``: Exponential(1 / s_y) — rstanarm's default ``prior_aux``;
- group sd ``sigma_x``: HalfNormal(s_y / s_x); ``sigma_intercept``: HalfNormal(sqrt(s_y^2 +
  sum over varying x of (s_y / s_x * mean(x))^2)). In rstanarm's Gaussian ``stan_lmer`` a
  group sd is sigma times a unit-exponential scale (``make_theta_L(..., aux, ...)`` in
  ``continuous.stan``), so its prior scale is the residual sd's, about s_y; hbreg's group
  sds are a priori independent of sigma, so the scale is s_y itself, divided by s_x so that
  it is in the units of the coefficient (as bambi scales group-specific terms). HalfNormal
  rather than Exponential because a between-group sd cannot exceed the outcome's total sd by
  much, and because a half-symmetric prior lets the marginal engine sample the scale signed
  (smooth through zero, see ``hbreg.models.build``);
- group-level predictor effect ``gamma_x_w``: Normal(0, 2.5 s_y / (s_x s_w)), s_w the sd of
  w over groups (s_x = 1 for the intercept).

With ``model.standardize: true`` priors apply to the standardized data the sampler sees
(``hbreg.models.standardize``), so the same rules are applied to those columns: the
coefficients get Normal(0, 2.5), the residual sd Exponential(1), and so on.
Models with several grouping factors (crossed or nested formula terms) keep the fixed role
defaults for now. A predictor with no spread keeps s_x = 1 (rstanarm changes nothing for
it). Non-Gaussian families (none yet) would use s_y = 1 and a location of 0, on the link
scale. Values are
rounded to four significant digits, and it is those rounded numbers that the model uses and
that ``config.yaml`` records, so refitting the saved config repeats the run exactly.

A prior the config does state (``priors.overrides.<name>``, or the role default
``priors.coefficient`` / ``priors.group_sd`` / ``priors.sigma`` written in the file or with
``--set``: pydantic's ``model_fields_set``) is never changed. It is checked instead: when it
puts the data's own estimate of the parameter (least squares for coefficients, the within-
group residual sd for ``sigma``, a moment estimate of the between-group sd of the intercept)
where it gives less than ``CONFLICT_TAIL`` probability, a warning names the prior, the
data's value and the prior hbreg would have used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hbreg.config import Config, coefficient_names, parameter_names, prior_for, varying_names
from hbreg.config.priors import format_prior
from hbreg.config.schema import prior_is_stated, prior_key
from hbreg.data import ModelData
from hbreg.names import (
    INTERCEPT,
    RESIDUAL_SD,
    group_predictor_effect,
    group_sd,
    population_mean,
)

__all__ = ["CONFLICT_TAIL", "prior_conflicts", "prior_table", "scale_priors", "scaled_priors"]

CONFLICT_TAIL = 1e-6  # prior probability of a value at least as far out as the data's own
_MULTIPLIER = 2.5  # rstanarm's and bambi's coefficient scale, in units of s_y / s_x
_DIGITS = 4


@dataclass(frozen=True)
class _Scales:
    location: float  # mean(y) (0 for non-Gaussian families)
    s_y: float
    s_x: dict[str, float]  # predictor -> sd (1 where it has no spread)
    mean_x: dict[str, float]
    s_w: dict[str, float]  # group-level predictor -> sd over groups


def _scales(config: Config, data: ModelData) -> _Scales:
    gaussian = config.model.family == "gaussian"
    identity = config.model.link in (None, "identity")
    y = np.asarray(data.y, dtype=float)
    s_x, mean_x = {}, {}
    for j, coef in enumerate(data.coef_names):
        if coef == INTERCEPT:
            continue
        sd = float(np.std(data.X[:, j], ddof=1))
        s_x[coef] = sd if sd > 0 else 1.0
        mean_x[coef] = float(np.mean(data.X[:, j]))
    s_w = {}
    for q, name in enumerate(data.group_predictor_names):
        sd = float(np.std(data.group_X[:, q], ddof=1)) if data.group_X.shape[0] > 1 else 0.0
        s_w[name] = sd if sd > 0 else 1.0
    return _Scales(
        location=float(np.mean(y)) if gaussian and identity else 0.0,
        s_y=float(np.std(y, ddof=1)) if gaussian else 1.0,
        s_x=s_x,
        mean_x=mean_x,
        s_w=s_w,
    )


def _round(value: float, scale: float | None = None) -> float:
    """`value` to four significant digits, or to the absolute precision of `scale`'s."""
    ref = abs(scale if scale is not None else value)
    if ref == 0 or not math.isfinite(ref):
        return float(value)
    decimals = _DIGITS - 1 - math.floor(math.log10(ref))
    return float(round(value, decimals))


def _coef_scale(sc: _Scales, coef: str, slopes: list[str]) -> tuple[float, float]:
    """(location, sd) of the Normal prior of coefficient `coef`."""
    if coef != INTERCEPT:
        return 0.0, _MULTIPLIER * sc.s_y / sc.s_x[coef]
    spread = (_MULTIPLIER * sc.s_y) ** 2 + sum(
        (_MULTIPLIER * sc.s_y / sc.s_x[x] * sc.mean_x[x]) ** 2 for x in slopes
    )
    return sc.location, math.sqrt(spread)


def scaled_priors(config: Config, data: ModelData) -> dict[str, dict]:
    """The data-scaled prior of every parameter hbreg knows a rule for, by posterior name."""
    sc = _scales(config, data)
    coefs = coefficient_names(config)
    slopes = [c for c in coefs if c != INTERCEPT]
    varying = varying_names(config) if config.model.pooling == "hierarchical" else []
    names = parameter_names(config)
    result: dict[str, dict] = {}
    for coef in coefs:
        location, sd = _coef_scale(sc, coef, slopes)
        spec = {"dist": "Normal", "mu": _round(location, sd), "sigma": _round(sd)}
        result[population_mean(coef) if coef in varying else coef] = spec
        if coef in varying:
            if coef == INTERCEPT:
                varying_slopes = [x for x in varying if x != INTERCEPT]
                sd_group = math.sqrt(
                    sc.s_y**2
                    + sum((sc.s_y / sc.s_x[x] * sc.mean_x[x]) ** 2 for x in varying_slopes)
                )
            else:
                sd_group = sc.s_y / sc.s_x[coef]
            result[group_sd(coef)] = {"dist": "HalfNormal", "sigma": _round(sd_group)}
            per_x = 1.0 if coef == INTERCEPT else sc.s_x[coef]
            for gp, s_w in sc.s_w.items():
                name = group_predictor_effect(coef, gp)
                if name in names:
                    sd_gp = _MULTIPLIER * sc.s_y / (per_x * s_w)
                    result[name] = {"dist": "Normal", "mu": 0.0, "sigma": _round(sd_gp)}
    result[RESIDUAL_SD] = {"dist": "Exponential", "lam": _round(1.0 / sc.s_y)}
    return {name: spec for name, spec in result.items() if name in names}


def scale_priors(config: Config, data: ModelData) -> tuple[Config, list[str]]:
    """`config` with a data-scaled prior for every parameter whose prior it does not state.

    The scaled priors are written to ``priors.overrides``, so the saved config holds their
    numbers; stated priors are left as they are. Returns the new config and the names of
    the parameters that were given scaled priors.
    """
    if data.factors:  # several grouping factors: their own names, not scaled yet
        return config, []
    scaled = scaled_priors(config, _sampled(config, data))
    chosen = {n: s for n, s in scaled.items() if not prior_is_stated(config, n)}
    if not chosen:
        return config, []
    config = config.model_copy(deep=True)
    config.priors.overrides = {**config.priors.overrides, **chosen}
    return config, list(chosen)


def prior_table(resolved: Config, stated: Config) -> list[tuple[str, str, str]]:
    """(parameter, prior, where it comes from) for every parameter of `resolved`.

    `stated` is the config as the user wrote it (before `scale_priors`): a prior it does not
    state is shown as scaled to the data.
    """
    as_stated = resolved.model_copy(update={"priors": stated.priors})  # formula roles resolved
    rows = []
    for name in parameter_names(resolved):
        if prior_is_stated(as_stated, name):
            source = prior_key(as_stated, name)
        elif name in resolved.priors.overrides:
            source = "scaled to the data"
        else:
            source = f"{prior_key(as_stated, name)}, hbreg's fixed default"
        rows.append((name, format_prior(prior_for(resolved, name)), source))
    return rows


# ----------------------------------------------------------------------------- conflicts


def prior_conflicts(config: Config, data: ModelData) -> list[str]:
    """One warning per stated prior that puts the data's own estimate far in its tail."""
    if data.factors or config.model.family != "gaussian" or config.model.link != "identity":
        return []  # least squares on the outcome says nothing about priors on a link scale
    data = _sampled(config, data)
    estimates = _estimates(config, data)
    suggested = scaled_priors(config, data)
    warnings = []
    for name, (value, what) in estimates.items():
        if name not in parameter_names(config) or not prior_is_stated(config, name):
            continue
        spec = prior_for(config, name)
        tail = _tail(spec, value)
        if tail is None or tail >= CONFLICT_TAIL:
            continue
        prob = "below 1e-300" if tail < 1e-300 else f"{tail:.0e}"
        hint = ""
        if name in suggested:
            key = prior_key(config, name)
            hint = (
                f"; suggested: {format_prior(suggested[name])} (remove {key} to get priors "
                "scaled to the data)"
            )
        warnings.append(
            f"prior {prior_key(config, name)} {format_prior(spec)} for '{name}' puts {what}, "
            f"{_show(value)}, far in its tail (prior probability of a value that far out: "
            f"{prob}){hint}"
        )
    return warnings


def _sampled(config: Config, data: ModelData) -> ModelData:
    """The data on the scale the priors apply to: standardized with `model.standardize`."""
    from hbreg.models.standardize import standardize

    return standardize(config, data)[0]


def _estimates(config: Config, data: ModelData) -> dict[str, tuple[float, str]]:
    """Quick least-squares estimates of the parameters, each with words saying what it is."""
    y = np.asarray(data.y, dtype=float)
    X = np.asarray(data.X, dtype=float)
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    hierarchical = config.model.pooling == "hierarchical"
    varying = varying_names(config) if hierarchical else []
    out: dict[str, tuple[float, str]] = {}
    for j, coef in enumerate(data.coef_names):
        name = population_mean(coef) if coef in varying else coef
        if coef == INTERCEPT and X.shape[1] == 1:
            what = f"the mean of '{data.outcome}'"
        elif coef == INTERCEPT:
            what = f"the least-squares intercept of '{data.outcome}'"
        else:
            what = f"the least-squares coefficient of '{coef}'"
        out[name] = (float(beta[j]), what)
    within, between = _residual_scales(data, X, y)
    if within is not None:
        grouped = " within groups" if data.group_idx is not None else ""
        out[RESIDUAL_SD] = (within, f"the residual sd of '{data.outcome}'{grouped}")
    if between is not None and INTERCEPT in varying:
        out[group_sd(INTERCEPT)] = (between, f"the between-{data.group_dim} sd of the intercept")
    return out


def _residual_scales(data: ModelData, X: np.ndarray, y: np.ndarray):
    """(within-group residual sd, between-group sd of the intercept), None where unknown."""
    n = len(y)
    if data.group_idx is None:
        beta = np.linalg.lstsq(X, y, rcond=None)[0]
        dof = n - X.shape[1]
        return (float(np.sqrt(np.sum((y - X @ beta) ** 2) / dof)) if dof > 0 else None), None
    idx, groups = data.group_idx, data.n_groups
    sizes = np.bincount(idx, minlength=groups).astype(float)
    slopes = [j for j, c in enumerate(data.coef_names) if c != INTERCEPT]

    def demean(v):
        return v - (np.bincount(idx, weights=v, minlength=groups) / sizes)[idx]

    y_w = demean(y)
    X_w = np.column_stack([demean(X[:, j]) for j in slopes]) if slopes else np.zeros((n, 0))
    b = np.linalg.lstsq(X_w, y_w, rcond=None)[0] if slopes else np.zeros(0)
    dof = n - groups - len(slopes)
    if dof <= 0:
        return None, None
    within = float(np.sqrt(np.sum((y_w - X_w @ b) ** 2) / dof))
    level = y - (X[:, slopes] @ b if slopes else 0.0)
    means = np.bincount(idx, weights=level, minlength=groups) / sizes
    excess = np.var(means, ddof=1) - within**2 * np.mean(1.0 / sizes) if groups > 1 else 0.0
    return within, (float(np.sqrt(excess)) if excess > 0 else None)


def _tail(spec: dict, value: float) -> float | None:
    """Prior probability of a value at least as far from the prior's centre as `value`.

    Two-sided for priors on the real line, upper tail for priors on (0, inf); None for a
    distribution without a closed form in `math` (StudentT, HalfStudentT, Gamma,
    InverseGamma: not checked, so that `hbreg validate` needs no scipy).
    """
    dist = spec["dist"]
    if dist == "Normal":
        return math.erfc(abs(value - spec["mu"]) / spec["sigma"] / math.sqrt(2))
    if dist == "Cauchy":
        return 1 - 2 / math.pi * math.atan(abs(value - spec["alpha"]) / spec["beta"])
    if dist == "Laplace":
        return math.exp(-abs(value - spec["mu"]) / spec["b"])
    if value <= 0:
        return None
    if dist == "HalfNormal":
        return math.erfc(value / spec["sigma"] / math.sqrt(2))
    if dist == "HalfCauchy":
        return 1 - 2 / math.pi * math.atan(value / spec["beta"])
    if dist == "Exponential":
        return math.exp(-spec["lam"] * value)
    if dist == "LogNormal":
        return math.erfc((math.log(value) - spec["mu"]) / spec["sigma"] / math.sqrt(2)) / 2
    return None


def _show(value: float) -> str:
    return f"{value:.6g}"
