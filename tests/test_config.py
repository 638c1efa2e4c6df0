"""Configs: every broken config a user could write gets exit code 2 and a message naming it.

`tests/configs/wrong_*.yaml` holds the broken configs (and, under `data/`, the broken data
files they point at); each is run through `hbreg fit` from that directory and must exit 2
with its message, print no traceback and write nothing. Every shipped fit config must
validate.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hbreg.config.load import (
    MAX_CONFIG_BYTES,
    apply_overrides,
    dump_config,
    load_config,
    parse_config,
    read_yaml_mapping,
)
from hbreg.errors import ConfigError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
WRONG = Path(__file__).resolve().parent / "configs"

# file -> a substring the message must contain (it names the key, column, file or line)
EXPECTED = {
    # YAML and the file itself
    "wrong_yaml_syntax.yaml": "is not valid YAML at line 4, column 6",
    "wrong_yaml_tab_indent.yaml": "not tabs",
    "wrong_not_mapping.yaml": "must be a YAML mapping (name:, data:, ...), got a list",
    "wrong_empty.yaml": "is empty",
    "wrong_python_tag.yaml": "uses the YAML tag '!!python/object/apply:os.system' at line 3",
    "wrong_duplicate_key.yaml": "key 'sampler' appears twice (first at line 3)",
    "wrong_alias_bomb.yaml": "expands to more than 100,000 values",
    "wrong_not_utf8.yaml": "is not UTF-8 text",
    # schema
    "wrong_unknown_key.yaml": "modle: unknown key 'modle'. Did you mean 'model'?",
    "wrong_unknown_nested_key.yaml": "sampler -> draw: unknown key 'draw'. Did you mean 'draws'?",
    "wrong_missing_name.yaml": "name: required key is missing",
    "wrong_missing_outcome.yaml": "data -> outcome: required key is missing",
    "wrong_no_data_source.yaml": "give exactly one of data.dataset",
    "wrong_both_sources.yaml": "give exactly one of data.dataset",
    "wrong_name_spaces.yaml": "name: 'my radon model' must start with a letter or digit",
    "wrong_type_draws.yaml": "sampler -> draws: Input should be a valid integer",
    "wrong_bool_draws.yaml": "sampler -> draws: must be a number, got true",
    "wrong_negative_draws.yaml": "sampler -> draws: Input should be greater than or equal to 1",
    "wrong_target_accept.yaml": "sampler -> target_accept: Input should be less than 1 (got 95)",
    "wrong_predictors_string.yaml": "data -> predictors: Input should be a valid list (got",
    "wrong_pooling_value.yaml": "model -> pooling: Input should be 'pooled', 'unpooled' or",
    "wrong_family.yaml": "'poisson' or 'negative_binomial' (got 'gamma')",
    "wrong_backend.yaml": "sampler -> backend: Input should be 'auto'",
    "wrong_plot_kind.yaml": "output -> plots -> 1: Input should be 'posterior'",
    "wrong_hier_no_group.yaml": "model.pooling 'hierarchical' needs data.group",
    "wrong_varying_unknown.yaml": "model.varying lists ['slope']",
    "wrong_same_column_twice.yaml": "column(s) ['log_radon'] used in more than one role",
    "wrong_no_coefficients.yaml": "the model has no coefficients",
    "wrong_group_predictors_pooled.yaml": "data.group_predictors need model.pooling 'hierarchical'",
    # values that can only be typos, and sizes beyond the machine
    "wrong_draws_typo.yaml": "sampler -> draws: 1,000,000,000 is above the limit of 1,000,000 "
    "(8.0 GB per parameter and chain): a few thousand draws",
    "wrong_tune_typo.yaml": "sampler -> tune: 5,000,000 is above the limit of 100,000",
    "wrong_chains_typo.yaml": "sampler -> chains: 400 is above the limit of 64",
    "wrong_tree_depth_typo.yaml": "sampler -> max_tree_depth: 100 is above the limit of 20",
    "wrong_beyond_memory.yaml": "of memory (64 chains x 1,000,000 draws x 175 parameters, "
    "919 observations) and",
    # priors
    "wrong_unknown_distribution.yaml": "unknown distribution 'Normol'. Did you mean 'Normal'?",
    "wrong_prior_negative_sigma.yaml": "priors -> coefficient: Normal parameter sigma must be a "
    "positive number, got -10",
    "wrong_prior_missing_param.yaml": "missing parameter(s) ['sigma']",
    "wrong_prior_unknown_param.yaml": "unknown parameter(s) ['scale']",
    "wrong_prior_string_param.yaml": "Normal parameter sigma must be a number, got 'ten'",
    "wrong_prior_not_mapping.yaml": "priors -> coefficient: Input should be a valid dictionary",
    "wrong_scale_prior_support.yaml": "priors -> group_sd: Normal allows negative values",
    "wrong_override_unknown_param.yaml": "no parameter 'sigma_flor'. Did you mean 'sigma_floor'?",
    "wrong_marginal_non_normal.yaml": "model.parameterization: 'marginal' integrates",
    "wrong_correlated_one_varying.yaml": "model.correlated needs model.pooling 'hierarchical' "
    "and at least two varying coefficients",
    "wrong_group_corr_prior.yaml": "priors -> group_corr: LKJ parameter eta must be a positive",
    "wrong_correlated_centered.yaml": "correlated group effects are sampled 'marginal' or",
    "wrong_group_corr_by_factor.yaml": "priors.group_corr_by: no grouping factor ['state']; "
    "the model's factor is 'county'",
    "wrong_formula_clash.yaml": "model.formula clashes with data.outcome, data.group",
    "wrong_formula_unsupported.yaml": "unsupported term 'poly(floor, 2)'",
    "wrong_formula_unknown_variable.yaml": "unknown variable 'countie' in term "
    "'(1 + floor | countie)' (did you mean 'county'?)",
    "wrong_formula_single_level.yaml": "the factor 'g' of model.formula term '(1 | g)' has 1",
    # data sources and data files
    "wrong_dataset_name.yaml": "unknown built-in dataset 'radom'. Did you mean 'radon'?",
    "wrong_column_missing.yaml": "column 'Floor' not found in built-in dataset 'radon', "
    "did you mean 'floor'?",
    "wrong_column_typo_with_varying.yaml": "column 'standlrt' not found in built-in dataset "
    "'exam', did you mean 'standLRT'?",
    "wrong_data_missing_file.yaml": "file 'data/does_not_exist.csv' does not exist",
    "wrong_data_directory.yaml": "data.path: 'data' is a directory",
    "wrong_data_excel.yaml": "expected a .csv, .tsv or .parquet file, not '.xlsx'",
    "wrong_data_empty.yaml": "data file 'data/empty.csv' is empty",
    "wrong_data_no_header.yaml": "'data/no_header.csv' has no header row",
    "wrong_data_header_only.yaml": "'data/header_only.csv' has a header but no rows",
    "wrong_data_semicolon.yaml": "it looks delimited by something other than ','",
    "wrong_data_latin1.yaml": "'data/latin1.csv' is not UTF-8 text",
    "wrong_data_duplicate_columns.yaml": "has duplicated column name(s) ['x']",
    "wrong_data_ragged.yaml": "line 3 has 4 fields but the header has 3",
    "wrong_data_missing_column.yaml": "column 'z' not found in data file 'data/good.csv'",
    "wrong_data_non_numeric.yaml": "column 'x' must be numeric but holds values like 'one' "
    "(row 2, counting data rows from 1 after the header); encode categories as 0/1 columns",
    "wrong_data_non_numeric_outcome.yaml": "column 'y' must be numeric but holds values like "
    "'abc' (row 3, counting data rows from 1 after the header); the outcome must be a number",
    "wrong_data_decimal_comma.yaml": "write decimals with a point",
    "wrong_data_thousands.yaml": "'1,520' reads as 1520 with ',' as a thousands separator; "
    "remove the separators",
    "wrong_data_nan.yaml": "missing values in {'x': 2}; set data.missing: drop",
    "wrong_data_all_dropped.yaml": "no rows left after dropping missing values",
    "wrong_data_infinite.yaml": "infinite values in column(s) ['x']",
    "wrong_data_single_group.yaml": "group column 'g' has 1 group",
    "wrong_data_constant_outcome.yaml": "outcome 'y' is constant",
    "wrong_data_constant_predictor.yaml": "predictor 'x' is constant",
    "wrong_data_one_row.yaml": "1 usable row; a regression needs at least 2",
    "wrong_data_group_predictor_varies.yaml": "group predictor(s) ['x2'] vary within a g",
    "wrong_data_parquet_corrupt.yaml": "'data/corrupt.parquet' is not a readable parquet file",
}


def _assert_one_clear_error(result, code: int, message: str):
    output = result.output
    assert result.exit_code == code, output
    assert message in output, output
    assert "Traceback" not in output
    assert output.count("error:") == 1, output


def test_every_wrong_config_has_an_expected_message():
    on_disk = {p.name for p in WRONG.glob("wrong_*.yaml")}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_wrong_config_exits_2_with_its_message_and_writes_nothing(name, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(WRONG)
    root = tmp_path / "outputs"
    result = cli("fit", name, "--set", f"output.root={root}")
    _assert_one_clear_error(result, 2, EXPECTED[name])
    assert not root.exists()


def _shipped_fit_configs() -> list[Path]:
    configs = []
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if isinstance(raw, dict) and "experiments" in raw:
            continue  # simulation configs are checked by the simulate tests
        configs.append(path)
    return configs


@pytest.mark.parametrize("path", _shipped_fit_configs(), ids=lambda p: p.name)
def test_shipped_config_validates(path, cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = cli("validate", path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok ")


# --set ---------------------------------------------------------------------------------

SET_ERRORS = [
    (["sampler.draw=5"], "no key 'draw' in sampler. Did you mean 'draws'?"),
    (["samplr.draws=5"], "no key 'samplr' in the top level. Did you mean 'sampler'?"),
    (["sampler.draws"], "must look like section.key=value"),
    (["=5"], "must look like section.key=value"),
    (["sampler.draws=[1,"], "the value is not valid YAML"),
    (["name.first=x"], "'name' is not a section"),
    (["sampler.draws=lots"], "sampler -> draws: Input should be a valid integer"),
    (["sampler=5"], "sampler: Input should be a valid dictionary"),
    (["priors.sigma.dist=Normol"], "unknown distribution 'Normol'"),
    (["priors.overrides.sigma_flor={dist: HalfNormal, sigma: 1}"], "no parameter 'sigma_flor'"),
    (["model.pooling=partial"], "model -> pooling"),
    (["data.dataset=radom"], "unknown built-in dataset 'radom'"),
]


@pytest.mark.parametrize(("sets", "message"), SET_ERRORS, ids=[s[0][0] for s in SET_ERRORS])
def test_bad_set_override_exits_2(sets, message, cli, write_config, radon_hier_config, tmp_path):
    path = write_config(radon_hier_config)
    args = [arg for item in sets for arg in ("--set", item)]
    result = cli("fit", path, *args)
    _assert_one_clear_error(result, 2, message)
    assert not (tmp_path / "outputs").exists()


def test_a_bad_set_value_names_the_set_item_not_the_file(cli, write_config, radon_hier_config):
    path = write_config(radon_hier_config, name="exam.yaml")
    result = cli("validate", path, "--set", "sampler.draws=lots")
    _assert_one_clear_error(result, 2, "invalid --set value:")
    assert "--set 'sampler.draws=lots': sampler -> draws: Input should be a valid integer" in (
        result.output
    )
    assert "exam.yaml" not in result.output
    # a mistake in the file and one in --set: the file is named, the --set line is its own
    broken = write_config({**radon_hier_config, "sampler": {"chains": 0}}, name="exam.yaml")
    result = cli("validate", broken, "--set", "sampler.draws=lots")
    _assert_one_clear_error(result, 2, "invalid config '")
    assert "exam.yaml':" in result.output
    assert "--set 'sampler.draws=lots': sampler -> draws" in result.output
    assert "\n  sampler -> chains: Input should be greater than or equal to 1" in result.output


def test_set_overrides_are_validated_like_the_file(tmp_path):
    raw = {"name": "x", "data": {"dataset": "radon", "outcome": "log_radon"}}
    result = apply_overrides(
        raw,
        ["sampler.draws=500", "model.pooling=pooled", "priors.sigma={dist: HalfNormal, sigma: 1}"],
    )
    assert raw == {"name": "x", "data": {"dataset": "radon", "outcome": "log_radon"}}  # a copy
    config = parse_config(result)
    assert config.sampler.draws == 500
    assert config.priors.sigma == {"dist": "HalfNormal", "sigma": 1}


# files ---------------------------------------------------------------------------------


def test_missing_config_file(cli, tmp_path):
    result = cli("fit", tmp_path / "nope.yaml")
    _assert_one_clear_error(result, 2, f"config file '{tmp_path / 'nope.yaml'}' does not exist")


def test_config_path_is_a_directory(cli, tmp_path):
    result = cli("validate", tmp_path)
    _assert_one_clear_error(result, 2, "is a directory")


def test_unreadable_config_file(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    # chmod does not stop root (CI runs as root), so the denial is simulated
    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError, match="cannot read config file .*Permission denied"):
        read_yaml_mapping(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_file_by_mode(cli, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    path.chmod(0)
    _assert_one_clear_error(cli("validate", path), 2, "Permission denied")


def test_config_of_many_megabytes_is_refused_unread(cli, tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("w") as handle:
        handle.write(
            "name: x\ndata: {dataset: radon, outcome: log_radon}\nmodel: {pooling: pooled}\n"
        )
        handle.write("# padding\n" * (3 * MAX_CONFIG_BYTES // 10))
    result = cli("validate", path)
    _assert_one_clear_error(result, 2, "a config is at most 1,000,000 bytes")


def test_python_tag_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "c.yaml"
    path.write_text(f'name: x\ndata: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError, match="hbreg reads plain YAML only"):
        load_config(path)
    assert not marker.exists()


def test_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "defaults: &d {draws: 10, tune: 10}\n"
        "name: x\ndata: {dataset: radon, outcome: log_radon}\nmodel: {pooling: pooled}\n"
        "sampler:\n  <<: *d\n  draws: 20\n"
    )
    raw = read_yaml_mapping(path)
    assert raw["sampler"] == {"draws": 20, "tune": 10}


def test_exponent_without_a_point_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "name: x\ndata: {dataset: radon, outcome: log_radon}\nmodel: {pooling: pooled}\n"
        "priors: {coefficient: {dist: Normal, mu: 0, sigma: 1e3}}\nsampler: {draws: 2e2}\n"
    )
    config = load_config(path)
    assert config.priors.coefficient["sigma"] == 1000.0
    assert config.sampler.draws == 200


def test_utf8_bom_config_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    text = "name: x\ndata: {dataset: radon, outcome: log_radon}\nmodel: {pooling: pooled}\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_config(path).name == "x"


def test_all_problems_are_reported_at_once():
    raw = {
        "name": "x",
        "data": {"dataset": "radon", "outcome": "log_radon", "predictor": ["floor"]},
        "sampler": {"draws": 0, "chains": "four"},
        "priors": {"sigma": {"dist": "HalfNormal", "sigma": -1}},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, source="c.yaml")
    message = str(info.value)
    for part in (
        "data -> predictor: unknown key 'predictor'. Did you mean 'predictors'?",
        "sampler -> draws",
        "sampler -> chains",
        "priors -> sigma: HalfNormal parameter sigma must be a positive number",
    ):
        assert part in message


def test_long_values_are_shortened_in_messages():
    raw = {
        "name": "x",
        "data": {"dataset": "radon", "outcome": "log_radon"},
        "sampler": {"draws": "9" * 5000 + "x"},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert len(str(info.value)) < 400


def test_resolved_config_round_trips(tmp_path, radon_hier_config, write_config):
    config = load_config(write_config(radon_hier_config))
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(config))
    assert load_config(again) == config
