"""nutpie models compiled once per model structure, cached on disk across processes.

`nutpie.compile_pymc_model` wraps PyTensor's logp/gradient and expansion functions in two
numba C callbacks. PyTensor caches its own numba code on disk, but nutpie's callbacks close
over run-time objects, so numba compiles them again in every process: 7-9 s of a radon fit
that samples in under one. Loaded from this cache they take 0.2-0.3 s, and the manifest's
`compile` of `hbreg fit configs/radon_hier.yaml` drops from 8.8-13 s to 2.2-2.8 s (the rest
is PyTensor building its functions and loading its own numba cache); measured on the
shared 2-core development machine, 2026-11-28, three processes in a row.

Here the callbacks are generated as source text that names only PyTensor's function, so
numba can cache them, under a key made of PyTensor's own cache keys for the two functions
(which hash the graph: the model structure and the data constants in it) and the versions
of every library that produced the code. The compiled object is the one nutpie builds,
so sampling, seeds and draws are exactly those of `nutpie.compile_pymc_model` (a test
compares them draw for draw).

The cache lives in the platform's cache directory (``$XDG_CACHE_HOME/hbreg`` or
``~/.cache/hbreg`` on Linux, ``~/Library/Caches/hbreg`` on macOS, ``%LOCALAPPDATA%/hbreg``
on Windows), or where ``HBREG_CACHE_DIR`` points; never in a run directory or the source
tree. It is safe with concurrent processes: numba writes every file under a temporary name
and renames it into place, and a lock file per entry makes a second process wait for the
first compile and then load it instead of compiling it again. An entry is loaded only when
its files have the checksums recorded after it was compiled and checked; one that does not,
cannot be loaded, or whose functions disagree with PyTensor's at the initial point (a stale
or corrupt file) is deleted and rebuilt.

Data given as shared variables stay inputs of the callbacks, read from nutpie's user-data
record, so one entry serves every data set of a model structure and `with_data` works as
in nutpie.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from weakref import WeakKeyDictionary

import numpy as np

__all__ = ["cache_dir", "compile_nutpie"]

_WRAPPER_VERSION = "2"  # bump when the generated source below changes
_LIBRARIES = ("nutpie", "numba", "llvmlite", "pytensor", "pymc", "numpy")
_KEYS: WeakKeyDictionary = WeakKeyDictionary()  # generated function -> (directory, key)
_LOCATOR_REGISTERED = False


def cache_dir() -> Path:
    """Where hbreg keeps compiled models: ``HBREG_CACHE_DIR``, else the platform's cache dir."""
    override = os.environ.get("HBREG_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hbreg"


_REUSABLE: list[tuple[dict, object]] = []  # (structure, compiled model) of this process
_REUSABLE_MAX = 8


def compile_nutpie(model):
    """`nutpie.compile_pymc_model(model)` with its numba callbacks cached on disk.

    Call with ``numba__fastmath`` set as wanted (PyTensor's keys include the flag).
    Shared variables (data given as inputs) stay inputs: `with_data` swaps them as in nutpie.
    A model with the structure of one compiled earlier in this process (the same graph,
    constants, names, coords and initial values; only the shared data and initial values
    given as shared variables may differ) reuses that compiled model with its data swapped
    and its start values set, skipping PyTensor's function building too: the draws are
    those of a fresh compile.
    """
    structure = _structure(model)
    for seen, compiled in _REUSABLE if structure else ():
        if _same_structure(seen, structure):
            inputs = {var.name for var in compiled.shared_var_keys}
            data = {k: v for k, v in structure["data"].items() if k in inputs}
            return _starting_at(compiled.with_data(**data), seen["starts"], structure["starts"])
    compiled = _compile(model)
    if structure and getattr(compiled, "shared_var_keys", None) is not None:
        _REUSABLE.insert(0, (structure, compiled))
        del _REUSABLE[_REUSABLE_MAX:]
        return _starting_at(compiled, structure["starts"], structure["starts"])
    return compiled


def _starting_at(compiled, inputs: dict, starts: dict):
    """`compiled` whose initial point first sets its start `inputs` to the `starts` values.

    A reused model's initial point reads the start values (shared variables) of the model
    it was compiled for; each model that shares it sets its own before every call.
    """
    if not inputs:
        return compiled
    first = compiled.initial_point_func
    values = [(inputs[name], np.array(var.get_value())) for name, var in starts.items()]

    def initial_point(seed):
        for var, value in values:
            var.set_value(value)
        return first(seed)

    return dataclasses.replace(compiled, initial_point_func=initial_point)


def _structure(model) -> dict | None:
    """What decides a model's compiled code, as PyTensor graphs and plain values.

    None when its data inputs are not told apart by name (then nothing is reused).
    """
    import pytensor
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import ancestors
    from pytensor.tensor import TensorType

    outputs = [model.logp(), *model.deterministics]
    shared = [v for v in ancestors(outputs) if isinstance(v, SharedVariable)]
    data = [v for v in shared if isinstance(v.type, TensorType)]
    names = [v.name for v in data]
    if None in names or len(set(names)) != len(names):
        return None
    initial = model.rvs_to_initial_values
    return {
        "outputs": outputs,
        "inputs": [model.rvs_to_values[rv] for rv in model.free_RVs] + shared,
        "data": {v.name: v.get_value() for v in data},
        # start values given as shared variables (the intercept at the outcome's mean)
        "starts": {rv.name: v for rv, v in initial.items() if isinstance(v, SharedVariable)},
        "plain": (
            [rv.name for rv in model.free_RVs],
            [v.name for v in model.deterministics],
            {k: tuple(v) if v is not None else None for k, v in model.coords.items()},
            dict(model.named_vars_to_dims),
            {
                rv.name: f"shared {v.type}" if isinstance(v, SharedVariable) else repr(v)
                for rv, v in initial.items()
            },
            [(v.name, str(v.type)) for v in shared],
            [np.ndim(v.get_value()) for v in data],
            pytensor.config.numba__fastmath,
        ),
    }


def _same_structure(a: dict, b: dict) -> bool:
    from pytensor.graph.basic import equal_computations

    if a["plain"] != b["plain"]:
        return False
    return equal_computations(a["outputs"], b["outputs"], in_xs=a["inputs"], in_ys=b["inputs"])


def _compile(model):
    import nutpie

    try:
        from nutpie.compile_pymc import (
            CompiledPyMCModel,
            _make_functions,
            _prepare_dims_and_coords,
            _wrap_with_lock,
            make_user_data,
        )
        from pymc.initial_point import make_initial_point_fn
        from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS
    except ImportError:  # another nutpie or PyTensor layout: compile the ordinary way
        return nutpie.compile_pymc_model(model)

    # The same steps, arguments and defaults as nutpie.compile_pymc_model (numba backend).
    initial_point = _wrap_with_lock(
        make_initial_point_fn(
            model=model,
            default_strategy="support_point",
            jitter_rvs=set(model.free_RVs),
            return_transformed=True,
        )
    )
    n_dim, n_expanded, logp_pt, expand_pt, initial_point_fn, shape_info, renamed = _make_functions(
        model,
        mode="NUMBA",
        compute_grad=True,
        join_expanded=True,
        pymc_initial_point_fn=initial_point,
    )
    inner_keys = [CACHED_SRC_FUNCTIONS.get(f.vm.jit_fn.py_func) for f in (logp_pt, expand_pt)]
    shared = list(dict.fromkeys([*logp_pt.get_shared(), *expand_pt.get_shared()]))
    shared_var_keys = {var: f"s{i}" for i, var in enumerate(shared)}
    shared_data = {}
    for var, name in shared_var_keys.items():
        shared_data[name] = np.array(var.get_value(), order="C", copy=True)
        shared_data[name].flags.writeable = False
    user_data = make_user_data(shared_var_keys, shared_data)
    layout = _layout(user_data.dtype, shared_var_keys, shared_data)
    if None in inner_keys or layout is None:
        return nutpie.compile_pymc_model(model)
    args = {
        "logp": [shared_var_keys[v] for v in logp_pt.get_shared()],
        "expand": [shared_var_keys[v] for v in expand_pt.get_shared()],
    }
    key = _entry_key(inner_keys, n_dim, n_expanded, layout, args)
    try:
        functions = _Functions(logp_pt, expand_pt, n_dim, n_expanded, layout, args, user_data)
        logp_c, expand_c = _cached_callbacks(functions, initial_point_fn(0), key)
    except Exception:  # noqa: BLE001 - e.g. a read-only cache directory: compile uncached
        return nutpie.compile_pymc_model(model)
    dims, coords = _prepare_dims_and_coords(model, shape_info, renamed)
    return CompiledPyMCModel(
        _n_dim=n_dim,
        dims=dims,
        _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp_c,
        compiled_expand_func=expand_c,
        initial_point_func=initial_point_fn,
        shared_data=shared_data,
        shared_var_keys=shared_var_keys,
        user_data=user_data,
        n_expanded=n_expanded,
        shape_info=shape_info,
        logp_func=logp_pt,
        expand_func=expand_pt,
        reparameterized_names=renamed,
    )


@dataclass
class _Functions:
    """PyTensor's two functions and how the callbacks find the shared inputs."""

    logp_pt: object
    expand_pt: object
    n_dim: int
    n_expanded: int
    layout: dict  # key -> (ndim, dtype name, data word, size word, first shape word)
    args: dict  # "logp"/"expand" -> keys of the shared inputs, in PyTensor's order
    user_data: np.ndarray  # nutpie's record of pointers, sizes and shapes


def _layout(dtype, shared_var_keys, shared_data) -> dict | None:
    """Where nutpie's user-data record keeps each shared input, in 8-byte words.

    None when the record is not made of 8-byte words or an input is a scalar (then nutpie
    compiles the model itself).
    """
    try:
        record, base = dtype.fields["shared"][:2]
        layout = {}
        for name in shared_var_keys.values():
            words = []
            for part in ("data", "size", "shape"):
                sub, offset = record.fields[part][:2]
                field, inner = sub.fields[name][:2]
                if field.base.itemsize != 8:
                    return None
                words.append((base + offset + inner) // 8)
            value = shared_data[name]
            if value.ndim == 0:
                return None
            layout[name] = (value.ndim, value.dtype.name, *words)
    except (KeyError, TypeError):
        return None
    return layout if dtype.itemsize % 8 == 0 else None


def _cached_callbacks(functions: _Functions, x0, key: str):
    """Load the entry's callbacks, or compile and store them; rebuild an entry that fails."""
    directory = cache_dir() / "nutpie" / key
    with _entry_lock(directory):
        if not _intact(directory):  # half-written, altered or from an older layout
            _clear(directory)
        try:
            made = _callbacks(functions, directory, key)
            _check(*made, functions, x0)
        except Exception:  # noqa: BLE001 - unreadable or wrong entry: rebuild it once
            _clear(directory)
            made = _callbacks(functions, directory, key)
            _check(*made, functions, x0)
        _seal(directory)
    return made


_SEAL = "sealed.json"


def _entry_files(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name not in (".lock", _SEAL) and ".tmp." not in path.name
    }


def _intact(directory: Path) -> bool:
    """Every file of the entry has the checksum recorded when it was written and checked.

    numba's own loader notices a truncated or garbled file only when unpickling fails; a
    file that unpickles but holds other object code would be called and could crash.
    """
    import json

    try:
        recorded = json.loads((directory / _SEAL).read_text())
    except (OSError, ValueError):
        return False
    return recorded == _entry_files(directory)


def _seal(directory: Path) -> None:
    """Record the checksums of a checked entry (written aside, then renamed into place)."""
    import json

    temporary = directory / f"{_SEAL}.tmp.{os.getpid()}"
    temporary.write_text(json.dumps(_entry_files(directory), indent=1))
    os.replace(temporary, directory / _SEAL)


def _entry_key(inner_keys: list[str], n_dim: int, n_expanded: int, layout, args) -> str:
    versions = [f"{lib}={_version(lib)}" for lib in _LIBRARIES]
    parts = [_WRAPPER_VERSION, sys.version, *versions, *inner_keys, str(n_dim), str(n_expanded)]
    parts += [repr(sorted(layout.items())), repr(sorted(args.items()))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _version(lib: str) -> str:
    try:
        return version(lib)
    except Exception:  # noqa: BLE001
        return "?"


# The two C callbacks nutpie calls, as in nutpie.compile_pymc (_make_c_logp_func and
# _make_c_expand_func). `inner` is PyTensor's function; the shared inputs are read from
# nutpie's user-data record ({unpack}), so new data needs no new code.
_LOGP_SOURCE = """
def hbreg_nutpie_logp(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    try:
{unpack}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_dim},))
        logp = numba.carray(logp_, ())
        logp_val, grad = inner(x{args})
        logp[()] = logp_val
        out[...] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(logp_val):
            return 4
    except Exception:
        return 1
    return 0
"""
_EXPAND_SOURCE = """
def hbreg_nutpie_expand(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    try:
{unpack}
        x = numba.carray(x_, ({n_dim},))
        out = numba.carray(out_, ({n_expanded},))
        (values,) = inner(x{args})
        out[...] = values
    except Exception:
        return -2
    return 0
"""


def _unpack(layout: dict, names: list[str], words: int) -> str:
    lines = [f"        record = numba.carray(user_data_, ({words},), np.uint64)"] if names else []
    for name in names:
        ndim, dtype, data, size, shape = layout[name]
        dims = ", ".join(f"int(record[{shape + i}])" for i in range(ndim))
        lines.append(
            f"        {name} = numba.carray(as_pointer(record[{data}]), "
            f"(int(record[{size}]),), np.{dtype}).reshape(({dims},))"
        )
    return "\n".join(lines) or "        pass"


def _callbacks(functions: _Functions, directory: Path, key: str):
    import numba
    from nutpie.compile_pymc import address_as_void_pointer

    _register_locator()
    double_ptr = numba.types.CPointer(numba.types.double)
    logp_sig = numba.types.int64(
        numba.types.uint64, double_ptr, double_ptr, double_ptr, numba.types.voidptr
    )
    expand_sig = numba.types.int64(
        numba.types.uint64, numba.types.uint64, double_ptr, double_ptr, numba.types.voidptr
    )
    words = functions.user_data.dtype.itemsize // 8
    made = []
    for source, name, function, sig, kind in (
        (_LOGP_SOURCE, "hbreg_nutpie_logp", functions.logp_pt, logp_sig, "logp"),
        (_EXPAND_SOURCE, "hbreg_nutpie_expand", functions.expand_pt, expand_sig, "expand"),
    ):
        names = functions.args[kind]
        text = source.format(
            n_dim=functions.n_dim,
            n_expanded=functions.n_expanded,
            unpack=_unpack(functions.layout, names, words),
            args="".join(f", {n}" for n in names),
        )
        py_func = _source_function(text, name, function.vm.jit_fn, address_as_void_pointer)
        _KEYS[py_func] = (directory, key)
        made.append(numba.cfunc(sig, cache=True)(py_func))
    return made


def _source_function(source: str, name: str, inner, as_pointer):
    import numba

    # numba rebuilds a cached function's globals from the module named here.
    namespace = {
        "__name__": __name__,
        "numba": numba,
        "np": np,
        "inner": inner,
        "as_pointer": as_pointer,
    }
    exec(compile(source, f"<{name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


def _check(logp_c, expand_c, functions: _Functions, x) -> None:
    """The callbacks must give what PyTensor's functions give at `x`, else the entry is bad."""
    import ctypes

    x = np.ascontiguousarray(x, dtype=np.float64)
    grad = np.empty_like(x)
    logp = np.empty(())
    expanded = np.empty(functions.n_expanded)
    user_data = ctypes.c_void_p(functions.user_data.ctypes.data)

    def ptr(a):
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_double))

    logp_status = logp_c.ctypes(len(x), ptr(x), ptr(grad), ptr(logp), user_data)
    expand_status = expand_c.ctypes(len(x), functions.n_expanded, ptr(x), ptr(expanded), user_data)
    want_logp, want_grad = functions.logp_pt(x)
    (want_expanded,) = functions.expand_pt(x)
    ok = (
        logp_status in (0, 3, 4)
        and expand_status == 0
        and np.allclose(logp, want_logp, rtol=1e-9, atol=0, equal_nan=True)
        and np.allclose(grad, want_grad, rtol=1e-9, atol=1e-12, equal_nan=True)
        and np.allclose(expanded, want_expanded, rtol=1e-9, atol=1e-12, equal_nan=True)
    )
    if not ok:
        raise RuntimeError("cached nutpie callbacks disagree with PyTensor's functions")


def _clear(directory: Path) -> None:
    """Delete an entry's files but not its lock file, which the caller holds."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.name == ".lock":
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _entry_lock(directory: Path) -> Iterator[None]:
    """One process at a time compiles or checks an entry; others wait, then load it."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: numba's atomic renames still keep every file whole
        yield
        return
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _register_locator() -> None:
    """Send numba's cache of the generated callbacks to their entry directory."""
    global _LOCATOR_REGISTERED
    if _LOCATOR_REGISTERED:
        return
    from numba.core.caching import CacheImpl, _CacheLocator

    class _EntryLocator(_CacheLocator):
        def __init__(self, py_func, py_file):
            self._directory, self._key = _KEYS[py_func]

        def ensure_cache_path(self):
            self._directory.mkdir(parents=True, exist_ok=True)

        def get_cache_path(self):
            return str(self._directory)

        def get_source_stamp(self):
            return self._key  # the versions are in the key

        def get_disambiguator(self):
            return self._key[:16]

        @classmethod
        def from_function(cls, py_func, py_file):
            return cls(py_func, py_file) if py_func in _KEYS else None

    CacheImpl._locator_classes.insert(0, _EntryLocator)
    _LOCATOR_REGISTERED = True
