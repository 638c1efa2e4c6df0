"""Formula configs to arrays: the population design from `formulae`, group codes from hbreg.

formulae builds the population design (n x p: treatment coding, interactions, transforms)
and each group term's columns; the group codes are hbreg's own (`pd.factorize`, observed
levels only), because formulae's group design starts from a dense rows x groups indicator
(20k rows x 5k groups: 3.9 s and 1.8 GB; notes/formulae.md). The per-group sufficient
statistics are then one pass of bincounts, as for role-based configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hbreg.config import Config
from hbreg.config.formula import Formula
from hbreg.config.priors import PriorProblem, check_prior
from hbreg.config.schema import role_problems
from hbreg.errors import ConfigError, DataError
from hbreg.families import family_of
from hbreg.names import (
    INTERCEPT,
    RESIDUAL_SD,
    design_coefficient,
    factor_sd,
    population_mean,
)

__all__ = [
    "FactorDesign",
    "FormulaDesign",
    "apply_reference_levels",
    "formula_design",
    "parameter_roles",
    "population_names",
    "several_factor_problems",
    "with_formula_roles",
]

_NAMESPACE = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt}


@dataclass(frozen=True)
class FactorDesign:
    """One grouping factor of a formula: its columns and the coefficients varying by it."""

    name: str  # "county", or "batch:cask" for an interaction (nested `batch/cask`)
    columns: tuple[str, ...]
    varying: list[str]
    correlated: bool
    term: str  # the group term as written


@dataclass(frozen=True)
class FormulaDesign:
    """The population design of a formula and what varies by which factor."""

    X: np.ndarray
    coef_names: list[str]
    factors: list[FactorDesign]
    notes: list[str] = field(default_factory=list)
    levels: dict[str, list] = field(default_factory=dict)  # categorical column -> coded order


def apply_reference_levels(frame: pd.DataFrame, levels: dict, formula: Formula) -> pd.DataFrame:
    """Make each `data.reference_levels` column categorical with its reference level first."""
    for column, reference in levels.items():
        if column not in formula.variables:
            raise DataError(
                f"data.reference_levels: '{column}' is not a variable of the formula "
                f"({', '.join(formula.variables)})"
            )
        values = frame[column]
        present = list(pd.unique(values.dropna()))
        match = [v for v in present if str(v) == str(reference)]
        if not match:
            shown = ", ".join(map(str, sorted(present, key=str)[:20]))
            raise DataError(
                f"data.reference_levels: '{column}' has no level '{reference}'; levels: {shown}"
            )
        others = sorted((v for v in present if v != match[0]), key=str)
        frame[column] = pd.Categorical(values, categories=[match[0], *others], ordered=True)
    return frame


def formula_design(frame: pd.DataFrame, formula: Formula, *, source: str) -> FormulaDesign:
    """Evaluate the formula's population part and group term on complete rows."""
    common = _design(formula.population, frame, formula, source)
    columns = list(common.as_dataframe().columns)
    coef_names = [design_coefficient(c) for c in columns]
    repeated = sorted({c for c in coef_names if coef_names.count(c) > 1})
    if repeated:
        raise DataError(f"model.formula: coefficient name(s) {repeated} made twice; rename")
    X = np.asarray(common.design_matrix, dtype=float)
    notes = _reference_notes(common)
    factors = []
    for block in formula.blocks:
        expr = _design(block.expr, frame, formula, source)
        wanted = [design_coefficient(c) for c in expr.as_dataframe().columns]
        missing = [c for c in wanted if c not in coef_names]
        if missing:
            raise DataError(
                f"model.formula: {missing} vary in '{block.text}' but are not in the population "
                "part; hbreg gives every varying coefficient a population mean, so add them "
                f"(population coefficients: {coef_names})"
            )
        varying = [c for c in coef_names if c in wanted]
        for name in block.factors:
            factors.append(
                FactorDesign(
                    name,
                    tuple(name.split(":")),
                    varying,
                    block.correlated and len(varying) > 1,
                    block.text,
                )
            )
    return FormulaDesign(X, coef_names, _merged(factors, coef_names), notes, _levels(common))


def _merged(factors: list[FactorDesign], coef_names: list[str]) -> list[FactorDesign]:
    """One design per factor: `(1 | g) + (0 + x | g)` is lme4's `(1 + x || g)`.

    A factor's terms may share no column, and none of them may be correlated (that
    would be a block-diagonal correlation, which hbreg does not fit).
    """
    by_name: dict[str, list[FactorDesign]] = {}
    for factor in factors:
        by_name.setdefault(factor.name, []).append(factor)
    merged = []
    for name, parts in by_name.items():
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        terms = " + ".join(p.term for p in parts)
        seen: set[str] = set()
        for part in parts:
            twice = [c for c in part.varying if c in seen]
            if twice:
                raise DataError(
                    f"model.formula: {twice} vary by '{name}' twice in '{terms}'; "
                    "give each coefficient once"
                )
            seen.update(part.varying)
        correlated = [p.term for p in parts if p.correlated]
        if correlated:
            raise DataError(
                f"model.formula: unsupported terms '{terms}': '{correlated[0]}' correlates "
                f"effects of '{name}' that another term also has; hbreg fits one correlation "
                "block per factor: merge them into one term, or write them with '||'"
            )
        varying = [c for c in coef_names if c in seen]
        merged.append(FactorDesign(name, parts[0].columns, varying, False, terms))
    return merged


def _design(rhs: str, frame: pd.DataFrame, formula: Formula, source: str):
    import formulae

    try:
        return formulae.design_matrices(
            rhs, frame, na_action="error", extra_namespace=_NAMESPACE
        ).common
    except Exception as exc:  # noqa: BLE001 - formulae raises many unrelated types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{source}: model.formula term '{rhs}' cannot be evaluated: {text}"
        ) from None


def _levels(common) -> dict[str, list]:
    """Each categorical column of the population design -> its levels in coded order.

    The reference level comes first; `C(n)` of a numeric column keeps its numbers. This is
    what `hbreg predict` needs to code new rows the same way (stored in `idata.nc`).
    """
    levels: dict[str, list] = {}
    for term in common.terms.values():
        for component in getattr(term, "components", []):
            if getattr(component, "kind", None) != "categoric":
                continue
            column = component.name
            if type(component).__name__ == "Call":
                column = getattr(component.call.args[0], "name", column)
            values = [v.item() if isinstance(v, np.generic) else v for v in component.levels]
            levels.setdefault(column, values)
    return levels


def _reference_notes(common) -> list[str]:
    notes = []
    for term in common.terms.values():
        for component in getattr(term, "components", []):
            matrix = getattr(component, "contrast_matrix", None)
            if getattr(component, "kind", None) != "categoric" or matrix is None:
                continue
            coded = {str(label) for label in matrix.labels}
            dropped = [str(lv) for lv in component.levels if str(lv) not in coded]
            if len(dropped) == 1:
                notes.append(
                    f"categorical '{component.name}': reference level '{dropped[0]}' "
                    "(change it with data.reference_levels)"
                )
    return list(dict.fromkeys(notes))


def with_formula_roles(config: Config, data) -> Config:
    """The config with the roles its formula implies filled in, for the model builders.

    `dump_config` leaves them out again, so the saved config still holds the formula alone.
    With several grouping factors the roles describe the factor with the most levels
    (the one `data.group_idx` encodes); the builder reads every factor from `data.factors`.
    The checks that role-based configs get at validation (names that would clash, prior
    overrides of parameters the model does not have) run here, now that the names are known.
    """
    if config.model.formula is None:
        return config
    predictors = [c for c in data.coef_names if c != INTERCEPT]
    resolved = config.model_copy(
        update={
            "data": config.data.model_copy(
                update={"predictors": predictors, "group": data.group_dim}
            ),
            "model": config.model.model_copy(
                update={
                    "intercept": INTERCEPT in data.coef_names,
                    "pooling": "hierarchical" if data.group_dim else "pooled",
                    "varying": list(data.varying) if data.group_dim else None,
                    "correlated": data.correlated,
                }
            ),
        }
    )
    problems = several_factor_problems(config, data) if data.factors else role_problems(resolved)
    if problems:
        raise ConfigError("invalid config (model.formula):\n  " + "\n  ".join(problems))
    return resolved


def population_names(data) -> dict[str, str]:
    """Several factors: coefficient -> `mu_<coef>` if it varies by any factor, else `<coef>`."""
    varying = {c for f in data.factors for c in f.varying}
    return {c: population_mean(c) if c in varying else c for c in data.coef_names}


def parameter_roles(data, family: str = "gaussian") -> dict[str, str]:
    """Several factors: every sampled scalar parameter -> 'coefficient', 'scale' or 'family'."""
    roles = {name: "coefficient" for name in population_names(data).values()}
    for factor in data.factors:
        roles.update({factor_sd(c, factor.name): "scale" for c in factor.varying})
    if family_of(family).has_sigma:
        roles[RESIDUAL_SD] = "scale"
    roles.update({name: "family" for name in family_of(family).parameters})
    return roles


def several_factor_problems(config: Config, data) -> list[str]:
    """Prior overrides and correlation priors that name nothing in a several-factor model."""
    roles = parameter_roles(data, config.model.family)
    problems = []
    for name, spec in config.priors.overrides.items():
        if name not in roles:
            problems.append(f"priors.overrides: no parameter '{name}'; parameters: {list(roles)}")
            continue
        try:
            check_prior(spec, positive=roles[name] in ("scale", "family"))
        except PriorProblem as exc:
            problems.append(f"priors.overrides -> {name}: {exc}")
    factors = [f.name for f in data.factors]
    for factor in config.priors.group_corr_by:
        if factor not in factors:
            problems.append(
                f"priors.group_corr_by: no grouping factor '{factor}'; factors: {factors}"
            )
    return problems
