"""Data in, `ModelData` out: built-in datasets, file loading and checks."""

from hbreg.data.datasets import BUILTIN_DATASETS
from hbreg.data.formula import with_formula_roles
from hbreg.data.load import GroupFactor, ModelData, load_frame, load_model_data, to_model_data

__all__ = [
    "BUILTIN_DATASETS",
    "GroupFactor",
    "ModelData",
    "load_frame",
    "load_model_data",
    "to_model_data",
    "with_formula_roles",
]
