"""Simulated data: group sizes, the truth, the predictors and the outcome, from one seed.

Every replicate is fully determined by its own seed, spawned from the root seed with
`numpy.random.SeedSequence`, so its data are the same whichever executor ran it.
Under `truth: prior` (simulation-based calibration) the truth is drawn from the
experiment's own priors with PyMC's distributions (`pm.draw`), so the generator and
the fitted model cannot disagree about a parameterization; all the draws of one data
set are made by one compiled function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hbreg.config import parameter_names, prior_for, varying_names
from hbreg.families import family_of, inverse_link
from hbreg.names import RESIDUAL_SD, group_sd, population_mean
from hbreg.simulate.config import (
    TRIALS_COLUMN,
    BernoulliPredictor,
    CoefficientTruth,
    HierarchicalTruth,
    NormalPredictor,
    SimulationConfig,
    fit_config,
)

__all__ = [
    "SimulatedData",
    "draw_priors",
    "generate_data",
    "replicate_seeds",
    "stream_seeds",
]


def replicate_seeds(seed: int, replicates: int) -> list[int]:
    """One seed per replicate: the root seed itself for a single replicate, else spawned.

    A replicate is fully determined by its seed, so `--set seed=S --replicates 1`
    repeats replicate `i` of a larger run whose seed list holds `S` at `i`.
    """
    if replicates == 1:
        return [int(seed)]
    children = np.random.SeedSequence(seed).spawn(replicates)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def stream_seeds(seed: int, n_experiments: int) -> tuple[np.random.SeedSequence, list[int]]:
    """Data stream and one sampler seed per experiment, all from a replicate's seed."""
    data_ss, *fit_ss = np.random.SeedSequence(seed).spawn(1 + n_experiments)
    # fits use seed, seed + 1 and seed + 2; keep them below 2**32
    return data_ss, [int(s.generate_state(1, dtype=np.uint32)[0]) % (2**32 - 3) for s in fit_ss]


@dataclass
class SimulatedData:
    """One simulated data set and the parameters that made it."""

    frame: Any  # pandas DataFrame
    coefficients: dict[str, dict[str, float]]  # coef -> group label -> value
    sizes: dict[str, int]
    parameters: dict[str, float] = field(default_factory=dict)  # named like the posterior

    def to_dict(self) -> dict:
        """What truth.json holds for this data set."""
        return {"groups": self.sizes, "parameters": self.parameters}


def generate_data(spec: SimulationConfig, *, seed: int) -> SimulatedData:
    """Draw group sizes, the truth, the predictors and the outcome from one seed."""
    import pandas as pd

    gen = spec.generate
    rng = np.random.default_rng(stream_seeds(seed, len(spec.experiments))[0])
    labels = spec.group_labels()
    coefs = spec.coefficient_names()
    sizes = _group_sizes(gen.rows, len(labels), rng)
    values, hyper = _draw_truth(spec, labels, coefs, rng)  # values: (G, p)
    group = np.repeat(np.arange(len(labels)), sizes)
    n = len(group)
    columns = {}
    design = [np.ones(n)] if gen.intercept else []
    for p in gen.predictors:
        if isinstance(p, NormalPredictor):
            x = rng.normal(p.mu, p.sigma, n)
        elif isinstance(p, BernoulliPredictor):
            x = rng.binomial(1, p.p, n).astype(float)
        else:
            x = rng.uniform(p.low, p.high, n)
        columns[p.name] = x
        design.append(x)
    X = np.column_stack(design)
    eta = np.einsum("np,np->n", X, values[group])
    family = family_of(gen.family)
    own = {name: hyper[name] for name in (RESIDUAL_SD, *family.parameters) if name in hyper}
    trials = np.full(n, float(gen.trials))
    y = family.draw(inverse_link(gen.link, eta), own, trials, rng)
    if family.name == "binomial":
        columns[TRIALS_COLUMN] = trials
    frame = pd.DataFrame(
        {gen.group_column: np.asarray(labels, dtype=object)[group], **columns, gen.outcome: y}
    )
    coefficients = {
        c: {g: float(values[i, j]) for i, g in enumerate(labels)} for j, c in enumerate(coefs)
    }
    parameters = dict(hyper)
    for c in coefs:
        for g in labels:
            parameters[f"{c}[{g}]"] = coefficients[c][g]
    return SimulatedData(
        frame=frame,
        coefficients=coefficients,
        sizes={g: int(s) for g, s in zip(labels, sizes, strict=True)},
        parameters=parameters,
    )


def _group_sizes(rows, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(rows, int):
        return np.full(n_groups, rows)
    if isinstance(rows, tuple):
        return rng.integers(rows[0], rows[1], size=n_groups, endpoint=True)
    sizes = np.round(rows.median * np.exp(rows.sigma * rng.standard_normal(n_groups)))
    return np.clip(sizes, rows.min, rows.max or np.inf).astype(int)


def _draw_truth(spec: SimulationConfig, labels, coefs, rng) -> tuple[np.ndarray, dict]:
    """Group coefficient matrix (G, p) and the named hyperparameters of the generator."""
    truth = spec.generate.truth
    G = len(labels)
    if isinstance(truth, CoefficientTruth):
        values = np.array([truth.coefficients[g] for g in labels], dtype=float)
        return values.reshape(G, len(coefs)), _family_truth(truth)
    if isinstance(truth, HierarchicalTruth):
        mu = np.array([truth.mu[c] for c in coefs])
        sd = np.array([truth.group_sd.get(c, 0.0) for c in coefs])
        hyper = {}
        for c, m, s in zip(coefs, mu, sd, strict=True):
            hyper[population_mean(c)] = float(m)
            hyper[group_sd(c)] = float(s)
        hyper.update(_family_truth(truth))
        return mu + sd * rng.standard_normal((G, len(coefs))), hyper
    return _draw_from_prior(spec, labels, coefs, rng)


def _family_truth(truth) -> dict[str, float]:
    """The family's own parameters the truth gives (sigma, nu, alpha), named as posterior."""
    return {k: float(getattr(truth, k)) for k in ("sigma", "nu", "alpha") if getattr(truth, k)}


def _draw_from_prior(spec: SimulationConfig, labels, coefs, rng) -> tuple[np.ndarray, dict]:
    """Simulation-based calibration: the generator is the experiment's own prior model."""
    exp = spec.prior_experiment()
    config = fit_config(spec, exp, data_path="data.parquet", root="fits", seed=0, plots=False)
    G = len(labels)
    varying = varying_names(config)
    # an unpooled varying coefficient has no population value: every group draws its own
    per_group = [] if exp.pooling == "hierarchical" else [c for c in coefs if c in varying]
    names = [n for n in parameter_names(config) if n not in per_group]
    draws = draw_priors(
        [(prior_for(config, n), None) for n in names]
        + [(prior_for(config, c), G) for c in per_group],
        rng,
    )
    hyper = {n: float(d) for n, d in zip(names, draws, strict=False)}
    own = dict(zip(per_group, draws[len(names) :], strict=True))
    values = np.empty((G, len(coefs)))
    for j, c in enumerate(coefs):
        if c in own:
            values[:, j] = own[c]
        elif c in varying:
            values[:, j] = hyper[population_mean(c)] + hyper[group_sd(c)] * rng.standard_normal(G)
        else:
            values[:, j] = hyper[c]
    return values, hyper


def draw_priors(specs: list[tuple[dict, int | None]], rng: np.random.Generator) -> list:
    """One draw of each prior spec (`size` None: a scalar), from PyMC's own distributions.

    `specs` holds `({dist: Normal, mu: 0, sigma: 1}, size)` pairs; all are drawn by one
    compiled function with a seed taken from `rng`.
    """
    import pymc as pm

    variables = []
    for spec, size in specs:
        params = {k: v for k, v in spec.items() if k != "dist"}
        variables.append(getattr(pm, spec["dist"]).dist(**params, size=size))
    if not variables:
        return []
    seed = int(rng.integers(2**32))
    draws = pm.draw(variables, random_seed=seed)
    return [np.asarray(d, dtype=float) for d in draws]
