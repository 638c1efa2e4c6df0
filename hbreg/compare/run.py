"""`compare_runs`: cross-validate the chosen runs, rank them, and write the compare directory.

Everything that can refuse the comparison (different data, no log-likelihood, a CV kind a run
cannot do, a failed PSIS) happens before the directory is opened, so a refused comparison writes
nothing. (K-fold refits run before it too: a failed refit leaves nothing behind.) The result is
written atomically to ``<root>/<stamp>_compare/``: ``compare.csv`` (full precision),
``compare.md`` (for a person), ``loo.png`` and, when unpooled or hierarchical runs share a
group variable, ``shrinkage.png`` and ``shrinkage.csv``; with K-fold, ``kfold/folds.csv`` (the
fold of every row) and ``kfold/fits.csv`` (seed, sizes, elpd, divergences and time per refit).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from hbreg.compare.loo import compare_table, cv_title, cv_warnings, grouping, psis, verdict
from hbreg.compare.plots import plot_loo, plot_shrinkage, save_figure
from hbreg.compare.render import markdown
from hbreg.compare.select import ComparisonError, load_runs
from hbreg.compare.shrinkage import Shrinkage, shrinkage_table
from hbreg.runs import RunDirectory, RunInfo

__all__ = ["ComparisonResult", "compare_runs"]

_MANIFEST_COLUMNS = (
    "run",
    "name",
    "pooling",
    "cv",
    "elpd",
    "se",
    "elpd_diff",
    "dse",
    "weight",
    "pareto_k_high",
)


@dataclass
class ComparisonResult:
    """What `render_comparison` shows and what was written."""

    path: Path
    table: pd.DataFrame  # COMPARE_COLUMNS, best first
    outcome: str
    n_obs: int
    best: str
    verdict: str
    warnings: list[str]
    notes: list[str]
    files: list[Path]
    shrinkage: Shrinkage | None = None
    k: int | None = None  # folds of K-fold, else None


def compare_runs(
    runs: Sequence[RunInfo],
    *,
    root: str | Path,
    cv: Literal["loo", "conditional", "group"] = "loo",
    kfold: int | None = None,
    by_group: bool = False,
    seed: int | None = None,
    workers: int | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    on_refit=None,
) -> ComparisonResult:
    """Rank `runs` by cross-validation and write the compare directory under `root`.

    Parameters
    ----------
    cv : {"loo", "conditional", "group"}
        PSIS kind: integrated LOO where every run allows it (else conditional for all),
        conditional LOO, or leave-one-group-out. Ignored with `kfold`.
    kfold : int, optional
        Score by K exact refits instead; by whole groups with `by_group` (or ``cv="group"``).
    seed : int, optional
        Seed of the folds and of the refits (K-fold only; drawn and recorded when not given).
    workers : int, optional
        Refits run at once (K-fold only); default: cores // chains, in-process when 1.
    executor, scheduler : str
        Where the K-fold refits run: ``local`` or ``dask`` with the scheduler's address.
    on_refit : callable, optional
        Called with each finished refit's record (label, fold, seconds, ...), for progress.

    Raises
    ------
    ComparisonError
        Runs on different observations, a run without what the chosen CV needs.
    """
    runs = list(runs)
    if len(runs) < 2:
        raise ComparisonError(f"need at least 2 runs to compare, got {len(runs)}")
    if by_group and kfold is None:
        raise ComparisonError("--by-group needs --kfold K (for PSIS over groups use --cv group)")
    if (executor != "local" or scheduler) and kfold is None:
        raise ComparisonError("--executor and --scheduler are only used with --kfold K")
    loaded = load_runs(runs)
    notes: list[str] = []
    kfold_result = None
    if kfold is not None:
        import numpy as np

        from hbreg.compare.kfold import kfold as run_kfold

        by_group = by_group or cv == "group"
        seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else seed
        kfold_result = run_kfold(
            loaded,
            k=kfold,
            by_group=by_group,
            grouping=grouping(loaded) if by_group else None,
            seed=seed,
            workers=workers,
            executor=executor,
            scheduler=scheduler,
            on_fit=on_refit,
        )
        kind, elpds = ("kfold_group" if by_group else "kfold"), kfold_result.elpds
        notes.append(
            f"{kfold} folds (seed {seed}) of "
            + ("whole groups" if by_group else "observations")
            + f", the same for every run; {len(kfold_result.fits)} refits, their seeds and "
            "results in kfold/fits.csv, the fold of every row in kfold/folds.csv"
        )
    else:
        kind, elpds, psis_notes = psis(loaded, cv)
        notes.extend(psis_notes)
    table = compare_table(loaded, elpds, kind=kind)
    warn = cv_warnings(table, loaded, elpds)
    shrinkage = None
    try:
        shrinkage = shrinkage_table(runs, trees={i.run.path: i.tree for i in loaded})
    except ComparisonError as exc:
        notes.append(f"no shrinkage plot: {exc}")
    else:
        notes.extend(shrinkage.notes)
    text = verdict(table, k=kfold)
    outcome, n_obs = loaded[0].outcome, int(table["n_obs"].iloc[0])
    paths = [str(r.path.resolve()) for r in runs]
    with RunDirectory(root, "compare", kind="compare", runs=paths) as out:
        files = _write(out, table, text, warn, notes, shrinkage, outcome, n_obs, kfold_result)
        written = [f.relative_to(out.path) for f in files]
        path = out.finish(
            command=shlex.join(sys.argv),
            outcome=outcome,
            rows=n_obs,
            cv=kind,
            folds=kfold,
            seed=seed if kfold is not None else None,
            best=table["run"].iloc[0],
            ranking=[{k: _plain(row[k]) for k in _MANIFEST_COLUMNS} for _, row in table.iterrows()],
            warnings=warn,
            files=[str(f) for f in written],
        )
    return ComparisonResult(
        path=path,
        table=table,
        outcome=outcome,
        n_obs=n_obs,
        best=table["run"].iloc[0],
        verdict=text,
        warnings=warn,
        notes=notes,
        files=[path / f for f in written],
        shrinkage=shrinkage,
        k=kfold,
    )


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _write(out, table, text, warn, notes, shrinkage, outcome, n_obs, kfold_result) -> list[Path]:
    csv = {"index": False, "float_format": "%.17g"}
    files = [out.write_text("compare.csv", table.to_csv(**csv))]
    if shrinkage is not None:
        files.append(out.write_text("shrinkage.csv", shrinkage.table.to_csv(float_format="%.17g")))
    if kfold_result is not None:
        files.append(out.write_text("kfold/folds.csv", kfold_result.folds.to_csv(**csv)))
        files.append(out.write_text("kfold/fits.csv", kfold_result.fits.to_csv(**csv)))
    k = kfold_result.k if kfold_result else None
    title = cv_title(table["cv"].iloc[0], k)
    files.append(save_figure(plot_loo(table, title=title), out.path / "loo.png"))
    if shrinkage is not None:
        files.append(save_figure(plot_shrinkage(shrinkage), out.path / "shrinkage.png"))
    names = [str(f.relative_to(out.path)) for f in files]
    md = markdown(table, text, warn, notes, outcome, n_obs, names, k=k)
    files.insert(1, out.write_text("compare.md", md))
    return files
