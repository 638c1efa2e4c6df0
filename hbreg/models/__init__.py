"""Model specs to PyMC models: builders, the marginal Gaussian engine, pointwise draws."""

from hbreg.models.build import (
    BuiltModel,
    build_model,
    complete_posterior,
    resolve_parameterization,
)

__all__ = ["BuiltModel", "build_model", "complete_posterior", "resolve_parameterization"]
