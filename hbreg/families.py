"""Outcome families: links, own parameters with default priors, likelihoods, draws, means.

One table, `FAMILIES`, says for each family which links it takes, which parameters of its
own it has (Student-t `nu`, negative-binomial `alpha`) and their default priors, and how
a linear predictor becomes a likelihood (PyMC), a log density and draws (numpy). Config
validation, the builders, the pointwise log-likelihood, predictions and simulation all
read this table, so a new family is one entry here plus its data check in
`hbreg/data/load.py`. It sits beside `names.py` at the bottom of the package: it
imports nothing of hbreg. The numpy functions are closed forms, vectorized over
(draws, rows), so the pointwise work stays as cheap as the Gaussian one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FAMILIES",
    "LINKS",
    "Family",
    "family_of",
    "inverse_link",
    "link_of",
    "pymc_likelihood",
]

LINKS = ("identity", "logit", "probit", "log")


@dataclass(frozen=True)
class Family:
    """What hbreg needs to know about one outcome distribution."""

    name: str
    links: tuple[str, ...]  # the first is the default
    parameters: dict[str, dict] = field(default_factory=dict)  # name -> default prior
    has_sigma: bool = False  # the residual sd `sigma` (priors.sigma) is a parameter
    outcome: str = "real"  # "real" | "binary" | "count" | "successes"
    loglik: Callable = None  # (y, mean, params, trials) -> log density, numpy
    draw: Callable = None  # (mean, params, trials, rng) -> draws, numpy

    @property
    def discrete(self) -> bool:
        """Integer outcomes (binary, counts, successes)."""
        return self.outcome != "real"


def inverse_link(link: str, eta, xp=np):
    """The mean of the outcome (a probability for the binary links) from the linear predictor."""
    from scipy import special

    if link == "identity":
        return eta
    if link == "log":
        return xp.exp(eta)
    if link == "logit":
        return special.expit(eta) if xp is np else xp.sigmoid(eta)
    if link == "probit":
        return special.ndtr(eta) if xp is np else 0.5 * (1 + xp.erf(eta / np.sqrt(2)))
    raise ValueError(f"unknown link '{link}'; must be in {{{', '.join(LINKS)}}}")


def _normal_loglik(y, mean, params, trials):
    s = params["sigma"]
    return -0.5 * ((y - mean) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)


def _student_loglik(y, mean, params, trials):
    from scipy import special

    s, nu = params["sigma"], params["nu"]
    z = (y - mean) / s
    return (
        special.gammaln((nu + 1) / 2)
        - special.gammaln(nu / 2)
        - 0.5 * np.log(nu * np.pi)
        - np.log(s)
        - (nu + 1) / 2 * np.log1p(z**2 / nu)
    )


def _bernoulli_loglik(y, p, params, trials):
    p = np.clip(p, 1e-300, 1 - 1e-16)
    return np.where(y > 0.5, np.log(p), np.log1p(-p))


def _binomial_loglik(y, p, params, trials):
    from scipy import special

    p = np.clip(p, 1e-300, 1 - 1e-16)
    log_choose = (
        special.gammaln(trials + 1) - special.gammaln(y + 1) - special.gammaln(trials - y + 1)
    )
    return log_choose + special.xlogy(y, p) + special.xlog1py(trials - y, -p)


def _poisson_loglik(y, rate, params, trials):
    from scipy import special

    return special.xlogy(y, rate) - rate - special.gammaln(y + 1)


def _negbin_loglik(y, rate, params, trials):
    from scipy import special

    alpha = params["alpha"]
    return (
        special.gammaln(y + alpha)
        - special.gammaln(alpha)
        - special.gammaln(y + 1)
        + alpha * np.log(alpha / (alpha + rate))
        + special.xlogy(y, rate / (alpha + rate))
    )


_MAX_RATE = 1e15  # numpy's Poisson sampler refuses larger rates (a divergent draw's exp(eta))


def _poisson_draw(rate, params, trials, rng):
    return rng.poisson(np.minimum(rate, _MAX_RATE)).astype(float)


def _negbin_draw(rate, params, trials, rng):
    alpha = np.broadcast_to(params["alpha"], np.shape(rate))
    gamma = rng.gamma(alpha, np.minimum(rate, _MAX_RATE) / alpha)
    return rng.poisson(np.minimum(gamma, _MAX_RATE)).astype(float)


FAMILIES: dict[str, Family] = {
    "gaussian": Family(
        "gaussian",
        ("identity",),
        has_sigma=True,
        loglik=_normal_loglik,
        draw=lambda mean, p, n, rng: mean + p["sigma"] * rng.standard_normal(np.shape(mean)),
    ),
    "student_t": Family(
        "student_t",
        ("identity",),
        parameters={"nu": {"dist": "Gamma", "alpha": 2, "beta": 0.1}},
        has_sigma=True,
        loglik=_student_loglik,
        draw=lambda mean, p, n, rng: (
            mean + p["sigma"] * rng.standard_t(np.broadcast_to(p["nu"], np.shape(mean)))
        ),
    ),
    "bernoulli": Family(
        "bernoulli",
        ("logit", "probit"),
        outcome="binary",
        loglik=_bernoulli_loglik,
        draw=lambda p, params, n, rng: (rng.random(np.shape(p)) < p).astype(float),
    ),
    "binomial": Family(
        "binomial",
        ("logit", "probit"),
        outcome="successes",
        loglik=_binomial_loglik,
        draw=lambda p, params, n, rng: rng.binomial(
            np.broadcast_to(n, np.shape(p)).astype(np.int64), p
        ).astype(float),
    ),
    "poisson": Family(
        "poisson",
        ("log",),
        outcome="count",
        loglik=_poisson_loglik,
        draw=_poisson_draw,
    ),
    "negative_binomial": Family(
        "negative_binomial",
        ("log",),
        parameters={"alpha": {"dist": "HalfCauchy", "beta": 1}},
        outcome="count",
        loglik=_negbin_loglik,
        draw=_negbin_draw,
    ),
}


def link_of(family: str, link: str | None) -> str:
    """The link of `family`: `link` if the family takes it, its usual one when None.

    Raises ValueError (for the schemas to report) when the family does not take `link`.
    """
    links = FAMILIES[family].links
    if link is None:
        return links[0]
    if link not in links:
        raise ValueError(
            f"link '{link}' does not go with family '{family}'; it takes {', '.join(links)}"
        )
    return link


def family_of(name: str) -> Family:
    """The `Family` called `name` (the schema has already checked it exists)."""
    return FAMILIES[name]


def pymc_likelihood(family: str, link: str, eta, params: dict, *, name, observed, trials, weights):
    """The family's likelihood of `observed` in the current PyMC model, on linear predictor eta.

    Without likelihood weights the outcome is an observed random variable called `name`;
    with them, the log density of each row is multiplied by its weight (a `pm.Potential`).
    """
    import pymc as pm

    mean = inverse_link(link, eta, xp=pm.math)
    cls, kwargs = {
        "gaussian": (pm.Normal, {"mu": mean, "sigma": params.get("sigma")}),
        "student_t": (
            pm.StudentT,
            {"nu": params.get("nu"), "mu": mean, "sigma": params.get("sigma")},
        ),
        "bernoulli": (pm.Bernoulli, {"logit_p": eta} if link == "logit" else {"p": mean}),
        "binomial": (
            pm.Binomial,
            {"n": trials, **({"logit_p": eta} if link == "logit" else {"p": mean})},
        ),
        "poisson": (pm.Poisson, {"mu": mean}),
        "negative_binomial": (pm.NegativeBinomial, {"mu": mean, "alpha": params.get("alpha")}),
    }[family]
    if weights is None:
        return cls(name, observed=observed, **kwargs)
    return pm.Potential(f"{name}_weighted", (weights * pm.logp(cls.dist(**kwargs), observed)).sum())
