"""Property: whatever config and data a user hands over, `hbreg fit` ends cleanly.

Hypothesis generates configs and small data frames, valid and broken (keys removed, values
of the wrong type, unknown keys, bad priors, NaNs, infinities, constant columns, text in
numeric columns, a single group, missing columns, empty files). Every run must either
exit 0 with one complete run directory, or exit 2/3 with one readable message, no
traceback and no complete-looking directory (exit 2: nothing written at all). Exit 1
means an internal error, i.e. a bug this test exists to find. For a deeper search run
it with HBREG_PROPERTY_EXAMPLES=500.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.sampling

RUN_FILES = (
    "config.yaml",
    "manifest.json",
    "summary.csv",
    "diagnostics.json",
    "divergences.md",
    "idata.nc",
)
GROUPS = ["a", "b", "c", "d"]

WRONG_VALUES = st.sampled_from(
    [
        None,
        True,
        -1,
        0,
        1.5,
        "",
        "many",
        "1e999",
        [],
        ["x"],
        {},
        {"dist": "Normal"},
        float("nan"),
        float("inf"),
        10**12,
    ]
)
KEY_PATHS = [
    ("name",),
    ("data",),
    ("data", "path"),
    ("data", "outcome"),
    ("data", "predictors"),
    ("data", "group"),
    ("data", "missing"),
    ("model",),
    ("model", "pooling"),
    ("model", "varying"),
    ("model", "parameterization"),
    ("model", "intercept"),
    ("priors", "coefficient"),
    ("priors", "sigma"),
    ("priors", "group_sd"),
    ("sampler", "draws"),
    ("sampler", "tune"),
    ("sampler", "chains"),
    ("sampler", "target_accept"),
    ("sampler", "seed"),
    ("output", "plots"),
]
BAD_PRIORS = st.sampled_from(
    [
        {"dist": "Normal", "mu": 0, "sigma": -1},
        {"dist": "Normol", "mu": 0, "sigma": 1},
        {"dist": "HalfNormal"},
        {"dist": "Normal", "mu": "zero", "sigma": 1},
        {"dist": "Cauchy", "alpha": 0, "beta": 1},
        {"dist": "Gamma", "alpha": 1, "beta": 0},
        "Normal(0, 1)",
        {"mu": 0, "sigma": 1},
    ]
)
BROKEN_YAML = st.sampled_from(
    [
        "name: [unclosed\n",
        "- a\n- b\n",
        "",
        "name: x\n\tdata: 1\n",
        "name: x\nname: y\n",
        "data: !!python/object/apply:os.getcwd []\n",
        "{",
        "name: 'x\n",
        "42\n",
    ]
)


@st.composite
def frames(draw) -> tuple[pd.DataFrame | None, dict]:
    """A small data frame, perhaps broken; `None` stands for an empty file."""
    n = draw(st.integers(min_value=0, max_value=40))
    if n == 0 and draw(st.booleans()):
        return None, {"empty_file": True}
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n_groups = draw(st.integers(1, len(GROUPS)))
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=n).round(3),
            "x1": rng.integers(0, 2, n).astype(float),
            "x2": rng.normal(size=n).round(3),
            "g": [GROUPS[i % n_groups] for i in range(n)],
        }
    )
    breakage = draw(
        st.sampled_from(
            ["none", "none", "nan", "inf", "constant", "text", "drop_column", "single_group"]
        )
    )
    column = draw(st.sampled_from(["y", "x1", "x2", "g"]))
    if n and breakage == "nan":
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[: draw(st.integers(1, n))], column] = np.nan
    elif n and breakage == "inf" and column != "g":
        frame.loc[frame.index[0], column] = np.inf
    elif breakage == "constant":
        frame[column] = 1.0 if column != "g" else "a"
    elif n and breakage == "text":
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[-1], column] = draw(st.sampled_from(["high", "1,5", "n/a", "?"]))
    elif breakage == "drop_column":
        frame = frame.drop(columns=column)
    elif breakage == "single_group":
        frame["g"] = "a"
    return frame, {"breakage": breakage}


@st.composite
def configs(draw) -> dict:
    """A valid config for the generated data, then zero or more mistakes."""
    predictors = draw(st.lists(st.sampled_from(["x1", "x2"]), unique=True, max_size=2))
    pooling = draw(st.sampled_from(["pooled", "unpooled", "hierarchical"]))
    config = {
        "name": "prop",
        "data": {
            "path": "data.csv",
            "outcome": "y",
            "predictors": predictors,
            "missing": draw(st.sampled_from(["error", "drop"])),
        },
        "model": {"pooling": pooling},
        "sampler": {"draws": 20, "tune": 20, "chains": 1, "seed": 1},
        "output": {"root": "outputs", "plots": []},
    }
    if pooling != "pooled" or draw(st.booleans()):
        config["data"]["group"] = "g"
    if pooling == "hierarchical" and draw(st.booleans()):
        config["model"]["parameterization"] = draw(st.sampled_from(["noncentered", "centered"]))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        kind = draw(st.sampled_from(["remove", "wrong", "unknown", "prior"]))
        path = draw(st.sampled_from(KEY_PATHS))
        parent = config
        for part in path[:-1]:
            parent = parent.setdefault(part, {}) if isinstance(parent, dict) else {}
        if not isinstance(parent, dict):
            continue
        if kind == "remove":
            parent.pop(path[-1], None)
        elif kind == "wrong":
            parent[path[-1]] = draw(WRONG_VALUES)
        elif kind == "unknown":
            parent[draw(st.sampled_from(["modle", "draw", "prior", "x"]))] = 1
        else:
            config.setdefault("priors", {})[
                draw(st.sampled_from(["coefficient", "sigma", "group_sd"]))
            ] = draw(BAD_PRIORS)
    return config


VALID_CONFIG = {
    "name": "prop",
    "data": {"path": "data.csv", "outcome": "y", "predictors": ["x1", "x2"], "group": "g"},
    "model": {"pooling": "hierarchical"},
    "sampler": {"draws": 20, "tune": 20, "chains": 1, "seed": 1},
    "output": {"root": "outputs", "plots": []},
}
VALID_FRAME = pd.DataFrame(
    {
        "y": np.linspace(0, 3, 24) + np.tile([0.0, 0.4, -0.3], 8),
        "x1": np.tile([0.0, 1.0], 12),
        "x2": np.linspace(-1, 1, 24) ** 2,
        "g": np.repeat(GROUPS, 6),
    }
)


def _complete_runs(root: Path) -> list[Path]:
    found = []
    for child in root.iterdir() if root.is_dir() else []:
        manifest = child / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("status") == "complete":
            found.append(child)
    return found


@pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")
@settings(
    max_examples=int(os.environ.get("HBREG_PROPERTY_EXAMPLES", 25)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(config=configs(), frame=frames(), broken_yaml=st.one_of(st.none(), BROKEN_YAML))
@example(config=VALID_CONFIG, frame=(VALID_FRAME, {}), broken_yaml=None)  # the success path
@example(config=VALID_CONFIG, frame=(VALID_FRAME.assign(x1=1.0), {}), broken_yaml=None)
def test_every_run_ends_complete_or_with_one_clear_message(
    cli, monkeypatch, config, frame, broken_yaml
):
    frame, _ = frame
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        monkeypatch.chdir(work)
        if frame is None:
            (work / "data.csv").write_bytes(b"")
        else:
            frame.to_csv(work / "data.csv", index=False)
        path = work / "config.yaml"
        path.write_text(broken_yaml if broken_yaml is not None else yaml.safe_dump(config))

        result = cli("fit", path)
        output = result.output
        event(f"exit {result.exit_code}")
        root = work / "outputs"
        assert "Traceback" not in output
        if result.exit_code == 0:
            [run] = [p for p in root.iterdir()]
            assert _complete_runs(root) == [run]
            for name in RUN_FILES:
                assert (run / name).is_file(), name
        else:
            assert result.exit_code in (2, 3), output  # 1 would be an internal error: a bug
            assert output.count("error:") == 1, output
            assert _complete_runs(root) == []
            if result.exit_code == 2:
                assert not root.exists(), list(root.iterdir())
