"""`hbreg.executors`: the one place independent jobs (replicates, refits) are run."""

from __future__ import annotations

import importlib.util

import pytest

from hbreg.errors import ConfigError
from hbreg.executors import connect, local_map, one_line


def _square(x: int) -> int:
    return x * x


@pytest.mark.unit
def test_in_process_keeps_order():
    assert list(local_map(_square, [3, 1, 2], workers=1)) == [9, 1, 4]


def _writes_netcdf(x: int) -> list[str]:
    """What a replicate does with xarray (a Dataset, netCDF bytes); Dask modules imported."""
    import sys

    import xarray as xr

    xr.Dataset({"v": ("d", [float(x)])}).to_netcdf(engine="netcdf4")
    return [m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")]


@pytest.mark.process
def test_process_pool_runs_every_task():
    assert sorted(local_map(_square, list(range(5)), workers=2)) == [0, 1, 4, 9, 16]


@pytest.mark.process
@pytest.mark.skipif(importlib.util.find_spec("dask") is None, reason="Dask is not installed")
def test_pool_workers_do_not_import_dask_for_xarray():
    assert list(local_map(_writes_netcdf, [1, 2], workers=2)) == [[], []]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("executor", "scheduler", "message"),
    [
        ("slurm", None, "'slurm' is not an executor; choose one of local, dask"),
        ("local", "tcp://h:1", "--scheduler is only used with --executor dask"),
        ("dask", None, "--executor dask needs --scheduler"),
    ],
)
def test_bad_executor_choices(executor, scheduler, message):
    with pytest.raises(ConfigError, match=message):
        connect(executor, scheduler)


@pytest.mark.unit
def test_local_needs_no_client():
    assert connect("local", None) is None


@pytest.mark.unit
def test_one_line():
    assert one_line(ValueError("a\nb")) == "ValueError: a b"
    assert one_line(KeyError()) == "KeyError"
