"""Tests for hbreg.plots: every figure kind from a small synthetic InferenceData, and the
background processes that draw a fit's figures (the same files, errors raised in the caller,
a dead worker reported, no process outliving its run)."""

from __future__ import annotations

import collections
import functools
import gc
import os
import subprocess
import sys
from pathlib import Path

import arviz_base as azb
import numpy as np
import pytest
from PIL import Image

from hbreg.plots import fit as plots
from hbreg.plots.fit import PLOT_KINDS, plot_forest, plot_pair, plot_ppc, plot_trace, save_plots
from hbreg.plots.worker import PlotWorkers

COUNTIES = ["AITKIN", "ANOKA", "BECKER", "BELTRAMI", "BENTON", "BIG STONE", "BLUE EARTH", "BROWN"]
N_CHAINS, N_DRAWS, N_OBS = 2, 100, 60
POPULATION = ["mu_intercept", "sigma_intercept", "mu_floor", "sigma_floor", "sigma"]
GROUP_VARS = ["intercept", "floor"]


def _make_idata(*, predictive: bool = True, energy: bool = True, discrete: bool = False):
    rng = np.random.default_rng(42)
    shape = (N_CHAINS, N_DRAWS)
    n_groups = len(COUNTIES)
    sigma_floor = np.exp(rng.normal(-1.2, 0.5, shape))
    posterior = {
        "mu_intercept": rng.normal(1.5, 0.05, shape),
        "sigma_intercept": np.abs(rng.normal(0.3, 0.05, shape)),
        "mu_floor": rng.normal(-0.7, 0.1, shape),
        "sigma_floor": sigma_floor,
        "sigma": np.abs(rng.normal(0.7, 0.02, shape)),
        "intercept": rng.normal(1.5, 0.3, (*shape, n_groups)),
        "floor": rng.normal(-0.7, 0.2, (*shape, n_groups)),
    }
    sample_stats = {"diverging": sigma_floor < np.quantile(sigma_floor, 0.05)}
    if energy:
        sample_stats["energy"] = rng.normal(100, 10, shape).cumsum(axis=1) * 0.01 + rng.normal(
            0, 5, shape
        )
    observed = rng.normal(1.2, 0.8, N_OBS)
    replicated = rng.normal(1.2, 0.8, (*shape, N_OBS))
    if discrete:
        observed = rng.poisson(3.0, N_OBS).astype(float)
        replicated = rng.poisson(3.0, (*shape, N_OBS))
    data = {"posterior": posterior, "sample_stats": sample_stats, "observed_data": {"y": observed}}
    if predictive:
        data["posterior_predictive"] = {"y": replicated}
    return azb.from_dict(
        data,
        coords={"county": COUNTIES, "obs_id": np.arange(N_OBS)},
        dims={"intercept": ["county"], "floor": ["county"], "y": ["obs_id"]},
    )


@pytest.fixture(scope="module")
def idata():
    return _make_idata()


def _save(idata, out_dir, kinds=PLOT_KINDS, **overrides):
    options = dict(
        kinds=kinds,
        population_vars=POPULATION,
        group_vars=GROUP_VARS,
        group_dim="county",
        pair_vars=["mu_floor", "sigma_floor", "floor[AITKIN]"],
        outcome="y",
    )
    options.update(overrides)
    return save_plots(idata, out_dir, **options)


@pytest.mark.unit
@pytest.mark.parametrize("kind", PLOT_KINDS)
def test_each_kind_writes_a_png_of_plausible_size(idata, tmp_path, kind):
    paths = _save(idata, tmp_path, kinds=[kind])
    assert paths == [tmp_path / f"{kind}.png"]
    assert paths[0].stat().st_size > 5_000
    with Image.open(paths[0]) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 400 <= width <= 2500
    assert 300 <= height <= 2500


@pytest.mark.unit
def test_all_kinds_written_in_order_and_no_pyplot_figures_left(idata, tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    paths = _save(idata, tmp_path / "plots")
    assert [p.name for p in paths] == [f"{kind}.png" for kind in PLOT_KINDS]
    assert all(p.exists() for p in paths)
    assert plt.get_fignums() == before
    assert gc.isenabled()  # the collector paused for drawing is running again


@pytest.mark.unit
def test_missing_data_is_skipped_not_an_error(tmp_path):
    bare = _make_idata(predictive=False, energy=False)
    paths = _save(bare, tmp_path, group_vars=[], pair_vars=[])
    assert sorted(p.name for p in paths) == ["posterior.png", "trace.png"]
    assert not (tmp_path / "ppc.png").exists()
    assert not (tmp_path / "forest.png").exists()


@pytest.mark.unit
def test_ppc_skipped_when_outcome_absent(idata, tmp_path):
    assert _save(idata, tmp_path, kinds=["ppc"], outcome="not_there") == []


@pytest.mark.unit
def test_unknown_kind_raises_naming_allowed_kinds(idata, tmp_path):
    with pytest.raises(ValueError, match="histogram") as excinfo:
        _save(idata, tmp_path, kinds=["posterior", "histogram"])
    assert all(kind in str(excinfo.value) for kind in PLOT_KINDS)
    assert not list(tmp_path.iterdir())


@pytest.mark.unit
def test_forest_has_one_ytick_per_group_in_label_order(idata):
    fig = plot_forest(idata, var_names=GROUP_VARS, group_dim="county")
    ax = fig.axes[0]
    assert len(fig.axes) == len(GROUP_VARS)
    assert len(ax.get_yticks()) == len(COUNTIES)
    assert [t.get_text() for t in ax.get_yticklabels()] == COUNTIES
    assert "county" in fig.get_suptitle() and "90%" in fig.get_suptitle()


@pytest.mark.unit
def test_forest_infers_group_dim(idata):
    fig = plot_forest(idata, var_names=["floor"], group_dim=None)
    assert len(fig.axes[0].get_yticks()) == len(COUNTIES)


@pytest.mark.unit
def test_pair_selects_one_group_and_marks_divergences(idata):
    fig = plot_pair(idata, var_names=["sigma_floor", "floor[ANOKA]"], group_dim="county")
    assert len(fig.axes) == 3  # lower triangle: two marginals and one scatter
    (scatter,) = [ax for ax in fig.axes if ax.get_ylabel()]
    assert scatter.get_xlabel() == "log(sigma_floor)"
    assert scatter.get_ylabel() == "floor[ANOKA]"
    blue, red = scatter.get_lines()
    expected = idata.posterior["floor"].sel(county="ANOKA").values.ravel()
    shown = np.concatenate([blue.get_ydata(), red.get_ydata()])
    np.testing.assert_allclose(np.sort(shown), np.sort(expected))
    n_div = int(idata.sample_stats["diverging"].sum())
    assert n_div > 0
    assert red.get_color() == "red" and len(red.get_xdata()) == n_div
    assert f"{n_div} divergent" in fig.get_suptitle()


@pytest.mark.unit
def test_pair_unknown_label_or_variable_raises(idata):
    with pytest.raises(ValueError, match="NOWHERE"):
        plot_pair(idata, var_names=["sigma_floor", "floor[NOWHERE]"], group_dim="county")
    with pytest.raises(ValueError, match="sigma_flor"):
        plot_pair(idata, var_names=["sigma_flor", "mu_floor"], group_dim="county")


@pytest.mark.unit
def test_trace_shows_only_first_few_groups_of_a_group_var(idata):
    fig = plot_trace(idata, var_names=["sigma", "floor"], group_dim="county")
    trace_axes = fig.axes[::2]
    labels = [ax.get_ylabel() for ax in trace_axes]
    assert labels[0] == "sigma"
    assert labels[1:] == [f"floor[{c}]" for c in COUNTIES[: len(labels) - 1]]
    assert 1 < len(labels) - 1 < len(COUNTIES)
    assert len(trace_axes[0].get_lines()) >= N_CHAINS


@pytest.mark.unit
def test_energy_legend_reports_bfmi_per_chain(idata):
    fig = plots.plot_energy(idata)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sum(t.startswith("E-BFMI chain") for t in texts) == N_CHAINS


@pytest.mark.unit
def test_ppc_titles_outcome_and_draws_fifty_replicates(idata):
    fig = plot_ppc(idata, outcome="y")
    ax = fig.axes[0]
    assert ax.get_title() == "Posterior predictive check: y"
    assert len(ax.get_lines()) == 50 + 1


@pytest.mark.unit
def test_ppc_discrete_outcome_uses_frequencies(tmp_path):
    fig = plot_ppc(_make_idata(discrete=True), outcome="y")
    assert fig.axes[0].get_ylabel() == "relative frequency"


@pytest.mark.process
def test_import_is_light():
    code = (
        "import sys, hbreg.plots; "
        "heavy = [m for m in ('matplotlib', 'pymc', 'arviz_plots', 'xarray') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    root = str(Path(plots.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.unit
def test_forest_with_many_groups_shows_an_evenly_spaced_subset():
    rng = np.random.default_rng(3)
    labels = [f"g{i}" for i in range(1000)]
    centers = rng.normal(0, 1, 1000)
    idata = azb.from_dict(
        {"posterior": {"a": centers + rng.normal(0, 0.1, (2, 50, 1000))}},
        coords={"group": labels},
        dims={"a": ["group"]},
    )
    fig = plot_forest(idata, var_names=["a"], group_dim="group")
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(ticks) == 100
    shown = [labels.index(t) for t in ticks]
    assert shown == sorted(shown)  # label order kept
    assert labels[int(np.argmin(centers))] in ticks and labels[int(np.argmax(centers))] in ticks
    assert "100 of 1000 groups" in fig._suptitle.get_text()


# ----------------------------------------------------------------------------- plot workers

OPTIONS = dict(
    population_vars=POPULATION,
    group_vars=GROUP_VARS,
    group_dim="county",
    pair_vars=["mu_floor", "sigma_floor", "floor[AITKIN]"],
    outcome="y",
)


class _KillsTheWorker:
    """Unpickled in the worker, it ends that process at once with exit code 3."""

    def __reduce__(self):
        return (os._exit, (3,))


@pytest.mark.process
def test_workers_write_exactly_the_files_save_plots_writes(tmp_path):
    idata = _make_idata()
    here = _save(idata, tmp_path / "here")
    with PlotWorkers(PLOT_KINDS) as workers:
        first = [kind for kind in PLOT_KINDS if kind != "ppc"]
        workers.draw(idata, tmp_path / "there", kinds=first, **OPTIONS)
        workers.draw(idata, tmp_path / "there", kinds=["ppc"], **OPTIONS)  # later, as a fit does
        there = workers.wait()
    assert [p.name for p in there] == [f"{k}.png" for k in [*first, "ppc"]]  # as asked for
    assert sorted(p.name for p in here) == sorted(p.name for p in there)
    for mine in here:
        assert mine.read_bytes() == (tmp_path / "there" / mine.name).read_bytes(), mine.name


@pytest.mark.process
def test_workers_draw_any_command_s_figure_as_it_is_drawn_in_process(tmp_path):
    import pandas as pd

    from hbreg.plots.common import save
    from hbreg.simulate.plots import plot_recovery

    recovery = pd.DataFrame(
        {
            "experiment": ["h", "h"],
            "pooling": ["hierarchical"] * 2,
            "level": ["population"] * 2,
            "parameter": ["mu", "sigma"],
            "truth": [1.0, 0.5],
            "mean": [1.1, 0.45],
            "lower_90": [0.8, 0.3],
            "upper_90": [1.4, 0.6],
            "inside_90": [True, True],
        }
    )
    here = save(plot_recovery(recovery, single=True), tmp_path / "here.png")
    with PlotWorkers(["recovery"]) as workers:
        workers.save(plot_recovery, recovery, single=True, path=tmp_path / "there.png")
        assert workers.wait() == [tmp_path / "there.png"]
    assert here.read_bytes() == (tmp_path / "there.png").read_bytes()


@pytest.mark.process
def test_a_drawing_error_is_raised_in_the_caller_as_save_plots_raises_it(tmp_path):
    idata = _make_idata()
    bad = {**OPTIONS, "pair_vars": ["floor[NOWHERE]"]}
    with pytest.raises(ValueError) as in_process:
        _save(idata, tmp_path / "here", kinds=["pair"], pair_vars=["floor[NOWHERE]"])
    with PlotWorkers(["pair"]) as workers, pytest.raises(ValueError) as in_worker:
        workers.draw(idata, tmp_path / "there", kinds=["pair"], **bad)
        workers.wait()
    assert str(in_worker.value) == str(in_process.value)
    assert "NOWHERE" in str(in_worker.value)


@pytest.mark.process
def test_a_worker_that_dies_is_reported_with_how_it_ended(tmp_path):
    with PlotWorkers(["trace"]) as workers, pytest.raises(RuntimeError) as failed:
        workers.draw(_KillsTheWorker(), tmp_path, kinds=["trace"], **OPTIONS)
        workers.wait()
    assert str(failed.value) == "the process drawing the plots failed: exit code 3"
    assert not list(tmp_path.iterdir())


@pytest.mark.process
def test_nothing_sent_means_nothing_written(tmp_path):
    with PlotWorkers(PLOT_KINDS) as workers:
        workers.draw(_make_idata(), tmp_path / "plots", kinds=[], **OPTIONS)
        assert workers.wait() == []
    assert not (tmp_path / "plots").exists()


@pytest.mark.process
def test_no_worker_outlives_a_run_that_failed(tmp_path):
    with pytest.raises(KeyboardInterrupt), PlotWorkers(PLOT_KINDS) as workers:
        process = workers._process
        raise KeyboardInterrupt  # the fit interrupted before the figures were sent
    assert process.poll() is not None


@pytest.mark.process
@pytest.mark.skipif(not hasattr(os, "killpg"), reason="the shares are forked on POSIX only")
def test_an_interrupted_run_stops_the_children_drawing_too(tmp_path):
    import time

    with pytest.raises(KeyboardInterrupt), PlotWorkers(PLOT_KINDS) as workers:
        # a DataTree stand-in whose first look-up keeps the child drawing it for a minute
        slow = collections.defaultdict(functools.partial(time.sleep, 60))
        workers.draw(slow, tmp_path, kinds=["trace"], **OPTIONS)
        group = workers._process.pid
        time.sleep(3)  # warmed up, the child forked and drawing
        raise KeyboardInterrupt
    for _ in range(50):  # every process of the worker's group gone (reaped by init)
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a child drawing for the worker outlived the run")


@pytest.mark.process
def test_a_share_whose_drawing_process_dies_is_reported(tmp_path):
    with PlotWorkers(PLOT_KINDS) as workers, pytest.raises(RuntimeError) as failed:
        workers.draw(_make_idata(), tmp_path, kinds=["energy"], **OPTIONS)
        # a DataTree stand-in whose first look-up ends the process drawing it
        ends_the_drawing = collections.defaultdict(functools.partial(os._exit, 5))
        workers.draw(ends_the_drawing, tmp_path, kinds=["trace"], **OPTIONS)
        workers.wait()
    assert str(failed.value) == "the process drawing the plots failed: exit code 5"
