"""`hbreg compare`: run selection, refusals, LOO ranking and the shrinkage table.

Three small real radon fits (pooled, unpooled, hierarchical) and one sleepstudy fit are made
once per session; the refusal cases use copies of their run directories with one thing broken.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hbreg.compare import (
    COMPARE_COLUMNS,
    ComparisonError,
    compare_runs,
    plot_shrinkage,
    select_runs,
    shrinkage_table,
)
from hbreg.runs import load_run

pytestmark = pytest.mark.sampling
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["sampler.draws=200", "sampler.tune=200", "sampler.chains=2", "output.plots=[]"]
RADON = ("radon_pooled", "radon_unpooled", "radon_hier")


def _fit(config: Path, root: Path, extra: list[str] = ()) -> Path:
    from hbreg.config import load_config
    from hbreg.fit import fit

    cfg = load_config(config, [*SMALL, f"output.root={root}", *extra])
    return fit(cfg).path


@pytest.fixture(scope="session")
def fits(tmp_path_factory) -> dict[str, Path]:
    """The three radon runs, alone in their output root."""
    root = tmp_path_factory.mktemp("fits")
    return {name: _fit(CONFIGS / f"{name}.yaml", root) for name in RADON}


@pytest.fixture(scope="session")
def sleepstudy_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sleep")
    return _fit(CONFIGS / "sleepstudy.yaml", root, ["sampler.draws=100", "sampler.tune=100"])


@pytest.fixture(scope="session")
def compared(fits):
    """`hbreg compare --latest` over the three radon runs, through the CLI."""
    from typer.testing import CliRunner

    from hbreg.cli import app

    result = CliRunner().invoke(
        app,
        ["compare", "--latest", str(next(iter(fits.values())).parent)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = [line for line in result.stdout.splitlines() if line.startswith("compare directory:")]
    return result, Path(out[-1].split(":", 1)[1].strip())


def _copy(run: Path, root: Path, dirname: str, *, idata: bool = True, **manifest) -> Path:
    """A copy of a run directory under another name, its manifest updated."""
    target = root / dirname
    target.mkdir(parents=True)
    names = ["manifest.json", "config.yaml"] + (["idata.nc"] if idata else [])
    for name in names:
        shutil.copy(run / name, target / name)
    data = json.loads((target / "manifest.json").read_text())
    data.update(manifest)
    (target / "manifest.json").write_text(json.dumps(data))
    return target


def _compare_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.endswith("_compare"))


# ----------------------------------------------------------------------------- ranking


def test_hierarchical_ranks_above_pooled(compared, fits):
    """The default: integrated LOO for Gaussian runs, hierarchical > pooled > unpooled."""
    result, out = compared
    table = pd.read_csv(out / "compare.csv")
    assert list(table.columns) == COMPARE_COLUMNS
    assert list(table["run"]) == ["radon_hier", "radon_pooled", "radon_unpooled"]
    assert list(table["rank"]) == [1, 2, 3]
    assert (table["cv"] == "loo_integrated").all()
    assert table["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert (table["weight"] >= -1e-9).all()
    best = table.iloc[0]
    assert best["elpd_diff"] == 0 and best["dse"] == 0
    assert (table["elpd_diff"].iloc[1:] < 0).all()
    assert (table["elpd"].diff().iloc[1:] <= 0).all()
    assert (table["n_obs"] == 919).all() and (table["n_units"] == 919).all()
    # the group coefficients are integrated out: only hyperparameters count in p, and no
    # observation pulls "its" county's coefficients, so Pareto k stays low
    p = dict(zip(table["run"], table["p"], strict=True))
    assert 1 < p["radon_pooled"] < 6 and 1 < p["radon_hier"] < 12
    assert (table["pareto_k_max"] < 0.7).all() and (table["pareto_k_high"] == 0).all()
    md = (out / "compare.md").read_text()
    assert "integrated PSIS-LOO" in md and "group coefficients integrated out" in md
    assert "integrated PSIS-LOO comparison" in result.stdout


def test_conditional_loo_counts_group_coefficients(fits, tmp_path):
    runs = [load_run(fits[name]) for name in RADON]
    result = compare_runs(runs, root=tmp_path, cv="conditional")
    table = result.table
    assert (table["cv"] == "loo").all()
    # rows are listed as a person counts them, from 1, and the warning says so
    listed = [int(u) for u in "; ".join(table["pareto_k_high_units"].astype(str)).split("; ") if u]
    assert min(listed) >= 1
    assert any("counted from 1 among the rows the fit used" in w for w in result.warnings)
    p = dict(zip(table["run"], table["p"], strict=True))
    assert 1 < p["radon_pooled"] < 6 < p["radon_hier"] < p["radon_unpooled"]
    # the Pareto k count matches the listed observations; small counties give high k
    for _, row in table.iterrows():
        listed = str(row["pareto_k_high_units"]).split("; ") if row["pareto_k_high"] else []
        assert len(listed) == row["pareto_k_high"]
    assert table.set_index("run").loc["radon_unpooled", "pareto_k_high"] > 10
    assert (
        "PSIS-LOO, conditional"
        in (compare_dirs := _compare_dirs(tmp_path))[0].joinpath("compare.md").read_text()
    )
    assert len(compare_dirs) == 1


def test_leave_one_group_out(fits, tmp_path):
    runs = [load_run(fits[name]) for name in RADON]
    result = compare_runs(runs, root=tmp_path, cv="group")
    table = result.table
    assert (table["cv"] == "logo").all() and (table["n_units"] == 85).all()
    assert list(table["run"]) == ["radon_hier", "radon_pooled", "radon_unpooled"]
    # a new county under the unpooled model gets the wide fixed prior: far worse
    assert table["elpd_diff"].iloc[2] < -100
    assert table.set_index("run").loc["radon_hier", "pareto_k_high"] == 0
    assert "85 groups (919 observations)" in (result.path / "compare.md").read_text()


def _without_constant_data(run: Path, root: Path) -> Path:
    import xarray as xr

    bare = _copy(run, root, "2026-01-01_00-00-00_radon_old", idata=False, name="radon_old")
    with xr.open_datatree(run / "idata.nc", engine="h5netcdf") as tree:
        groups = {k: tree[k].to_dataset().load() for k in tree.children if k != "constant_data"}
    xr.DataTree.from_dict(groups).to_netcdf(bare / "idata.nc", engine="h5netcdf")
    return bare


def test_one_kind_of_cv_for_every_run(cli, fits, tmp_path):
    """A run that cannot integrate its coefficients out: conditional LOO for all, or refused."""
    old = _without_constant_data(fits["radon_hier"], tmp_path)
    result = compare_runs([load_run(old), load_run(fits["radon_pooled"])], root=tmp_path)
    assert (result.table["cv"] == "loo").all()
    assert any("radon_old cannot use integrated LOO" in n for n in result.notes)
    before = _compare_dirs(tmp_path)
    refused = cli("compare", old, fits["radon_pooled"], "--cv", "group")
    assert refused.exit_code == 2
    assert "radon_old" in refused.stderr and "--kfold 10 --by-group" in refused.stderr
    assert cli("compare", old, fits["radon_pooled"], "--by-group").exit_code == 2
    assert cli("compare", old, fits["radon_pooled"], "--executor", "dask").exit_code == 2
    assert _compare_dirs(tmp_path) == before


@pytest.mark.slow
def test_grouped_kfold_refits(cli, fits, tmp_path):
    out_root = tmp_path / "kfold"
    runs = [
        _copy(fits[n], out_root, f"2026-01-01_00-00-0{i}_{n}")
        for i, n in enumerate(("radon_pooled", "radon_hier"))
    ]
    result = cli("compare", *runs, "--kfold", "2", "--by-group", "--seed", "3")
    assert result.exit_code == 0, result.output
    (out,) = _compare_dirs(out_root)
    table = pd.read_csv(out / "compare.csv")
    assert (table["cv"] == "kfold_group").all() and (table["n_units"] == 85).all()
    assert table["elpd"].notna().all() and table["run"].iloc[0] == "radon_hier"
    folds = pd.read_csv(out / "kfold" / "folds.csv")
    assert len(folds) == 919 and set(folds["fold"]) == {0, 1}
    assert (folds.groupby("county")["fold"].nunique() == 1).all()  # whole counties held out
    fits_csv = pd.read_csv(out / "kfold" / "fits.csv")
    assert len(fits_csv) == 4 and set(fits_csv["seed"]) == {4, 5}
    assert (fits_csv.groupby("label")["n_held_out"].sum() == 919).all()
    assert "grouped 2-fold" in (out / "compare.md").read_text()
    assert "refit 4/4" in result.stdout
    # the same refits on a Dask cluster give the same numbers: each refit carries its seed
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        args = ["--kfold", "2", "--by-group", "--seed", "3", "--executor", "dask"]
        remote = cli("compare", *runs, *args, "--scheduler", cluster.scheduler_address)
    assert remote.exit_code == 0, remote.output
    dask_out = next(d for d in _compare_dirs(out_root) if d != out)
    columns = ["run", "elpd", "se", "elpd_diff", "dse"]
    pd.testing.assert_frame_equal(
        pd.read_csv(dask_out / "compare.csv")[columns], table[columns], check_exact=True
    )


def test_compare_directory_contents(compared, fits):
    result, out = compared
    assert out.parent == next(iter(fits.values())).parent
    for name in ("compare.csv", "compare.md", "loo.png", "shrinkage.png", "shrinkage.csv"):
        assert (out / name).stat().st_size > 0, name
    manifest = load_run(out).manifest
    assert manifest["status"] == "complete" and manifest["kind"] == "compare"
    assert sorted(manifest["runs"]) == sorted(str(p.resolve()) for p in fits.values())
    best = pd.read_csv(out / "compare.csv")["run"].iloc[0]
    md = (out / "compare.md").read_text()
    assert f"{best} (" in md and "predicts best" in md and "| rank |" in md
    # the terminal: the table with every run, the directory last
    lines = result.stdout.strip().splitlines()
    assert all(name in result.stdout for name in RADON)
    assert lines[-1] == f"compare directory: {out}"


def test_shrinkage_table_orders_85_counties_by_size(fits):
    runs = [load_run(p) for p in fits.values()]
    shrink = shrinkage_table(runs)
    table = shrink.table
    assert shrink.group_dim == "county" and shrink.coefs == ["intercept", "floor"]
    assert len(table) == 85 and table.index.is_unique
    assert table["size"].is_monotonic_increasing
    assert table["size"].sum() == 919 and table["size"].iloc[-1] == 116  # ST LOUIS
    assert {label for label, _ in shrink.series} == {"radon_unpooled", "radon_hier"}
    assert set(shrink.pooled) == {"radon_pooled"}
    mu = shrink.population["radon_hier"]["intercept"]
    # partial pooling: the hierarchical estimates of small counties sit closer to the
    # population mean, with narrower intervals, than the unpooled ones
    small = table[table["size"] <= 3]
    hier = small["intercept:radon_hier:mean"]
    unpooled = small["intercept:radon_unpooled:mean"]
    assert (hier - mu).abs().mean() < 0.6 * (unpooled - mu).abs().mean()
    width = {
        r: small[f"intercept:{r}:high"] - small[f"intercept:{r}:low"]
        for r in ("radon_hier", "radon_unpooled")
    }
    assert (width["radon_hier"] < width["radon_unpooled"]).mean() > 0.9
    assert (table["intercept:radon_hier:low"] <= table["intercept:radon_hier:mean"]).all()

    fig = plot_shrinkage(shrink)
    assert len(fig.axes) == 3  # group sizes + one panel per coefficient
    assert len(fig.axes[-1].get_xticks()) == 85


def test_no_shrinkage_without_grouped_runs(fits):
    runs = [load_run(fits["radon_pooled"])] * 2
    with pytest.raises(ComparisonError, match="no unpooled or hierarchical run"):
        shrinkage_table(runs)


# ----------------------------------------------------------------------------- selection


def test_latest_picks_newest_complete_run_per_name(fits, tmp_path):
    root = tmp_path / "outputs"
    hier, pooled = fits["radon_hier"], fits["radon_pooled"]
    _copy(hier, root, "2026-01-01_00-00-00_radon_hier", idata=False, started="2026-01-01T00:00:00")
    newest = _copy(
        hier, root, "2026-01-02_00-00-00_radon_hier", idata=False, started="2026-01-02T00:00:00"
    )
    _copy(
        hier,
        root,
        "2026-01-03_00-00-00_radon_hier.failed",
        idata=False,
        started="2026-01-03T00:00:00",
        status="failed",
        error="SamplingError: boom",
    )
    (root / "2026-01-04_00-00-00_radon_hier").mkdir()  # no manifest: never complete
    (root / ".tmp-2026-01-05_00-00-00_radon_hier-1-abc").mkdir()
    old_pooled = _copy(
        pooled, root, "2026-01-01_00-00-00_radon_pooled", idata=False, started="2026-01-01T00:00:00"
    )
    _copy(
        pooled,
        root,
        "2026-01-06_00-00-00_compare",
        idata=False,
        kind="compare",
        name="compare",
        started="2026-01-06T00:00:00",
    )

    runs, chosen_root = select_runs([root], latest=True, names=[])
    assert chosen_root == root
    assert {r.name: r.path for r in runs} == {"radon_hier": newest, "radon_pooled": old_pooled}

    runs, _ = select_runs([root], latest=True, names=["radon_pooled", "radon_hier"])
    assert [r.name for r in runs] == ["radon_pooled", "radon_hier"]
    with pytest.raises(ComparisonError, match="need at least 2 runs.*radon_hier"):
        select_runs([root], latest=True, names=["radon_hier"])
    with pytest.raises(ComparisonError, match="--name radon_nope: no complete run"):
        select_runs([root], latest=True, names=["radon_nope", "radon_hier"])


def test_name_filters_explicit_runs(fits):
    paths = list(fits.values())
    runs, root = select_runs(paths, latest=False, names=["radon_hier", "radon_unpooled"])
    assert sorted(r.name for r in runs) == ["radon_hier", "radon_unpooled"]
    assert root == paths[0].parent


def test_selection_mistakes(fits, tmp_path):
    hier = fits["radon_hier"]
    with pytest.raises(ComparisonError, match="give the run directories"):
        select_runs([], latest=False, names=[])
    with pytest.raises(ComparisonError, match="need at least 2 runs"):
        select_runs([hier], latest=False, names=[])
    with pytest.raises(ComparisonError, match="given twice"):
        select_runs([hier, hier], latest=False, names=[])
    with pytest.raises(ComparisonError, match="at most one output root"):
        select_runs([hier, hier], latest=True, names=[])
    with pytest.raises(ComparisonError, match="does not exist"):
        select_runs([tmp_path / "nowhere"], latest=True, names=[])
    with pytest.raises(ComparisonError, match="use --latest"):
        select_runs([hier.parent, hier], latest=False, names=[])


# ----------------------------------------------------------------------------- refusals (CLI)


def test_missing_run_directory_is_refused(cli, fits, tmp_path):
    missing = tmp_path / "2026-01-01_00-00-00_radon_gone"
    result = cli("compare", missing, fits["radon_hier"])
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize("broken", ["failed", "no manifest"])
def test_incomplete_run_is_refused(cli, fits, tmp_path, broken):
    if broken == "failed":
        run = _copy(
            fits["radon_hier"],
            tmp_path,
            "2026-01-01_00-00-00_radon_hier.failed",
            idata=False,
            status="failed",
            error="SamplingError: boom",
        )
    else:
        run = tmp_path / "2026-01-01_00-00-00_radon_hier"
        run.mkdir()
    before = _compare_dirs(fits["radon_pooled"].parent)
    result = cli("compare", fits["radon_pooled"], run)
    assert result.exit_code == 2
    assert str(run) in result.stderr
    assert ("is failed, not complete" if broken == "failed" else "no readable manifest") in (
        result.stderr
    )
    assert _compare_dirs(fits["radon_pooled"].parent) == before


def test_runs_on_different_data_are_refused(cli, fits, sleepstudy_run):
    before = _compare_dirs(fits["radon_hier"].parent)
    result = cli("compare", fits["radon_hier"], sleepstudy_run)
    assert result.exit_code == 2
    message = result.stderr
    assert "LOO is only comparable on the same observations" in message
    for text in ("radon_hier", "sleepstudy", "'log_radon', 919 rows", "'Reaction', 180 rows"):
        assert text in message
    assert _compare_dirs(fits["radon_hier"].parent) == before


def test_same_rows_with_other_values_are_refused(fits, tmp_path):
    import xarray as xr

    pooled = fits["radon_pooled"]
    other = _copy(
        pooled, tmp_path, "2026-01-01_00-00-00_radon_shifted", idata=False, name="radon_shifted"
    )
    with xr.open_datatree(pooled / "idata.nc", engine="h5netcdf") as tree:
        tree = tree.load()
    tree["observed_data"]["log_radon"] = tree["observed_data"]["log_radon"] + 1.0
    tree.to_netcdf(other / "idata.nc", engine="h5netcdf")
    with pytest.raises(ComparisonError, match="observed different values.*919 of 919"):
        compare_runs([load_run(pooled), load_run(other)], root=tmp_path)
    assert not _compare_dirs(tmp_path)


def test_run_without_log_likelihood_is_refused(cli, fits, tmp_path):
    import xarray as xr

    hier = fits["radon_hier"]
    bare = _copy(hier, tmp_path, "2026-01-01_00-00-00_radon_bare", idata=False, name="radon_bare")
    with xr.open_datatree(hier / "idata.nc", engine="h5netcdf") as tree:
        groups = {k: tree[k].to_dataset().load() for k in tree.children if k != "log_likelihood"}
    xr.DataTree.from_dict(groups).to_netcdf(bare / "idata.nc", engine="h5netcdf")
    result = cli("compare", bare, fits["radon_pooled"])
    assert result.exit_code == 2
    assert "radon_bare" in result.stderr and "no log_likelihood group" in result.stderr
    assert not _compare_dirs(tmp_path)


# ----------------------------------------------------------------------------- run directory only


def test_fit_stores_constant_data(fits):
    import numpy as np
    import xarray as xr

    from hbreg.names import COEF_DIM, DESIGN, GROUP_INDEX, GROUP_SIZE, VARYING

    with xr.open_datatree(fits["radon_hier"] / "idata.nc", engine="h5netcdf") as tree:
        const = tree["constant_data"].to_dataset().load()
    assert list(const[COEF_DIM].values) == ["intercept", "floor"]
    assert const[DESIGN].shape == (919, 2)
    assert (const[DESIGN].sel({COEF_DIM: "intercept"}) == 1).all()
    assert set(np.unique(const[DESIGN].sel({COEF_DIM: "floor"}))) == {0.0, 1.0}
    assert list(const[VARYING].values) == [True, True]
    sizes = const[GROUP_SIZE]
    assert sizes.dims == ("county",) and sizes.sizes["county"] == 85
    assert int(sizes.sum()) == 919 and int(sizes.sel(county="ST LOUIS")) == 116
    idx = const[GROUP_INDEX].values
    assert np.array_equal(np.bincount(idx, minlength=85), sizes.values)
    with xr.open_datatree(fits["radon_pooled"] / "idata.nc", engine="h5netcdf") as tree:
        pooled = tree["constant_data"].to_dataset()
        assert GROUP_INDEX not in pooled and not pooled[VARYING].values.any()


@pytest.mark.slow
def test_compare_after_the_data_file_is_deleted(cli, tmp_path):
    """compare reads only run directories: the csv the runs were fitted on can go."""
    from hbreg.data import BUILTIN_DATASETS

    csv = tmp_path / "radon.csv"
    BUILTIN_DATASETS["radon"].load().to_csv(csv, index=False)
    root = tmp_path / "outputs"
    small = ["sampler.draws=100", "sampler.tune=100", "sampler.chains=2", "output.plots=[]"]
    for name in ("radon_pooled", "radon_hier"):
        sets = [f"data.path={csv}", "data.dataset=null", f"output.root={root}", *small]
        result = cli("fit", CONFIGS / f"{name}.yaml", *[a for s in sets for a in ("--set", s)])
        assert result.exit_code == 0, result.output
    csv.unlink()
    result = cli("compare", "--latest", root)
    assert result.exit_code == 0, result.output
    (out,) = _compare_dirs(root)
    shrink = pd.read_csv(out / "shrinkage.csv")
    assert len(shrink) == 85 and shrink["size"].sum() == 919
    assert (out / "shrinkage.png").stat().st_size > 0
    assert "no shrinkage plot" not in (out / "compare.md").read_text()
