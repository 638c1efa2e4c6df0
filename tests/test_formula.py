"""The formula front-end: parsing, the clash with role keys, designs, and equality with roles.

`configs/radon_formula.yaml` is `configs/radon_hier.yaml` written as a formula; the two
must give the same arrays, the same model and, for the same seed, the same summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbreg.config import load_config, parse_config
from hbreg.config.formula import FormulaError, parse_formula
from hbreg.data import load_model_data, to_model_data, with_formula_roles
from hbreg.errors import ConfigError, DataError
from hbreg.names import design_coefficient

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@pytest.mark.unit
def test_blocks_keep_their_correlation_and_bars():
    f = parse_formula("log_radon ~ floor + (1 + floor | county)")
    assert f.outcome == "log_radon" and f.population == "floor"
    (block,) = f.blocks
    assert (block.expr, block.factors, block.correlated) == ("1 + floor", ("county",), True)
    assert f.variables == ("log_radon", "floor", "county")
    assert parse_formula("y ~ x + (1 + x || g)").blocks[0].correlated is False
    assert parse_formula("y ~ (1 | g)").population == "1"


@pytest.mark.unit
@pytest.mark.parametrize(
    "text,quoted",
    [
        ("y ~ poly(x, 2) + (1 | g)", "poly(x, 2)"),
        ("y ~ x - (1 | g)", "(1 | g)"),
        ("cbind(k, n) ~ x", "cbind(k, n)"),
        ("y ~ x + (1 | | g)", "(1 | | g)"),
    ],
)
def test_unsupported_terms_are_quoted(text, quoted):
    with pytest.raises(FormulaError, match=None) as info:
        parse_formula(text)
    assert quoted in str(info.value), str(info.value)


def _raw(**model):
    return {"name": "f", "data": {"dataset": "radon"}, "model": model}


@pytest.mark.unit
def test_formula_and_role_keys_clash_with_every_key_named():
    raw = _raw(formula="log_radon ~ floor + (1 | county)", varying=["intercept"])
    raw["data"].update(outcome="log_radon", group="county")
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    text = str(info.value)
    assert "model.formula clashes with data.outcome, data.group, model.varying" in text


@pytest.mark.unit
def test_a_formula_syntax_error_names_the_key():
    with pytest.raises(ConfigError, match=r"model -> formula: .*\(1 \+ floor \| county"):
        parse_config(_raw(formula="log_radon ~ floor + (1 + floor | county"))


def _frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "kind": rng.choice(["b", "a", "c"], size=n),
            "g": np.repeat([f"g{i}" for i in range(6)], n // 6),
        }
    )


def _data(formula: str, frame: pd.DataFrame, **data):
    raw = {"name": "f", "data": {"path": "unused.csv", **data}, "model": {"formula": formula}}
    config = parse_config(raw)
    model_data = to_model_data(frame, config)
    return with_formula_roles(config, model_data), model_data


@pytest.mark.unit
def test_categorical_treatment_coding_and_a_changeable_reference():
    frame = _frame()
    config, data = _data("y ~ x * kind + (1 | g)", frame)
    assert data.coef_names == ["intercept", "x", "kind_b", "kind_c", "x:kind_b", "x:kind_c"]
    assert any("reference level 'a'" in n for n in data.notes), data.notes
    np.testing.assert_array_equal(data.X[:, 2], (frame["kind"] == "b").to_numpy(float))
    np.testing.assert_allclose(data.X[:, 4], frame["x"] * (frame["kind"] == "b"))
    assert config.model.pooling == "hierarchical" and config.model.varying == ["intercept"]
    _, other = _data("y ~ x + kind + (1 | g)", frame, reference_levels={"kind": "c"})
    assert other.coef_names == ["intercept", "x", "kind_a", "kind_b"]
    assert any("reference level 'c'" in n for n in other.notes), other.notes


@pytest.mark.unit
def test_no_intercept_and_uncorrelated_blocks():
    frame = _frame()
    _, data = _data("y ~ 0 + x + (0 + x | g)", frame)
    assert data.coef_names == ["x"] and data.varying == ["x"] and not data.correlated
    _, data = _data("y ~ x - 1 + kind + (0 + x || g)", _frame())
    assert data.coef_names == ["x", "kind_a", "kind_b", "kind_c"] and data.varying == ["x"]


@pytest.mark.unit
def test_one_factor_in_two_terms_is_lme4s_independent_spelling():
    frame = _frame()
    _, split = _data("y ~ x + (1 | g) + (0 + x | g)", frame)
    _, bars = _data("y ~ x + (1 + x || g)", frame)
    assert split.varying == bars.varying == ["intercept", "x"]
    assert not split.correlated and split.factors == ()
    np.testing.assert_array_equal(split.group_idx, bars.group_idx)
    with pytest.raises(DataError, match=r"\['intercept'\] vary by 'g' twice"):
        _data("y ~ x + (1 | g) + (1 + x || g)", frame)
    with pytest.raises(DataError, match=r"'\(1 \+ x \| g\)' correlates effects of 'g'"):
        _data("y ~ x + z + (1 + x | g) + (0 + z | g)", frame.assign(z=frame["x"] ** 2))


@pytest.mark.unit
def test_varying_terms_need_a_population_mean():
    with pytest.raises(DataError, match=r"'\(1 \+ x \| g\)' but are not in the population"):
        _data("y ~ 1 + (1 + x | g)", _frame())


@pytest.mark.unit
def test_a_one_level_factor_is_refused_quoting_the_term():
    frame = _frame().assign(g="only")
    with pytest.raises(DataError, match=r"factor 'g' of model.formula term '\(1 \| g\)' has 1"):
        _data("y ~ x + (1 | g)", frame)


@pytest.mark.unit
def test_an_unknown_variable_is_refused_quoting_the_term():
    config = parse_config(_raw(formula="log_radon ~ flor + (1 | county)"))
    with pytest.raises(DataError, match=r"unknown variable 'flor' in term 'flor'"):
        load_model_data(config)
    config = parse_config(_raw(formula="log_radon ~ floor + (1 | cnty)"))
    with pytest.raises(DataError, match=r"unknown variable 'cnty' in term '\(1 \| cnty\)'"):
        load_model_data(config)


@pytest.mark.unit
def test_design_coefficient_names():
    assert design_coefficient("Intercept") == "intercept"
    assert design_coefficient('C(period, Treatment("1"))[2]') == "period_2"
    assert design_coefficient("T(kind, ref='a')[b]:x") == "kind_b:x"


@pytest.mark.unit
def test_radon_formula_gives_the_role_based_arrays_and_roles():
    roles = load_config(CONFIGS / "radon_hier.yaml")
    formula = load_config(CONFIGS / "radon_formula.yaml")
    a, b = load_model_data(roles), load_model_data(formula)
    resolved = with_formula_roles(formula, b)
    for key in ("y", "X", "group_idx"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert (a.coef_names, a.varying, a.group_labels) == (b.coef_names, b.varying, b.group_labels)
    assert a.fingerprint == b.fingerprint and not b.correlated
    for section in ("data", "model"):
        for key in ("predictors", "group", "pooling", "varying", "intercept", "correlated"):
            obj_a, obj_b = getattr(roles, section), getattr(resolved, section)
            if hasattr(obj_a, key):
                assert getattr(obj_a, key) == getattr(obj_b, key), key


@pytest.mark.unit
def test_the_saved_config_holds_the_formula_alone_and_reloads():
    from hbreg.config import dump_config
    from hbreg.config.load import _yaml_load

    formula = load_config(CONFIGS / "radon_formula.yaml")
    resolved = with_formula_roles(formula, load_model_data(formula))
    raw = _yaml_load(dump_config(resolved))
    assert "outcome" not in raw["data"] and "varying" not in raw["model"]
    assert parse_config(raw).model.formula == formula.model.formula


@pytest.mark.sampling
@pytest.mark.slow
def test_radon_formula_reproduces_the_role_based_summary(tmp_path, cli):
    summaries = []
    for name in ("radon_hier", "radon_formula"):
        root = tmp_path / name
        args = ["fit", CONFIGS / f"{name}.yaml", "--set", f"output.root={root}"]
        for item in (
            "sampler.draws=200",
            "sampler.tune=200",
            "sampler.chains=2",
            "output.plots=[]",
        ):
            args += ["--set", item]
        result = cli(*args)
        assert result.exit_code == 0, result.output
        (run,) = [p for p in root.iterdir() if p.is_dir()]
        summaries.append(pd.read_csv(run / "summary.csv", index_col=0))
    pd.testing.assert_frame_equal(summaries[0], summaries[1], check_exact=True)


@pytest.mark.unit
@pytest.mark.parametrize(
    "name,rows,factors",
    [
        ("penicillin", 144, {"plate": 24, "sample": 6}),
        ("pastes", 60, {"batch": 10, "cask": 3, "sample": 30}),
        ("dyestuff", 30, {"Batch": 6}),
        ("exam", 4059, {"school": 65}),
    ],
)
def test_builtin_datasets_for_the_classic_structures(name, rows, factors, cli):
    from hbreg.data import BUILTIN_DATASETS

    frame = BUILTIN_DATASETS[name].load()
    assert len(frame) == rows
    for column, levels in factors.items():
        assert frame[column].nunique() == levels and frame[column].dtype != np.int64
    result = cli("datasets")
    assert result.exit_code == 0 and name in result.output
