"""Libraries a fit never uses kept from being imported by the ones it does.

nutpie imports ArviZ for a conversion hbreg does not call, and xarray imports Dask (and
Dask's `distributed`) whenever they are installed: to ask whether an array is a Dask
array when it builds a Dataset, and which Dask scheduler is active when it writes netCDF.
hbreg installs Dask for `--executor dask`, but a fit makes no Dask array, so these
imports were 0.27 s of a 3.1 s `hbreg fit configs/radon_hier.yaml` (2-core machine,
2026-11-28; 2.8 s with Dask uninstalled).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

__all__ = ["defer_import", "xarray_without_dask"]


def defer_import(name: str) -> None:
    """Put a stand-in for module `name` in sys.modules that imports the module when used.

    `import name` then costs nothing; the first attribute looked up on the stand-in (or any
    later `import name`, once that happened) gets the real module. importlib's LazyLoader
    does not do this on Python 3.12: the import statement itself reads `__spec__` and so
    executes the module.
    """
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return

    class Deferred(types.ModuleType):
        def __getattr__(self, attribute):
            real = sys.modules.get(name)
            if real is None or real is self:
                sys.modules.pop(name, None)
                real = importlib.import_module(name)
            return getattr(real, attribute)

    sys.modules[name] = Deferred(name)


def xarray_without_dask() -> bool:
    """Tell xarray, for this process, that no Dask array and no Dask scheduler exist.

    For a process that makes no Dask arrays (the `hbreg fit` command): xarray then never
    imports Dask. Does nothing, and returns False, when Dask is already imported (nothing
    to save) or xarray's internals are not the ones this was written against (xarray
    2025-2026: its duck-array module cache, `is_dask_collection`, and the scheduler
    lookup of its netCDF writer and write locks).
    """
    if "dask" in sys.modules:
        return False
    try:
        from packaging.version import Version
        from xarray.backends import locks, writers
        from xarray.namedarray import pycompat, utils
    except ImportError:
        return False
    replaced = [
        (locks, "get_dask_scheduler", _no_scheduler),
        (writers, "get_dask_scheduler", _no_scheduler),
        (utils, "is_dask_collection", _not_dask),
    ]
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    module_class = getattr(pycompat, "DuckArrayModule", None)
    if not isinstance(cache, dict) or module_class is None:
        return False
    if not all(callable(getattr(module, name, None)) for module, name, _ in replaced):
        return False
    absent = module_class.__new__(module_class)
    absent.module, absent.version, absent.type, absent.available = None, Version("0"), (), False
    cache.setdefault("dask", absent)
    for module, name, replacement in replaced:
        setattr(module, name, replacement)
    return True


def _no_scheduler(*args, **kwargs) -> None:
    """What xarray answers without Dask: no scheduler, so it writes in this process."""
    return None


def _not_dask(value) -> bool:
    """What xarray answers without Dask: nothing is a Dask collection."""
    return False
