"""Posterior names: every name a builder makes parses back to what it names, and a data column
that would take one of them is refused by `hbreg validate` and `hbreg fit` before anything is
written (README, "Names in the posterior").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from hbreg.config import coefficient_names, parse_config, varying_names
from hbreg.data import to_model_data
from hbreg.models import build_model, complete_posterior
from hbreg.names import (
    RESIDUAL_SD,
    ParsedName,
    group_predictor_effect,
    group_sd,
    parse,
    population_mean,
)

pytestmark = pytest.mark.unit

# ----------------------------------------------------------------------------- clashes, CLI

# case -> (changes to a valid config, the same with the column renamed, what the message says)
CLASHES = {
    "predictor sigma, pooled": (
        {"data": {"predictors": ["x", "sigma"]}, "model": {"pooling": "pooled"}},
        {"data": {"predictors": ["x", "s"]}, "model": {"pooling": "pooled"}},
        "'sigma' would name both the coefficient of column 'sigma' (data.predictors) and the "
        "residual sd",
    ),
    "predictor intercept with intercept: true": (
        {"data": {"predictors": ["x", "intercept"]}, "model": {"intercept": True}},
        {"data": {"predictors": ["x", "const"]}, "model": {"intercept": True}},
        "'intercept' would name both the constant (model.intercept) and the coefficient of "
        "column 'intercept' (data.predictors); rename the column or set model.intercept: false",
    ),
    "predictor mu_x, x varying in a hierarchical model": (
        {"data": {"predictors": ["x", "mu_x"]}, "model": {"varying": ["intercept", "x"]}},
        {"data": {"predictors": ["x", "mx"]}, "model": {"varying": ["intercept", "x"]}},
        "'mu_x' would name both the coefficient of column 'mu_x' (data.predictors) and the "
        "population mean of 'x'",
    ),
    "outcome sigma": (
        {"data": {"outcome": "sigma"}},
        {"data": {"outcome": "s"}},
        "'sigma' would name both the residual sd and the outcome column (data.outcome)",
    ),
    "group chain": (
        {"data": {"group": "chain"}},
        {"data": {"group": "batch"}},
        # the dimension's wording may change (the posterior, idata.nc); the clash may not
        "'chain' would name both the group column (data.group) and the 'chain' dimension",
    ),
}


def _config(tmp_path: Path, changes: dict) -> tuple[Path, Path]:
    """A small hierarchical experiment on a CSV in tmp_path, with `changes` merged in."""
    data = {"outcome": "y", "predictors": ["x"], "group": "g"}
    model = {"pooling": "hierarchical"}
    data.update(changes.get("data", {}))
    model.update(changes.get("model", {}))
    rng = np.random.default_rng(0)
    n = 24
    columns = {data["outcome"], *data["predictors"], data["group"]}
    frame = pd.DataFrame({c: rng.normal(size=n) for c in columns})
    frame[data["group"]] = np.repeat(["a", "b", "c"], n // 3)
    csv = tmp_path / "data.csv"
    frame.to_csv(csv, index=False)
    root = tmp_path / "outputs"
    config = {
        "name": "clash",
        "data": {"path": str(csv), **data},
        "model": model,
        "sampler": {"draws": 20, "tune": 20, "chains": 1, "seed": 1},
        "output": {"root": str(root), "plots": []},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, root


@pytest.mark.parametrize("command", ["validate", "fit"])
@pytest.mark.parametrize("case", list(CLASHES))
def test_a_column_named_like_a_posterior_name_is_refused(cli, tmp_path, case, command):
    changes, _, message = CLASHES[case]
    path, root = _config(tmp_path, changes)
    before = set(tmp_path.iterdir())
    result = cli(command, path)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # Rich wraps long lines
    assert message in output
    assert "Traceback" not in result.output
    assert not root.exists()
    assert set(tmp_path.iterdir()) == before  # nothing written anywhere


@pytest.mark.parametrize("case", list(CLASHES))
def test_the_same_config_with_the_column_renamed_validates(cli, tmp_path, case):
    # The control: what is refused above is the name, not the data or the rest of the config.
    _, renamed, _ = CLASHES[case]
    path, _ = _config(tmp_path, renamed)
    result = cli("validate", path)
    assert result.exit_code == 0, result.output


# ----------------------------------------------------------------------------- parse

# Configs whose names are easy to misread: predictors with `_`, a predictor `mu_<coef>` beside a
# coefficient that does not vary, group-level predictors whose names overlap.
NAMED = {
    "radon-like": dict(predictors=["floor"], group_predictors=["uranium"]),
    "underscores": dict(
        predictors=["x_1", "x_1_u"],
        group_predictors=["u", "u_v"],
        group_predictors_for=["intercept", "x_1"],
    ),
    "mu_x beside a fixed x": dict(predictors=["x", "mu_x", "sigma_x"], varying=["intercept"]),
    "overlapping effects": dict(
        # gamma_a_b_c is `a_b` shifted by `c`; it would also spell `a` shifted by `b_c`
        predictors=["a", "a_b"],
        group_predictors=["b_c", "c"],
        group_predictors_for=["a_b"],
    ),
    "no intercept": dict(predictors=["x", "z"], intercept=False),
}


def _named_config(pooling, parameterization, *, predictors, group_predictors=(), **model):
    raw = {
        "name": "names",
        "data": {
            "path": "in-memory.csv",
            "outcome": "y",
            "predictors": predictors,
            "group": "g",
            "group_predictors": list(group_predictors) if pooling == "hierarchical" else [],
        },
        "model": {"pooling": pooling, "parameterization": parameterization, **model},
    }
    if pooling == "pooled":
        del raw["data"]["group"]
        raw["model"].pop("varying", None)
    if pooling != "hierarchical":
        raw["model"].pop("group_predictors_for", None)
    return parse_config(raw)


def _frame(config, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(4), [2, 3, 4, 5])
    frame = pd.DataFrame({p: rng.normal(size=len(groups)) for p in config.data.predictors})
    frame["y"] = rng.normal(size=len(groups))
    frame["g"] = [f"g{i}" for i in groups]
    for u in config.data.group_predictors:  # one value per group
        frame[u] = rng.normal(size=4)[groups]
    return frame


def _sampler_output(built, *, chains=2, draws=5) -> xr.Dataset:
    """What a sampler returns for this model (every free variable and deterministic), drawn
    at random: the names and dims are what matter here, so nothing is compiled."""
    rng = np.random.default_rng(1)
    model = built.model
    variables = {}
    for var in [*model.free_RVs, *model.deterministics]:
        dims = model.named_vars_to_dims.get(var.name, ())
        shape = tuple(len(model.coords[d]) for d in dims)
        variables[var.name] = (("chain", "draw", *dims), 0.5 + rng.random((chains, draws, *shape)))
    coords = {d: list(model.coords[d]) for d in model.coords}
    return xr.Dataset(variables, coords={"chain": range(chains), "draw": range(draws), **coords})


def _make(parsed: ParsedName) -> str:
    """The name that `parsed` describes, made by the functions the builders use."""
    return {
        "residual_sd": lambda: RESIDUAL_SD,
        "coefficient": lambda: parsed.coef,
        "population_mean": lambda: population_mean(parsed.coef),
        "group_sd": lambda: group_sd(parsed.coef),
        "group_effect": lambda: group_predictor_effect(parsed.coef, parsed.predictor),
    }[parsed.kind]()


def _shifts(config) -> dict[str, list[str]]:
    """Coefficient -> the group-level predictors that shift its population mean."""
    if config.model.pooling != "hierarchical":
        return {}
    return {
        c: list(config.data.group_predictors)
        for c in varying_names(config)
        if c in config.model.group_predictors_for
    }


@pytest.mark.parametrize("parameterization", ["marginal", "centered", "noncentered"])
@pytest.mark.parametrize("pooling", ["pooled", "unpooled", "hierarchical"])
@pytest.mark.parametrize("case", list(NAMED))
def test_every_name_a_builder_makes_parses_back(case, pooling, parameterization):
    config = _named_config(pooling, parameterization, **NAMED[case])
    data = to_model_data(_frame(config), config)
    built = build_model(config, data)
    posterior = complete_posterior(built, config, data, _sampler_output(built), seed=2)
    coefficients = coefficient_names(config)
    shifts = _shifts(config)
    varying = varying_names(config)

    kinds = {}
    for name in posterior.data_vars:
        parsed = parse(name, coefficients, shifts)
        assert parsed is not None, name
        assert _make(parsed) == name
        kinds[name] = parsed.kind
    # ... and each means what the model made it for
    for coef in coefficients:
        if pooling == "hierarchical" and coef in varying:
            assert kinds[population_mean(coef)] == "population_mean"
            assert kinds[group_sd(coef)] == "group_sd"
            for predictor in shifts.get(coef, []):
                assert kinds[group_predictor_effect(coef, predictor)] == "group_effect"
        assert kinds[coef] == "coefficient"
    assert kinds[RESIDUAL_SD] == "residual_sd"
    # internal variables of the builder are not posterior names
    internal = set(built.model.named_vars) - set(posterior.data_vars) - set(built.model.coords)
    for name in internal:
        if name not in coefficients:
            assert parse(name, coefficients, shifts) is None, name


def test_parse_reads_a_coefficient_before_a_derived_name():
    # `mu_x` is a predictor of its own when `x` does not vary; a list of group predictors
    # cannot tell `gamma_a_b_c` apart, the mapping can.
    assert parse("mu_x", ["intercept", "x", "mu_x"]) == ParsedName("coefficient", "mu_x")
    assert parse("mu_x", ["intercept", "x"]) == ParsedName("population_mean", "x")
    ambiguous = parse("gamma_a_b_c", ["a", "a_b"], {"a_b": ["b_c", "c"]})
    assert ambiguous == ParsedName("group_effect", "a_b", "c")
    assert parse("gamma_a_b_c", ["a", "a_b"], ["c"]) == ParsedName("group_effect", "a_b", "c")
    assert parse("x_offset", ["x"]) is None
    assert parse("nu", ["x"]) is None
