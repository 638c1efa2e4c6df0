"""The data layer: every problem with a data file is a DataError naming the file and column.

The broken files a user could hand over are in `tests/configs/data/` and run through the
CLI by test_config.py; these tests cover what needs a generated file or a limit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hbreg.config import parse_config
from hbreg.data import load as data_module
from hbreg.data import load_frame, load_model_data, to_model_data
from hbreg.errors import DataError

pytestmark = pytest.mark.unit


def _config(path, **data):
    spec = {"path": str(path), "outcome": "y", "predictors": ["x"], "group": "g", **data}
    return parse_config({"name": "t", "data": spec})


def _frame(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.integers(0, 2, n).astype(float),
            "g": [f"g{i % 3}" for i in range(n)],
        }
    )


def test_good_csv_loads(tmp_path):
    path = tmp_path / "d.csv"
    _frame().to_csv(path, index=False)
    data = load_model_data(_config(path))
    assert data.X.shape == (12, 2)
    assert data.group_labels == ["g0", "g1", "g2"]


def test_utf8_bom_and_padded_header_are_read(tmp_path):
    path = tmp_path / "d.csv"
    text = _frame().to_csv(index=False).replace("y,x,g", " y , x,g ", 1)
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    data = load_model_data(_config(path))
    assert len(data.y) == 12


def test_tsv_is_read_with_tabs(tmp_path):
    path = tmp_path / "d.tsv"
    _frame().to_csv(path, index=False, sep="\t")
    assert len(load_model_data(_config(path)).y) == 12


def test_parquet_is_read(tmp_path):
    path = tmp_path / "d.parquet"
    _frame().to_parquet(path)
    assert len(load_model_data(_config(path)).y) == 12


def test_missing_drop_reports_how_many_rows(tmp_path, cli, write_config):
    frame = _frame()
    frame.loc[[1, 4], "x"] = np.nan
    frame.loc[7, "g"] = None
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    config = write_config(
        {
            "name": "t",
            "data": {
                "path": str(path),
                "outcome": "y",
                "predictors": ["x"],
                "group": "g",
                "missing": "drop",
            },
        }
    )
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert "dropped 3 of 12 rows with missing values {'x': 2, 'g': 1}" in result.output
    assert "9 rows" in result.output


def test_short_row_counts_as_missing_values(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("y,x,g\n1,0,a\n2,1\n3,0,a\n4,1,b\n")
    with pytest.raises(DataError, match=r"missing values in \{'g': 1\}"):
        load_model_data(_config(path))


def test_unquoted_comma_in_a_label_is_not_silently_shifted(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('y,x,g\n1,0,"ST. LOUIS, MN"\n2,1,AITKIN\n3,0,ST. LOUIS, MN\n4,1,AITKIN\n')
    with pytest.raises(DataError, match="line 4 has 4 fields but the header has 3"):
        load_model_data(_config(path))


def test_huge_overflowing_number_is_infinite(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("y,x,g\n1,0,a\n2,1e999,b\n3,0,a\n4,1,b\n")
    with pytest.raises(DataError, match=r"infinite values in column\(s\) \['x'\]"):
        load_model_data(_config(path))


def test_too_many_rows_is_refused_while_streaming(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    n = 50_000
    pd.DataFrame({"y": np.arange(n) % 7, "x": np.arange(n) % 2, "g": np.arange(n) % 5}).to_csv(
        path, index=False
    )
    monkeypatch.setattr(data_module, "MAX_ROWS", 10_000)
    monkeypatch.setattr(data_module, "_CHUNK_ROWS", 4_000)
    with pytest.raises(DataError, match="has more than 10,000 rows") as info:
        load_frame(_config(path))
    read = int(re.search(r"\(([\d,]+) read so far\)", str(info.value)).group(1).replace(",", ""))
    assert read <= 12_000  # stopped at the limit, not after all 50,000 rows


def test_too_many_rows_in_parquet_is_refused_from_its_metadata(tmp_path, monkeypatch):
    path = tmp_path / "big.parquet"
    _frame(n=500).to_parquet(path)
    monkeypatch.setattr(data_module, "MAX_ROWS", 100)
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("read the rows"))
    with pytest.raises(DataError, match="has more than 100 rows"):
        load_frame(_config(path))


def test_unreadable_data_file(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    _frame().to_csv(path, index=False)

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    # chmod does not stop root (CI runs as root), so the denial is simulated
    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(DataError, match="is not readable"):
        load_frame(_config(path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_data_file_by_mode(tmp_path):
    path = tmp_path / "d.csv"
    _frame().to_csv(path, index=False)
    path.chmod(0)
    with pytest.raises(DataError, match="is not readable"):
        load_frame(_config(path))


def test_relative_missing_path_names_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=f"relative to the current directory '{tmp_path}'"):
        load_frame(_config("data/nope.csv"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(y=3.0), "outcome 'y' is constant"),
        (lambda f: f.assign(x=1.0), "predictor 'x' is constant"),
        (lambda f: f.assign(g="only"), "group column 'g' has 1 group"),
        (
            lambda f: f.assign(x=f["x"].astype(object).where(f.index != 3, "high")),
            "column 'x' must be numeric but holds values like 'high'",
        ),
        (lambda f: f.assign(y=f["y"].where(f.index != 2, np.inf)), "infinite values"),
        (lambda f: f.assign(y=f["y"].where(f.index != 2, np.nan)), "missing values in {'y': 1}"),
        (lambda f: f.iloc[:1], "1 usable row"),
    ],
    ids=["constant-outcome", "constant-predictor", "single-group", "text", "inf", "nan", "one-row"],
)
def test_frame_problems(change, message):
    config = _config("unused.csv")
    with pytest.raises(DataError) as info:
        to_model_data(change(_frame()), config, source="data file 'd.csv'")
    assert message in str(info.value)
    assert str(info.value).startswith("data file 'd.csv'")


def test_single_group_is_fine_for_a_pooled_model():
    config = parse_config(
        {
            "name": "t",
            "data": {"path": "d.csv", "outcome": "y", "predictors": ["x"], "group": "g"},
            "model": {"pooling": "pooled"},
        }
    )
    data = to_model_data(_frame().assign(g="only"), config)
    assert data.n_groups == 1


def test_path_outside_the_working_tree_is_reported_in_the_manifest(tmp_path, monkeypatch):
    from hbreg.fit import _manifest_base

    path = tmp_path / "data" / "d.csv"
    path.parent.mkdir()
    _frame().to_csv(path, index=False)
    inside = tmp_path / "work"
    inside.mkdir()
    monkeypatch.chdir(inside)
    config = _config(path)
    data = load_model_data(config)
    assert _manifest_base(config, data, "")["data"]["outside_working_tree"] is True
    monkeypatch.chdir(tmp_path)
    assert _manifest_base(config, data, "")["data"]["outside_working_tree"] is False
    relative = _config(Path("data") / "d.csv")
    assert _manifest_base(relative, data, "")["data"]["outside_working_tree"] is False


def test_text_in_a_row_is_named_by_its_1_based_row():
    frame = _frame().astype({"y": object})
    frame.loc[4, "y"] = "abc"
    with pytest.raises(DataError) as info:
        to_model_data(frame, _config("unused.csv"))
    message = str(info.value)
    assert "row 5, counting data rows from 1 after the header" in message
    assert "0/1" not in message  # that hint is for predictors, not the outcome


def test_varying_list_is_checked_at_parse_time_unless_deferred_to_the_data():
    from hbreg.errors import ConfigError

    raw = {
        "name": "t",
        "data": {"path": "d.csv", "outcome": "y", "predictors": ["x"], "group": "g"},
        "model": {"varying": ["intercept", "X"]},
    }
    with pytest.raises(ConfigError, match=r"model.varying lists \['X'\]"):
        parse_config(raw)
    assert parse_config(raw, defer_varying=True).model.varying == ["intercept", "X"]
