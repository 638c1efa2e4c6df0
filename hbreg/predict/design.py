"""New rows to the design a fit used: the same coefficients in the same order, groups matched.

Predictions read the run's resolved `config.yaml` for the roles of the columns and the
run's `idata.nc` for its group labels and group-level predictors; the user's original
data file is never read again. Each problem with the new rows is a `DataError` naming
the column (and, for values, the first 1-based row of the file) before anything is
written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hbreg.config import Config, coefficient_names
from hbreg.errors import DataError

__all__ = ["NewFactor", "NewRows", "encode_rows", "new_rows", "quoted"]


@dataclass(frozen=True)
class NewFactor:
    """One grouping factor of a several-factor formula run, matched to the new rows.

    `idx` indexes the factor's levels in the fit; a level the fit never saw gets
    `-1 - k`, k indexing `new_labels`. With `--population` it is None (no effects).
    """

    name: str
    varying: list[str]  # coefficients with an effect per level of this factor
    correlated: bool
    idx: np.ndarray | None
    new_labels: list[str]


@dataclass(frozen=True)
class NewRows:
    """The new rows encoded against a fit.

    `group_idx` indexes the fit's groups for known groups; rows in groups the fit never
    saw get `-1 - k`, k indexing `new_labels`; with no group (pooled models, or
    `population=True`) it is None. Several-factor formula runs have `factors` instead.
    """

    X: np.ndarray  # (n, p), columns in `coef_names` order
    coef_names: list[str]
    group_idx: np.ndarray | None
    new_labels: list[str]
    new_group_X: np.ndarray | None  # (len(new_labels), q) group-level predictors of new groups
    y: np.ndarray | None  # the outcome when the file has the column (NaN where blank)
    row_group_X: np.ndarray | None = None  # (n, q): group-level predictors per row, population
    trials: np.ndarray | None = None  # (n,) binomial trials of each new row
    offset: np.ndarray | None = None  # (n,) the offset column of each new row
    factors: tuple[NewFactor, ...] = ()

    @property
    def new_mask(self) -> np.ndarray | None:
        """(n,) rows in a group (or, with several factors, any level) the fit never saw."""
        if self.group_idx is not None:
            return self.group_idx < 0
        matched = [f.idx for f in self.factors if f.idx is not None]
        return np.any([idx < 0 for idx in matched], axis=0) if matched else None

    @property
    def n_new_rows(self) -> int:
        """Rows that fall in groups the fit never saw."""
        mask = self.new_mask
        return 0 if mask is None else int(mask.sum())

    @property
    def unseen(self) -> list[str]:
        """The groups the fit never saw; with several factors as `<factor> <level>`."""
        return list(self.new_labels) + [f"{f.name} {n}" for f in self.factors for n in f.new_labels]


def new_rows(
    frame: pd.DataFrame,
    config: Config,
    *,
    source: str,
    known_labels: list[str],
    population: bool,
    new_groups: str,
) -> NewRows:
    """Encode `frame` like the fit's data; refuse what the fit cannot predict.

    `new_groups` is "sample" (fresh coefficients from the population for unseen groups)
    or "error" (refuse them). `population=True` ignores the group column and predicts
    with the population means.
    """
    spec = config.data
    if population and config.model.pooling == "unpooled":
        raise DataError(
            "--population: an unpooled model has no population means; predict known groups, "
            "or fit a hierarchical model"
        )
    needed = list(spec.predictors) + [c for c in (spec.trials, spec.offset) if c is not None]
    grouped = spec.group is not None and config.model.pooling != "pooled" and not population
    if grouped:
        needed.append(spec.group)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: column(s) {missing} needed by the fit are missing; "
            f"columns are: {', '.join(map(str, frame.columns))}"
        )
    if frame.empty:
        raise DataError(f"{source}: no rows to predict")
    columns = [np.ones(len(frame))] if config.model.intercept else []
    columns += [_numeric(frame[p], p, source) for p in spec.predictors]
    return encode_rows(
        frame,
        np.column_stack(columns),
        config,
        source=source,
        known_labels=known_labels,
        population=population,
        new_groups=new_groups,
    )


def encode_rows(
    frame: pd.DataFrame,
    X: np.ndarray,
    config: Config,
    *,
    source: str,
    known_labels: list[str],
    population: bool,
    new_groups: str,
) -> NewRows:
    """The rows with their design `X` (columns in coefficient_names(config) order).

    The outcome, trials, offset and groups are read from `frame`, its columns checked.
    """
    spec = config.data
    grouped = spec.group is not None and config.model.pooling != "pooled" and not population
    extra = {
        key: _numeric(frame[column], column, source)
        for key, column in (("trials", spec.trials), ("offset", spec.offset))
        if column is not None
    }
    y = None
    if spec.outcome in frame.columns:
        y = _numeric(frame[spec.outcome], spec.outcome, source, blank_ok=True)
    if not grouped:
        row_group_X = None
        if population and config.model.pooling == "hierarchical" and spec.group_predictors:
            absent = [c for c in spec.group_predictors if c not in frame.columns]
            if absent:
                raise DataError(
                    f"{source}: population predictions of this model need the group-level "
                    f"predictor(s) {absent}, which the file lacks"
                )
            row_group_X = np.column_stack(
                [_numeric(frame[c], c, source) for c in spec.group_predictors]
            )
        return NewRows(X, coefficient_names(config), None, [], None, y, row_group_X, **extra)
    labels = frame[spec.group]
    blank = labels.isna()
    if blank.any():
        raise DataError(
            f"{source}: column '{spec.group}' is empty in row {_row(blank)}; give a group, "
            "or use --population to predict with the population means"
        )
    labels = labels.astype(str).to_numpy()
    index = {label: i for i, label in enumerate(known_labels)}
    unseen = list(dict.fromkeys(label for label in labels if label not in index))
    if unseen and config.model.pooling == "unpooled":
        raise DataError(
            f"{source}: {spec.group} {quoted(unseen)} not in the fit; an unpooled model has "
            "no population to draw new groups from (fit a hierarchical model to predict them)"
        )
    if unseen and new_groups == "error":
        raise DataError(
            f"{source}: {spec.group} {quoted(unseen)} not in the fit "
            "(--new-groups error); drop those rows or use --new-groups sample"
        )
    new_index = {label: k for k, label in enumerate(unseen)}
    group_idx = np.array(
        [index[label] if label in index else -1 - new_index[label] for label in labels],
        dtype=np.int64,
    )
    new_group_X = _new_group_predictors(frame, config, labels, unseen, source)
    return NewRows(X, coefficient_names(config), group_idx, unseen, new_group_X, y, **extra)


def _new_group_predictors(frame, config: Config, labels, unseen, source) -> np.ndarray | None:
    """One value per new group of each group-level predictor (the fit has the known ones)."""
    spec = config.data
    if not spec.group_predictors or not unseen:
        return None
    missing = [c for c in spec.group_predictors if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: rows in groups the fit never saw need the group-level predictor(s) "
            f"{missing}, which the file lacks"
        )
    values = np.empty((len(unseen), len(spec.group_predictors)))
    for q, column in enumerate(spec.group_predictors):
        numbers = _numeric(frame[column], column, source)
        for k, label in enumerate(unseen):
            found = np.unique(numbers[labels == label])
            if len(found) != 1:
                raise DataError(
                    f"{source}: group predictor '{column}' takes {len(found)} values in "
                    f"{spec.group} '{label}'; a group-level predictor takes one value per group"
                )
            values[k, q] = found[0]
    return values


def _numeric(column: pd.Series, name: str, source: str, *, blank_ok: bool = False) -> np.ndarray:
    converted = pd.to_numeric(column, errors="coerce")
    bad = converted.isna() | ~np.isfinite(converted.to_numpy(dtype=float, na_value=np.nan))
    if blank_ok:
        bad &= column.notna()
    if bad.any():
        value = column[bad].iloc[0]
        raise DataError(
            f"{source}: column '{name}' needs finite numbers; row {_row(bad)} holds {value!r}"
        )
    return converted.to_numpy(dtype=float)


def _row(mask: pd.Series) -> int:
    """The first flagged row, counted from 1 as the data rows of the file (header excluded)."""
    return int(np.flatnonzero(np.asarray(mask))[0]) + 1


def quoted(labels: list[str], limit: int = 5) -> str:
    """`'a', 'b' and 3 more`: labels for a message."""
    shown = ", ".join(f"'{label}'" for label in labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")
