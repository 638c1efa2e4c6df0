"""`BuiltModel`: a PyMC model plus what is needed to read and complete its posterior.

Its own module so that every builder (`build.py` for one grouping factor, `several.py` for
several) returns it without importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hbreg.models.marginal import SufficientStats

__all__ = ["BuiltModel"]


@dataclass
class BuiltModel:
    """A PyMC model plus what is needed to read and complete its posterior."""

    model: object  # pm.Model
    parameterization: str
    block_coefs: list[str]
    population_vars: list[str]
    group_vars: list[str]
    pair_vars: list[str]
    stats: SufficientStats | None = None
    shift: np.ndarray | None = None  # per-block constant taken out of y (marginal.outcome_shift)
    sampled_vars: list[str] = field(default_factory=list)
    internal_vars: list[str] = field(default_factory=list)  # dropped from the posterior
    correlated: bool = False  # block coefficients with an LKJ correlation (CORRELATION_CHOLESKY)
    correlation_vars: list[str] = field(default_factory=list)  # corr_<a>_<b>, in pair order
    several: object | None = None  # hbreg.models.several.SeveralFactors for several factors
