"""Prior specs from YAML (`{dist: Normal, mu: 0, sigma: 10}`) checked and turned into PyMC.

The table below is the set of distributions a prior may use. Checking against it
(instead of asking PyMC) keeps `hbreg validate` instant and lets every bad prior be
reported at once with the parameters it accepts.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

__all__ = [
    "DISTRIBUTIONS",
    "PriorProblem",
    "check_correlation_prior",
    "check_prior",
    "format_prior",
    "to_pymc",
]


@dataclass(frozen=True)
class _Dist:
    params: dict[str, str]  # name -> "real" | "positive"
    positive_support: bool


DISTRIBUTIONS: dict[str, _Dist] = {
    "Normal": _Dist({"mu": "real", "sigma": "positive"}, False),
    "StudentT": _Dist({"nu": "positive", "mu": "real", "sigma": "positive"}, False),
    "Cauchy": _Dist({"alpha": "real", "beta": "positive"}, False),
    "Laplace": _Dist({"mu": "real", "b": "positive"}, False),
    "HalfNormal": _Dist({"sigma": "positive"}, True),
    "HalfCauchy": _Dist({"beta": "positive"}, True),
    "HalfStudentT": _Dist({"nu": "positive", "sigma": "positive"}, True),
    "Exponential": _Dist({"lam": "positive"}, True),
    "Gamma": _Dist({"alpha": "positive", "beta": "positive"}, True),
    "InverseGamma": _Dist({"alpha": "positive", "beta": "positive"}, True),
    "LogNormal": _Dist({"mu": "real", "sigma": "positive"}, True),
}


class PriorProblem(ValueError):
    """One thing wrong with one prior; the config layer adds where it was found."""


def check_prior(spec: dict, *, positive: bool) -> None:
    """Raise `PriorProblem` unless `spec` names a known distribution with valid parameters.

    `positive` is True for scale parameters, whose prior must live on (0, inf).
    """
    name = spec.get("dist")
    if name not in DISTRIBUTIONS:
        close = difflib.get_close_matches(str(name), DISTRIBUTIONS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise PriorProblem(
            f"unknown distribution '{name}'.{hint} Allowed: {', '.join(DISTRIBUTIONS)}"
        )
    dist = DISTRIBUTIONS[name]
    if positive and not dist.positive_support:
        allowed = [n for n, d in DISTRIBUTIONS.items() if d.positive_support]
        raise PriorProblem(
            f"{name} allows negative values but this is a standard deviation; "
            f"use one of {', '.join(allowed)}"
        )
    given = {k: v for k, v in spec.items() if k != "dist"}
    unknown = sorted(set(given) - set(dist.params))
    missing = sorted(set(dist.params) - set(given))
    if unknown or missing:
        parts = [f"unknown parameter(s) {unknown}"] if unknown else []
        parts += [f"missing parameter(s) {missing}"] if missing else []
        raise PriorProblem(f"{name} takes {list(dist.params)}: {'; '.join(parts)}")
    for param, kind in dist.params.items():
        value = given[param]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PriorProblem(f"{name} parameter {param} must be a number, got {value!r}")
        if not math.isfinite(value) or (kind == "positive" and value <= 0):
            need = "a positive number" if kind == "positive" else "a finite number"
            raise PriorProblem(f"{name} parameter {param} must be {need}, got {value}")


def check_correlation_prior(spec: dict) -> None:
    """Raise `PriorProblem` unless `spec` is `{dist: LKJ, eta: <positive number>}`."""
    if spec.get("dist") != "LKJ":
        raise PriorProblem(f"a correlation prior must be LKJ, got '{spec.get('dist')}'")
    given = {k: v for k, v in spec.items() if k != "dist"}
    if set(given) != {"eta"}:
        raise PriorProblem(f"LKJ takes ['eta'], got {sorted(given)}")
    eta = given["eta"]
    if isinstance(eta, bool) or not isinstance(eta, int | float) or not eta > 0:
        raise PriorProblem(f"LKJ parameter eta must be a positive number, got {eta!r}")
    if not math.isfinite(eta):
        raise PriorProblem(f"LKJ parameter eta must be finite, got {eta}")


def format_prior(spec: dict) -> str:
    """`Normal(mu=0, sigma=10)`: a prior spec as one would read it aloud."""
    params = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.items() if k != "dist"
    )
    return f"{spec.get('dist')}({params})"


def to_pymc(name: str, spec: dict, **kwargs):
    """Create the PyMC random variable `name` from a checked prior spec (inside a model)."""
    import pymc as pm

    params = {k: v for k, v in spec.items() if k != "dist"}
    return getattr(pm, spec["dist"])(name, **params, **kwargs)
