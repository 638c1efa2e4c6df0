"""Which runs `hbreg compare` compares, and reading what it needs from their run directories.

Runs are chosen explicitly (run directories) or as the newest complete run of each experiment
under an output root. They must model the same observations: cross-validation estimates the
expected log predictive density of *those* rows, so runs are refused unless they share the
outcome, the row count and the observed values. (The manifest's ``data.fingerprint`` is not the
test: it also covers the design matrix and the group index, which differ between a pooled and a
hierarchical fit of the same rows, the very comparison this command exists for.)

Everything is read from ``idata.nc`` and ``manifest.json``; a run's config and raw data file are
never read again, so a run stays comparable after its csv has moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hbreg.errors import HbregError, OutputError
from hbreg.runs import RunInfo, list_runs, load_run

__all__ = ["ComparisonError", "LoadedRun", "load_runs", "run_labels", "select_runs"]

_GROUPS = ("posterior", "log_likelihood", "observed_data", "constant_data")


class ComparisonError(HbregError):
    """The runs cannot be compared: missing, incomplete, on different data, or without LOO."""


def select_runs(
    paths: Sequence[str | Path], *, latest: bool, names: Sequence[str]
) -> tuple[list[RunInfo], Path]:
    """Choose the runs to compare and the root the compare directory goes to.

    Parameters
    ----------
    paths : sequence of path
        Run directories; with `latest`, at most one output root (default ``outputs``).
    latest : bool
        Take the newest complete run of every experiment name under the root.
    names : sequence of str
        Keep only runs with these experiment names (each must match a run).

    Returns
    -------
    runs : list of RunInfo
        At least two complete fit runs.
    root : Path
        The output root (with `latest`) or the parent directory of the first run.

    Raises
    ------
    ComparisonError
        A missing or incomplete run (named by its path), an unknown name, or fewer than two runs.
    """
    paths = [Path(p) for p in paths]
    names = list(dict.fromkeys(names))
    if latest:
        if len(paths) > 1:
            raise ComparisonError(
                f"--latest takes at most one output root, got {len(paths)} paths: "
                f"{', '.join(map(str, paths))}; leave out --latest to compare run directories"
            )
        root = paths[0] if paths else Path("outputs")
        runs = _latest_runs(root, names)
    else:
        if not paths:
            raise ComparisonError(
                "give the run directories to compare, or --latest [ROOT] for the newest "
                "complete run of each experiment under an output root (default 'outputs')"
            )
        runs = [_explicit_run(p) for p in paths]
        _refuse_repeats(runs)
        if names:
            unmatched = [n for n in names if not any(r.name == n for r in runs)]
            if unmatched:
                raise ComparisonError(
                    f"--name {', '.join(unmatched)}: no given run has that name; their names "
                    f"are {', '.join(sorted({r.name for r in runs}))}"
                )
            runs = [r for r in runs if r.name in names]
        root = runs[0].path.parent
    if len(runs) < 2:
        found = ", ".join(f"{r.name} ({r.path})" for r in runs) or "none"
        where = f" under '{root}'" if latest else ""
        raise ComparisonError(
            f"need at least 2 runs to compare, found {len(runs)}{where}: {found}"
            + (
                ". --latest takes one run per experiment name: fit another experiment on the "
                "same data first"
                if latest
                else ""
            )
        )
    return runs, root


def _latest_runs(root: Path, names: list[str]) -> list[RunInfo]:
    if not root.is_dir():
        raise ComparisonError(f"output root '{root}' does not exist or is not a directory")
    chosen: dict[str, RunInfo] = {}
    for run in list_runs(root, kind="fit"):  # newest first
        if run.complete and not run.manifest.get("prior_only") and run.name not in chosen:
            chosen[run.name] = run  # prior-only runs have no posterior to compare
    if names:
        missing = [n for n in names if n not in chosen]
        if missing:
            present = ", ".join(sorted(chosen)) or "none"
            raise ComparisonError(
                f"--name {', '.join(missing)}: no complete run of that name under '{root}'; "
                f"experiments with a complete run there: {present}"
            )
        return [chosen[n] for n in names]
    return [chosen[n] for n in sorted(chosen)]


def _explicit_run(path: Path) -> RunInfo:
    try:
        run = load_run(path)
    except OutputError as exc:
        hint = ""
        if path.is_dir() and any((child / "manifest.json").is_file() for child in path.iterdir()):
            hint = f"; it holds runs: use --latest {path} to compare the newest of each"
        raise ComparisonError(f"cannot compare: {exc}{hint}") from None
    kind = run.manifest.get("kind", "fit")
    if kind != "fit":
        raise ComparisonError(f"'{path}' is a {kind} directory, not a fit run")
    if not run.complete:
        error = run.manifest.get("error")
        raise ComparisonError(
            f"run '{path}' is {run.status}, not complete"
            + (f" ({error})" if error else "")
            + "; only complete runs can be compared"
        )
    if run.manifest.get("prior_only"):
        raise ComparisonError(
            f"run '{path}' is a prior-only run (draws from the priors, no posterior); "
            "compare runs fitted to the data"
        )
    return run


def _refuse_repeats(runs: list[RunInfo]) -> None:
    seen: dict[Path, Path] = {}
    for run in runs:
        key = run.path.resolve()
        if key in seen:
            raise ComparisonError(f"run '{run.path}' is given twice")
        seen[key] = run.path


# ----------------------------------------------------------------------------- loading


@dataclass
class LoadedRun:
    """A run with the idata groups compare reads, loaded into memory."""

    run: RunInfo
    label: str
    tree: Any  # xarray.DataTree: posterior, log_likelihood, observed_data[, constant_data]
    outcome: str

    @property
    def pooling(self) -> str:
        """`pooled`, `unpooled` or `hierarchical`, from the manifest."""
        return self.run.manifest.get("pooling", "?")


def run_labels(runs: Sequence[RunInfo]) -> list[str]:
    """Experiment names, or directory names where two runs share a name."""
    names = [r.name for r in runs]
    return [r.name if names.count(r.name) == 1 else r.path.name for r in runs]


def load_runs(runs: Sequence[RunInfo]) -> list[LoadedRun]:
    """Load every run's idata, refusing runs on different observations before anything else.

    Raises
    ------
    ComparisonError
        Different outcomes, rows or observed values; a run without idata.nc or log_likelihood.
    """
    _check_same_rows(runs)
    loaded = [_load(run, label) for run, label in zip(runs, run_labels(runs), strict=True)]
    _check_same_observations(loaded)
    return loaded


def _describe_run(run: RunInfo) -> str:
    data = run.manifest.get("data", {})
    return f"{run.name} ('{data.get('outcome', '?')}', {data.get('rows', '?')} rows; {run.path})"


def _check_same_rows(runs: Sequence[RunInfo]) -> None:
    keys = {
        (r.manifest.get("data", {}).get("outcome"), r.manifest.get("data", {}).get("rows"))
        for r in runs
    }
    if len(keys) > 1:
        raise ComparisonError(
            "runs on different data: LOO is only comparable on the same observations, and "
            "these runs model different outcomes or rows: "
            + "; ".join(_describe_run(r) for r in runs)
            + ". Compare runs of one dataset and outcome (with --latest, choose them with --name)"
        )


def _load(run: RunInfo, label: str) -> LoadedRun:
    import xarray as xr

    path = run.path / "idata.nc"
    if not path.is_file():
        raise ComparisonError(f"run {label} ('{run.path}') has no idata.nc")
    try:
        tree = xr.open_datatree(path, engine="h5netcdf")
    except (OSError, ValueError) as exc:
        raise ComparisonError(f"run {label}: cannot read '{path}': {exc}") from None
    try:
        groups = set(tree.children)
        if "log_likelihood" not in groups:
            notes = [n for n in run.manifest.get("notes", []) if "log_likelihood" in n]
            why = f" ({notes[0]})" if notes else ""
            raise ComparisonError(
                f"run {label} ('{run.path}') has no log_likelihood group{why}, so its LOO "
                "cannot be computed; refit it with a larger output.pointwise_limit or fewer draws"
            )
        for needed in ("posterior", "observed_data"):
            if needed not in groups:
                raise ComparisonError(f"run {label} ('{run.path}'): idata.nc has no {needed} group")
        loaded = xr.DataTree.from_dict(
            {name: tree[name].to_dataset().load() for name in _GROUPS if name in groups}
        )
    finally:
        tree.close()
    outcome = run.manifest.get("data", {}).get("outcome")
    loglik_vars = list(loaded["log_likelihood"].data_vars)
    if outcome not in loglik_vars:
        if len(loglik_vars) != 1:
            raise ComparisonError(
                f"run {label}: log_likelihood has variables {loglik_vars}, none named after the "
                f"outcome '{outcome}'"
            )
        outcome = loglik_vars[0]
    if outcome not in loaded["observed_data"].data_vars:
        raise ComparisonError(f"run {label}: observed_data has no variable '{outcome}'")
    return LoadedRun(run=run, label=label, tree=loaded, outcome=outcome)


def _check_same_observations(loaded: Sequence[LoadedRun]) -> None:
    first = loaded[0]
    y0 = np.asarray(first.tree["observed_data"][first.outcome].values, dtype=float).ravel()
    for item in loaded[1:]:
        y = np.asarray(item.tree["observed_data"][item.outcome].values, dtype=float).ravel()
        if item.outcome != first.outcome or y.shape != y0.shape or not np.array_equal(y, y0):
            differ = int(np.sum(y != y0)) if y.shape == y0.shape else None
            detail = f" ('{first.outcome}' differs in {differ} of {y0.size} rows)" if differ else ""
            raise ComparisonError(
                "runs on different data: LOO is only comparable on the same observations, but "
                f"{_describe_run(first.run)} and {_describe_run(item.run)} observed different "
                f"values{detail}"
            )
