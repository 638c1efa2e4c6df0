"""The on-disk cache of compiled nutpie models: where it lives, that it gives nutpie's own
draws, that a corrupt entry is rebuilt, and that processes starting at once share it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hbreg.compile_cache import cache_dir, compile_nutpie

REPO = Path(__file__).resolve().parent.parent

# A small model with a transform (HalfNormal -> log) and a deterministic, like hbreg's.
MODEL = textwrap.dedent(
    """
    import numpy as np
    import pymc as pm

    def tiny_model(shift=0.0, prior_sd=5.0):
        import pytensor

        # the data as a shared input (as hbreg's marginal model), the prior as a constant
        y = pytensor.shared(np.array([0.3, -1.2, 0.8, 2.1, 0.0, 1.4]) + shift, name="y_data")
        with pm.Model() as model:
            # a data-dependent start, an input like hbreg's intercept start
            start = pytensor.shared(np.float64(shift / 2), name="mu_start")
            mu = pm.Normal("mu", 0, prior_sd, initval=start)
            z = pm.Normal("z_signed", 0, 2)
            pm.Deterministic("scale", abs(z) + 0.5)
            pm.Potential("loglik", pm.logp(pm.Normal.dist(mu, abs(z) + 0.5), y).sum())
        return model
    """
)


@pytest.fixture(autouse=True)
def _no_reuse_within_the_process():
    """Each compile below goes to the disk cache unless a test asks for in-process reuse."""
    from hbreg import compile_cache

    compile_cache._REUSABLE.clear()
    yield
    compile_cache._REUSABLE.clear()


def _compile_fresh(model):
    from hbreg import compile_cache

    compile_cache._REUSABLE.clear()
    return _compile(model)


def _tiny_model(shift=0.0, prior_sd=5.0):
    namespace: dict = {}
    exec(MODEL, namespace)
    return namespace["tiny_model"](shift, prior_sd)


def _draws(compiled, seed=3):
    import nutpie

    trace = nutpie.sample(
        compiled, draws=60, tune=60, chains=2, cores=1, seed=seed, progress_bar=False
    )
    return {k: trace.posterior[k].values for k in ("mu", "scale")}


def _compile(model):
    import pytensor

    with pytensor.config.change_flags(numba__fastmath=False):
        return compile_nutpie(model)


def _cache_files(root: Path) -> list[Path]:
    files = (root / "nutpie").rglob("*")
    return sorted(p for p in files if p.is_file() and p.suffix in (".nbi", ".nbc"))


@pytest.mark.unit
def test_cache_dir_follows_the_override_then_the_platform(monkeypatch, tmp_path):
    monkeypatch.setenv("HBREG_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("HBREG_CACHE_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert cache_dir() == tmp_path / "xdg" / "hbreg"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert cache_dir() == Path.home() / ".cache" / "hbreg"
    assert not cache_dir().resolve().is_relative_to(REPO)


@pytest.mark.sampling
@pytest.mark.slow
def test_cached_compile_gives_nutpie_s_own_draws_and_reloads(monkeypatch, tmp_path):
    import nutpie
    import pytensor

    monkeypatch.setenv("HBREG_CACHE_DIR", str(tmp_path / "cache"))
    cached = _compile(_tiny_model())
    assert len(_cache_files(tmp_path / "cache")) == 4  # index + data of two callbacks
    with pytensor.config.change_flags(numba__fastmath=False):
        plain = nutpie.compile_pymc_model(_tiny_model())
    again = _compile_fresh(_tiny_model())  # loaded from disk this time
    assert again.compiled_logp_func._cache_hits and again.compiled_expand_func._cache_hits
    want = _draws(plain)
    for got in (_draws(cached), _draws(again)):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


@pytest.mark.unit
@pytest.mark.slow
def test_one_entry_serves_every_data_set_of_a_structure(monkeypatch, tmp_path):
    import nutpie
    import pytensor

    monkeypatch.setenv("HBREG_CACHE_DIR", str(tmp_path / "cache"))
    first = _compile(_tiny_model())
    other = _compile_fresh(_tiny_model(shift=1.0))  # other data: loaded, not compiled
    assert other.compiled_logp_func._cache_hits
    assert len(list((tmp_path / "cache" / "nutpie").iterdir())) == 1
    with pytensor.config.change_flags(numba__fastmath=False):
        plain = nutpie.compile_pymc_model(_tiny_model(shift=1.0))
    want = _draws(plain)
    for name, values in _draws(other).items():
        np.testing.assert_array_equal(values, want[name])
    # nutpie's with_data swaps the data only: the start stays that of the first model
    swapped = first.with_data(y_data=np.array([0.3, -1.2, 0.8, 2.1, 0.0, 1.4]) + 1.0)
    assert swapped.compiled_logp_func is first.compiled_logp_func
    _compile_fresh(
        _tiny_model(prior_sd=3.0)
    )  # another structure (a constant changed): another entry
    assert len(list((tmp_path / "cache" / "nutpie").iterdir())) == 2


@pytest.mark.sampling
@pytest.mark.slow
def test_a_process_reuses_its_compiled_model_for_new_data_of_the_same_structure(
    monkeypatch, tmp_path
):
    import nutpie
    import pytensor

    monkeypatch.setenv("HBREG_CACHE_DIR", str(tmp_path / "cache"))
    first = _compile(_tiny_model())
    reused = _compile(_tiny_model(shift=1.0))
    assert reused.logp_func is first.logp_func  # no PyTensor function built again
    with pytensor.config.change_flags(numba__fastmath=False):
        plain = nutpie.compile_pymc_model(_tiny_model(shift=1.0))
    want = _draws(plain)
    for name, values in _draws(reused).items():
        np.testing.assert_array_equal(values, want[name])
    np.testing.assert_array_equal(_draws(first)["mu"], _draws(_compile(_tiny_model()))["mu"])
    assert _compile(_tiny_model(prior_sd=3.0)).logp_func is not first.logp_func


@pytest.mark.sampling
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["garbage", "truncated", "swapped"])
def test_a_corrupt_entry_is_rebuilt(monkeypatch, tmp_path, damage):
    monkeypatch.setenv("HBREG_CACHE_DIR", str(tmp_path / "cache"))
    want = _draws(_compile(_tiny_model()))
    files = _cache_files(tmp_path / "cache")
    data = [f for f in files if f.suffix == ".nbc"]
    if damage == "garbage":
        for f in files:
            f.write_bytes(b"\x00not a numba cache file" * 10)
    elif damage == "truncated":
        for f in data:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:  # each callback's object code in the other's file: loads, but computes nonsense
        a, b = (f.read_bytes() for f in data)
        data[0].write_bytes(b)
        data[1].write_bytes(a)
    rebuilt = _compile_fresh(_tiny_model())
    for name, values in _draws(rebuilt).items():
        np.testing.assert_array_equal(values, want[name])
    reloaded = _compile_fresh(_tiny_model())  # the rebuilt entry is whole again
    assert reloaded.compiled_logp_func._cache_hits


@pytest.mark.process
@pytest.mark.slow
def test_two_processes_starting_at_once_share_one_entry(tmp_path):
    script = tmp_path / "compile_once.py"
    script.write_text(
        MODEL
        + textwrap.dedent(
            """
            import json
            import pytensor
            from hbreg.compile_cache import compile_nutpie

            with pytensor.config.change_flags(numba__fastmath=False):
                compiled = compile_nutpie(tiny_model())
            x = compiled.initial_point_func(0)
            print(json.dumps(float(compiled.logp_func(x)[0])))
            """
        )
    )
    env = {**__import__("os").environ, "HBREG_CACHE_DIR": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    values = {json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs}
    assert len(values) == 1
    assert len(_cache_files(tmp_path / "cache")) == 4
    assert not list((tmp_path / "cache").rglob("*.tmp.*"))  # no half-written file left
