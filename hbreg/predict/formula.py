"""New rows to the design of a run fitted from `model.formula`, from the run directory alone.

The fit stored each categorical column's levels in coded order (reference first) as the
`constant_data` attribute `hbreg.names.CATEGORICAL_LEVELS`. The new rows are coded by
`formulae` exactly as the fit coded its own: a few prototype rows that hold every stored
level go in front of them (formulae codes only the levels it sees), and are cut off again.
Transforms whose value depends on the fit's own rows (`center`, `scale`, `standardize`)
cannot be redone from the new rows and are refused; `log`, `exp`, `sqrt` and `I()` are
row by row. The coefficient names must equal the run's `constant_data` coefficients.

One grouping factor gives the role-based rows (`hbreg.predict.design.encode_rows`) with
the config's roles filled in as at fit time; several give one `NewFactor` each.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd

from hbreg.config import Config
from hbreg.config.formula import Formula, parse_formula
from hbreg.data import GroupFactor, ModelData, with_formula_roles
from hbreg.data.formula import FactorDesign, formula_design
from hbreg.errors import DataError
from hbreg.names import CATEGORICAL_LEVELS, COEF_DIM, GROUP_SIZE
from hbreg.predict.design import NewFactor, NewRows, encode_rows, quoted

__all__ = ["STATEFUL_CALLS", "formula_rows"]

STATEFUL_CALLS = ("center", "scale", "standardize")


def formula_rows(
    frame: pd.DataFrame,
    config: Config,
    constant,
    posterior,
    *,
    source: str,
    population: bool,
    new_groups: str,
) -> tuple[Config, NewRows]:
    """The config with its formula's roles filled in, and the new rows encoded like the fit's.

    `constant` and `posterior` are the run's `constant_data` and `posterior` Datasets.
    """
    formula = parse_formula(config.model.formula)
    stateful = re.findall(rf"\b({'|'.join(STATEFUL_CALLS)})\s*\(", config.model.formula)
    if stateful:
        raise DataError(
            f"run fitted from model.formula '{formula.text}': {stateful[0]}() depends on the "
            "mean and sd of the fit's own rows, which the run does not store, so new rows "
            "cannot be transformed the same way; transform the column in the data file and refit"
        )
    factors = [block_factor for block in formula.blocks for block_factor in block.factors]
    factor_columns = list(dict.fromkeys(c for name in factors for c in name.split(":")))
    needed = [v for v in formula.variables if v not in (formula.outcome, *factor_columns)]
    needed += [c for c in (config.data.trials, config.data.offset) if c is not None]
    if not population:
        needed += factor_columns
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: column(s) {missing} needed by the fit's formula '{formula.text}' are "
            f"missing; columns are: {', '.join(map(str, frame.columns))}"
        )
    if frame.empty:
        raise DataError(f"{source}: no rows to predict")
    stored = constant.attrs.get(CATEGORICAL_LEVELS)
    levels = json.loads(stored) if stored is not None else {}
    for column in dict.fromkeys(c for c in needed if c not in factor_columns):
        blank = frame[column].isna().to_numpy()
        if blank.any():
            raise DataError(
                f"{source}: column '{column}' is empty in row {np.flatnonzero(blank)[0] + 1}"
            )
    design = _design(frame, formula, levels, source)
    fitted = [str(c) for c in constant[COEF_DIM].values]
    for column in design.levels.keys() - levels.keys():
        if stored is None and column not in fitted:
            raise DataError(
                f"run fitted from model.formula '{formula.text}' stores no levels of its "
                f"categorical column '{column}' (fitted by an older hbreg); refit it"
            )
        text = frame[column][pd.to_numeric(frame[column], errors="coerce").isna()]
        raise DataError(
            f"{source}: column '{column}' needs numbers (the fit read it as numeric); "
            f"row {frame.index.get_loc(text.index[0]) + 1} holds {text.iloc[0]!r}"
        )
    if design.coef_names != fitted:
        raise DataError(
            f"{source}: the formula codes the new rows as {design.coef_names}, the fit had {fitted}"
        )
    X = design.X[-len(frame) :]
    group_dim = constant[GROUP_SIZE].dims[0] if GROUP_SIZE in constant else None
    main = next((f for f in design.factors if f.name == group_dim), None)
    shape = ModelData(
        y=np.empty(0),
        X=X,
        coef_names=design.coef_names,
        varying=list(main.varying) if main else [],
        outcome=formula.outcome,
        group_dim=group_dim,
        correlated=bool(main and main.correlated),
        factors=tuple(
            GroupFactor(f.name, np.empty(0, np.int64), [], list(f.varying), f.correlated, f.term)
            for f in design.factors
        )
        if len(design.factors) > 1
        else (),
    )
    resolved = with_formula_roles(config, shape)
    keyed = frame.assign(**{f.name: _key(frame, f) for f in design.factors})
    if len(design.factors) <= 1:
        labels = [] if main is None else [str(v) for v in posterior[main.name].values]
        rows = encode_rows(
            keyed,
            X,
            resolved,
            source=source,
            known_labels=labels,
            population=population,
            new_groups=new_groups,
        )
        return resolved, rows
    rows = encode_rows(
        keyed, X, resolved, source=source, known_labels=[], population=True, new_groups=new_groups
    )
    matched = tuple(
        _new_factor(keyed, f, posterior, population, new_groups, source) for f in design.factors
    )
    return resolved, replace(rows, factors=matched)


def _design(frame: pd.DataFrame, formula: Formula, levels: dict[str, list], source: str):
    """The formula's design of the new rows, with every stored level coded as in the fit."""
    coded = frame.copy()
    for column, known in levels.items():
        if column not in coded.columns:
            continue
        coded[column] = _categorical(coded[column], column, known, source)
    count = max((len(known) for known in levels.values()), default=0)
    prototype = coded.iloc[[0] * count].copy()
    for column, known in levels.items():
        if column in prototype.columns:
            values = [known[i % len(known)] for i in range(count)]
            prototype[column] = pd.Categorical(values, categories=known, ordered=True)
    both = pd.concat([prototype, coded], ignore_index=True) if count else coded
    return formula_design(both, formula, source=source)


def _categorical(values: pd.Series, column: str, known: list, source: str) -> pd.Categorical:
    """`values` as the fit's categorical; a level the fit never saw is refused."""
    lookup = {_level_key(level): level for level in known}
    keys = values.map(_level_key)
    unseen = values[~keys.isin(lookup.keys()) & values.notna()].tolist()
    if unseen:
        shown = ", ".join(map(str, known[:20])) + (" ..." if len(known) > 20 else "")
        raise DataError(
            f"{source}: column '{column}' has level '{unseen[0]}', which the model never saw; "
            f"known levels: {shown}"
        )
    return pd.Categorical(keys.map(lookup), categories=known, ordered=True)


def _level_key(value) -> str:
    """Levels compare as numbers when they are numbers (CSV `1` is the fit's `1.0`), else text."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def _key(frame: pd.DataFrame, factor: FactorDesign) -> pd.Series:
    """A factor's label per row, joined with ':' as at fit time; missing where a part is."""
    if any(c not in frame.columns for c in factor.columns):
        return pd.Series(np.nan, index=frame.index, dtype=object)
    parts = [frame[c] for c in factor.columns]
    key = parts[0].astype(str)
    for part in parts[1:]:
        key = key + ":" + part.astype(str)
    blank = pd.concat([p.isna() for p in parts], axis=1).any(axis=1)
    return key.mask(blank)


def _new_factor(frame, factor: FactorDesign, posterior, population, new_groups, source):
    if population:
        return NewFactor(factor.name, list(factor.varying), factor.correlated, None, [])
    labels = frame[factor.name]
    if labels.isna().any():
        row = int(np.flatnonzero(labels.isna().to_numpy())[0]) + 1
        raise DataError(
            f"{source}: no {factor.name} in row {row}; give every factor's level, or use "
            "--population to predict with the population means"
        )
    labels = labels.to_numpy(dtype=str)
    index = {str(v): i for i, v in enumerate(posterior[factor.name].values)}
    unseen = list(dict.fromkeys(label for label in labels if label not in index))
    if unseen and new_groups == "error":
        raise DataError(
            f"{source}: {factor.name} {quoted(unseen)} not in the fit "
            "(--new-groups error); drop those rows or use --new-groups sample"
        )
    new_index = {label: k for k, label in enumerate(unseen)}
    idx = np.array([index.get(v, -1 - new_index.get(v, 0)) for v in labels], dtype=np.int64)
    return NewFactor(factor.name, list(factor.varying), factor.correlated, idx, unseen)
